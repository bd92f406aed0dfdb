"""The migrations build exactly the schema the models describe, on both databases: a model
change without its migration (or a migration chain broken by a merge) fails here, not in a
user's first ``evaccess server run``."""

from __future__ import annotations

from typing import Any

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
