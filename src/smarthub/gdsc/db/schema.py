"""Every table of the GDSC database, in one metadata: what the Alembic migrations must build.

Tables live beside the code that owns them (the registry, the interval tables, the pull log and
plan, the error log, vouchers, parties and consents, the audit log, ...) but share
:data:`smarthub.gdsc.db.database.metadata`. A table only joins that metadata when its module is
imported, so the migration environment and the migration test import this module, never one
part alone.
"""

from __future__ import annotations

from smarthub.gdsc.api.auth import clients, tokens
from smarthub.gdsc.commands import counters, demand_response, desk, tariff_catalogue, vouchers
from smarthub.gdsc.db.database import metadata
from smarthub.gdsc.fleet import buildings, field_meters, key_escrow, lifecycle, recovery, registry
from smarthub.gdsc.governance import aggregates, audit, parties, services, supplier_change
from smarthub.gdsc.incidents import tables as incident_tables
from smarthub.gdsc.outages import store as outage_store
from smarthub.gdsc.outages import topology
from smarthub.gdsc.pull import log, plan
from smarthub.gdsc.readings import appliances, comparisons, tables
from smarthub.gdsc.readings.vee import tables as vee_tables
from smarthub.gdsc.transfer import tables as transfer_tables

TABLE_MODULES = (
    registry,
    tables,
    log,
    counters,
    incident_tables,
    vouchers,
    parties,
    audit,
    plan,
    supplier_change,
    lifecycle,
    desk,
    tokens,
    clients,
    aggregates,
    comparisons,
    recovery,
    topology,
    outage_store,
    vee_tables,
    services,
    transfer_tables,
    field_meters,
    key_escrow,
    buildings,
    tariff_catalogue,
    demand_response,
    appliances,
)

__all__ = ["TABLE_MODULES", "metadata"]
