"""``evaccess bench ocpp``: OCPP-J throughput, latency, CPU and memory of the servers under
test (``bench/targets.py``), measured with the raw-frame generator (``bench/loadgen.py``).

Method (docs/performance.md, "OCPP"): each server runs in its own process pinned to core 0,
the generator runs in this process pinned to core 1. Rounds are interleaved (a, b, c, a, b,
c, ...) so drift on the machine hits every target alike. Each round starts a fresh server
process and measures idle memory first (before any load grows the heap), then the load.
Figures are medians over rounds with min-max. CPU per round trip comes from the server's
``/proc/PID/stat`` utime+stime over the measurement window; memory per idle charger is the
server's RSS growth divided by the number of connected chargers.
"""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console
from rich.table import Table
from websockets.asyncio.client import ClientConnection

from evaccess.bench import loadgen
from evaccess.bench.targets import (
    ServerProcess,
    TargetUnavailable,
    raise_nofile_limit,
    start_baseline_server,
    start_echo_server,
    start_evaccess_run_server,
    start_evaccess_server,
)
from evaccess.domain.errors import EvAccessError

SERVER_CPU = 0
GENERATOR_CPU = 1
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, kw_only=True, slots=True)
class Plan:
    rounds: int = 3
    targets: tuple[str, ...] = ("baseline", "echo", "evaccess", "evaccess-deflate")
    closed_loop_chargers: tuple[int, ...] = (1, 100, 1000)
    warmup_s: float = 1.0
    duration_s: float = 5.0
    open_loop_chargers: int = 1000
    open_loop_rate: float = 3000.0
    open_loop_s: float = 10.0
    idle_chargers: tuple[int, ...] = (1000, 5000, 10000)
    pin: bool = True


QUICK = Plan(
    rounds=2,
    warmup_s=0.1,
    duration_s=0.4,
    open_loop_s=0.6,
    idle_chargers=(500,),
)
"""Under a minute with all three targets (about 8 s per target and round)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ClosedLoop:
    rate: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    generator_cpu_percent: float


@dataclass(frozen=True, kw_only=True, slots=True)
class OpenLoop:
    rate: float
    p50_ms: float
    p99_ms: float
    cpu_percent: float


@dataclass(kw_only=True)
class TargetRuns:
    """Every round's figures for one target."""

    closed: dict[int, list[ClosedLoop]] = field(default_factory=dict)
    open: list[OpenLoop] = field(default_factory=list)
    idle_bytes: dict[int, list[float]] = field(default_factory=dict)


@dataclass(kw_only=True)
class BenchResult:
    plan: Plan
    runs: dict[str, TargetRuns] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    load_average: tuple[float, float] = (math.nan, math.nan)
    """1-minute load average before and after: other processes compete for both cores."""


def percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (proc(5): fields 14 and 15 of /proc/PID/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size (proc(5): /proc/PID/statm, second field, in pages)."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


class CpuWindow:
    """Server CPU time between ``on_window(True)`` and ``on_window(False)``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = 0.0
        self.used = 0.0
        self.generator_start = 0.0
        self.generator_used = 0.0

    def __call__(self, opening: bool) -> None:
        if opening:
            self.start = cpu_seconds(self.pid)
            self.generator_start = time.process_time()
        else:
            self.used = cpu_seconds(self.pid) - self.start
            self.generator_used = time.process_time() - self.generator_start


Starter = Callable[[], ServerProcess]


def starters(plan: Plan, workdir: Path) -> dict[str, Starter]:
    cpu = SERVER_CPU if plan.pin else None
    chargers = max((*plan.closed_loop_chargers, plan.open_loop_chargers, *plan.idle_chargers))
    return {
        "baseline": lambda: start_baseline_server(cpu=cpu),
        "echo": lambda: start_echo_server(cpu=cpu),
        "evaccess": lambda: start_evaccess_run_server(cpu=cpu, workdir=workdir, chargers=chargers),
        # The same server, its chargers offering permessage-deflate (OCPP-J Part 4 §3.3).
        "evaccess-deflate": lambda: replace(
            start_evaccess_run_server(cpu=cpu, workdir=workdir, chargers=chargers),
            name="evaccess-deflate",
            compression="deflate",
        ),
        # Only the OCPP endpoint, in a process of its own (what the bench measured before).
        "evaccess-endpoint": lambda: start_evaccess_server(
            cpu=cpu, workdir=workdir, chargers=chargers
        ),
    }


async def measure_load(server: ServerProcess, plan: Plan, runs: TargetRuns) -> None:
    """Closed loop at each size, then the open loop, on one server process (one set of
    connections; each workload uses the first N of them)."""
    needed = max((*plan.closed_loop_chargers, plan.open_loop_chargers))
    connections = await loadgen.connect_many(server, needed)
    try:
        for n in plan.closed_loop_chargers:
            window = CpuWindow(server.pid)
            result = await loadgen.closed_loop(
                server,
                connections[:n],
                warmup_s=plan.warmup_s,
                duration_s=plan.duration_s,
                on_window=window,
            )
            _require_accepted(server, result)
            runs.closed.setdefault(n, []).append(
                ClosedLoop(
                    rate=result.rate,
                    p50_ms=percentile(result.latencies_s, 50) * 1000,
                    p99_ms=percentile(result.latencies_s, 99) * 1000,
                    cpu_us=window.used / result.messages * 1e6 if result.messages else math.nan,
                    generator_cpu_percent=100 * window.generator_used / result.seconds,
                )
            )
        window = CpuWindow(server.pid)
        result = await loadgen.open_loop(
            server,
            connections[: plan.open_loop_chargers],
            rate=plan.open_loop_rate,
            duration_s=plan.open_loop_s,
            on_window=window,
        )
        _require_accepted(server, result)
    finally:
        await loadgen.close_all(connections)
    runs.open.append(
        OpenLoop(
            rate=result.rate,
            p50_ms=percentile(result.latencies_s, 50) * 1000,
            p99_ms=percentile(result.latencies_s, 99) * 1000,
            cpu_percent=100 * window.used / result.seconds if result.seconds else math.nan,
        )
    )


class BenchInvalid(EvAccessError):
    """A run whose figures would not mean what they claim."""

    code = "bench_invalid"


def _require_accepted(server: ServerProcess, result: loadgen.LoadResult) -> None:
    if result.refused:
        raise BenchInvalid(
            f"{server.name} answered {result.refused} Authorize request(s) with something other "
            f"than Accepted (first: {result.first_refusal}): its figures would not measure "
            "keypad authorization"
        )


async def measure_idle(server: ServerProcess, plan: Plan, runs: TargetRuns) -> None:
    """Connect chargers in steps; each says one Authorize, then stays silent."""
    warm = await loadgen.connect_many(server, 10)
    _require_compression(server, warm[0])
    await _one_authorize(server, warm, first=0)
    await asyncio.sleep(0.3)
    base = rss_bytes(server.pid)
    connections = list(warm)
    try:
        for target in plan.idle_chargers:
            more = await loadgen.connect_many(
                server, target - len(connections) + 10, first=len(connections)
            )
            await _one_authorize(server, more, first=len(connections))
            connections += more
            await asyncio.sleep(0.5)
            grown = rss_bytes(server.pid) - base
            runs.idle_bytes.setdefault(target, []).append(grown / target)
    finally:
        await loadgen.close_all(connections)


def _require_compression(server: ServerProcess, connection: ClientConnection) -> None:
    """A ``-deflate`` target whose chargers did not get permessage-deflate measures nothing."""
    negotiated = bool(connection.protocol.extensions)
    if negotiated != (server.compression is not None):
        raise BenchInvalid(
            f"{server.name}: permessage-deflate {'was' if negotiated else 'was not'} "
            "negotiated: its figures would not measure what its name says"
        )


async def _one_authorize(
    server: ServerProcess, connections: Sequence[ClientConnection], *, first: int
) -> None:
    gate = asyncio.Semaphore(loadgen.CONNECT_CONCURRENCY)

    async def one(index: int, connection: ClientConnection) -> None:
        prefix, suffix = loadgen.authorize_frame_parts(server.identity(first + index).keycode)
        async with gate:
            await connection.send(f"{prefix}idle-{first + index}{suffix}")
            await loadgen.recv_reply(connection)

    await asyncio.gather(*(one(i, c) for i, c in enumerate(connections)))


async def run_bench(plan: Plan, *, say: Callable[[str], None]) -> BenchResult:
    """All rounds, interleaved by target; restores this process's CPU affinity after."""
    raise_nofile_limit()
    result = BenchResult(plan=plan)
    load_before = os.getloadavg()[0]
    original = os.sched_getaffinity(0)
    pin = plan.pin and len(original) >= 2 and {SERVER_CPU, GENERATOR_CPU} <= original
    if plan.pin and not pin:
        say("fewer than 2 usable cores: processes are not pinned")
    if pin:
        os.sched_setaffinity(0, {GENERATOR_CPU})
    pinned_plan = replace(plan, pin=pin)
    try:
        with tempfile.TemporaryDirectory(prefix="evaccess-bench-") as workdir:
            table = starters(pinned_plan, Path(workdir))
            for round_no in range(1, plan.rounds + 1):
                for name in plan.targets:
                    if name in result.missing:
                        continue
                    say(f"round {round_no}/{plan.rounds}: {name}")
                    try:
                        server = table[name]()
                    except TargetUnavailable as exc:
                        result.missing[name] = str(exc)
                        continue
                    runs = result.runs.setdefault(name, TargetRuns())
                    try:
                        # Idle memory first, on the fresh process: no heap grown by load yet.
                        await measure_idle(server, plan, runs)
                        await measure_load(server, plan, runs)
                    finally:
                        server.stop()
    finally:
        os.sched_setaffinity(0, original)
    result.load_average = (load_before, os.getloadavg()[0])
    return result


# -- report ------------------------------------------------------------------------------
def _spread(values: Sequence[float], fmt: str = "{:,.0f}") -> str:
    if not values:
        return "-"
    middle, low, high = (
        fmt.format(v) for v in (statistics.median(values), min(values), max(values))
    )
    return f"{middle} ({low}-{high})"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def summary_line(result: BenchResult) -> str:
    """``ratio_vs_baseline=X.XX ratio_vs_echo=Y.YY open_loop_p99_ms=Z kb_per_idle_charger=W``."""
    n = max(result.plan.closed_loop_chargers)

    def rate(name: str) -> float:
        runs = result.runs.get(name)
        return median([r.rate for r in runs.closed.get(n, [])]) if runs else math.nan

    ours = result.runs.get("evaccess")

    def num(value: float, fmt: str) -> str:
        return "n/a" if math.isnan(value) else fmt.format(value)

    vs_baseline = rate("evaccess") / rate("baseline")
    vs_echo = rate("evaccess") / rate("echo")
    p99 = median([o.p99_ms for o in ours.open]) if ours else math.nan
    most = max(result.plan.idle_chargers)
    kb = median(ours.idle_bytes.get(most, [])) / 1024 if ours else math.nan
    return (
        f"ratio_vs_baseline={num(vs_baseline, '{:.2f}')} ratio_vs_echo={num(vs_echo, '{:.2f}')} "
        f"open_loop_p99_ms={num(p99, '{:.1f}')} kb_per_idle_charger={num(kb, '{:.1f}')}"
    )


def compression_line(result: BenchResult) -> str | None:
    """Idle memory per evaccess charger without and with permessage-deflate, or None when
    the run did not measure both."""
    most = max(result.plan.idle_chargers)
    plain, deflate = (result.runs.get(name) for name in ("evaccess", "evaccess-deflate"))
    if plain is None or deflate is None:
        return None
    kb = [median(runs.idle_bytes.get(most, [])) / 1024 for runs in (plain, deflate)]
    return (
        f"evaccess idle memory per charger at {most:,}: {kb[0]:.1f} KB without compression, "
        f"{kb[1]:.1f} KB with permessage-deflate"
    )


def render(result: BenchResult, console: Console) -> str:
    plan = result.plan
    closed = Table(title=f"Closed loop: Authorize (KeyCode) round trips, {plan.rounds} rounds")
    for column in (
        "server",
        "chargers",
        "msg/s median (min-max)",
        "p50 ms",
        "p99 ms",
        "server CPU µs / round trip",
        "generator CPU %",
    ):
        closed.add_column(column)
    for name, runs in result.runs.items():
        for n, rows in runs.closed.items():
            closed.add_row(
                name,
                f"{n:,}",
                _spread([r.rate for r in rows]),
                _spread([r.p50_ms for r in rows], "{:.2f}"),
                _spread([r.p99_ms for r in rows], "{:.2f}"),
                _spread([r.cpu_us for r in rows], "{:.0f}"),
                _spread([r.generator_cpu_percent for r in rows], "{:.0f}"),
            )
    console.print(closed)

    opened = Table(
        title=f"Open loop: {plan.open_loop_rate:,.0f} msg/s over {plan.open_loop_chargers:,} "
        f"chargers, latency from the scheduled send time"
    )
    for column in ("server", "achieved msg/s", "p50 ms", "p99 ms", "server CPU %"):
        opened.add_column(column)
    for name, runs in result.runs.items():
        opened.add_row(
            name,
            _spread([o.rate for o in runs.open]),
            _spread([o.p50_ms for o in runs.open], "{:.2f}"),
            _spread([o.p99_ms for o in runs.open], "{:.2f}"),
            _spread([o.cpu_percent for o in runs.open], "{:.0f}"),
        )
    console.print(opened)

    idle = Table(title="Idle chargers: server RSS growth per connected charger")
    for column in ("server", "chargers", "bytes / charger median (min-max)"):
        idle.add_column(column)
    for name, runs in result.runs.items():
        for n, values in runs.idle_bytes.items():
            idle.add_row(name, f"{n:,}", _spread(values))
    console.print(idle)

    before, after = result.load_average
    console.print(
        f"machine load average (1 min): {before:.2f} before, {after:.2f} after, on "
        f"{os.cpu_count()} cores (anything above ~2 means other processes took CPU time)",
        highlight=False,
    )
    for name, why in result.missing.items():
        console.print(f"[bold yellow]missing target {name}:[/] {why}", highlight=False)
    idle_line = compression_line(result)
    if idle_line:
        console.print(idle_line, highlight=False, soft_wrap=True)
    line = summary_line(result)
    console.print(line, highlight=False, soft_wrap=True)
    return line
