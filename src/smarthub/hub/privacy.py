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

Consent changes come from the GDSC as ``consent.set`` commands through the pull channel. Each
carries a ``version`` (the instant of the change at the GDSC, in microseconds since the epoch):
the hub keeps the version with the recipient's granularity and ignores any command older than
it, so commands that arrive late or twice never undo a later decision (latest state wins). A
change the consumer makes at the hub itself (the IHD) is versioned with the hub's clock.

The supplier's keys (change of supplier). Who the current supplier of each fuel is, as the hub
knows it, is an entry ``(fuel, supplier party id, LFDI of its certificate, effective instant)``
installed by the signed ``supplier.keys`` command and persisted next to the consents (it
survives a restart). Entries are kept by effective instant, so a change registered in advance
takes effect atomically at its instant with no further message: from then the new supplier's
certificate is admitted as a recipient (the supplier default, monthly unless the consumer
consented to more) and the old supplier's gets nothing, whatever consent it held before. A
party that has been a supplier here and supplies no fuel now is refused outright. The hub
identifies a recipient by its certificate's name as the WAN server verified it; :meth:`HubPrivacy.admits`
also checks a current supplier's certificate against the installed LFDI, for a server that
passes it. (Access to data of the old supplier's own period is the GDSC's matter, not the hub's.)
When the command arrives at or after the effective instant, its result carries the opening read:
each register channel of that fuel's meters at the effective half-hour boundary, as the hub's
interval builder fixed it (``register_end`` of the half-hour ending there).

**Scope** — the hub enforces the same limits as the GDSC's access policy (``gdsc.access``), so
reading the hub directly never gets more than reading through the GDSC. Besides the granularity,
``consent.set`` carries the consent's :class:`ConsentScope`, and the hub keeps it with the
recipient until the GDSC sends another (a change made at the IHD keeps it):

* **meters** — the meters the recipient's consents cover, each with its granularity (a consent
  for one meter gives nothing of the others); none given: every meter;
* **data period** — ``data_from``/``data_until``, the consenting occupant's tenancy: nothing
  recorded before it (a previous occupant's data) or after it;
* **events** — whether the consent covers the hub's diagnosed events.

A supplier reads, per fuel, only from the start of its current supply period (its entry's
effective instant) and only until the next entry, whatever its consent says
(:meth:`HubPrivacy.window`); the diagnosed events are open to a current supplier and to a
recipient whose consent covers events (:meth:`HubPrivacy.events_allowed`). Where the GDSC would
allow a little more (a supplier's data of an earlier supply period of the same premises, or its
default monthly data from before a consenting tenancy), the hub serves the narrower view: that
data is read through the GDSC.

**Appliances** (issue 25) — the appliance sub-meters (smart plugs: ``is_submeter``) say what the
household does, so by default they never leave the home. A consent whose scope carries
``appliances`` (a granularity) opens them to that recipient at that granularity, never finer than
the recipient's own (its ``meters`` list names supply meters and does not narrow the plugs; a
consent to appliances alone lists no supply meter, so the whole-home data stays home), within its
data period. The GDSC's own collection
(``gdsc``) pulls them on behalf of those recipients only: at the finest granularity any live
appliance consent allows (the transfer policy may narrow it further), within the span of their
data periods, and not at all once the last is withdrawn (at the hub, a "Stop sharing" at the
IHD sets the recipient to none, which withdraws it too). A recipient without it gets ``none`` for
every plug, so the WAN server lists none of them to it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from smarthub.clock import Clock, SystemClock
from smarthub.hub import sqlite_files
from smarthub.model import ObisCode, Quality, Reading
from smarthub.wan.contract.bodies import ConsentScope, ConsentSet, Granularity, SupplierKeys

LONDON = ZoneInfo("Europe/London")
GDSC_COLLECTION = "gdsc"  # the recipient the GDSC's collectors pull as (hub.transfer_policy)


SUPPLIER_DEFAULT = Granularity.MONTHLY
THIRD_PARTY_DEFAULT = Granularity.NONE


class IntervalLike(Protocol):  # the fields read here (hub.intervals.IntervalRecord has them)
    @property
    def start(self) -> int: ...
    @property
    def duration(self) -> int: ...
    @property
    def value(self) -> int: ...
    @property
    def quality(self) -> int: ...
    @property
    def register_end(self) -> int: ...
    @property
    def power_of_ten(self) -> int: ...


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


