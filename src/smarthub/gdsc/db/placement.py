"""Where every GDSC table lives when the store is spread over several PostgreSQL servers
(Citus: a coordinator and workers), declared in one place.

Each table has one :class:`Placement`:

``DISTRIBUTED``
    A hub's data, split into shards by the hub: every distributed table has the text
    ``hub_id`` as its distribution ``key`` and ``hubs`` as its ``colocation`` group, so all of
    a hub's rows (registry, readings, pull log, VEE, vouchers, ...) sit on the same worker and
    a query of one hub goes to one worker. Every primary key and unique constraint includes
    ``key`` (Citus can only enforce uniqueness within a shard), foreign keys between them
    include it too, and the key has the same type in every table of the group (Citus:
    "Distribution column types don't match" otherwise).
``REFERENCE``
    Small, read-mostly tables every node holds a copy of (parties, premises, consents, ...),
    so the distributed tables can join them, and refer to them, anywhere.
``LOCAL``
    Tables that stay on the coordinator alone: the queues claimed with ``FOR UPDATE SKIP
    LOCKED`` (the pull plan, urgent work, API jobs: Citus refuses ``FOR UPDATE`` over several
    shards, and a local table has none), the audit log (its append-only triggers, its one hash
    chain), and the error log, incidents, outages and releases worked out centrally. Their
    primary keys need not include the hub (nothing is sharded). Every GDSC process
    connects to the coordinator, so the claims and the advisory locks taken there serialise
    every client (workers are never addressed directly).

:func:`problems` checks the declaration against the metadata (a table without a placement, a
distributed table whose constraints lack its key, a colocation group whose keys differ in type,
a foreign key Citus would refuse);
``tests/gdsc/test_placement.py`` runs it. :mod:`smarthub.gdsc.db.citus` turns the declaration
into the Citus DDL.

Issue 23 item 1: until migration 0019 the interval tables were keyed by an integer ``hub_key``
(a second colocation group of another key type, so a hub's readings and its other rows were on
different workers); they now carry the ``hub_id`` like every other table of a hub's data.
``api_jobs``, ``hub_errors``, ``urgent_work``, ``repair_commands``, ``work_orders`` and
``opening_reads``, whose primary keys lack the hub, are coordinator-local (why: at each one
below), so their keys need no change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKeyConstraint, MetaData, Table, UniqueConstraint
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeEngine


class Placement(StrEnum):
    DISTRIBUTED = "distributed"
    REFERENCE = "reference"
    LOCAL = "local"


@dataclass(frozen=True, slots=True)
class Role:
    placement: Placement
    key: str | None = None  # the distribution column (DISTRIBUTED only)
    colocation: str | None = None  # the group's first table (DISTRIBUTED only)


def _hub() -> Role:
    return Role(Placement.DISTRIBUTED, "hub_id", "hubs")


REFERENCE = Role(Placement.REFERENCE)
LOCAL = Role(Placement.LOCAL)

# Every table of smarthub.gdsc.db.database.metadata (alembic_version is LOCAL too).
ROLES: dict[str, Role] = {
    # -- a hub's data, by hub id -------------------------------------------------------------
    "hubs": _hub(),
    "meters": _hub(),
    "pull_cursors": _hub(),
    "pull_log": _hub(),
    "command_counters": _hub(),
    "hub_commissioning": _hub(),
    "hub_events": _hub(),
    "vouchers": _hub(),
    "alert_keys": _hub(),
    "alert_refusals": _hub(),
    "outage_alerts": _hub(),
    "register_reads": _hub(),
    "vee_findings": _hub(),
    "vee_estimates": _hub(),
    "vee_day_versions": _hub(),
    "meter_models": _hub(),
    "hub_transfer_policy": _hub(),  # the transfer policy last queued for the hub
    "pending_meters": _hub(),  # meters a hub heard but was not told of, and their registration
    "interval_channels": _hub(),
    "interval_blocks": _hub(),  # and its day partitions, distributed with it
    "appliance_points": _hub(),  # a hub's smart plugs pulled under appliance consents (issue 25)
    # -- replicated to every node -------------------------------------------------------------
    "parties": REFERENCE,
    "party_certificates": REFERENCE,
    "premises": REFERENCE,
    "supply_periods": REFERENCE,
    "tenancies": REFERENCE,
    "consents": REFERENCE,
    "data_services": REFERENCE,  # third parties' applications: read with every third party's request
    "tariff_catalogue": REFERENCE,  # the tariffs distributed: small, read by the API on any node
    "appointments": REFERENCE,
    "api_clients": REFERENCE,
    "api_tokens": REFERENCE,
    "api_access_tokens": REFERENCE,
    "aggregation_groups": REFERENCE,
    "aggregation_members": REFERENCE,
    "topology_nodes": REFERENCE,
    "premises_topology": REFERENCE,
    "operator_areas": REFERENCE,
    "transfer_policies": REFERENCE,  # a row per hub or group: joined by every window's plan
    "premises_groups": REFERENCE,  # premises class and tariff group of a premises
    "buildings": REFERENCE,  # apartment blocks: their flats, meters and housing providers
    "building_flats": REFERENCE,
    "building_meters": REFERENCE,
    "building_managements": REFERENCE,  # read with every housing provider's request
    # -- on the coordinator only ----------------------------------------------------------------
    "pull_plan": LOCAL,  # claimed with FOR UPDATE SKIP LOCKED
    "wan_links": LOCAL,  # locked by the claims
    "urgent_work": LOCAL,  # claimed with FOR UPDATE SKIP LOCKED (key: a queue id)
    "api_jobs": LOCAL,  # the API's job queue, read back by job id alone (GET /jobs/{id})
    "dr_events": LOCAL,  # demand-response events, read by event id with their urgent jobs
    "api_idempotency": LOCAL,  # top-ups' idempotency keys, claimed before the voucher is issued
    "hub_recoveries": LOCAL,  # recovery jobs, joined with urgent_work as they advance
    "hub_recovery_steps": LOCAL,
    "meter_shipments": LOCAL,  # manufacturers' shipment files: meter keys stay on the coordinator
    "meter_key_escrow": LOCAL,  # meter keys, sealed under the GDSC's KEK: they stay on the coordinator
    "meter_installs": LOCAL,  # installers' jobs, closed as their meters are registered
    "audit_log": LOCAL,  # append-only triggers; one hash chain
    "hub_errors": LOCAL,  # the operators' error log, read fleet-wide; one open row per hub and kind
    "incidents": LOCAL,
    "incident_hubs": LOCAL,
    "repair_commands": LOCAL,  # an incident's commands, keyed and read by incident
    "work_orders": LOCAL,  # one per incident; an area incident's has no hub
    "outages": LOCAL,
    "outage_premises": LOCAL,
    "outage_events": LOCAL,
    "opening_reads": LOCAL,  # keyed by premises, written at a change of supplier (hub may be none)
    "aggregate_releases": LOCAL,
    "comparison_releases": LOCAL,
}


def role(table: str) -> Role:
    try:
        return ROLES[table]
    except KeyError:
        raise KeyError(f"table {table} has no placement in smarthub.gdsc.db.placement.ROLES") from None


def unique_column_sets(table: Table) -> list[tuple[str, list[str]]]:
    """(name, columns) of the primary key, unique constraints and unique indexes of ``table``."""
    out = [(str(table.primary_key.name or f"pk_{table.name}"), [c.name for c in table.primary_key.columns])]
    uniques = [k for k in table.constraints if isinstance(k, UniqueConstraint)]
    out += [(str(k.name), [c.name for c in k.columns]) for k in uniques]
    out += [(str(i.name), [c.name for c in i.columns]) for i in table.indexes if i.unique]
    return out


def foreign_keys(metadata: MetaData) -> list[tuple[Table, ForeignKeyConstraint]]:
    return [
        (t, k)
        for _, t in sorted(metadata.tables.items())
        for k in sorted(t.constraints, key=lambda c: str(c.name))
        if isinstance(k, ForeignKeyConstraint)
    ]


def problems(metadata: MetaData) -> list[str]:
    """What in ``metadata`` contradicts :data:`ROLES` or what Citus accepts; empty if nothing."""
    out: list[str] = []
    names = set(metadata.tables)
    out += [f"{t}: no placement declared in ROLES" for t in sorted(names - ROLES.keys())]
    out += [f"{t}: declared in ROLES but not a table" for t in sorted(ROLES.keys() - names)]
    for name in sorted(names & ROLES.keys()):
        t, r = metadata.tables[name], ROLES[name]
        if r.placement is not Placement.DISTRIBUTED:
            if r.key or r.colocation:
                out.append(f"{name}: only a distributed table has a key and a colocation group")
            continue
        key = r.key or ""
        if key not in t.c:
            out.append(f"{name}: no column {key} to distribute by")
            continue
        anchor = ROLES.get(r.colocation or "")
        if anchor is None or anchor.key != r.key or anchor.colocation != r.colocation:
            out.append(f"{name}: colocation group {r.colocation} is not a table distributed by {r.key}")
        elif (a := metadata.tables.get(r.colocation or "")) is not None and key in a.c:
            mine, theirs = _type(t.c[key].type), _type(a.c[key].type)
            if mine != theirs:
                out.append(f"{name}: distribution column {key} is {mine}, in {a.name} (its group) {theirs}")
        for cname, cols in unique_column_sets(t):
            if key not in cols:
                out.append(f"{name}: {cname} ({', '.join(cols)}) does not include the distribution key {key}")
    for t, k in foreign_keys(metadata):
        src, dst = ROLES.get(t.name), ROLES.get(k.referred_table.name)
        if src is None or dst is None:
            continue
        why = _fk_refused(src, dst, [c.name for c in k.columns], [e.column.name for e in k.elements])
        if why:
            out.append(f"{t.name}.{k.name} -> {k.referred_table.name}: {why}")
    return out


def _type(t: TypeEngine[Any]) -> str:
    """A column's PostgreSQL type without its length: Citus colocates two tables only if their
    distribution columns have the same type (the type's oid: varchar(64) and varchar(32)
    match, varchar and text or int4 do not) and collation."""
    return str(t.compile(dialect=postgresql.dialect())).split("(")[0]


def _fk_refused(src: Role, dst: Role, cols: list[str], ref: list[str]) -> str | None:
    """Why Citus refuses a foreign key from a ``src`` table to a ``dst`` table, or None."""
    if dst.placement is Placement.REFERENCE:
        return None  # anything may refer to a reference table (a local one joins Citus' metadata)
    if src.placement is Placement.REFERENCE:
        return "a reference table may only refer to reference tables"
    if dst.placement is Placement.LOCAL:
        return None if src.placement is Placement.LOCAL else "a distributed table cannot refer to a local one"
    if src.placement is Placement.LOCAL:
        return "a local table cannot refer to a distributed one"
    if src.colocation != dst.colocation:
        return "distributed tables of different colocation groups"
    pairs = dict(zip(cols, ref, strict=True))
    if pairs.get(src.key or "") != dst.key:
        return f"the key does not pair {src.key} with {dst.key}"
    return None


def tables_of(placement: Placement, metadata: MetaData) -> Iterable[Table]:
    """The tables of one placement, referred-to tables before the tables referring to them."""
    return [t for t in metadata.sorted_tables if role(t.name).placement is placement]
