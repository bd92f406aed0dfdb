"""Servers under test for ``evaccess bench ocpp``, each run in its own process.

``python -m evaccess.bench.targets NAME`` starts server NAME on 127.0.0.1, port 0, and prints
``READY <port>`` on stdout once it listens. The bench pins that process to one core.

- ``baseline``: a server built only on the ``ocpp`` library's v201 ``ChargePoint`` with its
  defaults (schema validation on, ``websockets`` defaults), answering Authorize KeyCode
  Accepted: what a team gets by following the library's README.
- ``echo``: raw ``websockets`` (compression off) answering every Call with a canned
  CallResult, without parsing it: the ceiling for any Python server on this stack.
- ``evaccess``: ``evaccess server run`` itself, the command we ship (REST API, portal,
  background tasks and OCPP endpoint on one event loop, its logging at the default INFO), on
  SQLite seeded with chargers and real keypad PINs (``start_evaccess_run_server``).
- ``evaccess-endpoint``: only the OCPP endpoint on the same backend, in a process of its own
  (``bench/evaccess_target.py``, ``start_evaccess_server``): what the bench measured until
  Dec 2026; it differs from ``evaccess`` by the REST API, the background tasks and logging.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from websockets.typing import Subprotocol

TARGETS = ("baseline", "echo", "evaccess", "evaccess-deflate", "evaccess-endpoint")
"""``evaccess-deflate``: the evaccess server, its chargers offering permessage-deflate."""
READY = "READY"
CANNED_AUTHORIZE_RESULT = '{"idTokenInfo":{"status":"Accepted"}}'


class TargetUnavailable(Exception):
    """A target that cannot run in this checkout; the message says why."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ChargerIdentity:
    """Who the load generator connects as, and which keypad code it types."""

    serial: str
    password: str | None = field(default=None, repr=False)
    keycode: str = field(default="1234", repr=False)


@dataclass(kw_only=True)
class ServerProcess:
    """A running server under test."""

    name: str
    process: subprocess.Popen[str]
    url: str
    """Base URL; the load generator appends ``/SERIAL``."""
    identities: Sequence[ChargerIdentity] | None = None
    """``None``: any serial works without a password (baseline, echo)."""
    compression: str | None = None
    """``"deflate"``: the load generator's chargers offer permessage-deflate."""
    http_url: str | None = None
    """``evaccess server run``: the REST API's base URL (``http://127.0.0.1:PORT``)."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def identity(self, index: int) -> ChargerIdentity:
        if self.identities is None:
            return ChargerIdentity(serial=f"BENCH{index:06d}")
        return self.identities[index % len(self.identities)]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def raise_nofile_limit() -> int:
    """Raise RLIMIT_NOFILE to the hard limit (each charger is one file descriptor)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _spawn(name: str, cpu: int | None) -> ServerProcess:
    process = subprocess.Popen(
        [sys.executable, "-m", "evaccess.bench.targets", name],
        stdout=subprocess.PIPE,
        text=True,
    )
    if cpu is not None:
        os.sched_setaffinity(process.pid, {cpu})
    assert process.stdout is not None
    line = process.stdout.readline().split()
    if len(line) != 2 or line[0] != READY:
        process.kill()
        process.wait()
        process.stdout.close()
        raise TargetUnavailable(f"{name} server did not start")
    return ServerProcess(name=name, process=process, url=f"ws://127.0.0.1:{int(line[1])}/ocpp")


def start_baseline_server(*, cpu: int | None) -> ServerProcess:
    return _spawn("baseline", cpu)


def start_echo_server(*, cpu: int | None) -> ServerProcess:
    return _spawn("echo", cpu)


def _seeded_identities(workdir: Path) -> list[ChargerIdentity]:
    """The chargers ``bench/evaccess_target.py`` seeded in ``workdir``."""
    import json

    from evaccess.bench.evaccess_target import IDENTITIES

    return [
        ChargerIdentity(serial=i["serial"], password=i["password"], keycode=i["keycode"])
        for i in json.loads((workdir / IDENTITIES).read_text())
    ]


def start_evaccess_server(*, cpu: int | None, workdir: Path, chargers: int) -> ServerProcess:
    """The real evaccess OCPP endpoint on the real database backend: SQLite in ``workdir``,
    ``chargers`` registered chargers, each with its own Basic Auth password and an owner
    whose real keypad PIN the load generator types (``bench/evaccess_target.py``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "evaccess.bench.evaccess_target", str(workdir), str(chargers)],
        stdout=subprocess.PIPE,
        text=True,
    )
    if cpu is not None:
        os.sched_setaffinity(process.pid, {cpu})
    assert process.stdout is not None
    line = process.stdout.readline().split()
    if len(line) != 2 or line[0] != READY:
        process.kill()
        process.wait()
        process.stdout.close()
        raise TargetUnavailable("the evaccess server did not start")
    identities = _seeded_identities(workdir)
    return ServerProcess(
        name="evaccess-endpoint",
        process=process,
        url=f"ws://127.0.0.1:{int(line[1])}/ocpp",
        identities=identities,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_env(workdir: Path, database_url: str | None, keys_dir: Path | None) -> dict[str, str]:
    """The environment of the seeding step and of the server: the bench's database and
    keys, never ones the caller's shell happens to set."""
    env = dict(os.environ)
    for name in ("EVACCESS_DATABASE_URL", "EVACCESS_LOG_LEVEL", "EVACCESS_KEYS_DIR"):
        env.pop(name, None)
    env["EVACCESS_DATA_DIR"] = str(workdir)
    if database_url is not None:
        env["EVACCESS_DATABASE_URL"] = database_url
    if keys_dir is not None:
        env["EVACCESS_KEYS_DIR"] = str(keys_dir)
    return env


