"""Fixtures for the OCPP endpoint: a server on a free port with the in-memory backend, a raw
charger client, and a recorder that checks every frame the server sends against the OCA
JSON schemas with ``jsonschema`` (independent of the server's fastjsonschema validators)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import AsyncIterator, Callable, Iterator
from importlib import resources
from typing import Any

import jsonschema
import pytest
from websockets.asyncio.client import ClientConnection, connect

from evaccess.domain.clock import ManualClock
from evaccess.server.ocpp.memory_backend import InMemoryOcppBackend
from evaccess.server.ocpp.server import OcppServer, serve_ocpp
from evaccess.server.ocpp.session import OcppSession

PASSWORD = "a-long-charger-password-0001"
ORG = "org-1"

# Secrets used in the suite: no log line may contain any of them. Keypad codes have the
# maximum 8 digits so that no timestamp, transaction id or message id contains one by chance.
KEYCODE = "83920571"
WRONG_KEYCODE = "61047298"
BLUETOOTH_PIN = "402913"
CHANGED_PIN = "731846"
SECRETS = (KEYCODE, WRONG_KEYCODE, BLUETOOTH_PIN, CHANGED_PIN, PASSWORD)

# RPC framework error codes per version (2.0.1 Part 4 §4.2.3; OCPP-J 1.6 §4.2.3).
ERROR_CODES = {
    "ocpp2.0.1": {
        "FormatViolation",
        "GenericError",
        "InternalError",
        "MessageTypeNotSupported",
        "NotImplemented",
        "NotSupported",
        "OccurrenceConstraintViolation",
        "PropertyConstraintViolation",
        "ProtocolError",
        "RpcFrameworkError",
        "SecurityError",
        "TypeConstraintViolation",
    },
    "ocpp1.6": {
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",
        "TypeConstraintViolation",
        "GenericError",
    },
}


def _oca_schema(version: str, action: str, response: bool) -> dict[str, Any]:
    folder = "v201" if version == "ocpp2.0.1" else "v16"
    if version == "ocpp2.0.1":
        name = f"{action}{'Response' if response else 'Request'}.json"
    else:
        name = f"{action}{'Response' if response else ''}.json"
    path = resources.files("ocpp") / folder / "schemas" / name
    return json.loads(path.read_text(encoding="utf-8-sig"))


class FrameRecorder:
    """Every frame any server session sends, validated with jsonschema as it is sent."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self._inbound_actions: dict[tuple[int, str], str] = {}

    def inbound_call(self, session: OcppSession, message_id: str, action: str) -> None:
        self._inbound_actions[(id(session), message_id)] = action

    def sent(self, session: OcppSession, text: str) -> None:
        version = session.version.value
        self.frames.append((version, text))
        frame = json.loads(text)
        try:
            if frame[0] == 2:
                self._check(version, frame[2], False, frame[3])
            elif frame[0] == 3:
                action = self._inbound_actions.pop((id(session), frame[1]))
                self._check(version, action, True, frame[2])
            else:
                assert frame[0] == 4 and len(frame) == 5, frame
                assert frame[2] in ERROR_CODES[version], frame[2]
                assert frame[4] == {}, "CallError details must not echo anything"
        except (AssertionError, KeyError, jsonschema.ValidationError) as exc:
            self.errors.append(f"{text[:200]}: {exc}")

    @staticmethod
    def _check(version: str, action: str, response: bool, payload: Any) -> None:
        schema = _oca_schema(version, action, response)
        cls = jsonschema.validators.validator_for(schema)
        cls(schema, format_checker=cls.FORMAT_CHECKER).validate(payload)


@pytest.fixture(scope="session")
def frame_recorder() -> Iterator[FrameRecorder]:
    recorder = FrameRecorder()
    original_send = OcppSession._send
    original_on_call = OcppSession._on_call

    async def send(self: OcppSession, text: str) -> None:
        recorder.sent(self, text)
        await original_send(self, text)

    async def on_call(self: OcppSession, call: Any, size: int) -> None:
        recorder.inbound_call(self, call.message_id, call.action)
        await original_on_call(self, call, size)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(OcppSession, "_send", send)
        patch.setattr(OcppSession, "_on_call", on_call)
        yield recorder


@pytest.fixture(autouse=True)
def _frames_conform(frame_recorder: FrameRecorder) -> Iterator[None]:
    before = len(frame_recorder.errors)
    yield
    assert frame_recorder.errors[before:] == []


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
