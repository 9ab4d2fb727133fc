"""The one calculation of cost and CO2 from interval consumption, shared by hub and GDSC.

The hub (incrementally, as readings arrive) and the GDSC (in one pass over a billing period)
both price each interval with `classify`, add up exact per-line totals, and turn them into a
`Bill` with `settle`. Because the arithmetic before `settle` is exact and `settle` is the only
place that rounds, the IHD's figure and the bill agree to the penny whatever the order or
grouping in which intervals were added.

**Rounding rule** (applied here and nowhere else):

1. Each energy line (one rate of one tariff version: kWh x p/kWh summed exactly over the
   period; tiers shared out per block first) is rounded to a whole penny, ROUND_HALF_UP
   (halves away from zero, so a negative dynamic-price credit rounds symmetrically).
2. Each standing-charge line (days x p/day, per tariff version) is rounded the same way.
3. VAT is one line per VAT rate: (sum of the rounded lines at that rate) x rate, rounded the
   same way. Prices are ex-VAT.
4. Total = rounded lines + VAT lines. Money is carried in pounds with two places.
5. CO2 is sum(kWh x g/kWh) over the period, shown in kg to three places, ROUND_HALF_UP.

Arithmetic before rounding runs in a Decimal context that traps `Inexact`, so an exactness
failure is an error, never a silent penny.

Intervals: an interval starts on any instant and lies inside one settlement period
(durations of 30 min or less that do not cross a half-hour boundary), which is what makes its
ToU rate, dynamic price and carbon intensity unambiguous. Its local day (for standing
charges, daily blocks and tariff versions) is the Europe/London date of its start.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, Inexact, InvalidOperation, Overflow, localcontext

from smarthub.model.tariff import (
    LONDON,
    SETTLEMENT_PERIOD,
    Dynamic,
    Flat,
    Tariff,
    TariffError,
    TariffRef,
    TariffSchedule,
    Tiered,
    TimeOfUse,
)
from smarthub.model.tariff_carbon import FixedIntensity, SeriesIntensity

EXACT = Context(prec=80, rounding=ROUND_HALF_UP, traps=[Inexact, InvalidOperation, Overflow])
_ROUNDING = Context(prec=80, rounding=ROUND_HALF_UP, traps=[InvalidOperation, Overflow])
_PENNY = Decimal(1)
_POUND_PLACES = Decimal("0.01")
_KG_PLACES = Decimal("0.001")
ZERO = Decimal(0)


def round_pence(amount_p: Decimal) -> Decimal:
    """Rule 1-3: to a whole penny, ROUND_HALF_UP."""
    return amount_p.quantize(_PENNY, rounding=ROUND_HALF_UP, context=_ROUNDING)


def pounds(whole_pence: Decimal) -> Decimal:
    return (whole_pence / 100).quantize(_POUND_PLACES, context=EXACT)


def kg_co2(grams: Decimal) -> Decimal:
    return (grams / 1000).quantize(_KG_PLACES, rounding=ROUND_HALF_UP, context=_ROUNDING)


# -- time -----------------------------------------------------------------------------------


def local_day(t: datetime) -> date:
    return t.astimezone(LONDON).date()


def day_start(day: date) -> datetime:
    """UTC instant of local midnight (GB clocks change at 01:00 UTC, so midnight always exists)."""
    return datetime.combine(day, time(0), tzinfo=LONDON).astimezone(UTC)


def settlement_periods(day: date) -> int:
    """48, or 46/50 on the clock-change days."""
    return int((day_start(day + timedelta(days=1)) - day_start(day)) // SETTLEMENT_PERIOD)


@dataclass(frozen=True, slots=True)
class IntervalConsumption:
    """``kwh`` imported from ``start`` for ``duration``; lies inside one settlement period."""

    start: datetime
    duration: timedelta
    kwh: Decimal

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ValueError(f"interval start {self.start} must be timezone-aware")
        object.__setattr__(self, "start", self.start.astimezone(UTC))
        if self.duration <= timedelta(0):
            raise ValueError(f"interval duration {self.duration} must be positive")
        offset = timedelta(seconds=self.start.timestamp() % SETTLEMENT_PERIOD.total_seconds())
        if offset + self.duration > SETTLEMENT_PERIOD:
            raise ValueError(
                f"interval {self.start.isoformat()} + {self.duration} crosses a settlement-period "
                "boundary; split it into half-hours first"
            )
        if not isinstance(self.kwh, Decimal) or not self.kwh.is_finite():
            raise ValueError(f"kwh must be a finite Decimal, got {self.kwh!r}")
        if self.kwh < 0:
            raise ValueError(f"imported kWh cannot be negative ({self.kwh}) at {self.start.isoformat()}")
        if self.kwh.as_tuple().exponent < -6:  # type: ignore[operator]
            raise ValueError(f"kwh {self.kwh} has more than 6 decimal places")

    @property
    def day(self) -> date:
        return local_day(self.start)


# -- classification: one interval -> one line key and its exact amount ---------------------


@dataclass(frozen=True, slots=True, order=True)
class ChargeKey:
    """What an interval's energy is charged under. ``rate`` is the rate name (``"block"`` for a
    tiered tariff, shared out over tiers at `settle`); ``block`` is the local day for daily
    blocks, else None (blocks that span the whole period billed)."""

    tariff: TariffRef
    rate: str
    block: date | None = None


BLOCK = "block"


def classify(schedule: TariffSchedule, c: IntervalConsumption) -> tuple[ChargeKey, Decimal]:
    """The line ``c`` is charged under and its exact amount in pence (ex-VAT); zero for a tiered
    tariff, whose amount depends on the block total and is worked out in `settle`."""
    tariff = schedule.in_force(c.day)
    pricing = tariff.pricing
    with localcontext(EXACT):
        if isinstance(pricing, Flat):
            return ChargeKey(tariff.ref, "unit rate"), c.kwh * pricing.unit_rate_p_per_kwh
        if isinstance(pricing, TimeOfUse):
            rate = pricing.rate_at(c.start)
            return ChargeKey(tariff.ref, rate), c.kwh * pricing.rates[rate]
        if isinstance(pricing, Dynamic):
            return ChargeKey(tariff.ref, "half-hourly"), c.kwh * pricing.unit_rates_p_per_kwh.at(c.start)
        block = c.day if pricing.block == "day" else None
        return ChargeKey(tariff.ref, BLOCK, block), ZERO


def unit_price(tariff: Tariff, t: datetime) -> tuple[str, Decimal]:
    """Rate name and p/kWh (ex-VAT) at ``t`` for flat, ToU and dynamic tariffs."""
    p = tariff.pricing
    if isinstance(p, Flat):
        return "unit rate", p.unit_rate_p_per_kwh
    if isinstance(p, TimeOfUse):
        rate = p.rate_at(t)
        return rate, p.rates[rate]
    if isinstance(p, Dynamic):
        return "half-hourly", p.unit_rates_p_per_kwh.at(t)
    raise TariffError(f"tariff {tariff.tariff_id!r} is tiered: its unit price depends on consumption")


def carbon_grams(carbon: FixedIntensity | SeriesIntensity, c: IntervalConsumption) -> Decimal:
    with localcontext(EXACT):
        return c.kwh * carbon.at(c.start)


# -- totals and settlement ---------------------------------------------------------------------


@dataclass
class Totals:
    """Exact running sums: kWh and pence per `ChargeKey`, and grams of CO2."""

    lines: dict[ChargeKey, tuple[Decimal, Decimal]] = field(default_factory=dict)
    co2_g: Decimal = ZERO

    def add(self, key: ChargeKey, kwh: Decimal, amount_p: Decimal, co2_g: Decimal, sign: int = 1) -> None:
        with localcontext(EXACT):
            k, a = self.lines.get(key, (ZERO, ZERO))
            self.lines[key] = (k + sign * kwh, a + sign * amount_p)
            self.co2_g += sign * co2_g

    def merge(self, other: Totals) -> None:
        for key, (kwh, amount) in other.lines.items():
            self.add(key, kwh, amount, ZERO)
        with localcontext(EXACT):
            self.co2_g += other.co2_g


@dataclass(frozen=True)
class BillLine:
    description: str
    tariff: TariffRef | None
    quantity: Decimal  # kWh, days, or £ (the net a VAT line is charged on)
    unit: str  # "kWh", "day", "£"
    unit_price: Decimal | None  # p/kWh, p/day, or the VAT rate; None where it varies
    amount: Decimal  # £, two places


@dataclass(frozen=True)
class Bill:
    start: date  # first local day billed
    end: date  # local day after the last
    energy: tuple[BillLine, ...]
    standing: tuple[BillLine, ...]
    vat: tuple[BillLine, ...]
    kwh: Decimal
    co2_kg: Decimal

    @property
    def net(self) -> Decimal:
        return sum((line.amount for line in (*self.energy, *self.standing)), ZERO)

    @property
    def vat_total(self) -> Decimal:
        return sum((line.amount for line in self.vat), ZERO)

    @property
    def total(self) -> Decimal:
        return self.net + self.vat_total


def _days(start: date, end: date) -> Iterable[date]:
    d = start
    while d < end:
        yield d
        d += timedelta(days=1)


def settle(schedule: TariffSchedule, totals: Totals, start: date, end: date) -> Bill:
    """Round ``totals`` (the period's exact sums) into a bill for local days ``start``..``end``
    (end exclusive), adding a standing charge for every day of the period."""
    if end <= start:
        raise ValueError(f"billing period {start}..{end} is empty")
    # (tariff, rate) -> exact kWh, pence, unit price (None if it varied)
    energy: dict[tuple[TariffRef, str], tuple[Decimal, Decimal, Decimal | None]] = {}
    with localcontext(EXACT):
        for key, (kwh, amount) in totals.lines.items():
            tariff = schedule.version(key.tariff)
            pricing = tariff.pricing
            parts: list[tuple[str, Decimal, Decimal, Decimal | None]]  # rate, kWh, pence, unit price
            if isinstance(pricing, Tiered):
                parts = [
                    (t.name, k, k * t.unit_rate_p_per_kwh, t.unit_rate_p_per_kwh)
                    for t, k in pricing.split(kwh)
                ]
            elif isinstance(pricing, Flat):
                parts = [(key.rate, kwh, amount, pricing.unit_rate_p_per_kwh)]
            elif isinstance(pricing, TimeOfUse):
                parts = [(key.rate, kwh, amount, pricing.rates[key.rate])]
            else:
                parts = [(key.rate, kwh, amount, None)]
            for rate, k, a, price in parts:
                k0, a0, _ = energy.get((key.tariff, rate), (ZERO, ZERO, None))
                energy[(key.tariff, rate)] = (k0 + k, a0 + a, price)
        standing_days: dict[TariffRef, int] = {}
        for day in _days(start, end):
            ref = schedule.in_force(day).ref
            standing_days[ref] = standing_days.get(ref, 0) + 1

    def order(item: tuple[tuple[TariffRef, str], object]) -> tuple[int, int]:
        (ref, rate), _ = item
        return ref.version, schedule.version(ref).pricing.rate_names().index(rate)

    vat_base: dict[Decimal, Decimal] = {}  # VAT rate -> whole pence it is charged on
    energy_lines, standing_lines = [], []
    for (ref, rate), (kwh, amount, price) in sorted(energy.items(), key=order):
        if kwh == 0 and amount == 0:
            continue
        pence = round_pence(amount)
        vat_rate = schedule.version(ref).vat_rate
        vat_base[vat_rate] = vat_base.get(vat_rate, ZERO) + pence
        energy_lines.append(BillLine(f"Energy, {rate}", ref, kwh, "kWh", price, pounds(pence)))
    for ref, days in sorted(standing_days.items(), key=lambda kv: kv[0].version):
        tariff = schedule.version(ref)
        with localcontext(EXACT):
            pence = round_pence(days * tariff.standing_charge_p_per_day)
        vat_base[tariff.vat_rate] = vat_base.get(tariff.vat_rate, ZERO) + pence
        standing_lines.append(
            BillLine(
                "Standing charge", ref, Decimal(days), "day", tariff.standing_charge_p_per_day, pounds(pence)
            )
        )
    vat_lines = []
    for vat, base in sorted(vat_base.items()):
        with localcontext(EXACT):
            pence = round_pence(base * vat)
        vat_lines.append(
            BillLine(f"VAT at {(vat * 100).normalize():f}%", None, pounds(base), "£", vat, pounds(pence))
        )
    with localcontext(EXACT):
        kwh_total = sum((k for k, _, _ in energy.values()), ZERO)
    return Bill(
        start=start,
        end=end,
        energy=tuple(energy_lines),
        standing=tuple(standing_lines),
        vat=tuple(vat_lines),
        kwh=kwh_total,
        co2_kg=kg_co2(totals.co2_g),
    )


def totals_for(
    schedule: TariffSchedule,
    carbon: FixedIntensity | SeriesIntensity,
    intervals: Iterable[IntervalConsumption],
) -> Totals:
    """Exact totals of ``intervals`` (each counted once as given)."""
    totals = Totals()
    for c in intervals:
        key, amount = classify(schedule, c)
        totals.add(key, c.kwh, amount, carbon_grams(carbon, c))
    return totals


def period_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """UTC instants of the local midnights that open and close the period."""
    return day_start(start), day_start(end)


__all__ = [
    "BLOCK",
    "Bill",
    "BillLine",
    "ChargeKey",
    "IntervalConsumption",
    "Totals",
    "carbon_grams",
    "classify",
    "day_start",
    "kg_co2",
    "local_day",
    "period_bounds",
    "pounds",
    "round_pence",
    "settle",
    "settlement_periods",
    "totals_for",
    "unit_price",
]
