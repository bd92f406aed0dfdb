"""the audit chain's head row exists from the start

Appends lock the head row (``SELECT ... FOR UPDATE``). On a database where nothing was audited
yet there was no row to lock: two first appends at once (chargers booting together on
PostgreSQL, seen by ``evaccess bench cluster``) both inserted it and one failed with an
IntegrityError. Now the row is there before any append.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 19:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = bytes(32)
"""``audit.GENESIS``: the mac before the first record (a migration keeps its own copy)."""


def upgrade() -> None:
    head = sa.table(
        "audit_head",
        sa.column("id", sa.Integer),
        sa.column("seq", sa.BigInteger),
        sa.column("mac", sa.LargeBinary),
    )
    bind = op.get_bind()
    if bind.execute(sa.select(sa.func.count()).select_from(head)).scalar_one() == 0:
        op.execute(head.insert().values(id=1, seq=0, mac=GENESIS))


def downgrade() -> None:
    """The row stays: it is what the first append would have written."""
