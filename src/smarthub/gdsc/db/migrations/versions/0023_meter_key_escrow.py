"""the GDSC's escrow of meter keys, sealed under its key-encryption key (issue 20 item 2)

Shipment keys stored in clear before this (``meter_shipments.meter_key``) are moved into the
escrow, sealed, and cleared from that column by the first GDSC process that opens the store
with its key-encryption key (``KeyEscrow.adopt_clear_shipment_keys``): the migration itself
runs on a connection alone and never holds the KEK.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-08 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | None = None
depends_on: str | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "meter_key_escrow",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("meter_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("hub_id", sa.String(length=64), nullable=True),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("shipment", sa.String(length=64), nullable=True),
        sa.Column("pending", sa.Integer(), nullable=False),
        sa.Column("kek_id", sa.String(length=16), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meter_key_escrow")),
    )
    op.create_index(op.f("ix_meter_key_escrow_meter_id"), "meter_key_escrow", ["meter_id"])
    op.create_index(op.f("ix_meter_key_escrow_job_id"), "meter_key_escrow", ["job_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_meter_key_escrow_job_id"), table_name="meter_key_escrow")
    op.drop_index(op.f("ix_meter_key_escrow_meter_id"), table_name="meter_key_escrow")
    op.drop_table("meter_key_escrow")
