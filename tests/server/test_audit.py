"""The audit chain names the first bad record after an edit, deletion, insertion or reorder."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, insert, select, text, update

from evaccess.server.audit import AuditEntry
from evaccess.server.db.models import AuditHead, AuditRecord


async def append_many(ctx, n: int) -> None:
    for i in range(n):
        async with ctx.db.transaction() as session:
            await ctx.audit.append(session, AuditEntry(action="test.event", details={"i": i}))


async def verify(ctx):
    async with ctx.db.snapshot() as session:
        return await ctx.audit.verify(session)


async def test_intact_chain_verifies(ctx):
    await append_many(ctx, 6)
    report = await verify(ctx)
    assert report.ok
    assert report.records == 6


async def test_edit_is_detected_at_that_record(ctx):
    await append_many(ctx, 6)
    async with ctx.db.transaction() as session:
        await session.execute(
            update(AuditRecord).where(AuditRecord.seq == 4).values(actor_id="someone-else")
        )
    report = await verify(ctx)
    assert (report.first_bad_seq, report.reason) == (4, "contents were altered")


async def test_deletion_is_detected(ctx):
    await append_many(ctx, 6)
    async with ctx.db.transaction() as session:
        await session.execute(delete(AuditRecord).where(AuditRecord.seq == 3))
    report = await verify(ctx)
    assert report.first_bad_seq == 4


async def test_deletion_at_the_end_is_detected_by_the_head(ctx):
    await append_many(ctx, 6)
    async with ctx.db.transaction() as session:
        await session.execute(delete(AuditRecord).where(AuditRecord.seq == 6))
    report = await verify(ctx)
    assert report.first_bad_seq == 6
    assert "end" in report.reason


async def test_insertion_is_detected(ctx):
    await append_many(ctx, 6)
    async with ctx.db.transaction() as session:
        neighbour = (
            await session.execute(
                select(AuditRecord.at, AuditRecord.mac).where(AuditRecord.seq == 3)
            )
        ).one()
        # Renumber 4..6 to 5..7 and slip a forged record in at 4, reusing a neighbour's mac.
        for seq in (6, 5, 4):
            await session.execute(
                update(AuditRecord).where(AuditRecord.seq == seq).values(seq=seq + 1)
            )
        await session.execute(
            insert(AuditRecord).values(
                seq=4, at=neighbour.at, action="bluetooth_pin.revealed", details="{}",
                prev_mac=neighbour.mac, mac=neighbour.mac,
            )
        )  # fmt: skip
        await session.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=7))
    report = await verify(ctx)
    assert report.first_bad_seq == 4


async def test_reordering_is_detected(ctx):
    await append_many(ctx, 6)
    async with ctx.db.transaction() as session:
        await session.execute(update(AuditRecord).where(AuditRecord.seq == 2).values(seq=100))
        await session.execute(update(AuditRecord).where(AuditRecord.seq == 5).values(seq=2))
        await session.execute(update(AuditRecord).where(AuditRecord.seq == 100).values(seq=5))
    report = await verify(ctx)
    assert report.first_bad_seq == 2


@pytest.mark.parametrize("field", ["action", "details", "basis"])
async def test_every_field_is_covered_by_the_mac(ctx, field):
    await append_many(ctx, 3)
    async with ctx.db.transaction() as session:
        await session.execute(
            update(AuditRecord).where(AuditRecord.seq == 2).values({field: '{"i": 99}'})
        )
    assert (await verify(ctx)).first_bad_seq == 2


async def test_concurrent_appends_keep_one_chain(ctx):
    """Forty transactions appending at once (one rolled back): one unbroken chain."""
    import asyncio

    async def one(i: int) -> None:
        try:
            async with ctx.db.transaction() as session:
                await ctx.audit.append(session, AuditEntry(action="test.event", details={"i": i}))
                if i == 7:
                    raise LookupError("rolled back")
        except LookupError:
            pass

    await asyncio.gather(*(one(i) for i in range(40)))
    report = await verify(ctx)
    assert (report.ok, report.records) == (True, 39)


def on_postgres(ctx) -> bool:
    return ctx.db.engine.dialect.name == "postgresql"


async def test_an_open_audited_transaction_does_not_hold_up_another(ctx):
    """PostgreSQL: the second append takes another lane instead of queueing behind the first
    transaction's lock (SQLite has one writer at a time and one lane)."""
    import asyncio

    if not on_postgres(ctx):
        pytest.skip("lanes are PostgreSQL's")
    async with ctx.db.transaction() as session:
        await ctx.audit.append_many(session, [AuditEntry(action="test.before")] * 2)
    first_appended, finish_first = asyncio.Event(), asyncio.Event()

    async def slow() -> None:
        async with ctx.db.transaction() as session:
            await ctx.audit.append(session, AuditEntry(action="test.slow"))
            await ctx.audit.append(session, AuditEntry(action="test.slow.again"))
            first_appended.set()
            await finish_first.wait()

    holder = asyncio.create_task(slow())
    await first_appended.wait()
    # Would wait for ever (for ``finish_first``) if it queued behind the held lane.
    await asyncio.wait_for(append_many(ctx, 3), timeout=30)
    finish_first.set()
    await holder
    async with ctx.db.read() as session:
        rows = (
            await session.execute(
                select(AuditRecord.action, AuditRecord.lane).order_by(AuditRecord.seq)
            )
        ).all()
    slow_lanes = {lane for action, lane in rows if action.startswith("test.slow")}
    other_lanes = {lane for action, lane in rows if action == "test.event"}
    assert len(slow_lanes) == 1, "one transaction keeps to one lane"
    assert slow_lanes.isdisjoint(other_lanes)
    report = await verify(ctx)
    assert (report.ok, report.records) == (True, 7)


