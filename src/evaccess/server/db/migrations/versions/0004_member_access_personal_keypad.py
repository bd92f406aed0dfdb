"""organisation member access policy; personal keypad PIN spaces of charger owners

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "member_access", sa.String(length=16), server_default="assigned", nullable=False
            )
        )
    with op.batch_alter_table("keypad_pins", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_id", sa.String(length=36), nullable=True))
        batch_op.alter_column("pin_space_id", existing_type=sa.String(length=36), nullable=True)
        batch_op.create_foreign_key(
            batch_op.f("fk_keypad_pins_owner_id_users"),
            "users",
            ["owner_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_keypad_pins_owner_id_digest"), ["owner_id", "digest"]
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_keypad_pins_owner_id_user_id"), ["owner_id", "user_id"]
        )
        batch_op.create_check_constraint(
            "one_space", "(pin_space_id IS NULL) <> (owner_id IS NULL)"
        )


def downgrade() -> None:
    op.execute("DELETE FROM keypad_pins WHERE pin_space_id IS NULL")
    with op.batch_alter_table("keypad_pins", schema=None) as batch_op:
        batch_op.drop_constraint("ck_keypad_pins_one_space", type_="check")
        batch_op.drop_constraint(batch_op.f("uq_keypad_pins_owner_id_user_id"), type_="unique")
        batch_op.drop_constraint(batch_op.f("uq_keypad_pins_owner_id_digest"), type_="unique")
        batch_op.drop_constraint(batch_op.f("fk_keypad_pins_owner_id_users"), type_="foreignkey")
        batch_op.alter_column("pin_space_id", existing_type=sa.String(length=36), nullable=False)
        batch_op.drop_column("owner_id")
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.drop_column("member_access")
