"""The GDSC store: the single source of truth for premises, hubs, meters and readings.

One code path for SQLite (the embedded default) and PostgreSQL (production), through
SQLAlchemy Core. Ingest is idempotent: a reading is keyed by (hub, meter, OBIS, interval
start), so pulling the same data twice stores it once; a re-sent reading whose value
differs from the stored one is kept out and counted as a conflict, never silently merged.
The pull cursor of each hub's channel is written in the same transaction as the readings
it covers, so a GDSC killed at any instant resumes exactly where its store says it is.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    and_,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

metadata = MetaData()

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

# Interval readings, one row each. Values are integers in the unit given by `uom`
# (IEEE 2030.5 UomType) times 10**power_of_ten, exactly as the hub served them.
interval_readings = Table(
    "interval_readings",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("meter_id", String(64), primary_key=True),
    Column("obis", String(32), primary_key=True),
    Column("interval_start", BigInteger, primary_key=True),  # epoch seconds, UTC
    Column("duration", Integer, nullable=False),
    Column("value", BigInteger, nullable=False),
    Column("power_of_ten", SmallInteger, nullable=False),
    Column("uom", SmallInteger, nullable=False),
    Column("quality", SmallInteger, nullable=False),
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

pull_log = Table(
    "pull_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("hub_id", String(64), nullable=False, index=True),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("started", DateTime(timezone=True), nullable=False),
    Column("finished", DateTime(timezone=True), nullable=False),
    Column("ok", Integer, nullable=False),
    Column("readings", Integer, nullable=False),
    Column("inserted", Integer, nullable=False),
    Column("error", Text),
)


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

    def key(self) -> tuple[str, str, str, int]:
        return (self.hub_id, self.meter_id, self.obis, self.interval_start)


@dataclass(frozen=True, slots=True)
class IngestResult:
    received: int
    inserted: int
    already_stored: int
    conflicts: int


@dataclass(frozen=True, slots=True)
class HubRecord:
    hub_id: str
    premises_id: str
    url: str
    lfdi: str
    status: str
    wan_link: str | None = None


class Store:
    """Thread-safe facade over the GDSC database (writes serialised per process)."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, echo=echo, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._write_lock = threading.Lock()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def create_schema(self) -> None:
        metadata.create_all(self.engine)

    def drop_schema(self) -> None:
        metadata.drop_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

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

    # -- readings -----------------------------------------------------------------
    def cursors(self, hub_id: str) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(pull_cursors.c.channel, pull_cursors.c.after).where(pull_cursors.c.hub_id == hub_id)
            )
            return {r.channel: r.after for r in rows}

    def ingest(self, hub_id: str, readings: Sequence[StoredReading], cursors: dict[str, int]) -> IngestResult:
        """Store readings and advance the hub's pull cursors, all in one transaction."""
        if any(r.hub_id != hub_id for r in readings):
            raise ValueError("every reading in one ingest must belong to the pulled hub")
        unique: dict[tuple[str, str, str, int], StoredReading] = {}
        for r in readings:
            unique.setdefault(r.key(), r)
        with self._write_lock, self.engine.begin() as conn:
            existing = self._existing(conn, hub_id, list(unique.values()))
            fresh = [r for k, r in unique.items() if k not in existing]
            conflicts = sum(
                1 for k, r in unique.items() if k in existing and existing[k] != (r.value, r.power_of_ten)
            )
            if fresh:
                conn.execute(
                    self._insert(interval_readings).on_conflict_do_nothing(),
                    [_row(r) for r in fresh],
                )
            for channel, after in cursors.items():
                ins = self._insert(pull_cursors).values(hub_id=hub_id, channel=channel, after=after)
                conn.execute(
                    ins.on_conflict_do_update(
                        index_elements=["hub_id", "channel"],
                        set_={"after": func.max(pull_cursors.c.after, after)}
                        if self.dialect == "sqlite"
                        else {"after": func.greatest(pull_cursors.c.after, after)},
                    )
                )
        return IngestResult(len(readings), len(fresh), len(unique) - len(fresh), conflicts)

    def _existing(self, conn, hub_id: str, rows: list[StoredReading]) -> dict[tuple, tuple[int, int]]:  # type: ignore[no-untyped-def]
        found: dict[tuple, tuple[int, int]] = {}
        if not rows:
            return found
        t = interval_readings
        # Narrow by time range per (meter, obis) so the query uses the primary key.
        by_channel: dict[tuple[str, str], list[int]] = {}
        for r in rows:
            by_channel.setdefault((r.meter_id, r.obis), []).append(r.interval_start)
        for (meter_id, obis), starts in by_channel.items():
            q = select(t.c.interval_start, t.c.value, t.c.power_of_ten).where(
                and_(
                    t.c.hub_id == hub_id,
                    t.c.meter_id == meter_id,
                    t.c.obis == obis,
                    t.c.interval_start >= min(starts),
                    t.c.interval_start <= max(starts),
                )
            )
            for s, v, p in conn.execute(q):
                found[(hub_id, meter_id, obis, s)] = (v, p)
        return found

    def next_command_counter(self, hub_id: str) -> int:
        """Atomically take the next command counter for a hub (survives restarts; never reused)."""
        with self._write_lock, self.engine.begin() as conn:
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
        with self._write_lock, self.engine.begin() as conn:
            conn.execute(
                pull_log.insert().values(
                    hub_id=hub_id,
                    window_start=window_start,
                    started=started,
                    finished=finished,
                    ok=int(ok),
                    readings=readings,
                    inserted=inserted,
                    error=error,
                )
            )

    def fleet_status(self) -> list[dict[str, object]]:
        """One row per hub for the operator page: last pull, readings stored, errors."""
        with self.engine.connect() as conn:
            counts = dict(
                conn.execute(
                    select(interval_readings.c.hub_id, func.count()).group_by(interval_readings.c.hub_id)
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
                        "readings": int(counts.get(h.hub_id, 0)),
                    }
                )
            return out

    def count_readings(self, start: int | None = None, end: int | None = None) -> int:
        t = interval_readings
        q = select(func.count()).select_from(t)
        if start is not None:
            q = q.where(t.c.interval_start >= start)
        if end is not None:
            q = q.where(t.c.interval_start < end)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def count_estimated(self, start: int, end: int) -> int:
        """Readings in [start, end) that the hub flagged as estimated rather than measured."""
        t = interval_readings
        q = (
            select(func.count())
            .select_from(t)
            .where(
                and_(t.c.interval_start >= start, t.c.interval_start < end, t.c.quality.op("&")(0x0C) != 0)
            )
        )
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def duplicate_keys(self) -> int:
        """Keys stored more than once (the primary key forbids it; this checks the database agrees)."""
        t = interval_readings
        sub = (
            select(t.c.hub_id, t.c.meter_id, t.c.obis, t.c.interval_start)
            .group_by(t.c.hub_id, t.c.meter_id, t.c.obis, t.c.interval_start)
            .having(func.count() > 1)
            .subquery()
        )
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(sub)).scalar_one())

    def channel_starts(self, start: int, end: int) -> dict[tuple[str, str, str], set[int]]:
        """Interval starts stored per (hub, meter, OBIS) within [start, end): for gap checks."""
        t = interval_readings
        out: dict[tuple[str, str, str], set[int]] = {}
        with self.engine.connect() as conn:
            for h, m, o, s in conn.execute(
                select(t.c.hub_id, t.c.meter_id, t.c.obis, t.c.interval_start).where(
                    and_(t.c.interval_start >= start, t.c.interval_start < end)
                )
            ):
                out.setdefault((h, m, o), set()).add(s)
        return out

    def readings_for(self, hub_id: str, meter_id: str, obis: str) -> list[StoredReading]:
        t = interval_readings
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t)
                .where(and_(t.c.hub_id == hub_id, t.c.meter_id == meter_id, t.c.obis == obis))
                .order_by(t.c.interval_start)
            )
            return [StoredReading(**r._mapping) for r in rows]

    def _insert(self, table: Table):  # type: ignore[no-untyped-def]
        return (sqlite.insert if self.dialect == "sqlite" else postgresql.insert)(table)


def _row(r: StoredReading) -> dict[str, object]:
    return {
        "hub_id": r.hub_id,
        "meter_id": r.meter_id,
        "obis": r.obis,
        "interval_start": r.interval_start,
        "duration": r.duration,
        "value": r.value,
        "power_of_ten": r.power_of_ten,
        "uom": r.uom,
        "quality": r.quality,
    }


def _aware(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    # WAL + synchronous=FULL: a committed ingest survives a crash of the GDSC process or host.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


__all__ = [
    "HubRecord",
    "IngestResult",
    "Store",
    "StoredReading",
    "interval_readings",
    "metadata",
]
