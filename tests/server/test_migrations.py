"""The migrations build exactly the schema the models describe, on both databases: a model
change without its migration (or a migration chain broken by a merge) fails here, not in a
user's first ``evaccess server run``."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from evaccess.server.db.engine import make_engine
from evaccess.server.db.migrate import alembic_config
from evaccess.server.db.models import Base


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "render_as_batch": True}
    )
    return list(compare_metadata(context, Base.metadata))


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_differences)
    finally:
        await engine.dispose()
    assert differences == []


def test_the_migration_history_is_one_line() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://"))
    assert len(script.get_heads()) == 1, "two migration heads: fix down_revision after a merge"
    assert len(script.get_bases()) == 1


@pytest.mark.postgres
async def test_a_postgresql_log_from_before_the_lanes_carries_on_in_lane_one(
    tmp_path, clock
) -> None:
    """Migration 0010 on a database with records: they stay lane 1's chain, the sequence
    goes on after the last of them, and the whole log verifies."""
    import secrets

    import asyncpg
    from sqlalchemy import column, insert, select, table, update

    from evaccess.server.audit import GENESIS, AuditEntry, AuditLog, _canonical
    from evaccess.server.db.engine import Database
    from evaccess.server.db.migrate import upgrade
    from evaccess.server.db.models import AuditHead, AuditRecord
    from evaccess.server.keys import FileKeyProvider
    from tests.conftest import POSTGRES_URL, SeededRandom

    if not POSTGRES_URL:
        pytest.skip("EVACCESS_TEST_POSTGRES_URL is not set")
    base, _, _ = POSTGRES_URL.rpartition("/")
    admin = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    name = f"evaccess_lanes_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(admin)
    await conn.execute(f"CREATE DATABASE {name}")
    url = f"{base}/{name}"
    try:
        await upgrade(url, "0009")
        before_0010 = table(
            "audit_records",
            *(column(c) for c in ("seq", "at", "action", "details", "prev_mac", "mac")),
        )
        audit = AuditLog(FileKeyProvider(tmp_path / "keys", SeededRandom()), clock)
        db = Database(url)
        try:
            mac, at = GENESIS, clock.now()
            async with db.transaction() as session:  # what the code before 0010 wrote
                for seq in (1, 2, 3):
                    entry = AuditEntry(action="test.before")
                    prev, mac = mac, audit._mac(mac, _canonical(seq, at, entry, "{}"))
                    await session.execute(
                        insert(before_0010).values(
                            seq=seq, at=at, action=entry.action, details="{}",
                            prev_mac=prev, mac=mac,
                        )
                    )  # fmt: skip
                await session.execute(update(AuditHead).values(seq=3, mac=mac))
        finally:
            await db.dispose()
        await upgrade(url)
        db = Database(url)
        try:
            for _ in range(2):
                async with db.transaction() as session:
                    await audit.append(session, AuditEntry(action="test.after"))
            async with db.snapshot() as session:
                rows = (await session.execute(select(AuditRecord.seq, AuditRecord.lane))).all()
                report = await audit.verify(session)
        finally:
            await db.dispose()
        assert sorted(rows) == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]
        assert (report.ok, report.records) == (True, 5)
    finally:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.close()
