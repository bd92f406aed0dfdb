"""``evaccess app keypad-pin`` for a charger owner outside any organisation (the personal PIN
space), and the member access policy from ``evaccess app`` and ``evaccess admin``, run
in-process against the real REST API and database (see test_access_commands)."""

from __future__ import annotations

import asyncio
import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import select

from evaccess import console
from evaccess.server import cli as server_cli
from evaccess.server.context import Context
from evaccess.server.db.models import AuditRecord, Organisation
from evaccess.server.services import keypad_pins
from tests.app.test_access_commands import app_env, make_app  # noqa: F401 (a fixture)
from tests.conftest import Canaries
from tests.e2e.conftest import Result, one_line_error, succeeded
from tests.server.test_keypad_access import HOME_PIN, MEMBER_PIN, home_world


async def test_keypad_pin_commands_use_the_personal_space_without_an_organisation(
    app_env: Any,  # noqa: F811
    ctx: Context,
    canaries: Canaries,
) -> None:
    canaries.add(HOME_PIN, MEMBER_PIN)
    world = await home_world(ctx)
    app = await make_app(app_env, world)
    home = world.chargers["home"].id
    await app.login("home")  # owns a charger, belongs to no organisation

    done = await app.ok("keypad-pin", "set", "--pin-stdin", stdin=f"{HOME_PIN}\n")
    assert done.stdout.strip() == "your 4-digit personal keypad PIN is set"
    assert HOME_PIN not in done.output
    assert await keypad_pins.resolve(ctx, home, HOME_PIN) == world.users["home"].id

    generated = await app.ok("keypad-pin", "generate")
    found = re.search(r"your new personal keypad PIN: (\d{4}) \(shown once\)", generated.stdout)
    assert found is not None, generated.stdout
    canaries.add(found.group(1))
    assert await keypad_pins.resolve(ctx, home, found.group(1)) == world.users["home"].id
    assert await keypad_pins.resolve(ctx, home, HOME_PIN) is None

    assert "personal keypad PIN is deleted" in (await app.ok("keypad-pin", "delete")).stdout
    assert "no keypad PIN to delete" in one_line_error(await app("keypad-pin", "delete"), 5)

    # What goes wrong, in one line and without the PIN.
    refused = await app("keypad-pin", "set", stdin="1234\n")
    assert "this keypad PIN cannot be used" in one_line_error(refused, 2)
    assert "1234" not in refused.output
    await app.login("stranger")  # no organisation, no charger
    assert "you own no charger" in one_line_error(
        await app("keypad-pin", "set", stdin=f"{MEMBER_PIN}\n"), 4
    )
    await app.login("member")  # one organisation: its space, unless --personal
    assert "is set" in (await app.ok("keypad-pin", "set", stdin=f"{MEMBER_PIN}\n")).stdout
    assert "you own no charger" in one_line_error(
        await app("keypad-pin", "generate", "--personal"), 4
    )
    assert "not both" in one_line_error(
        await app("keypad-pin", "generate", "--personal", "--organisation", "Acme Fleet"), 2
    )


async def test_app_set_member_access(
    app_env: Any,  # noqa: F811
    ctx: Context,
    canaries: Canaries,
) -> None:
    canaries.add(MEMBER_PIN)
    world = await home_world(ctx)
    app = await make_app(app_env, world)
    member = world.actor("member")
    await keypad_pins.set_pin(ctx, member, world.org.id, member.user_id, MEMBER_PIN)
    old = world.chargers["old"].id

    await app.login("admin")
    done = await app.ok("set-member-access", "Acme Fleet", "all")
    assert done.stdout.strip() == "members of Acme Fleet may use all its chargers"
    assert await keypad_pins.resolve(ctx, old, MEMBER_PIN) == member.user_id
    assert (await app.json("set-member-access", world.org.id, "assigned"))[
        "member_access"
    ] == "assigned"
    assert await keypad_pins.resolve(ctx, old, MEMBER_PIN) is None

    assert "Invalid value" in one_line_error(
        await app("set-member-access", "Acme Fleet", "some"), 2
    )
    await app.login("member")
    assert "not allowed" in one_line_error(await app("set-member-access", "Acme Fleet", "all"), 4)


async def run_admin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> Result:
    root = typer.Typer(pretty_exceptions_enable=False)
    root.add_typer(server_cli.admin_app, name="admin")
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["evaccess", "admin", *args])
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))

    def run() -> int:
        try:
            console.run_app(root)
        except SystemExit as exited:
            return int(exited.code or 0)
        return 0

    code = await asyncio.to_thread(run)
    captured = capsys.readouterr()
    return Result(args=args, returncode=code, stdout=captured.out, stderr=captured.err)


async def test_admin_set_member_access(
    ctx: Context,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``evaccess admin`` on the same database the test's server context uses."""
    world = await home_world(ctx)
    monkeypatch.setenv("EVACCESS_DATABASE_URL", database_url)
    monkeypatch.setenv("EVACCESS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EVACCESS_KEYS_DIR", str(tmp_path / "keys"))
    by = ("--by", world.users["super_admin"].email)

    done = succeeded(
        await run_admin(monkeypatch, capsys, "set-member-access", "Acme Fleet", "all", *by)
    )
    assert done.stdout.strip() == f"member access of Acme Fleet ({world.org.id}): all"
    async with ctx.db.read() as session:
        policies = dict(
            (await session.execute(select(Organisation.name, Organisation.member_access))).all()
        )
        record = await session.scalar(
            select(AuditRecord).where(AuditRecord.action == "organisation.member_access_changed")
        )
    assert policies == {"Acme Fleet": "all", "Depot North": "all", "Rival": "assigned"}
    assert record is not None and record.actor_id == world.users["super_admin"].id
    assert json.loads(record.details)["member_access"] == "all"

    refused = await run_admin(
        monkeypatch, capsys, "set-member-access", "Acme Fleet", "all",
        "--by", world.users["member"].email,
    )  # fmt: skip
    assert "has the role user in Acme Fleet; this takes admin" in one_line_error(refused, 4)
    missing = await run_admin(monkeypatch, capsys, "set-member-access", "Nope", "all", *by)
    assert "error:" in one_line_error(missing, 5)
