"""claims through support, the staff roles of the operator's own people, and the
installer's transfer that keeps service access

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 07:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from evaccess.server.db.types import UtcDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("staff_role", sa.String(length=20), nullable=True))
    with op.batch_alter_table("ownership_transfers") as batch:
        batch.add_column(
            sa.Column(
                "keep_service_access", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
    op.create_table(
        "ownership_claims",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("charger_id", sa.String(length=36), nullable=False),
        sa.Column("ownership_id", sa.String(length=36), nullable=True),
        sa.Column("claimant_id", sa.String(length=36), nullable=False),
        sa.Column("installation_address", sa.String(length=500), nullable=False),
        sa.Column("installer_name", sa.String(length=200), nullable=False),
        sa.Column("document_key", sa.String(length=64), nullable=False),
        sa.Column("document_type", sa.String(length=40), nullable=False),
        sa.Column("document_size", sa.Integer(), nullable=False),
        sa.Column("document_sha256", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("filed_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("objection_until", UtcDateTime(timezone=True), nullable=True),
        sa.Column("first_approver_id", sa.String(length=36), nullable=True),
        sa.Column("second_approver_id", sa.String(length=36), nullable=True),
        sa.Column("decided_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=36), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["charger_id"],
            ["chargers.id"],
            name=op.f("fk_ownership_claims_charger_id_chargers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ownership_id"],
            ["ownerships.id"],
            name=op.f("fk_ownership_claims_ownership_id_ownerships"),
        ),
        sa.ForeignKeyConstraint(
            ["claimant_id"], ["users.id"], name=op.f("fk_ownership_claims_claimant_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["first_approver_id"],
            ["users.id"],
            name=op.f("fk_ownership_claims_first_approver_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["second_approver_id"],
            ["users.id"],
            name=op.f("fk_ownership_claims_second_approver_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"], ["users.id"], name=op.f("fk_ownership_claims_decided_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ownership_claims")),
    )
    for column in ("charger_id", "claimant_id", "state", "filed_at"):
        op.create_index(
            op.f(f"ix_ownership_claims_{column}"), "ownership_claims", [column], unique=False
        )


def downgrade() -> None:
    op.drop_table("ownership_claims")
    with op.batch_alter_table("ownership_transfers") as batch:
        batch.drop_column("keep_service_access")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("staff_role")
