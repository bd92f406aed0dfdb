"""The OCPP endpoint on the real database backend, driven by the third-party ``ocpp``
library's ChargePoint in a separate process (tests/ocpp/library_charger.py)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import Engine

from evaccess.server.db.models import Charger, SecurityEvent, Transaction
from evaccess.server.ocpp.server import serve_ocpp
from evaccess.server.services import chargers, keypad_pins
from evaccess.server.services.ocpp_backend import DbOcppBackend
from tests.server.support import add_charger, build_world, client_for
from tests.support import eventually

SCRIPT = Path(__file__).parents[1] / "ocpp" / "library_charger.py"


async def run_charger(port: int, serial: str, password: str, version: str, code: str, wrong: str):
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), f"ws://127.0.0.1:{port}/ocpp", serial, password, version, code, wrong, "0",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    lines: list[dict] = []

    async def until(**match):
        for line in lines:
            if match.items() <= line.items():
                return line
        async with asyncio.timeout(20):
            while True:
                raw = await process.stdout.readline()
                assert raw, f"charger exited early: {lines}"
                lines.append(json.loads(raw))
                if match.items() <= lines[-1].items():
                    return lines[-1]

    async def finish():
        process.stdin.close()
        await until(step="closed")
        assert await asyncio.wait_for(process.wait(), 10) == 0

    return until, finish


@pytest.mark.e2e
@pytest.mark.parametrize("version", ["ocpp2.0.1", "ocpp1.6"])
async def test_library_charger_against_the_database_backend(ctx, canaries, version):
    world = await build_world(ctx)
    code, wrong = "5829", "9999"
    canaries.add(code, wrong)
    await keypad_pins.set_pin(
        ctx, world.actor("owner"), world.org.id, world.users["owner"].id, code
    )
    server = await serve_ocpp(DbOcppBackend(ctx), port=0, clock=ctx.clock)
    ctx.notifier.target = server.notifier
    try:
        charger = world.chargers["wallbox"]  # mandatory Bluetooth PIN, pending until pushed
        until, finish = await run_charger(
            server.port, charger.serial, world.ocpp_passwords["wallbox"], version, code, wrong
        )
        assert (await until(step="boot"))["status"] == "Accepted"
        assert (await until(step="authorize_valid"))["status"] == "Accepted"
        await until(step="transaction_ended")
        assert (await until(step="authorize_invalid"))["statuses"] == ["Invalid"] * 5
        assert (await until(step="authorize_locked"))["status"] == "Blocked"
        push = await until(push="SetVariables" if version == "ocpp2.0.1" else "ChangeConfiguration")
        pin = push["variables"]["Pin"] if version == "ocpp2.0.1" else push["value"]
        canaries.add(pin)
        await until(step="ready")
        async with client_for(ctx) as client:
            headers = await world.headers("owner")

            async def pin_active() -> bool:
                path = f"/api/chargers/{charger.id}/bluetooth-pin"
                state = (await client.get(path, headers=headers)).json()
                return bool(state["status"] == "active")

            await eventually(pin_active, "the Bluetooth PIN to become active")
            revealed = await client.post(
                f"/api/chargers/{charger.id}/bluetooth-pin/reveal", headers=headers
            )
            assert revealed.json()["pin"] == pin
            detail = (await client.get(f"/api/chargers/{charger.id}", headers=headers)).json()
            assert detail["online"] is True
            assert detail["ocpp_protocol"] == version
        await finish()
    finally:
        ctx.notifier.target = None
        await server.close()

    async with ctx.db.read() as session:
        stored = (
            await session.scalars(select(Transaction).where(Transaction.charger_id == charger.id))
        ).all()
        events = (
            await session.scalars(
                select(SecurityEvent.event_type).where(SecurityEvent.charger_id == charger.id)
            )
        ).all()
        row = await session.get(Charger, charger.id)
    assert [t.user_id for t in stored] == [world.users["owner"].id]
    assert stored[0].ended_at is not None
    assert "evaccess.KeypadLockout" in events
    assert row.online is False


async def test_wrong_charger_password_is_refused_and_counted(ctx):
    world = await build_world(ctx)
    backend = DbOcppBackend(ctx)
    assert (await backend.authenticate("WB-100001", "not-the-password")).value == "bad_password"
    assert (await backend.authenticate("NOPE-1", "whatever")).value == "unknown_charger"
    assert (
        await backend.authenticate("WB-100001", world.ocpp_passwords["wallbox"])
    ).value == "accepted"
    assert backend.refused_auth == 2


async def test_reported_settings_are_shown_without_secrets(ctx, canaries):
    world = await build_world(ctx)
    canaries.add("hunter2-wifi")
    backend = DbOcppBackend(ctx)
    await backend.configuration_reported(
        "WB-100001", {"WifiSsid": "Garage", "CurrentLimitA": "16", "WifiPassword": "hunter2-wifi"}
    )
    async with client_for(ctx) as client:
        detail = await client.get(
            f"/api/chargers/{world.chargers['wallbox'].id}", headers=await world.headers("owner")
        )
    assert detail.json()["reported_settings"] == {"CurrentLimitA": "16", "WifiSsid": "Garage"}


@contextmanager
def counted_queries() -> Iterator[list[str]]:
    """Every SQL statement any engine runs inside the block."""
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", count)


async def test_the_list_shows_each_charger_as_its_detail_does_in_a_fixed_number_of_queries(ctx):
    world = await build_world(ctx)
    backend = DbOcppBackend(ctx)
    now = ctx.clock.now()
    await backend.configuration_reported("WB-100001", {"WifiSsid": "Garage", "CurrentLimitA": "16"})
    await backend.status("WB-100001", evse_id=1, connector_id=1, status="Available", at=now)
    await backend.status("ZAP-200002", evse_id=1, connector_id=1, status="Charging", at=now)
    await backend.status("ZAP-200002", evse_id=2, connector_id=1, status="Faulted", at=now)
    for who in ("owner", "super_admin", "invited"):
        headers = await world.headers(who)
        async with client_for(ctx) as client:
            listed = (await client.get("/api/chargers", headers=headers)).json()
            assert len(listed) >= 4, who
            for item in listed:
                detail = await client.get(f"/api/chargers/{item['id']}", headers=headers)
                # The detail adds the newest security events (one more query per charger).
                shown = {k: v for k, v in detail.json().items() if k != "recent_security_events"}
                assert {k: v for k, v in item.items() if k != "recent_security_events"} == shown, (
                    who,
                    item["serial"],
                )
    by_serial = {item["serial"]: item for item in listed}
    assert by_serial["WB-100001"]["reported_settings"] == {
        "CurrentLimitA": "16",
        "WifiSsid": "Garage",
    }
    assert [c["status"] for c in by_serial["ZAP-200002"]["connectors"]] == ["Charging", "Faulted"]

    owner = world.actor("owner")
    with counted_queries() as few:
        assert len(await chargers.list_chargers(ctx, owner)) == 4
    for n in range(20):
        serial = f"WB-9{n:05d}"
        await add_charger(
            world, serial, serial=serial, vendor="Wallbox", model="Pulsar Plus",
            firmware="6.11.2", owner="owner",
        )  # fmt: skip
        await backend.configuration_reported(serial, {"WifiSsid": f"Net {n}"})
        await backend.status(serial, evse_id=1, connector_id=1, status="Available", at=now)
    with counted_queries() as many:
        assert len(await chargers.list_chargers(ctx, owner)) == 24
    assert few, "the counter saw no query"
    assert len(many) == len(few), "queries grow with the number of chargers"
