"""The tables of parties, supply periods, tenancies, consents and installer appointments
(:class:`smarthub.gdsc.governance.parties.PartyRepository` keeps them)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Index, Integer, String, Table, Text

from smarthub.gdsc.db.database import metadata

parties = Table(
    "parties",
    metadata,
    Column("party_id", String(64), primary_key=True),
    Column("role", String(24), nullable=False),
    Column("name", Text, nullable=False, default=""),
    Column("approved", Integer, nullable=False, default=1),
)

supply_periods = Table(
    "supply_periods",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("premises_id", String(64), ForeignKey("premises.premises_id"), nullable=False),
    Column("fuel", String(16), nullable=False),
    Column("supplier_id", String(64), ForeignKey("parties.party_id"), nullable=False),
    Column("start", DateTime(timezone=True), nullable=False),
    Column("end", DateTime(timezone=True)),
    Index("ix_supply_periods_premises", "premises_id", "fuel", "start"),
)

tenancies = Table(
    "tenancies",
    metadata,
    Column("tenancy_id", String(64), primary_key=True),
    Column("premises_id", String(64), ForeignKey("premises.premises_id"), nullable=False, index=True),
    Column("consumer_id", String(64), ForeignKey("parties.party_id"), nullable=False),
    Column("start", DateTime(timezone=True), nullable=False),
    Column("end", DateTime(timezone=True)),
)

consents = Table(
    "consents",
    metadata,
    Column("consent_id", String(64), primary_key=True),
    Column("party_id", String(64), ForeignKey("parties.party_id"), nullable=False),
    Column("premises_id", String(64), ForeignKey("premises.premises_id"), nullable=False, index=True),
    Column("tenancy_id", String(64), ForeignKey("tenancies.tenancy_id"), nullable=False),
    Column("meters", Text),  # JSON list of meter ids; NULL = every meter of the premises
    Column("data_kinds", Text, nullable=False),  # JSON list of DataKind values
    Column("granularity", String(16), nullable=False),
    Column("purpose", Text, nullable=False),
    Column("granted_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)

appointments = Table(
    "appointments",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("premises_id", String(64), ForeignKey("premises.premises_id"), nullable=False, index=True),
    Column("installer_id", String(64), ForeignKey("parties.party_id"), nullable=False),
    Column("start", DateTime(timezone=True), nullable=False),
    Column("end", DateTime(timezone=True), nullable=False),
)


__all__ = ["appointments", "consents", "parties", "supply_periods", "tenancies"]
