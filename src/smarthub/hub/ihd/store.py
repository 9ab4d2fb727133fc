"""What the IHD keeps of its own: supplier messages, the similar-homes comparison, paired screens.

* **Messages** follow IEEE 2030.5 Messaging (clause 10.7, TextMessage): an id unique per
  sender, the originator, the text, a priority (0 low .. 3 very high) and an optional end of
  display; shown until the consumer acknowledges it (the "confirmation required" behaviour)
  or it expires. A message re-delivered with the same id is kept once.
* **Comparison** is the latest aggregate of similar homes the GDSC sent (JSON, validated here).
* **Pairing**: a 6-digit code is made when the hub is set up (shown on the hub's label/console);
  a screen that presents it gets a random session token (a cookie). Tokens are stored hashed.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from smarthub.hub import sqlite_files

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    sender TEXT NOT NULL,
    message_id TEXT NOT NULL,
    text TEXT NOT NULL,
    priority INTEGER NOT NULL,
    received INTEGER NOT NULL,
    expires INTEGER,
    acknowledged INTEGER,
    start INTEGER,
    PRIMARY KEY (sender, message_id)
);
CREATE TABLE IF NOT EXISTS comparison (id INTEGER PRIMARY KEY CHECK (id = 1), body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pairing (id INTEGER PRIMARY KEY CHECK (id = 1), code TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS appliances (meter TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (token_hash TEXT PRIMARY KEY, created INTEGER NOT NULL);
"""

PRIORITIES = {0: "low", 1: "normal", 2: "high", 3: "very high"}  # 2030.5 TextMessage.priority
MAX_TEXT = 500


class BadIhdInput(ValueError):
    """A message or comparison the IHD will not show; the text says why."""


@dataclass(frozen=True, slots=True)
class Message:
    sender: str
    message_id: str
    text: str
    priority: int
    received: int
    expires: int | None
    start: int | None = None  # not shown before this (epoch s); None: from when it arrived


@dataclass(frozen=True, slots=True)
class FuelComparison:
    average_kwh: Decimal
    efficient_kwh: Decimal


