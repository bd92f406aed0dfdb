"""The database layer: on PostgreSQL a pooled connection is pinged only after lying idle
(``engine.PING_AFTER_IDLE_S``), and a server that dropped it is met by a fresh connection,
not by an error, once it has lain idle; on both databases ``snapshot()`` reads one state of
the data across statements, ``read()`` what each statement finds."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from evaccess.server.audit import AuditEntry
from evaccess.server.db.engine import PING_AFTER_IDLE_S, Database
from evaccess.server.db.models import AuditRecord


async def _backend_pid(db: Database) -> int:
    async with db.transaction() as session:
        pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    assert isinstance(pid, int)
    return pid


async def _terminate(url: str, pid: int) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        # With a timeout, PostgreSQL answers once the backend has gone (true) or not (false).
        assert await conn.fetchval("SELECT pg_terminate_backend($1, 10000)", pid)
    finally:
        await conn.close()


@pytest.fixture
def postgres_url(database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        pytest.skip("connection pooling with pings is PostgreSQL's")
    return database_url


async def test_an_idle_connection_the_server_dropped_is_replaced_unseen(
    postgres_url: str, clock
) -> None:
    db = Database(postgres_url, monotonic=clock.monotonic)
    try:
        first = await _backend_pid(db)
        await _terminate(postgres_url, first)
        clock.advance(PING_AFTER_IDLE_S + 0.5)
        assert await _backend_pid(db) != first
    finally:
        await db.dispose()


async def test_a_connection_in_use_a_moment_ago_is_not_pinged(postgres_url: str, clock) -> None:
    """The price of skipping the ping: when the server drops a connection within a second
    of its last use, the next statement on it fails, and SQLAlchemy, seeing a disconnect,
    invalidates the pool, so the transaction after it works."""
    db = Database(postgres_url, monotonic=clock.monotonic)
    try:
        first = await _backend_pid(db)
        await _terminate(postgres_url, first)
        clock.advance(PING_AFTER_IDLE_S / 2)
        with pytest.raises(DBAPIError):
            await _backend_pid(db)
        assert await _backend_pid(db) != first
    finally:
        await db.dispose()


async def test_an_audit_verification_sees_one_snapshot_while_appends_commit(ctx) -> None:
    """``audit verify`` reads the records, then the lanes' heads. An append committed
    between the two statements moved a head past the last record read, and a live log was
    reported cut at its end ("records were removed"), on PostgreSQL, where each statement of
    a READ COMMITTED transaction sees what has been committed before it. In ``snapshot()``
    both statements see one state of the log."""
    for i in range(3):
        async with ctx.db.transaction() as session:
            await ctx.audit.append(session, AuditEntry(action="test.event", details={"i": i}))

    async with ctx.db.snapshot() as session:
        heads = session.scalars

        async def heads_after_an_append(*args, **kwargs):
            async with ctx.db.transaction() as other:
                await ctx.audit.append(other, AuditEntry(action="test.meanwhile"))
            return await heads(*args, **kwargs)

        session.scalars = heads_after_an_append
        report = await ctx.audit.verify(session)
    assert report.ok, report.reason
    assert report.records == 3

    async with ctx.db.snapshot() as session:  # the append is in the log, which verifies
        report = await ctx.audit.verify(session)
    assert report.ok and report.records == 4


async def test_a_read_sees_each_commit_before_its_statement(ctx) -> None:
    """``read()`` promises no snapshot across its statements (on PostgreSQL it runs them
    outside a transaction): a read that needs one state of several tables asks for
    ``snapshot()``."""
    async with ctx.db.read() as session:
        before = await session.scalar(select(func.count()).select_from(AuditRecord))
        async with ctx.db.transaction() as other:
            await ctx.audit.append(other, AuditEntry(action="test.meanwhile"))
        after = await session.scalar(select(func.count()).select_from(AuditRecord))
    if ctx.db.engine.dialect.name == "postgresql":
        assert after == before + 1
    async with ctx.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(AuditRecord)) == before + 1


def test_the_docs_give_the_idle_time_before_a_ping() -> None:
    root = Path(__file__).resolve().parents[2]
    assert PING_AFTER_IDLE_S == 1.0, "docs say 'more than a second'"
    assert "lying idle for more than a second" in (root / "docs/architecture.md").read_text()
    assert "lain idle for more than a second" in (root / "docs/performance.md").read_text()
