"""In-home diagnostics and self-repair: what is wrong with a meter or a HAN link, what the hub
tried about it, and what a person must do when that did not help.

A hub in a home is visited rarely and at cost; most faults are visible to it long before a
customer or a settlement run notices them. The detectors here are sans-I/O: the hub feeds them
observations (data points and decode errors from ports, completed intervals, register
readings, poll results) and the time (``tick(now)``), and they raise or clear *conditions*.
Each condition is kept as one :class:`DiagnosedEvent` per ``(code, device)`` in the
:class:`DiagnosticsLog` (SQLite): raised once, updated (``count``, ``last_seen``, evidence)
while the condition persists, closed when it clears or a local repair fixes it. The WAN
publishes the events as an IEEE 2030.5-2018 LogEventList (LogEvent function set, §10.11;
see :mod:`smarthub.wan.contract.events`), with the full evidence available to the GDSC for work
orders.

What is detected (``DiagnosisCode``):

* missing intervals: an interval estimated by linear interpolation (a gap in the meter's
  samples, 2030.5 qualityFlags ESTIMATED_LINEAR_INTERPOLATION), or a channel without a new
  interval for more than ``missing_periods`` periods;
* a silent (stale) meter: no data point for ``stale_after`` (default 3 × its expected period,
  learned from its arrivals unless configured);
* HAN link degradation per port: decode errors (CRC, truncation, grammar) over a sliding
  window of frames, poll failures and timeouts, weak radio signal (RSSI); decryption failures
  are a separate, security event because their repair is a re-key, not a site visit;
* implausible values: a register going backwards, an interval above the meter's rating
  (electricity ``rating_w`` × duration; gas and water a maximum flow rate);
* reverse flow on a meter not registered as a generator, and status flags (tamper, error,
  low battery, power failure) in data points;
* clock drift: the meter's own clock against the hub's receive time.

Repairs are injected (:class:`Repairs`): the hub and HAN layers know how to re-poll a meter,
re-sync its clock, reload its key or switch transport; this module only decides which to try
and records the outcome.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, overload

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from smarthub.hub import sqlite_files
from smarthub.hub.intervals import PERIOD, IntervalRecord
from smarthub.hub.keys import load_or_create_master_key, new_meter_key, unwrap, wrap
from smarthub.hub.mains import MainsMonitor
from smarthub.meters.dlms.errors import DecryptionError as DlmsDecryptionError
from smarthub.meters.dlms.errors import ReplayError
from smarthub.meters.errors import ChecksumError, MalformedFrame, TruncatedFrame
from smarthub.meters.wmbus import DecryptionError as WMBusDecryptionError
from smarthub.model import ObisCode, Quality, Reading
from smarthub.model.datapoint import DataPoint
from smarthub.model.obis import EXPORT_ACTIVE_ENERGY, counts_since_set_day
from smarthub.model.reading_type import interval_channels
from smarthub.wan.contract.diagnosis import DiagnosisCode, RepairAction, RepairOutcome, Severity

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# The event model
# --------------------------------------------------------------------------------------------


METER = "meter"
PORT = "port"
STORAGE = "storage"


@dataclass(frozen=True, slots=True)
class RepairAttempt:
    """One repair tried: ``detail`` says what it did, for people ("clock set to ..., read back
    ...", "switched from HDLC to the TCP wrapper"); empty when the repair said nothing."""

    action: RepairAction
    outcome: RepairOutcome
    at: datetime
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RepairResult:
    """What a repair returns when it has more to say than its outcome."""

    outcome: RepairOutcome
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DiagnosedEvent:
    """One diagnosed condition of one device, from first to last observation.

    ``device`` is a meter id (as its protocol names it) or a port / poll-loop name, as
    ``device_kind`` says. ``evidence`` is for people ("17 CRC errors in 200 frames"),
    ``numbers`` the same facts for machines. ``closed`` is set once the condition cleared
    (``resolution`` "cleared") or a repair fixed it ("repaired"). ``seq`` grows with every
    change, so a reader can pull updates as well as new events.
    """

    id: int
    code: DiagnosisCode
    device: str
    device_kind: str
    severity: Severity
    evidence: str
    numbers: dict[str, Any]
    recommendation: str
    first_seen: datetime
    last_seen: datetime
    count: int = 1
    attempts: tuple[RepairAttempt, ...] = ()
    closed: datetime | None = None
    resolution: str | None = None
    seq: int = 0

    @property
    def is_open(self) -> bool:
        return self.closed is None

    @property
    def repair(self) -> RepairAction:
        """The last repair tried (NONE before any)."""
        return self.attempts[-1].action if self.attempts else RepairAction.NONE

    @property
    def outcome(self) -> RepairOutcome | None:
        """Succeeded if any attempt did, else failed if any did, else unsupported; None if untried."""
        outcomes = {a.outcome for a in self.attempts}
        for o in (RepairOutcome.SUCCEEDED, RepairOutcome.FAILED, RepairOutcome.UNSUPPORTED):
            if o in outcomes:
                return o
        return None


@dataclass(frozen=True, slots=True)
class CodeInfo:
    severity: Severity
    recommendation: str  # what a person should do if the local repair does not clear it
    repairs: tuple[RepairAction, ...]  # tried in order until one succeeds


CODE_INFO: dict[DiagnosisCode, CodeInfo] = {
    DiagnosisCode.MISSING_INTERVALS: CodeInfo(
        Severity.WARNING,
        "none: gap estimated by interpolation; site visit if it recurs",
        (RepairAction.REPOLL,),
    ),
    DiagnosisCode.STALE_METER: CodeInfo(
        Severity.MAJOR,
        "site visit: check meter power and HAN connection",
        (RepairAction.REPOLL, RepairAction.FALLBACK_TRANSPORT),
    ),
    DiagnosisCode.HAN_DECODE_ERRORS: CodeInfo(
        Severity.WARNING,
        "site visit: check optical head / P1 cable / radio interference",
        (RepairAction.FALLBACK_TRANSPORT,),
    ),
    DiagnosisCode.HAN_POLL_FAILURES: CodeInfo(
        Severity.MAJOR,
        "site visit: check optical head or bus wiring",
        (RepairAction.REPOLL, RepairAction.FALLBACK_TRANSPORT),
    ),
    DiagnosisCode.HAN_WEAK_SIGNAL: CodeInfo(
        Severity.WARNING, "relocate hub or fit a radio repeater", (RepairAction.FALLBACK_TRANSPORT,)
    ),
    DiagnosisCode.DECRYPTION_FAILURES: CodeInfo(
        Severity.MAJOR, "re-issue the meter key (key store out of step with the meter)", (RepairAction.REKEY,)
    ),
    DiagnosisCode.REGISTER_BACKWARDS: CodeInfo(
        Severity.MAJOR, "site visit: verify register (meter reset or exchanged?) and re-baseline", ()
    ),
    DiagnosisCode.CONSUMPTION_SPIKE: CodeInfo(
        Severity.WARNING, "validate the interval against the meter display; check meter rating", ()
    ),
    DiagnosisCode.REVERSE_FLOW: CodeInfo(
        Severity.MAJOR, "check for unregistered generation or reversed meter wiring", ()
    ),
    DiagnosisCode.TAMPER: CodeInfo(Severity.CRITICAL, "site visit: tamper inspection", ()),
    DiagnosisCode.METER_ERROR: CodeInfo(
        Severity.MAJOR, "site visit: meter reports an error; replace if persistent", ()
    ),
    DiagnosisCode.LOW_BATTERY: CodeInfo(Severity.WARNING, "replace battery", ()),
    DiagnosisCode.POWER_FAILURE: CodeInfo(Severity.INFO, "none: supply interruption recorded", ()),
    DiagnosisCode.CLOCK_DRIFT: CodeInfo(
        Severity.WARNING,
        "site visit: set meter clock (remote re-sync not available or failed)",
        (RepairAction.RESYNC_CLOCK,),
    ),
    DiagnosisCode.STORAGE_FULL: CodeInfo(
        Severity.CRITICAL,
        "free space on the hub or replace its storage; readings are held in memory meanwhile",
        (),
    ),
}


# --------------------------------------------------------------------------------------------
# Repairs
# --------------------------------------------------------------------------------------------


class Repairs(Protocol):
    """Local repairs the hub / HAN layers implement. Each gets the event (``device`` and
    ``device_kind`` say what to act on) and says whether it worked; a repair the device or
    client cannot do returns UNSUPPORTED. "Succeeded" should mean the fault is gone (a re-poll
    delivered data, the clock was set, the new key decrypts), since it closes the event."""

    async def repoll(self, event: DiagnosedEvent) -> RepairOutcome | RepairResult: ...

    async def resync_clock(self, event: DiagnosedEvent) -> RepairOutcome | RepairResult: ...

    async def rekey(self, event: DiagnosedEvent) -> RepairOutcome | RepairResult: ...

    async def fallback_transport(self, event: DiagnosedEvent) -> RepairOutcome | RepairResult: ...


class NoRepairs:
    """The default: the hub cannot repair anything locally."""

    async def repoll(self, event: DiagnosedEvent) -> RepairOutcome:
        return RepairOutcome.UNSUPPORTED

    async def resync_clock(self, event: DiagnosedEvent) -> RepairOutcome:
        return RepairOutcome.UNSUPPORTED

    async def rekey(self, event: DiagnosedEvent) -> RepairOutcome:
        return RepairOutcome.UNSUPPORTED

    async def fallback_transport(self, event: DiagnosedEvent) -> RepairOutcome:
        return RepairOutcome.UNSUPPORTED


RepairCallback = Callable[[DiagnosedEvent], Awaitable[RepairResult | RepairOutcome | bool]]


@dataclass
class CallbackRepairs:
    """Repairs from optional async callbacks (a missing one is UNSUPPORTED; True/False map to
    SUCCEEDED/FAILED; a :class:`RepairResult` also carries what was done), e.g.
    ``CallbackRepairs(on_repoll=poll_now)``."""

    on_repoll: RepairCallback | None = None
    on_resync_clock: RepairCallback | None = None
    on_rekey: RepairCallback | None = None
    on_fallback_transport: RepairCallback | None = None

    @staticmethod
    async def _call(cb: RepairCallback | None, event: DiagnosedEvent) -> RepairResult:
        if cb is None:
            return RepairResult(RepairOutcome.UNSUPPORTED)
        return _result(await cb(event))

    async def repoll(self, event: DiagnosedEvent) -> RepairResult:
        return await self._call(self.on_repoll, event)

    async def resync_clock(self, event: DiagnosedEvent) -> RepairResult:
        return await self._call(self.on_resync_clock, event)

    async def rekey(self, event: DiagnosedEvent) -> RepairResult:
        return await self._call(self.on_rekey, event)

    async def fallback_transport(self, event: DiagnosedEvent) -> RepairResult:
        return await self._call(self.on_fallback_transport, event)


def _result(value: RepairResult | RepairOutcome | bool) -> RepairResult:
    if isinstance(value, RepairResult):
        return value
    if isinstance(value, RepairOutcome):
        return RepairResult(value)
    return RepairResult(RepairOutcome.SUCCEEDED if value else RepairOutcome.FAILED)


# --------------------------------------------------------------------------------------------
# Persistence
# --------------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS diagnostic_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    code INTEGER NOT NULL,
    device TEXT NOT NULL,
    device_kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    recommendation TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    count INTEGER NOT NULL,
    attempts TEXT NOT NULL,
    closed INTEGER,
    resolution TEXT,
    seq INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    sealed BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS diagnostic_open ON diagnostic_events(code, device) WHERE closed IS NULL;
CREATE INDEX IF NOT EXISTS diagnostic_seq ON diagnostic_events(seq);
CREATE TABLE IF NOT EXISTS diagnostic_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    wrapped BLOB NOT NULL
);
"""

# Migrations: 1 is the schema when versions began (its IF NOT EXISTS adopts an unversioned file).
# 2: the alert sequence reservation (smarthub.hub.alerts) lives beside the diagnoses it announces.
_ALERT_SEQUENCE = """
CREATE TABLE IF NOT EXISTS alert_sequence (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    reserved INTEGER NOT NULL
);
"""
SCHEMA = sqlite_files.Schema("diagnostics", [_SCHEMA, _ALERT_SEQUENCE])

_COLUMNS = (
    "id, code, device, device_kind, severity, recommendation, first_seen, last_seen, count, attempts,"
    " closed, resolution, seq, nonce, sealed"
)


class DiagnosticsTampered(Exception):
    """A stored event whose sealed evidence fails authentication."""


def _ts(t: datetime) -> int:
    return int(t.timestamp())


@overload
def _dt(ts: int) -> datetime: ...
@overload
def _dt(ts: None) -> None: ...
@overload
def _dt(ts: int | None) -> datetime | None: ...
def _dt(ts: int | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


class DiagnosticsLog:
    """The diagnosed events, in SQLite: WAL, ``synchronous=FULL``, like the interval history.

    Kept in its own file (``diagnostics.sqlite`` beside ``history.sqlite``, see :meth:`beside`)
    so its writes never contend with the history's transactions for the write lock. Evidence
    can carry consumption figures (a spike's kWh, a register's value), so it is sealed with
    AES-GCM like the history's values, under a key wrapped by the same hub master key; the
    row's code, device and first-seen time are the associated data. Codes, devices and times
    stay in clear for the WAN's queries.
    """

    def __init__(self, path: Path | str, master_key: bytes | None = None) -> None:
        self.path = str(path)
        if master_key is None:
            master_key = (
                os.urandom(32)
                if self.path == ":memory:"
                else load_or_create_master_key(Path(path).with_name("master.key"))
            )
        self._file = sqlite_files.open_database(self.path, SCHEMA)
        self._db, self._lock = self._file.connection, self._file.lock
        with self._file.transaction():
            row = self._db.execute("SELECT wrapped FROM diagnostic_key WHERE id=1").fetchone()
            if row is None:
                key = new_meter_key()
                self._db.execute("INSERT INTO diagnostic_key VALUES (1, ?)", (wrap(master_key, key),))
            else:
                key = unwrap(master_key, row[0])
        self._cipher = AESGCM(key)

    @classmethod
    def beside(cls, history_path: Path | str, master_key: bytes | None = None) -> DiagnosticsLog:
        """The log in ``diagnostics.sqlite`` next to the hub's history database."""
        return cls(Path(history_path).with_name("diagnostics.sqlite"), master_key)

    def shutdown(self) -> None:
        with self._lock:
            self._db.close()

    # -- sealing -----------------------------------------------------------------------
    @staticmethod
    def _aad(code: int, device: str, first_seen: int) -> bytes:
        return f"diag|{code}|{device}|{first_seen}".encode()

    def _seal(self, code: int, device: str, first_seen: int, evidence: str, numbers: dict[str, Any]):
        nonce = os.urandom(12)
        plain = json.dumps({"evidence": evidence, "numbers": numbers}, sort_keys=True).encode()
        return nonce, self._cipher.encrypt(nonce, plain, self._aad(code, device, first_seen))

    def _row(self, row: tuple) -> DiagnosedEvent:
        eid, code, device, kind, sev, rec, first, last, count, attempts, closed, resolution, seq = row[:13]
        nonce, sealed = row[13:]
        try:
            plain = json.loads(self._cipher.decrypt(nonce, sealed, self._aad(code, device, first)))
        except InvalidTag:
            raise DiagnosticsTampered(f"diagnostic event {eid} fails authentication") from None
        return DiagnosedEvent(
            id=eid,
            code=DiagnosisCode(code),
            device=device,
            device_kind=kind,
            severity=Severity(sev),
            evidence=plain["evidence"],
            numbers=plain["numbers"],
            recommendation=rec,
            first_seen=_dt(first),
            last_seen=_dt(last),
            count=count,
            attempts=tuple(
                RepairAttempt(RepairAction(a[0]), RepairOutcome(a[1]), _dt(a[2]), *a[3:])
                for a in json.loads(attempts)
            ),
            closed=_dt(closed),
            resolution=resolution,
            seq=seq,
        )

    def _next_seq(self) -> int:
        return int(self._db.execute("SELECT coalesce(max(seq), 0) + 1 FROM diagnostic_events").fetchone()[0])

    def _get(self, eid: int) -> DiagnosedEvent:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM diagnostic_events WHERE id=?", (eid,)).fetchone()
        if row is None:
            raise KeyError(f"no diagnostic event {eid}")
        return self._row(row)

    def _write(self, fn: Callable[[], int]) -> DiagnosedEvent:
        with self._lock:  # the event as written, read before another write can change it
            with self._file.transaction(locked=True):
                eid = fn()
            return self._get(eid)

    # -- writes ------------------------------------------------------------------------
    def record(
        self,
        code: DiagnosisCode,
        device: str,
        device_kind: str,
        now: datetime,
        evidence: str,
        numbers: dict[str, Any],
    ) -> DiagnosedEvent:
        """Raise the condition, or, while an event for (code, device) is open, update it:
        count + 1, last seen, the latest evidence."""
        info = CODE_INFO[code]

        def write() -> int:
            row = self._db.execute(
                "SELECT id, first_seen FROM diagnostic_events WHERE code=? AND device=? AND closed IS NULL",
                (int(code), device),
            ).fetchone()
            seq = self._next_seq()
            if row is None:
                first = _ts(now)
                nonce, sealed = self._seal(int(code), device, first, evidence, numbers)
                cur = self._db.execute(
                    "INSERT INTO diagnostic_events (code, device, device_kind, severity, recommendation,"
                    " first_seen, last_seen, count, attempts, closed, resolution, seq, nonce, sealed)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, 1, '[]', NULL, NULL, ?, ?, ?)",
                    (
                        int(code),
                        device,
                        device_kind,
                        info.severity.value,
                        info.recommendation,
                        first,
                        first,
                        seq,
                        nonce,
                        sealed,
                    ),
                )
                return int(cur.lastrowid or 0)
            eid, first = row
            nonce, sealed = self._seal(int(code), device, first, evidence, numbers)
            self._db.execute(
                "UPDATE diagnostic_events SET last_seen=max(last_seen, ?), count=count+1, seq=?, nonce=?,"
                " sealed=? WHERE id=?",
                (_ts(now), seq, nonce, sealed, eid),
            )
            return int(eid)

        return self._write(write)

    def disconnect(self) -> None:
        """Close the database connection (the hub is shutting down)."""
        self._db.close()

    def close(
        self, code: DiagnosisCode, device: str, now: datetime, resolution: str = "cleared"
    ) -> DiagnosedEvent | None:
        """Close the open event for (code, device), if any: the condition cleared ("cleared")
        or a repair fixed it ("repaired")."""
        with self._lock:
            row = self._db.execute(
                "SELECT id FROM diagnostic_events WHERE code=? AND device=? AND closed IS NULL",
                (int(code), device),
            ).fetchone()
        if row is None:
            return None

        def write() -> int:
            self._db.execute(
                "UPDATE diagnostic_events SET closed=?, resolution=?, seq=? WHERE id=? AND closed IS NULL",
                (_ts(now), resolution, self._next_seq(), row[0]),
            )
            return int(row[0])

        return self._write(write)

    def resolve(self, event_id: int, resolution: str) -> DiagnosedEvent:
        """Say how a closed event ended (a repair whose own check closed it: "repaired")."""

        def write() -> int:
            self._db.execute(
                "UPDATE diagnostic_events SET resolution=?, seq=? WHERE id=? AND closed IS NOT NULL",
                (resolution, self._next_seq(), event_id),
            )
            return event_id

        return self._write(write)

    def add_attempt(self, event_id: int, attempt: RepairAttempt) -> DiagnosedEvent:
        def write() -> int:
            (attempts,) = self._db.execute(
                "SELECT attempts FROM diagnostic_events WHERE id=?", (event_id,)
            ).fetchone()
            entry = [attempt.action.value, attempt.outcome.value, _ts(attempt.at)]
            if attempt.detail:
                entry.append(attempt.detail)
            done = [*json.loads(attempts), entry]
            self._db.execute(
                "UPDATE diagnostic_events SET attempts=?, seq=? WHERE id=?",
                (json.dumps(done), self._next_seq(), event_id),
            )
            return event_id

        return self._write(write)

    # -- reads -------------------------------------------------------------------------
    def get(self, event_id: int) -> DiagnosedEvent:
        with self._lock:
            return self._get(event_id)

    def open_events(self) -> list[DiagnosedEvent]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM diagnostic_events WHERE closed IS NULL ORDER BY id"
            ).fetchall()
            return [self._row(r) for r in rows]

    def events(self, after_id: int | None = None, limit: int = 100) -> list[DiagnosedEvent]:
        """Events with id above ``after_id``, oldest first: the WAN's incremental pull."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM diagnostic_events WHERE id > ? ORDER BY id LIMIT ?",
                (after_id or 0, limit),
            ).fetchall()
            return [self._row(r) for r in rows]

    def changes(self, after_seq: int = 0, limit: int = 100) -> list[DiagnosedEvent]:
        """Events created *or updated* (count, closure, repair) after ``after_seq``, in change order."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM diagnostic_events WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
            return [self._row(r) for r in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM diagnostic_events").fetchone()[0])


# --------------------------------------------------------------------------------------------
# The detectors
# --------------------------------------------------------------------------------------------

# Typical domestic maximum flows: a G4 gas meter's Qmax is 6 m3/h; a Q3 = 4 m3/h water meter's
# overload flow Q4 is 5 m3/h (MID / OIML R49).
DEFAULT_MAX_FLOW_M3H = {7: 6.0, 8: 5.0, 9: 5.0}
DEFAULT_RATING_W = 24_000.0  # 100 A single-phase cut-out at 240 V

_FLAG_CODES: dict[str, DiagnosisCode] = {
    "tamper": DiagnosisCode.TAMPER,
    "error": DiagnosisCode.METER_ERROR,
    "permanent_error": DiagnosisCode.METER_ERROR,
    "temporary_error": DiagnosisCode.METER_ERROR,
    "alarm": DiagnosisCode.METER_ERROR,
    "low_battery": DiagnosisCode.LOW_BATTERY,
    "power_low": DiagnosisCode.LOW_BATTERY,  # M-Bus status bit 3
    "power_failure": DiagnosisCode.POWER_FAILURE,
}
_FLAG_CODE_SET = frozenset(_FLAG_CODES.values())

# Keys whose value is the meter's own clock (DLMS/DSMR clock object; M-Bus date-time record).
_CLOCK_KEYS = ("0-0:1.0.0",)
# Protocols whose electricity registers are stamped with the meter's clock as read with them:
# the DSMR telegram time, and the Clock object a DLMS poll reads in the same association (a
# load profile's rows are older, so the latest capture time is the clock).
_CLOCKED_REGISTERS = frozenset({"dsmr", "dlms"})


@dataclass
class MeterProfile:
    """Per-meter expectations. ``None`` means: learn it (expected period) or use the default."""

    expected_period: timedelta | None = None
    stale_after: timedelta | None = None  # default 3 × the expected period
    rating_w: float = DEFAULT_RATING_W
    max_flow_m3h: float | None = None  # default by medium, DEFAULT_MAX_FLOW_M3H
    generator: bool = False  # registered generation: export is expected
    max_clock_drift: timedelta = timedelta(seconds=60)


@dataclass
class DiagnosticsConfig:
    interval_period: int = PERIOD
    missing_periods: int = 2  # a channel without an interval for longer than this many periods
    default_expected_period: timedelta = timedelta(minutes=15)  # until arrivals teach otherwise
    frame_window: int = 200
    min_frames: int = 20
    error_rate: float = 0.05  # raise above this share of bad frames
    clear_rate: float = 0.02  # clear at or below (hysteresis)
    poll_window: int = 20
    poll_consecutive: int = 3
    poll_rate: float = 0.3
    min_polls: int = 10
    rssi_window: int = 5
    weak_rssi_dbm: float = -95.0  # when the receiver's sensitivity is not known
    weak_margin_db: float = 6.0  # else: weak below its sensitivity plus this margin
    rssi_hysteresis_db: float = 3.0
    reverse_flow_quiet: timedelta = timedelta(hours=1)  # clears after this long without export
    retry_after: timedelta = timedelta(hours=1)  # a failed repair is retried after this
    # A single frame that fails to decrypt can be a corrupted one; a re-key waits for more.
    rekey_after_failures: int = 2


@dataclass
class _MeterState:
    port: str | None = None
    last_point: datetime | None = None
    gaps: deque[float] = field(default_factory=lambda: deque(maxlen=9))
    registers: dict[ObisCode, Reading] = field(default_factory=dict)  # high-water marks
    backwards: dict[ObisCode, Reading] = field(default_factory=dict)  # latest sample below the mark
    last_export_advance: datetime | None = None
    export_from: Reading | None = None
    estimated: dict[ObisCode, tuple[int, int]] = field(default_factory=dict)  # count, first start
    overdue: dict[ObisCode, int] = field(default_factory=dict)  # periods without an interval
    last_interval_end: dict[ObisCode, int] = field(default_factory=dict)
    spikes: set[ObisCode] = field(default_factory=set)
    rssi: deque[float] = field(default_factory=deque)


@dataclass
class _PortState:
    frames: deque[str] = field(default_factory=deque)  # "ok" or the error kind
    polls: deque[bool] = field(default_factory=deque)
    consecutive_failures: int = 0
    last_poll_error: str | None = None
    rssi: deque[float] = field(default_factory=deque)
    cycles: int = 0
    failures: int = 0


def _error_kind(err: Exception) -> str:
    if isinstance(err, WMBusDecryptionError | DlmsDecryptionError | ReplayError):
        return "decryption"
    if isinstance(err, ChecksumError):
        return "checksum"
    if isinstance(err, TruncatedFrame):
        return "truncated"
    if isinstance(err, MalformedFrame):
        return "malformed"
    return "other"


def _iso(t: datetime | int) -> str:
    if isinstance(t, int):
        t = datetime.fromtimestamp(t, UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _num(v: Decimal) -> int | float:
    return int(v) if v == v.to_integral_value() else float(v)


def _is_register(obis: ObisCode) -> bool:
    return obis in _INTERVAL_CHANNELS or (obis.a == 1 and obis.c in (1, 2) and obis.d == 8)


_INTERVAL_CHANNELS = interval_channels()


class PollCounters(Protocol):
    """What :meth:`Diagnostics.observe_poll_loop` reads (``smarthub.han.poll.PollLoop`` has it)."""

    name: str
    cycles: int
    failures: int


class Diagnostics:
    """The detectors, fed observations; each ``observe_*`` / ``tick`` returns the events it
    raised or updated (closed ones are in the log). Call :meth:`repair_pending` to try repairs."""

    def __init__(
        self,
        log: DiagnosticsLog | None = None,
        repairs: Repairs | None = None,
        *,
        config: DiagnosticsConfig | None = None,
        profiles: dict[str, MeterProfile] | None = None,
    ) -> None:
        self.log = log or DiagnosticsLog(":memory:")
        self.repairs: Repairs = repairs or NoRepairs()
        self.config = config or DiagnosticsConfig()
        self.profiles: dict[str, MeterProfile] = dict(profiles or {})
        self._meters: dict[str, _MeterState] = {}
        self._ports: dict[str, _PortState] = {}
        # (code, device) of the open events, so clearing a condition that is not raised is free.
        self._open: set[tuple[DiagnosisCode, str]] = {(e.code, e.device) for e in self.log.open_events()}
        # Loss and return of mains (the last gasp): fed every frame and tick (smarthub.hub.mains).
        self.mains: MainsMonitor | None = None

    # -- configuration -----------------------------------------------------------------
    def set_profile(self, meter: str, profile: MeterProfile) -> None:
        self.profiles[meter] = profile

    def retire(self, meter: str, now: datetime, resolution: str = "meter replaced") -> None:
        """Stop watching a meter that left the home (removed or replaced): its open events close
        with ``resolution`` and its silence from now on is no fault."""
        self._meters.pop(meter, None)
        self.profiles.pop(meter, None)
        for code, device in sorted(self._open):
            if device == meter:
                self._clear(code, device, now, resolution)

    def profile(self, meter: str) -> MeterProfile:
        return self.profiles.get(meter) or MeterProfile()

    def _meter(self, meter: str) -> _MeterState:
        s = self._meters.get(meter)
        if s is None:
            s = self._meters[meter] = _MeterState()
        return s

    def _port(self, port: str) -> _PortState:
        s = self._ports.get(port)
        if s is None:
            s = self._ports[port] = _PortState()
        return s

    # -- raising and clearing ----------------------------------------------------------
    def _raise(
        self, code: DiagnosisCode, device: str, kind: str, now: datetime, evidence: str, **numbers: Any
    ) -> DiagnosedEvent:
        self._open.add((code, device))
        return self.log.record(code, device, kind, now, evidence, numbers)

    def _clear(self, code: DiagnosisCode, device: str, now: datetime, resolution: str = "cleared") -> None:
        if (code, device) in self._open:
            self._open.discard((code, device))
            self.log.close(code, device, now, resolution)

    # -- observations ------------------------------------------------------------------
    def observe_points(
        self,
        port: str,
        points: Sequence[DataPoint],
        received: datetime,
        *,
        rssi_dbm: float | None = None,
        sensitivity_dbm: float | None = None,
    ) -> list[DiagnosedEvent]:
        """A decoded frame (or poll cycle) from ``port``: the meters in it are alive; their
        flags, clocks and radio levels are checked. ``rssi_dbm`` is the port's own reception
        level for the frame, when the radio reports one: a frame from one meter counts towards
        that meter's level (a radio port hears several meters), else the port's.
        ``sensitivity_dbm``: the receiver's, so a weak signal is judged against it."""
        out: list[DiagnosedEvent] = []
        if points:
            self._frame(port, "ok")
        by_meter: dict[str, list[DataPoint]] = {}
        for p in points:
            by_meter.setdefault(p.meter, []).append(p)
        for meter, pts in by_meter.items():
            out += self._meter_points(port, meter, pts, received)
        if rssi_dbm is not None:
            weak = None if sensitivity_dbm is None else sensitivity_dbm + self.config.weak_margin_db
            if len(by_meter) == 1:
                [meter] = by_meter
                levels, device, kind = self._meter(meter).rssi, meter, METER
            else:
                levels, device, kind = self._port(port).rssi, port, PORT
            levels.append(float(rssi_dbm))
            while len(levels) > self.config.rssi_window:
                levels.popleft()
            out += self._rssi(device, kind, levels, received, weak)
        if points:
            self._clear(DiagnosisCode.DECRYPTION_FAILURES, port, received)
            out += self._frame_rate(port, received)
            if self.mains is not None:
                self.mains.observe(points, received)
        return out

    def _meter_points(
        self, port: str, meter: str, pts: list[DataPoint], received: datetime
    ) -> list[DiagnosedEvent]:
        out: list[DiagnosedEvent] = []
        ms = self._meter(meter)
        ms.port = port
        if ms.last_point is not None and received > ms.last_point:
            ms.gaps.append((received - ms.last_point).total_seconds())
        ms.last_point = received if ms.last_point is None else max(ms.last_point, received)
        self._clear(DiagnosisCode.STALE_METER, meter, received)
        self._clear(DiagnosisCode.DECRYPTION_FAILURES, meter, received)

        # Status flags: raised while the meter's frames carry them, cleared by a frame without.
        flagged: dict[DiagnosisCode, dict[str, int]] = {}
        for p in pts:
            for f in p.flags:
                code = _FLAG_CODES.get(f)
                if code is not None:
                    flagged.setdefault(code, {}).setdefault(f, 0)
                    flagged[code][f] += 1
        for code in _FLAG_CODE_SET:
            if code in flagged:
                names = flagged[code]
                text = ", ".join(f"'{f}' on {n} of {len(pts)} data points" for f, n in sorted(names.items()))
                out.append(
                    self._raise(
                        code,
                        meter,
                        METER,
                        received,
                        f"meter status flag {text} ({pts[0].protocol})",
                        flags=sorted(names),
                        points=len(pts),
                        protocol=pts[0].protocol,
                    )
                )
            else:
                self._clear(code, meter, received)

        # Radio level reported by the meter's frame (wM-Bus RSSI, VIFE 0xFD 0x71 reception level).
        for p in pts:
            if (p.key.endswith(":rssi") or "vife_0xfd_0x71" in p.key) and isinstance(p.value, Decimal):
                ms.rssi.append(float(p.value))
                while len(ms.rssi) > self.config.rssi_window:
                    ms.rssi.popleft()
        if any(p.key.endswith(":rssi") or "vife_0xfd_0x71" in p.key for p in pts):
            out += self._rssi(meter, METER, ms.rssi, received)

        # The meter's clock: an explicit clock value, else the capture time DSMR stamps its
        # electricity readings with (the telegram time). Other capture times may be historic.
        meter_time: datetime | None = None
        for p in pts:
            t: datetime | None = None
            if (p.key in _CLOCK_KEYS or p.key.endswith(":datetime")) and isinstance(p.value, str):
                try:
                    t = datetime.fromisoformat(p.value)
                except ValueError:
                    t = None
                if t is not None and t.tzinfo is None:
                    t = None
            elif p.protocol in _CLOCKED_REGISTERS and p.key.startswith("1-0:") and p.time is not None:
                t = p.time
            if t is not None and (meter_time is None or t > meter_time):
                meter_time = t
        if meter_time is not None:
            out += self.observe_clock(meter, meter_time, received)
        return out

    def observe_errors(
        self, port: str, errors: Sequence[Exception], received: datetime
    ) -> list[DiagnosedEvent]:
        """Decode errors from ``port`` (``PortBatch.errors``): each is a bad frame in the window.
        Decryption failures also raise the security event on the meter (or port) for a re-key."""
        out: list[DiagnosedEvent] = []
        for err in errors:
            kind = _error_kind(err)
            self._frame(port, kind)
            if kind == "decryption":
                meter = getattr(err, "meter", None)
                device, dkind = (meter, METER) if meter else (port, PORT)
                ps = self._port(port)
                bad = sum(1 for k in ps.frames if k == "decryption")
                out.append(
                    self._raise(
                        DiagnosisCode.DECRYPTION_FAILURES,
                        device,
                        dkind,
                        received,
                        f"{bad} decryption failures in {len(ps.frames)} frames on port {port}: {err}",
                        failures=bad,
                        frames=len(ps.frames),
                        port=port,
                        error=str(err),
                    )
                )
        if errors:
            out += self._frame_rate(port, received)
        return out

    def _frame(self, port: str, kind: str) -> None:
        ps = self._port(port)
        ps.frames.append(kind)
        while len(ps.frames) > self.config.frame_window:
            ps.frames.popleft()

    def _frame_rate(self, port: str, now: datetime) -> list[DiagnosedEvent]:
        """Link errors (CRC, truncation, grammar) over the window of the last frames; decryption
        failures are counted in the evidence but have their own event and repair (re-key)."""
        ps = self._port(port)
        n = len(ps.frames)
        counts = {k: 0 for k in ("checksum", "truncated", "malformed", "other", "decryption")}
        for k in ps.frames:
            if k != "ok":
                counts[k] += 1
        bad = counts["checksum"] + counts["truncated"] + counts["malformed"] + counts["other"]
        rate = bad / n if n else 0.0
        code = DiagnosisCode.HAN_DECODE_ERRORS
        if n >= self.config.min_frames and rate > self.config.error_rate:
            parts = [f"{counts['checksum']} CRC errors"]
            for k, label in (("truncated", "truncated"), ("malformed", "malformed"), ("other", "other")):
                if counts[k]:
                    parts.append(f"{counts[k]} {label}")
            if counts["decryption"]:
                parts.append(f"{counts['decryption']} decryption failures")
            text = f"{', '.join(parts)} in {n} frames ({rate:.1%} bad) on port {port}"
            numbers = {"frames": n, "bad": bad, "rate": round(rate, 4), **counts}
            return [self._raise(code, port, PORT, now, text, **numbers)]
        if rate <= self.config.clear_rate:
            self._clear(code, port, now)
        return []

    def _rssi(
        self, device: str, kind: str, levels: Iterable[float], now: datetime, weak: float | None = None
    ) -> list[DiagnosedEvent]:
        levels = list(levels)[-self.config.rssi_window :]
        mean = statistics.fmean(levels)
        code = DiagnosisCode.HAN_WEAK_SIGNAL
        weak = self.config.weak_rssi_dbm if weak is None else weak
        if mean < weak:
            text = f"mean RSSI {mean:.1f} dBm over the last {len(levels)} frames, below {weak:.0f} dBm"
            return [self._raise(code, device, kind, now, text, rssi_dbm=round(mean, 1), frames=len(levels))]
        if mean >= weak + self.config.rssi_hysteresis_db:
            self._clear(code, device, now)
        return []

    def observe_poll(
        self, loop_name: str, ok: bool, received: datetime, *, error: str | None = None
    ) -> list[DiagnosedEvent]:
        """The result of one poll cycle of ``loop_name`` (failed: timeout, I/O error, bad frame)."""
        ps = self._port(loop_name)
        ps.polls.append(ok)
        while len(ps.polls) > self.config.poll_window:
            ps.polls.popleft()
        if ok:
            ps.consecutive_failures = 0
        else:
            ps.consecutive_failures += 1
            ps.last_poll_error = error or ps.last_poll_error
        failed = sum(1 for x in ps.polls if not x)
        n = len(ps.polls)
        code = DiagnosisCode.HAN_POLL_FAILURES
        if ps.consecutive_failures >= self.config.poll_consecutive or (
            n >= self.config.min_polls and failed / n >= self.config.poll_rate
        ):
            why = f" (last: {ps.last_poll_error})" if ps.last_poll_error else ""
            text = (
                f"{ps.consecutive_failures} consecutive poll failures, {failed} of the last {n} polls"
                f" failed on {loop_name}{why}"
            )
            return [
                self._raise(
                    code,
                    loop_name,
                    PORT,
                    received,
                    text,
                    consecutive=ps.consecutive_failures,
                    failed=failed,
                    polls=n,
                    last_error=ps.last_poll_error,
                )
            ]
        if ok:
            self._clear(code, loop_name, received)
        return []

    def observe_poll_loop(self, loop: PollCounters, received: datetime) -> list[DiagnosedEvent]:
        """Read a poll loop's ``cycles``/``failures`` counters and observe the cycles since the
        last call (for wiring without touching the loop: call it after each cycle)."""
        ps = self._port(loop.name)
        new_cycles = loop.cycles - ps.cycles
        new_failures = min(loop.failures - ps.failures, max(new_cycles, 0))
        ps.cycles, ps.failures = loop.cycles, loop.failures
        out: list[DiagnosedEvent] = []
        for i in range(max(new_cycles, 0)):
            out += self.observe_poll(loop.name, i >= new_failures, received)
        return out

    def observe_storage(
        self, store: str, error: str | None, now: datetime, **numbers: Any
    ) -> list[DiagnosedEvent]:
        """The hub's own storage ``store`` (a database path): ``error`` is why a write failed
        because it is full, or None once a write succeeded again (the event clears)."""
        code = DiagnosisCode.STORAGE_FULL
        if error is not None:
            return [self._raise(code, store, STORAGE, now, error, **numbers)]
        self._clear(code, store, now)
        return []

    def observe_clock(self, meter: str, meter_time: datetime, received: datetime) -> list[DiagnosedEvent]:
        """The meter's clock read at ``received`` (hub time); e.g. a DLMS clock object read."""
        drift = (meter_time - received).total_seconds()
        limit = self.profile(meter).max_clock_drift.total_seconds()
        code = DiagnosisCode.CLOCK_DRIFT
        if abs(drift) > limit:
            way = "ahead of" if drift > 0 else "behind"
            text = (
                f"meter clock {abs(drift):.0f} s {way} the hub (meter {_iso(meter_time)},"
                f" hub {_iso(received)}; limit {limit:.0f} s)"
            )
            return [self._raise(code, meter, METER, received, text, drift_s=round(drift, 1), limit_s=limit)]
        self._clear(code, meter, received)
        return []

    def observe_readings(
        self, readings: Iterable[Reading], received: datetime | None = None
    ) -> list[DiagnosedEvent]:
        """Translated register readings: a register below its high-water mark is going
        backwards (the interval builder rejects such samples, so no intervals are built until it
        climbs back); an export register advancing on a non-generator is reverse flow."""
        out: list[DiagnosedEvent] = []
        for r in readings:
            if r.is_interval or not _is_register(r.obis):
                continue
            now = received or r.time
            ms = self._meter(r.meter)
            high = ms.registers.get(r.obis)
            if high is None:
                ms.registers[r.obis] = r
                continue
            value, _ = r.in_base_unit()
            high_value, _ = high.in_base_unit()
            if value < high_value and counts_since_set_day(r.obis):
                ms.registers[r.obis] = r  # an allocator's new billing period: the mark restarts
                continue
            if value < high_value:
                ms.backwards[r.obis] = r
                out.append(self._backwards(r.meter, ms, now))
                continue
            ms.registers[r.obis] = r
            if r.obis in ms.backwards:
                del ms.backwards[r.obis]
                if not ms.backwards:
                    self._clear(DiagnosisCode.REGISTER_BACKWARDS, r.meter, now)
            if (
                r.obis.a == 1
                and r.obis.c == 2
                and r.obis.d == 8
                and value > high_value
                and not self.profile(r.meter).generator
            ):
                ms.last_export_advance = now
                if ms.export_from is None:
                    ms.export_from = high
                start = ms.export_from
                text = (
                    f"export register {r.obis} advanced from {start.value} to {r.value} {r.unit.value}"
                    f" since {_iso(start.time)} on a meter not registered as a generator"
                )
                out.append(
                    self._raise(
                        DiagnosisCode.REVERSE_FLOW,
                        r.meter,
                        METER,
                        now,
                        text,
                        obis=str(r.obis),
                        **{"from": _num(start.value)},
                        to=_num(r.value),
                        unit=r.unit.value,
                    )
                )
        return out

    def _backwards(self, meter: str, ms: _MeterState, now: datetime) -> DiagnosedEvent:
        parts, numbers = [], []
        for obis, r in sorted(ms.backwards.items()):
            high = ms.registers[obis]
            parts.append(
                f"register {obis} went from {high.value} to {r.value} {r.unit.value}"
                f" ({_iso(high.time)} -> {_iso(r.time)})"
            )
            numbers.append(
                {"obis": str(obis), "from": _num(high.value), "to": _num(r.value), "unit": r.unit.value}
            )
        return self._raise(
            DiagnosisCode.REGISTER_BACKWARDS, meter, METER, now, "; ".join(parts), registers=numbers
        )

    def observe_interval(
        self, record: IntervalRecord, received: datetime | None = None
    ) -> list[DiagnosedEvent]:
        """A completed interval (``SmartHub.ingest``'s result): gaps, spikes, export."""
        now = received or datetime.fromtimestamp(record.end, UTC)
        ms = self._meter(record.meter)
        out: list[DiagnosedEvent] = []
        ms.last_interval_end[record.obis] = max(ms.last_interval_end.get(record.obis, 0), record.end)
        ms.overdue.pop(record.obis, None)
        if Quality.ESTIMATED_LINEAR_INTERPOLATION in Quality(record.quality):
            n, first = ms.estimated.get(record.obis, (0, record.start))
            ms.estimated[record.obis] = (n + 1, min(first, record.start))
            out.append(self._missing(record.meter, ms, now))
        else:
            ms.estimated.pop(record.obis, None)
            if not ms.estimated and not ms.overdue:
                self._clear(DiagnosisCode.MISSING_INTERVALS, record.meter, now)
        out += self._spike(record, ms, now)
        if record.obis == EXPORT_ACTIVE_ENERGY and not self.profile(record.meter).generator:
            if record.value > 0:
                ms.last_export_advance = now
                wh = Decimal(record.value).scaleb(record.power_of_ten)
                text = (
                    f"export {wh} Wh in the interval from {_iso(record.start)} on a meter not registered"
                    " as a generator"
                )
                out.append(
                    self._raise(
                        DiagnosisCode.REVERSE_FLOW,
                        record.meter,
                        METER,
                        now,
                        text,
                        obis=str(record.obis),
                        start=_iso(record.start),
                        export_wh=_num(wh),
                    )
                )
            else:
                self._end_reverse_flow(record.meter, ms, now)
        return out

    def _end_reverse_flow(self, meter: str, ms: _MeterState, now: datetime) -> None:
        ms.last_export_advance = None
        ms.export_from = None
        self._clear(DiagnosisCode.REVERSE_FLOW, meter, now)

    def _missing(self, meter: str, ms: _MeterState, now: datetime) -> DiagnosedEvent:
        parts = []
        for obis, (n, first) in sorted(ms.estimated.items()):
            parts.append(
                f"{obis}: {n} intervals estimated by linear interpolation from {_iso(first)}"
                " (gap in the meter's samples)"
            )
        for obis, periods in sorted(ms.overdue.items()):
            parts.append(
                f"{obis}: no interval for {periods} periods (last ended {_iso(ms.last_interval_end[obis])})"
            )
        return self._raise(
            DiagnosisCode.MISSING_INTERVALS,
            meter,
            METER,
            now,
            "; ".join(parts),
            estimated={str(o): n for o, (n, _) in ms.estimated.items()},
            overdue_periods={str(o): p for o, p in ms.overdue.items()},
        )

    def _spike(self, record: IntervalRecord, ms: _MeterState, now: datetime) -> list[DiagnosedEvent]:
        profile = self.profile(record.meter)
        hours = record.duration / 3600
        amount = Decimal(record.value).scaleb(record.power_of_ten)
        text: str | None = None
        numbers: dict[str, Any] = {}
        if record.obis.a == 1:
            mean_w = float(amount) / hours
            if mean_w > profile.rating_w:
                text = (
                    f"{record.obis} interval from {_iso(record.start)}: {amount} Wh in"
                    f" {record.duration // 60} min = {mean_w / 1000:.1f} kW average, above the"
                    f" {profile.rating_w / 1000:.1f} kW rating"
                )
                numbers = {
                    "energy_wh": _num(amount),
                    "average_w": round(mean_w, 1),
                    "rating_w": profile.rating_w,
                }
        elif record.obis.a in DEFAULT_MAX_FLOW_M3H:
            limit = profile.max_flow_m3h or DEFAULT_MAX_FLOW_M3H[record.obis.a]
            flow = float(amount) / hours
            if flow > limit:
                text = (
                    f"{record.obis} interval from {_iso(record.start)}: {amount} m3 in"
                    f" {record.duration // 60} min = {flow:.2f} m3/h, above the {limit:.2f} m3/h maximum flow"
                )
                numbers = {"volume_m3": _num(amount), "flow_m3h": round(flow, 3), "max_flow_m3h": limit}
        code = DiagnosisCode.CONSUMPTION_SPIKE
        if text is not None:
            ms.spikes.add(record.obis)
            return [
                self._raise(
                    code,
                    record.meter,
                    METER,
                    now,
                    text,
                    obis=str(record.obis),
                    start=_iso(record.start),
                    **numbers,
                )
            ]
        ms.spikes.discard(record.obis)
        if not ms.spikes:
            self._clear(code, record.meter, now)
        return []

    # -- time --------------------------------------------------------------------------
    def expected_period(self, meter: str) -> timedelta:
        """Configured, else the median of the meter's recent arrival gaps, else the default."""
        configured = self.profile(meter).expected_period
        if configured is not None:
            return configured
        ms = self._meters.get(meter)
        if ms is not None and len(ms.gaps) >= 2:
            return timedelta(seconds=statistics.median(ms.gaps))
        return self.config.default_expected_period

    def stale_after(self, meter: str) -> timedelta:
        return self.profile(meter).stale_after or 3 * self.expected_period(meter)

    def tick(self, now: datetime) -> list[DiagnosedEvent]:
        """Evaluate the time-based conditions: silent meters, overdue interval channels, export
        that has stopped."""
        out: list[DiagnosedEvent] = []
        if self.mains is not None:
            self.mains.tick(now)
        ts = now.timestamp()
        period = self.config.interval_period
        for meter, ms in self._meters.items():
            if ms.last_point is not None:
                silent = now - ms.last_point
                limit = self.stale_after(meter)
                if silent > limit:
                    expected = self.expected_period(meter)
                    text = (
                        f"no data point for {silent.total_seconds():.0f} s since {_iso(ms.last_point)}"
                        f" (expected every {expected.total_seconds():.0f} s, stale after"
                        f" {limit.total_seconds():.0f} s)"
                    )
                    out.append(
                        self._raise(
                            DiagnosisCode.STALE_METER,
                            meter,
                            METER,
                            now,
                            text,
                            silent_s=int(silent.total_seconds()),
                            expected_period_s=expected.total_seconds(),
                            stale_after_s=limit.total_seconds(),
                            port=ms.port,
                        )
                    )
            changed = False
            for obis, end in ms.last_interval_end.items():
                periods = int((ts - end) // period)
                if periods > self.config.missing_periods:
                    changed = changed or ms.overdue.get(obis) != periods
                    ms.overdue[obis] = periods
                elif obis in ms.overdue:
                    del ms.overdue[obis]
            if ms.overdue and changed:
                out.append(self._missing(meter, ms, now))
            elif not ms.overdue and not ms.estimated:
                self._clear(DiagnosisCode.MISSING_INTERVALS, meter, now)
            quiet = self.config.reverse_flow_quiet
            if ms.last_export_advance is not None and now - ms.last_export_advance > quiet:
                self._end_reverse_flow(meter, ms, now)
        return out

    # -- repairs -----------------------------------------------------------------------
    async def repair(self, event: DiagnosedEvent, now: datetime) -> DiagnosedEvent:
        """Try the local repairs that fit ``event`` in order until one succeeds; record each.
        Success closes the event ("repaired") and resets the detector's evidence for it, so the
        condition must be seen afresh to be raised again. Without a fitting repair the attempt is
        recorded as NONE / unsupported: the recommendation is for a person."""
        chain = CODE_INFO[event.code].repairs
        if not chain:
            none = RepairAttempt(RepairAction.NONE, RepairOutcome.UNSUPPORTED, now)
            return self.log.add_attempt(event.id, none)
        for action in chain:
            method = getattr(self.repairs, action.value)
            try:
                result = _result(await method(event))
            except Exception as err:  # a repair must never take the hub down
                log.warning("repair %s of %s %s failed: %s", action, event.code.name, event.device, err)
                result = RepairResult(RepairOutcome.FAILED, f"{type(err).__name__}: {err}")
            outcome = result.outcome
            event = self.log.add_attempt(event.id, RepairAttempt(action, outcome, now, result.detail))
            if outcome is RepairOutcome.SUCCEEDED:
                self._forget(event)
                self._open.discard((event.code, event.device))
                if self.log.get(event.id).is_open:
                    return self.log.close(event.code, event.device, now, "repaired") or event
                # The repair's own check (a poll that answered) already cleared the condition.
                return self.log.resolve(event.id, "repaired")
        return event

    async def repair_pending(self, now: datetime) -> list[DiagnosedEvent]:
        """Repair open events not tried yet, and retry failed ones after ``retry_after``."""
        out = []
        for e in self.log.open_events():
            if e.code is DiagnosisCode.DECRYPTION_FAILURES and e.count < self.config.rekey_after_failures:
                continue
            due = not e.attempts or (
                e.outcome is RepairOutcome.FAILED and now - e.attempts[-1].at >= self.config.retry_after
            )
            if due:
                out.append(await self.repair(e, now))
        return out

    def _forget(self, event: DiagnosedEvent) -> None:
        """Drop the evidence behind a repaired condition (the repair changed what it measured)."""
        code, device = event.code, event.device
        if code is DiagnosisCode.HAN_DECODE_ERRORS and device in self._ports:
            self._ports[device].frames.clear()
        elif code is DiagnosisCode.HAN_POLL_FAILURES and device in self._ports:
            ps = self._ports[device]
            ps.polls.clear()
            ps.consecutive_failures = 0
        elif code is DiagnosisCode.HAN_WEAK_SIGNAL:
            if device in self._ports:
                self._ports[device].rssi.clear()
            if device in self._meters:
                self._meters[device].rssi.clear()
        elif code is DiagnosisCode.MISSING_INTERVALS and device in self._meters:
            self._meters[device].estimated.clear()
            self._meters[device].overdue.clear()
        elif code is DiagnosisCode.DECRYPTION_FAILURES:
            for ps in self._ports.values():
                kept = [k for k in ps.frames if k != "decryption"]
                ps.frames.clear()
                ps.frames.extend(kept)
