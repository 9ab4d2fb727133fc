"""The hub's local history of interval readings, in SQLite, encrypted at rest.

Append-only; WAL journal with ``synchronous=FULL`` so that an interval acknowledged as
stored (its transaction committed) survives a power cut at any instant. Re-appending an
interval already stored is a no-op, so replaying a meter's frames after a restart is safe.

Values are sealed with AES-128-GCM under the meter's own key (see :mod:`smarthub.hub.keys`);
the row's identity (meter, OBIS, start, duration) is authenticated as associated data, so a
sealed value moved to another row, or altered, fails to open with :class:`HistoryTampered`.
Times stay in clear so that the WAN's range queries use the index: they are the fixed
half-hour grid and reveal nothing about consumption.

**A full disk** (ENOSPC reaches SQLite as ``SQLITE_FULL``, "database or disk is full", as does a
size cap set with ``PRAGMA max_page_count``): the failed transaction is rolled back whole, so
the file is never left half-written, and what it held is kept in memory (bounded by
``max_pending``; beyond it the oldest is dropped and counted) and written, before anything
newer, by the next write that finds space again. :class:`StorageFull` says so, for the hub to
report. Nothing is stored twice: a pending interval is keyed like the table's primary key.
"""

from __future__ import annotations

import os
import sqlite3
import struct
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from smarthub.hub import sqlite_files
from smarthub.hub.intervals import IntervalRecord
from smarthub.hub.keys import load_or_create_master_key, new_meter_key, unwrap, wrap
from smarthub.meters.mapping import Unmapped
from smarthub.model import ObisCode

_SCHEMA = """
CREATE TABLE IF NOT EXISTS intervals (
    meter TEXT NOT NULL,
    obis TEXT NOT NULL,
    start INTEGER NOT NULL,
    duration INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    sealed BLOB NOT NULL,
    PRIMARY KEY (meter, obis, start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS daily (
    meter TEXT NOT NULL,
    obis TEXT NOT NULL,
    start INTEGER NOT NULL,
    duration INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    sealed BLOB NOT NULL,
    PRIMARY KEY (meter, obis, start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meter_keys (
    meter TEXT PRIMARY KEY,
    wrapped BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS raw_points (
    received INTEGER NOT NULL,
    meter TEXT NOT NULL,
    protocol TEXT NOT NULL,
    key TEXT NOT NULL,
    nonce BLOB NOT NULL,
    sealed BLOB NOT NULL,
    unit TEXT,
    time INTEGER,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meters (
    meter TEXT PRIMARY KEY,
    fuel TEXT NOT NULL
) WITHOUT ROWID;
"""

# Migrations: 1 is the schema when versions began (its IF NOT EXISTS adopts an unversioned file).
SCHEMA = sqlite_files.Schema("history", [_SCHEMA])


RAW_RETENTION = timedelta(days=396)  # 13 months of half-hours, then daily totals
LONDON = ZoneInfo("Europe/London")

_VALUES = struct.Struct(">qqbH")  # value, register_end, power_of_ten, quality


SQLITE_FULL = 13  # SQLite result code: "database or disk is full" (ENOSPC, or max_page_count)
MAX_PENDING = 50_000  # intervals held in memory while the disk is full (~200 days of one home)


class HistoryTampered(Exception):
    """A stored value that fails its authentication: altered, moved, or sealed with another key."""


class StorageFull(Exception):
    """The history could not be written because its database or disk is full. The readings of
    the failed write are held in memory (``pending`` of them now, ``dropped`` lost to the bound)
    and written by the next write that finds space."""

    def __init__(self, path: str, cause: BaseException, pending: int, dropped: int) -> None:
        self.path = path
        self.pending = pending
        self.dropped = dropped
        super().__init__(
            f"hub history {path} is full ({cause}): {pending} readings held in memory until space"
            f" returns{f', {dropped} oldest dropped beyond the bound' if dropped else ''}"
        )


def is_full(err: BaseException) -> bool:
    """Whether a SQLite error is SQLITE_FULL (disk or database size limit reached)."""
    if not isinstance(err, sqlite3.Error):
        return False
    code = getattr(err, "sqlite_errorcode", None)
    return code == SQLITE_FULL or (code is None and "database or disk is full" in str(err))