@dataclass(frozen=True, slots=True)
class SupplierEntry:
    """A supplier's keys as installed on the hub: who supplies ``fuel`` from ``effective``."""

    fuel: str
    supplier_id: str
    lfdi: str
    effective: datetime


def _consent_unversioned(db: sqlite3.Connection) -> int:
    """Which of the migrations below a consent file written before versions already has."""
    found = sqlite_files.columns(db, "consent")
    if not found:
        return 0
    if "version" not in found:
        return 1
    return 2 if "scope" not in found else 3


CONSENT_SCHEMA = sqlite_files.Schema(
    "consent",
    [
        # 1: consents per recipient
        "CREATE TABLE IF NOT EXISTS consent (recipient TEXT PRIMARY KEY, granularity TEXT NOT NULL,"
        " changed INTEGER NOT NULL);",
        # 2: consent versions (an older consent.set is ignored); a store written before them
        # holds version 0, below any command's; the supplier entries per fuel
        "ALTER TABLE consent ADD COLUMN version INTEGER NOT NULL DEFAULT 0;"
        "CREATE TABLE IF NOT EXISTS supplier_keys (fuel TEXT NOT NULL, effective INTEGER NOT NULL,"
        " supplier_id TEXT NOT NULL, lfdi TEXT NOT NULL, PRIMARY KEY (fuel, effective));",
        # 3: consent scopes; NULL, as in a store written before them, is every meter at any time
        "ALTER TABLE consent ADD COLUMN scope TEXT;",
    ],
    unversioned=_consent_unversioned,
)


