"""``evaccess bench api``: REST latency of a Bluetooth-PIN reveal (with its audit write) and a
keypad-PIN set, against ``GET /health`` as the ceiling, on ``evaccess server run``.

Method (docs/performance.md, "REST API"): one ``evaccess server run`` process, on SQLite in a
temporary data directory or on a PostgreSQL database the bench creates and drops, seeded
with a background fleet (``evaccess_target.seed``) and with members who log in through
``POST /api/auth/login`` and each own one Wallbox whose mandatory Bluetooth PIN is active
(``evaccess_target.seed_api``). The endpoints are measured one after another against that
process, each in an open loop: request *k* is scheduled at ``t0 + k / rate`` before the run
and its latency counts from that scheduled time, so a server that falls behind is charged
for the wait (no coordinated omission). Every answer is checked; any other than the
expected 2xx is an error, and a run with errors is refused (``bench_invalid``). An endpoint
that falls so far behind that requests would queue for seconds is stopped early and
reported as saturated with its figures so far.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.engine import make_url

from evaccess.bench.evaccess_target import API_IDENTITIES
from evaccess.bench.ocpp import (
    GENERATOR_CPU,
    SERVER_CPU,
    BenchInvalid,
    cpu_seconds,
    percentile,
)
from evaccess.bench.targets import ServerProcess, TargetUnavailable, start_evaccess_run_server
from evaccess.domain.errors import InvalidInput
from evaccess.domain.pins import trivial_reasons

ENDPOINTS = ("health", "reveal", "keypad_pin_set")
LABELS = {
    "health": "GET /health",
    "reveal": "POST /api/chargers/{id}/bluetooth-pin/reveal",
    "keypad_pin_set": "PUT /api/organisations/{id}/keypad-pin",
}
TARGET_P99_MS = 20.0
LOGIN_CONCURRENCY = 4


@dataclass(frozen=True, kw_only=True, slots=True)
class ApiPlan:
    rate: float = 200.0
    """Requests per second, per endpoint."""
    seconds: float = 30.0
    """Measurement window per endpoint."""
    users: int = 100
    """Members who log in; requests go round-robin over them (and their chargers)."""
    fleet_chargers: int = 1000
    """Background rows (chargers, owners, keypad PINs of another organisation)."""
    warmup_requests: int = 100
    """Unmeasured requests per endpoint before its window (a few at a time)."""
    database_url: str | None = None
    """``None``: SQLite in a temporary data directory."""
    pin: bool = True
    """Server on core 0, generator on core 1."""
    late_limit_s: float = 2.0
    """Saturated: the oldest request in flight (or the schedule) this far behind."""
    max_in_flight: int = 2000
    connections: int = 64
    timeout_s: float = 10.0


QUICK = ApiPlan(rate=40.0, seconds=1.5, users=8, fleet_chargers=20, warmup_requests=16)
"""A few seconds per endpoint; the whole run takes about 20 s."""


@dataclass(kw_only=True)
class EndpointResult:
    name: str
    scheduled: int
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None
    seconds: float = 0.0
    server_cpu_s: float = 0.0
    generator_cpu_s: float = 0.0
    saturated: str | None = None

    @property
    def completed(self) -> int:
        return len(self.latencies_s)

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    def p(self, pct: float) -> float:
        return percentile(self.latencies_s, pct) * 1000

    @property
    def max_ms(self) -> float:
        return max(self.latencies_s) * 1000 if self.latencies_s else math.nan

    @property
    def server_cpu_ms(self) -> float:
        answered = self.completed + self.errors
        return self.server_cpu_s / answered * 1000 if answered else math.nan


@dataclass(kw_only=True)
class ApiResult:
    plan: ApiPlan
    database: str
    endpoints: dict[str, EndpointResult] = field(default_factory=dict)
    load_average: tuple[float, float] = (math.nan, math.nan)
    pinned: bool = False


# -- the database ------------------------------------------------------------------------
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def database_kind(url: str | None) -> str:
    if url is None:
        return "sqlite"
    if not url.startswith("postgresql+asyncpg://"):
        raise InvalidInput(
            "--database-url takes a postgresql+asyncpg:// URL (SQLite in a temporary "
            "directory is the default)"
        )
    return "postgresql"


@asynccontextmanager
async def bench_database(url: str | None) -> AsyncIterator[str | None]:
    """A PostgreSQL URL's database, created for the run and dropped after it. The bench
    never touches a database it did not create: one that exists already is refused."""
    if url is None:
        yield None
        return
    import asyncpg  # noqa: PLC0415 (only a PostgreSQL run needs it)

    parsed = make_url(url)
    name = parsed.database or ""
    if not _NAME.fullmatch(name) or name in {"postgres", "template0", "template1"}:
        raise InvalidInput(
            "--database-url must name a new database (lower-case letters, digits, _), which "
            "the bench creates and drops"
        )
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        await run(f"CREATE DATABASE {name}")
    except asyncpg.DuplicateDatabaseError:
        raise InvalidInput(
            f"database {name} exists: the bench creates its own database and drops it "
            "after the run, so name one that does not exist"
        ) from None
    try:
        yield url
    finally:
        await run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# -- the load ----------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, slots=True)
class Member:
    email: str
    charger_id: str
    token: str = field(repr=False)


def _problem(response: httpx.Response) -> str:
    """``HTTP 422 pin_rejected``: the status and the problem code, never the body."""
    code = ""
    try:
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("code"), str):
            code = " " + re.sub(r"[^a-z0-9_]", "", body["code"])[:40]
    except ValueError:
        pass
    return f"HTTP {response.status_code}{code}"


Send = Callable[[int], Awaitable[str | None]]
"""Send request ``k``; ``None`` when the answer was the expected one, else why not."""


def fresh_codes(count: int, digits: int, seed: int) -> list[str]:
    """``count`` distinct keypad PINs that the server's rules accept (not trivial)."""
    pick = random.Random(seed)
    codes: dict[str, None] = {}
    while len(codes) < count:
        code = f"{pick.randrange(10**digits):0{digits}d}"
        if not trivial_reasons(code):
            codes[code] = None
    return list(codes)


