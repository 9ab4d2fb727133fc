"""What the IHD keeps of its own: supplier messages, the similar-homes comparison, the household's
data services, paired screens.

* **Messages** follow IEEE 2030.5 Messaging (clause 10.7, TextMessage): an id unique per
  sender, the originator, the text, a priority (0 low .. 3 very high) and an optional end of
  display; shown until the consumer acknowledges it (the "confirmation required" behaviour)
  or it expires. A message re-delivered with the same id is kept once.
* **Comparison** is the latest aggregate of similar homes the GDSC sent (JSON, validated here).
* **Data services**: the latest ``ihd.services`` view (which third parties hold the occupant's
  consent and what each read, from the GDSC's audit log); a view older than the one kept is
  ignored, so a late delivery cannot bring back a revoked consent.
* **Pairing**: a screen pairs by presenting a 6-digit code made *at the hub* (its console, the
  ``smarthub ihd-code`` command, or a screen already paired): the code is single-use, expires
  after ``PAIRING_TTL`` (15 minutes) and is kept only as a salted scrypt hash. Wrong codes are
  limited for the whole hub, not per client (a web page abusing the consumer's own browser, or a
  device on the LAN, would otherwise pick a fresh address): after each wrong code the next
  attempt must wait ``BACKOFF_BASE`` × 2^(failures − 1) seconds (answered 429 meanwhile), and
  after ``MAX_FAILURES`` wrong codes the code is void: pairing is locked until a new code is
  made at the hub. An attacker thus gets 5 guesses in 10^6 per code a person made.
* **Sessions**: a screen that pairs gets a random token (an HttpOnly, SameSite=Strict cookie),
  stored as its SHA-256. A session ends after ``SESSION_IDLE`` (30 days) unused or
  ``SESSION_MAX`` (a year) after pairing, whichever comes first, and can be revoked: the
  paired screens are listed (name, when paired, last seen) and each can be unpaired.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from smarthub.hub import sqlite_files
from smarthub.wan.contract.bodies import IhdBuilding, IhdComparison, IhdMessage, IhdServices

_V1 = """
CREATE TABLE IF NOT EXISTS messages (
    sender TEXT NOT NULL,
    message_id TEXT NOT NULL,
    text TEXT NOT NULL,
    priority INTEGER NOT NULL,
    received INTEGER NOT NULL,
    expires INTEGER,
    acknowledged INTEGER,
    PRIMARY KEY (sender, message_id)
);
CREATE TABLE IF NOT EXISTS comparison (id INTEGER PRIMARY KEY CHECK (id = 1), body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pairing (id INTEGER PRIMARY KEY CHECK (id = 1), code TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS appliances (meter TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (token_hash TEXT PRIMARY KEY, created INTEGER NOT NULL);
"""

# 3: the pairing code single-use, expiring and hashed, with its back-off; sessions named, with
# an idle and an absolute expiry (those paired before get a year from their pairing). The old
# code was kept in clear: its table is dropped (secure_delete zeroes it), a new code is made.
_V3 = """
CREATE TABLE pairing_code (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    salt BLOB,
    digest BLOB,              -- scrypt(code, salt); NULL once used, voided or expired
    issued INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    failures INTEGER NOT NULL, -- wrong codes since this one was made
    next_try INTEGER NOT NULL  -- no attempt before this (epoch s): the back-off
);
ALTER TABLE sessions ADD COLUMN name TEXT NOT NULL DEFAULT 'screen';
ALTER TABLE sessions ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN expires INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET last_seen = created, expires = created + 31536000;  -- SESSION_MAX, 365 days
DROP TABLE pairing;
"""


def _unversioned(db: sqlite3.Connection) -> int:
    """Which migrations an IHD file written before versions already has."""
    if "messages" not in sqlite_files.tables(db):
        return 0
    if "start" not in sqlite_files.columns(db, "messages"):
        return 1
    return 2 if "expires" not in sqlite_files.columns(db, "sessions") else 3


SCHEMA = sqlite_files.Schema(
    "IHD",
    [
        _V1,  # 1: messages, the comparison, appliance names, the pairing code, sessions
        "ALTER TABLE messages ADD COLUMN start INTEGER;",  # 2: a message's start time
        _V3,
        # 4: the household's data services as the GDSC last sent them (ihd.services)
        "CREATE TABLE service_view (id INTEGER PRIMARY KEY CHECK (id = 1), as_of INTEGER NOT NULL,"
        " body TEXT NOT NULL);",
        # 5: the building's monthly figures from the housing provider's billing (ihd.building)
        "CREATE TABLE building_info (id INTEGER PRIMARY KEY CHECK (id = 1), month TEXT NOT NULL,"
        " body TEXT NOT NULL);",
        # 6: whose a message is (a data service's, issue 25, shown as such) and its sender's name
        "ALTER TABLE messages ADD COLUMN origin TEXT NOT NULL DEFAULT 'supplier';"
        " ALTER TABLE messages ADD COLUMN sender_name TEXT;",
    ],
    unversioned=_unversioned,
)

PRIORITIES = {0: "low", 1: "normal", 2: "high", 3: "very high"}  # 2030.5 TextMessage.priority
MAX_TEXT = 500

PAIRING_TTL = timedelta(minutes=15)
MAX_FAILURES = 5
BACKOFF_BASE = 2.0  # seconds: 2, 4, 8, 16 after the 1st .. 4th wrong code
SESSION_IDLE = timedelta(days=30)
SESSION_MAX = timedelta(days=365)
_TOUCH_EVERY = 300  # seconds: a session's last-seen time is written at most this often
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


class BadIhdInput(ValueError):
    """A message or comparison the IHD will not show; the text says why."""


class PairingRefused(Exception):
    """A pairing attempt that does not pair. ``kind``: ``wrong`` (not the code), ``wait`` (in
    the back-off after a wrong code; ``retry_after`` seconds), ``locked`` (too many wrong
    codes: a new code must be made at the hub), ``none`` (no code, or it expired or was used)."""

    def __init__(self, kind: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Screen:
    """A paired screen (a session), as the list of paired screens shows it."""

    id: int
    name: str
    paired: int  # epoch s
    last_seen: int
    expires: int


@dataclass(frozen=True, slots=True)
class Message:
    sender: str
    message_id: str
    text: str
    priority: int
    received: int
    expires: int | None
    start: int | None = None  # not shown before this (epoch s); None: from when it arrived
    origin: str = "supplier"  # or "third-party": a data service the occupant consented to
    sender_name: str | None = None  # the name to show (a data service's); None: ``sender``

    @property
    def third_party(self) -> bool:
        return self.origin == "third-party"


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

    @classmethod
    def from_command(cls, body: IhdComparison) -> Comparison:
        fuels = {f: FuelComparison(x.average_kwh, x.efficient_kwh) for f, x in body.fuels.items()}
        return cls(body.start, body.end, body.homes, body.description, fuels)

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
        self._file = sqlite_files.open_database(path, SCHEMA)
        self._db, self._lock = self._file.connection, self._file.lock

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- messages -------------------------------------------------------------------------
    def add_message(self, body: IhdMessage, now: datetime) -> tuple[Message, bool]:
        """Keep a supplier's or data service's message (once per sender and id, checked by the
        contract's ``IhdMessage``); True if it is new."""
        sender, message_id, text, priority = body.sender, body.id, body.text, body.priority
        expires_at = None if body.expires is None else int(body.expires.timestamp())
        start_at = None if body.start is None else int(body.start.timestamp())
        m = Message(
            sender,
            message_id,
            text,
            priority,
            int(now.timestamp()),
            expires_at,
            start_at,
            body.origin,
            body.sender_name,
        )
        labels = (m.origin, m.sender_name)
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO messages (sender, message_id, text, priority, received, expires,"
                " acknowledged, start, origin, sender_name) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
                (sender, message_id, text, priority, m.received, expires_at, start_at, *labels),
            )
        return m, cur.rowcount == 1

    def messages(self, now: datetime, *, scheduled: bool = False) -> list[Message]:
        """Messages to show: started, not acknowledged, not expired; most urgent, then newest,
        first. ``scheduled``: also those whose display starts later."""
        t = int(now.timestamp())
        with self._lock:
            rows = self._db.execute(
                "SELECT sender, message_id, text, priority, received, expires, start, origin, sender_name"
                " FROM messages"
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

    # -- data services (what the GDSC's audit log says third parties read) -----------------
    def set_services(self, view: IhdServices) -> bool:
        """Keep the GDSC's view of the household's data services; False (and nothing changed)
        if the view kept is as recent or more (an older command delivered late)."""
        as_of = int(view.as_of.timestamp() * 1_000_000)
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO service_view VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                " as_of = excluded.as_of, body = excluded.body WHERE excluded.as_of > service_view.as_of",
                (as_of, json.dumps(view.to_json())),
            )
        return cur.rowcount == 1

    def services(self) -> IhdServices | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM service_view WHERE id = 1").fetchone()
        return None if row is None else IhdServices.parse(json.loads(row[0]))

    # -- a flat's building (issue 21: the tenant's monthly information) ----------------------
    def set_building(self, info: IhdBuilding) -> bool:
        """Keep the building's figures for a month; False (nothing changed) if those of a later
        month are kept already (a command delivered late)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO building_info VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                " month = excluded.month, body = excluded.body WHERE excluded.month >= building_info.month",
                (info.month.isoformat(), json.dumps(info.to_json())),
            )
        return cur.rowcount == 1

    def building(self) -> IhdBuilding | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM building_info WHERE id = 1").fetchone()
        return None if row is None else IhdBuilding.parse(json.loads(row[0]))

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
    def new_pairing_code(self, now: datetime, ttl: timedelta = PAIRING_TTL) -> str:
        """Make a new pairing code (replacing any other, and ending a lockout); shown once, at
        the hub. Only its salted hash is kept."""
        code = f"{secrets.randbelow(10**6):06d}"
        salt = secrets.token_bytes(16)
        t = int(now.timestamp())
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO pairing_code VALUES (1, ?, ?, ?, ?, 0, 0)",
                (salt, _code_digest(code, salt), t, t + int(ttl.total_seconds())),
            )
        return code

    def pairing_open(self, now: datetime) -> bool:
        """Whether a code is waiting to be used (made, not used, voided or expired)."""
        with self._lock:
            row = self._db.execute("SELECT digest, expires FROM pairing_code WHERE id = 1").fetchone()
        return row is not None and row[0] is not None and int(now.timestamp()) < row[1]

    def pair(self, code: str, now: datetime, name: str = "screen") -> str:
        """A new session token for a screen presenting the current pairing code (which is then
        used up); :class:`PairingRefused` otherwise (see the module docstring's limits)."""
        t = now.timestamp()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                token = self._pair(code.strip(), t, name)
                self._db.execute("COMMIT")
            except PairingRefused:
                self._db.execute("COMMIT")  # the failure count and back-off are kept
                raise
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return token

    def _pair(self, code: str, t: float, name: str) -> str:
        row = self._db.execute(
            "SELECT salt, digest, expires, failures, next_try FROM pairing_code WHERE id = 1"
        ).fetchone()
        if row is not None and row[1] is not None and t < row[4]:
            raise PairingRefused("wait", "too many wrong codes: wait before trying again", row[4] - t)
        if row is None or row[1] is None:
            locked = row is not None and row[3] >= MAX_FAILURES
            kind = "locked" if locked else "none"
            why = "too many wrong codes" if locked else "no pairing code is waiting"
            raise PairingRefused(kind, f"{why}: make a new code at the hub")
        salt, digest, expires, failures, _ = row
        if t >= expires:
            self._db.execute("UPDATE pairing_code SET salt = NULL, digest = NULL WHERE id = 1")
            raise PairingRefused("none", "the pairing code has expired: make a new code at the hub")
        if not secrets.compare_digest(_code_digest(code, salt), digest):
            failures += 1
            if failures >= MAX_FAILURES:  # void: the next code must be made at the hub
                self._db.execute(
                    "UPDATE pairing_code SET salt = NULL, digest = NULL, failures = ? WHERE id = 1",
                    (failures,),
                )
                raise PairingRefused("locked", "too many wrong codes: make a new code at the hub")
            wait = BACKOFF_BASE * 2 ** (failures - 1)
            self._db.execute(
                "UPDATE pairing_code SET failures = ?, next_try = ? WHERE id = 1",
                (failures, int(t + wait + 0.999)),
            )
            raise PairingRefused("wrong", "that is not the pairing code", wait)
        # Single use: the code is gone the moment it pairs a screen.
        self._db.execute("UPDATE pairing_code SET salt = NULL, digest = NULL WHERE id = 1")
        token = secrets.token_urlsafe(32)
        now = int(t)
        self._db.execute(
            "INSERT INTO sessions (token_hash, created, name, last_seen, expires) VALUES (?, ?, ?, ?, ?)",
            (_hash(token), now, (name.strip() or "screen")[:40], now, now + int(SESSION_MAX.total_seconds())),
        )
        return token

    def session(self, token: str | None, now: datetime) -> Screen | None:
        """The paired screen holding ``token``, if its session is live at ``now`` (an expired
        one is deleted); its last-seen time is brought up to date."""
        if not token:
            return None
        t = int(now.timestamp())
        with self._lock:
            row = self._db.execute(
                "SELECT rowid, name, created, last_seen, expires FROM sessions WHERE token_hash = ?",
                (_hash(token),),
            ).fetchone()
            if row is None:
                return None
            rowid, name, created, last_seen, expires = row
            if t >= expires or t >= last_seen + SESSION_IDLE.total_seconds():
                self._db.execute("DELETE FROM sessions WHERE rowid = ?", (rowid,))
                return None
            if t - last_seen >= _TOUCH_EVERY:
                self._db.execute("UPDATE sessions SET last_seen = ? WHERE rowid = ?", (t, rowid))
                last_seen = t
        return Screen(
            rowid, name, created, last_seen, min(expires, last_seen + int(SESSION_IDLE.total_seconds()))
        )

    def session_valid(self, token: str | None, now: datetime) -> bool:
        return self.session(token, now) is not None

    def screens(self, now: datetime) -> list[Screen]:
        """The screens paired now, most recently seen first."""
        t = int(now.timestamp())
        idle = int(SESSION_IDLE.total_seconds())
        with self._lock:
            rows = self._db.execute(
                "SELECT rowid, name, created, last_seen, expires FROM sessions"
                " WHERE expires > ? AND last_seen + ? > ? ORDER BY last_seen DESC, rowid DESC",
                (t, idle, t),
            ).fetchall()
        return [Screen(r[0], r[1], r[2], r[3], min(r[4], r[3] + idle)) for r in rows]

    def unpair(self, screen_id: int) -> bool:
        """End a screen's session (it must pair again); False if there was none."""
        with self._lock:
            cur = self._db.execute("DELETE FROM sessions WHERE rowid = ?", (int(screen_id),))
        return cur.rowcount == 1


def _code_digest(code: str, salt: bytes) -> bytes:
    return hashlib.scrypt(code.encode(), salt=salt, **_SCRYPT)
