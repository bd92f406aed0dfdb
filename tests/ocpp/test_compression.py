"""WebSocket compression (issue 11): OCPP-J 2.0.1 Part 4 §3.3 requires a CSMS to support
permessage-deflate (RFC 7692). The endpoint accepts it when a charger offers it, with
settings that keep an idle charger cheap: no context takeover either way, so neither zlib
stream outlives a message."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
from websockets.asyncio.client import ClientConnection, connect

from evaccess.server.ocpp.memory_backend import InMemoryOcppBackend
from evaccess.server.ocpp.server import Compression, OcppServer, serve_ocpp

from .conftest import PASSWORD, RawCharger, basic_auth


async def _open(server: OcppServer, charger_id: str, *, deflate: bool) -> ClientConnection:
    return await connect(
        f"ws://127.0.0.1:{server.port}/ocpp/{charger_id}",
        subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
        additional_headers=basic_auth(charger_id, PASSWORD),
        compression="deflate" if deflate else None,
    )


def _extensions(ws: ClientConnection) -> str:
    assert ws.response is not None
    return ws.response.headers.get("Sec-WebSocket-Extensions", "")


async def test_compression_is_accepted_when_offered_and_costs_no_context(
    server: OcppServer,
) -> None:
    ws = await _open(server, "CP1", deflate=True)
    offered = _extensions(ws)
    assert offered.startswith("permessage-deflate")
    assert "server_no_context_takeover" in offered and "client_no_context_takeover" in offered
    assert "server_max_window_bits=12" in offered
    charger = RawCharger(ws, "ocpp2.0.1")
    try:
        await charger.boot()
        assert (await charger.call("Heartbeat", {}))[0] == 3
        await charger.next_server_call("GetLocalListVersion")
    finally:
        await charger.close()


async def test_a_charger_that_does_not_offer_it_gets_none(server: OcppServer) -> None:
    ws = await _open(server, "CP1", deflate=False)
    assert _extensions(ws) == ""
    await ws.close()


async def test_compression_can_be_switched_off(backend: InMemoryOcppBackend, clock) -> None:
    server = await serve_ocpp(backend, port=0, clock=clock, compression=None)
    try:
        ws = await _open(server, "CP1", deflate=True)
        assert _extensions(ws) == ""
        await ws.close()
    finally:
        await server.close()


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="window"):
        Compression(window_bits=8)
    with pytest.raises(ValueError, match="level"):
        Compression(level=10)
    with pytest.raises(ValueError, match="mem_level"):
        Compression(mem_level=0)


async def test_an_idle_compressed_charger_costs_about_what_an_uncompressed_one_does(
    backend: InMemoryOcppBackend, clock
) -> None:
    """Python-side memory (tracemalloc traces zlib's allocations too) of N booted, idle
    chargers, both ends in this process: compression may add at most 2 KB per end, 4 KB
    per charger (a zlib stream kept between messages would add 10 to 40 KB per end). What
    it does add, 2.5-3 KB for both ends, is no zlib state: it is the longer handshake
    (the ``Sec-WebSocket-Extensions`` headers) that websockets keeps per connection,
    request and response at each end. A first batch of
    each kind warms up what is allocated once (it costs some 10 KB per charger more, and is
    not counted); then the batches run plain, compressed, compressed, plain and each kind's
    two are averaged, so a cost that drifts with the number of open connections (the
    server's tables growing) cancels out instead of landing on whichever kind comes
    second."""
    n = 40  # 20 came within 30 bytes of the bound once in a full run: fixed costs per batch, halved
    warm_up = (False, True)
    order = (*warm_up, False, True, True, False)
    for index in range(4, 4 + len(order) * n):
        backend.add_charger(f"CP{index}", PASSWORD, organisation_id="org-1")
    server = await serve_ocpp(backend, port=0, clock=clock)
    backend.notifier = server.notifier
    chargers: list[RawCharger] = []

    async def idle_cost(first: int, *, deflate: bool) -> float:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for index in range(first, first + n):
            charger = RawCharger(await _open(server, f"CP{index}", deflate=deflate), "ocpp2.0.1")
            await charger.boot()
            await charger.next_server_call("GetLocalListVersion")
            assert (await charger.call("Heartbeat", {}))[0] == 3
            chargers.append(charger)
        gc.collect()
        return (tracemalloc.get_traced_memory()[0] - before) / n

    tracemalloc.start()
    costs: dict[bool, list[float]] = {False: [], True: []}
    try:
        for batch, deflate in enumerate(order):
            cost = await idle_cost(4 + batch * n, deflate=deflate)
            if batch >= len(warm_up):
                costs[deflate].append(cost)
        plain, compressed = (sum(costs[kind]) / len(costs[kind]) for kind in (False, True))
    finally:
        tracemalloc.stop()
        for charger in chargers:
            await charger.close()
        await server.close()
    assert compressed - plain < 2 * 2048, (plain, compressed)