async def test_concurrent_appends_spread_over_lanes_and_each_lane_verifies(ctx):
    import asyncio

    if not on_postgres(ctx):
        pytest.skip("lanes are PostgreSQL's")
    gate = asyncio.Event()

    async def one(i: int) -> None:
        async with ctx.db.transaction() as session:
            await ctx.audit.append(session, AuditEntry(action="test.event", details={"i": i}))
            await gate.wait()  # all twelve hold their lane at once

    tasks = [asyncio.create_task(one(i)) for i in range(12)]
    holding = text(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "WHERE c.relname = 'audit_head' AND l.mode = 'RowShareLock'"
    )  # one per transaction holding a lane (SELECT ... FOR UPDATE)
    async with ctx.db.read() as session:
        while await session.scalar(holding) < 12:
            await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*tasks)
    async with ctx.db.read() as session:
        lanes = (await session.scalars(select(AuditRecord.lane).distinct())).all()
    assert len(lanes) == 12
    assert (await verify(ctx)).ok


async def test_a_record_moved_to_another_lane_is_detected(ctx):
    if not on_postgres(ctx):
        pytest.skip("lanes are PostgreSQL's")
    await append_many(ctx, 4)
    async with ctx.db.transaction() as session:
        await session.execute(update(AuditRecord).where(AuditRecord.seq == 3).values(lane=2))
        await session.execute(
            update(AuditHead).where(AuditHead.id == 2).values(
                seq=3, mac=select(AuditRecord.mac).where(AuditRecord.seq == 3).scalar_subquery()
            )
        )  # fmt: skip
    report = await verify(ctx)
    assert report.first_bad_seq == 3


def test_the_docs_name_the_lanes_the_code_has():
    from pathlib import Path

    from evaccess.server import audit

    root = Path(__file__).resolve().parents[2]
    assert f"the log is {audit.LANES} such chains" in (root / "docs/security.md").read_text()
    assert f"one of {audit.LANES} lanes'" in (root / "docs/architecture.md").read_text()
