"""the appliance sub-meters (smart plugs) pulled under appliance consents (issue 25: appliance health)

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "appliance_points",
        sa.Column("hub_id", sa.String(length=64), nullable=False),
        sa.Column("meter_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hub_id", "meter_id", name=op.f("pk_appliance_points")),
    )


def downgrade() -> None:
    op.drop_table("appliance_points")
