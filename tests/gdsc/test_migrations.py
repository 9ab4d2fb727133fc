"""The packaged Alembic migrations produce exactly the store's metadata, on both dialects."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, MetaData, String, Table, inspect, text

from smarthub.gdsc.db.database import alembic_config
from smarthub.gdsc.db.migrations import include_name
from smarthub.gdsc.db.schema import metadata
from smarthub.gdsc.readings.tables import StoredReading, partition_name
from smarthub.gdsc.store import Store


def _diff(store: Store) -> list[object]:
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"include_name": include_name, "compare_type": True})
        return list(compare_metadata(ctx, metadata))


def test_migrations_build_exactly_the_metadata(db_url: str) -> None:
    store = Store(db_url)
    store.create_schema()
    assert _diff(store) == []
    # compare_metadata does not see the order of a primary key's columns; distribution by hub
    # id depends on it, so check it here.
    found = inspect(store.engine)
    for table in metadata.sorted_tables:
        if table.name in found.get_table_names():
            wanted = [c.name for c in table.primary_key.columns]
            assert found.get_pk_constraint(table.name)["constrained_columns"] == wanted, table.name
    store.create_schema()  # already at head: nothing to do
    # Day partitions created by ingest (PostgreSQL) are not schema drift.
    store.ingest("H", [StoredReading("H", "E1", "1-0:1.8.0", 1_772_409_600, 1800, 5, 0, 72, 1)], {})
    assert _diff(store) == []
    with store.engine.connect() as conn:
        head = ScriptDirectory.from_config(alembic_config(conn)).get_current_head()
        assert MigrationContext.configure(conn).get_current_revision() == head
    store.close()


def test_every_revision_downgrades_to_an_empty_database(db_url: str) -> None:
    store = Store(db_url)
    store.create_schema()
    with store.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert set(inspect(store.engine).get_table_names()) == {"alembic_version"}
    store.create_schema()
    assert _diff(store) == []
    store.close()


def test_a_database_from_before_migrations_is_refused_clearly(db_url: str) -> None:

    legacy = MetaData()
    Table("hubs", legacy, Column("hub_id", String(64), primary_key=True))
    store = Store(db_url)
    legacy.create_all(store.engine)
    with pytest.raises(RuntimeError, match=r"created before the store had migrations"):
        store.create_schema()
    store.close()


def _at_0018_with_readings(store: Store) -> list[StoredReading]:
    """A store at revision 0018 (interval tables keyed by hub_keys' integer) holding two hubs'
    readings, written as that revision's ingest wrote them; the readings it holds."""
    from smarthub.gdsc.readings import interval_block

    day = 1_772_409_600 // 86400
    blocks = {  # (hub_key, day, channel_no) -> {slot: (value, quality)}
        (7, day, 1): {i: (100 + i, 1) for i in range(48)},
        (7, day + 1, 1): {i: (200 + i, 1) for i in range(0, 48, 2)},
        (7, day, 2): {3: (5, 0x08)},
        (9, day + 1, 1): {i: (7 * i, 1) for i in range(24)},
    }
    channels = {  # (hub_key, channel_no) -> (meter, obis, uom, power_of_ten)
        (7, 1): ("E1", "1-0:1.8.0", 72, 0),
        (7, 2): ("G1", "7-0:3.0.0", 42, -3),
        (9, 1): ("E9", "1-0:1.8.0", 72, 0),
    }
    hub_ids = {7: "HUB-A", 9: "HUB-B"}
    with store.engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0018")
        if store.dialect == "postgresql":
            for d in (day, day + 1):
                conn.exec_driver_sql(
                    f"CREATE TABLE {partition_name(d)} PARTITION OF interval_blocks FOR VALUES FROM ({d}) TO ({d + 1})"
                )
        conn.execute(
            text("INSERT INTO hub_keys (hub_key, hub_id) VALUES (:k, :h)"),
            [{"k": k, "h": h} for k, h in hub_ids.items()],
        )
        conn.execute(
            text(
                "INSERT INTO interval_channels (hub_key, channel_no, meter_id, obis, duration, uom, power_of_ten) "
                "VALUES (:k, :no, :m, :o, 1800, :u, :p)"
            ),
            [
                {"k": k, "no": no, "m": m, "o": o, "u": u, "p": p}
                for (k, no), (m, o, u, p) in channels.items()
            ],
        )
        conn.execute(
            text(
                "INSERT INTO interval_blocks (hub_key, day, n, channel_no, block) VALUES (:k, :d, :n, :no, :b)"
            ),
            [
                {"k": k, "d": d, "n": len(s), "no": no, "b": interval_block.encode(48, s)}
                for (k, d, no), s in blocks.items()
            ],
        )
    out = []
    for (k, d, no), slots in blocks.items():
        m, o, u, p = channels[(k, no)]
        for slot, (v, q) in slots.items():
            out.append(StoredReading(hub_ids[k], m, o, d * 86400 + slot * 1800, 1800, v, p, u, q))
    return sorted(out, key=lambda r: (r.hub_id, r.meter_id, r.obis, r.duration, r.interval_start))


def test_0019_rekeys_a_populated_store_by_hub_id_and_back(db_url: str) -> None:
    """Issue 23 item 1 on a store holding readings: after 0019 the interval tables are keyed by
    hub id (hub_keys gone) and every reading reads back, merges and numbers channels as before;
    a downgrade to 0018 gives back a hub_keys whose keys the blocks still agree with."""
    store = Store(db_url)
    held = _at_0018_with_readings(store)
    store.create_schema()  # 0018 -> head
    assert _diff(store) == []
    found = inspect(store.engine)
    assert "hub_keys" not in found.get_table_names()
    for t in ("interval_blocks", "interval_channels"):
        assert found.get_pk_constraint(t)["constrained_columns"][0] == "hub_id"
        assert "hub_key" not in {c["name"] for c in found.get_columns(t)}
    if store.dialect == "postgresql":  # the day partitions that existed were re-keyed with their parent
        with store.engine.connect() as conn:
            keys = conn.execute(
                text(
                    "SELECT c.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x "
                    "JOIN pg_class c ON c.oid = x.indrelid JOIN pg_inherits i ON i.inhrelid = c.oid "
                    "WHERE i.inhparent = 'interval_blocks'::regclass AND x.indisprimary ORDER BY 1"
                )
            ).all()
        assert len(keys) == 2 and all(d.endswith("(hub_id, day, channel_no)") for _, d in keys), keys
    assert store.readings() == held
    assert store.count_readings() == len(held)
    # Ingest meets the migrated rows: the same readings again are already stored, a missing
    # half-hour merges into its stored block, a new channel of HUB-A is numbered after its two.
    again = store.ingest("HUB-A", [r for r in held if r.hub_id == "HUB-A"], {})
    assert (again.inserted, again.already_stored, again.conflicts) == (0, len(held) - 24, 0)
    gap = held[0].interval_start + 86400 + 1800  # slot 1 of HUB-A's second day (odd: missing)
    new = [
        StoredReading("HUB-A", "E1", "1-0:1.8.0", gap, 1800, 999, 0, 72, 1),
        StoredReading("HUB-A", "E1", "1-0:2.8.0", gap, 1800, 3, 0, 72, 1),
    ]
    assert store.ingest("HUB-A", new, {}).inserted == 2
    with store.engine.connect() as conn:
        nos = conn.execute(
            text("SELECT obis, channel_no FROM interval_channels WHERE hub_id = 'HUB-A' ORDER BY channel_no")
        ).all()
    assert [tuple(r) for r in nos] == [("1-0:1.8.0", 1), ("7-0:3.0.0", 2), ("1-0:2.8.0", 3)]
    now_held = sorted(
        [*held, *new], key=lambda r: (r.hub_id, r.meter_id, r.obis, r.duration, r.interval_start)
    )
    assert store.readings() == now_held

    with store.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0018")
    with store.engine.connect() as conn:
        keys = dict(conn.execute(text("SELECT hub_id, hub_key FROM hub_keys")).all())
        assert sorted(keys) == ["HUB-A", "HUB-B"]
        per_hub = dict(
            conn.execute(
                text(
                    "SELECT k.hub_id, sum(b.n) FROM interval_blocks b JOIN hub_keys k USING (hub_key) GROUP BY 1"
                )
            ).all()
        )
        assert per_hub == {"HUB-A": len(held) - 24 + 2, "HUB-B": 24}
    store.create_schema()  # and up again
    assert store.readings() == now_held
    store.close()
