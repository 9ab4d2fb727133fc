"""error log, vouchers, parties, consents, audit

The central error log (hub events, incidents, work orders, remote repairs), top-up vouchers,
the governance tables (parties, supply periods, tenancies, consents, appointments) and the
hash-chained audit log. On PostgreSQL the audit log is made append-only in the database too:
a trigger refuses UPDATE and DELETE, so tampering needs a superuser who drops the trigger
(which the chain verifier still detects).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 16:43:47.069903
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("premises_id", sa.String(length=64), nullable=True),
        sa.Column("allow", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_log_hash")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_premises_at", ["premises_id", "at"], unique=False)

    op.create_table(
        "hub_events",
        sa.Column("hub_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("device_kind", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("recommendation", sa.Text(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("repair", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("open", sa.Integer(), nullable=False),
        sa.Column("closed", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.String(length=32), nullable=True),
        sa.Column("incident_id", sa.BigInteger(), nullable=False),
        sa.Column("received", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hub_id", "event_id", name=op.f("pk_hub_events")),
    )
    with op.batch_alter_table("hub_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hub_events_incident_id"), ["incident_id"], unique=False)

    op.create_table(
        "incident_hubs",
        sa.Column("incident_id", sa.BigInteger(), nullable=False),
        sa.Column("hub_id", sa.String(length=64), nullable=False),
        sa.Column("open", sa.Integer(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("incident_id", "hub_id", name=op.f("pk_incident_hubs")),
    )
    op.create_table(
        "incidents",
        sa.Column(
            "incident_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("wan_link", sa.String(length=64), nullable=True),
        sa.Column("opened", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed", sa.DateTime(timezone=True), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("remote_repair_tried", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("incident_id", name=op.f("pk_incidents")),
    )
    op.create_table(
        "parties",
        sa.Column("party_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=24), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("approved", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("party_id", name=op.f("pk_parties")),
    )
    op.create_table(
        "repair_commands",
        sa.Column(
            "repair_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("incident_id", sa.BigInteger(), nullable=False),
        sa.Column("hub_id", sa.String(length=64), nullable=False),
        sa.Column("command", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("sent", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verdict", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("repair_id", name=op.f("pk_repair_commands")),
        sa.UniqueConstraint("incident_id", "hub_id", "command", name="one_repair_per_incident_hub"),
    )
    op.create_table(
        "vouchers",
        sa.Column("hub_id", sa.String(length=64), nullable=False),
        sa.Column("voucher_id", sa.String(length=64), nullable=False),
        sa.Column("fuel", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.String(length=16), nullable=False),
        sa.Column("issued", sa.DateTime(timezone=True), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("verdict", sa.Text(), nullable=True),
        sa.Column("settled", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("hub_id", "voucher_id", name=op.f("pk_vouchers")),
    )
    op.create_table(
        "work_orders",
        sa.Column(
            "work_order_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("incident_id", sa.BigInteger(), nullable=False),
        sa.Column("party", sa.String(length=32), nullable=False),
        sa.Column("assignee", sa.String(length=128), nullable=False),
        sa.Column("hub_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("diagnosis", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("closed", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("work_order_id", name=op.f("pk_work_orders")),
        sa.UniqueConstraint("incident_id", name="one_work_order_per_incident"),
    )
    op.create_table(
        "appointments",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("premises_id", sa.String(length=64), nullable=False),
        sa.Column("installer_id", sa.String(length=64), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["installer_id"], ["parties.party_id"], name=op.f("fk_appointments_installer_id_parties")
        ),
        sa.ForeignKeyConstraint(
            ["premises_id"], ["premises.premises_id"], name=op.f("fk_appointments_premises_id_premises")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appointments")),
    )
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_appointments_premises_id"), ["premises_id"], unique=False)

    op.create_table(
        "supply_periods",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("premises_id", sa.String(length=64), nullable=False),
        sa.Column("fuel", sa.String(length=16), nullable=False),
        sa.Column("supplier_id", sa.String(length=64), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["premises_id"], ["premises.premises_id"], name=op.f("fk_supply_periods_premises_id_premises")
        ),
        sa.ForeignKeyConstraint(
            ["supplier_id"], ["parties.party_id"], name=op.f("fk_supply_periods_supplier_id_parties")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_supply_periods")),
    )
    with op.batch_alter_table("supply_periods", schema=None) as batch_op:
        batch_op.create_index("ix_supply_periods_premises", ["premises_id", "fuel", "start"], unique=False)

    op.create_table(
        "tenancies",
        sa.Column("tenancy_id", sa.String(length=64), nullable=False),
        sa.Column("premises_id", sa.String(length=64), nullable=False),
        sa.Column("consumer_id", sa.String(length=64), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["consumer_id"], ["parties.party_id"], name=op.f("fk_tenancies_consumer_id_parties")
        ),
        sa.ForeignKeyConstraint(
            ["premises_id"], ["premises.premises_id"], name=op.f("fk_tenancies_premises_id_premises")
        ),
        sa.PrimaryKeyConstraint("tenancy_id", name=op.f("pk_tenancies")),
    )
    with op.batch_alter_table("tenancies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tenancies_premises_id"), ["premises_id"], unique=False)

    op.create_table(
        "consents",
        sa.Column("consent_id", sa.String(length=64), nullable=False),
        sa.Column("party_id", sa.String(length=64), nullable=False),
        sa.Column("premises_id", sa.String(length=64), nullable=False),
        sa.Column("tenancy_id", sa.String(length=64), nullable=False),
        sa.Column("meters", sa.Text(), nullable=True),
        sa.Column("data_kinds", sa.Text(), nullable=False),
        sa.Column("granularity", sa.String(length=16), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["party_id"], ["parties.party_id"], name=op.f("fk_consents_party_id_parties")
        ),
        sa.ForeignKeyConstraint(
            ["premises_id"], ["premises.premises_id"], name=op.f("fk_consents_premises_id_premises")
        ),
        sa.ForeignKeyConstraint(
            ["tenancy_id"], ["tenancies.tenancy_id"], name=op.f("fk_consents_tenancy_id_tenancies")
        ),
        sa.PrimaryKeyConstraint("consent_id", name=op.f("pk_consents")),
    )
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consents_premises_id"), ["premises_id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log"
            " FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consents_premises_id"))

    op.drop_table("consents")
    with op.batch_alter_table("tenancies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tenancies_premises_id"))

    op.drop_table("tenancies")
    with op.batch_alter_table("supply_periods", schema=None) as batch_op:
        batch_op.drop_index("ix_supply_periods_premises")

    op.drop_table("supply_periods")
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_appointments_premises_id"))

    op.drop_table("appointments")
    op.drop_table("work_orders")
    op.drop_table("vouchers")
    op.drop_table("repair_commands")
    op.drop_table("parties")
    op.drop_table("incidents")
    op.drop_table("incident_hubs")
    with op.batch_alter_table("hub_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hub_events_incident_id"))

    op.drop_table("hub_events")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_premises_at")

    op.drop_table("audit_log")