class ConsentStore:
    """Per-recipient granularity, persisted; ``default_for`` applies until the consumer decides.

    Also the supplier entries (see the module docstring); ``clock`` says which entry is current.
    """

    def __init__(
        self, path: Path | str, suppliers: Sequence[str] = ("gdsc",), clock: Clock | None = None
    ) -> None:
        self.suppliers = set(suppliers)
        self.clock = clock or SystemClock()
        self._file = sqlite_files.open_database(path, CONSENT_SCHEMA)
        self._db, self._lock = self._file.connection, self._file.lock
        self.generation = 0  # advanced by every change, so views derived from it can be cached

    def default_for(self, recipient: str) -> Granularity:
        return SUPPLIER_DEFAULT if recipient in self.suppliers else THIRD_PARTY_DEFAULT

    def granularity(
        self, recipient: str, at: datetime | None = None, meter: str | None = None
    ) -> Granularity:
        """What ``recipient`` may have at ``at`` (default: now on the store's clock); of
        ``meter``, if given (the consent's meter list may leave it out or allow it less)."""
        at = at or self.clock.now()
        with self._lock:
            row = self._db.execute(
                "SELECT granularity, scope FROM consent WHERE recipient=?", (recipient,)
            ).fetchone()
            entries = self._entries()
        known = {e.supplier_id for e in entries}
        if recipient in known:
            if recipient not in {e.supplier_id for e in _current(entries, at).values()}:
                return Granularity.NONE  # supplied here once, supplies nothing now
            g = Granularity(row[0]) if row else SUPPLIER_DEFAULT
        else:
            g = Granularity(row[0]) if row else self.default_for(recipient)
        if meter is not None and row is not None and row[1]:
            listed = _scope(row[1]).meters
            if listed is not None:
                return min(g, listed.get(meter, Granularity.NONE), key=lambda x: x.rank)
        return g

    def scope(self, recipient: str) -> ConsentScope:
        """The scope kept with ``recipient``'s consent (unscoped if the GDSC sent none)."""
        with self._lock:
            row = self._db.execute("SELECT scope FROM consent WHERE recipient=?", (recipient,)).fetchone()
        return ConsentScope() if row is None or not row[0] else _scope(row[0])

    def set(
        self,
        recipient: str,
        granularity: Granularity,
        now: datetime,
        version: int | None = None,
        scope: ConsentScope | None = None,
    ) -> bool:
        """Record a consent decision; False (nothing changed) if a later one is already recorded.

        ``version`` orders decisions (microseconds since the epoch of the decision). A local
        decision (the consumer at the IHD) has none: it always applies, versioned with ``now``
        or just above the version held if that is later (the clocks of hub and GDSC differ).
        ``scope`` replaces the recipient's scope; None keeps the one held (a local decision)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT version, scope FROM consent WHERE recipient=?", (recipient,)
                ).fetchone()
                held = None if row is None else int(row[0])
                v = int(version) if version is not None else max(_micros(now), (held or 0) + 1)
                if held is not None and held > v:
                    self._db.execute("ROLLBACK")
                    return False
                kept = None if row is None else row[1]
                stored = kept if scope is None else json.dumps(scope.to_json(), sort_keys=True)
                self._db.execute(
                    "INSERT OR REPLACE INTO consent (recipient, granularity, changed, version, scope) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (recipient, granularity.value, int(now.timestamp()), v, stored),
                )
                self._db.execute("COMMIT")
                self.generation += 1
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return True

    def version(self, recipient: str) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT version FROM consent WHERE recipient=?", (recipient,)).fetchone()
        return None if row is None else int(row[0])

    def all(self) -> dict[str, Granularity]:
        with self._lock:
            return {
                r: Granularity(g) for r, g in self._db.execute("SELECT recipient, granularity FROM consent")
            }

    # -- the supplier's keys ---------------------------------------------------------------
    def install_supplier(self, entry: SupplierEntry) -> bool:
        """Install (idempotently) who supplies ``entry.fuel`` from ``entry.effective``; True if
        this changed anything. A later change of the same fuel registered before this one is
        dropped: the newest instruction for a fuel decides what comes after its instant."""
        eff = int(entry.effective.timestamp())
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                same = self._db.execute(
                    "SELECT supplier_id, lfdi FROM supplier_keys WHERE fuel=? AND effective=?",
                    (entry.fuel, eff),
                ).fetchone()
                later = self._db.execute(
                    "DELETE FROM supplier_keys WHERE fuel=? AND effective>?", (entry.fuel, eff)
                ).rowcount
                self._db.execute(
                    "INSERT OR REPLACE INTO supplier_keys VALUES (?, ?, ?, ?)",
                    (entry.fuel, eff, entry.supplier_id, entry.lfdi),
                )
                self._db.execute("COMMIT")
                self.generation += 1
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return later > 0 or same != (entry.supplier_id, entry.lfdi)

    def supplier_entries(self) -> list[SupplierEntry]:
        with self._lock:
            return self._entries()

    def suppliers_at(self, at: datetime | None = None) -> dict[str, SupplierEntry]:
        """The current supplier of each fuel at ``at`` (default now)."""
        return _current(self.supplier_entries(), at or self.clock.now())

    def _entries(self) -> list[SupplierEntry]:
        rows = self._db.execute(
            "SELECT fuel, supplier_id, lfdi, effective FROM supplier_keys ORDER BY fuel, effective"
        ).fetchall()
        return [SupplierEntry(f, s, lf, datetime.fromtimestamp(e, UTC)) for f, s, lf, e in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _current(entries: Sequence[SupplierEntry], at: datetime) -> dict[str, SupplierEntry]:
    out: dict[str, SupplierEntry] = {}
    for e in entries:  # ordered by fuel, effective: the last one not after ``at`` wins
        if e.effective <= at:
            out[e.fuel] = e
    return out


def _appliance_view(granularity: Granularity, scope: ConsentScope) -> Granularity:
    """The coarser of the recipient's granularity and its consent's appliance granularity."""
    if scope.appliances is None:
        return Granularity.NONE
    return min(granularity, scope.appliances, key=lambda g: g.rank)


def _scope(stored: str) -> ConsentScope:
    return ConsentScope.from_json(json.loads(stored))


def _micros(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000 + t.microsecond


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
        is_submeter: Callable[[str], bool] | None = None,
        cap: Callable[[str, Granularity], Granularity] | None = None,
    ) -> None:
        self.consent = consent
        # Narrows a recipient's granularity further: the GDSC's transfer policy for its own
        # collection (hub.transfer_policy). The consent still caps it: the coarser of the two.
        self.cap = cap
        # Sub-meters (appliance plugs) never leave the home: not in a supplier's opening read.
        self.is_submeter = is_submeter or (lambda _meter: False)
        self.history = history
        self.tz = tz
        self.mirror = mirror  # where the tariff registers' latest readings are (the data mirror)
        self.register_refresh = register_refresh
        self._served: dict[tuple[str, ObisCode], Reading] = {}
        self._lock = threading.Lock()
        self._appliance_cache: tuple[object, list[tuple[str, Granularity, ConsentScope]]] | None = None

    def granularity(self, recipient: str, meter: str | None = None) -> str:
        """The granularity ``recipient`` may have now (of ``meter``, if given)."""
        if meter is not None and self.is_submeter(meter):
            g = self.appliance_granularity(recipient)
        else:
            g = self.consent.granularity(recipient, meter=meter)
        return (g if self.cap is None else self.cap(recipient, g)).value

    def _appliance_consents(self) -> list[tuple[str, Granularity, ConsentScope]]:
        """Every recipient (but the GDSC's own collection) whose live consent covers appliances.
        Cached per consent-store generation and supplier-entry epoch: the WAN server asks for
        each meter of each request. (A supplier's consent lapses at a change of supplier's
        instant, not at a store change, so the current suppliers are part of the key.)"""
        key = (self.consent.generation, tuple(sorted(
            (f, e.supplier_id) for f, e in self.consent.suppliers_at().items()
        )))  # fmt: skip
        cached = self._appliance_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        found = self._find_appliance_consents()
        self._appliance_cache = (key, found)
        return found

    def _find_appliance_consents(self) -> list[tuple[str, Granularity, ConsentScope]]:
        out = []
        for recipient in sorted(self.consent.all()):
            if recipient == GDSC_COLLECTION:
                continue
            scope = self.consent.scope(recipient)
            g = _appliance_view(self.consent.granularity(recipient), scope)
            if g.has_intervals:
                out.append((recipient, g, scope))
        return out

    def appliance_granularity(self, recipient: str) -> Granularity:
        """What ``recipient`` may have of the appliance sub-meters ("Appliances" above)."""
        if recipient == GDSC_COLLECTION:
            held = [g for _, g, _ in self._appliance_consents()]
            return max(held, key=lambda x: x.rank) if held else Granularity.NONE
        g = _appliance_view(self.consent.granularity(recipient), self.consent.scope(recipient))
        return g if g.has_intervals else Granularity.NONE

    def appliances_shared(self) -> bool:
        """Whether any recipient may have appliance data now (else the plugs are not listed)."""
        return bool(self._appliance_consents())

    def window(
        self, recipient: str, fuel: str | None, meter: str | None = None
    ) -> tuple[int | None, int | None]:
        """The data time ``[lo, hi)`` (epoch seconds, None: open) ``recipient`` may read of a
        meter of ``fuel`` (None: something of the hub's own, such as a hub-level event): its
        consent's data period, and for a supplier its current supply period of that fuel (of
        any fuel it supplies, for ``fuel`` None). Of an appliance sub-meter (``meter``), the GDSC's
        collection reads within the span of the appliance consents' data periods."""
        if meter is not None and self.is_submeter(meter) and recipient == GDSC_COLLECTION:
            scopes = [sc for _, _, sc in self._appliance_consents()]
            if not scopes:
                return 0, 0
            starts, ends = [sc.data_from for sc in scopes], [sc.data_until for sc in scopes]
            return (
                None if None in starts else min(x for x in starts if x is not None),
                None if None in ends else max(x for x in ends if x is not None),
            )
        scope = self.consent.scope(recipient)
        lo, hi = scope.data_from, scope.data_until
        entries = self.consent.supplier_entries()
        if recipient in {e.supplier_id for e in entries}:
            now = self.consent.clock.now()
            current = _current(entries, now)
            mine = [e for f, e in current.items() if e.supplier_id == recipient and fuel in (None, f)]
            if not mine:
                return 0, 0  # supplies nothing of this here now: an empty window
            start = int(min(e.effective for e in mine).timestamp())
            end = None
            if fuel is not None:  # its period ends where the next supplier's (registered ahead) begins
                nxt = [e.effective for e in entries if e.fuel == fuel and e.effective > mine[0].effective]
                end = int(min(nxt).timestamp()) if nxt else None
            lo = start if lo is None else max(lo, start)
            hi = end if hi is None else (hi if end is None else min(hi, end))
        return lo, hi

    def events_allowed(self, recipient: str) -> bool:
        """Whether ``recipient`` may read the hub's diagnosed events: a current supplier, or a
        recipient whose consent covers events (and is not withdrawn)."""
        if self.consent.granularity(recipient) is Granularity.NONE:
            return False
        supplies = self.fuels_for(recipient)
        return bool(supplies) or self.consent.scope(recipient).events

    def admits(self, recipient: str, lfdi: str) -> bool:
        """Whether the certificate with ``lfdi`` may receive data as ``recipient`` now: anything
        but NONE, and, for a supplier, only through the certificate whose keys were installed."""
        if self.consent.granularity(recipient) is Granularity.NONE:
            return False
        entries = [e for e in self.consent.suppliers_at().values() if e.supplier_id == recipient]
        return not entries or any(e.lfdi == lfdi.upper() for e in entries)

    def fuels_for(self, recipient: str) -> frozenset[str] | None:
        """The fuels whose meters ``recipient`` may see: a supplier only those it supplies here
        now (its keys were installed per fuel by ``supplier.keys``); None for anyone else (the
        GDSC's own collection, a third party under consent: all meters, at their granularity)."""
        entries = self.consent.supplier_entries()
        if recipient not in {e.supplier_id for e in entries}:
            return None
        return frozenset(f for f, e in self.consent.suppliers_at().items() if e.supplier_id == recipient)

    def opening_read(self, fuel: str, effective: datetime) -> tuple[list[dict[str, Any]], list[str]]:
        """Every register channel of ``fuel``'s meters at the half-hour boundary ``effective``:
        the register value the hub fixed for that boundary (the ``register_end`` of the half-hour
        ending there), and the channels whose boundary is not known yet (``meter obis``)."""
        boundary = int(effective.timestamp())
        meters = {m for m, f in self.history.meters().items() if f == fuel and not self.is_submeter(m)}
        found, missing = [], []
        for meter, obis in self.history.channels():
            if meter not in meters:
                continue
            rows = self.history.query(meter, obis, start=boundary - 1800, end=boundary, limit=1)
            if not rows or rows[0].start + rows[0].duration != boundary:
                missing.append(f"{meter} {obis}")
                continue
            r = rows[0]
            found.append(
                {
                    "meter": meter,
                    "obis": str(obis),
                    "value": r.register_end,
                    "power_of_ten": r.power_of_ten,
                    "quality": r.quality,
                }
            )
        return found, missing

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
    def meters(self) -> dict[str, str]: ...

    def channels(self) -> list[tuple[str, ObisCode]]: ...

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


def consent_command(consent: ConsentStore, clock: Clock) -> Callable[[ConsentSet], dict[str, Any]]:
    """The ``consent.set`` management command: a consent change relayed from the GDSC.

    Body: ``recipient``, ``granularity`` and, from a GDSC that orders its changes, ``version``
    (microseconds since the epoch of the decision), and the consent's scope: ``meters`` (meter
    id → granularity, or null for every meter), ``data_from``/``data_until`` (epoch seconds or
    null) and ``events`` (module docstring, "Scope"). A command older than the decision the hub
    holds is acknowledged but not applied (``"applied": false``)."""

    def handle(body: ConsentSet) -> dict[str, Any]:
        recipient = body.recipient
        # A body with a scope carries the whole scope (absent fields: unrestricted); one without
        # (an older GDSC) keeps the scope held.
        applied = consent.set(recipient, body.granularity, clock.now(), body.version, body.scope)
        return {
            "recipient": recipient,
            "granularity": consent.granularity(recipient).value,
            "applied": applied,
            "version": consent.version(recipient),
            "scope": consent.scope(recipient).to_json(),
        }

    return handle


def supplier_keys_command(privacy: HubPrivacy, clock: Clock) -> Callable[[SupplierKeys], dict[str, Any]]:
    """The ``supplier.keys`` management command: install who supplies a fuel from an instant.

    Body: ``fuel``, ``supplier_id``, ``lfdi`` (the supplier certificate's, 40 hex digits) and
    ``effective`` (ISO 8601 with offset, on a half-hour boundary: GB supply changes at the start
    of a settlement period). Idempotent: sending it again changes nothing. Delivered at or after
    ``effective``, the result carries the opening read (``opening_read``, ``missing``)."""

    def handle(body: SupplierKeys) -> dict[str, Any]:
        entry = SupplierEntry(body.fuel, body.supplier_id, body.lfdi, body.effective)
        changed = privacy.consent.install_supplier(entry)
        now = clock.now()
        out: dict[str, Any] = {
            "fuel": entry.fuel,
            "supplier_id": entry.supplier_id,
            "effective": entry.effective.isoformat(),
            "changed": changed,
            "in_effect": now >= entry.effective,
        }
        if now >= entry.effective:
            read, missing = privacy.opening_read(entry.fuel, entry.effective)
            out["opening_read"] = read
            out["missing"] = missing
        return out

    return handle


def privacy_commands(privacy: HubPrivacy, clock: Clock) -> dict[str, Callable[[Any], dict[str, Any]]]:
    """The management commands the privacy filter executes, by command type."""
    return {
        "consent.set": consent_command(privacy.consent, clock),
        "supplier.keys": supplier_keys_command(privacy, clock),
    }
