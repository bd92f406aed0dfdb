"""Races in one charger's session, over real sockets: answers matched to the right command,
no command sent twice, and no server Call before the BootNotification is answered.

The backend is the in-memory one, but every port method yields to the event loop once, as
a database driver does: without that the session's background fetch could never run while
a charger's answer is being handled, and the races below could not happen in a test."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from evaccess.domain.clock import ManualClock
from evaccess.protocol.ocpp_frames import OcppVersion
from evaccess.server.ocpp.backend import BootInfo, ChargerCommand, SetBluetoothPin
from evaccess.server.ocpp.commands import Registration
from evaccess.server.ocpp.handlers import HANDLERS, HandlerContext, Reply
from evaccess.server.ocpp.memory_backend import InMemoryOcppBackend
from evaccess.server.ocpp.server import OcppServer
from tests.support import eventually

from .conftest import (
    BLUETOOTH_PIN,
    BOOT_PAYLOADS,
    KEYCODE,
    ORG,
    PASSWORD,
    RawCharger,
    accept_all_variables,
    basic_auth,
)

PIN_PUSH = {"ocpp2.0.1": "SetVariables", "ocpp1.6": "ChangeConfiguration"}
VERSIONS = ["ocpp2.0.1", "ocpp1.6"]
ROUNDS = 25


class YieldingBackend(InMemoryOcppBackend):
    """The in-memory backend with one scheduling point per call, like a database driver."""

    async def boot(self, charger_id: str, info: BootInfo) -> None:
        await asyncio.sleep(0)
        await super().boot(charger_id, info)

    async def pending_commands(self, charger_id: str) -> list[ChargerCommand]:
        await asyncio.sleep(0)
        return await super().pending_commands(charger_id)

    async def command_result(self, charger_id: str, command_id: str, *, accepted: bool) -> None:
        await asyncio.sleep(0)
        await super().command_result(charger_id, command_id, accepted=accepted)

    async def local_list_version(self, charger_id: str) -> int:
        await asyncio.sleep(0)
        return await super().local_list_version(charger_id)

    async def request_local_list_resync(self, charger_id: str, *, charger_version: int) -> None:
        await asyncio.sleep(0)
        await super().request_local_list_resync(charger_id, charger_version=charger_version)


@pytest.fixture
def backend(clock: ManualClock) -> InMemoryOcppBackend:
    backend = YieldingBackend(clock=clock)
    backend.add_charger("CP1", PASSWORD, organisation_id=ORG)
    backend.add_keycode("user-1", KEYCODE, organisation_id=ORG)
    return backend


def closed(ws: ClientConnection) -> Callable[[], str | None]:
    """For ``eventually(..., unless=closed(ws))``: give up at once if the server closes ``ws``."""
    return lambda: None if ws.close_code is None else f"server closed: {ws.close_code}"


@pytest.fixture
async def raw(server: OcppServer) -> AsyncIterator[Callable[[str], Awaitable[ClientConnection]]]:
    opened: list[ClientConnection] = []

    async def open_(version: str) -> ClientConnection:
        ws = await connect(
            f"ws://127.0.0.1:{server.port}/ocpp/CP1",
            subprotocols=[version],  # type: ignore[list-item]
            additional_headers=basic_auth("CP1", PASSWORD),
            compression=None,
        )
        opened.append(ws)
        return ws

    yield open_
    for ws in opened:
        await ws.close()


def _pin_pushes(calls: list[list[Any]], version: str) -> int:
    """How many times the Pin variable (2.0.1) or key (1.6J) was written."""
    if version == "ocpp2.0.1":
        return sum(
            d["variable"]["name"] == "Pin"
            for c in calls
            if c[2] == "SetVariables"
            for d in c[3]["setVariableData"]
        )
    return sum(
        c[2] == "ChangeConfiguration" and c[3]["key"] == "EvAccessBluetoothPin" for c in calls
    )


# --- 1: answers match commands by message id ---------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_reconnect_and_boot_with_a_list_update_pending_keeps_every_command(
    open_charger, backend: InMemoryOcppBackend, server: OcppServer, version: str
) -> None:
    """A list update left from the last connection, and a charger whose list differs: the
    full list supersedes the update while the charger boots, and the update may be on the
    wire by then. Every round the connection stays up (no 1011: nothing pops an empty
    queue), and every queued command is delivered: the full list, and on every other round
    a credential revocation queued behind the update (neither is dropped in its place)."""
    backend.opt_into_local_list(ORG)
    record = backend.chargers["CP1"]
    for n in range(ROUNDS):
        backend.add_keycode(f"user-{n + 2}", f"{n + 2:04d}", organisation_id=ORG)  # a list update
        behind = None if n % 2 else backend.revoke_credentials("CP1", f"phone-{n}")
        charger: RawCharger = await open_charger(version=version)  # list version 0: differs
        await charger.boot()
        await eventually(
            lambda: charger.list_version == record.list_version > 0, unless=closed(charger.ws)
        )
        await eventually(lambda: backend.outbox["CP1"] == [], unless=closed(charger.ws))
        if behind is not None:
            assert backend.command_results[behind] is True
        assert (await charger.call("Heartbeat", {}))[0] == 3  # still connected
        await charger.close()
        await eventually(lambda: not record.online)
    assert server.stats()["call_timeouts"] == 0


# --- 2: a command superseded before it is sent is not sent ------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_pin_pushed_once_per_boot(
    open_charger, backend: InMemoryOcppBackend, version: str
) -> None:
    """The PIN queued at registration is superseded by the boot's re-push: the charger gets
    the PIN once on its first connection, and once again on every later boot."""
    backend.set_bluetooth_pin("CP1", BLUETOOTH_PIN)
    for _ in range(3):
        charger: RawCharger = await open_charger(version=version)
        calls: list[list[Any]] = []
        await charger.boot()

        def delivered() -> bool:
            while not charger.server_calls.empty():
                calls.append(charger.server_calls.get_nowait())
            return not any(isinstance(c, SetBluetoothPin) for c in backend.outbox["CP1"])

        await eventually(delivered, unless=closed(charger.ws))
        # One more round trip: a second push would have been sent right behind the first.
        assert (await charger.call("Heartbeat", {}))[0] == 3
        delivered()
        assert _pin_pushes(calls, version) == 1
        assert backend.chargers["CP1"].active_pin == BLUETOOTH_PIN
        await charger.close()
        await eventually(lambda: not backend.chargers["CP1"].online)


# --- 3: nothing before the boot is answered ---------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_no_server_call_before_the_boot_is_answered(
    raw, backend: InMemoryOcppBackend, version: str
) -> None:
    """Frame order as the charger sees it, with a PIN push and the list probe waiting."""
    list_key = "versionNumber" if version == "ocpp2.0.1" else "listVersion"
    for n in range(ROUNDS):
        backend.set_bluetooth_pin("CP1", BLUETOOTH_PIN)
        ws = await raw(version)
        await ws.send(json.dumps([2, f"boot-{n}", "BootNotification", BOOT_PAYLOADS[version]]))
        frames: list[list[Any]] = []
        async with asyncio.timeout(5):
            # Until the boot is answered and the PIN and the list probe have come.
            while not {"GetLocalListVersion", PIN_PUSH[version]} <= {
                f[2] for f in frames if f[0] == 2
            } or not any(f[0] == 3 and f[1] == f"boot-{n}" for f in frames):
                frame = json.loads(await ws.recv())
                frames.append(frame)
                if frame[0] == 2:
                    answer = (
                        {list_key: 0}
                        if frame[2] == "GetLocalListVersion"
                        else accept_all_variables(frame[3])
                        if frame[2] == "SetVariables"
                        else {"status": "Accepted"}
                    )
                    await ws.send(json.dumps([3, frame[1], answer]))
        boot_answer = next(i for i, f in enumerate(frames) if f[0] == 3 and f[1] == f"boot-{n}")
        assert frames[boot_answer][2]["status"] == "Accepted"
        first_call = next(i for i, f in enumerate(frames) if f[0] == 2)
        assert boot_answer < first_call, [f[:3] for f in frames]
        await ws.close()
        await eventually(lambda: not backend.chargers["CP1"].online)


@pytest.mark.parametrize("version", VERSIONS)
async def test_while_pending_only_configuration_goes_out(
    open_charger, backend: InMemoryOcppBackend, monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    """The server answers Accepted today; a boot answered Pending (the dispatch table's
    entry wrapped) lets the PIN settings through (B02, 1.6 §4.2), not the list probe."""
    key = (OcppVersion(version), "BootNotification")
    accept = HANDLERS[key]

    async def pending(ctx: HandlerContext, payload: dict[str, Any]) -> Reply:
        reply = await accept(ctx, payload)
        return replace(
            reply, payload={**reply.payload, "status": "Pending"}, registration=Registration.PENDING
        )

    monkeypatch.setitem(HANDLERS, key, pending)
    backend.set_bluetooth_pin("CP1", BLUETOOTH_PIN)
    charger: RawCharger = await open_charger(version=version)
    reply = await charger.call("BootNotification", BOOT_PAYLOADS[version])
    assert reply[2]["status"] == "Pending"
    await eventually(
        lambda: backend.chargers["CP1"].active_pin == BLUETOOTH_PIN, unless=closed(charger.ws)
    )
    # The list probe, queued first, would have gone out before this answer.
    assert (await charger.call("Heartbeat", {}))[0] == 3
    calls = []
    while not charger.server_calls.empty():
        calls.append(charger.server_calls.get_nowait()[2])
    assert set(calls) == {PIN_PUSH[version]}
    monkeypatch.setitem(HANDLERS, key, accept)
    await charger.boot()
    await charger.next_server_call("GetLocalListVersion")
