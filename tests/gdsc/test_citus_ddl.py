"""The Citus DDL (``smarthub gdsc migrate --citus``) is what the table placements say, in an
order Citus accepts; its plain-PostgreSQL parts (the foreign keys dropped and re-added) run on
the migrated PostgreSQL schema and give back exactly its foreign keys. Citus itself is not
installable here: the Citus calls are checked for what they say, not run."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from smarthub.cli.app import app
from smarthub.gdsc.db.citus import CitusMissing, apply_citus, citus_ddl, citus_steps
from smarthub.gdsc.db.placement import ROLES, Placement, foreign_keys
from smarthub.gdsc.db.schema import metadata
from smarthub.gdsc.store import Store

CALL = re.compile(
    r"^SELECT (create_reference_table|create_distributed_table|citus_add_local_table_to_metadata)\((.*?)\) WHERE NOT EXISTS \(SELECT 1 FROM pg_dist_partition WHERE logicalrelid = '(\w+)'::regclass\)$"
)


def _calls() -> list[tuple[str, list[str], str]]:
    out = []
    for s in citus_steps(metadata):
        m = CALL.match(s.sql)
        if m:
            args = [a.strip() for a in m.group(2).split(",")]
            out.append((m.group(1), args, m.group(3)))
    return out


def test_every_reference_and_distributed_table_is_placed_once_as_declared() -> None:
    calls = _calls()
    placed = [table for _, _, table in calls]
    assert len(placed) == len(set(placed))
    for fn, args, table in calls:
        assert args[0] == f"'{table}'"  # the guard names the table the call places
        r = ROLES[table]
        if fn == "create_reference_table":
            assert r.placement is Placement.REFERENCE, table
            assert args == [f"'{table}'"]
        elif fn == "create_distributed_table":
            assert r.placement is Placement.DISTRIBUTED, table
            colocate = "none" if r.colocation == table else r.colocation
            assert args == [f"'{table}'", f"'{r.key}'", f"colocate_with => '{colocate}'"], table
        else:
            assert r.placement is Placement.LOCAL, table
    wanted = {t for t, r in ROLES.items() if r.placement is not Placement.LOCAL}
    assert wanted <= set(placed)
    # Local tables join Citus' metadata only when a foreign key to a reference table needs it.
    local_added = {t for fn, _, t in calls if fn == "citus_add_local_table_to_metadata"}
    assert local_added == {
        t.name
        for t, k in foreign_keys(metadata)
        if ROLES[t.name].placement is Placement.LOCAL
        and ROLES[k.referred_table.name].placement is Placement.REFERENCE
    }


def test_every_distributed_table_goes_by_hub_id_colocated_with_hubs() -> None:
    """One colocation group (issue 23 item 1): ``hubs`` first with a group of its own, every
    other distributed table, the interval tables included, by ``hub_id`` colocated with it."""
    dist = [(args, table) for fn, args, table in _calls() if fn == "create_distributed_table"]
    assert dist[0] == (["'hubs'", "'hub_id'", "colocate_with => 'none'"], "hubs")
    for args, table in dist[1:]:
        assert args == [f"'{table}'", "'hub_id'", "colocate_with => 'hubs'"], table
    assert {"interval_blocks", "interval_channels"} <= {t for _, t in dist}
    assert "hub_key" not in citus_ddl(metadata)


def test_the_order_is_one_citus_accepts() -> None:
    steps = citus_steps(metadata)
    kinds = [s.kind for s in steps]
    # Foreign keys off, reference tables, distributed tables, local tables, foreign keys back.
    order = ["drop_fk", "reference", "distribute", "local", "add_fk"]
    assert kinds == sorted(kinds, key=order.index)
    # A colocation group's first table is distributed before the tables colocated with it.
    seen: set[str] = set()
    for fn, args, table in _calls():
        if fn == "create_distributed_table" and not args[2].endswith("'none'"):
            assert ROLES[table].colocation in seen, table
        seen.add(table)
    # Every foreign key touching a Citus table is dropped first and added back last.
    fks = {
        str(k.name)
        for t, k in foreign_keys(metadata)
        if ROLES[t.name].placement is not Placement.LOCAL
        or ROLES[k.referred_table.name].placement is not Placement.LOCAL
    }
    assert fks
    assert {re.search(r'"(\w+)"', s.plain or "").group(1) for s in steps if s.kind == "drop_fk"} == fks  # type: ignore[union-attr]
    assert {
        re.search(r"ADD CONSTRAINT (\w+)", s.plain or "").group(1) for s in steps if s.kind == "add_fk"
    } == fks  # type: ignore[union-attr]


def test_every_step_is_guarded_so_a_second_run_does_nothing() -> None:
    for s in citus_steps(metadata):
        if s.kind in ("reference", "distribute", "local"):
            assert s.sql.endswith(
                f"WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = '{s.table}'::regclass)"
            )
        else:
            assert s.sql.startswith("DO $$ BEGIN IF NOT EXISTS (") and s.plain and s.plain in s.sql


def _fks(store: Store) -> set[tuple[str, str, str]]:
    with store.engine.connect() as conn:
        return {
            tuple(r)  # type: ignore[misc]
            for r in conn.execute(
                text(
                    "SELECT conrelid::regclass::text, conname::text, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE contype = 'f' AND connamespace = current_schema()::regnamespace"
                )
            )
        }


@pytest.mark.postgres
def test_the_foreign_key_statements_run_on_the_migrated_schema_and_restore_it(pg_url: str) -> None:
    store = Store(pg_url)
    store.create_schema()
    before = _fks(store)
    steps = citus_steps(metadata)
    with store.engine.begin() as conn:
        for s in steps:
            if s.kind == "drop_fk":
                conn.execute(text(s.plain or ""))
    dropped = before - _fks(store)
    assert {name for _, name, _ in dropped} == {
        re.search(r'"(\w+)"', s.plain or "").group(1)  # type: ignore[union-attr]
        for s in steps
        if s.kind == "drop_fk"
    }
    with store.engine.begin() as conn:
        for s in steps:
            if s.kind == "add_fk":
                conn.execute(text(s.plain or ""))
    assert _fks(store) == before
    store.close()


@pytest.mark.postgres
def test_without_the_citus_extension_migrate_citus_is_refused_and_changes_nothing(pg_url: str) -> None:
    store = Store(pg_url)
    with pytest.raises(CitusMissing, match="citus extension is not installed"):
        apply_citus(store.engine, metadata)
    r = CliRunner().invoke(app, ["gdsc", "migrate", "--db", pg_url, "--citus"])
    assert r.exit_code != 0
    assert "CREATE EXTENSION citus" in r.output
    with store.engine.connect() as conn:  # refused before migrating: still empty
        assert (
            conn.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()")).scalar()
            == 0
        )
    r = CliRunner().invoke(app, ["gdsc", "migrate", "--db", pg_url])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"migrated": True, "citus_steps": 0}
    store.close()


def test_print_ddl_prints_the_steps() -> None:
    r = CliRunner().invoke(app, ["gdsc", "migrate", "--print-ddl"])
    assert r.exit_code == 0
    assert r.output == citus_ddl(metadata)
    assert r.output.count(";\n") == len(citus_steps(metadata))


def test_migrate_citus_on_sqlite_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = CliRunner().invoke(app, ["gdsc", "migrate", "--db", f"sqlite:///{tmp_path / 'g.sqlite'}", "--citus"])
    assert r.exit_code != 0
    assert "PostgreSQL extension" in r.output
    assert not (tmp_path / "g.sqlite").exists() or (tmp_path / "g.sqlite").stat().st_size == 0
