"""The GDSC's bill: one pass over a supply's interval consumption for a billing period.

The arithmetic is the shared tariff calculation (`smarthub.model.tariff_calc`), so the bill
and the hub's in-home display agree to the penny; this module only selects the intervals of
the period and refuses ambiguous input. A billing period is whole local (Europe/London)
days, ``start`` to ``end`` exclusive, e.g. a calendar month.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import date, datetime

from smarthub.model.tariff import TariffSchedule
from smarthub.model.tariff_calc import Bill, IntervalConsumption, period_bounds, settle, totals_for
from smarthub.model.tariff_carbon import FixedIntensity, SeriesIntensity


class ConflictingConsumption(ValueError):
    """Two different values for one interval: the series must be reconciled before billing."""


def bill(
    schedule: TariffSchedule,
    carbon: FixedIntensity | SeriesIntensity,
    consumption: Iterable[IntervalConsumption],
    start: date,
    end: date,
) -> Bill:
    """The bill for local days ``start``..``end`` (exclusive). Intervals starting outside the
    period are ignored; an interval given twice identically counts once; an interval given
    twice with different values, or overlapping another, is refused."""
    lo, hi = period_bounds(start, end)
    chosen: dict[datetime, IntervalConsumption] = {}
    for c in consumption:
        if not lo <= c.start < hi:
            continue
        seen = chosen.get(c.start)
        if seen is not None and seen != c:
            raise ConflictingConsumption(
                f"interval {c.start.isoformat()} given as {seen.kwh} kWh/{seen.duration} "
                f"and as {c.kwh} kWh/{c.duration}"
            )
        chosen[c.start] = c
    ordered = sorted(chosen.values(), key=lambda c: c.start)
    for a, b in itertools.pairwise(ordered):
        if a.start + a.duration > b.start:
            raise ConflictingConsumption(
                f"intervals overlap: {a.start.isoformat()}+{a.duration} and {b.start.isoformat()}"
            )
    return settle(schedule, totals_for(schedule, carbon, ordered), start, end)
