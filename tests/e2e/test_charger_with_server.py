"""Issue 3's recovery path against the real server, in separate processes: a keypad session
starts online, the server is killed, the session ends while the charger is offline, the
server comes back, and the charger's queued transaction events are stored exactly once."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import Canaries
from tests.e2e.conftest import EVACCESS, Cli, Server, leaked
from tests.support import eventually_blocking

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

OWNER = "owner@example.com"
OWNER_PASSWORD = "plum tractor 7 lantern"
KEYPAD_PIN = "5829"
SERIAL = "WB-C0001"


def transaction_rows(
    database: Path,
) -> tuple[list[tuple[str, int]], list[tuple[str | None, object]]]:
    with sqlite3.connect(database) as db:
        events = db.execute(
            "SELECT event_type, seq_no FROM transaction_events ORDER BY seq_no"
        ).fetchall()
        transactions = db.execute("SELECT user_id, ended_at FROM transactions").fetchall()
    return events, transactions


def test_killed_server_gets_the_offline_events_exactly_once(
    cli: Cli, server: Server, tmp_path: Path, canaries: Canaries
) -> None:
    canaries.add(OWNER_PASSWORD, KEYPAD_PIN)
    org, by_admin = server.organisation_id, ("--by", server.admin_email)
    cli.ok("admin", "create-user", OWNER, "--password-stdin", stdin=f"{OWNER_PASSWORD}\n")
    cli.ok("admin", "add-member", org, OWNER, *by_admin)
    registration = json.loads(
        cli.ok(
            "admin", "create-charger", org, "--serial", SERIAL, "--vendor", "Wallbox", "--model", "Commander 2",
            "--firmware", "6.7.16", "--keypad", "--owner", OWNER, *by_admin, "--json",
        ).stdout
    )  # fmt: skip
    canaries.add(registration["ocpp_password"])
    cli.ok(
        "app",
        "login",
        "--server",
        server.url,
        "--email",
        OWNER,
        "--password-stdin",
        stdin=f"{OWNER_PASSWORD}\n",
    )
    cli.ok("app", "keypad-pin", "set", "--pin-stdin", stdin=f"{KEYPAD_PIN}\n")

    log = tmp_path / "charger.log"
    with log.open("w") as out:
        charger = subprocess.Popen(
            (
                *EVACCESS, "charger", "run", "--serial", SERIAL, "--vendor", "Wallbox", "--model", "Commander 2",
                "--firmware", "6.7.16", "--server", f"ws://127.0.0.1:{cli.env['EVACCESS_OCPP_PORT']}/ocpp",
                "--state-dir", str(tmp_path / "charger"), "--keypad", KEYPAD_PIN, "--session-seconds", "8",
            ),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            env=cli.env | {"EVACCESS_CHARGER_PASSWORD": registration["ocpp_password"]},
        )  # fmt: skip
    restarted: subprocess.Popen[bytes] | None = None
    outbox = tmp_path / "charger" / "outbox.json"

    def queued() -> list[object]:
        return list(json.loads(outbox.read_text())) if outbox.exists() else []

    try:
        eventually_blocking(
            lambda: "keypad: accepted" in log.read_text(), "the keypad session to start"
        )
        server.process.kill()  # mid-session, no goodbye
        server.process.wait(timeout=10)
        eventually_blocking(lambda: "ocpp: offline" in log.read_text(), "the charger to notice")
        # The session ends while the server is down: its Ended event is queued.
        eventually_blocking(
            lambda: "charger: session ended" in log.read_text(), "the session to end"
        )
        assert queued(), "the Ended event is not in the charger's outbox"
        with (tmp_path / "server2.out").open("wb") as out:
            restarted = subprocess.Popen(
                (*EVACCESS, "server", "run", "--port", server.url.rsplit(":", 1)[1]),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=cli.env,
            )  # fmt: skip

        def healthy() -> bool:
            try:
                return httpx.get(f"{server.url}/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        eventually_blocking(healthy, "the server to come back")
        database = Path(cli.env["EVACCESS_DATA_DIR"]) / "evaccess.db"
        eventually_blocking(
            lambda: len(transaction_rows(database)[0]) >= 2, "the queued events to arrive"
        )
        # Each queued message leaves the outbox only once the server answered it: when it is
        # empty, anything sent twice has been stored.
        eventually_blocking(lambda: not queued(), "the charger's outbox to drain")
        events, transactions = transaction_rows(database)
        assert [kind for kind, _ in events] == ["Started", "Ended"], events
        assert len({seq for _, seq in events}) == len(events)
        ((user_id, ended_at),) = transactions
        assert user_id is not None
        assert ended_at is not None
    finally:
        for process in (charger, restarted):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=15)
    output = log.read_text() + (tmp_path / "server2.out").read_text() + server.output()
    assert "Traceback" not in output
    assert not leaked(output, canaries, server.admin_password)
