"""Fixtures for the OCPP endpoint: a server on a free port with the in-memory backend and a
raw charger client. Every frame the server sends is checked against the OCA JSON schemas by
the suite-wide frame guard (``tests/ocpp/frame_guard.py``, loaded by ``tests/conftest.py``)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from evaccess.domain.clock import ManualClock
from evaccess.server.ocpp.memory_backend import InMemoryOcppBackend
from evaccess.server.ocpp.server import OcppServer, serve_ocpp

PASSWORD = "a-long-charger-password-0001"
ORG = "org-1"

# Secrets used in the suite: no log line may contain any of them. Keypad codes have the
# maximum 8 digits so that no timestamp, transaction id or message id contains one by chance.
KEYCODE = "83920571"
WRONG_KEYCODE = "61047298"
BLUETOOTH_PIN = "402913"
CHANGED_PIN = "731846"
SECRETS = (KEYCODE, WRONG_KEYCODE, BLUETOOTH_PIN, CHANGED_PIN, PASSWORD)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def backend(clock: ManualClock) -> InMemoryOcppBackend:
    backend = InMemoryOcppBackend(clock=clock)
    for n in range(1, 4):
        backend.add_charger(f"CP{n}", PASSWORD, organisation_id=ORG)
    backend.add_keycode("user-1", KEYCODE, organisation_id=ORG)
    return backend


@pytest.fixture
async def server(backend: InMemoryOcppBackend, clock: ManualClock) -> AsyncIterator[OcppServer]:
    server = await serve_ocpp(backend, host="127.0.0.1", port=0, clock=clock, call_timeout_s=2.0)
    backend.notifier = server.notifier
    yield server
    await server.close()


def basic_auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


Responder = Callable[[dict[str, Any]], dict[str, Any]]

BOOT_PAYLOADS = {
    "ocpp2.0.1": {
        "chargingStation": {"model": "Pulsar", "vendorName": "Wallbox"},
        "reason": "PowerUp",
    },
    "ocpp1.6": {"chargePointVendor": "Wallbox", "chargePointModel": "Pulsar"},
}
"""BootNotification payloads; the server sends nothing before a charger boots (or, having
reconnected without rebooting, sends another request first)."""


def accept_all_variables(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "setVariableResult": [
            {
                "attributeStatus": "Accepted",
                "component": item["component"],
                "variable": item["variable"],
            }
            for item in payload["setVariableData"]
        ]
    }


class RawCharger:
    """A bare OCPP-J client: sends any text, answers server CALLs from ``responders``."""

    def __init__(self, ws: ClientConnection, version: str) -> None:
        self.ws = ws
        self.version = version
        self.server_calls: asyncio.Queue[list[Any]] = asyncio.Queue()
        self.replies: asyncio.Queue[list[Any]] = asyncio.Queue()
        self._ids = itertools.count(1)
        list_key = "versionNumber" if version == "ocpp2.0.1" else "listVersion"
        self.list_version = 0
        self.responders: dict[str, Responder] = {
            "GetLocalListVersion": lambda p: {list_key: self.list_version},
            "SetVariables": accept_all_variables,
            "ChangeConfiguration": lambda p: {"status": "Accepted"},
            "SendLocalList": self._send_local_list,
        }
        self._reader = asyncio.create_task(self._read())

    def _send_local_list(self, payload: dict[str, Any]) -> dict[str, Any]:
        key = "versionNumber" if self.version == "ocpp2.0.1" else "listVersion"
        self.list_version = payload[key]
        return {"status": "Accepted"}

    async def _read(self) -> None:
        async for text in self.ws:
            frame = json.loads(text)
            if frame[0] == 2:
                await self.server_calls.put(frame)
                responder = self.responders.get(frame[2])
                if responder is not None:
                    await self.ws.send(json.dumps([3, frame[1], responder(frame[3])]))
            else:
                await self.replies.put(frame)

    async def send_raw(self, text: str) -> list[Any]:
        await self.ws.send(text)
        return await asyncio.wait_for(self.replies.get(), 5)

    async def call(self, action: str, payload: dict[str, Any]) -> list[Any]:
        message_id = f"c{next(self._ids)}"
        reply = await self.send_raw(json.dumps([2, message_id, action, payload]))
        assert reply[1] == message_id
        return reply

    async def boot(self) -> list[Any]:
        reply = await self.call("BootNotification", BOOT_PAYLOADS[self.version])
        assert reply[2]["status"] == "Accepted"
        return reply

    async def next_server_call(self, action: str) -> list[Any]:
        while True:
            frame = await asyncio.wait_for(self.server_calls.get(), 5)
            if frame[2] == action:
                return frame

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


@pytest.fixture
async def open_charger(server: OcppServer) -> AsyncIterator[Callable[..., Any]]:
    opened: list[RawCharger] = []

    async def open_(
        charger_id: str = "CP1", version: str = "ocpp2.0.1", password: str = PASSWORD
    ) -> RawCharger:
        ws = await connect(
            f"ws://127.0.0.1:{server.port}/ocpp/{charger_id}",
            subprotocols=[version],  # type: ignore[list-item]
            additional_headers=basic_auth(charger_id, password),
            compression=None,
        )
        charger = RawCharger(ws, version)
        opened.append(charger)
        return charger

    yield open_
    for charger in opened:
        await charger.close()


def assert_no_secret_logged(caplog: pytest.LogCaptureFixture) -> None:
    """No server-side log line (the test's own websockets client is not the server) holds
    a secret used in the suite."""
    for record in caplog.records:
        if record.name.startswith("websockets.client"):
            continue
        line = record.getMessage()
        for secret in SECRETS:
            assert secret not in line, f"secret in log line: {record.name}"
