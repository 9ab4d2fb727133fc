"""A flat's heating and water use for its tenant, month by month (issue 21 item 5).

The EU Energy Efficiency Directive (2012/27/EU as amended by 2018/2002, Art. 10a and Annex VIIa)
has tenants with remotely readable heat-cost allocators and water meters get their consumption
every month, compared with the previous month and the same month of the previous year, and with
an average user of the same category (here: the building's average per m² of heated area, sent by
the GDSC as ``ihd.building`` only when it is over at least five flats), in the units and the costs
of the billing. All of it but the building's figures is worked out here, on the hub, from the
flat's own sub-meters' half-hours in its history (the day totals retention leaves after 13
months count too), so it is there while the WAN is down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Protocol
from zoneinfo import ZoneInfo

from smarthub.hub.intervals import IntervalRecord
from smarthub.model import ObisCode
from smarthub.model.obis import HCA_UNITS, HOT_WATER_VOLUME, WATER_VOLUME
from smarthub.wan.contract.bodies import IhdBuilding

# The sub-meter media the tenant sees, their register and the billing's unit.
MEDIA: Mapping[str, tuple[ObisCode, str, str]] = {
    "heat_cost_allocator": (HCA_UNITS, "units", "Heating"),
    "warm_water": (HOT_WATER_VOLUME, "m³", "Hot water"),
    "water": (WATER_VOLUME, "m³", "Cold water"),
}


PAGE = 2000  # half-hours read at a time (a month is at most 1,488 of a meter)


class SubmeterHistory(Protocol):
    def meters(self) -> dict[str, str]: ...

    def query(
        self,
        meter: str,
        obis: ObisCode,
        *,
        start: int | None = ...,
        end: int | None = ...,
        offset: int = ...,
        limit: int = ...,
    ) -> list[IntervalRecord]: ...

    def daily(self, meter: str, obis: ObisCode) -> list[IntervalRecord]: ...


@dataclass(frozen=True, slots=True)
class MonthUse:
    medium: str
    label: str
    unit: str
    this_month: Decimal  # so far
    last_month: Decimal  # the last whole month: what the monthly information is about
    month_before: Decimal | None  # the month before it (None: not read then)
    last_month_last_year: Decimal | None  # the same month a year before (None: not read then)
    last: date  # the last whole month's first day
    building_average: Decimal | None  # a flat of this size in the building, for ``average_month``
    average_month: date | None
    price: Decimal | None  # per unit, as billed
    currency: str = "EUR"

    def cost(self, amount: Decimal | None) -> Decimal | None:
        if amount is None or self.price is None:
            return None
        return (amount * self.price).quantize(Decimal("0.01"))

    def to_json(self) -> dict[str, object]:
        def s(x: Decimal | None) -> str | None:
            return None if x is None else str(x)

        return {
            "medium": self.medium,
            "unit": self.unit,
            "this_month": s(self.this_month),
            "last_month": s(self.last_month),
            "last_month_is": self.last.isoformat()[:7],
            "month_before": s(self.month_before),
            "last_month_last_year": s(self.last_month_last_year),
            "building_average": s(self.building_average),
            "average_month": None if self.average_month is None else self.average_month.isoformat(),
            "price": s(self.price),
            "currency": self.currency,
            "cost_this_month": s(self.cost(self.this_month)),
            "cost_last_month": s(self.cost(self.last_month)),
            "cost_building_average": s(self.cost(self.building_average)),
        }


def first_of_month(d: date, months_back: int = 0) -> date:
    n = d.year * 12 + d.month - 1 - months_back
    return date(n // 12, n % 12 + 1, 1)


def _midnight(d: date, tz: ZoneInfo) -> int:
    return int(datetime.combine(d, time(), tz).timestamp())


def use_between(
    history: SubmeterHistory, meters: list[str], obis: ObisCode, lo: int, hi: int
) -> tuple[Decimal, bool]:
    """The meters' advances in [lo, hi) (half-hours and retention's day totals), and whether any
    was stored."""
    total, seen = Decimal(0), False
    for meter in meters:
        offset = 0
        while page := history.query(meter, obis, start=lo, end=hi, offset=offset, limit=PAGE):
            for r in page:
                total += Decimal(r.value).scaleb(r.power_of_ten)
            seen = True
            offset += len(page)
        for r in history.daily(meter, obis):
            if lo <= r.start < hi:
                total += Decimal(r.value).scaleb(r.power_of_ten)
                seen = True
    return total, seen


def monthly_info(
    history: SubmeterHistory, now: datetime, tz: ZoneInfo, building: IhdBuilding | None = None
) -> list[MonthUse]:
    """Per sub-meter medium the flat has: this month so far; the last whole month against the
    month before it and the same month a year before; the building's average for the month it
    was sent for (normally the last whole month)."""
    by_medium: dict[str, list[str]] = {}
    for meter, fuel in history.meters().items():
        if fuel in MEDIA:
            by_medium.setdefault(fuel, []).append(meter)
    today = now.astimezone(tz).date()
    this, last, before = first_of_month(today), first_of_month(today, 1), first_of_month(today, 2)
    year_ago, year_ago_end = first_of_month(today, 13), first_of_month(today, 12)
    out = []
    for medium, (obis, unit, label) in MEDIA.items():
        meters = by_medium.get(medium)
        if not meters:
            continue
        so_far, _ = use_between(history, meters, obis, _midnight(this, tz), int(now.timestamp()) + 1)
        previous, _ = use_between(history, meters, obis, _midnight(last, tz), _midnight(this, tz))
        two_ago, seen_before = use_between(history, meters, obis, _midnight(before, tz), _midnight(last, tz))
        a_year, seen = use_between(
            history, meters, obis, _midnight(year_ago, tz), _midnight(year_ago_end, tz)
        )
        average = price = None
        month = None
        currency = "EUR"
        if building is not None:
            per_m2 = building.per_m2.get(medium)
            if per_m2 is not None:
                average = (per_m2 * building.flat_area_m2).quantize(Decimal("0.001"))
                month = building.month
            price = building.prices.get(medium)
            currency = building.currency
        out.append(
            MonthUse(
                medium,
                label,
                unit,
                so_far,
                previous,
                two_ago if seen_before else None,
                a_year if seen else None,
                last,
                average,
                month,
                price,
                currency,
            )
        )
    return out


__all__ = ["MEDIA", "MonthUse", "first_of_month", "monthly_info", "use_between"]
