"""Benchmark of the OCPP endpoint: prints figures (docs/ocpp.md "Measured"). Not a test.

Three servers, each in its own process, driven by a lean raw-frame client in this process:

* ``evaccess``: ``serve_ocpp`` with the in-memory backend (Basic Auth, schema validation,
  keypad lookup through HMAC and the lockout);
* ``library``: the ``ocpp`` library's v201 ChargePoint answering Authorize (defaults,
  permessage-deflate off for a fair memory figure);
* ``echo``: a websockets server echoing every message (the ceiling).

    .venv/bin/python tests/ocpp/bench_endpoint.py [--seconds 5] [--idle 10000]

Figures: closed-loop Authorize round trips/s at 1, 100 and 1000 chargers with server CPU
µs per round trip; open-loop p50/p99 latency at 3,000 msg/s over 1000 chargers; server RSS
per idle connection; and whether one process holds ``--idle`` chargers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import subprocess
import sys
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

PASSWORD = "bench-password-0123456789"
KEYCODE = "4711"
AUTHORIZE = {"idToken": {"idToken": KEYCODE, "type": "KeyCode"}}


# --- server side (run in a child process) ----------------------------------------------------


async def _serve(kind: str, chargers: int) -> None:
    import logging

    logging.disable(logging.CRITICAL)
    from websockets.asyncio.server import serve

    if kind == "evaccess":
        from evaccess.domain.clock import SystemClock
        from evaccess.server.ocpp.memory_backend import InMemoryOcppBackend
        from evaccess.server.ocpp.server import serve_ocpp

        backend = InMemoryOcppBackend(clock=SystemClock())
        for n in range(chargers):
            backend.add_charger(f"CP{n}", PASSWORD, organisation_id="org")
        backend.add_keycode("user", KEYCODE, organisation_id="org")
        server = await serve_ocpp(backend, host="127.0.0.1", port=0)
        port = server.port
    elif kind == "library":
        from ocpp.routing import on
        from ocpp.v201 import ChargePoint, call_result

        class Csms(ChargePoint):  # type: ignore[misc]
            @on("Authorize")
            def on_authorize(self, id_token: dict[str, Any], **kwargs: Any) -> Any:
                return call_result.Authorize(id_token_info={"status": "Accepted"})

        async def handler(ws: Any) -> None:
            await Csms(ws.request.path.rsplit("/", 1)[-1], ws).start()

        lib = await serve(handler, "127.0.0.1", 0, subprotocols=["ocpp2.0.1"], compression=None)
        port = lib.sockets[0].getsockname()[1]
    else:

        async def echo(ws: Any) -> None:
            async for message in ws:
                await ws.send(message)

        plain = await serve(echo, "127.0.0.1", 0, subprotocols=["ocpp2.0.1"], compression=None)
        port = plain.sockets[0].getsockname()[1]
    print(port, flush=True)
    await asyncio.Future()


# --- client side -----------------------------------------------------------------------------


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Client:
    """One charger: sends CALLs, answers the server's CALLs (GetLocalListVersion)."""

    def __init__(self, ws: ClientConnection, *, echo: bool) -> None:
        self.ws = ws
        self.n = 0
        self.echo = echo
        """An echo server returns the CALL itself: any reply ends the round trip."""

    async def authorize(self) -> None:
        self.n += 1
        message_id = str(self.n)
        await self.ws.send(json.dumps([2, message_id, "Authorize", AUTHORIZE]))
        while True:
            frame = json.loads(await self.ws.recv())
            if self.echo:
                return
            if frame[0] == 2:
                await self.ws.send(json.dumps([3, frame[1], {"versionNumber": 0}]))
                continue
            if frame[1] == message_id:
                return


