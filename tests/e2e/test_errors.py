"""Every mistake issue 7 saw a newcomer make ends as one line on stderr, a non-zero exit and
no traceback, and names its cause. Each command is a separate process, as a person runs it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli, Server, free_port, one_line_error, succeeded

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_mistakes_without_a_server(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory\n")

    def with_database(url: str) -> Cli:
        return replace(cli, env=cli.env | {"EVACCESS_DATABASE_URL": url})

    def run() -> tuple[str, ...]:
        return ("server", "run", "--port", str(free_port()), "--ocpp-port", str(free_port()))

    started = {
        "under a file": with_database(f"sqlite+aiosqlite:///{tmp_path}/a-file/x.db").start(*run()),
        "missing directory": with_database(f"sqlite+aiosqlite:///{tmp_path}/none/x.db").start(*run()),
        "unreachable PostgreSQL": with_database("postgresql+asyncpg://u@127.0.0.1:1/db").start(*run()),
        "no database yet": cli.start("admin", "list", "users"),
        "no password piped": cli.start("admin", "create-user", "a@example.com"),
        "login without scheme": cli.start(
            "app", "login", "--server", "127.0.0.1:18000", "--email", "a@example.com"
        ),
        "login, nobody there": cli.start(
            "app", "login", "--server", "http://127.0.0.1:1", "--email", "a@example.com",
            stdin="a password that is never asked for\n",
        ),
        "current limit": cli.start(
            "app", "configure", "WB-1", "--ble-transport", "tcp-client:127.0.0.1:1",
            "--current-limit", "40",
        ),
        "charger over http": cli.start(
            "charger", "run", "--serial", "WB-1", "--server", "http://127.0.0.1:9000/ocpp",
            "--password", "x",
        ),
        "fleet file": cli.start(
            "charger", "fleet", "--server", "ws://127.0.0.1:9000/ocpp",
            "--password-file", str(tmp_path / "chargers.csv"),
        ),
    }  # fmt: skip
    expected = {
        "under a file": f"{tmp_path}/a-file is a file, not a directory",
        "missing directory": f"directory {tmp_path}/none does not exist",
        "unreachable PostgreSQL": "cannot open the database (PostgreSQL u@127.0.0.1:1/db)",
        "no database yet": "no database",
        "no password piped": "no password on standard input",
        "login without scheme": "--server must be the server's http:// or https:// URL",
        "login, nobody there": "cannot reach the server at http://127.0.0.1:1 (nothing answers",
        "current limit": "the current limit is 6 to 32 A",
        "charger over http": "--server must be the OCPP endpoint's ws:// or wss:// URL",
        "fleet file": f"{tmp_path}/chargers.csv",
    }
    results = {name: pending.result() for name, pending in started.items()}
    for name, result in results.items():
        line = one_line_error(result)
        assert expected[name] in line, (name, line)
    assert not (tmp_path / "none").exists()  # refused, not created


def test_an_admin_command_by_someone_who_is_not_an_admin(cli: Cli, server: Server) -> None:
    succeeded(
        cli(
            "admin",
            "create-user",
            "user@example.com",
            "--password-stdin",
            stdin="a long password\n",
        )
    )
    org = server.organisation_id
    outsider = cli(
        "admin", "create-charger", org, "--serial", "WB-1", "--vendor", "Wallbox", "--model", "M",
        "--firmware", "6.11.2", "--by", "user@example.com",
    )  # fmt: skip
    assert (
        "user@example.com is not a member of My organisation; this takes admin or super_admin"
        in (one_line_error(outsider, exit_code=4))
    )
    succeeded(cli("admin", "add-member", org, "user@example.com", "--by", server.admin_email))
    member = cli(
        "admin", "create-chargers", "My organisation", "--count", "2", "--prefix", "X-",
        "--vendor", "evaccess", "--model", "fleet", "--firmware", "1.0.0",
        "--by", "user@example.com", "--out", "chargers.csv",
    )  # fmt: skip
    assert "user@example.com has the role user in My organisation" in one_line_error(member)
    bad_firmware = cli(
        "admin", "create-charger", org, "--serial", "WB-2", "--vendor", "Wallbox", "--model", "M",
        "--firmware", "six.eleven", "--by", server.admin_email,
    )  # fmt: skip
    assert "six.eleven" in one_line_error(bad_firmware)
