"""Benchmark of the OCPP endpoint: prints figures (docs/ocpp.md "Measured"). Not a test.

Three servers, each in its own process, driven by a lean raw-frame client in this process:

* ``evaccess``: ``serve_ocpp`` with the in-memory backend (Basic Auth, schema validation,
  keypad lookup through HMAC and the lockout);
* ``library``: the ``ocpp`` library's v201 ChargePoint answering Authorize (defaults,
  permessage-deflate off for a fair memory figure);
* ``echo``: a websockets server echoing every message (the ceiling);
* ``rawjson`` (on request): websockets + ``json`` answering every CALL, no validation.

    .venv/bin/python tests/ocpp/bench_endpoint.py [--seconds 3] [--rounds 3] [--idle 10000]

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
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
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
    elif kind == "rawjson":
        reply = {"idTokenInfo": {"status": "Accepted"}}

        async def answer(ws: Any) -> None:
            async for message in ws:
                await ws.send(json.dumps([3, json.loads(message)[1], reply]))

        raw = await serve(answer, "127.0.0.1", 0, subprotocols=["ocpp2.0.1"], compression=None)
        port = raw.sockets[0].getsockname()[1]
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

    async def close(self) -> None:
        await self.ws.close()


def _client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame (RFC 6455 §5.2) with the all-zero masking key, which leaves
    the payload as it is: the client spends nothing on masking."""
    length = len(payload)
    if length < 126:
        header = bytes([0x80 | opcode, 0x80 | length])
    else:
        header = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
    return header + b"\x00\x00\x00\x00" + payload


class LeanClient:
    """A charger on raw asyncio streams: the handshake by hand, one pre-built Authorize
    frame (OCPP-J needs a unique id only among outstanding calls), replies recognised by
    their first bytes. It costs the load generator far less CPU than the server under test,
    so the figures measure the server (docs/ocpp.md notes: a library client costs as much
    as the server)."""

    FRAME = _client_frame(json.dumps([2, "1", "Authorize", AUTHORIZE]).encode())

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, echo: bool
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.echo = echo

    @classmethod
    async def open(cls, port: int, n: int, *, echo: bool) -> LeanClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        token = base64.b64encode(f"CP{n}:{PASSWORD}".encode()).decode()
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /ocpp/CP{n} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: ocpp2.0.1\r\nAuthorization: Basic {token}\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert b" 101 " in head.split(b"\r\n", 1)[0], head[:40]
        return cls(reader, writer, echo=echo)

    async def _message(self) -> tuple[int, bytes]:
        header = await self.reader.readexactly(2)
        length = header[1] & 0x7F
        if length == 126:
            length = int.from_bytes(await self.reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self.reader.readexactly(8), "big")
        return header[0] & 0x0F, await self.reader.readexactly(length)

    async def authorize(self) -> None:
        self.writer.write(self.FRAME)
        while True:
            opcode, payload = await self._message()
            if opcode == 0x9:  # ping -> pong
                self.writer.write(_client_frame(payload, 0xA))
                continue
            if opcode != 0x1:
                continue
            if self.echo or payload.startswith(b"[3"):
                return
            if payload.startswith(b"[2"):  # a server CALL (GetLocalListVersion)
                message_id = json.loads(payload)[1]
                answer = json.dumps([3, message_id, {"versionNumber": 0}]).encode()
                self.writer.write(_client_frame(answer))

    async def close(self) -> None:
        self.writer.close()


async def _open_lean(port: int, count: int, *, echo: bool = False) -> list[LeanClient]:
    clients: list[LeanClient] = []
    for start in range(0, count, 500):
        batch = range(start, min(count, start + 500))
        clients += await asyncio.gather(*(LeanClient.open(port, n, echo=echo) for n in batch))
    return clients


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


async def _closed_loop(clients: Sequence[Client | LeanClient], seconds: float) -> int:
    done = 0
    deadline = time.perf_counter() + seconds

    async def run(client: Client | LeanClient) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await client.authorize()
            done += 1

    await asyncio.gather(*(run(c) for c in clients))
    return done


async def _open_loop(
    clients: Sequence[Client | LeanClient], rate: float, seconds: float
) -> list[float]:
    latencies: list[float] = []
    per_client = rate / len(clients)

    async def run(client: Client | LeanClient) -> None:
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


