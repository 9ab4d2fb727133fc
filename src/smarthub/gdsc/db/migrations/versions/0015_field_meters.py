"""meters registered from the field: shipment files, installers' jobs, pending meters (issue 20 item 4)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | None = None
depends_on: str | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "meter_shipments",
        sa.Column("meter_id", sa.String(length=64), nullable=False),
        sa.Column("manufacturer", sa.String(length=8), nullable=False),
        sa.Column("protocol", sa.String(length=16), nullable=False),
        sa.Column("fuel", sa.String(length=16), nullable=False),
        sa.Column("meter_key", sa.String(length=32), nullable=True),
        sa.Column("shipment", sa.String(length=64), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("meter_id", name=op.f("pk_meter_shipments")),
    )
    op.create_table(
        "meter_installs",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("premises_id", sa.String(length=64), nullable=False),
        sa.Column("meter_id", sa.String(length=64), nullable=False),
        sa.Column("replaces", sa.String(length=64), nullable=True),
        sa.Column("installer", sa.String(length=64), nullable=False),
        sa.Column("installed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meter_installs")),
    )
    op.create_index(op.f("ix_meter_installs_premises_id"), "meter_installs", ["premises_id"], unique=False)
    op.create_table(
        "pending_meters",
        sa.Column("hub_id", sa.String(length=64), nullable=False),
        sa.Column("meter_id", sa.String(length=64), nullable=False),
        sa.Column("protocol", sa.String(length=16), nullable=False),
        sa.Column("first_heard", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_heard", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decoded", sa.Integer(), nullable=False),
        sa.Column("undecrypted", sa.Integer(), nullable=False),
        sa.Column("scan_job", _ID, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("key_job", _ID, nullable=True),
        sa.Column("register_job", _ID, nullable=True),
        sa.Column("install_id", _ID, nullable=True),
        sa.Column("authenticated", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hub_id", "meter_id", name=op.f("pk_pending_meters")),
    )


def downgrade() -> None:
    op.drop_table("pending_meters")
    op.drop_index(op.f("ix_meter_installs_premises_id"), table_name="meter_installs")
    op.drop_table("meter_installs")
    op.drop_table("meter_shipments")
