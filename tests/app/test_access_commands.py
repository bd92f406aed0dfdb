"""``evaccess app`` for daily access management, run in-process against the real REST API.

Each command runs as the user would run it (``console.run_app`` with its argv, stdin and
saved session), in a worker thread with its own event loop; its HTTP requests are answered
by the ASGI app on the test's loop, where the database lives. Every command is tried once
the way it should work and once the way it goes wrong: one ``error:`` line on stderr, a
non-zero exit code, no traceback."""

from __future__ import annotations

import asyncio
import io
import json
import re
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from rich.console import Console

from evaccess import console
from evaccess.app import cli as app_cli
from evaccess.app.api import ApiClient
from evaccess.app.session import AppSession, save_session
from evaccess.protocol.ocpp_components import SecurityEventType
from evaccess.server.api.app import create_app
from evaccess.server.context import Context
from evaccess.server.services import accounts, bluetooth_pins
from evaccess.server.services.ocpp_backend import DbOcppBackend
from evaccess.server.settings import Settings
from tests.conftest import Canaries
from tests.e2e.conftest import Result, one_line_error, succeeded
from tests.server.support import PASSWORD, World, build_world, confirm_pin_push
from tests.server.test_transactions import MEMBER_CODE, OWNER_CODE, sessions_world

SERVER = "http://testserver"
WALLBOX = "WB-100001"