async def _throughput(kind: str, count: int, seconds: float) -> tuple[float, float]:
    """Closed loop: (round trips/s, server CPU µs per round trip)."""
    process, port = _start_server(kind, count)
    try:
        clients = await _open_lean(port, count, echo=kind == "echo")
        await _closed_loop(clients, 0.5)  # warm up (schemas compile lazily)
        cpu0 = _cpu_s(process.pid)
        done = await _closed_loop(clients, seconds)
        cpu = _cpu_s(process.pid) - cpu0
        for client in clients:
            await client.close()
        return done / seconds, cpu / done * 1e6
    finally:
        process.kill()
        process.wait()


async def _latency(kind: str, seconds: float) -> tuple[float, float, float]:
    """Open loop, 3,000 msg/s over 1000 chargers: (p50 ms, p99 ms, server CPU share)."""
    process, port = _start_server(kind, 1000)
    try:
        clients = await _open_lean(port, 1000, echo=kind == "echo")
        await _closed_loop(clients, 0.5)
        cpu0, t0 = _cpu_s(process.pid), time.perf_counter()
        latencies = sorted(await _open_loop(clients, 3000, seconds))
        cpu_share = (_cpu_s(process.pid) - cpu0) / (time.perf_counter() - t0)
        for client in clients:
            await client.close()
        return (
            latencies[len(latencies) // 2] * 1000,
            latencies[int(len(latencies) * 0.99)] * 1000,
            cpu_share,
        )
    finally:
        process.kill()
        process.wait()


async def _idle_memory(kind: str, idle: int) -> tuple[int, float, float]:
    """(chargers held, server RSS MB, KB per idle charger)."""
    process, port = _start_server(kind, idle)
    try:
        await asyncio.sleep(0.5)
        warm = await _open(port, 1, echo=kind == "echo")
        await warm[0].authorize()
        before = _rss_kb(process.pid)
        clients = await _open(port, idle, echo=kind == "echo")
        # One exchange each (evaccess also asks GetLocalListVersion): sessions settled.
        await asyncio.gather(*(c.authorize() for c in clients))
        await asyncio.sleep(1.0)
        after = _rss_kb(process.pid)
        return len(clients), after / 1024, (after - before) / len(clients)
    finally:
        process.kill()
        process.wait()


async def _bench(kinds: list[str], seconds: float, rounds: int, idle: int, parts: set[str]) -> None:
    print(f"{rounds} rounds of {seconds:.0f} s, kinds interleaved; medians", flush=True)
    for count in (1, 100, 1000) if "throughput" in parts else ():
        results: dict[str, list[tuple[float, float]]] = {kind: [] for kind in kinds}
        for _ in range(rounds):
            for kind in kinds:
                results[kind].append(await _throughput(kind, count, seconds))
        rates = {kind: statistics.median(r for r, _ in results[kind]) for kind in kinds}
        for kind in kinds:
            cpu = statistics.median(c for _, c in results[kind])
            ratios = "".join(
                f", {rates[kind] / rates[other]:.2f}x {other}" for other in kinds if other != kind
            )
            print(
                f"closed loop {count:5d} chargers {kind:9s}: {rates[kind]:7.0f} round trips/s,"
                f" server CPU {cpu:6.1f} µs/round trip (one core: {1e6 / cpu:6.0f}/s){ratios}",
                flush=True,
            )
    for kind in kinds if "latency" in parts else ():
        runs = [await _latency(kind, seconds) for _ in range(rounds)]
        p50 = statistics.median(r[0] for r in runs)
        p99 = statistics.median(r[1] for r in runs)
        share = statistics.median(r[2] for r in runs)
        print(
            f"open loop 3000 msg/s, 1000 chargers {kind:9s}: p50 {p50:.2f} ms, p99 {p99:.2f} ms,"
            f" server CPU {share * 100:.0f}%",
            flush=True,
        )
    if idle and "idle" in parts:
        for kind in kinds:
            held, rss, per = await _idle_memory(kind, idle)
            print(
                f"idle {kind:9s}: {held} chargers held in one process, RSS {rss:.0f} MB,"
                f" {per:.1f} KB per idle charger",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", choices=["evaccess", "library", "echo", "rawjson"])
    parser.add_argument("--chargers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--kinds", default="evaccess,library,echo")
    parser.add_argument("--parts", default="throughput,latency,idle")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve, args.chargers))
        return
    asyncio.run(
        _bench(
            args.kinds.split(","), args.seconds, args.rounds, args.idle, set(args.parts.split(","))
        )
    )


if __name__ == "__main__":
    main()
