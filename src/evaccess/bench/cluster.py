"""``evaccess bench cluster``: two ``evaccess server run`` nodes on one PostgreSQL and one
Redis, measured from outside as a load balancer's clients see them.

- **Cross-node commands**: every charger connected to node A; a phone revocation per
  command is made through node B's REST API at a fixed rate (open loop: command *k* at
  *t0 + k/rate* for charger *k* mod N, decided before the run). Latency counts from the
  scheduled time to the moment the charger receives the Call carrying that phone id: B's
  commit, the Redis wake-up, A's outbox read and the OCPP send are all inside it.
- **Keypad PIN propagation**: a charger on A has its owner's PIN answered Accepted (A's
  keypad index now holds it); the PIN is deleted through B; the charger types it again and
  again until A refuses it. The figure is the time from B's answer to A's first refusal.
- **Throughput**: closed-loop Authorize over ``throughput_chargers`` chargers, first on one
  node on PostgreSQL without Redis (the single-node reference), then on node A, on node B,
  and on both at once in cluster mode. CPU per Authorize is whole-stack: the nodes, every
  PostgreSQL process and every redis-server process on this machine, from /proc.

The database is created for the run (``CREATE DATABASE``, dropped after) on the PostgreSQL
server ``--postgres-url`` names; the Redis keys carry a prefix of the run's own, deleted
after. The operator account the bench logs in with has a random password held only in
this process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import insert, make_url, select
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from evaccess.bench import loadgen
from evaccess.bench.api import bench_database
from evaccess.bench.evaccess_target import analyze, seed
from evaccess.bench.ocpp import cpu_seconds, percentile
from evaccess.bench.targets import (
    ChargerIdentity,
    ServerProcess,
    TargetUnavailable,
    raise_nofile_limit,
    spawn_server_run,
)
from evaccess.domain.access import GrantKind, Role
from evaccess.domain.clock import SystemClock, SystemRandom
from evaccess.domain.errors import EvAccessError
from evaccess.protocol.ocpp_components import BluetoothVariable
from evaccess.server.bootstrap import build_context
from evaccess.server.db.models import Charger, Grant, Membership, Organisation, Ownership, User
from evaccess.server.db.types import new_id
from evaccess.server.settings import Settings

CITRINEOS_CPU_US = 10_000.0
"""Whole-stack CPU per Authorize of CitrineOS (node + RabbitMQ + PostgreSQL) measured on this
machine by an independent generator (issue 13): the reference for the efficiency ratio."""
STACK_PROCESSES = frozenset({"postgres", "redis-server"})
REVOKE = BluetoothVariable.REVOKE_CREDENTIALS.value
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
START_TIMEOUT_S = 120.0
DELIVERY_GRACE_S = 10.0
"""How long after the last scheduled command the bench waits for stragglers."""


class BenchFailed(EvAccessError):
    """A run that cannot give honest figures (commands lost, answers refused)."""

    status = 500
    code = "bench_failed"


@dataclass(frozen=True, kw_only=True, slots=True)
class ClusterPlan:
    chargers: int = 1000
    rate: float = 100.0
    seconds: float = 20.0
    propagations: int = 100
    throughput_chargers: int = 100
    throughput_s: float = 5.0
    warmup_s: float = 1.0


QUICK = ClusterPlan(
    chargers=40, rate=20.0, seconds=2.0, propagations=10, throughput_chargers=10,
    throughput_s=0.5, warmup_s=0.2,
)  # fmt: skip
"""Well under a minute: for tests and a first look."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Throughput:
    name: str
    rate: float
    p99_ms: float
    node_cpu_us: float
    stack_cpu_us: float
    """Nodes + PostgreSQL + Redis per Authorize."""

    @property
    def vs_citrineos(self) -> float:
        return CITRINEOS_CPU_US / self.stack_cpu_us if self.stack_cpu_us else 0.0


