"""aggregation groups, released aggregates, comparison releases; audit entries name the group

Aggregates are served over pre-defined groups of premises only, each half-hour released once
(smarthub.gdsc.aggregates); similar-homes figures are worked out once per period
(smarthub.gdsc.comparisons); an audit entry of an aggregate read names its group, so the members'
access logs can list it (issue 13).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "aggregation_groups",
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_id", name=op.f("pk_aggregation_groups")),
    )
    op.create_table(
        "aggregation_members",
        sa.Column("premises_id", sa.String(length=64), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["aggregation_groups.group_id"],
            name=op.f("fk_aggregation_members_group_id_aggregation_groups"),
        ),
        sa.PrimaryKeyConstraint("premises_id", "start", name=op.f("pk_aggregation_members")),
    )
    with op.batch_alter_table("aggregation_members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_aggregation_members_group_id"), ["group_id"], unique=False)
    op.create_table(
        "aggregate_releases",
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("fuel", sa.String(length=16), nullable=False),
        sa.Column("obis", sa.String(length=32), nullable=False),
        sa.Column("slot", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("power_of_ten", sa.SmallInteger(), nullable=False),
        sa.Column("uom", sa.SmallInteger(), nullable=False),
        sa.Column("premises", sa.Integer(), nullable=False),
        sa.Column("released", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "fuel", "obis", "slot", name=op.f("pk_aggregate_releases")),
    )
    op.create_table(
        "comparison_releases",
        sa.Column("start", sa.Date(), nullable=False),
        sa.Column("end", sa.Date(), nullable=False),
        sa.Column("cohort", sa.String(length=200), nullable=False),
        sa.Column("contributors", sa.Integer(), nullable=False),
        sa.Column("figures", sa.Text(), nullable=True),
        sa.Column("released", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("start", "end", "cohort", name=op.f("pk_comparison_releases")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("group_id", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_audit_log_group_at", ["group_id", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_group_at")
        batch_op.drop_column("group_id")
    op.drop_table("comparison_releases")
    op.drop_table("aggregate_releases")
    with op.batch_alter_table("aggregation_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_aggregation_members_group_id"))
    op.drop_table("aggregation_members")
    op.drop_table("aggregation_groups")