async def _open(port: int, count: int, *, echo: bool = False) -> list[Client]:
    async def one(n: int) -> Client:
        token = base64.b64encode(f"CP{n}:{PASSWORD}".encode()).decode()
        ws = await connect(
            f"ws://127.0.0.1:{port}/ocpp/CP{n}",
            subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
            additional_headers={"Authorization": f"Basic {token}"},
            compression=None,
            ping_interval=None,
            open_timeout=60,
        )
        return Client(ws, echo=echo)

    clients: list[Client] = []
    for start in range(0, count, 500):  # in batches: the listen backlog is finite
        clients += await asyncio.gather(*(one(n) for n in range(start, min(count, start + 500))))
    return clients


async def _closed_loop(clients: list[Client], seconds: float) -> int:
    done = 0
    deadline = time.perf_counter() + seconds

    async def run(client: Client) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await client.authorize()
            done += 1

    await asyncio.gather(*(run(c) for c in clients))
    return done


async def _open_loop(clients: list[Client], rate: float, seconds: float) -> list[float]:
    latencies: list[float] = []
    per_client = rate / len(clients)

    async def run(client: Client) -> None:
        await asyncio.sleep(random.random() / per_client)
        next_at = time.perf_counter()
        end = next_at + seconds
        while next_at < end:
            next_at += 1 / per_client
            start = time.perf_counter()
            await client.authorize()
            latencies.append(time.perf_counter() - start)
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    await asyncio.gather(*(run(c) for c in clients))
    return latencies


def _start_server(kind: str, chargers: int) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--chargers", str(chargers)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, int(process.stdout.readline())


async def _bench(kind: str, seconds: float, idle: int) -> None:
    for count in (1, 100, 1000):
        process, port = _start_server(kind, count)
        try:
            clients = await _open(port, count, echo=kind == "echo")
            await _closed_loop(clients, 0.5)  # warm up (schemas compile lazily)
            cpu0 = _cpu_s(process.pid)
            done = await _closed_loop(clients, seconds)
            cpu = _cpu_s(process.pid) - cpu0
            print(
                f"{kind:9s} closed loop {count:5d} chargers: {done / seconds:8.0f} round trips/s,"
                f" server CPU {cpu / done * 1e6:6.1f} µs/round trip",
                flush=True,
            )
            if count == 1000:
                latencies = sorted(await _open_loop(clients, 3000, seconds))
                p50 = latencies[len(latencies) // 2] * 1000
                p99 = latencies[int(len(latencies) * 0.99)] * 1000
                cpu0 = _cpu_s(process.pid)
                print(
                    f"{kind:9s} open loop 3000 msg/s, 1000 chargers: p50 {p50:.2f} ms,"
                    f" p99 {p99:.2f} ms ({len(latencies) / seconds:.0f} msg/s achieved)",
                    flush=True,
                )
            for client in clients:
                await client.ws.close()
        finally:
            process.kill()
            process.wait()
    if idle:
        process, port = _start_server(kind, idle)
        try:
            await asyncio.sleep(0.5)
            warm = await _open(port, 1, echo=kind == "echo")
            await warm[0].authorize()
            before = _rss_kb(process.pid)
            clients = await _open(port, idle, echo=kind == "echo")
            for client in clients[:10]:
                await client.authorize()
            if kind == "evaccess":
                # Every charger answered the server's GetLocalListVersion: sessions settled.
                await asyncio.gather(*(c.authorize() for c in clients))
            await asyncio.sleep(1.0)
            after = _rss_kb(process.pid)
            print(
                f"{kind:9s} idle: {len(clients)} chargers held, server RSS {after / 1024:.0f} MB,"
                f" {(after - before) / len(clients):.1f} KB per idle charger",
                flush=True,
            )
        finally:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", choices=["evaccess", "library", "echo"])
    parser.add_argument("--chargers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--kinds", default="evaccess,library,echo")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve, args.chargers))
        return
    for kind in args.kinds.split(","):
        asyncio.run(_bench(kind, args.seconds, args.idle))


if __name__ == "__main__":
    main()
