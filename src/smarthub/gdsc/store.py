"""The GDSC store: the single source of truth for premises, hubs, meters and readings.

One code path for SQLite (the embedded default) and PostgreSQL (production), through
SQLAlchemy Core; the schema is brought to its current version by the Alembic migrations in
``smarthub.gdsc.migrations``. Ingest is idempotent: a reading is keyed by (hub, meter, OBIS,
duration, interval start), so pulling the same data twice stores it once; a re-sent reading
whose value differs from the stored one is kept out and counted as a conflict, never merged.
The pull cursors of a hub are written in the same transaction as the readings they cover, so
a GDSC killed at any instant resumes exactly where its store says it is.

Interval layout (issue 5: ≤ 4 bytes per half-hourly reading on PostgreSQL, indexes included):

* ``hub_keys`` gives every hub a 4-byte integer key, and ``interval_channels`` numbers each
  hub's channels — (meter, OBIS, duration, unit, power of ten) — with a 2-byte ``channel_no``.
  The row key of a block is then 10 bytes instead of two strings of ~30 bytes each, which on
  its own would cost ~1.5 bytes per reading in the heap and again in the primary-key index.
  ``duration`` is part of the channel, so half-hourly and daily data of the same start coexist.
* ``interval_blocks`` holds one row per channel and UTC day: ``n`` readings encoded by
  :mod:`smarthub.gdsc.interval_block` (presence bitmap, zig-zag delta varints, sparse quality
  flags: ~1–2 bytes per reading). A native ``bigint[]`` was weighed and rejected: 8 bytes per
  value plus a 24-byte header already exceed the goal. ``bench/store.py`` measures ~3.1 bytes
  per half-hourly reading with row header, item pointer and primary-key index (12,000 hubs),
  plus the channel and hub-key rows once per channel (~0.02 bytes/reading over a year).
* On PostgreSQL ``interval_blocks`` is range-partitioned by ``day`` (one partition per day,
  created on demand in its own short transaction under an advisory lock, so concurrent
  ingests never race on the DDL; a partition left empty by a rolled-back ingest is harmless),
  and blocks are bulk-loaded with ``COPY`` into a temporary staging table, then merged with
  ``INSERT … ON CONFLICT DO NOTHING``; blocks that already existed are locked (``FOR UPDATE``),
  merged in Python and written back, so two GDSC processes never lose each other's readings.
  SQLite uses a plain table and plain inserts (its writers are serialised anyway).
* Every table but ``premises`` (a small reference table) has the hub first in its primary
  key, so a sharded PostgreSQL (e.g. Citus) can distribute them by hub. There are no foreign
  keys from the interval tables: they would prevent distributing and partitioning them.

Blocks are per UTC day; a reading whose start is not on its duration's grid, or whose duration
does not divide a day, is refused with a ``ValueError`` (IEEE 2030.5 interval readings are
aligned on their interval).
"""

from __future__ import annotations

import re
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from operator import attrgetter, itemgetter
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError

from smarthub.gdsc import interval_block

DAY = 86400

# Stable constraint names, so migrations can refer to them on every dialect.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

premises = Table(
    "premises",
    metadata,
    Column("premises_id", String(64), primary_key=True),
    Column("address", Text, nullable=False, default=""),
    Column("mpan", String(13)),
    Column("mprn", String(10)),
)

hubs = Table(
    "hubs",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("premises_id", String(64), ForeignKey("premises.premises_id"), nullable=False),
    Column("url", Text, nullable=False),
    Column("lfdi", String(40), nullable=False),
    Column("status", String(16), nullable=False, default="active"),
    # The WAN link (cell, concentrator, backhaul) the hub sits behind: the scheduler limits
    # how many hubs behind one link it pulls at once. None: a link of its own.
    Column("wan_link", String(64)),
)

meters = Table(
    "meters",
    metadata,
    Column("hub_id", String(64), ForeignKey("hubs.hub_id"), primary_key=True),
    Column("meter_id", String(64), primary_key=True),
    Column("fuel", String(16), nullable=False),
)

# The compact integer key of a hub in the interval tables (allocated on first ingest).
hub_keys = Table(
    "hub_keys",
    metadata,
    Column("hub_key", Integer, primary_key=True, autoincrement=True),
    Column("hub_id", String(64), nullable=False, unique=True),
)

# One interval channel of a hub. Values are integers in the unit `uom` (IEEE 2030.5
# UomType) times 10**power_of_ten, exactly as the hub served them.
interval_channels = Table(
    "interval_channels",
    metadata,
    Column("hub_key", Integer, primary_key=True, autoincrement=False),
    Column("channel_no", SmallInteger, primary_key=True, autoincrement=False),
    Column("meter_id", String(64), nullable=False),
    Column("obis", String(32), nullable=False),
    Column("duration", Integer, nullable=False),
    Column("uom", SmallInteger, nullable=False),
    Column("power_of_ten", SmallInteger, nullable=False),
    UniqueConstraint(
        "hub_key", "meter_id", "obis", "duration", "uom", "power_of_ten", name="uq_interval_channels_spec"
    ),
)

# One channel-day of readings (columns ordered so PostgreSQL needs no alignment padding).
interval_blocks = Table(
    "interval_blocks",
    metadata,
    Column("hub_key", Integer, primary_key=True, autoincrement=False),
    Column("day", Integer, primary_key=True, autoincrement=False),  # days since 1970-01-01 UTC
    Column("n", Integer, nullable=False),  # readings present in the block
    Column("channel_no", SmallInteger, primary_key=True, autoincrement=False),
    Column("block", LargeBinary, nullable=False),  # smarthub.gdsc.interval_block format
    postgresql_partition_by="RANGE (day)",
)

# Where the next incremental pull of one hub channel (a 2030.5 MeterReading) starts.
pull_cursors = Table(
    "pull_cursors",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("channel", String(255), primary_key=True),
    Column("after", BigInteger, nullable=False),
)

# The last management-command counter issued per hub (hubs refuse any counter not above it).
command_counters = Table(
    "command_counters",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("counter", BigInteger, nullable=False),
)

# One row per pull attempt; `seq` numbers the attempts of one hub.
pull_log = Table(
    "pull_log",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("started", DateTime(timezone=True), nullable=False),
    Column("finished", DateTime(timezone=True), nullable=False),
    Column("ok", Integer, nullable=False),
    Column("readings", Integer, nullable=False),
    Column("inserted", Integer, nullable=False),
    Column("error", Text),
)

