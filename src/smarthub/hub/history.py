"""The hub's local history of interval readings, in SQLite, encrypted at rest.

Append-only; WAL journal with ``synchronous=FULL`` so that an interval acknowledged as
stored (its transaction committed) survives a power cut at any instant. Re-appending an
interval already stored is a no-op, so replaying a meter's frames after a restart is safe.

Values are sealed with AES-128-GCM under the meter's own key (see :mod:`smarthub.hub.keys`);
the row's identity (meter, OBIS, start, duration) is authenticated as associated data, so a
sealed value moved to another row, or altered, fails to open with :class:`HistoryTampered`.
Times stay in clear so that the WAN's range queries use the index: they are the fixed
half-hour grid and reveal nothing about consumption.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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


RAW_RETENTION = timedelta(days=396)  # 13 months of half-hours, then daily totals
LONDON = ZoneInfo("Europe/London")

_VALUES = struct.Struct(">qqbH")  # value, register_end, power_of_ten, quality


class HistoryTampered(Exception):
    """A stored value that fails its authentication: altered, moved, or sealed with another key."""


class HistoryStore:
    def __init__(self, path: Path | str, master_key: bytes | None = None) -> None:
        """Open (or create) the history. Without ``master_key`` the key is read from, or
        created in, ``master.key`` beside the database (for hubs without a secure element)."""
        self.path = str(path)
        self._master = master_key or load_or_create_master_key(Path(path).with_name("master.key"))
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
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
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO meters(meter, fuel) VALUES (?, ?)", (meter, fuel))

    def meters(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT meter, fuel FROM meters ORDER BY meter").fetchall())

    def append(self, records: Sequence[IntervalRecord]) -> int:
        """Store intervals in one transaction; returns how many were new."""
        if not records:
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # Sealing may create the meter's key: inside the transaction, so rows never
                # land without the key that opens them.
                rows = [(r.meter, str(r.obis), r.start, r.duration, *self._seal(r)) for r in records]
                before = self._db.total_changes
                self._db.executemany("INSERT OR IGNORE INTO intervals VALUES (?, ?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._ciphers.clear()  # a key created in the rolled-back transaction is gone too
                raise
            return self._db.total_changes - before

    def append_raw(self, unmapped: Sequence[Unmapped], received: datetime) -> None:
        """Keep data points the mapping table could not translate, with the reason (value sealed)."""
        with self._lock:
            rows = []
            for u in unmapped:
                p, nonce = u.point, os.urandom(12)
                sealed = self._cipher(p.meter).encrypt(
                    nonce, str(p.value).encode(), f"{p.meter}|{p.protocol}|{p.key}".encode()
                )
                rows.append(
                    (
                        int(received.timestamp()),
                        p.meter,
                        p.protocol,
                        p.key,
                        nonce,
                        sealed,
                        p.unit,
                        int(p.time.timestamp()) if p.time else None,
                        u.reason,
                    )
                )
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT INTO raw_points VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

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
            except BaseException:
                self._db.execute("ROLLBACK")
                self._ciphers.clear()
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
