"""``evaccess bench audit``: audited transactions on PostgreSQL with one audit lane against
all of them, in one run (docs/performance.md, "Several nodes").

Every audited write locks a lane's head row until it commits. With one lane (the log before
migration 0010) a transaction that is slow after its append, because its event loop is busy
or it has more statements to run, holds up every other audited write; with ``audit.LANES``
the others take another lane. The workload: ``workers`` concurrent transactions, each
appending one record, then holding its transaction ``hold_ms`` longer (``pg_sleep``: the rest
of a request's transaction), then committing, until ``transactions`` are done; the chain is
verified after each phase.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import text

from evaccess.bench.cluster import BenchFailed, temporary_database
from evaccess.domain.clock import SystemClock, SystemRandom
from evaccess.server.audit import LANES, AuditEntry, AuditLog
from evaccess.server.db.engine import Database
from evaccess.server.db.migrate import upgrade
from evaccess.server.keys import FileKeyProvider

_HOLD = text("SELECT pg_sleep(:seconds)")


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditPlan:
    workers: int = 32
    transactions: int = 2000
    hold_ms: float = 2.0


QUICK = AuditPlan(workers=8, transactions=200, hold_ms=2.0)


@dataclass(kw_only=True, slots=True)
class Phase:
    lanes: int
    seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    lanes_used: int = 0

    @property
    def per_second(self) -> float:
        return len(self.latencies_s) / self.seconds if self.seconds else 0.0

    def percentile_ms(self, pct: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))] * 1000


@dataclass(kw_only=True, slots=True)
class AuditResult:
    plan: AuditPlan
    phases: list[Phase]


async def _phase(db: Database, audit: AuditLog, plan: AuditPlan, phase: Phase) -> None:
    remaining = plan.transactions
    hold = {"seconds": plan.hold_ms / 1000}

    async def worker(progress: Callable[[], None]) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            async with db.transaction() as session:
                await audit.append(session, AuditEntry(action="bench.audit"))
                await session.execute(_HOLD, hold)
            phase.latencies_s.append(time.perf_counter() - started)
            progress()

    with Progress(transient=True) as bar:
        task = bar.add_task(f"{phase.lanes} lane(s)", total=plan.transactions)
        started = time.perf_counter()
        await asyncio.gather(*(worker(lambda: bar.advance(task)) for _ in range(plan.workers)))
        phase.seconds = time.perf_counter() - started
    async with db.snapshot() as session:
        report = await audit.verify(session)
        phase.lanes_used = len(
            (await session.scalars(text("SELECT DISTINCT lane FROM audit_records"))).all()
        )
    if not report.ok:
        raise BenchFailed(f"the audit chain did not verify: record {report.first_bad_seq}")


async def run_audit_bench(plan: AuditPlan, *, postgres_url: str) -> AuditResult:
    result = AuditResult(plan=plan, phases=[])
    with tempfile.TemporaryDirectory(prefix="evaccess-bench-audit-") as keys:
        provider = FileKeyProvider(Path(keys), SystemRandom())
        for lanes in (1, LANES):
            # A database of its own per phase, so the lanes counted are the phase's.
            async with temporary_database(postgres_url) as url:
                await upgrade(url)
                db = Database(url)
                try:
                    phase = Phase(lanes=lanes)
                    await _phase(db, AuditLog(provider, SystemClock(), lanes=lanes), plan, phase)
                    result.phases.append(phase)
                finally:
                    await db.dispose()
    return result


def render(result: AuditResult, console: Console) -> None:
    plan = result.plan
    table = Table(
        title=(
            f"Audited transactions on PostgreSQL: {plan.workers} at once, each held "
            f"{plan.hold_ms:g} ms after its append, {plan.transactions} per phase"
        )
    )
    for column in ("audit lanes", "lanes used", "transactions/s", "p50 ms", "p99 ms"):
        table.add_column(column, justify="right")
    base = result.phases[0].per_second
    for phase in result.phases:
        table.add_row(
            str(phase.lanes),
            str(phase.lanes_used),
            f"{phase.per_second:,.0f} ({phase.per_second / base:.2f}x)",
            f"{phase.percentile_ms(50):.1f}",
            f"{phase.percentile_ms(99):.1f}",
        )
    console.print(table)
    console.print("chain verified after each phase")