class Bridge(httpx.AsyncBaseTransport):
    """The CLI's requests, made on its own loop, answered by the app on the test's loop."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._inner = httpx.ASGITransport(app=app)
        self._loop = loop

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()

        async def forward() -> tuple[int, list[tuple[str, str]], bytes]:
            inner = httpx.Request(
                request.method, request.url, headers=request.headers, content=body
            )
            response = await self._inner.handle_async_request(inner)
            return response.status_code, response.headers.multi_items(), await response.aread()

        future = asyncio.run_coroutine_threadsafe(forward(), self._loop)
        status, headers, content = await asyncio.wrap_future(future)
        return httpx.Response(status, headers=headers, content=content, request=request)


@dataclass
class App:
    world: World
    home: Path
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]
    root: typer.Typer

    async def login(self, who: str, *, password: str = PASSWORD) -> None:
        email = self.world.users[who].email
        token = (await accounts.login(self.world.ctx, email, password, client="app-test")).token
        save_session(
            AppSession(server=SERVER, token=token, email=self.world.users[who].email),
            home=self.home,
        )

    async def __call__(self, *args: str, stdin: str = "") -> Result:
        self.capsys.readouterr()
        self.monkeypatch.setattr(sys, "argv", ["evaccess", "app", *args])
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = await asyncio.to_thread(self._run)
        captured = self.capsys.readouterr()
        return Result(args=args, returncode=code, stdout=captured.out, stderr=captured.err)

    def _run(self) -> int:
        try:
            console.run_app(self.root)
        except SystemExit as exited:
            return int(exited.code or 0)
        return 0

    async def ok(self, *args: str, stdin: str = "") -> Result:
        return succeeded(await self(*args, stdin=stdin))

    async def json(self, *args: str, stdin: str = "") -> Any:
        return json.loads((await self.ok(*args, "--json", stdin=stdin)).stdout)


@pytest.fixture
def app_env(
    ctx: Context,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[Context, Path, pytest.MonkeyPatch, pytest.CaptureFixture[str]]:
    home = tmp_path / "app"
    monkeypatch.setenv("EVACCESS_APP_HOME", str(home))
    monkeypatch.setattr(console, "out", Console(width=250))
    monkeypatch.setattr(app_cli, "_now", ctx.clock.now)
    return ctx, home, monkeypatch, capsys


async def make_app(app_env: Any, world: World) -> App:
    ctx, home, monkeypatch, capsys = app_env
    bridge = Bridge(create_app(Settings(), context=ctx), asyncio.get_running_loop())
    monkeypatch.setattr(app_cli, "ApiClient", partial(ApiClient, transport=bridge))
    root = typer.Typer(pretty_exceptions_enable=False)
    root.add_typer(app_cli.app_app, name="app")
    return App(world=world, home=home, monkeypatch=monkeypatch, capsys=capsys, root=root)


def column(table: str, row_starts: str, index: int) -> str:
    """One cell of a rich table row (``│`` separated), the row found by its first cell."""
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if cells and cells[0] == row_starts:
            return cells[index]
    raise AssertionError(f"no row {row_starts!r} in\n{table}")


# --- invitations -------------------------------------------------------------------------------


async def test_invite_list_accept_and_revoke_invitations(
    app_env: Any, ctx: Context, canaries: Canaries
) -> None:
    world = await build_world(ctx)
    app = await make_app(app_env, world)
    await app.login("owner")

    shown = await app.ok(
        "invite", WALLBOX, "--email", "stranger@example.com", "--role", "service",
        "--expires-days", "3",
    )  # fmt: skip
    code = re.search(r"invitation code \(shown once\): (\S+)", shown.stdout)
    assert code is not None, shown.stdout
    canaries.add(code.group(1))
    assert "stranger@example.com" in shown.stdout and "service" in shown.stdout
    assert "2026-03-04 09:00 UTC" in shown.stdout  # the service access ends in 3 days

    issued = await app.json("invite", WALLBOX, "--email", "spare@example.com")
    assert issued["kind"] == "user" and issued["token"]
    canaries.add(issued["token"])

    listed = await app.json("invitations", WALLBOX)
    assert sorted(i["email"] for i in listed) == ["spare@example.com", "stranger@example.com"]
    assert all("token" not in i for i in listed)  # shown once, at the invitation only
    table = (await app.ok("invitations", WALLBOX)).stdout
    assert column(table, issued["id"], 1) == "spare@example.com"
    assert code.group(1) not in table

    revoked = await app.ok("invitation-revoke", WALLBOX, issued["id"])
    assert "invitation revoked" in revoked.stdout
    assert [i["email"] for i in await app.json("invitations", WALLBOX)] == ["stranger@example.com"]

    # The stranger accepts with the code (on stdin: the command line is for no secret).
    await app.login("stranger")
    accepted = await app.ok("accept", stdin=f"{code.group(1)}\n")
    assert column(accepted.stdout, next(iter(_grant_ids(accepted.stdout))), 2) == "service"
    assert [c["serial"] for c in await app.json("chargers")] == [WALLBOX]

    # What goes wrong, in one line.
    assert "no such invitation" in one_line_error(await app("accept", code.group(1)), 5)
    assert "no invitation code on standard input" in one_line_error(
        await app("accept", stdin=""), 2
    )
    await app.login("owner")
    failed = await app("invite", WALLBOX, "--email", "x@example.com", "--expires-days", "3")
    assert "only service access expires" in one_line_error(failed, 2)
    assert "no such invitation" in one_line_error(
        await app("invitation-revoke", WALLBOX, issued["id"]), 5
    )
    assert "Invalid value" in one_line_error(
        await app("invite", WALLBOX, "--email", "x@example.com", "--role", "owner"), 2
    )
    await app.login("invited")  # a user of the charger may not invite others
    assert "not allowed" in one_line_error(await app("invitations", WALLBOX), 4)


def _grant_ids(table: str) -> list[str]:
    return re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", table)


# --- grants and assignment -----------------------------------------------------------------


async def test_grants_revoke_and_assign(app_env: Any, ctx: Context) -> None:
    world = await build_world(ctx)
    app = await make_app(app_env, world)
    await app.login("owner")

    grants = await app.json("grants", WALLBOX)
    assert sorted((g["email"], g["kind"]) for g in grants) == [
        ("invited@example.com", "user"),
        ("owner@example.com", "owner"),
        ("service@example.com", "service"),
    ]
    table = (await app.ok("grants", WALLBOX)).stdout
    invited = next(g for g in grants if g["kind"] == "user")
    assert column(table, invited["id"], 1) == "invited@example.com"

    assert "access revoked" in (await app.ok("revoke", WALLBOX, invited["id"])).stdout
    assert invited["id"] not in {g["id"] for g in await app.json("grants", WALLBOX)}
    owner_grant = next(g for g in grants if g["kind"] == "owner")
    assert "ownership ends by transfer" in one_line_error(
        await app("revoke", WALLBOX, owner_grant["id"]), 6
    )
    assert "no such grant" in one_line_error(await app("revoke", WALLBOX, "no-such-grant"), 5)
    one_line_error(await app("revoke", WALLBOX, "../../x"), 5)  # one path segment, no other route

    # A super-admin assigns the charger to a member, found by email.
    assert "not allowed" in one_line_error(
        await app("assign", WALLBOX, "--member", "member@example.com"), 4
    )  # the owner is no super-admin
    await app.login("super_admin")
    assigned = await app.json("assign", WALLBOX, "--member", "Member@Example.com")
    assert (assigned["email"], assigned["kind"]) == ("member@example.com", "user")
    table = (await app.ok("assign", "ZAP-200002", "--member", "member@example.com",
                          "--organisation", "Acme Fleet")).stdout  # fmt: skip
    assert "member@example.com" in table and "Assigned ZAP-200002" in table
    missing = await app("assign", WALLBOX, "--member", "stranger@example.com")
    assert "no member with that email" in one_line_error(missing, 5)
    assert "no such organisation" in one_line_error(
        await app("assign", WALLBOX, "--member", "member@example.com", "--organisation", "Nope"),
        5,
    )


# --- history and phones -----------------------------------------------------------------------


async def test_reveal_history_and_security_events(
    app_env: Any, ctx: Context, canaries: Canaries
) -> None:
    world = await build_world(ctx)
    app = await make_app(app_env, world)
    push = await confirm_pin_push(ctx, WALLBOX)
    assert push is not None and push.pin is not None
    canaries.add(push.pin)
    await bluetooth_pins.reveal(ctx, world.actor("owner"), world.chargers["wallbox"].id)
    await DbOcppBackend(ctx).security_event(
        WALLBOX, event_type="evaccess.PinPairingLockout", at=ctx.clock.now(), tech_info="5 fails"
    )
    await app.login("owner")

    reveals = await app.json("reveals", WALLBOX)
    assert [(r["actor_email"], r["basis"]) for r in reveals] == [("owner@example.com", "owner")]
    table = await app.ok("reveals", WALLBOX)
    assert "owner@example.com" in table.stdout and push.pin not in table.output

    events = await app.json("security-events", WALLBOX)
    assert [(e["event_type"], e["tech_info"]) for e in events] == [
        ("evaccess.PinPairingLockout", "5 fails")
    ]
    table = await app.ok("security-events", WALLBOX)
    assert column(table.stdout, "2026-03-01 09:00 UTC", 1) == "evaccess.PinPairingLockout"

    await app.login("invited")
    assert "not allowed" in one_line_error(await app("reveals", WALLBOX), 4)
    assert "no charger with serial NOPE-1" in one_line_error(
        await app("security-events", "NOPE-1"), 5
    )


async def test_charger_info_tells_the_owner_of_a_bluetooth_lockout(
    app_env: Any, ctx: Context
) -> None:
    world = await build_world(ctx)
    app = await make_app(app_env, world)
    await app.login("owner")
    assert column((await app.ok("charger-info", WALLBOX)).stdout, "recent security events", 1) == (
        "none"
    )
    backend = DbOcppBackend(ctx)
    # What the charger's Bluetooth peripheral sends (charger/ble/peripheral.py), over OCPP.
    await backend.security_event(
        WALLBOX,
        event_type=SecurityEventType.BLUETOOTH_PIN_LOCKOUT,
        at=ctx.clock.now(),
        tech_info="level=1 duration_s=300 consecutive_failures=5",
    )
    shown = await app.ok("charger-info", WALLBOX)
    assert column(shown.stdout, "recent security events", 1) == (
        "Bluetooth PIN pairing locked at 2026-03-01 09:00 UTC for 5 min after 5 wrong PINs"
    )
    ctx.clock.advance(120)
    await backend.security_event(
        WALLBOX,
        event_type=SecurityEventType.BLUETOOTH_PIN_PAIRING_DISABLED,
        at=ctx.clock.now(),
        tech_info="consecutive_failures=100",
    )
    info = await app.json("charger-info", WALLBOX)
    events = info["charger"]["recent_security_events"]
    assert [e["event_type"] for e in events] == [
        SecurityEventType.BLUETOOTH_PIN_PAIRING_DISABLED,
        SecurityEventType.BLUETOOTH_PIN_LOCKOUT,
    ]
    table = (await app.ok("charger-info", WALLBOX)).stdout
    assert "disabled at 2026-03-01 09:02 UTC after 100 wrong PINs in a row" in table

    # A user of the charger does not see its security events (as with `security-events`).
    await app.login("invited")
    assert (await app.json("charger-info", WALLBOX))["charger"]["recent_security_events"] is None
    assert "security events" not in (await app.ok("charger-info", WALLBOX)).stdout


async def test_reenable_pairing_and_revoke_phones(app_env: Any, ctx: Context) -> None:
    world = await build_world(ctx)
    app = await make_app(app_env, world)
    await app.login("owner")
    said = (await app.ok("reenable-pairing", WALLBOX)).stdout
    assert "re-enable queued: the charger is OFFLINE" in said and "next connects" in said
    queued = await app.json("revoke-phones", WALLBOX, "--phone", "phone-7")
    assert (queued["phone_id"], queued["charger_online"]) == ("phone-7", False)
    assert queued["command_id"]
    assert "every phone's" in (await app.ok("revoke-phones", WALLBOX, "--all")).stdout
    commands = await DbOcppBackend(ctx).pending_commands(WALLBOX)
    kinds = [(type(c).__name__, getattr(c, "phone_id", None)) for c in commands]
    assert ("ReenablePinPairing", None) in kinds
    assert ("RevokeCredentials", "phone-7") in kinds and ("RevokeCredentials", None) in kinds

    assert "--phone PHONE_ID or --all" in one_line_error(await app("revoke-phones", WALLBOX), 2)
    both = await app("revoke-phones", WALLBOX, "--phone", "p", "--all")
    assert "--phone PHONE_ID or --all" in one_line_error(both, 2)
    await app.login("invited")
    assert "not allowed" in one_line_error(await app("reenable-pairing", WALLBOX), 4)
    assert "not allowed" in one_line_error(await app("revoke-phones", WALLBOX, "--all"), 4)


# --- your password -------------------------------------------------------------------------------


async def test_change_password(app_env: Any, ctx: Context, canaries: Canaries) -> None:
    world = await build_world(ctx)
    app = await make_app(app_env, world)
    new = "quiet meadow 41 lanterns"
    canaries.add(new)
    await app.login("member")

    wrong = await app("password", "--password-stdin", stdin=f"not it at all\n{new}\n")
    assert "current password is wrong" in one_line_error(wrong, 3)
    assert "no new password on standard input" in one_line_error(
        await app("password", "--password-stdin", stdin=f"{PASSWORD}\n"), 2
    )
    changed = await app.ok("password", "--password-stdin", stdin=f"{PASSWORD}\n{new}\n")
    assert "log in again" in changed.stdout
    assert new not in changed.output and PASSWORD not in changed.output
    assert "not logged in" in one_line_error(await app("grants", WALLBOX), 3)

    # Without --password-stdin and without a terminal: one line each, the same way.
    await app.login("member", password=new)
    back = await app.ok("password", stdin=f"{new}\n{PASSWORD}\n")
    assert "log in again" in back.stdout
    await app.login("member")  # the old password works again
    assert "no current password on standard input" in one_line_error(
        await app("password", stdin="\n"), 2
    )


# --- charging sessions ---------------------------------------------------------------------------


async def test_sessions_mine_and_a_chargers(app_env: Any, ctx: Context, canaries: Canaries) -> None:
    world = await sessions_world(ctx, canaries)
    app = await make_app(app_env, world)
    await app.login("member")
    mine = await app.json("sessions")
    assert [(t["charger_serial"], t["user_email"], t["energy_wh"]) for t in mine] == [
        ("WB-400004", "member@example.com", 3500)
    ]
    table = await app.ok("sessions")
    assert "Your charging sessions" in table.stdout
    assert column(table.stdout, "2026-03-01 11:00 UTC", 4) == "3.50"
    assert column(table.stdout, "2026-03-01 11:00 UTC", 5) == "KeyCode"
    # A user of the charger sees only their own there too.
    assert [t["transaction_id"] for t in await app.json("sessions", "WB-400004")] == ["tx-member"]

    await app.login("owner")
    every = await app.ok("sessions", "WB-400004")
    assert "Charging sessions at WB-400004" in every.stdout
    for email in ("owner@example.com", "member@example.com"):
        assert email in every.stdout
    assert "ISO14443" in every.stdout and "EVDisconnected" in every.stdout
    for code in (OWNER_CODE, MEMBER_CODE):
        assert code not in every.output

    await app.login("stranger")
    assert "no charger with serial WB-400004" in one_line_error(
        await app("sessions", "WB-400004"), 5
    )
    assert await app.json("sessions") == []


async def test_every_new_command_refuses_without_a_login(app_env: Any, ctx: Context) -> None:
    world = await build_world(ctx)
    app = await make_app(app_env, world)
    for args in (
        ("invite", WALLBOX, "--email", "a@example.com"),
        ("invitations", WALLBOX),
        ("invitation-revoke", WALLBOX, "x"),
        ("accept", "x" * 20),
        ("grants", WALLBOX),
        ("revoke", WALLBOX, "x"),
        ("assign", WALLBOX, "--member", "a@example.com"),
        ("reveals", WALLBOX),
        ("security-events", WALLBOX),
        ("reenable-pairing", WALLBOX),
        ("revoke-phones", WALLBOX, "--all"),
        ("password", "--password-stdin"),
        ("sessions",),
    ):
        assert "not logged in" in one_line_error(await app(*args), 3), args
