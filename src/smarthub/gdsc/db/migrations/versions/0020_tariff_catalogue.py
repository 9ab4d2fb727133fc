"""the catalogue of tariffs the GDSC distributes (issue 25: the tariff advisor reads it from the API)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "tariff_catalogue",
        sa.Column("tariff_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("fuel", sa.String(length=16), nullable=False),
        sa.Column("supplier_id", sa.String(length=64), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("first_sent", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tariff_id", "version", "fuel", name=op.f("pk_tariff_catalogue")),
    )


def downgrade() -> None:
    op.drop_table("tariff_catalogue")
