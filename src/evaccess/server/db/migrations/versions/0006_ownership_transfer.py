"""ownership transfers

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-02 16:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ownership_transfers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("charger_id", sa.String(length=36), nullable=False),
        sa.Column("ownership_id", sa.String(length=36), nullable=False),
        sa.Column("from_user_id", sa.String(length=36), nullable=False),
        sa.Column("to_email", sa.String(length=320), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["charger_id"],
            ["chargers.id"],
            name=op.f("fk_ownership_transfers_charger_id_chargers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"], ["users.id"], name=op.f("fk_ownership_transfers_decided_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["from_user_id"], ["users.id"], name=op.f("fk_ownership_transfers_from_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["ownership_id"],
            ["ownerships.id"],
            name=op.f("fk_ownership_transfers_ownership_id_ownerships"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ownership_transfers")),
    )
    with op.batch_alter_table("ownership_transfers", schema=None) as batch_op:
        for column in ("charger_id", "from_user_id", "ownership_id", "to_email"):
            batch_op.create_index(
                batch_op.f(f"ix_ownership_transfers_{column}"), [column], unique=False
            )


def downgrade() -> None:
    with op.batch_alter_table("ownership_transfers", schema=None) as batch_op:
        for column in ("to_email", "ownership_id", "from_user_id", "charger_id"):
            batch_op.drop_index(batch_op.f(f"ix_ownership_transfers_{column}"))
    op.drop_table("ownership_transfers")
