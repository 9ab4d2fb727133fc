"""The Citus DDL that spreads a migrated GDSC schema over a coordinator and its workers, made
from the placements declared in :mod:`smarthub.gdsc.db.placement` (``smarthub gdsc migrate
--citus``). The only Citus-specific code of the store.

:func:`citus_steps` lists, in the order Citus needs:

1. ``drop_fk``: every foreign key that involves a reference or distributed table is dropped
   (Citus distributes a table only without them), unless its table is already in Citus'
   metadata (a run after the first);
2. ``reference``: ``create_reference_table`` for every reference table;
3. ``distribute``: ``create_distributed_table`` by the declared key, the first table of each
   colocation group with ``colocate_with => 'none'`` and the others colocated with it. The day
   partitions of ``interval_blocks`` that exist are distributed with their parent, and Citus
   distributes a partition created later on a distributed parent (what ingest's
   ``CREATE TABLE … PARTITION OF`` does);
4. ``local``: ``citus_add_local_table_to_metadata`` for a coordinator-local table that refers
   to a reference table (the foreign key needs it); other local tables are left as they are;
5. ``add_fk``: the foreign keys are added back, each only if missing.

Every step is guarded by Citus' catalog (``pg_dist_partition``) or PostgreSQL's
(``pg_constraint``), so running it again does nothing, and a run stopped half-way finishes on
the next. Each runs in its own transaction.

Not verified here: Citus cannot be installed on the machines the tests run on, so the steps are
checked against the placements (``tests/gdsc/test_citus_ddl.py``), their plain-PostgreSQL parts
(the foreign keys) are executed on PostgreSQL, and the whole is left to be run on a real cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Engine, ForeignKeyConstraint, MetaData, Table, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import AddConstraint

from smarthub.gdsc.db.placement import ROLES, Placement, foreign_keys, role

# The size of relation ``c`` (a pg_class row) on a Citus coordinator: a distributed or
# reference table's shards on the workers, else the local relation (issue 23 item 5).
CITUS_SIZE = (
    "CASE WHEN EXISTS (SELECT 1 FROM pg_dist_partition d WHERE d.logicalrelid = c.oid)"
    " THEN citus_total_relation_size(c.oid) ELSE pg_total_relation_size(c.oid) END"
)


@dataclass(frozen=True, slots=True)
class Step:
    kind: str  # drop_fk, reference, distribute, local, add_fk
    table: str
    sql: str  # the guarded statement run on the coordinator
    plain: str | None = None  # for drop_fk / add_fk: the PostgreSQL DDL inside the guard


def _lit(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


def _in_citus(table: str) -> str:
    return f"EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = {_lit(table)}::regclass)"


def _citus_fks(metadata: MetaData) -> list[tuple[Table, ForeignKeyConstraint]]:
    """The foreign keys Citus makes us drop while it places the tables."""
    return [
        (t, k)
        for t, k in foreign_keys(metadata)
        if role(t.name).placement is not Placement.LOCAL
        or role(k.referred_table.name).placement is not Placement.LOCAL
    ]


def citus_steps(metadata: MetaData) -> list[Step]:
    dialect = postgresql.dialect()
    fks = _citus_fks(metadata)
    steps: list[Step] = []
    for t, k in fks:
        plain = f'ALTER TABLE {t.name} DROP CONSTRAINT IF EXISTS "{k.name}"'
        steps.append(
            Step(
                "drop_fk",
                t.name,
                f"DO $$ BEGIN IF NOT {_in_citus(t.name)} THEN {plain}; END IF; END $$",
                plain,
            )
        )
    tables = sorted(metadata.tables.values(), key=lambda t: t.name)
    for t in tables:
        if role(t.name).placement is Placement.REFERENCE:
            steps.append(
                Step(
                    "reference",
                    t.name,
                    f"SELECT create_reference_table({_lit(t.name)}) WHERE NOT {_in_citus(t.name)}",
                )
            )
    distributed = [t for t in tables if role(t.name).placement is Placement.DISTRIBUTED]
    # The first table of each colocation group first, with a group of its own.
    distributed.sort(key=lambda t: (role(t.name).colocation or "", t.name != role(t.name).colocation, t.name))
    for t in distributed:
        r = role(t.name)
        colocate = "none" if r.colocation == t.name else str(r.colocation)
        steps.append(
            Step(
                "distribute",
                t.name,
                f"SELECT create_distributed_table({_lit(t.name)}, {_lit(str(r.key))}, "
                f"colocate_with => {_lit(colocate)}) WHERE NOT {_in_citus(t.name)}",
            )
        )
    local_with_fk = sorted({t.name for t, _ in fks if role(t.name).placement is Placement.LOCAL})
    for name in local_with_fk:
        steps.append(
            Step(
                "local",
                name,
                f"SELECT citus_add_local_table_to_metadata({_lit(name)}) WHERE NOT {_in_citus(name)}",
            )
        )
    for t, k in fks:
        plain = str(AddConstraint(k).compile(dialect=dialect)).strip()
        exists = (
            f"EXISTS (SELECT 1 FROM pg_constraint WHERE conname = {_lit(str(k.name))} "
            f"AND conrelid = {_lit(t.name)}::regclass)"
        )
        steps.append(
            Step("add_fk", t.name, f"DO $$ BEGIN IF NOT {exists} THEN {plain}; END IF; END $$", plain)
        )
    return steps


def citus_ddl(metadata: MetaData) -> str:
    """The steps as one SQL script (each statement its own transaction under psql's autocommit)."""
    return "".join(f"{s.sql};\n" for s in citus_steps(metadata))


class CitusMissing(RuntimeError):
    pass


def require_citus(engine: Engine) -> None:
    """Raise :class:`CitusMissing` unless ``engine`` is a PostgreSQL database with the ``citus``
    extension installed."""
    if engine.dialect.name != "postgresql":
        raise CitusMissing("Citus is a PostgreSQL extension: give a postgresql:// URL of the coordinator")
    with engine.connect() as conn:
        have = conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'citus'")).first()
    if have is None:
        raise CitusMissing(
            "the citus extension is not installed in this database: run CREATE EXTENSION citus on the "
            "coordinator and add the workers (citus_add_node) first"
        )


def apply_citus(engine: Engine, metadata: MetaData) -> list[str]:
    """Run :func:`citus_steps` on the coordinator at ``engine``; the kinds and tables of the
    steps run. Refused (nothing changed) unless the ``citus`` extension is installed there."""
    require_citus(engine)
    done = []
    for step in citus_steps(metadata):
        with engine.begin() as conn:
            conn.execute(text(step.sql))
        done.append(f"{step.kind} {step.table}")
    return done


_LOCKING = re.compile(r"\bFOR\s+(?:NO\s+KEY\s+)?(?:UPDATE|SHARE)\b", re.I)
_NAMES = r"(?:FROM|JOIN|UPDATE|INTO)\s+(\w+)"
_SRF_FROM = re.compile(r"\bFROM\s+unnest\s*\(", re.I)


def citus_refusals(sql: str) -> list[str]:
    """What in one executed statement Citus refuses, as far as the text shows: a row lock on a
    table that is not coordinator-local (Citus locks rows only in single-shard queries), or a
    subquery over a distributed table beside ``unnest`` in ``FROM`` (a subquery correlated
    with a set-returning function). A lint over real statements (``tests/gdsc/test_citus_lint.py``
    records every statement the store runs), not a parser: it knows the store's own SQL shapes."""
    out = []
    tables = {m.lower() for m in re.findall(_NAMES, sql, re.I)}
    placed = {t: role(t).placement for t in tables if t in ROLES}
    if _LOCKING.search(sql):
        out += [f"row lock on {t} ({p})" for t, p in sorted(placed.items()) if p is not Placement.LOCAL]
    if _SRF_FROM.search(sql):
        for sub in _subqueries(sql):
            inner = {m.lower() for m in re.findall(_NAMES, sub, re.I)}
            out += [
                f"subquery over {t} beside unnest in FROM"
                for t in sorted(inner)
                if t in ROLES and role(t).placement is Placement.DISTRIBUTED
            ]
    return out


def _subqueries(sql: str) -> list[str]:
    """The text of every parenthesised ``(SELECT …)`` in ``sql``, nested ones included."""
    out = []
    for m in re.finditer(r"\(\s*SELECT\b", sql, re.I):
        depth = 0
        for i in range(m.start(), len(sql)):
            depth += {"(": 1, ")": -1}.get(sql[i], 0)
            if depth == 0:
                out.append(sql[m.start() + 1 : i])
                break
    return out
