"""transfer policies per hub or group, premises groups, the policy queued per hub (issue 20 item 3)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "transfer_policies",
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("scope_key", sa.String(length=64), nullable=False),
        sa.Column("frequency", sa.String(length=16), nullable=False),
        sa.Column("window_start", sa.Integer(), nullable=False),
        sa.Column("window_length", sa.Integer(), nullable=False),
        sa.Column("aggregation", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("set_by", sa.String(length=64), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "scope_key", name=op.f("pk_transfer_policies")),
    )
    op.create_table(
        "premises_groups",
        sa.Column("premises_id", sa.String(length=64), nullable=False),
        sa.Column("premises_class", sa.String(length=64), nullable=True),
        sa.Column("tariff", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["premises_id"], ["premises.premises_id"], name=op.f("fk_premises_groups_premises_id_premises")
        ),
        sa.PrimaryKeyConstraint("premises_id", name=op.f("pk_premises_groups")),
    )
    op.create_table(
        "hub_transfer_policy",
        sa.Column("hub_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=160), nullable=False),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hub_id", name=op.f("pk_hub_transfer_policy")),
    )


def downgrade() -> None:
    op.drop_table("hub_transfer_policy")
    op.drop_table("premises_groups")
    op.drop_table("transfer_policies")