@dataclass(frozen=True, kw_only=True, slots=True)
class CommandFigures:
    end_to_end_s: Sequence[float]
    """Scheduled time to the charger's receipt."""
    api_s: Sequence[float]
    """Scheduled time to node B's answer."""
    after_answer_s: Sequence[float]
    """Node B's answer (the change committed) to the charger's receipt: what crossing
    to the other node costs (it can be below zero: the wake-up leaves at the commit,
    before the HTTP answer is written)."""
    sent: int
    received: int
    duplicates: int
    saturated: bool
    """Node B's API fell more than ``SATURATED_S`` behind the schedule: the rest of the
    schedule was not sent (the figures so far stand)."""


SATURATED_S = 2.0


@dataclass(frozen=True, kw_only=True, slots=True)
class ClusterResult:
    plan: ClusterPlan
    commands: CommandFigures
    propagation_s: Sequence[float]
    throughput: Sequence[Throughput] = field(default_factory=tuple)


Say = Callable[[str], None]


# -- the stack ----------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def temporary_database(server_url: str) -> AsyncIterator[str]:
    """A database of a fresh name on the PostgreSQL server ``server_url`` names, created
    and dropped by ``bench api``'s ``bench_database``."""
    url = (
        make_url(server_url)
        .set(database=f"evaccess_bench_{secrets.token_hex(4)}")
        .render_as_string(hide_password=False)
    )
    entered = False
    try:
        async with bench_database(url) as created:
            assert created is not None
            entered = True
            yield created
    except (OSError, asyncpg.PostgresError) as exc:
        if entered:
            raise
        message = f"PostgreSQL at {_shown(server_url)} is unreachable ({type(exc).__name__})"
        raise BenchFailed(message) from None


def _shown(url: str) -> str:
    """A database URL without its password."""
    return make_url(url).render_as_string(hide_password=True)


async def seed_operator(settings: Settings) -> tuple[str, str, str]:
    """A super-admin of the seeded organisation with a real password and a service grant on
    every charger (forgetting phones is for owners and service): (email, password,
    organisation id). The password never leaves this process."""
    ctx = build_context(settings, clock=SystemClock(), rng=SystemRandom())
    email, password = "operator@bench.example.com", secrets.token_urlsafe(18)
    now = datetime.now(UTC)
    try:
        async with ctx.db.transaction() as session:
            org_id = await session.scalar(select(Organisation.id))
            assert org_id is not None
            user_id = new_id()
            await session.execute(
                insert(User).values(
                    id=user_id, email=email, password_hash=ctx.passwords.hash(password),
                    is_system_admin=False, created_at=now,
                )
            )  # fmt: skip
            await session.execute(
                insert(Membership).values(
                    id=new_id(), user_id=user_id, organisation_id=org_id,
                    role=Role.SUPER_ADMIN, created_at=now,
                )
            )  # fmt: skip
            ownerships = (await session.execute(select(Ownership.charger_id, Ownership.id))).all()
            grants = [
                {"id": new_id(), "charger_id": charger_id, "user_id": user_id,
                 "kind": GrantKind.SERVICE, "ownership_id": ownership_id, "granted_by": user_id,
                 "created_at": now}
                for charger_id, ownership_id in ownerships
            ]  # fmt: skip
            for start in range(0, len(grants), 2000):
                await session.execute(insert(Grant), grants[start : start + 2000])
        await analyze(ctx)
    finally:
        await ctx.db.dispose()
    return email, password, str(org_id)


def start_node(name: str, workdir: Path, env: dict[str, str]) -> ServerProcess:
    """``evaccess server run`` as node ``name`` with ``env`` (no other ``EVACCESS_*`` of
    this shell); its output goes to ``workdir/NAME.log`` (it holds no secret; a failed run
    quotes its first error line, ``first_error``)."""
    node_env = {k: v for k, v in os.environ.items() if not k.startswith("EVACCESS_")}
    node_env |= env | {"EVACCESS_NODE_ID": name, "EVACCESS_DATA_DIR": str(workdir / name)}
    with (workdir / f"{name}.log").open("w") as log:
        process, http_port, ocpp_port = spawn_server_run(
            node_env, output=log, start_timeout_s=START_TIMEOUT_S
        )
    return ServerProcess(
        name=name,
        process=process,
        url=f"ws://127.0.0.1:{ocpp_port}/ocpp",
        http_url=f"http://127.0.0.1:{http_port}",
    )