def spawn_server_run(
    env: dict[str, str],
    *,
    cpu: int | None = None,
    output: IO[str] | None = None,
    start_timeout_s: float = 120.0,
) -> tuple[subprocess.Popen[str], int, int]:
    """``python -m evaccess server run`` with ``env`` (its data, database and keys already
    in it) on free ports of 127.0.0.1, pinned to ``cpu`` if given, its output to
    ``output`` (else discarded): the process, its REST port and its OCPP port, once the OCPP
    port accepts connections (the REST port is bound before that: ``runner._listen``)."""
    ocpp_port, http_port = free_port(), free_port()
    env = env | {
        "EVACCESS_HOST": "127.0.0.1",
        "EVACCESS_PORT": str(http_port),
        "EVACCESS_OCPP_PORT": str(ocpp_port),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "evaccess", "server", "run"],
        stdin=subprocess.DEVNULL,
        stdout=output if output is not None else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if output is not None else subprocess.DEVNULL,
        env=env,
        text=True,
    )
    if cpu is not None:
        os.sched_setaffinity(process.pid, {cpu})
    deadline = time.monotonic() + start_timeout_s
    while True:
        if process.poll() is not None:
            raise TargetUnavailable(f"evaccess server run exited ({process.returncode})")
        try:
            socket.create_connection(("127.0.0.1", ocpp_port), timeout=1).close()
            return process, http_port, ocpp_port
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise TargetUnavailable("evaccess server run did not listen in time") from None
            time.sleep(0.05)


def start_evaccess_run_server(
    *,
    cpu: int | None,
    workdir: Path,
    chargers: int,
    start_timeout_s: float = 120.0,
    database_url: str | None = None,
    keys_dir: Path | None = None,
    api_users: int = 0,
) -> ServerProcess:
    """``evaccess server run`` as shipped, on a data directory seeded like
    ``start_evaccess_server``'s (``bench/evaccess_target.py --seed-only``). Its output is
    not read (no secret passes through the bench); it is ready once its OCPP port accepts
    a connection.

    ``database_url``: seed and serve that (empty) database instead of SQLite in
    ``workdir`` (the URL reaches both processes in their environment, not on a command
    line); ``keys_dir``: the key files (default ``workdir/keys``); ``api_users``: also seed
    the members ``evaccess bench api`` logs in as (``evaccess_target.seed_api``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = _server_env(workdir, database_url, keys_dir)
    seed_argv = [sys.executable, "-m", "evaccess.bench.evaccess_target", str(workdir),
                 str(chargers), "--seed-only"]  # fmt: skip
    if api_users:
        seed_argv += ["--api-users", str(api_users)]
    seeded = subprocess.run(seed_argv, capture_output=True, text=True, check=False, env=env)
    if seeded.returncode != 0 or seeded.stdout.strip() != "SEEDED":
        raise TargetUnavailable("seeding the evaccess database failed")
    process, http_port, ocpp_port = spawn_server_run(env, cpu=cpu, start_timeout_s=start_timeout_s)
    identities = _seeded_identities(workdir)
    return ServerProcess(
        name="evaccess",
        process=process,
        url=f"ws://127.0.0.1:{ocpp_port}/ocpp",
        identities=identities,
        http_url=f"http://127.0.0.1:{http_port}",
    )


# -- the server processes ----------------------------------------------------------------
async def _serve_baseline() -> None:
    from ocpp.routing import on
    from ocpp.v201 import ChargePoint, call_result
    from websockets.asyncio.server import ServerConnection, serve

    class BaselineChargePoint(ChargePoint):  # type: ignore[misc]
        @on("Authorize")  # type: ignore[untyped-decorator]
        async def on_authorize(self, id_token: dict[str, Any], **_: Any) -> Any:
            return call_result.Authorize(id_token_info={"status": "Accepted"})

        @on("BootNotification")  # type: ignore[untyped-decorator]
        async def on_boot(self, **_: Any) -> Any:
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return call_result.BootNotification(current_time=now, interval=300, status="Accepted")

    async def handler(connection: ServerConnection) -> None:
        assert connection.request is not None
        charge_point = BaselineChargePoint(connection.request.path.rsplit("/", 1)[-1], connection)
        # The charger went away (closed connection): nothing to do.
        with contextlib.suppress(Exception):
            await charge_point.start()

    async with serve(handler, "127.0.0.1", 0, subprotocols=[Subprotocol("ocpp2.0.1")]) as server:
        _ready(server.sockets[0].getsockname()[1])
        await server.serve_forever()


async def _serve_echo() -> None:
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    async def handler(connection: ServerConnection) -> None:
        try:
            async for frame in connection:
                text = frame if isinstance(frame, str) else frame.decode()
                # [2,"<id>",...]: the id sits between the first two quotes.
                start = text.index('"') + 1
                unique_id = text[start : text.index('"', start)]
                await connection.send(f'[3,"{unique_id}",{CANNED_AUTHORIZE_RESULT}]')
        except ConnectionClosed:
            pass

    async with serve(
        handler,
        "127.0.0.1",
        0,
        subprotocols=[Subprotocol("ocpp2.0.1")],
        compression=None,
    ) as server:
        _ready(server.sockets[0].getsockname()[1])
        await server.serve_forever()


def _ready(port: int) -> None:
    sys.stdout.write(f"{READY} {port}\n")
    sys.stdout.flush()


SERVERS = {"baseline": _serve_baseline, "echo": _serve_echo}


def main(argv: Sequence[str]) -> None:
    raise_nofile_limit()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(SERVERS[argv[0]]())


if __name__ == "__main__":
    main(sys.argv[1:])
