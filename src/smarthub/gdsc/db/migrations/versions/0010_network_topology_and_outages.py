"""network topology, operators' areas, last-gasp alerts and outages (issue 19)

The topology (premises -> phase -> LV feeder -> secondary -> primary substation), the part of it
each network operator operates, the hubs' alert keys, every alert received (each once), refusal
counts, outages with their premises, and the outage event log the push subscription reads
(smarthub.gdsc.outages).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-14 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:

    op.create_table(
        "alert_keys",
        sa.Column("hub_id", sa.String(length=64), nullable=False),
        sa.Column("lfdi", sa.String(length=40), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("hub_id", name=op.f("pk_alert_keys")),
    )
    op.create_table(
        "alert_refusals",
        sa.Column("hub_id", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_source", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("hub_id", "reason", name=op.f("pk_alert_refusals")),
    )
    op.create_table(
        "operator_areas",
        sa.Column("operator_id", sa.String(length=64), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("operator_id", "node_id", "start", name=op.f("pk_operator_areas")),
    )
    op.create_table(
        "outage_alerts",
        sa.Column("hub_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("cause", sa.SmallInteger(), nullable=False),
        sa.Column("sent", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lost_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_s", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("received", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hub_id", "seq", name=op.f("pk_outage_alerts")),
    )
    op.create_table(
        "outage_events",
        sa.Column("event_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("outage_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_outage_events")),
    )
    op.create_table(
        "outage_premises",
        sa.Column("outage_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("premises_id", sa.String(length=64), nullable=False),
        sa.Column("hub_id", sa.String(length=64), nullable=False),
        sa.Column("lost_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heard", sa.DateTime(timezone=True), nullable=False),
        sa.Column("restored_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("outage_id", "premises_id", name=op.f("pk_outage_premises")),
    )
    op.create_table(
        "outages",
        sa.Column("outage_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("location", sa.String(length=64), nullable=False),
        sa.Column("opened", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed", sa.DateTime(timezone=True), nullable=True),
        sa.Column("merged_into", sa.Integer(), nullable=True),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("premises_heard", sa.Integer(), nullable=False),
        sa.Column("restored", sa.Integer(), nullable=False),
        sa.Column("duration_s", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("outage_id", name=op.f("pk_outages")),
    )
    with op.batch_alter_table("outages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outages_location"), ["location"], unique=False)

    op.create_table(
        "premises_topology",
        sa.Column("premises_id", sa.String(length=64), nullable=False),
        sa.Column("feeder_id", sa.String(length=64), nullable=False),
        sa.Column("phase", sa.String(length=4), nullable=False),
        sa.Column("x", sa.Float(), nullable=True),
        sa.Column("y", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("premises_id", name=op.f("pk_premises_topology")),
    )
    with op.batch_alter_table("premises_topology", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_premises_topology_feeder_id"), ["feeder_id"], unique=False)

    op.create_table(
        "topology_nodes",
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("parent_id", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("x", sa.Float(), nullable=True),
        sa.Column("y", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_topology_nodes")),
    )


def downgrade() -> None:

    op.drop_table("topology_nodes")
    with op.batch_alter_table("premises_topology", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_premises_topology_feeder_id"))

    op.drop_table("premises_topology")
    with op.batch_alter_table("outages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outages_location"))

    op.drop_table("outages")
    op.drop_table("outage_premises")
    op.drop_table("outage_events")
    op.drop_table("outage_alerts")
    op.drop_table("operator_areas")
    op.drop_table("alert_refusals")
    op.drop_table("alert_keys")