# Day partitions of interval_blocks on PostgreSQL, e.g. interval_blocks_20260302.
PARTITION_NAME = re.compile(r"^interval_blocks_\d{8}$")


def partition_name(day: int) -> str:
    return f"interval_blocks_{(date(1970, 1, 1) + timedelta(days=day)):%Y%m%d}"


@dataclass(frozen=True, slots=True)
class StoredReading:
    hub_id: str
    meter_id: str
    obis: str
    interval_start: int
    duration: int
    value: int
    power_of_ten: int
    uom: int
    quality: int

    def key(self) -> tuple[str, str, str, int, int]:
        return (self.hub_id, self.meter_id, self.obis, self.duration, self.interval_start)


# A reading as a plain tuple in StoredReading's field order: (hub_id, meter_id, obis,
# interval_start, duration, value, power_of_ten, uom, quality). Ingest takes either form; the
# collector passes tuples (building ~100 readings per hub as frozen dataclasses cost it more
# than grouping and encoding them).
ReadingRow = tuple[str, str, str, int, int, int, int, int, int]
Readings = Sequence[StoredReading] | Sequence[ReadingRow]


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one hub's ingest did. ``already_stored`` counts keys the store held before,
    conflicts included; readings repeated inside one pull count once."""

    received: int
    inserted: int
    already_stored: int
    conflicts: int
    refused: str | None = None  # why nothing was stored: the hub is revoked or decommissioned


@dataclass(frozen=True, slots=True)
class HubRecord:
    hub_id: str
    premises_id: str
    url: str
    lfdi: str
    status: str
    wan_link: str | None = None


# (meter, obis, duration, uom, power_of_ten): a channel of one hub.
ChannelSpec = tuple[str, str, int, int, int]
# (hub_key, day, channel_no): the primary key of a block.
BlockKey = tuple[int, int, int]


class _Tally:
    __slots__ = ("already", "conflicts", "inserted")

    def __init__(self) -> None:
        self.inserted = self.already = self.conflicts = 0


class Store:
    """Thread-safe facade over the GDSC database (writes serialised per process)."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        # hide_parameters: a logged statement (echo, or a DBAPI error in a traceback) must not
        # carry its values: readings are personal data and a queued meter.key command a key.
        self.engine: Engine = create_engine(url, echo=echo, future=True, hide_parameters=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._write_lock = threading.Lock()
        self._hub_keys: dict[str, int] = {}  # committed allocations only
        self._partitions: set[int] = set()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def create_schema(self) -> None:
        """Bring the database to the newest migration (creating it if empty)."""
        from alembic import command

        with self._write_lock, self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Two GDSC processes starting together must not both run the migrations.
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_id("migrations")})
            tables = set(inspect(conn).get_table_names())
            if "alembic_version" not in tables and tables & set(metadata.tables):
                raise RuntimeError(
                    f"{self.url}: GDSC tables {sorted(tables & set(metadata.tables))} exist but the database "
                    "has no migration version: it was created before the store had migrations "
                    "(one row per reading); move it aside and let the GDSC create a new one"
                )
            command.upgrade(alembic_config(conn), "head")

    def drop_schema(self) -> None:
        with self._write_lock, self.engine.begin() as conn:
            metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        self._hub_keys.clear()
        self._partitions.clear()

    def close(self) -> None:
        self.engine.dispose()

    def scrub_wal(self) -> None:
        """On SQLite, checkpoint the WAL into the database and truncate it, so a secret just
        cleared (``secure_delete`` zeroes it in the database) leaves the WAL's old frames too.
        Best effort: a reader in the way leaves the WAL for the next checkpoint. PostgreSQL has no
        equivalent (a dead tuple stays until VACUUM reuses its space, and its WAL is archived)."""
        if self.dialect != "sqlite":
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    # -- registry -----------------------------------------------------------------
    def register_hub(
        self,
        *,
        hub_id: str,
        premises_id: str,
        url: str,
        lfdi: str,
        meters_by_fuel: Sequence[tuple[str, str]],
        address: str = "",
        mpan: str | None = None,
        mprn: str | None = None,
        wan_link: str | None = None,
    ) -> None:
        """Bind premises ↔ hub ↔ meters (re-registering the same hub updates it)."""
        with self._write_lock, self.engine.begin() as conn:
            ins = self._insert(premises).values(
                premises_id=premises_id, address=address, mpan=mpan, mprn=mprn
            )
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["premises_id"], set_=dict(address=address, mpan=mpan, mprn=mprn)
                )
            )
            ins = self._insert(hubs).values(
                hub_id=hub_id, premises_id=premises_id, url=url, lfdi=lfdi, status="active", wan_link=wan_link
            )
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["hub_id"],
                    set_=dict(
                        premises_id=premises_id, url=url, lfdi=lfdi, status="active", wan_link=wan_link
                    ),
                )
            )
            for meter_id, fuel in meters_by_fuel:
                ins = self._insert(meters).values(hub_id=hub_id, meter_id=meter_id, fuel=fuel)
                conn.execute(ins.on_conflict_do_nothing(index_elements=["hub_id", "meter_id"]))

    def active_hubs(self) -> list[HubRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(hubs).where(hubs.c.status == "active").order_by(hubs.c.hub_id))
            return [HubRecord(r.hub_id, r.premises_id, r.url, r.lfdi, r.status, r.wan_link) for r in rows]

    def hub_meters(self, hub_id: str) -> dict[str, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(meters.c.meter_id, meters.c.fuel).where(meters.c.hub_id == hub_id))
            return {r.meter_id: r.fuel for r in rows}

    # -- ingest -------------------------------------------------------------------
    def cursors(self, hub_id: str) -> dict[str, int]:
        return self.cursors_many([hub_id])[hub_id]

    def cursors_many(self, hub_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """The pull cursors of many hubs in one query: {hub id: {channel: after}} (a hub with
        none maps to ``{}``). A collector reads the cursors of every pull starting together
        at once: one round trip per group instead of one per hub."""
        out: dict[str, dict[str, int]] = {h: {} for h in hub_ids}
        t = pull_cursors
        cols = (t.c.hub_id, t.c.channel, t.c.after)
        wanted = sorted(out)
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                rows = conn.execute(
                    select(*cols).where(t.c.hub_id == func.any(bindparam("h", wanted, type_=ARRAY(String))))
                ).all()
            else:
                rows = [
                    r
                    for chunk in _chunks(wanted, 500)
                    for r in conn.execute(select(*cols).where(t.c.hub_id.in_(chunk)))
                ]
        for hub_id, channel, after in rows:
            out[hub_id][channel] = after
        return out

    def ingest(self, hub_id: str, readings: Readings, cursors: dict[str, int]) -> IngestResult:
        """Store readings and advance the hub's pull cursors, all in one transaction."""
        return self.ingest_many([(hub_id, readings, cursors)])[0]

    def ingest_many(self, items: Sequence[tuple[str, Readings, dict[str, int]]]) -> list[IngestResult]:
        """Ingest many hubs' pulls (hub id, readings, cursors) in one transaction.

        The items are applied in order, as if ingested one after the other: a reading that
        an earlier item of the same call already brought counts as already stored (or as a
        conflict if its value differs). Either everything is stored or nothing is.
        """
        # Validate and group everything before touching the database.
        pulls = [_group_pull(hub_id, readings) for hub_id, readings, _ in items]
        if self.dialect == "postgresql":
            self.ensure_day_partitions({key[5] for groups, _ in pulls for key in groups})
        with self._write_lock:
            new_keys: dict[str, int] = {}
            with self.engine.begin() as conn:
                refused = self._inactive_hubs(conn, {hub_id for hub_id, _, _ in items})
                kept = [i for i, (hub_id, _, _) in enumerate(items) if hub_id not in refused]
                done = self._ingest(conn, [items[i] for i in kept], [pulls[i] for i in kept], new_keys)
            self._hub_keys.update(new_keys)  # only once committed
        tallies = dict(zip(kept, done, strict=True))
        return [
            IngestResult(len(readings), t.inserted, unique - t.inserted, t.conflicts)
            if (t := tallies.get(i)) is not None
            else IngestResult(
                len(readings), 0, 0, 0, f"hub {hub_id} is {refused[hub_id]}: its data is refused"
            )
            for i, ((hub_id, readings, _), (_, unique)) in enumerate(zip(items, pulls, strict=True))
        ]

    def _inactive_hubs(self, conn: Connection, hub_ids: set[str]) -> dict[str, str]:
        """Registered hubs among ``hub_ids`` that are no longer active (revoked, decommissioned).

        Read inside the ingest transaction, after :func:`lock_hub_status` (shared): a revocation
        (which takes it exclusively) either commits before this read, and the hub's data is
        refused, or waits until this ingest has committed. So nothing of a hub is stored after
        the instant its revocation committed, even from a pull that was already in flight.
        Hubs the registry does not know are not refused (tests and tools ingest without one).
        """
        lock_hub_status(conn, exclusive=False)
        rows = conn.execute(
            select(hubs.c.hub_id, hubs.c.status).where(
                hubs.c.hub_id.in_(sorted(hub_ids)), hubs.c.status != "active"
            )
        )
        return {r.hub_id: r.status for r in rows}

    def _ingest(
        self,
        conn: Connection,
        items: Sequence[tuple[str, Readings, dict[str, int]]],
        pulls: list[tuple[dict[GroupKey, dict[int, tuple[int, int]]], int]],
        new_keys: dict[str, int],
    ) -> list[_Tally]:
        tallies = [_Tally() for _ in items]
        keys = self._resolve_hub_keys(conn, {hub_id for hub_id, _, _ in items}, new_keys)
        wanted: dict[int, set[ChannelSpec]] = {}
        for (hub_id, _, _), (groups, _) in zip(items, pulls, strict=True):
            specs = wanted.setdefault(keys[hub_id], set())
            for g in groups:
                specs.add(g[:5])
        channels = self._resolve_channels(conn, wanted)
        # One claim per (hub, meter, OBIS, duration, day): readings of one key that arrive in
        # two channels (another unit or power of ten) meet there and the later is a conflict.
        claims: dict[tuple[int, str, str, int, int], _Claim] = {}
        for idx, ((hub_id, _, _), (groups, _)) in enumerate(zip(items, pulls, strict=True)):
            hk = keys[hub_id]
            chans = channels[hk]
            for g, slots in groups.items():
                no = chans[g[:5]]
                ck = (hk, g[0], g[1], g[2], g[5])
                claim = claims.get(ck)
                if claim is None:
                    claims[ck] = _Claim(no, slots, idx)
                else:
                    claim.add(no, slots, idx, tallies)
        self._drop_sibling_conflicts(conn, claims, channels, tallies)
        pending: dict[BlockKey, tuple[dict[int, tuple[int, int]], int | dict[int, int]]] = {}
        durations: dict[BlockKey, int] = {}
        for (hk, _, _, duration, day), claim in claims.items():
            for no, slots, owner in claim.blocks():
                pending[(hk, day, no)] = (slots, owner)
                durations[(hk, day, no)] = duration
        if pending:
            if self.dialect == "postgresql":
                self._write_blocks_pg(conn, pending, durations, tallies)
            else:
                self._write_blocks_sqlite(conn, pending, durations, tallies)
        latest: dict[tuple[str, str], int] = {}
        for hub_id, _, cursors in items:
            for channel, after in cursors.items():
                k = (hub_id, channel)
                if after > latest.get(k, after - 1):
                    latest[k] = after
        if latest:
            self._advance_cursors(conn, latest)
        return tallies

    def _advance_cursors(self, conn: Connection, latest: dict[tuple[str, str], int]) -> None:
        if self.dialect == "postgresql":
            conn.execute(
                text(
                    "INSERT INTO pull_cursors (hub_id, channel, after) "
                    "SELECT * FROM unnest(CAST(:h AS varchar[]), CAST(:c AS varchar[]), CAST(:a AS int8[])) "
                    "ON CONFLICT (hub_id, channel) DO UPDATE "
                    "SET after = greatest(pull_cursors.after, excluded.after)"
                ),
                {"h": [k[0] for k in latest], "c": [k[1] for k in latest], "a": list(latest.values())},
            )
            return
        ins = sqlite.insert(pull_cursors)
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=["hub_id", "channel"],
                set_={"after": func.max(pull_cursors.c.after, ins.excluded.after)},
            ),
            [{"hub_id": h, "channel": c, "after": a} for (h, c), a in latest.items()],
        )

    def _resolve_hub_keys(
        self, conn: Connection, hub_ids: set[str], new_keys: dict[str, int]
    ) -> dict[str, int]:
        out = {h: self._hub_keys[h] for h in hub_ids if h in self._hub_keys}
        missing = sorted(hub_ids - out.keys())
        if not missing:
            return out
        # Look up first and insert only the unknown: an INSERT that meets an existing hub
        # would still consume a value of the key sequence.
        found = self._select_hub_keys(conn, missing)
        unknown = sorted(set(missing) - {h for h, _ in found})
        if unknown and self.dialect == "postgresql":
            conn.execute(
                text(
                    "INSERT INTO hub_keys (hub_id) SELECT unnest(CAST(:ids AS varchar[])) "
                    "ON CONFLICT (hub_id) DO NOTHING"
                ),
                {"ids": unknown},
            )
        elif unknown:
            conn.execute(
                sqlite.insert(hub_keys).on_conflict_do_nothing(index_elements=["hub_id"]),
                [{"hub_id": h} for h in unknown],
            )
        if unknown:
            found += self._select_hub_keys(conn, unknown)
        for hub_id, key in found:
            out[hub_id] = new_keys[hub_id] = key
        return out

    def _select_hub_keys(self, conn: Connection, hub_ids: list[str]) -> list[tuple[str, int]]:
        t = hub_keys
        if self.dialect == "postgresql":
            q = select(t.c.hub_id, t.c.hub_key).where(
                t.c.hub_id == func.any(bindparam("h", hub_ids, type_=ARRAY(String)))
            )
            return [(h, k) for h, k in conn.execute(q)]
        return [
            (h, k)
            for chunk in _chunks(hub_ids, 500)
            for h, k in conn.execute(select(t.c.hub_id, t.c.hub_key).where(t.c.hub_id.in_(chunk)))
        ]

    def _load_channels(
        self, conn: Connection, hub_key_list: Iterable[int]
    ) -> dict[int, dict[ChannelSpec, int]]:
        t = interval_channels
        cols = (t.c.hub_key, t.c.channel_no, t.c.meter_id, t.c.obis, t.c.duration, t.c.uom, t.c.power_of_ten)
        wanted = sorted(hub_key_list)
        if self.dialect == "postgresql":
            rows = conn.execute(
                select(*cols).where(t.c.hub_key == func.any(bindparam("k", wanted, type_=ARRAY(Integer))))
            ).all()
        else:
            rows = [
                row
                for chunk in _chunks(wanted, 500)
                for row in conn.execute(select(*cols).where(t.c.hub_key.in_(chunk)))
            ]
        out: dict[int, dict[ChannelSpec, int]] = {}
        for hk, no, meter, obis, duration, uom, p10 in rows:
            out.setdefault(hk, {})[(meter, obis, duration, uom, p10)] = no
        return out

    def _resolve_channels(
        self, conn: Connection, wanted: dict[int, set[ChannelSpec]]
    ) -> dict[int, dict[ChannelSpec, int]]:
        """Number every wanted channel, creating the missing ones (safe against a concurrent GDSC)."""
        known = self._load_channels(conn, wanted)
        for _ in range(10):
            rows: list[tuple[int, int, str, str, int, int, int]] = []
            for hk, specs in wanted.items():
                have = known.setdefault(hk, {})
                nxt = max(have.values(), default=0) + 1
                for spec in sorted(specs - have.keys()):
                    rows.append((hk, nxt, *spec))
                    nxt += 1
            if not rows:
                return known
            if any(r[1] > 32767 for r in rows):
                raise ValueError("a hub cannot have more than 32767 interval channels")
            # A concurrent ingest may take the same numbers: those rows are skipped and retried.
            if self.dialect == "postgresql":
                conn.execute(
                    text(
                        "INSERT INTO interval_channels "
                        "(hub_key, channel_no, meter_id, obis, duration, uom, power_of_ten) "
                        "SELECT * FROM unnest(CAST(:a AS int4[]), CAST(:b AS int2[]), CAST(:c AS varchar[]), "
                        "CAST(:d AS varchar[]), CAST(:e AS int4[]), CAST(:f AS int2[]), CAST(:g AS int2[])) "
                        "ON CONFLICT DO NOTHING"
                    ),
                    dict(zip("abcdefg", (list(col) for col in zip(*rows, strict=True)), strict=True)),
                )
            else:
                names = ("hub_key", "channel_no", "meter_id", "obis", "duration", "uom", "power_of_ten")
                conn.execute(
                    sqlite.insert(interval_channels).on_conflict_do_nothing(),
                    [dict(zip(names, r, strict=True)) for r in rows],
                )
            known.update(self._load_channels(conn, {r[0] for r in rows}))
        raise RuntimeError("could not number new interval channels after 10 attempts")

    def _drop_sibling_conflicts(
        self,
        conn: Connection,
        claims: dict[tuple[int, str, str, int, int], _Claim],
        channels: dict[int, dict[ChannelSpec, int]],
        tallies: list[_Tally],
    ) -> None:
        """A key stored in another channel of the same (meter, obis, duration) — another unit
        or power of ten — is a conflict: the stored reading stays, the new one is kept out."""
        siblings: dict[tuple[int, str, str, int], list[int]] = {}
        for hk, chans in channels.items():
            for (meter, obis, duration, _, _), no in chans.items():
                siblings.setdefault((hk, meter, obis, duration), []).append(no)
        b = interval_blocks
        for (hk, meter, obis, duration, day), claim in claims.items():
            nos = siblings[(hk, meter, obis, duration)]
            if len(nos) < 2:
                continue
            stored = conn.execute(
                select(b.c.channel_no, b.c.block).where(
                    and_(b.c.hub_key == hk, b.c.day == day, b.c.channel_no.in_(nos))
                )
            ).all()
            mixed = claim.mix()
            for no, block in stored:
                for slot in interval_block.decode(block, DAY // duration):
                    held = mixed.get(slot)
                    if held is not None and held[0] != no:
                        tallies[held[3]].conflicts += 1
                        del mixed[slot]

    def _merge(
        self,
        key: BlockKey,
        stored: bytes,
        slots: dict[int, tuple[int, int]],
        owner: int | dict[int, int],
        duration: int,
        tallies: list[_Tally],
    ) -> tuple[int, bytes] | None:
        """Merge new slots into a stored block; the (n, block) to write back, None if unchanged."""
        n_slots = DAY // duration
        try:
            held = interval_block.decode(stored, n_slots)
        except interval_block.BlockError as err:
            raise interval_block.BlockError(f"stored block {key} (hub_key, day, channel_no): {err}") from err
        added = False
        for slot, (value, quality) in slots.items():
            tally = tallies[owner if isinstance(owner, int) else owner[slot]]
            old = held.get(slot)
            if old is None:
                held[slot] = (value, quality)
                tally.inserted += 1
                added = True
            elif old[0] != value:
                tally.conflicts += 1
        return (len(held), interval_block.encode(n_slots, held)) if added else None

    def _write_blocks_sqlite(
        self,
        conn: Connection,
        pending: dict[BlockKey, tuple[dict[int, tuple[int, int]], int | dict[int, int]]],
        durations: dict[BlockKey, int],
        tallies: list[_Tally],
    ) -> None:
        b = interval_blocks
        stored: dict[BlockKey, bytes] = {}
        for chunk in _chunks(sorted(pending), 300):
            q = select(b.c.hub_key, b.c.day, b.c.channel_no, b.c.block).where(
                tuple_(b.c.hub_key, b.c.day, b.c.channel_no).in_(chunk)
            )
            for hk, day, no, block in conn.execute(q):
                stored[(hk, day, no)] = block
        fresh, changed = [], []
        for key, (slots, owner) in pending.items():
            if key in stored:
                merged = self._merge(key, stored[key], slots, owner, durations[key], tallies)
                if merged is not None:
                    changed.append(
                        {"k_hub": key[0], "k_day": key[1], "k_no": key[2], "n": merged[0], "block": merged[1]}
                    )
            else:
                _count_inserted(slots, owner, tallies)
                fresh.append(
                    {
                        "hub_key": key[0],
                        "day": key[1],
                        "channel_no": key[2],
                        "n": len(slots),
                        "block": interval_block.encode(DAY // durations[key], slots),
                    }
                )
        if fresh:
            conn.execute(b.insert(), fresh)
        if changed:
            conn.execute(
                b.update()
                .where(
                    and_(
                        b.c.hub_key == bindparam("k_hub"),
                        b.c.day == bindparam("k_day"),
                        b.c.channel_no == bindparam("k_no"),
                    )
                )
                .values(n=bindparam("n"), block=bindparam("block")),
                changed,
            )

    def _write_blocks_pg(
        self,
        conn: Connection,
        pending: dict[BlockKey, tuple[dict[int, tuple[int, int]], int | dict[int, int]]],
        durations: dict[BlockKey, int],
        tallies: list[_Tally],
    ) -> None:
        """COPY the new blocks into a staging table, insert those whose key is new, then lock,
        merge and write back those that already existed."""
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS interval_blocks_staging "
                "(hub_key int4, day int4, n int4, channel_no int2, block bytea) ON COMMIT DELETE ROWS"
            )
            _copy_blocks(
                cur,
                (
                    (key, len(slots), interval_block.encode(DAY // durations[key], slots))
                    for key, (slots, _) in pending.items()
                ),
            )
            # Insert the blocks whose key is new; what stays in staging already existed.
            cur.execute(
                "WITH ins AS (INSERT INTO interval_blocks (hub_key, day, n, channel_no, block) "
                "SELECT hub_key, day, n, channel_no, block FROM interval_blocks_staging "
                "ON CONFLICT DO NOTHING RETURNING hub_key, day, channel_no) "
                "DELETE FROM interval_blocks_staging s USING ins "
                "WHERE s.hub_key = ins.hub_key AND s.day = ins.day AND s.channel_no = ins.channel_no"
            )
            stored: dict[BlockKey, bytes] = {}
            if cur.rowcount < len(pending):
                cur.execute(
                    "SELECT b.hub_key, b.day, b.channel_no, b.block FROM interval_blocks b "
                    "JOIN interval_blocks_staging s "
                    "ON b.hub_key = s.hub_key AND b.day = s.day AND b.channel_no = s.channel_no "
                    "FOR UPDATE OF b"
                )
                stored = {(hk, day, no): bytes(block) for hk, day, no, block in cur.fetchall()}
            changed = []
            for key, (slots, owner) in pending.items():
                if key not in stored:
                    _count_inserted(slots, owner, tallies)
                    continue
                merged = self._merge(key, stored[key], slots, owner, durations[key], tallies)
                if merged is not None:
                    changed.append((key, merged[0], merged[1]))
            cur.execute("TRUNCATE interval_blocks_staging")
            if changed:
                _copy_blocks(cur, changed)
                cur.execute(
                    "UPDATE interval_blocks b SET n = s.n, block = s.block FROM interval_blocks_staging s "
                    "WHERE b.hub_key = s.hub_key AND b.day = s.day AND b.channel_no = s.channel_no"
                )
                cur.execute("TRUNCATE interval_blocks_staging")

    def ensure_day_partitions(self, days: Iterable[int]) -> None:
        """Create the PostgreSQL partitions of these days (days since 1970-01-01 UTC) if missing.

        Ingest calls it for the days it meets; a scheduler may call it ahead of a retrieval
        window, since creating a partition waits for running queries on interval_blocks."""
        if self.dialect != "postgresql":
            return
        missing = sorted(set(days) - self._partitions)
        if not missing:
            return
        with self.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_id("partitions")})
            for day in missing:
                conn.execute(
                    text(
                        f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF interval_blocks "
                        f"FOR VALUES FROM ({day}) TO ({day + 1})"
                    )
                )
        self._partitions.update(missing)

    def partitions(self) -> list[str]:
        """The day partitions of interval_blocks (PostgreSQL; empty on SQLite)."""
        if self.dialect != "postgresql":
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'interval_blocks'::regclass ORDER BY c.relname"
                )
            )
            return [r[0] for r in rows]

    # -- commands and pull log ------------------------------------------------------
    def next_command_counter(self, hub_id: str, conn: Connection | None = None) -> int:
        """Atomically take the next command counter for a hub (survives restarts; never reused).

        Inside ``conn``'s transaction the counter row stays locked until that transaction ends
        (PostgreSQL's ON CONFLICT DO UPDATE row lock; SQLite's single writer), so whatever the
        caller writes with the counter is committed before anyone takes the next one.
        """
        if conn is None:
            with self._write_lock, self.engine.begin() as own:
                return self.next_command_counter(hub_id, own)
        ins = self._insert(command_counters).values(hub_id=hub_id, counter=1)
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=["hub_id"], set_={"counter": command_counters.c.counter + 1}
            )
        )
        return int(
            conn.execute(
                select(command_counters.c.counter).where(command_counters.c.hub_id == hub_id)
            ).scalar_one()
        )

    def log_pulls(self, entries: Sequence[dict[str, Any]]) -> None:
        """Several pulls' log rows (``log_pull``'s keyword arguments each) in one transaction."""
        if not entries:
            return
        for attempt in range(5):
            try:
                with self._write_lock, self.engine.begin() as conn:
                    if self.dialect == "postgresql":
                        self._pull_log_insert_pg(conn, entries)
                    else:
                        for e in entries:
                            conn.execute(self._pull_log_insert(**e))
                return
            except IntegrityError:  # another process logged a pull of the same hub at once
                if attempt == 4:
                    raise

    def _pull_log_insert_pg(self, conn: Connection, entries: Sequence[dict[str, Any]]) -> None:
        """Every row in one statement: each hub's next ``seq`` numbers follow its highest
        stored one, in the order the entries are given (a hub may appear more than once)."""
        cols: dict[str, list[Any]] = {
            k: [e[k] for e in entries]
            for k in ("hub_id", "window_start", "started", "finished", "readings", "inserted", "error")
        }
        cols["ok"] = [int(e["ok"]) for e in entries]
        conn.execute(
            text(
                "INSERT INTO pull_log"
                " (hub_id, seq, window_start, started, finished, ok, readings, inserted, error) "
                "SELECT v.hub_id, coalesce((SELECT max(p.seq) FROM pull_log p WHERE p.hub_id = v.hub_id), 0)"
                " + row_number() OVER (PARTITION BY v.hub_id ORDER BY v.ord),"
                " v.window_start, v.started, v.finished, v.ok, v.readings, v.inserted, v.error "
                "FROM unnest(CAST(:hub_id AS varchar[]), CAST(:window_start AS timestamptz[]),"
                " CAST(:started AS timestamptz[]), CAST(:finished AS timestamptz[]), CAST(:ok AS int4[]),"
                " CAST(:readings AS int4[]), CAST(:inserted AS int4[]), CAST(:error AS text[]))"
                " WITH ORDINALITY"
                " AS v(hub_id, window_start, started, finished, ok, readings, inserted, error, ord)"
            ),
            cols,
        )

    def _pull_log_insert(
        self,
        *,
        hub_id: str,
        window_start: datetime,
        started: datetime,
        finished: datetime,
        ok: bool,
        readings: int,
        inserted: int,
        error: str | None,
    ) -> Any:
        nxt = (
            select(func.coalesce(func.max(pull_log.c.seq), 0) + 1)
            .where(pull_log.c.hub_id == hub_id)
            .scalar_subquery()
        )
        return pull_log.insert().values(
            seq=nxt,
            hub_id=hub_id,
            window_start=window_start,
            started=started,
            finished=finished,
            ok=int(ok),
            readings=readings,
            inserted=inserted,
            error=error,
        )

    def log_pull(
        self,
        *,
        hub_id: str,
        window_start: datetime,
        started: datetime,
        finished: datetime,
        ok: bool,
        readings: int,
        inserted: int,
        error: str | None,
    ) -> None:
        self.log_pulls(
            [
                dict(
                    hub_id=hub_id,
                    window_start=window_start,
                    started=started,
                    finished=finished,
                    ok=ok,
                    readings=readings,
                    inserted=inserted,
                    error=error,
                )
            ]
        )

    # -- queries --------------------------------------------------------------------
    def fleet_status(self) -> list[dict[str, object]]:
        """One row per hub for the operator page: last pull, readings stored, errors."""
        b, k = interval_blocks, hub_keys
        with self.engine.connect() as conn:
            counts = dict(
                conn.execute(
                    select(k.c.hub_id, func.sum(b.c.n))
                    .select_from(b.join(k, b.c.hub_key == k.c.hub_key))
                    .group_by(k.c.hub_id)
                ).all()
            )
            last = {
                r.hub_id: r
                for r in conn.execute(
                    select(
                        pull_log.c.hub_id,
                        func.max(pull_log.c.finished).label("last"),
                        func.sum(1 - pull_log.c.ok).label("errors"),
                        func.count().label("pulls"),
                    ).group_by(pull_log.c.hub_id)
                )
            }
            out = []
            for h in conn.execute(select(hubs).order_by(hubs.c.hub_id)):
                lp = last.get(h.hub_id)
                out.append(
                    {
                        "hub_id": h.hub_id,
                        "premises_id": h.premises_id,
                        "status": h.status,
                        "last_pull": _aware(lp.last) if lp else None,
                        "pulls": int(lp.pulls) if lp else 0,
                        "errors": int(lp.errors or 0) if lp else 0,
                        "readings": int(counts.get(h.hub_id) or 0),
                    }
                )
            return out

    def _decoded(
        self, conn: Connection, start: int | None, end: int | None, *where: object
    ) -> Iterator[tuple[str, str, str, int, int, int, int, int, int]]:
        return decoded_readings(conn, start, end, *where)

    def count_readings(self, start: int | None = None, end: int | None = None) -> int:
        """Readings stored with interval start in [start, end) (all when unbounded)."""
        b = interval_blocks
        # Whole days inside the range are counted from the blocks' `n`; only the edge days
        # are decoded.
        first = -(2**31) if start is None else -(-start // DAY)
        last = 2**31 - 1 if end is None else end // DAY - 1
        total = 0
        with self.engine.connect() as conn:
            if first > last:  # no whole day inside: start and end fall in the same day
                return sum(1 for _ in self._decoded(conn, start, end))
            q = select(func.coalesce(func.sum(b.c.n), 0)).where(and_(b.c.day >= first, b.c.day <= last))
            total += int(conn.execute(q).scalar_one())
            if start is not None and start < first * DAY:
                total += sum(1 for _ in self._decoded(conn, start, first * DAY))
            if end is not None and (last + 1) * DAY < end:
                total += sum(1 for _ in self._decoded(conn, (last + 1) * DAY, end))
        return total

    def count_estimated(self, start: int, end: int) -> int:
        """Readings in [start, end) that the hub flagged as estimated rather than measured."""
        with self.engine.connect() as conn:
            return sum(1 for *_, quality in self._decoded(conn, start, end) if quality & 0x0C)

    def duplicate_keys(self) -> int:
        """Keys (hub, meter, OBIS, duration, start) stored more than once. A block holds a key
        once by construction, so only channels that share (meter, OBIS, duration) — another
        unit or power of ten — can repeat one; this checks ingest kept them apart."""
        c = interval_channels
        shared = (
            select(c.c.hub_key, c.c.meter_id, c.c.obis, c.c.duration)
            .group_by(c.c.hub_key, c.c.meter_id, c.c.obis, c.c.duration)
            .having(func.count() > 1)
        )
        seen: dict[tuple[str, str, str, int, int], int] = {}
        with self.engine.connect() as conn:
            for hk, meter, obis, duration in conn.execute(shared).all():
                cond = and_(
                    interval_blocks.c.hub_key == hk,
                    c.c.meter_id == meter,
                    c.c.obis == obis,
                    c.c.duration == duration,
                )
                for hub_id, m, o, d, _, _, t, _, _ in self._decoded(conn, None, None, cond):
                    seen[(hub_id, m, o, d, t)] = seen.get((hub_id, m, o, d, t), 0) + 1
        return sum(1 for n in seen.values() if n > 1)

    def channel_starts(
        self, start: int, end: int, *, duration: int | None = None
    ) -> dict[tuple[str, str, str], set[int]]:
        """Interval starts stored per (hub, meter, OBIS) within [start, end): for gap checks.
        All durations together unless ``duration`` picks one."""
        out: dict[tuple[str, str, str], set[int]] = {}
        where = () if duration is None else (interval_channels.c.duration == duration,)
        with self.engine.connect() as conn:
            for h, m, o, _, _, _, t, _, _ in self._decoded(conn, start, end, *where):
                out.setdefault((h, m, o), set()).add(t)
        return out

    def table_bytes(self, tables: Sequence[str] = ("interval_blocks",)) -> int:
        """On-disk size of ``tables`` with their indexes (and, on PostgreSQL, partitions).

        SQLite: from the ``dbstat`` virtual table when the library has it, else the whole file
        (an upper bound)."""
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                return int(
                    conn.execute(
                        text(
                            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
                            " WHERE c.relnamespace = current_schema()::regnamespace"
                            " AND c.relkind IN ('r', 'p') AND (c.relname = ANY(:t) OR c.oid IN ("
                            "  SELECT i.inhrelid FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent"
                            "  WHERE p.relname = ANY(:t)))"
                        ),
                        {"t": list(tables)},
                    ).scalar_one()
                )
            try:
                return int(
                    conn.exec_driver_sql(
                        "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN (SELECT name"
                        f" FROM sqlite_master WHERE tbl_name IN ({','.join('?' * len(tables))}))",
                        tuple(tables),
                    ).scalar_one()
                )
            except Exception:  # SQLite built without dbstat
                page_count = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
                return int(page_count * conn.exec_driver_sql("PRAGMA page_size").scalar_one())

    def readings(
        self, hub_id: str | None = None, start: int | None = None, end: int | None = None
    ) -> list[StoredReading]:
        """Every stored reading (of one hub, within [start, end) if given), in key order."""
        where = () if hub_id is None else (hub_keys.c.hub_id == hub_id,)
        with self.engine.connect() as conn:
            rows = [
                StoredReading(h, m, o, t, d, v, p, u, q)
                for h, m, o, d, u, p, t, v, q in self._decoded(conn, start, end, *where)
            ]
        return sorted(rows, key=lambda r: (r.hub_id, r.meter_id, r.obis, r.duration, r.interval_start))

    def readings_for(self, hub_id: str, meter_id: str, obis: str) -> list[StoredReading]:
        """Every stored reading of one meter's OBIS channel, by interval start (then duration)."""
        c, k = interval_channels, hub_keys
        with self.engine.connect() as conn:
            rows = [
                StoredReading(h, m, o, t, d, v, p, u, q)
                for h, m, o, d, u, p, t, v, q in self._decoded(
                    conn, None, None, k.c.hub_id == hub_id, c.c.meter_id == meter_id, c.c.obis == obis
                )
            ]
        return sorted(rows, key=lambda r: (r.interval_start, r.duration))

    def _insert(self, table: Table):
        return (sqlite.insert if self.dialect == "sqlite" else postgresql.insert)(table)


def lock_hub_status(conn: Connection, *, exclusive: bool) -> None:
    """Order hub status changes against ingests (see ``Store._inactive_hubs``).

    PostgreSQL: a transaction-scoped advisory lock, shared for ingests (they run in parallel),
    exclusive for a status change. SQLite: the transaction takes the database write lock at
    once (``BEGIN IMMEDIATE``), which serialises every writer; call it first in the transaction.
    """
    if conn.dialect.name == "postgresql":
        fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        conn.execute(text(f"SELECT {fn}(:k)"), {"k": _lock_id("hub_status")})
    else:
        dbapi = conn.connection.dbapi_connection
        if dbapi is not None and not dbapi.in_transaction:  # pysqlite begins lazily, at the first write
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def decoded_readings(
    conn: Connection, start: int | None, end: int | None, *where: object
) -> Iterator[tuple[str, str, str, int, int, int, int, int, int]]:
    """(hub, meter, obis, duration, uom, power_of_ten, interval_start, value, quality) of
    every stored reading with start in [start, end), decoded from its block."""
    b, c, k = interval_blocks, interval_channels, hub_keys
    q = select(
        k.c.hub_id, c.c.meter_id, c.c.obis, c.c.duration, c.c.uom, c.c.power_of_ten, b.c.day, b.c.block
    ).select_from(
        b.join(c, and_(b.c.hub_key == c.c.hub_key, b.c.channel_no == c.c.channel_no)).join(
            k, b.c.hub_key == k.c.hub_key
        )
    )
    if start is not None:
        q = q.where(b.c.day >= start // DAY)
    if end is not None:
        q = q.where(b.c.day <= (end - 1) // DAY)
    for cond in where:
        q = q.where(cond)  # type: ignore[arg-type]
    lo = start if start is not None else -(2**63)
    hi = end if end is not None else 2**63
    for hub_id, meter, obis, duration, uom, p10, day, block in conn.execute(q):
        base = day * DAY
        for slot, (value, quality) in interval_block.decode(block, DAY // duration).items():
            t = base + slot * duration
            if lo <= t < hi:
                yield hub_id, meter, obis, duration, uom, p10, t, value, quality


def channel_readings(
    conn: Connection, hub_id: str, meter_id: str, obis: str, start: int | None = None, end: int | None = None
) -> list[StoredReading]:
    """One meter channel's stored readings with start in [start, end), by start then duration
    (for services that query on a connection of their own, e.g. the data services API)."""
    rows = [
        StoredReading(h, m, o, t, d, v, p, u, q)
        for h, m, o, d, u, p, t, v, q in decoded_readings(
            conn,
            start,
            end,
            hub_keys.c.hub_id == hub_id,
            interval_channels.c.meter_id == meter_id,
            interval_channels.c.obis == obis,
        )
    ]
    return sorted(rows, key=lambda r: (r.interval_start, r.duration))


# (meter, obis, duration, uom, power_of_ten, day): one pull's readings of one channel-day.
GroupKey = tuple[str, str, int, int, int, int]
_GRID_DURATIONS = frozenset(d for d in range(1, DAY + 1) if DAY % d == 0)
_FIELDS = attrgetter(
    "hub_id", "duration", "interval_start", "meter_id", "obis", "uom", "power_of_ten", "value", "quality"
)
_ROW_FIELDS = itemgetter(0, 4, 3, 1, 2, 7, 6, 5, 8)  # the same fields of a ReadingRow


def _group_pull(hub_id: str, readings: Readings) -> tuple[dict[GroupKey, dict[int, tuple[int, int]]], int]:
    """Check one pull and group it by channel-day: ({group: {slot: (value, quality)}}, unique
    readings). A key repeated in the same channel of one pull counts once (the first)."""
    groups: dict[GroupKey, dict[int, tuple[int, int]]] = {}
    unique = 0
    grid = _GRID_DURATIONS
    # The hot loop of ingest: one C-level attribute fetch per reading, then local operations.
    rows = isinstance(readings[0], tuple) if readings else False
    try:
        getter: Callable[[Any], tuple[Any, ...]] = _ROW_FIELDS if rows else _FIELDS
        fields = list(map(getter, readings))
    except (TypeError, AttributeError, IndexError):
        raise ValueError(
            f"the readings of hub {hub_id!r} must be all StoredReading or all 9-field tuples"
            " in its field order"
        ) from None
    for hub, duration, start, meter, obis, uom, p10, value, quality in fields:
        day = start // DAY
        rem = start - day * DAY
        if hub != hub_id or duration not in grid or rem % duration:
            _refuse(hub_id, hub, meter, obis, start, duration)
        key = (meter, obis, duration, uom, p10, day)
        slots = groups.get(key)
        if slots is None:
            slots = groups[key] = {}
        slot = rem // duration
        if slot not in slots:
            slots[slot] = (value, quality)
            unique += 1
    return groups, unique


def _refuse(hub_id: str, hub: str, meter: str, obis: str, start: int, duration: int) -> None:
    if hub != hub_id:
        raise ValueError(f"every reading in one ingest must belong to the pulled hub {hub_id!r}, not {hub!r}")
    raise ValueError(
        f"reading {meter} {obis} at {start}: a {duration} s interval must divide the day "
        "and start on its own grid"
    )


class _Claim:
    """The readings one ingest brings for one (hub, meter, OBIS, duration, day).

    Usually a single channel from a single pull (kept as given, owned by one item); when a
    second pull or another channel (unit, power of ten) adds to it, it switches to one entry
    per slot: slot -> (channel_no, value, quality, item index)."""

    __slots__ = ("mixed", "no", "owner", "slots")

    def __init__(self, no: int, slots: dict[int, tuple[int, int]], owner: int) -> None:
        self.no = no
        self.slots = slots
        self.owner = owner
        self.mixed: dict[int, tuple[int, int, int, int]] | None = None

    def mix(self) -> dict[int, tuple[int, int, int, int]]:
        if self.mixed is None:
            no, owner = self.no, self.owner
            self.mixed = {s: (no, v, q, owner) for s, (v, q) in self.slots.items()}
        return self.mixed

    def add(self, no: int, slots: dict[int, tuple[int, int]], idx: int, tallies: list[_Tally]) -> None:
        mixed = self.mix()
        for s, (v, q) in slots.items():
            held = mixed.get(s)
            if held is None:
                mixed[s] = (no, v, q, idx)
            elif held[0] != no or held[1] != v:
                tallies[idx].conflicts += 1

    def blocks(self) -> Iterator[tuple[int, dict[int, tuple[int, int]], int | dict[int, int]]]:
        """(channel_no, {slot: (value, quality)}, owner) per block the claim writes into."""
        if self.mixed is None:
            yield self.no, self.slots, self.owner
            return
        by_no: dict[int, tuple[dict[int, tuple[int, int]], dict[int, int]]] = {}
        for s, (no, v, q, idx) in self.mixed.items():
            slots, owner = by_no.setdefault(no, ({}, {}))
            slots[s] = (v, q)
            owner[s] = idx
        for no, (slots, owner) in by_no.items():
            yield no, slots, owner


def _count_inserted(
    slots: dict[int, tuple[int, int]], owner: int | dict[int, int], tallies: list[_Tally]
) -> None:
    if isinstance(owner, int):
        tallies[owner].inserted += len(slots)
    else:
        for s in slots:
            tallies[owner[s]].inserted += 1


def alembic_config(connection: Connection):
    """An Alembic configuration running the packaged migrations on ``connection``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "smarthub.gdsc:migrations")
    cfg.attributes["connection"] = connection
    return cfg


def _copy_blocks(cur, rows: Iterable[tuple[BlockKey, int, bytes]]) -> None:
    with cur.copy(
        "COPY interval_blocks_staging (hub_key, day, n, channel_no, block) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int4", "int4", "int4", "int2", "bytea"])
        for (hk, day, no), n, block in rows:
            copy.write_row((hk, day, n, no, block))


def _chunks(seq: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def _lock_id(name: str) -> int:
    """A stable advisory-lock id per purpose (crc32 fits PostgreSQL's bigint key)."""
    return zlib.crc32(f"smarthub.gdsc.store:{name}".encode())


def _aware(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    # WAL + synchronous=FULL: a committed ingest survives a crash of the GDSC process or host.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    # Deleted and replaced content is overwritten with zeros, not left in free space: a queued
    # meter.key command's envelope is cleared once delivered (gdsc.plan.SECRET_COMMANDS).
    cur.execute("PRAGMA secure_delete=ON")
    cur.close()


__all__ = [
    "PARTITION_NAME",
    "HubRecord",
    "IngestResult",
    "Store",
    "StoredReading",
    "alembic_config",
    "hub_keys",
    "interval_blocks",
    "interval_channels",
    "lock_hub_status",
    "metadata",
    "partition_name",
]
