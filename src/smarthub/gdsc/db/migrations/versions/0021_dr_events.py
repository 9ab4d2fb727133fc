"""demand-response events a data service has the GDSC send to hubs (issue 25: the aggregator)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "dr_events",
        sa.Column("event_id", sa.String(length=32), nullable=False),
        sa.Column("party_id", sa.String(length=64), nullable=False),
        sa.Column("premises_id", sa.String(length=64), nullable=False),
        sa.Column("meter_id", sa.String(length=64), nullable=False),
        sa.Column("hub_id", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("device_category", sa.BigInteger(), nullable=False),
        sa.Column("control", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pull_job", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("responses", sa.Text(), nullable=True),
        sa.Column("pulled", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_dr_events")),
    )
    op.create_index(op.f("ix_dr_events_party_id"), "dr_events", ["party_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_dr_events_party_id"), table_name="dr_events")
    op.drop_table("dr_events")
