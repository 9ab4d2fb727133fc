"""Every GDSC table has a declared placement (distributed by hub, reference, coordinator-local),
and a distributed table's primary key and unique constraints include its distribution key: on
the metadata, and on the schema the migrations really build."""

from __future__ import annotations

import pytest
from sqlalchemy import (
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from smarthub.gdsc.db.placement import ROLES, Placement, Role, problems, role
from smarthub.gdsc.db.schema import metadata
from smarthub.gdsc.store import Store


def _copy() -> MetaData:
    m = MetaData(naming_convention=metadata.naming_convention)
    for t in metadata.sorted_tables:
        t.to_metadata(m)
    return m


def test_every_table_has_a_placement_and_distributed_constraints_hold_the_key() -> None:
    assert problems(metadata) == []
    assert set(ROLES) == set(metadata.tables)


def test_a_new_table_without_a_placement_is_reported() -> None:
    m = _copy()
    Table("meter_photos", m, Column("hub_id", String(64), primary_key=True))
    assert problems(m) == ["meter_photos: no placement declared in ROLES"]
    with pytest.raises(KeyError, match="meter_photos has no placement"):
        role("meter_photos")


def test_a_distributed_tables_unique_constraint_without_the_key_is_reported() -> None:
    m = _copy()
    m.tables["vouchers"].append_constraint(UniqueConstraint("voucher_id", name="uq_vouchers_voucher_id"))
    assert problems(m) == [
        "vouchers: uq_vouchers_voucher_id (voucher_id) does not include the distribution key hub_id"
    ]


def test_a_distributed_tables_primary_key_without_the_key_is_reported() -> None:
    m = MetaData()
    for t in metadata.sorted_tables:
        if t.name != "pull_log":
            t.to_metadata(m)
    Table("pull_log", m, Column("seq", Integer, primary_key=True), Column("hub_id", String(64)))
    assert problems(m) == ["pull_log: pk_pull_log (seq) does not include the distribution key hub_id"]


def test_an_interval_tables_primary_key_without_the_hub_is_reported() -> None:
    """The interval tables as they were before migration 0019 (keyed by hub_key) fail."""
    m = MetaData()
    for t in metadata.sorted_tables:
        if t.name != "interval_blocks":
            t.to_metadata(m)
    Table(
        "interval_blocks",
        m,
        Column("hub_key", Integer, primary_key=True),
        Column("day", Integer, primary_key=True),
        Column("channel_no", Integer, primary_key=True),
        Column("hub_id", String(64), nullable=False),
    )
    assert problems(m) == [
        "interval_blocks: pk_interval_blocks (hub_key, day, channel_no) does not include the distribution key hub_id"
    ]


def test_a_distributed_tables_unique_index_without_the_key_is_reported() -> None:
    m = _copy()
    Index("ix_meters_serial", m.tables["meters"].c.meter_id, unique=True)
    assert problems(m) == ["meters: ix_meters_serial (meter_id) does not include the distribution key hub_id"]


def test_a_distribution_column_of_another_type_than_its_groups_is_reported() -> None:
    """Citus colocates only distribution columns of one type ("Distribution column types don't
    match"): an integer hub key, or text beside varchar, is reported."""
    m = _copy()
    m.tables["interval_blocks"].c.hub_id.type = Integer()  # the copy's column, not the schema's
    m.tables["pull_log"].c.hub_id.type = Text()
    assert problems(m) == [
        "interval_blocks: distribution column hub_id is INTEGER, in hubs (its group) VARCHAR",
        "pull_log: distribution column hub_id is TEXT, in hubs (its group) VARCHAR",
    ]


def test_foreign_keys_citus_refuses_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    m = _copy()
    # A reference table referring to a distributed one, and distributed tables of two groups.
    m.tables["premises"].append_column(Column("main_hub", String(64), ForeignKey("hubs.hub_id")))
    m.tables["interval_channels"].append_constraint(ForeignKeyConstraint(["hub_id"], ["hubs.hub_id"]))
    monkeypatch.setitem(
        ROLES, "interval_channels", Role(Placement.DISTRIBUTED, "hub_id", "interval_channels")
    )
    found = problems(m)
    assert any(p.startswith("premises.") and "reference table may only refer" in p for p in found), found
    assert any(p.startswith("interval_channels.") and "different colocation groups" in p for p in found), (
        found
    )


def test_all_of_a_hubs_data_is_one_colocation_group_by_hub_id() -> None:
    """Issue 23 item 1: one distribution key, the hub id, for every distributed table, all
    colocated with ``hubs`` (the key's type is checked by :func:`problems`)."""
    groups = {(r.key, r.colocation) for r in ROLES.values() if r.placement is Placement.DISTRIBUTED}
    assert groups == {("hub_id", "hubs")}
    assert {"interval_blocks", "interval_channels", "hubs", "pull_log"} <= {
        t for t, r in ROLES.items() if r.placement is Placement.DISTRIBUTED
    }


def test_the_tables_with_a_hub_column_that_are_not_distributed_are_the_known_ones() -> None:
    """A table with a ``hub_id`` column holds some hub's data; those not distributed by it are
    named here, so that keeping a new one off the workers is deliberate: queues claimed with
    FOR UPDATE SKIP LOCKED, tables keyed by something else than the hub (a job, an incident,
    a premises, a party) and read by it, and the audit log."""
    kept = {
        t.name
        for t in metadata.sorted_tables
        if "hub_id" in t.c and role(t.name).placement is not Placement.DISTRIBUTED
    }
    assert kept == {
        "pull_plan",  # queues claimed with FOR UPDATE SKIP LOCKED
        "urgent_work",
        "api_jobs",  # keyed by job id, read back by it
        "dr_events",  # demand-response events: keyed by event id, read back by it
        "hub_recoveries",  # recovery jobs, advanced with urgent_work
        "meter_key_escrow",  # meter keys, sealed, keyed by id: a delivered key names its hub
        "hub_errors",  # the error log, read fleet-wide
        "incident_hubs",  # incidents and what they do: keyed by incident
        "repair_commands",
        "work_orders",
        "outage_premises",  # outages, worked out over an area
        "opening_reads",  # keyed by premises
    }
    assert "hub_keys" not in ROLES  # dropped by migration 0019


@pytest.mark.postgres
def test_the_migrated_postgres_schema_keeps_the_key_in_every_unique_index(pg_url: str) -> None:
    """What the migrations built (not only the metadata): every unique index of a distributed
    table, day partitions included, covers its distribution column."""
    store = Store(pg_url)
    store.create_schema()
    store.ensure_day_partitions([20_500])
    with store.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT t.relname, i.relname, array_agg(a.attname::text ORDER BY a.attname) "
                "FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid "
                "JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = current_schema() "
                "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(x.indkey) "
                "WHERE x.indisunique GROUP BY t.relname, i.relname"
            )
        ).all()
    store.close()
    seen = set()
    for table, index, cols in rows:
        parent = "interval_blocks" if table.startswith("interval_blocks_") else table
        if parent == "alembic_version":
            continue
        seen.add(parent)
        r = role(parent)
        if r.placement is Placement.DISTRIBUTED:
            assert r.key in cols, f"{table}.{index} {cols} lacks {r.key}"
    assert {"interval_blocks", "pull_log", "hubs", "meters"} <= seen
