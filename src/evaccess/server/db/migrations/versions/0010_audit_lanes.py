"""the audit log in lanes on PostgreSQL

Every audited write locked the one head row until its commit, so on several nodes every such
write of the cluster queued behind that row (``evaccess bench cluster``: up to 36 of 50
connections waiting on it, cross-node command p99 150-790 ms). Records now carry the lane
(chain) they extend; PostgreSQL gets 16 lanes, an appender takes any lane no other
transaction holds, and the record numbers come from the sequence ``audit_seq`` (one numbering
across lanes, increasing within each). SQLite keeps its one lane: it has one writer at a time.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 17:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = bytes(32)
"""``audit.GENESIS``: the mac before a lane's first record (a migration keeps its own copy)."""
LANES = 16
"""``audit.LANES`` when this migration was written."""


def upgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.add_column(sa.Column("lane", sa.SmallInteger(), server_default="1", nullable=False))
        batch.create_index("ix_audit_records_lane_seq", ["lane", "seq"], unique=False)
    if op.get_bind().dialect.name != "postgresql":
        return
    head = sa.table(
        "audit_head",
        sa.column("id", sa.Integer),
        sa.column("seq", sa.BigInteger),
        sa.column("mac", sa.LargeBinary),
    )
    op.bulk_insert(head, [{"id": lane, "seq": 0, "mac": GENESIS} for lane in range(2, LANES + 1)])
    op.execute("CREATE SEQUENCE audit_seq AS bigint")
    op.execute(
        "SELECT setval('audit_seq', coalesce((SELECT max(seq) FROM audit_records), 0) + 1, false)"
    )


def downgrade() -> None:
    """Back to one chain: possible only while no record went to another lane."""
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT count(*) FROM audit_records WHERE lane <> 1")).scalar_one():
        raise RuntimeError(
            "audit records in lanes other than 1: the single-chain schema cannot hold them"
        )
    if bind.dialect.name == "postgresql":
        op.execute("DROP SEQUENCE audit_seq")
        op.execute("DELETE FROM audit_head WHERE id <> 1")
    with op.batch_alter_table("audit_records") as batch:
        batch.drop_index("ix_audit_records_lane_seq")
        batch.drop_column("lane")
