"""Hypothesis strategies for tariffs and consumption, shared by the tariff, billing, hub-cost and
automation tests (imported as ``model.test_tariff_strategies``), plus an independent reference
bill in exact fractions that the shared calculation is checked against."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from math import floor
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from smarthub.model.tariff import (
    Dynamic,
    Flat,
    HalfHourlySeries,
    RatePeriod,
    Tariff,
    TariffSchedule,
    Tier,
    Tiered,
    TimeOfUse,
)
from smarthub.model.tariff_calc import IntervalConsumption
from smarthub.model.tariff_carbon import FixedIntensity, SeriesIntensity

LONDON = ZoneInfo("Europe/London")
SPRING = date(2026, 3, 29)  # 46 settlement periods
AUTUMN = date(2026, 10, 25)  # 50 settlement periods
HH = timedelta(minutes=30)
WEEK = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def midnight(d: date) -> datetime:
    """Local midnight in UTC, computed independently of the code under test."""
    return datetime(d.year, d.month, d.day, tzinfo=LONDON).astimezone(UTC)


def decimals(lo: str, hi: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(Decimal(lo), Decimal(hi), places=places, allow_nan=False, allow_infinity=False)


prices = st.integers(0, 4).flatmap(lambda p: decimals("0", "60", p))


@st.composite
def day_schedule(draw: st.DrawFn, rate_names: list[str]) -> tuple[RatePeriod, ...]:
    """A random partition of the 48 half-hours into periods, rotated so one may wrap midnight."""
    cuts = sorted(draw(st.sets(st.integers(1, 47), max_size=6)))
    shift = draw(st.integers(0, 47))
    bounds = [0, *cuts, 48]
    out = []
    for a, b in itertools.pairwise(bounds):
        s, e = (a + shift) % 48, (b + shift) % 48
        out.append(
            RatePeriod(
                start=f"{s // 2:02d}:{30 * (s % 2):02d}",
                end="24:00" if e == 0 and draw(st.booleans()) else f"{e // 2:02d}:{30 * (e % 2):02d}",
                rate=draw(st.sampled_from(rate_names)),
            )
        )
    return tuple(draw(st.permutations(out)))


@st.composite
def time_of_use(draw: st.DrawFn, window: tuple[date, date]) -> TimeOfUse:
    names = draw(
        st.lists(
            st.sampled_from(["night", "day", "peak", "off-peak", "super"]),
            min_size=1,
            max_size=4,
            unique=True,
        )
    )
    types = ["weekday", "weekend", "holiday"][: draw(st.integers(1, 3))]
    holidays = []
    if "holiday" in types:
        span = (window[1] - window[0]).days
        holidays = draw(
            st.lists(
                st.integers(0, span).map(lambda i: window[0] + timedelta(days=i)), max_size=2, unique=True
            )
        )
    return TimeOfUse(
        rates={n: draw(prices) for n in names},
        day_types={t: draw(day_schedule(names)) for t in types},
        week={d: draw(st.sampled_from(types[:2])) for d in WEEK},
        bank_holiday_day_type="holiday" if "holiday" in types else None,
        bank_holidays=tuple(holidays),
    )


@st.composite
def tiered(draw: st.DrawFn) -> Tiered:
    bounds = sorted(draw(st.sets(decimals("0.5", "20", 1), max_size=3)))
    tiers = [
        Tier(name=f"tier {i + 1}", up_to_kwh=b, unit_rate_p_per_kwh=draw(prices))
        for i, b in enumerate(bounds)
    ]
    tiers.append(Tier(name=f"tier {len(bounds) + 1}", up_to_kwh=None, unit_rate_p_per_kwh=draw(prices)))
    return Tiered(block=draw(st.sampled_from(["day", "billing_period"])), tiers=tuple(tiers))


def series(
    window: tuple[date, date], values: st.SearchStrategy[Decimal]
) -> st.SearchStrategy[HalfHourlySeries]:
    start, end = midnight(window[0]), midnight(window[1])
    n = int((end - start) / HH)
    return st.lists(values, min_size=n, max_size=n).map(
        lambda v: HalfHourlySeries(start=start, values=tuple(v))
    )


def pricing(window: tuple[date, date]) -> st.SearchStrategy[Flat | TimeOfUse | Tiered | Dynamic]:
    return st.one_of(
        prices.map(lambda p: Flat(unit_rate_p_per_kwh=p)),
        time_of_use(window),
        tiered(),
        series(window, decimals("-20", "80", 2)).map(lambda s: Dynamic(unit_rates_p_per_kwh=s)),
    )


vat_rates = st.one_of(
    st.sampled_from([Decimal("0.05"), Decimal("0"), Decimal("0.2")]), decimals("0", "0.3", 4)
)


@st.composite
def schedules(
    draw: st.DrawFn, window: tuple[date, date], kinds: st.SearchStrategy | None = None
) -> TariffSchedule:
    """One to three versions; the first in force before the window, later ones inside it (a
    later one on the same day as another re-issues it)."""
    span = (window[1] - window[0]).days
    offsets = sorted(draw(st.lists(st.integers(0, max(span - 1, 0)), max_size=2)))  # repeats: re-issues
    starts = [
        window[0] - timedelta(days=draw(st.integers(0, 30))),
        *(window[0] + timedelta(days=o) for o in offsets),
    ]
    return TariffSchedule(
        Tariff(
            tariff_id="t",
            version=i + 1,
            effective_from=d,
            standing_charge_p_per_day=draw(decimals("0", "80", draw(st.integers(0, 3)))),
            vat_rate=draw(vat_rates),
            pricing=draw(kinds if kinds is not None else pricing(window)),
        )
        for i, d in enumerate(starts)
    )


def carbons(window: tuple[date, date]) -> st.SearchStrategy[FixedIntensity | SeriesIntensity]:
    return st.one_of(
        decimals("0", "500", 1).map(lambda g: FixedIntensity(g_per_kwh=g)),
        series(window, decimals("0", "500", 1)).map(lambda s: SeriesIntensity(g_per_kwh=s)),
    )


windows = st.tuples(
    st.sampled_from([SPRING, AUTUMN, date(2026, 1, 30), date(2026, 12, 31)]),
    st.integers(-2, 1),
    st.integers(1, 4),
).map(lambda t: (t[0] + timedelta(days=t[1]), t[0] + timedelta(days=t[1] + t[2])))


@st.composite
def consumption(draw: st.DrawFn, window: tuple[date, date], max_size: int = 60) -> list[IntervalConsumption]:
    """Half-hours of the window (some as two quarter-hours), in time order."""
    start, end = midnight(window[0]), midnight(window[1])
    n = int((end - start) / HH)
    slots = sorted(draw(st.sets(st.integers(0, n - 1), max_size=max_size)))
    kwh = decimals("0", "4", 3)
    out = []
    for i in slots:
        t = start + i * HH
        if draw(st.integers(0, 4)) == 0:
            q = timedelta(minutes=15)
            out += [IntervalConsumption(t, q, draw(kwh)), IntervalConsumption(t + q, q, draw(kwh))]
        else:
            out.append(IntervalConsumption(t, HH, draw(kwh)))
    return out


# -- an independent reference: Fractions, wall-clock arithmetic, no code shared with tariff_calc --


def ref_round(x: Fraction) -> int:
    """Half away from zero, to a whole penny."""
    return floor(x + Fraction(1, 2)) if x >= 0 else -floor(-x + Fraction(1, 2))


def ref_rate(tou: TimeOfUse, t: datetime) -> str:
    local = t.astimezone(LONDON)
    holiday = local.date() in tou.bank_holidays and tou.bank_holiday_day_type
    day_type = holiday or tou.week[WEEK[local.weekday()]]
    minute = local.hour * 60 + local.minute
    for p in tou.day_types[day_type]:
        s = int(p.start[:2]) * 60 + int(p.start[3:])
        e = int(p.end[:2]) * 60 + int(p.end[3:])
        inside = s <= minute < e if s < e else (minute >= s or minute < e)
        if inside:
            return p.rate
    raise AssertionError("uncovered")


def ref_total_pence(
    schedule: TariffSchedule,
    carbon: FixedIntensity | SeriesIntensity,
    intervals: list[IntervalConsumption],
    start: date,
    end: date,
) -> tuple[int, Fraction, Fraction]:
    """(total pence inc. VAT, kWh, grams CO2) following the stated rounding rule."""
    versions = sorted(schedule.versions, key=lambda v: v.effective_from)

    def in_force(d: date) -> Tariff:
        return [v for v in versions if v.effective_from <= d][-1]

    lo, hi = midnight(start), midnight(end)
    lines: dict[tuple[int, str], Fraction] = defaultdict(Fraction)
    blocks: dict[tuple[int, date | None], Fraction] = defaultdict(Fraction)
    kwh_total = co2 = Fraction(0)
    for c in intervals:
        if not lo <= c.start < hi:
            continue
        d = c.start.astimezone(LONDON).date()
        v = in_force(d)
        k = Fraction(c.kwh)
        kwh_total += k
        step = (c.start - midnight(d)) // HH  # index of the settlement period since midnight
        g = (
            carbon.g_per_kwh
            if isinstance(carbon, FixedIntensity)
            else carbon.g_per_kwh.values[int((c.start - carbon.g_per_kwh.start) // HH)]
        )
        co2 += k * Fraction(g)
        p = v.pricing
        if isinstance(p, Flat):
            lines[(v.version, "flat")] += k * Fraction(p.unit_rate_p_per_kwh)
        elif isinstance(p, TimeOfUse):
            r = ref_rate(p, c.start)
            lines[(v.version, r)] += k * Fraction(p.rates[r])
        elif isinstance(p, Dynamic):
            idx = int((midnight(d) + step * HH - p.unit_rates_p_per_kwh.start) // HH)
            lines[(v.version, "dyn")] += k * Fraction(p.unit_rates_p_per_kwh.values[idx])
        else:
            blocks[(v.version, d if p.block == "day" else None)] += k
    for (version, _), used in blocks.items():
        p = schedule.versions[version - 1].pricing
        assert isinstance(p, Tiered)
        floor_kwh = Fraction(0)
        for tier in p.tiers:
            top = None if tier.up_to_kwh is None else Fraction(tier.up_to_kwh)
            part = (
                used - floor_kwh if top is None else min(max(used - floor_kwh, Fraction(0)), top - floor_kwh)
            )
            lines[(version, tier.name)] += max(part, Fraction(0)) * Fraction(tier.unit_rate_p_per_kwh)
            floor_kwh = top if top is not None else floor_kwh
    days: dict[int, int] = defaultdict(int)
    d = start
    while d < end:
        days[in_force(d).version] += 1
        d += timedelta(days=1)
    by_vat: dict[Fraction, int] = defaultdict(int)
    for (version, _), amount in lines.items():
        by_vat[Fraction(schedule.versions[version - 1].vat_rate)] += ref_round(amount)
    for version, n in days.items():
        v = schedule.versions[version - 1]
        by_vat[Fraction(v.vat_rate)] += ref_round(n * Fraction(v.standing_charge_p_per_day))
    total = sum(net + ref_round(net * rate) for rate, net in by_vat.items())
    return total, kwh_total, co2


def as_utc(d: date, hh: int, mm: int = 0) -> datetime:
    """A local wall time on day ``d`` as UTC (the first occurrence, if repeated)."""
    return datetime(d.year, d.month, d.day, hh, mm, tzinfo=LONDON).astimezone(UTC)
