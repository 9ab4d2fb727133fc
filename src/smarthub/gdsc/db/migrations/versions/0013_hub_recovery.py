"""recovery of a replaced or wiped hub (issue 20 item 2): recovery jobs and their steps

One row per recovery (which hub, from which hub's state, why, progress) and one per step (its
command type and the urgent job delivering it now; smarthub.gdsc.fleet.recovery).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "hub_recoveries",
        sa.Column(
            "recovery_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("hub_id", sa.String(length=64), nullable=False),
        sa.Column("source_hub_id", sa.String(length=64), nullable=False),
        sa.Column("premises_id", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("storage_id", sa.String(length=16), nullable=True),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished", sa.DateTime(timezone=True), nullable=True),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("applied", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("recovery_id", name=op.f("pk_hub_recoveries")),
    )
    op.create_index(op.f("ix_hub_recoveries_hub_id"), "hub_recoveries", ["hub_id"], unique=False)
    op.create_table(
        "hub_recovery_steps",
        sa.Column(
            "recovery_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("command_type", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("recovery_id", "seq", name=op.f("pk_hub_recovery_steps")),
    )


def downgrade() -> None:
    op.drop_table("hub_recovery_steps")
    op.drop_index(op.f("ix_hub_recoveries_hub_id"), table_name="hub_recoveries")
    op.drop_table("hub_recoveries")
