"""The hub's local history of interval readings, in SQLite.

Append-only; WAL journal with ``synchronous=FULL`` so that an interval acknowledged as
stored (its transaction committed) survives a power cut at any instant. Re-appending an
interval already stored is a no-op, so replaying a meter's frames after a restart is safe.
Encryption at rest with per-meter keys is not here yet (it belongs to the hub issue).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from smarthub.hub.intervals import IntervalRecord
from smarthub.meters.mapping import Unmapped
from smarthub.model import ObisCode

_SCHEMA = """
CREATE TABLE IF NOT EXISTS intervals (
    meter TEXT NOT NULL,
    obis TEXT NOT NULL,
    start INTEGER NOT NULL,
    duration INTEGER NOT NULL,
    value INTEGER NOT NULL,
    register_end INTEGER NOT NULL,
    power_of_ten INTEGER NOT NULL,
    quality INTEGER NOT NULL,
    PRIMARY KEY (meter, obis, start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS raw_points (
    received INTEGER NOT NULL,
    meter TEXT NOT NULL,
    protocol TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    unit TEXT,
    time INTEGER,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meters (
    meter TEXT PRIMARY KEY,
    fuel TEXT NOT NULL
) WITHOUT ROWID;
"""


class HistoryStore:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

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
            before = self._db.total_changes
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO intervals VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            r.meter,
                            str(r.obis),
                            r.start,
                            r.duration,
                            r.value,
                            r.register_end,
                            r.power_of_ten,
                            r.quality,
                        )
                        for r in records
                    ],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return self._db.total_changes - before

    def append_raw(self, unmapped: Sequence[Unmapped], received: datetime) -> None:
        """Keep data points the mapping table could not translate, with the reason."""
        rows = [
            (
                int(received.timestamp()),
                u.point.meter,
                u.point.protocol,
                u.point.key,
                str(u.point.value),
                u.point.unit,
                int(u.point.time.timestamp()) if u.point.time else None,
                u.reason,
            )
            for u in unmapped
        ]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT INTO raw_points VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def raw_points(self, limit: int = 1000) -> list[tuple]:
        with self._lock:
            return self._db.execute(
                "SELECT meter, protocol, key, value, unit, time, reason FROM raw_points"
                " ORDER BY rowid DESC LIMIT ?",
                (limit,),
            ).fetchall()

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
        return None if row is None else _record(row)

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
        return [_record(r) for r in rows]

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


def _record(row: tuple) -> IntervalRecord:
    meter, obis, start, duration, value, register_end, p10, quality = row
    return IntervalRecord(meter, ObisCode.parse(obis), start, duration, value, register_end, p10, quality)