def first_error(workdir: Path) -> str | None:
    """The first ERROR or WARNING line any node logged (a Redis timeout is a warning: the
    node fails closed), for the message of a failed run."""
    for log in sorted(workdir.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            for level in (" ERROR ", " WARNING "):
                if level in line:
                    return f"{log.stem}: {line.split(level, 1)[1][:300]}"
    return None


def stack_cpu_seconds(node_pids: Sequence[int]) -> float:
    """CPU of the nodes, and of every PostgreSQL and redis-server process on the machine."""
    total = sum(cpu_seconds(pid) for pid in node_pids)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            comm = (entry / "comm").read_text().strip()
            if comm in STACK_PROCESSES:
                total += cpu_seconds(int(entry.name))
    return total


# -- a charger that answers the server's Calls --------------------------------------------
class BenchCharger:
    """One charger connection: answers every server Call Accepted, notes when each
    revocation arrived (by phone id), and sends Authorize one at a time."""

    def __init__(self, connection: ClientConnection, identity: ChargerIdentity) -> None:
        self.connection = connection
        self.identity = identity
        self.revoked: dict[str, float] = {}
        self.on_revoked: Callable[[], None] = lambda: None
        self.duplicates = 0
        self._answer: asyncio.Future[str] | None = None
        self._ids = 0
        self.task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, url: str, identity: ChargerIdentity) -> BenchCharger:
        assert identity.password is not None
        token = base64.b64encode(f"{identity.serial}:{identity.password}".encode()).decode()
        connection = await connect(
            f"{url}/{identity.serial}",
            subprotocols=[Subprotocol("ocpp2.0.1")],
            additional_headers={"Authorization": f"Basic {token}"},
            compression=None,
            proxy=None,
            open_timeout=60,
            ping_interval=None,
        )
        charger = cls(connection, identity)
        boot = json.loads(loadgen.boot_frame(identity.serial))
        await charger.call(boot[2], boot[3])
        return charger

    async def call(self, action: str, payload: dict[str, Any]) -> str:
        self._ids += 1
        self._answer = asyncio.get_running_loop().create_future()
        await self.connection.send(json.dumps([2, f"m{self._ids}", action, payload]))
        return await asyncio.wait_for(self._answer, timeout=30)

    async def authorize(self) -> str:
        """The status answered for the owner's keypad code."""
        answer = await self.call(
            "Authorize", {"idToken": {"idToken": self.identity.keycode, "type": "KeyCode"}}
        )
        return str(json.loads(answer)["idTokenInfo"]["status"])

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for message in self.connection:
                frame = json.loads(message)
                if frame[0] == 2:
                    await self.connection.send(json.dumps([3, frame[1], _answer_to(frame)]))
                    for phone in _revoked_phones(frame):
                        if phone in self.revoked:
                            self.duplicates += 1
                        else:
                            self.revoked[phone] = loop.time()
                            self.on_revoked()
                elif self._answer is not None and not self._answer.done():
                    if frame[0] == 3:
                        self._answer.set_result(json.dumps(frame[2]))
                    else:
                        self._answer.set_exception(BenchFailed(f"CallError {frame[2]}"))
        except ConnectionClosed:
            pass

    async def close(self) -> None:
        await self.connection.close()
        with contextlib.suppress(Exception):
            await self.task


def _answer_to(frame: list[Any]) -> dict[str, Any]:
    if frame[2] == "SetVariables":
        return {
            "setVariableResult": [
                {"attributeStatus": "Accepted", "component": i["component"],
                 "variable": i["variable"]}
                for i in frame[3]["setVariableData"]
            ]
        }  # fmt: skip
    if frame[2] == "GetLocalListVersion":
        return {"versionNumber": 0}
    return {"status": "Accepted"}