class HistoryStore:
    def __init__(
        self, path: Path | str, master_key: bytes | None = None, *, max_pending: int = MAX_PENDING
    ) -> None:
        """Open (or create) the history. Without ``master_key`` the key is read from, or
        created in, ``master.key`` beside the database (for hubs without a secure element)."""
        self.path = str(path)
        self.max_pending = max_pending
        # Held in memory while the disk is full, in arrival order (see the module docstring).
        self._pending: dict[tuple[str, str, int], IntervalRecord] = {}
        self._pending_meters: dict[str, str] = {}
        self._pending_raw: list[tuple] = []
        self.dropped = 0  # readings lost because the in-memory bound was reached
        self.full: StorageFull | None = None  # the last failure, until a write succeeds again
        self._master = master_key or load_or_create_master_key(Path(path).with_name("master.key"))
        self._file = sqlite_files.open_database(self.path, SCHEMA)
        self._db, self._lock = self._file.connection, self._file.lock
        self._ciphers: dict[str, AESGCM] = {}

    # -- keys --------------------------------------------------------------------------
    def _cipher(self, meter: str) -> AESGCM:
        """The meter's AEAD, creating and storing its wrapped key on first use (caller holds the lock)."""
        c = self._ciphers.get(meter)
        if c is None:
            row = self._db.execute("SELECT wrapped FROM meter_keys WHERE meter=?", (meter,)).fetchone()
            if row is None:
                key = new_meter_key()
                self._db.execute("INSERT INTO meter_keys VALUES (?, ?)", (meter, wrap(self._master, key)))
            else:
                key = unwrap(self._master, row[0])
            c = self._ciphers[meter] = AESGCM(key)
        return c

    @staticmethod
    def _aad(meter: str, obis: str, start: int, duration: int) -> bytes:
        return f"{meter}|{obis}|{start}|{duration}".encode()

    def _seal(self, r: IntervalRecord) -> tuple[bytes, bytes]:
        nonce = os.urandom(12)
        plain = _VALUES.pack(r.value, r.register_end, r.power_of_ten, r.quality)
        sealed = self._cipher(r.meter).encrypt(
            nonce, plain, self._aad(r.meter, str(r.obis), r.start, r.duration)
        )
        return nonce, sealed

    def _open(self, row: tuple) -> IntervalRecord:
        meter, obis, start, duration, nonce, sealed = row
        try:
            plain = self._cipher(meter).decrypt(nonce, sealed, self._aad(meter, obis, start, duration))
        except InvalidTag:
            raise HistoryTampered(f"history row {meter} {obis} start={start} fails authentication") from None
        value, register_end, p10, quality = _VALUES.unpack(plain)
        return IntervalRecord(meter, ObisCode.parse(obis), start, duration, value, register_end, p10, quality)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add_meter(self, meter: str, fuel: str) -> None:
        """Record a meter of this home; on a full disk it is held and written with the next write."""
        with self._lock:
            try:
                self._db.execute("INSERT OR IGNORE INTO meters(meter, fuel) VALUES (?, ?)", (meter, fuel))
            except sqlite3.Error as err:
                if not is_full(err):
                    raise
                self._pending_meters.setdefault(meter, fuel)
                self.full = StorageFull(self.path, err, self.pending, self.dropped)

    def meters(self) -> dict[str, str]:
        with self._lock:
            stored = dict(self._db.execute("SELECT meter, fuel FROM meters ORDER BY meter").fetchall())
            return dict(sorted({**self._pending_meters, **stored}.items()))

    def limit_size(self, max_bytes: int | None) -> int:
        """Cap the database at ``max_bytes`` (never below its current size; None lifts the cap),
        as a hub sharing a small flash partition would; returns the cap in pages. Past the cap
        writes fail exactly as on a full disk (SQLITE_FULL, ``PRAGMA max_page_count``)."""
        with self._lock:
            page = int(self._db.execute("PRAGMA page_size").fetchone()[0])
            pages = 0xFFFFFFFE if max_bytes is None else max(max_bytes // page, 1)
            return int(self._db.execute(f"PRAGMA max_page_count = {int(pages)}").fetchone()[0])

    @property
    def pending(self) -> int:
        """Readings held in memory because the disk was full (intervals and raw points)."""
        return len(self._pending) + len(self._pending_raw)

    def append(self, records: Sequence[IntervalRecord]) -> int:
        """Store intervals in one transaction, after any held back by a full disk; returns how
        many were new. Raises :class:`StorageFull` if the disk is (still) full: the records are
        then held in memory, not lost."""
        with self._lock:
            for r in records:
                # setdefault: as in the table (INSERT OR IGNORE), the first value stored wins.
                self._pending.setdefault((r.meter, str(r.obis), r.start), r)
            return self._flush()

    def flush(self) -> int:
        """Write what a full disk held back (if there is space now); returns intervals written."""
        with self._lock:
            return self._flush()

    def _flush(self) -> int:
        """Write everything pending in one transaction (caller holds the lock)."""
        if not (self._pending or self._pending_meters or self._pending_raw):
            self.full = None
            return 0
        records = list(self._pending.values())
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT OR IGNORE INTO meters(meter, fuel) VALUES (?, ?)", list(self._pending_meters.items())
            )
            self._db.executemany(
                "INSERT INTO raw_points VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [self._seal_raw(row) for row in self._pending_raw],
            )
            # Sealing may create the meter's key: inside the transaction, so rows never
            # land without the key that opens them.
            rows = [(r.meter, str(r.obis), r.start, r.duration, *self._seal(r)) for r in records]
            before = self._db.total_changes
            self._db.executemany("INSERT OR IGNORE INTO intervals VALUES (?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")
        except BaseException as err:
            if self._db.in_transaction:  # SQLITE_FULL may have rolled it back already
                self._db.execute("ROLLBACK")
            self._ciphers.clear()  # a key created in the rolled-back transaction is gone too
            if isinstance(err, sqlite3.Error) and is_full(err):
                self._bound()
                self.full = StorageFull(self.path, err, self.pending, self.dropped)
                raise self.full from err
            if not isinstance(err, Exception):
                raise  # cancelled or interrupted: what is pending stays pending
            # Any other failure: as before, the write is refused and not retried.
            self._pending.clear()
            self._pending_meters.clear()
            self._pending_raw.clear()
            raise
        written = self._db.total_changes - before
        self._pending.clear()
        self._pending_meters.clear()
        self._pending_raw.clear()
        self.full = None
        return written

    def _bound(self) -> None:
        """Keep at most ``max_pending`` readings in memory, dropping (and counting) the oldest."""
        while len(self._pending) > self.max_pending:
            del self._pending[next(iter(self._pending))]
            self.dropped += 1
        excess = len(self._pending_raw) - self.max_pending
        if excess > 0:
            del self._pending_raw[:excess]
            self.dropped += excess

    def append_raw(self, unmapped: Sequence[Unmapped], received: datetime) -> None:
        """Keep data points the mapping table could not translate, with the reason (value sealed).
        On a full disk they are held in memory like intervals (:class:`StorageFull`)."""
        with self._lock:
            for u in unmapped:
                p = u.point
                t = int(p.time.timestamp()) if p.time else None
                # Sealed when written (in _flush's transaction, with the meter's key).
                self._pending_raw.append(
                    (int(received.timestamp()), p.meter, p.protocol, p.key, str(p.value), p.unit, t, u.reason)
                )
            self._flush()

    def _seal_raw(self, row: tuple) -> tuple:
        received, meter, protocol, key, value, unit, t, reason = row
        nonce = os.urandom(12)
        sealed = self._cipher(meter).encrypt(nonce, value.encode(), f"{meter}|{protocol}|{key}".encode())
        return (received, meter, protocol, key, nonce, sealed, unit, t, reason)

    def raw_points(self, limit: int = 1000) -> list[tuple]:
        """Newest first: (meter, protocol, key, value as text, unit, time, reason)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT meter, protocol, key, nonce, sealed, unit, time, reason FROM raw_points"
                " ORDER BY rowid DESC LIMIT ?",
                (limit,),
            ).fetchall()
            out = []
            for meter, protocol, key, nonce, sealed, unit, t, reason in rows:
                try:
                    value = self._cipher(meter).decrypt(nonce, sealed, f"{meter}|{protocol}|{key}".encode())
                except InvalidTag:
                    raise HistoryTampered(
                        f"raw point {meter} {protocol} {key} fails authentication"
                    ) from None
                out.append((meter, protocol, key, value.decode(), unit, t, reason))
            return out

    def compact(self, now: datetime, keep_raw: timedelta = RAW_RETENTION, tz: ZoneInfo = LONDON) -> int:
        """Retention: half-hours older than ``keep_raw`` (13 months by default) are replaced by
        local-day totals, sealed like the rest. Whole days only, in one transaction: a power
        cut leaves either the half-hours or their day, never neither. Returns days written."""
        from smarthub.hub.privacy import Granularity, aggregate, period_start

        cutoff = int(period_start(now - keep_raw, Granularity.DAILY, tz).timestamp())
        written = 0
        with self._lock:
            channels = self._db.execute(
                "SELECT DISTINCT meter, obis FROM intervals WHERE start < ?", (cutoff,)
            ).fetchall()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for meter, obis in channels:
                    rows = self._db.execute(
                        "SELECT * FROM intervals WHERE meter=? AND obis=? AND start < ? ORDER BY start",
                        (meter, obis, cutoff),
                    ).fetchall()
                    records = [self._open(r) for r in rows]
                    for day in aggregate(records, Granularity.DAILY, tz, complete_before=cutoff):
                        in_day = [r for r in records if day.start <= r.start < day.start + day.duration]
                        last = in_day[-1]  # records are in time order
                        sealed = IntervalRecord(
                            meter,
                            ObisCode.parse(obis),
                            day.start,
                            day.duration,
                            day.value,
                            last.register_end,
                            last.power_of_ten,
                            day.quality,
                        )
                        self._db.execute(
                            "INSERT OR REPLACE INTO daily VALUES (?, ?, ?, ?, ?, ?)",
                            (meter, obis, day.start, day.duration, *self._seal(sealed)),
                        )
                        written += 1
                    self._db.execute(
                        "DELETE FROM intervals WHERE meter=? AND obis=? AND start < ?", (meter, obis, cutoff)
                    )
                self._db.execute("COMMIT")
            except BaseException as err:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                self._ciphers.clear()
                if isinstance(err, sqlite3.Error) and is_full(err):
                    raise StorageFull(self.path, err, self.pending, self.dropped) from err
                raise
        return written

    def daily(self, meter: str, obis: ObisCode) -> list[IntervalRecord]:
        """The day totals that retention left where half-hours used to be, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM daily WHERE meter=? AND obis=? ORDER BY start", (meter, str(obis))
            ).fetchall()
            return [self._open(r) for r in rows]

    def channels(self) -> list[tuple[str, ObisCode]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT meter, obis FROM intervals ORDER BY meter, obis"
            ).fetchall()
        return [(m, ObisCode.parse(o)) for m, o in rows]

    def last(self, meter: str, obis: ObisCode) -> IntervalRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM intervals WHERE meter=? AND obis=? ORDER BY start DESC LIMIT 1",
                (meter, str(obis)),
            ).fetchone()
            return None if row is None else self._open(row)

    def span(self, meter: str, obis: ObisCode) -> tuple[int, int] | None:
        """(start of the channel's first interval, end of its last), or None when it has none."""
        with self._lock:
            row = self._db.execute(
                "SELECT (SELECT start FROM intervals WHERE meter=?1 AND obis=?2 ORDER BY start LIMIT 1),"
                " (SELECT start + duration FROM intervals WHERE meter=?1 AND obis=?2"
                " ORDER BY start DESC LIMIT 1)",
                (meter, str(obis)),
            ).fetchone()
        return None if row is None or row[0] is None else (int(row[0]), int(row[1]))

    def ending_at(
        self, meter: str, obis: ObisCode, instants: Sequence[int], *, newest_only: bool = False
    ) -> list[IntervalRecord]:
        """The intervals that end at one of ``instants`` (half-hours: those starting 1800 s
        before), oldest first; ``newest_only``: the latest of them alone. Their ``register_end``
        is the register at that instant as the interval builder fixed it."""
        if not instants:
            return []
        out: list[IntervalRecord] = []
        with self._lock:
            for i in range(0, len(instants), 500):  # SQLite's bound on parameters, with room
                chunk = [t - 1800 for t in instants[i : i + 500]]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT * FROM intervals WHERE meter=? AND obis=? AND start IN ({marks})"
                    f" AND duration = 1800 ORDER BY start{' DESC LIMIT 1' if newest_only else ''}",
                    (meter, str(obis), *chunk),
                ).fetchall()
                out += [self._open(r) for r in rows]
        out.sort(key=lambda r: r.start)
        return out[-1:] if newest_only else out

    def query(
        self,
        meter: str,
        obis: ObisCode,
        *,
        start: int | None = None,
        end: int | None = None,
        offset: int = 0,
        limit: int = 1000,
    ) -> list[IntervalRecord]:
        """Intervals starting in [start, end), oldest first, paged by offset/limit."""
        sql, args = self._where(meter, obis, start, end)
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM intervals WHERE {sql} ORDER BY start LIMIT ? OFFSET ?", (*args, limit, offset)
            ).fetchall()
            return [self._open(r) for r in rows]

    def count(self, meter: str, obis: ObisCode, *, start: int | None = None, end: int | None = None) -> int:
        sql, args = self._where(meter, obis, start, end)
        with self._lock:
            return int(self._db.execute(f"SELECT count(*) FROM intervals WHERE {sql}", args).fetchone()[0])

    def days(self, meter: str, obis: ObisCode, *, start: int | None = None) -> list[int]:
        """UTC days (epoch seconds of midnight) that hold intervals starting at or after ``start``."""
        sql, args = self._where(meter, obis, start, None)
        with self._lock:
            rows = self._db.execute(
                f"SELECT DISTINCT start - start % 86400 AS d FROM intervals WHERE {sql} ORDER BY d", args
            ).fetchall()
        return [int(r[0]) for r in rows]

    @staticmethod
    def _where(meter: str, obis: ObisCode, start: int | None, end: int | None) -> tuple[str, tuple]:
        sql = "meter=? AND obis=?"
        args: tuple = (meter, str(obis))
        if start is not None:
            sql += " AND start >= ?"
            args += (start,)
        if end is not None:
            sql += " AND start < ?"
            args += (end,)
        return sql, args