def senders(
    client: httpx.AsyncClient,
    members: Sequence[Member],
    organisation_id: str,
    codes: Sequence[str],
) -> dict[str, Send]:
    async def health(k: int) -> str | None:
        response = await client.get("/health")
        if response.status_code != 200:
            return _problem(response)
        return None if response.json().get("status") == "ok" else "health not ok"

    async def reveal(k: int) -> str | None:
        member = members[k % len(members)]
        response = await client.post(
            f"/api/chargers/{member.charger_id}/bluetooth-pin/reveal",
            headers={"Authorization": f"Bearer {member.token}"},
        )
        if response.status_code != 200:
            return _problem(response)
        pin = response.json().get("pin")
        ok = isinstance(pin, str) and pin.isdigit() and len(pin) == 6
        return None if ok else "reveal answered without a 6-digit PIN"

    # A person sets their own PIN once at a time: a member's next set waits for the answer
    # to their last (the wait counts: latency runs from the scheduled time). Concurrent sets
    # of one member's PIN can each lose the unique-index race three times, and the server
    # then answers pin_rejected (docs/performance.md, "REST API").
    one_at_a_time = [asyncio.Lock() for _ in members]

    async def keypad_pin_set(k: int) -> str | None:
        member = members[k % len(members)]
        async with one_at_a_time[k % len(members)]:
            response = await client.put(
                f"/api/organisations/{organisation_id}/keypad-pin",
                headers={"Authorization": f"Bearer {member.token}"},
                json={"pin": codes[k]},
            )
        return None if response.status_code == 200 else _problem(response)

    return {"health": health, "reveal": reveal, "keypad_pin_set": keypad_pin_set}


async def _checked(send: Send, k: int) -> str | None:
    try:
        return await send(k)
    except httpx.TimeoutException:
        return "timeout"
    except httpx.HTTPError as exc:
        return type(exc).__name__


