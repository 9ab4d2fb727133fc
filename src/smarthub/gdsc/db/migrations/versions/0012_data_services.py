"""third-party data services' applications and the operator's decisions (issue 25 item 1)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "data_services",
        sa.Column("party_id", sa.String(length=64), nullable=False),
        sa.Column("organisation", sa.Text(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("data_kinds", sa.Text(), nullable=False),
        sa.Column("granularity", sa.String(length=16), nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("client_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["party_id"], ["parties.party_id"], name=op.f("fk_data_services_party_id_parties")
        ),
        sa.PrimaryKeyConstraint("party_id", name=op.f("pk_data_services")),
    )


def downgrade() -> None:
    op.drop_table("data_services")