def _revoked_phones(frame: list[Any]) -> list[str]:
    if frame[2] != "SetVariables":
        return []
    return [
        str(item["attributeValue"])
        for item in frame[3]["setVariableData"]
        if item["variable"]["name"] == REVOKE
    ]


CONNECT_CONCURRENCY = 50
CONNECT_ATTEMPTS = 3


async def _connect_all(url: str, identities: Sequence[ChargerIdentity]) -> list[BenchCharger]:
    """Connect and boot every charger, ``CONNECT_CONCURRENCY`` handshakes at a time; a
    handshake the server dropped (it closes those not done within its open timeout when
    it is overloaded) is tried again, as a charger would, up to ``CONNECT_ATTEMPTS``."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(identity: ChargerIdentity) -> BenchCharger:
        for attempt in range(1, CONNECT_ATTEMPTS + 1):
            async with gate:
                try:
                    return await BenchCharger.connect(url, identity)
                except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError) as exc:
                    if attempt == CONNECT_ATTEMPTS:
                        raise BenchFailed(
                            f"charger {identity.serial} could not connect "
                            f"({type(exc).__name__}, {attempt} attempts)"
                        ) from None
            await asyncio.sleep(0.5 * attempt)
        raise AssertionError("unreachable")

    return list(await asyncio.gather(*(one(i) for i in identities)))


async def _logged_in(node: ServerProcess, email: str, password: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(
        base_url=str(node.http_url),
        timeout=30,
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
    )
    login = await client.post("/api/auth/login", json={"email": email, "password": password})
    if login.status_code != 200:
        await client.aclose()
        raise BenchFailed(
            f"the operator could not log in on node {node.name} ({login.status_code})"
        )
    client.headers["Authorization"] = f"Bearer {login.json()['token']}"
    return client


# -- the workloads ------------------------------------------------------------------------
async def cross_node_commands(
    api: httpx.AsyncClient,
    chargers: Sequence[BenchCharger],
    charger_ids: dict[str, str],
    *,
    rate: float,
    seconds: float,
    progress: Progress,
) -> CommandFigures:
    """Revocations through ``api`` (node B) to ``chargers`` (on node A), open loop."""
    loop = asyncio.get_running_loop()
    total = max(1, int(rate * seconds))
    t0 = loop.time() + 0.2
    scheduled: dict[str, tuple[float, BenchCharger]] = {}
    answered: dict[str, float] = {}
    failures: list[str] = []
    saturated = False
    task = progress.add_task("cross-node commands", total=total)
    arrived = 0
    everything = asyncio.Event()

    def one_arrived() -> None:
        nonlocal arrived
        arrived += 1
        if arrived >= len(answered) and (saturated or len(answered) == total):
            everything.set()

    for charger in chargers:
        charger.on_revoked = one_arrived

    async def one(k: int) -> None:
        nonlocal saturated
        charger = chargers[k % len(chargers)]
        phone = f"bench-{k}"
        at = t0 + k / rate
        delay = at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if saturated:
            return
        scheduled[phone] = (at, charger)
        answer = await api.post(
            f"/api/chargers/{charger_ids[charger.identity.serial]}/bluetooth/revoke-phones",
            json={"phone_id": phone},
        )
        answered[phone] = loop.time()
        if answered[phone] - at > SATURATED_S:
            saturated = True
        if answer.status_code != 202:
            failures.append(f"{answer.status_code} {answer.json().get('code')}")
        progress.advance(task)

    await asyncio.gather(*(one(k) for k in range(total)))
    if failures:
        raise BenchFailed(f"{len(failures)} commands refused by node B, first: {failures[0]}")
    if arrived < len(answered):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(everything.wait(), DELIVERY_GRACE_S)
    received = [
        (phone, at, charger.revoked[phone])
        for phone, (at, charger) in scheduled.items()
        if phone in charger.revoked
    ]
    return CommandFigures(
        end_to_end_s=[got - at for _, at, got in received],
        api_s=[answered[phone] - at for phone, (at, _) in scheduled.items()],
        after_answer_s=[got - answered[phone] for phone, _, got in received],
        sent=len(scheduled),
        received=len(received),
        duplicates=sum(c.duplicates for c in chargers),
        saturated=saturated,
    )


async def keypad_propagation(
    api: httpx.AsyncClient,
    chargers: Sequence[BenchCharger],
    owners: dict[str, str],
    org_id: str,
    *,
    samples: int,
    progress: Progress,
) -> list[float]:
    """Seconds from node B's answer to a keypad PIN deletion until node A refuses the PIN."""
    loop = asyncio.get_running_loop()
    figures: list[float] = []
    task = progress.add_task("keypad PIN propagation", total=samples)
    for charger in chargers[-samples:]:  # not the ones the command phase used last
        if await charger.authorize() != "Accepted":
            raise BenchFailed(f"charger {charger.identity.serial}: its owner's PIN was refused")
        user = owners[charger.identity.serial]
        deleted = await api.delete(f"/api/organisations/{org_id}/members/{user}/keypad-pin")
        if deleted.status_code != 204:
            raise BenchFailed(f"deleting a keypad PIN through node B gave {deleted.status_code}")
        answered = loop.time()
        deadline = answered + 30
        while await charger.authorize() == "Accepted":
            if loop.time() > deadline:
                raise BenchFailed("a deleted keypad PIN was still accepted after 30 s")
        figures.append(loop.time() - answered)
        progress.advance(task)
    return figures


