"""A lean raw-frame OCPP-J load generator: plain ``websockets`` clients in one asyncio loop.

Frames are pre-encoded (only the message id changes); no ``ocpp`` library on this side,
because a generator built on it costs as much CPU as the server it measures (measured with
ocpp 2.1.0 on 2 cores): it would need its own core. Three workloads:

- closed loop: N chargers, each sends Authorize (KeyCode) and waits for the reply, again;
- open loop: a fixed total rate spread over N chargers, every send scheduled in advance and
  latency measured from the *scheduled* time, so a slow server is not let off the hook by
  the generator waiting for it (no coordinated omission);
- idle: N chargers connected and silent, for the server's memory per connection.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from evaccess.bench.fleet import FLEET_FIRMWARE, FLEET_MODEL, FLEET_VENDOR
from evaccess.bench.targets import ChargerIdentity, ServerProcess

CONNECT_CONCURRENCY = 200


@dataclass(frozen=True, kw_only=True, slots=True)
class LoadResult:
    messages: int
    seconds: float
    latencies_s: Sequence[float]
    refused: int = 0
    first_refusal: str | None = None
    """The first reply that was not ``Accepted``, for the error message."""
    """Replies that were not ``Accepted``: a server that refuses (or throttles) the codes
    it is sent is not doing the work being measured, so the bench rejects such a run."""

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


ACCEPTED = '"Accepted"'
# What a lean charger answers to a server-initiated Call (OCPP-J: every Call gets a reply).
CALL_ANSWERS = {"GetLocalListVersion": '{"versionNumber":0}'}


async def recv_reply(connection: ClientConnection) -> str:
    """The next CallResult/CallError for us, answering any server Call that comes first
    (evaccess asks a keypad charger its local list version when it connects)."""
    while True:
        message = await connection.recv()
        text = message if isinstance(message, str) else message.decode()
        if not text.startswith("[2,"):
            return text
        frame = json.loads(text)
        answer = CALL_ANSWERS.get(frame[2])
        if answer is None:
            await connection.send(json.dumps([4, frame[1], "NotImplemented", "", {}]))
        else:
            await connection.send(f"[3,{json.dumps(frame[1])},{answer}]")


def authorize_frame_parts(keycode: str) -> tuple[str, str]:
    """The Authorize frame split around its message id: ``prefix + id + suffix``."""
    payload = json.dumps(
        {"idToken": {"idToken": keycode, "type": "KeyCode"}}, separators=(",", ":")
    )
    return '[2,"', f'","Authorize",{payload}]'


async def _connect_one(
    url: str, identity: ChargerIdentity, compression: str | None = None
) -> ClientConnection:
    headers = {}
    if identity.password is not None:
        token = base64.b64encode(f"{identity.serial}:{identity.password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return await connect(
        f"{url}/{identity.serial}",
        subprotocols=[Subprotocol("ocpp2.0.1")],
        additional_headers=headers,
        compression=compression,
        proxy=None,
        open_timeout=60,
        ping_interval=None,
        max_queue=4,
    )


def boot_frame(serial: str) -> str:
    payload = {
        "reason": "PowerUp",
        "chargingStation": {
            "vendorName": FLEET_VENDOR, "model": FLEET_MODEL, "firmwareVersion": FLEET_FIRMWARE,
            "serialNumber": serial,
        },
    }  # fmt: skip
    return json.dumps([2, "boot", "BootNotification", payload], separators=(",", ":"))


async def connect_many(
    server: ServerProcess, count: int, *, first: int = 0
) -> list[ClientConnection]:
    """Open ``count`` connections and boot each (B01: a CSMS may refuse other messages
    before BootNotification), ``CONNECT_CONCURRENCY`` at a time."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(index: int) -> ClientConnection:
        identity = server.identity(index)
        async with gate:
            connection = await _connect_one(server.url, identity, server.compression)
            await connection.send(boot_frame(identity.serial))
            await recv_reply(connection)
            return connection

    return list(await asyncio.gather(*(one(first + i) for i in range(count))))


async def close_all(connections: Sequence[ClientConnection]) -> None:
    await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)


async def closed_loop(
    server: ServerProcess,
    connections: Sequence[ClientConnection],
    *,
    warmup_s: float,
    duration_s: float,
    on_window: Callable[[bool], None] | None = None,
) -> LoadResult:
    """Every connection keeps exactly one Authorize in flight; counts replies in the window,
    which opens after ``warmup_s`` once every connection has had a reply."""
    loop = asyncio.get_running_loop()
    measuring = False
    stop = False
    latencies: list[float] = []
    count = refused = 0
    first_refusal: str | None = None
    warmed: set[int] = set()
    all_warm = asyncio.Event()

    async def charger(index: int, connection: ClientConnection) -> None:
        nonlocal count, refused, first_refusal
        prefix, suffix = authorize_frame_parts(server.identity(index).keycode)
        sequence = 0
        clock = time.perf_counter
        while not stop:
            sequence += 1
            started = clock()
            await connection.send(f"{prefix}{index}-{sequence}{suffix}")
            reply = await recv_reply(connection)
            warmed.add(index)
            if len(warmed) == len(connections):
                all_warm.set()
            if ACCEPTED not in reply:
                refused += 1
                first_refusal = first_refusal or str(reply)[:200]
            if measuring:
                latencies.append(clock() - started)
                count += 1

    tasks = [loop.create_task(charger(i, c)) for i, c in enumerate(connections)]
    await asyncio.sleep(warmup_s)
    # Steady state: every charger has had at least one reply (a server's per-charger caches
    # are warm, whichever server it is) before the window opens.
    warm = loop.create_task(all_warm.wait())
    await asyncio.wait([warm, *tasks], return_when=asyncio.FIRST_COMPLETED)
    warm.cancel()
    if on_window:
        on_window(True)
    measuring = True
    began = time.perf_counter()
    await asyncio.sleep(duration_s)
    measuring = False
    elapsed = time.perf_counter() - began
    if on_window:
        on_window(False)
    stop = True
    await asyncio.gather(*tasks, return_exceptions=True)
    return LoadResult(
        messages=count,
        seconds=elapsed,
        latencies_s=latencies,
        refused=refused,
        first_refusal=first_refusal,
    )


async def open_loop(
    server: ServerProcess,
    connections: Sequence[ClientConnection],
    *,
    rate: float,
    duration_s: float,
    on_window: Callable[[bool], None] | None = None,
) -> LoadResult:
    """``rate`` Authorize/s in total, message k sent by charger k mod N at t0 + k/rate."""
    loop = asyncio.get_running_loop()
    n = len(connections)
    total = int(rate * duration_s)
    latencies: list[float] = []
    refused = 0
    t0 = loop.time() + 0.2  # let every task reach its first sleep

    async def charger(index: int, connection: ClientConnection) -> None:
        nonlocal refused
        prefix, suffix = authorize_frame_parts(server.identity(index).keycode)
        for k in range(index, total, n):
            scheduled = t0 + k / rate
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await connection.send(f"{prefix}{index}-{k}{suffix}")
            if ACCEPTED not in await recv_reply(connection):
                refused += 1
            latencies.append(loop.time() - scheduled)

    if on_window:
        on_window(True)
    began = loop.time()
    await asyncio.gather(*(charger(i, c) for i, c in enumerate(connections)))
    elapsed = loop.time() - max(began, t0)
    if on_window:
        on_window(False)
    return LoadResult(
        messages=len(latencies), seconds=elapsed, latencies_s=latencies, refused=refused
    )
