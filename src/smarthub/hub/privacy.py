"""The privacy filter: what each recipient may receive, enforced in the home before data leaves.

The consumer chooses, per recipient (each supplier, each third party, the GDSC collecting on a
supplier's behalf), the granularity it gets: half-hourly, daily, monthly, only the totals of
the meter's tariff registers, or nothing. Defaults follow the GB regulated minimum: a supplier
gets monthly reads for billing unless the consumer opts in to more; anyone else gets nothing
without consent. Aggregation follows the consumer's local calendar (a local day is 46 or 50
half-hours on clock-change days).

Tariff-register totals are the energy registers as the meter keeps them (OBIS 1-0:1.8.e import
and 1-0:2.8.e export, E = 1, 2, ... the tariff rate, E = 0 the total over all rates), as the
hub last read them; such a recipient never gets an interval. So that pulling the totals often
cannot rebuild the intervals by differencing, the value served for a register changes at most
once per ``register_refresh`` (a day by default).
"""

from __future__ import annotations

import enum
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from smarthub.clock import Clock
from smarthub.model import ObisCode, Quality, Reading

LONDON = ZoneInfo("Europe/London")


class Granularity(enum.StrEnum):
    HALF_HOURLY = "half-hourly"
    DAILY = "daily"
    MONTHLY = "monthly"
    TARIFF_REGISTERS = "tariff-registers"  # the meter's per-tariff register totals, no intervals
    NONE = "none"

    @property
    def rank(self) -> int:
        return {"none": 0, "tariff-registers": 1, "monthly": 2, "daily": 3, "half-hourly": 4}[self.value]

    @property
    def has_intervals(self) -> bool:
        return self in (Granularity.HALF_HOURLY, Granularity.DAILY, Granularity.MONTHLY)


SUPPLIER_DEFAULT = Granularity.MONTHLY
THIRD_PARTY_DEFAULT = Granularity.NONE


class IntervalLike(Protocol):  # the fields aggregation reads (hub.intervals.IntervalRecord has them)
    start: int
    duration: int
    value: int
    quality: int


@dataclass(frozen=True, slots=True)
class Aggregate:
    start: int
    duration: int
    value: int
    quality: int
    intervals: int  # how many half-hours it sums


@dataclass(frozen=True, slots=True)
class TariffRegister:
    """A tariff register's total as served: ``value`` × 10^``power_of_ten`` Wh, read by the
    hub at ``time`` (epoch seconds)."""

    obis: ObisCode
    value: int
    power_of_ten: int
    time: int


def is_tariff_register(obis: ObisCode) -> bool:
    """Active energy import or export registers (IEC 62056-61: C 1/2, D 8; E is the tariff)."""
    return obis.a == 1 and obis.c in (1, 2) and obis.d == 8


class ConsentStore:
    """Per-recipient granularity, persisted; ``default_for`` applies until the consumer decides."""

    def __init__(self, path: Path | str, suppliers: Sequence[str] = ("gdsc",)) -> None:
        self.suppliers = set(suppliers)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS consent (recipient TEXT PRIMARY KEY, granularity TEXT NOT NULL, "
            "changed INTEGER NOT NULL)"
        )

    def default_for(self, recipient: str) -> Granularity:
        return SUPPLIER_DEFAULT if recipient in self.suppliers else THIRD_PARTY_DEFAULT

    def granularity(self, recipient: str) -> Granularity:
        with self._lock:
            row = self._db.execute(
                "SELECT granularity FROM consent WHERE recipient=?", (recipient,)
            ).fetchone()
        return Granularity(row[0]) if row else self.default_for(recipient)

    def set(self, recipient: str, granularity: Granularity, now: datetime) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO consent VALUES (?, ?, ?)",
                (recipient, granularity.value, int(now.timestamp())),
            )

    def all(self) -> dict[str, Granularity]:
        with self._lock:
            return {
                r: Granularity(g) for r, g in self._db.execute("SELECT recipient, granularity FROM consent")
            }

    def close(self) -> None:
        with self._lock:
            self._db.close()


def period_start(t: datetime, granularity: Granularity, tz: ZoneInfo) -> datetime:
    local = t.astimezone(tz)
    if granularity is Granularity.DAILY:
        d = local.date()
    elif granularity is Granularity.MONTHLY:
        d = date(local.year, local.month, 1)
    else:
        raise ValueError(f"no calendar period for {granularity}")
    return datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(UTC)


def next_period(start: datetime, granularity: Granularity, tz: ZoneInfo) -> datetime:
    local = start.astimezone(tz)
    if granularity is Granularity.DAILY:
        nxt = local.date() + timedelta(days=1)
    else:
        nxt = date(local.year + local.month // 12, local.month % 12 + 1, 1)
    return datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).astimezone(UTC)