async def throughput(
    name: str,
    nodes: Sequence[ServerProcess],
    identities: Sequence[ChargerIdentity],
    *,
    plan: ClusterPlan,
) -> Throughput:
    """Closed-loop Authorize over ``identities``, split evenly over ``nodes``."""
    per_node = len(identities) // len(nodes)
    servers = [
        replace(node, identities=identities[i * per_node : (i + 1) * per_node])
        for i, node in enumerate(nodes)
    ]
    try:
        connections = [await loadgen.connect_many(server, per_node) for server in servers]
    except InvalidStatus as exc:
        status = exc.response.status_code
        raise BenchFailed(f"{name}: a charger's handshake was answered {status}") from None
    pids = [node.process.pid for node in nodes]
    marks: dict[bool, tuple[float, float]] = {}

    def window(opening: bool) -> None:
        marks[opening] = (sum(cpu_seconds(p) for p in pids), stack_cpu_seconds(pids))

    # Each node's loop opens and closes its own window; the first opening and the last
    # closing bound the CPU read.
    opened = asyncio.Event()

    def on_window(opening: bool) -> None:
        if opening and not opened.is_set():
            opened.set()
            window(True)
        elif not opening:
            window(False)

    try:
        results = await asyncio.gather(
            *(
                loadgen.closed_loop(
                    server, conns, warmup_s=plan.warmup_s, duration_s=plan.throughput_s,
                    on_window=on_window,
                )
                for server, conns in zip(servers, connections, strict=True)
            )
        )  # fmt: skip
    finally:
        for conns in connections:
            await loadgen.close_all(conns)
    refused = sum(r.refused for r in results)
    if refused:
        first = next(r.first_refusal for r in results if r.first_refusal)
        raise BenchFailed(f"{name}: {refused} Authorize answers were not Accepted ({first})")
    messages = sum(r.messages for r in results)
    seconds = max(r.seconds for r in results)
    node_cpu = marks[False][0] - marks[True][0]
    stack_cpu = marks[False][1] - marks[True][1]
    latencies = [x for r in results for x in r.latencies_s]
    return Throughput(
        name=name,
        rate=messages / seconds if seconds else 0.0,
        p99_ms=percentile(latencies, 99) * 1000,
        node_cpu_us=node_cpu / messages * 1e6 if messages else 0.0,
        stack_cpu_us=stack_cpu / messages * 1e6 if messages else 0.0,
    )


