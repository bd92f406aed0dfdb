"""End to end: the third-party ``ocpp`` library's ChargePoint (2.0.1 and 1.6) as the charger,
in a separate process over a real socket, against the endpoint in this process."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from evaccess.server.ocpp.memory_backend import InMemoryOcppBackend
from evaccess.server.ocpp.server import OcppServer
from tests.support import eventually

from .conftest import BLUETOOTH_PIN, KEYCODE, ORG, PASSWORD, WRONG_KEYCODE, assert_no_secret_logged

SCRIPT = Path(__file__).with_name("library_charger.py")
LIST_CODE = "5555"
LATER_CODE = "6666"


class ChargerProcess:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []

    async def until(self, **match: Any) -> dict[str, Any]:
        """Read lines until one has all of ``match``'s items; every line is kept."""
        for line in self.lines:
            if match.items() <= line.items():
                return line
        assert self.process.stdout is not None
        async with asyncio.timeout(20):
            while True:
                raw = await self.process.stdout.readline()
                assert raw, f"charger exited; got {self.lines}"
                line = json.loads(raw)
                self.lines.append(line)
                if match.items() <= line.items():
                    return line

    async def finish(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        await self.until(step="closed")
        assert await asyncio.wait_for(self.process.wait(), 10) == 0


async def start_charger(server: OcppServer, version: str, list_version: int) -> ChargerProcess:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        f"ws://127.0.0.1:{server.port}/ocpp",
        "CP1",
        PASSWORD,
        version,
        KEYCODE,
        WRONG_KEYCODE,
        str(list_version),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    return ChargerProcess(process)


@pytest.mark.e2e
@pytest.mark.parametrize("version", ["ocpp2.0.1", "ocpp1.6"])
async def test_library_charger_against_endpoint(
    server: OcppServer,
    backend: InMemoryOcppBackend,
    caplog: pytest.LogCaptureFixture,
    version: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    backend.opt_into_local_list(ORG)
    backend.add_keycode("user-5", LIST_CODE, organisation_id=ORG)
    charger = await start_charger(server, version, list_version=3)

    assert (await charger.until(step="boot"))["status"] == "Accepted"
    assert (await charger.until(step="authorize_valid"))["status"] == "Accepted"
    started = await charger.until(step="transaction_started")
    assert started["status"] == started["repeat_status"] == "Accepted"
    await charger.until(step="transaction_ended")
    await charger.until(step="security_event")
    assert (await charger.until(step="authorize_invalid"))["statuses"] == ["Invalid"] * 5
    assert (await charger.until(step="authorize_locked"))["status"] == "Blocked"
    await charger.until(step="ready")

    # Local list: the charger reported version 3, which the server never sent -> Full, > 3.
    await charger.until(push="GetLocalListVersion")
    full = await charger.until(push="SendLocalList", update_type="Full")
    assert full["version"] > 3
    assert full["added"] == [LIST_CODE]
    await eventually(lambda: backend.chargers["CP1"].list_version == full["version"])
    backend.add_keycode("user-6", LATER_CODE, organisation_id=ORG)
    differential = await charger.until(push="SendLocalList", update_type="Differential")
    assert differential["version"] == full["version"] + 1
    assert differential["added"] == [LATER_CODE]

    # Bluetooth PIN push, accepted -> active.
    command_id = backend.set_bluetooth_pin("CP1", BLUETOOTH_PIN, changeable=False)
    if version == "ocpp2.0.1":
        push = await charger.until(push="SetVariables")
        assert push["components"] == ["EvAccessBluetoothCtrlr"]
        assert push["variables"] == {
            "Pin": BLUETOOTH_PIN,
            "PinRequired": "true",
            "PinChangeable": "false",
        }
    else:
        push = await charger.until(push="ChangeConfiguration", key="EvAccessBluetoothPin")
        assert push["value"] == BLUETOOTH_PIN
        await charger.until(push="ChangeConfiguration", key="EvAccessBluetoothPinChangeable")
    await eventually(lambda: command_id in backend.command_results)
    assert backend.command_results[command_id] is True
    assert backend.chargers["CP1"].active_pin == BLUETOOTH_PIN

    await charger.finish()
    await eventually(lambda: not backend.chargers["CP1"].online)

    # Server-side state: one transaction stored once, the events recorded.
    assert backend.chargers["CP1"].boot is not None
    assert len(backend.transactions) == 1
    ((_, events),) = backend.transactions.items()
    assert sorted(e.event_type.value for e in events.values()) == ["Ended", "Started"]
    types = [e.event_type for e in backend.security_events]
    assert "evaccess.BluetoothPinLockout" in types
    assert "evaccess.KeypadLockout" in types
    assert_no_secret_logged(caplog)
