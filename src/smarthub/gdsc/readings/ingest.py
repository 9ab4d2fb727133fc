"""Ingest: readings from the hubs' pulls into the interval tables, with the pull cursors.

One code path for SQLite (the embedded default) and PostgreSQL (production), through
SQLAlchemy Core; the schema is brought to its current version by the Alembic migrations in
``smarthub.gdsc.db.migrations``. Ingest is idempotent: a reading is keyed by (hub, meter, OBIS,
duration, interval start), so pulling the same data twice stores it once; a re-sent reading
whose value differs from the stored one is kept out and counted as a conflict, never merged.
The pull cursors of a hub are written in the same transaction as the readings they cover, so
a GDSC killed at any instant resumes exactly where its store says it is.

Interval layout (issue 5: ≤ 4 bytes per half-hourly reading on PostgreSQL, indexes included):

* ``interval_channels`` numbers each hub's channels — (meter, OBIS, duration, unit, power of
  ten) — with a 2-byte ``channel_no``. The row key of a block is then the hub id, the day and
  the channel number instead of the hub id and two strings of ~30 bytes each, which on its own
  would cost ~1.5 bytes per reading in the heap and again in the primary-key index.
  ``duration`` is part of the channel, so half-hourly and daily data of the same start coexist.
  (Until migration 0019 a 4-byte integer ``hub_key`` stood in for the hub id; it put the
  interval tables in a Citus colocation group of their own, issue 23 item 1. The hub id costs
  ~0.6 bytes per reading more: 3.17 -> 3.79 in ``bench/store.py --hubs 4000 --workers 2``.)
* ``interval_blocks`` holds one row per channel and UTC day: ``n`` readings encoded by
  :mod:`smarthub.gdsc.readings.interval_block` (presence bitmap, zig-zag delta varints, sparse quality
  flags: ~1–2 bytes per reading). A native ``bigint[]`` was weighed and rejected: 8 bytes per
  value plus a 24-byte header already exceed the goal. ``bench/store.py`` measures the bytes
  per half-hourly reading with row header, item pointer and primary-key index, plus the
  channel rows once per channel (~0.02 bytes/reading over a year).
* On PostgreSQL ``interval_blocks`` is range-partitioned by ``day`` (one partition per day,
  created on demand in its own short transaction under an advisory lock, so concurrent
  ingests never race on the DDL; a partition left empty by a rolled-back ingest is harmless),
  and blocks are bulk-loaded with ``COPY`` into a temporary staging table, then merged with
  ``INSERT … ON CONFLICT DO NOTHING``; blocks that already existed are read under their hubs'
  advisory locks, merged in Python and written back, so two GDSC processes never lose each
  other's readings (no ``FOR UPDATE``: Citus refuses it over several shards).
  SQLite uses a plain table and plain inserts (its writers are serialised anyway).
* The interval tables have the hub id first in their primary keys and no foreign keys, so
  Citus distributes them by ``hub_id`` with every other table of a hub's data
  (:mod:`smarthub.gdsc.db.placement`: one colocation group).

Blocks are per UTC day; a reading whose start is not on its duration's grid, or whose duration
does not divide a day, is refused with a ``ValueError`` (IEEE 2030.5 interval readings are
aligned on their interval).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from sqlalchemy import Connection, String, and_, bindparam, func, select, text, tuple_
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import ARRAY

from smarthub.gdsc.db.database import lock_id
from smarthub.gdsc.fleet.registry import hubs, lock_hub_status
from smarthub.gdsc.readings import interval_block
from smarthub.gdsc.readings.grouping import Claim, Tally, count_inserted, group_pull
from smarthub.gdsc.readings.tables import (
    DAY,
    HUB_LOCKS,
    BlockKey,
    ChannelSpec,
    GroupKey,
    IngestResult,
    Readings,
    interval_blocks,
    interval_channels,
    partition_name,
    pull_cursors,
)
from smarthub.gdsc.readings.vee.rules import ESTIMATED, MANUALLY_EDITED
from smarthub.gdsc.readings.vee.store import VeeData, VeePull, split_pull


class IntervalIngest(VeeData):
    """Idempotent ingest into the interval blocks (the ingest part of the store), through the
    VEE gate when :meth:`enable_vee` was called (:mod:`smarthub.gdsc.readings.vee`)."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        super().__init__(url, echo=echo)
        self._partitions: set[int] = set()

    def drop_schema(self) -> None:
        super().drop_schema()
        self._partitions.clear()

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
        vee = self.vee
        if vee is None:
            # Register reads (duration 0) serve the gate alone: without it they are left out.
            pulls = [group_pull(hub_id, readings, None, []) for hub_id, readings, _ in items]
            checks: list[VeePull] = []
        else:
            checks = [split_pull(hub_id, readings) for hub_id, readings, _ in items]
            pulls = [c.grouped for c in checks]
        if self.dialect == "postgresql":
            self.ensure_day_partitions({key[5] for groups, _ in pulls for key in groups})
        with self._write_lock, self.engine.begin() as conn:
            refused = self._inactive_hubs(conn, {hub_id for hub_id, _, _ in items})
            kept = [i for i, (hub_id, _, _) in enumerate(items) if hub_id not in refused]
            if vee is not None:
                self._vee_gate(conn, vee, [items[i][0] for i in kept], [checks[i] for i in kept])
            done = self._ingest(conn, [items[i] for i in kept], [pulls[i] for i in kept])
            if vee is not None:
                self._vee_record(conn, vee, [items[i][0] for i in kept], [checks[i] for i in kept], done)
        tallies = dict(zip(kept, done, strict=True))
        out = []
        for i, ((hub_id, readings, _), (_, unique)) in enumerate(zip(items, pulls, strict=True)):
            t = tallies.get(i)
            if t is None:
                out.append(
                    IngestResult(
                        len(readings), 0, 0, 0, f"hub {hub_id} is {refused[hub_id]}: its data is refused"
                    )
                )
            elif not checks:
                out.append(IngestResult(len(readings), t.inserted, unique - t.inserted, t.conflicts))
            else:
                c = checks[i]
                held = c.held  # quarantined by the gate, before the store was touched
                out.append(
                    IngestResult(
                        len(readings),
                        t.inserted,
                        unique - held - t.inserted,
                        t.conflicts,
                        quarantined=c.quarantined + t.conflicts,
                        flagged=c.flagged,
                        replaced_estimates=t.replaced,
                        registers=c.registers_stored,
                    )
                )
        return out

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
    ) -> list[Tally]:
        tallies = [Tally() for _ in items]
        wanted: dict[str, set[ChannelSpec]] = {}
        for (hub_id, _, _), (groups, _) in zip(items, pulls, strict=True):
            specs = wanted.setdefault(hub_id, set())
            for g in groups:
                specs.add(g[:5])
        channels = self._resolve_channels(conn, wanted)
        # One claim per (hub, meter, OBIS, duration, day): readings of one key that arrive in
        # two channels (another unit or power of ten) meet there and the later is a conflict.
        claims: dict[tuple[str, str, str, int, int], Claim] = {}
        for idx, ((hub, _, _), (groups, _)) in enumerate(zip(items, pulls, strict=True)):
            chans = channels[hub]
            for g, slots in groups.items():
                no = chans[g[:5]]
                ck = (hub, g[0], g[1], g[2], g[5])
                claim = claims.get(ck)
                if claim is None:
                    claims[ck] = Claim(no, slots, idx)
                else:
                    claim.add(no, slots, idx, tallies)
        self._drop_sibling_conflicts(conn, claims, channels, tallies)
        pending: dict[BlockKey, tuple[dict[int, tuple[int, int]], int | dict[int, int]]] = {}
        durations: dict[BlockKey, int] = {}
        for (hub, _, _, duration, day), claim in claims.items():
            for no, slots, owner in claim.blocks():
                pending[(hub, day, no)] = (slots, owner)
                durations[(hub, day, no)] = duration
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

    def _load_channels(self, conn: Connection, hub_ids: Iterable[str]) -> dict[str, dict[ChannelSpec, int]]:
        t = interval_channels
        cols = (t.c.hub_id, t.c.channel_no, t.c.meter_id, t.c.obis, t.c.duration, t.c.uom, t.c.power_of_ten)
        wanted = sorted(hub_ids)
        if self.dialect == "postgresql":
            rows = conn.execute(
                select(*cols).where(t.c.hub_id == func.any(bindparam("k", wanted, type_=ARRAY(String))))
            ).all()
        else:
            rows = [
                row
                for chunk in _chunks(wanted, 500)
                for row in conn.execute(select(*cols).where(t.c.hub_id.in_(chunk)))
            ]
        out: dict[str, dict[ChannelSpec, int]] = {}
        for hub, no, meter, obis, duration, uom, p10 in rows:
            out.setdefault(hub, {})[(meter, obis, duration, uom, p10)] = no
        return out

    def _resolve_channels(
        self, conn: Connection, wanted: dict[str, set[ChannelSpec]]
    ) -> dict[str, dict[ChannelSpec, int]]:
        """Number every wanted channel, creating the missing ones (safe against a concurrent GDSC)."""
        known = self._load_channels(conn, wanted)
        for _ in range(10):
            rows: list[tuple[str, int, str, str, int, int, int]] = []
            for hub, specs in wanted.items():
                have = known.setdefault(hub, {})
                nxt = max(have.values(), default=0) + 1
                for spec in sorted(specs - have.keys()):
                    rows.append((hub, nxt, *spec))
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
                        "(hub_id, channel_no, meter_id, obis, duration, uom, power_of_ten) "
                        "SELECT * FROM unnest(CAST(:a AS varchar[]), CAST(:b AS int2[]), "
                        "CAST(:c AS varchar[]), CAST(:d AS varchar[]), CAST(:e AS int4[]), "
                        "CAST(:f AS int2[]), CAST(:g AS int2[])) "
                        "ON CONFLICT DO NOTHING"
                    ),
                    dict(zip("abcdefg", (list(col) for col in zip(*rows, strict=True)), strict=True)),
                )
            else:
                names = ("hub_id", "channel_no", "meter_id", "obis", "duration", "uom", "power_of_ten")
                conn.execute(
                    sqlite.insert(interval_channels).on_conflict_do_nothing(),
                    [dict(zip(names, r, strict=True)) for r in rows],
                )
            known.update(self._load_channels(conn, {r[0] for r in rows}))
        raise RuntimeError("could not number new interval channels after 10 attempts")

    def _drop_sibling_conflicts(
        self,
        conn: Connection,
        claims: dict[tuple[str, str, str, int, int], Claim],
        channels: dict[str, dict[ChannelSpec, int]],
        tallies: list[Tally],
    ) -> None:
        """A key stored in another channel of the same (meter, obis, duration) — another unit
        or power of ten — is a conflict: the stored reading stays, the new one is kept out."""
        siblings: dict[tuple[str, str, str, int], list[int]] = {}
        for hub, chans in channels.items():
            for (meter, obis, duration, _, _), no in chans.items():
                siblings.setdefault((hub, meter, obis, duration), []).append(no)
        b = interval_blocks
        for (hub, meter, obis, duration, day), claim in claims.items():
            nos = siblings[(hub, meter, obis, duration)]
            if len(nos) < 2:
                continue
            stored = conn.execute(
                select(b.c.channel_no, b.c.block).where(
                    and_(b.c.hub_id == hub, b.c.day == day, b.c.channel_no.in_(nos))
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
        tallies: list[Tally],
    ) -> tuple[int, bytes] | None:
        """Merge new slots into a stored block; the (n, block) to write back, None if unchanged."""
        n_slots = DAY // duration
        try:
            held = interval_block.decode(stored, n_slots)
        except interval_block.BlockError as err:
            raise interval_block.BlockError(f"stored block {key} (hub_id, day, channel_no): {err}") from err
        added = False
        for slot, (value, quality) in slots.items():
            tally = tallies[owner if isinstance(owner, int) else owner[slot]]
            old = held.get(slot)
            if old is None:
                held[slot] = (value, quality)
                tally.inserted += 1
                added = True
            elif old[1] & ESTIMATED and not quality & ESTIMATED and not old[1] & MANUALLY_EDITED:
                held[slot] = (value, quality)  # the actual reading replaces an estimate
                tally.replaced += 1
                tally.clashes.append((key, slot, old, (value, quality)))
                added = True
            elif old[0] != value:
                tally.conflicts += 1
                tally.clashes.append((key, slot, old, (value, quality)))
        return (len(held), interval_block.encode(n_slots, held)) if added else None

    def _write_blocks_sqlite(
        self,
        conn: Connection,
        pending: dict[BlockKey, tuple[dict[int, tuple[int, int]], int | dict[int, int]]],
        durations: dict[BlockKey, int],
        tallies: list[Tally],
    ) -> None:
        b = interval_blocks
        stored: dict[BlockKey, bytes] = {}
        for chunk in _chunks(sorted(pending), 300):
            q = select(b.c.hub_id, b.c.day, b.c.channel_no, b.c.block).where(
                tuple_(b.c.hub_id, b.c.day, b.c.channel_no).in_(chunk)
            )
            for hub, day, no, block in conn.execute(q):
                stored[(hub, day, no)] = block
        fresh, changed = [], []
        for key, (slots, owner) in pending.items():
            if key in stored:
                merged = self._merge(key, stored[key], slots, owner, durations[key], tallies)
                if merged is not None:
                    changed.append(
                        {"k_hub": key[0], "k_day": key[1], "k_no": key[2], "n": merged[0], "block": merged[1]}
                    )
            else:
                count_inserted(slots, owner, tallies)
                fresh.append(
                    {
                        "hub_id": key[0],
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
                        b.c.hub_id == bindparam("k_hub"),
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
        tallies: list[Tally],
    ) -> None:
        """COPY the new blocks into a staging table, insert those whose key is new, then lock,
        merge and write back those that already existed."""
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS interval_blocks_staging "
                "(hub_id text, day int4, n int4, channel_no int2, block bytea) ON COMMIT DELETE ROWS"
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
                "WITH ins AS (INSERT INTO interval_blocks (hub_id, day, n, channel_no, block) "
                "SELECT hub_id, day, n, channel_no, block FROM interval_blocks_staging "
                "ON CONFLICT DO NOTHING RETURNING hub_id, day, channel_no) "
                "DELETE FROM interval_blocks_staging s USING ins "
                "WHERE s.hub_id = ins.hub_id AND s.day = ins.day AND s.channel_no = ins.channel_no"
            )
            stored: dict[BlockKey, bytes] = {}
            if cur.rowcount < len(pending):
                stored = self._lock_and_read_existing(cur)
            cur.execute("TRUNCATE interval_blocks_staging")
            changed = []
            for key, (slots, owner) in pending.items():
                if key not in stored:
                    count_inserted(slots, owner, tallies)
                    continue
                merged = self._merge(key, stored[key], slots, owner, durations[key], tallies)
                if merged is not None:
                    changed.append((key, merged[0], merged[1]))
            if changed:
                # Written back under their hubs' locks; the staging table in a subquery, which
                # Citus plans first (a join with a local table it would refuse).
                _copy_blocks(cur, changed)
                cur.execute(
                    "UPDATE interval_blocks b SET n = s.n, block = s.block "
                    "FROM (SELECT hub_id, day, n, channel_no, block FROM interval_blocks_staging) s "
                    "WHERE b.hub_id = s.hub_id AND b.day = s.day AND b.channel_no = s.channel_no"
                )
                cur.execute("TRUNCATE interval_blocks_staging")

    @staticmethod
    def _lock_and_read_existing(cur) -> dict[BlockKey, bytes]:
        """The stored blocks of the keys left in staging (they already existed), read under
        their hubs' locks, held to the end of the transaction.

        The locks are transaction-scoped advisory locks per hub (:data:`.tables.LOCK_HUBS`),
        taken in lock order (two ingests lock their common hubs in the same order: no
        deadlock). They replace a ``SELECT … FOR UPDATE`` of the blocks, which Citus refuses
        over several shards; they serialise every writer because every GDSC process connects
        to the same server (the coordinator, on Citus). The staging table (a temporary, local
        table) is read in a subquery, which Citus plans first and sends to the workers.
        """
        cur.execute(
            "SELECT pg_advisory_xact_lock(%s, k) "
            "FROM (SELECT DISTINCT hashtext(hub_id) FROM interval_blocks_staging ORDER BY 1) AS s(k)",
            (HUB_LOCKS,),
        )
        cur.execute(
            "SELECT b.hub_id, b.day, b.channel_no, b.block FROM interval_blocks b "
            "JOIN (SELECT hub_id, day, channel_no FROM interval_blocks_staging) s "
            "ON b.hub_id = s.hub_id AND b.day = s.day AND b.channel_no = s.channel_no"
        )
        return {(hub, day, no): bytes(block) for hub, day, no, block in cur.fetchall()}

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
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_id("partitions")})
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


def _copy_blocks(cur, rows: Iterable[tuple[BlockKey, int, bytes]]) -> None:
    with cur.copy(
        "COPY interval_blocks_staging (hub_id, day, n, channel_no, block) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["text", "int4", "int4", "int2", "bytea"])
        for (hub, day, no), n, block in rows:
            copy.write_row((hub, day, n, no, block))


def _chunks(seq: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]
