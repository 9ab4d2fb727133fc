"""Reading what the store holds: counts, gaps, duplicates, a channel's readings, table sizes.

``ReadingQueries`` is the store's part for them (tools, tests, the demo's and the chaos run's
accounts); the data services API reads by granularity through :mod:`smarthub.gdsc.readings.queries`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import Connection, and_, func, select, text

from smarthub.gdsc.db.citus import CITUS_SIZE
from smarthub.gdsc.db.database import Database
from smarthub.gdsc.readings import interval_block
from smarthub.gdsc.readings.tables import DAY, StoredReading, interval_blocks, interval_channels


class ReadingQueries(Database):
    """Counts and reads over the interval blocks (the query part of the store)."""

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
            select(c.c.hub_id, c.c.meter_id, c.c.obis, c.c.duration)
            .group_by(c.c.hub_id, c.c.meter_id, c.c.obis, c.c.duration)
            .having(func.count() > 1)
        )
        seen: dict[tuple[str, str, str, int, int], int] = {}
        with self.engine.connect() as conn:
            for hub, meter, obis, duration in conn.execute(shared).all():
                cond = and_(
                    interval_blocks.c.hub_id == hub,
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
        (an upper bound). On a Citus coordinator, a distributed table's size is its shards' on
        the workers (``citus_total_relation_size``: the coordinator holds empty shells)."""
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                size = "pg_total_relation_size(c.oid)"
                if conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'citus'")).first():
                    size = CITUS_SIZE
                return int(
                    conn.execute(
                        text(
                            f"SELECT coalesce(sum({size}), 0) FROM pg_class c"
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
        where = () if hub_id is None else (interval_blocks.c.hub_id == hub_id,)
        with self.engine.connect() as conn:
            rows = [
                StoredReading(h, m, o, t, d, v, p, u, q)
                for h, m, o, d, u, p, t, v, q in self._decoded(conn, start, end, *where)
            ]
        return sorted(rows, key=lambda r: (r.hub_id, r.meter_id, r.obis, r.duration, r.interval_start))

    def readings_for(self, hub_id: str, meter_id: str, obis: str) -> list[StoredReading]:
        """Every stored reading of one meter's OBIS channel, by interval start (then duration)."""
        c = interval_channels
        with self.engine.connect() as conn:
            rows = [
                StoredReading(h, m, o, t, d, v, p, u, q)
                for h, m, o, d, u, p, t, v, q in self._decoded(
                    conn, None, None, c.c.hub_id == hub_id, c.c.meter_id == meter_id, c.c.obis == obis
                )
            ]
        return sorted(rows, key=lambda r: (r.interval_start, r.duration))


def decoded_readings(
    conn: Connection, start: int | None, end: int | None, *where: object
) -> Iterator[tuple[str, str, str, int, int, int, int, int, int]]:
    """(hub, meter, obis, duration, uom, power_of_ten, interval_start, value, quality) of
    every stored reading with start in [start, end), decoded from its block."""
    b, c = interval_blocks, interval_channels
    q = select(
        b.c.hub_id, c.c.meter_id, c.c.obis, c.c.duration, c.c.uom, c.c.power_of_ten, b.c.day, b.c.block
    ).select_from(b.join(c, and_(b.c.hub_id == c.c.hub_id, b.c.channel_no == c.c.channel_no)))
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
            interval_blocks.c.hub_id == hub_id,
            interval_channels.c.meter_id == meter_id,
            interval_channels.c.obis == obis,
        )
    ]
    return sorted(rows, key=lambda r: (r.interval_start, r.duration))
