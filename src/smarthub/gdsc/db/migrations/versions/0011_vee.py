"""validation, estimation and editing (issue 20): register reads, findings, estimates, day versions

Register readings (the reference of the interval-sum check), every reading the VEE gate held or
flagged with the rule and evidence, the GDSC's estimates with their method and replacement, the
earlier versions of edited channel-days, and meters' models (smarthub.gdsc.readings.vee).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "register_reads",
        sa.Column("hub_id", sa.String(length=64), nullable=False),
        sa.Column("meter_id", sa.String(length=64), nullable=False),
        sa.Column("obis", sa.String(length=32), nullable=False),
        sa.Column("read_at", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("power_of_ten", sa.SmallInteger(), nullable=False),
        sa.Column("uom", sa.SmallInteger(), nullable=False),
        sa.Column("quality", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("hub_id", "meter_id", "obis", "read_at", name=op.f("pk_register_reads")),
    )
    op.create_table(
        "vee_findings",
        sa.Column("hub_id", sa.String(length=64), nullable=False),
        sa.Column("meter_id", sa.String(length=64), nullable=False),
        sa.Column("obis", sa.String(length=32), nullable=False),
        sa.Column("duration", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("interval_start", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("rule", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("power_of_ten", sa.SmallInteger(), nullable=False),
        sa.Column("uom", sa.SmallInteger(), nullable=False),
        sa.Column("quality", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("found_at", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("resolved_by", sa.String(length=255), nullable=True),
        sa.Column("resolved_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint(
            "hub_id",
            "meter_id",
            "obis",
            "duration",
            "interval_start",
            "rule",
            "value",
            name=op.f("pk_vee_findings"),
        ),
    )
    op.create_index("ix_vee_findings_status", "vee_findings", ["hub_id", "status"])
    op.create_table(
        "vee_estimates",
        sa.Column("hub_id", sa.String(length=64), nullable=False),
        sa.Column("meter_id", sa.String(length=64), nullable=False),
        sa.Column("obis", sa.String(length=32), nullable=False),
        sa.Column("duration", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("interval_start", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("estimated_at", sa.BigInteger(), nullable=False),
        sa.Column("replaced_at", sa.BigInteger(), nullable=True),
        sa.Column("actual", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint(
            "hub_id", "meter_id", "obis", "duration", "interval_start", name=op.f("pk_vee_estimates")
        ),
    )
    op.create_table(
        "vee_day_versions",
        sa.Column("hub_id", sa.String(length=64), nullable=False),
        sa.Column("meter_id", sa.String(length=64), nullable=False),
        sa.Column("obis", sa.String(length=32), nullable=False),
        sa.Column("duration", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("block", sa.LargeBinary(), nullable=True),
        sa.Column("superseded_at", sa.BigInteger(), nullable=False),
        sa.Column("edited_by", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint(
            "hub_id", "meter_id", "obis", "duration", "day", "version", name=op.f("pk_vee_day_versions")
        ),
    )
    op.create_table(
        "meter_models",
        sa.Column("hub_id", sa.String(length=64), nullable=False),
        sa.Column("meter_id", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("hub_id", "meter_id", name=op.f("pk_meter_models")),
    )


def downgrade() -> None:
    op.drop_table("meter_models")
    op.drop_table("vee_day_versions")
    op.drop_table("vee_estimates")
    op.drop_index("ix_vee_findings_status", table_name="vee_findings")
    op.drop_table("vee_findings")
    op.drop_table("register_reads")