@dataclass(frozen=True, slots=True)
class Comparison:
    """Similar homes' consumption over local days ``start``..``end`` (exclusive)."""

    start: date
    end: date
    homes: int
    description: str
    fuels: dict[str, FuelComparison]

    @classmethod
    def from_json(cls, body: object) -> Comparison:
        if not isinstance(body, dict):
            raise BadIhdInput("a comparison is an object")
        try:
            start, end = date.fromisoformat(str(body["start"])), date.fromisoformat(str(body["end"]))
            homes = int(body["homes"])
            fuels = {}
            for fuel in ("electricity", "gas"):
                if fuel in body:
                    f = body[fuel]
                    fuels[fuel] = FuelComparison(
                        Decimal(str(f["average_kwh"])), Decimal(str(f["efficient_kwh"]))
                    )
        except (KeyError, TypeError, ValueError, InvalidOperation) as err:
            raise BadIhdInput(f"comparison field missing or malformed: {type(err).__name__} {err}") from None
        if end <= start:
            raise BadIhdInput(f"comparison period {start}..{end} is empty")
        if homes < 1:
            raise BadIhdInput("a comparison needs at least one home")
        if not fuels:
            raise BadIhdInput("a comparison names electricity or gas")
        if any(v < 0 for f in fuels.values() for v in (f.average_kwh, f.efficient_kwh)):
            raise BadIhdInput("comparison kWh cannot be negative")
        return cls(start, end, homes, str(body.get("description", "similar homes"))[:120], fuels)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "homes": self.homes,
            "description": self.description,
        }
        for fuel, f in self.fuels.items():
            out[fuel] = {"average_kwh": str(f.average_kwh), "efficient_kwh": str(f.efficient_kwh)}
        return out


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class IhdStore:
    def __init__(self, path: Path | str) -> None:
        self._lock = threading.Lock()
        self._db = sqlite_files.connect(str(path))
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(messages)")}
        if "start" not in columns:  # a store made before messages had a start time
            self._db.execute("ALTER TABLE messages ADD COLUMN start INTEGER")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- messages -------------------------------------------------------------------------
    def add_message(self, body: dict[str, Any], now: datetime) -> tuple[Message, bool]:
        """Keep a supplier's message (once per sender and id); True if it is new."""
        try:
            sender, message_id, text = str(body["sender"]), str(body["id"]), str(body["text"])
            priority = int(body.get("priority", 1))
            expires = body.get("expires")
            expires_at = None if expires is None else int(datetime.fromisoformat(str(expires)).timestamp())
            start = body.get("start")
            start_at = None if start is None else int(datetime.fromisoformat(str(start)).timestamp())
        except (KeyError, TypeError, ValueError) as err:
            raise BadIhdInput(f"message field missing or malformed: {type(err).__name__} {err}") from None
        if not text.strip() or len(text) > MAX_TEXT:
            raise BadIhdInput(f"message text must be 1..{MAX_TEXT} characters")
        if priority not in PRIORITIES:
            raise BadIhdInput(f"message priority {priority} is not one of {sorted(PRIORITIES)}")
        if not (0 < len(sender) <= 64 and 0 < len(message_id) <= 64):
            raise BadIhdInput("message sender and id must be 1..64 characters")
        m = Message(sender, message_id, text, priority, int(now.timestamp()), expires_at, start_at)
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO messages"
                " (sender, message_id, text, priority, received, expires, acknowledged, start)"
                " VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
                (sender, message_id, text, priority, m.received, expires_at, start_at),
            )
        return m, cur.rowcount == 1

    def messages(self, now: datetime, *, scheduled: bool = False) -> list[Message]:
        """Messages to show: started, not acknowledged, not expired; most urgent, then newest,
        first. ``scheduled``: also those whose display starts later."""
        t = int(now.timestamp())
        with self._lock:
            rows = self._db.execute(
                "SELECT sender, message_id, text, priority, received, expires, start FROM messages"
                " WHERE acknowledged IS NULL AND (expires IS NULL OR expires > ?)"
                " AND (start IS NULL OR start <= ?)"
                " ORDER BY priority DESC, received DESC",
                (t, 2**62 if scheduled else t),
            ).fetchall()
        return [Message(*r) for r in rows]

    def acknowledge(self, sender: str, message_id: str, now: datetime) -> bool:
        with self._lock:
            cur = self._db.execute(
                "UPDATE messages SET acknowledged = ?"
                " WHERE sender = ? AND message_id = ? AND acknowledged IS NULL",
                (int(now.timestamp()), sender, message_id),
            )
        return cur.rowcount == 1

    # -- comparison -----------------------------------------------------------------------
    def set_comparison(self, comparison: Comparison) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO comparison VALUES (1, ?)", (json.dumps(comparison.to_json()),)
            )

    def comparison(self) -> Comparison | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM comparison WHERE id = 1").fetchone()
        return None if row is None else Comparison.from_json(json.loads(row[0]))

    # -- appliances (sub-meters and smart plugs the installer or consumer named) -------------
    def set_appliance(self, meter: str, name: str) -> None:
        if not (0 < len(meter) <= 64 and 0 < len(name.strip()) <= 40):
            raise BadIhdInput("an appliance meter id is 1..64 characters and its name 1..40")
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO appliances VALUES (?, ?)", (meter, name.strip()))

    def appliances(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT meter, name FROM appliances ORDER BY name").fetchall())

    # -- pairing --------------------------------------------------------------------------
    def pairing_code(self) -> str:
        """The hub's pairing code, made on first use (hub setup) and kept."""
        with self._lock:
            row = self._db.execute("SELECT code FROM pairing WHERE id = 1").fetchone()
            if row is not None:
                return str(row[0])
            code = f"{secrets.randbelow(10**6):06d}"
            self._db.execute("INSERT INTO pairing VALUES (1, ?)", (code,))
            return code

    def pair(self, code: str, now: datetime) -> str | None:
        """A new session token if ``code`` is the pairing code, else None."""
        if not secrets.compare_digest(code.strip().encode(), self.pairing_code().encode()):
            return None
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._db.execute("INSERT INTO sessions VALUES (?, ?)", (_hash(token), int(now.timestamp())))
        return token

    def session_valid(self, token: str | None) -> bool:
        if not token:
            return False
        with self._lock:
            row = self._db.execute("SELECT 1 FROM sessions WHERE token_hash = ?", (_hash(token),)).fetchone()
        return row is not None
