"""Daily register reads: a channel's cumulative register at each boundary of a calendar.

A hub publishes, beside each channel's half-hours, the register itself at the start of every
day (IEEE 2030.5 MeterReading of accumulationBehaviour summation, :mod:`.reading_type`), so
that the GDSC can check that a day's half-hours add up to the register's advance over the day
(its VEE gate). Which days depends on whom they are for: a recipient of half-hourly data gets
the register at every UTC midnight, the boundaries of the day sets it reads and of the GDSC's
days; a recipient of daily (monthly) data only at the local midnights (month starts) whose
totals it already has, so that differencing two reads reveals nothing finer than its consent.

A *grid* is a function ``(lo, hi) -> instants``: the boundaries in ``[lo, hi)``, epoch seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

DAY = 86400

Grid = Callable[[int, int], list[int]]


@dataclass(frozen=True, slots=True)
class RegisterRead:
    """A register's value at an instant, as a 2030.5 Reading: ``start`` the instant, duration 0,
    ``value`` in the channel's unit and power of ten, ``quality`` 2030.5 qualityFlags."""

    start: int
    value: int
    quality: int
    duration: int = 0


def utc_midnights(lo: int, hi: int) -> list[int]:
    """Every UTC midnight in ``[lo, hi)``."""
    first = -(-lo // DAY) * DAY
    return list(range(first, hi, DAY))


def local_boundaries(tz: ZoneInfo, monthly: bool = False) -> Grid:
    """The grid of local midnights (``monthly``: of the first day of each month) in ``tz``: 23
    or 25 hours apart on clock-change days."""

    def grid(lo: int, hi: int) -> list[int]:
        if hi <= lo:
            return []
        d = datetime.fromtimestamp(lo, UTC).astimezone(tz).date()
        d = date(d.year, d.month, 1) if monthly else d
        last = datetime.fromtimestamp(hi, UTC).astimezone(tz).date()
        out = []
        while d <= last:
            t = int(datetime(d.year, d.month, d.day, tzinfo=tz).timestamp())
            if lo <= t < hi:
                out.append(t)
            d = date(d.year + d.month // 12, d.month % 12 + 1, 1) if monthly else d + timedelta(days=1)
        return out

    return grid


__all__ = ["DAY", "Grid", "RegisterRead", "local_boundaries", "utc_midnights"]