# -- the run ------------------------------------------------------------------------------
async def run_cluster_bench(
    plan: ClusterPlan,
    *,
    postgres_url: str,
    redis_url: str,
    say: Say,
    console: Console,
) -> ClusterResult:
    raise_nofile_limit()
    needed = plan.chargers + 2 * plan.throughput_chargers
    if plan.propagations > plan.chargers:
        raise BenchFailed("propagation samples cannot exceed the chargers")
    prefix = f"evaccess-bench-{secrets.token_hex(4)}:"
    with tempfile.TemporaryDirectory(prefix="evaccess-bench-cluster-") as tmp:
        workdir = Path(tmp)
        async with temporary_database(postgres_url) as database_url:
            say(f"seeding {needed} chargers on PostgreSQL ({_shown(database_url)})")
            say(f"Redis keys under {prefix} (deleted after)")
            settings = Settings(data_dir=workdir, log_level="WARNING", database_url=database_url)
            seeded = await seed(workdir, needed, database_url=database_url)
            email, password, org_id = await seed_operator(settings)
            identities = [
                ChargerIdentity(serial=i["serial"], password=i["password"], keycode=i["keycode"])
                for i in seeded
            ]
            charger_ids, owners = await _charger_rows(settings)
            base = {
                "EVACCESS_DATABASE_URL": database_url,
                "EVACCESS_KEYS_DIR": str(settings.resolved_keys_dir),
                "EVACCESS_LOG_LEVEL": "WARNING",
            }
            clustered = base | {"EVACCESS_REDIS_URL": redis_url, "EVACCESS_REDIS_PREFIX": prefix}
            spare = identities[plan.chargers :]
            half = plan.throughput_chargers
            figures: list[Throughput] = []
            try:
                say("throughput: one node on PostgreSQL, no Redis")
                single = start_node("single", workdir, base)
                try:
                    figures.append(
                        await throughput("single node", [single], spare[:half], plan=plan)
                    )
                finally:
                    single.stop()
                say("starting nodes A and B in cluster mode")
                a = start_node("a", workdir, clustered)
                b = start_node("b", workdir, clustered)
                try:
                    say("throughput: node A, node B, then both at once")
                    figures.append(
                        await throughput("cluster: node A", [a], spare[:half], plan=plan)
                    )
                    figures.append(
                        await throughput("cluster: node B", [b], spare[half:], plan=plan)
                    )
                    figures.append(await throughput("cluster: A + B", [a, b], spare, plan=plan))
                    commands, propagation = await _commands_and_propagation(
                        plan, a, b, identities[: plan.chargers], charger_ids, owners, org_id,
                        email, password, say, console,
                    )  # fmt: skip
                finally:
                    a.stop()
                    b.stop()
            except (BenchFailed, TargetUnavailable) as exc:
                error = first_error(workdir)
                raise BenchFailed(str(exc) + (f" (node {error})" if error else "")) from None
            finally:
                await _forget_prefix(redis_url, prefix)
    return ClusterResult(
        plan=plan, commands=commands, propagation_s=propagation, throughput=tuple(figures)
    )


async def _commands_and_propagation(
    plan: ClusterPlan,
    a: ServerProcess,
    b: ServerProcess,
    identities: Sequence[ChargerIdentity],
    charger_ids: dict[str, str],
    owners: dict[str, str],
    org_id: str,
    email: str,
    password: str,
    say: Say,
    console: Console,
) -> tuple[CommandFigures, list[float]]:
    say(f"connecting {len(identities)} chargers to node A")
    began = time.perf_counter()
    chargers = await _connect_all(a.url, identities)
    elapsed = time.perf_counter() - began
    say(f"connected and booted in {elapsed:.1f} s ({len(chargers) / elapsed:,.0f} boots/s)")
    api = await _logged_in(b, email, password)
    try:
        with Progress(console=console, transient=True) as progress:
            commands = await cross_node_commands(
                api, chargers, charger_ids, rate=plan.rate, seconds=plan.seconds,
                progress=progress,
            )  # fmt: skip
            propagation = await keypad_propagation(
                api, chargers, owners, org_id, samples=plan.propagations, progress=progress
            )
    finally:
        await api.aclose()
        await asyncio.gather(*(c.close() for c in chargers))
    return commands, propagation


