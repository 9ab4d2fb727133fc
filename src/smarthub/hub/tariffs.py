"""The hub's running cost: interval consumption in, today/this week/this month out.

Readings arrive one interval at a time, in any order, and may be re-sent; each interval is
kept once (keyed by its start) and priced as it arrives with the shared tariff calculation
(`smarthub.model.tariff_calc`). Per local day the hub keeps *exact* totals per bill line, so
a corrected reading is taken back out exactly and a figure for any run of days is one
`settle` of the merged days: the same rounding, in the same place, as the GDSC's bill.

Figures the IHD reads (all to date, in £ inc. VAT, kWh and kg CO2):
- today: the current local day, with its full day's standing charge;
- this week: Monday to today; this month: the 1st to today (either from the day the tariff
  took effect, if later).
A tiered tariff's ``billing_period`` block is the period being summarised, as on a bill for
that period. A reading that cannot be priced yet (a dynamic price or carbon intensity not yet
published) is kept and counted as ``unpriced`` until a tariff update prices it; `bill` refuses
a period that has one rather than under-report.

Time is injected: every "now" is an argument.

**Distribution** (`TariffStore`, the contract's `TariffUpdate` body): the GDSC distributes a new tariff
version through the pull channel as the signed management command ``tariff.update`` with body
``{"tariff": <Tariff JSON>, "effective": <ISO 8601>, "version": <int>, "fuel": "electricity" |
"gas"}``. The hub validates it (the tariff model's own checks), refuses a version not above the one
it holds (`StaleTariffVersion`), commits it to SQLite (``synchronous=FULL``, one transaction)
*before* it is used, and swaps the supply's schedule: the version is in force from local
midnight of its ``effective_from`` day (which ``effective`` must name), so intervals before that
instant stay priced under the old version and those from it under the new one. On restart the
stored versions are merged back into the configured schedules (`TariffStore.merge`).
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from smarthub.hub import sqlite_files
from smarthub.model.tariff import (
    SETTLEMENT_PERIOD,
    InvalidTariff,
    MissingPrice,
    NoTariffInForce,
    Tariff,
    TariffError,
    TariffRef,
    TariffSchedule,
    Tiered,
    tariff_from_json,
)
from smarthub.model.tariff_calc import (
    Bill,
    ChargeKey,
    IntervalConsumption,
    Totals,
    carbon_grams,
    classify,
    local_day,
    settle,
    unit_price,
)
from smarthub.model.tariff_carbon import FixedIntensity, SeriesIntensity
from smarthub.wan.contract.bodies import TariffUpdate as TariffUpdateBody

log = logging.getLogger(__name__)

# How far ahead "until" is looked for: a rate unchanged for a week is shown without an end.
RATE_HORIZON = timedelta(days=7)


class OverlappingInterval(ValueError):
    """An interval overlaps a different, already stored one."""


@dataclass(frozen=True)
class Summary:
    start: date
    end: date  # exclusive
    cost: Decimal  # £ inc. VAT
    kwh: Decimal
    co2_kg: Decimal
    unpriced: int  # intervals in the period not yet priceable (excluded from the figures)
    bill: Bill


@dataclass(frozen=True)
class Rate:
    """A rate as the IHD shows it. ``start`` is when it began and ``until`` when it next changes
    (None: not within a week either way, or not time-bound); for a tiered tariff
    ``kwh_to_next_tier`` says how much more consumption in this block moves to the next tier."""

    tariff: TariffRef
    name: str
    unit_price_p_per_kwh: Decimal  # ex-VAT
    vat_rate: Decimal
    start: datetime | None = None
    until: datetime | None = None
    kwh_to_next_tier: Decimal | None = None


class CostAccumulator:
    def __init__(self, schedule: TariffSchedule, carbon: FixedIntensity | SeriesIntensity) -> None:
        self._schedule = schedule
        self._carbon = carbon
        self._readings: dict[datetime, IntervalConsumption] = {}
        self._starts: list[datetime] = []  # sorted keys of _readings, for overlap checks
        self._priced: dict[datetime, tuple[ChargeKey, Decimal, Decimal]] = {}
        self._unpriced: set[datetime] = set()
        self._days: dict[date, Totals] = {}

    @property
    def schedule(self) -> TariffSchedule:
        return self._schedule

    def intervals(self) -> list[IntervalConsumption]:
        """Every interval held, oldest first."""
        return [self._readings[t] for t in self._starts]

    # -- readings ------------------------------------------------------------------------------

    def add(self, c: IntervalConsumption) -> bool:
        """Record one interval. Returns False if it was already recorded exactly so; a new
        value for a recorded interval replaces the old one (a meter's corrected reading)."""
        old = self._readings.get(c.start)
        if old == c:
            return False
        if old is None:
            self._check_overlap(c)
        elif old.duration != c.duration:
            raise OverlappingInterval(
                f"interval {c.start.isoformat()} re-sent with duration {c.duration}, was {old.duration}"
            )
        if old is not None:
            self._take_out(old)
        else:
            bisect.insort(self._starts, c.start)
        self._readings[c.start] = c
        self._price(c)
        return True

    def _check_overlap(self, c: IntervalConsumption) -> None:
        i = bisect.bisect_left(self._starts, c.start)
        if i > 0:
            prev = self._readings[self._starts[i - 1]]
            if prev.start + prev.duration > c.start:
                raise OverlappingInterval(
                    f"interval {c.start.isoformat()} overlaps {prev.start.isoformat()}+{prev.duration}"
                )
        if i < len(self._starts) and c.start + c.duration > self._starts[i]:
            raise OverlappingInterval(
                f"interval {c.start.isoformat()}+{c.duration} overlaps {self._starts[i].isoformat()}"
            )

    def _price(self, c: IntervalConsumption) -> None:
        try:
            key, amount = classify(self._schedule, c)
            co2 = carbon_grams(self._carbon, c)
        except TariffError:
            self._unpriced.add(c.start)
            return
        self._priced[c.start] = (key, amount, co2)
        self._days.setdefault(c.day, Totals()).add(key, c.kwh, amount, co2)

    def _take_out(self, c: IntervalConsumption) -> None:
        if c.start in self._unpriced:
            self._unpriced.discard(c.start)
            return
        key, amount, co2 = self._priced.pop(c.start)
        self._days[c.day].add(key, c.kwh, amount, co2, sign=-1)

    def update_tariff(
        self, schedule: TariffSchedule, carbon: FixedIntensity | SeriesIntensity | None = None
    ) -> None:
        """A new tariff version (or newly published prices): re-price everything held."""
        self._schedule = schedule
        if carbon is not None:
            self._carbon = carbon
        self._priced.clear()
        self._unpriced.clear()
        self._days.clear()
        for c in self._readings.values():
            self._price(c)

    # -- figures ---------------------------------------------------------------------------------

    def _totals(self, start: date, end: date) -> tuple[Totals, int]:
        totals = Totals()
        d = start
        while d < end:
            day = self._days.get(d)
            if day is not None:
                totals.merge(day)
            d += timedelta(days=1)
        unpriced = sum(1 for t in self._unpriced if start <= local_day(t) < end)
        return totals, unpriced

    def bill(self, start: date, end: date) -> Bill:
        """What the GDSC's bill for local days ``start``..``end`` (exclusive) will say."""
        totals, unpriced = self._totals(start, end)
        if unpriced:
            raise MissingPrice(f"{unpriced} interval(s) between {start} and {end} cannot be priced yet")
        return settle(self._schedule, totals, start, end)

    def summary(self, start: date, end: date) -> Summary:
        """Figures for ``start``..``end``, from the day this tariff took effect if later (days
        before it belong to a previous tariff's bill)."""
        start = max(start, self._schedule.versions[0].effective_from)
        totals, unpriced = self._totals(start, end)
        b = settle(self._schedule, totals, start, end)
        return Summary(start, end, b.total, b.kwh, b.co2_kg, unpriced, b)

    def today(self, now: datetime) -> Summary:
        d = local_day(now)
        return self.summary(d, d + timedelta(days=1))

    def this_week(self, now: datetime) -> Summary:
        d = local_day(now)
        return self.summary(d - timedelta(days=d.weekday()), d + timedelta(days=1))

    def this_month(self, now: datetime) -> Summary:
        d = local_day(now)
        return self.summary(d.replace(day=1), d + timedelta(days=1))

    # -- rates -----------------------------------------------------------------------------------

    def current_rate(self, now: datetime) -> Rate | None:
        tariff = self._schedule.in_force(local_day(now))
        if isinstance(tariff.pricing, Tiered):
            return self._tier(tariff.ref, now, 0)
        return self._window(_period_start(now))

    def next_rate(self, now: datetime) -> Rate | None:
        """The rate that follows the current one (None: no change within a week, or prices for
        the next period not yet published). For a tiered tariff: the next tier up."""
        tariff = self._schedule.in_force(local_day(now))
        if isinstance(tariff.pricing, Tiered):
            return self._tier(tariff.ref, now, 1)
        current = self._window(_period_start(now))
        if current is None or current.until is None:
            return None
        return self._window(current.until)

    def _window(self, start: datetime) -> Rate | None:
        def at(t: datetime) -> tuple[TariffRef, str, Decimal, Decimal] | None:
            try:
                tariff = self._schedule.in_force(local_day(t))
                if isinstance(tariff.pricing, Tiered):
                    return None
                name, price = unit_price(tariff, t)
            except (MissingPrice, NoTariffInForce):
                return None
            return tariff.ref, name, price, tariff.vat_rate

        first = at(start)
        if first is None:
            return None
        began = start  # look back for when this rate began, so the IHD can say "since 00:30"
        while began > start - RATE_HORIZON:
            before = at(began - SETTLEMENT_PERIOD)
            if before is None or before[1:] != first[1:]:
                break
            began -= SETTLEMENT_PERIOD
        t = start + SETTLEMENT_PERIOD
        while t < start + RATE_HORIZON:
            here = at(t)
            if here is None or here[1:] != first[1:]:
                return Rate(*first, start=began, until=t)
            t += SETTLEMENT_PERIOD
        return Rate(*first, start=began, until=None)

    def _tier(self, ref: TariffRef, now: datetime, ahead: int) -> Rate | None:
        tariff = self._schedule.version(ref)
        pricing = tariff.pricing
        assert isinstance(pricing, Tiered)
        d = local_day(now)
        block_start = d if pricing.block == "day" else d.replace(day=1)
        totals, _ = self._totals(block_start, d + timedelta(days=1))
        used = sum((kwh for key, (kwh, _) in totals.lines.items() if key.tariff == ref), Decimal(0))
        floor = Decimal(0)
        for i, tier in enumerate(pricing.tiers):
            if tier.up_to_kwh is None or used < tier.up_to_kwh:
                j = i + ahead
                if j >= len(pricing.tiers):
                    return None
                t = pricing.tiers[j]
                room = None if t.up_to_kwh is None else t.up_to_kwh - max(used, floor)
                return Rate(ref, t.name, t.unit_rate_p_per_kwh, tariff.vat_rate, kwh_to_next_tier=room)
            floor = tier.up_to_kwh
        raise AssertionError("the last tier is unbounded")


def _period_start(t: datetime) -> datetime:
    p = SETTLEMENT_PERIOD.total_seconds()
    return datetime.fromtimestamp(t.timestamp() // p * p, UTC)


# -- distribution: the ``tariff.update`` command ----------------------------------------------

FUELS = ("electricity", "gas")


class TariffUpdateRefused(ValueError):
    """A ``tariff.update`` the hub will not apply; the text says why."""


class StaleTariffVersion(TariffUpdateRefused):
    """The update's version is not above the version the hub already holds."""


# The body of the command, checked when it arrives (``wan.contract.bodies``): the fuel, the tariff
# and the UTC instant of local midnight starting its effective_from.
TariffUpdate = TariffUpdateBody


_SCHEMA = """
CREATE TABLE IF NOT EXISTS tariff_versions (
    fuel TEXT NOT NULL,
    tariff_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    effective INTEGER NOT NULL,
    body TEXT NOT NULL,
    received INTEGER NOT NULL,
    PRIMARY KEY (fuel, tariff_id, version)
);
"""

# Migrations: 1 is the schema when versions began (its IF NOT EXISTS adopts an unversioned file).
SCHEMA = sqlite_files.Schema("tariffs", [_SCHEMA])


class TariffStore:
    """The tariff versions this hub has been sent, per fuel, kept across restarts."""

    def __init__(self, path: Path | str) -> None:
        self._file = sqlite_files.open_database(path, SCHEMA)
        self._db, self._lock = self._file.connection, self._file.lock

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def versions(self, fuel: str) -> list[Tariff]:
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM tariff_versions WHERE fuel = ? ORDER BY version", (fuel,)
            ).fetchall()
        return [tariff_from_json(r[0]) for r in rows]

    def merge(self, fuel: str, schedule: TariffSchedule) -> TariffSchedule:
        """``schedule`` (as configured) plus the versions distributed to this hub since."""
        for t in self.versions(fuel):
            if t.tariff_id != schedule.tariff_id:
                continue  # a version of a tariff this supply is no longer on
            try:
                schedule = schedule.with_version(t)
            except InvalidTariff as err:  # the configuration now says otherwise: it wins
                log.warning("stored %s tariff version %s not used: %s", fuel, t.version, err)
        return schedule

    def apply(self, accumulator: CostAccumulator, update: TariffUpdate, now: datetime) -> TariffSchedule:
        """Check ``update`` against the accumulator's schedule, commit it, then switch to it."""
        current = accumulator.schedule
        t = update.tariff
        if t.tariff_id != current.tariff_id:
            raise TariffUpdateRefused(
                f"tariff.update: {update.fuel} is on tariff {current.tariff_id!r}, the update is for "
                f"{t.tariff_id!r} (a change of tariff is a new supply configuration, not a version)"
            )
        latest = current.versions[-1]
        if t.version <= latest.version:
            raise StaleTariffVersion(
                f"tariff.update: version {t.version} of {t.tariff_id!r} is not newer than version "
                f"{latest.version}, which this hub already holds"
            )
        try:
            schedule = current.with_version(t)
        except InvalidTariff as err:
            raise TariffUpdateRefused(f"tariff.update: {err}") from None
        with self._file.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO tariff_versions VALUES (?, ?, ?, ?, ?, ?)",
                (
                    update.fuel,
                    t.tariff_id,
                    t.version,
                    int(update.effective.timestamp()),
                    t.to_json(),
                    int(now.timestamp()),
                ),
            )
        accumulator.update_tariff(schedule)
        return schedule
