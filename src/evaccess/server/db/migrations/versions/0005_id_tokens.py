"""RFID cards and other OCPP tokens of users, on local lists; an organisation's
MasterPassGroupId

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 16:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from evaccess.server.db.types import UtcDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("master_pass_group_id", sa.String(length=20), nullable=True))
    op.create_table(
        "id_tokens",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("root_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("token_type", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("last_chars", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expires_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("group_id_token", sa.String(length=20), nullable=True),
        sa.Column("label", sa.String(length=100), nullable=True),
        sa.Column("sealed_value", sa.LargeBinary(), nullable=True),
        sa.Column("sealed_key_version", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_id_tokens_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_id_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_id_tokens_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_id_tokens")),
        sa.UniqueConstraint("root_id", "digest", name=op.f("uq_id_tokens_root_id_digest")),
    )
    op.create_table(
        "local_list_cards",
        sa.Column("charger_id", sa.String(length=36), nullable=False),
        sa.Column("token_id", sa.String(length=36), nullable=False),
        sa.Column("token_type", sa.String(length=16), nullable=False),
        sa.Column("sealed_value", sa.LargeBinary(), nullable=False),
        sa.Column("sealed_key_version", sa.Integer(), nullable=False),
        sa.Column("group_id_token", sa.String(length=20), nullable=True),
        sa.Column("expires_at", UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["charger_id"],
            ["chargers.id"],
            name=op.f("fk_local_list_cards_charger_id_chargers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("charger_id", "token_id", name=op.f("pk_local_list_cards")),
    )
    with op.batch_alter_table("id_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_id_tokens_organisation_id"), ["organisation_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_id_tokens_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("id_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_id_tokens_user_id"))
        batch_op.drop_index(batch_op.f("ix_id_tokens_organisation_id"))
    op.drop_table("id_tokens")
    op.drop_table("local_list_cards")
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.drop_column("master_pass_group_id")