async def _charger_rows(settings: Settings) -> tuple[dict[str, str], dict[str, str]]:
    """Charger id and owner (user id) by serial."""
    ctx = build_context(settings, clock=SystemClock(), rng=SystemRandom())
    try:
        async with ctx.db.read() as session:
            rows = (
                await session.execute(
                    select(Charger.serial, Charger.id, Ownership.owner_id).join(
                        Ownership, Ownership.charger_id == Charger.id
                    )
                )
            ).all()
    finally:
        await ctx.db.dispose()
    return {r[0]: r[1] for r in rows}, {r[0]: r[2] for r in rows}


async def _forget_prefix(redis_url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    except (OSError, aioredis.RedisError):
        pass
    finally:
        await client.aclose()


# -- the report ---------------------------------------------------------------------------
def _ms(values: Sequence[float], pct: float) -> str:
    return f"{percentile(values, pct) * 1000:.1f}" if values else "-"


def render(result: ClusterResult, console: Console) -> None:
    plan, commands = result.plan, result.commands
    table = Table(
        title=f"Cross-node commands: API on node B, charger on node A ({plan.rate:g}/s "
        f"over {plan.chargers} chargers, {plan.seconds:g} s)"
    )
    for column in ("measure", "p50 ms", "p99 ms", "max ms", "target"):
        table.add_column(column, justify="right" if column != "measure" else "left")
    rows = (
        ("API call to charger's receipt", commands.end_to_end_s, "p99 ≤ 50 ms"),
        ("  of which B's API answer", commands.api_s, ""),
        ("  B's answer to charger's receipt", commands.after_answer_s, ""),
        ("keypad PIN deletion seen on A", result.propagation_s, "p99 ≤ 1000 ms"),
    )
    for name, values, target in rows:
        table.add_row(name, _ms(values, 50), _ms(values, 99), _ms(values, 100), target)
    console.print(table)
    console.print(
        f"commands: {commands.sent} sent, {commands.received} received, "
        f"{commands.duplicates} received twice; {len(result.propagation_s)} propagation samples"
    )
    if commands.saturated:
        console.print(
            f"SATURATED: node B's API answered more than {SATURATED_S:g} s behind the "
            f"schedule at {plan.rate:g} commands/s; the rest of the schedule was not sent. "
            "Try a lower --rate."
        )
    speed = Table(title=f"Closed-loop Authorize, {plan.throughput_chargers} chargers per node")
    for column in ("setup", "Authorize/s", "p99 ms", "node CPU µs", "stack CPU µs",
                   "vs CitrineOS"):  # fmt: skip
        speed.add_column(column, justify="right" if column != "setup" else "left")
    single = result.throughput[0].rate if result.throughput else 0.0
    for t in result.throughput:
        speed.add_row(
            t.name, f"{t.rate:,.0f}" + (f" ({t.rate / single:.2f}x)" if single else ""),
            f"{t.p99_ms:.1f}", f"{t.node_cpu_us:.0f}", f"{t.stack_cpu_us:.0f}",
            f"{t.vs_citrineos:.0f}x",
        )  # fmt: skip
    console.print(speed)
    console.print(
        "stack CPU: the nodes, every PostgreSQL and redis-server process on this machine; "
        f"CitrineOS: {CITRINEOS_CPU_US / 1000:.0f} ms whole-stack CPU per Authorize on the "
        "same machine (issue 13)"
    )


def check(result: ClusterResult) -> None:
    """A run that lost or doubled commands gives no latency figure worth printing."""
    commands = result.commands
    if commands.received < commands.sent:
        lost = commands.sent - commands.received
        raise BenchFailed(
            f"{lost} of {commands.sent} commands did not reach the charger within "
            f"{DELIVERY_GRACE_S:.0f} s"
        )
    if commands.duplicates:
        raise BenchFailed(f"{commands.duplicates} commands reached the charger twice")
