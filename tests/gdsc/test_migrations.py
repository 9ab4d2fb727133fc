"""The packaged Alembic migrations produce exactly the store's metadata, on both dialects."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, MetaData, String, Table, inspect

from smarthub.gdsc.db.database import alembic_config
from smarthub.gdsc.db.migrations import include_name
from smarthub.gdsc.db.schema import metadata
from smarthub.gdsc.readings.tables import StoredReading
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