async def open_loop(
    send: Send,
    result: EndpointResult,
    *,
    rate: float,
    first: int,
    plan: ApiPlan,
    on_answer: Callable[[], None],
    server_pid: int,
) -> None:
    """``result.scheduled`` requests, request ``k`` at ``t0 + k / rate``, latency from the
    scheduled time. Stops scheduling (saturated) when the schedule or the oldest request in
    flight is ``plan.late_limit_s`` behind, or ``plan.max_in_flight`` are in flight."""
    loop = asyncio.get_running_loop()
    in_flight: dict[int, float] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def one(k: int, scheduled: float) -> None:
        error = await _checked(send, first + k)
        done = loop.time()
        del in_flight[k]
        if error is None:
            result.latencies_s.append(done - scheduled)
        else:
            result.errors += 1
            result.first_error = result.first_error or error
        on_answer()

    cpu0, generator0 = cpu_seconds(server_pid), time.process_time()
    t0 = loop.time() + 0.05
    for k in range(result.scheduled):
        scheduled = t0 + k / rate
        now = loop.time()
        if scheduled > now:
            await asyncio.sleep(scheduled - now)
            now = loop.time()
        oldest = now - next(iter(in_flight.values()), now)
        late = now - scheduled
        if max(oldest, late) > plan.late_limit_s or len(in_flight) >= plan.max_in_flight:
            # ``late``: this generator fell behind its own schedule (its core was busy);
            # ``oldest``: the server has not answered a request sent that long ago.
            result.saturated = (
                f"stopped after {k:,} of {result.scheduled:,} requests: "
                f"{len(in_flight):,} in flight, the oldest {oldest:.1f} s old, "
                f"the generator {late:.1f} s behind its schedule"
            )
            break
        in_flight[k] = scheduled
        task = loop.create_task(one(k, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    result.seconds = loop.time() - t0
    result.server_cpu_s = cpu_seconds(server_pid) - cpu0
    result.generator_cpu_s = time.process_time() - generator0


async def warm_up(send: Send, count: int, *, first: int) -> str | None:
    """``count`` unmeasured requests, 4 at a time; the first error, if any."""
    gate = asyncio.Semaphore(4)
    errors: list[str] = []

    async def one(k: int) -> None:
        async with gate:
            error = await _checked(send, first + k)
            if error is not None:
                errors.append(error)

    await asyncio.gather(*(one(k) for k in range(count)))
    return errors[0] if errors else None


async def wait_healthy(client: httpx.AsyncClient, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if (await client.get("/health")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TargetUnavailable("the REST API did not answer /health in time")
        await asyncio.sleep(0.1)


async def log_in(client: httpx.AsyncClient, seeded: dict[str, Any]) -> list[Member]:
    """Every seeded member logs in through ``POST /api/auth/login`` (argon2id verify)."""
    gate = asyncio.Semaphore(LOGIN_CONCURRENCY)
    password: str = seeded["password"]

    async def one(entry: dict[str, str]) -> Member:
        async with gate:
            response = await client.post(
                "/api/auth/login", json={"email": entry["email"], "password": password}
            )
        if response.status_code != 200:
            raise BenchInvalid(f"a bench member could not log in ({_problem(response)})")
        return Member(
            email=entry["email"], charger_id=entry["charger_id"], token=response.json()["token"]
        )

    return list(await asyncio.gather(*(one(m) for m in seeded["members"])))


async def run_api_bench(
    plan: ApiPlan, *, say: Callable[[str], None], progress_console: Console
) -> ApiResult:
    kind = database_kind(plan.database_url)
    result = ApiResult(plan=plan, database=kind)
    load_before = os.getloadavg()[0]
    original = os.sched_getaffinity(0)
    pin = plan.pin and len(original) >= 2 and {SERVER_CPU, GENERATOR_CPU} <= original
    if plan.pin and not pin:
        say("fewer than 2 usable cores: processes are not pinned")
    result.pinned = pin
    total = math.ceil(plan.rate * plan.seconds)
    try:
        if pin:
            os.sched_setaffinity(0, {GENERATOR_CPU})
        async with bench_database(plan.database_url) as url:
            with tempfile.TemporaryDirectory(prefix="evaccess-bench-api-") as workdir:
                say(
                    f"seeding {plan.users} members and {plan.fleet_chargers} background "
                    f"chargers on {kind}, starting evaccess server run"
                )
                server = start_evaccess_run_server(
                    cpu=SERVER_CPU if pin else None,
                    workdir=Path(workdir),
                    chargers=plan.fleet_chargers,
                    database_url=url,
                    api_users=plan.users,
                )
                try:
                    await _measure(plan, server, Path(workdir), result, total, say,
                                   progress_console)  # fmt: skip
                finally:
                    server.stop()
    finally:
        os.sched_setaffinity(0, original)
    result.load_average = (load_before, os.getloadavg()[0])
    return result


async def _measure(
    plan: ApiPlan,
    server: ServerProcess,
    workdir: Path,
    result: ApiResult,
    total: int,
    say: Callable[[str], None],
    progress_console: Console,
) -> None:
    seeded: dict[str, Any] = json.loads((workdir / API_IDENTITIES).read_text())
    # Idle connections are dropped after 1 s, before uvicorn's 5 s keep-alive timeout: with
    # equal timeouts a request can go out on a connection the server is closing (ReadError).
    limits = httpx.Limits(
        max_connections=plan.connections,
        max_keepalive_connections=plan.connections,
        keepalive_expiry=1.0,
    )
    assert server.http_url is not None
    async with httpx.AsyncClient(
        base_url=server.http_url, limits=limits, timeout=plan.timeout_s, trust_env=False
    ) as client:
        await wait_healthy(client)
        say(f"{plan.users} members log in")
        members = await log_in(client, seeded)
        codes = fresh_codes(
            total + plan.warmup_requests, int(seeded["digits"]), secrets.randbits(32)
        )
        send = senders(client, members, seeded["organisation_id"], codes)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=progress_console, transient=False) as progress:
            for name in ENDPOINTS:
                task = progress.add_task(f"{name:<15}", total=total)
                error = await warm_up(send[name], plan.warmup_requests, first=total)
                endpoint = EndpointResult(name=name, scheduled=total)
                result.endpoints[name] = endpoint
                if error is not None:
                    endpoint.errors, endpoint.first_error = 1, f"in the warm-up: {error}"
                    continue
                await open_loop(
                    send[name],
                    endpoint,
                    rate=plan.rate,
                    first=0,
                    plan=plan,
                    on_answer=lambda task=task: progress.advance(task),  # type: ignore[misc]
                    server_pid=server.pid,
                )


# -- report ------------------------------------------------------------------------------
def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def summary_line(result: ApiResult) -> str:
    """``database=sqlite rate=200 health_p99_ms=X reveal_p99_ms=Y keypad_pin_set_p99_ms=Z
    errors=N saturated=M``."""
    parts = [f"database={result.database}", f"rate={result.plan.rate:g}"]
    for name in ENDPOINTS:
        endpoint = result.endpoints.get(name)
        parts.append(f"{name}_p99_ms={_ms(endpoint.p(99)) if endpoint else '-'}")
    errors = sum(e.errors for e in result.endpoints.values())
    saturated = sum(1 for e in result.endpoints.values() if e.saturated)
    parts += [f"errors={errors}", f"saturated={saturated}"]
    return " ".join(parts)


def render(result: ApiResult, console: Console) -> str:
    plan = result.plan
    table = Table(
        title=f"REST API on {result.database}: open loop, {plan.rate:g} requests/s for "
        f"{plan.seconds:g} s per endpoint, {plan.users} members, latency from the scheduled "
        "send time"
    )
    for column in (
        "endpoint",
        "answered",
        "achieved /s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "p99 / health p99",
        "errors",
        "server CPU ms / req",
        "generator CPU %",
    ):
        table.add_column(column)
    health = result.endpoints.get("health")
    ceiling = health.p(99) if health else math.nan
    for name, e in result.endpoints.items():
        ratio = e.p(99) / ceiling if ceiling and not math.isnan(ceiling) else math.nan
        table.add_row(
            name,
            f"{e.completed:,}",
            f"{e.rate:,.0f}",
            _ms(e.p(50)),
            _ms(e.p(99)),
            _ms(e.max_ms),
            "-" if math.isnan(ratio) else f"{ratio:.1f}x",
            f"{e.errors:,}",
            _ms(e.server_cpu_ms),
            f"{100 * e.generator_cpu_s / e.seconds:.0f}" if e.seconds else "-",
        )
    console.print(table)
    for name, e in result.endpoints.items():
        if e.saturated:
            console.print(f"[bold yellow]{name} saturated:[/] {e.saturated}", highlight=False)
        if e.errors:
            console.print(
                f"[bold red]{name}: {e.errors} error(s)[/], first: {e.first_error}",
                highlight=False,
            )
    for name in ("reveal", "keypad_pin_set"):
        measured = result.endpoints.get(name)
        if measured is not None and measured.latencies_s:
            met = measured.p(99) <= TARGET_P99_MS and not measured.saturated
            console.print(
                f"{name}: p99 {measured.p(99):.2f} ms, target ≤ {TARGET_P99_MS:g} ms "
                f"{'met' if met else 'MISSED'}",
                highlight=False,
            )
    before, after = result.load_average
    console.print(
        f"server {'on core 0, generator on core 1' if result.pinned else 'not pinned'}; "
        f"machine load average (1 min): {before:.2f} before, {after:.2f} after, on "
        f"{os.cpu_count()} cores",
        highlight=False,
    )
    line = summary_line(result)
    console.print(line, highlight=False, soft_wrap=True)
    return line


def require_clean(result: ApiResult) -> None:
    """A run with errors measured something else than the endpoints' work: refused."""
    failed = {n: e for n, e in result.endpoints.items() if e.errors}
    if failed:
        detail = ", ".join(f"{n}: {e.errors} (first: {e.first_error})" for n, e in failed.items())
        raise BenchInvalid(f"non-2xx or failed answers, {detail}: the figures are not valid")