def aggregate(
    records: Sequence[IntervalLike],
    granularity: Granularity,
    tz: ZoneInfo = LONDON,
    complete_before: int | None = None,
) -> list[Aggregate]:
    """Sum half-hours into local days or months. Only periods that have ended (before
    ``complete_before``, epoch seconds) are returned: a partial day would leak the half-hours
    one by one as it grows. Quality: VALID only if every half-hour was there and valid; else the
    union of their flags (QUESTIONABLE when half-hours are missing) without VALID."""
    buckets: dict[int, list[IntervalLike]] = {}
    bounds: dict[int, int] = {}
    for r in records:
        start = period_start(datetime.fromtimestamp(r.start, UTC), granularity, tz)
        key = int(start.timestamp())
        if key not in bounds:
            bounds[key] = int(next_period(start, granularity, tz).timestamp())
        buckets.setdefault(key, []).append(r)
    out = []
    for key in sorted(buckets):
        end = bounds[key]
        if complete_before is not None and end > complete_before:
            continue
        rows = buckets[key]
        flags = 0
        for r in rows:
            flags |= r.quality
        quality = Quality(flags)
        if len(rows) < (end - key) // 1800:
            quality |= Quality.QUESTIONABLE  # the hub did not hold every half-hour of the period
        if quality & ~Quality.VALID:
            quality &= ~Quality.VALID
        out.append(Aggregate(key, end - key, sum(r.value for r in rows), int(quality), len(rows)))
    return out


class HubPrivacy:
    """The privacy filter as the WAN server consults it: granularity per recipient, and the
    aggregated view of a channel at that granularity."""

    def __init__(
        self,
        consent: ConsentStore,
        history: HistoryLike,
        tz: ZoneInfo = LONDON,
        *,
        mirror: RegisterSource | None = None,
        register_refresh: timedelta = timedelta(days=1),
    ) -> None:
        self.consent = consent
        self.history = history
        self.tz = tz
        self.mirror = mirror  # where the tariff registers' latest readings are (the data mirror)
        self.register_refresh = register_refresh
        self._served: dict[tuple[str, ObisCode], Reading] = {}
        self._lock = threading.Lock()

    def granularity(self, recipient: str) -> str:
        return self.consent.granularity(recipient).value

    def aggregates(self, meter: str, obis: ObisCode, granularity: str, after: int | None) -> list[Aggregate]:
        g = Granularity(granularity)
        if g in (Granularity.HALF_HOURLY, Granularity.NONE, Granularity.TARIFF_REGISTERS):
            return []  # half-hours are not aggregated; the others may have no interval at all
        last = self.history.last(meter, obis)
        if last is None:
            return []
        # Start from the beginning of the period holding `after`, so that period is summed whole.
        start = None
        if after is not None:
            start = int(period_start(datetime.fromtimestamp(after, UTC), g, self.tz).timestamp())
        rows = self.history.query(meter, obis, start=start, limit=10_000_000)
        out = aggregate(rows, g, self.tz, complete_before=last.start + last.duration)
        return [a for a in out if after is None or a.start >= after]

    def registers(self, meter: str) -> list[TariffRegister]:
        """The meter's tariff-register totals for a recipient with that consent, by OBIS code:
        the hub's latest reading of each, refreshed at most once per ``register_refresh``."""
        if self.mirror is None:
            return []
        out = []
        with self._lock:
            for r in self.mirror.for_meter(meter):
                if not is_tariff_register(r.obis) or r.start is not None:
                    continue
                key = (meter, r.obis)
                served = self._served.get(key)
                if served is None or r.time - served.time >= self.register_refresh:
                    self._served[key] = served = r
                out.append(_tariff_register(served))
        return sorted(out, key=lambda t: t.obis)


def _tariff_register(r: Reading) -> TariffRegister:
    wh, _unit = r.in_base_unit()
    exponent = wh.normalize().as_tuple().exponent
    p10 = min(0, exponent) if isinstance(exponent, int) else 0
    return TariffRegister(r.obis, int(wh.scaleb(-p10)), p10, int(r.time.timestamp()))


class RegisterSource(Protocol):
    def for_meter(self, meter: str) -> list[Reading]: ...


class HistoryLike(Protocol):
    def last(self, meter: str, obis: ObisCode) -> IntervalLike | None: ...

    def query(
        self,
        meter: str,
        obis: ObisCode,
        *,
        start: int | None = None,
        end: int | None = None,
        offset: int = 0,
        limit: int = 1000,
    ) -> Sequence[IntervalLike]: ...


def consent_command(consent: ConsentStore, clock: Clock) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The ``consent.set`` management command: a consent change relayed from the GDSC."""

    def handle(body: dict[str, Any]) -> dict[str, Any]:
        recipient, granularity = str(body["recipient"]), Granularity(str(body["granularity"]))
        consent.set(recipient, granularity, clock.now())
        return {"recipient": recipient, "granularity": granularity.value}

    return handle
