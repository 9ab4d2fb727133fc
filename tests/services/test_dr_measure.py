"""The aggregator's measurement with fewer than the 10 like days its baseline is defined on (issue
25, ``smarthub demo --services``): refused by default, *provisional* when asked for, and the
same arithmetic either way — a newly metered home is never settled against a baseline it lacks."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest

from smarthub_services.dr_aggregator import BASELINE_DAYS, LONDON, NotReady, half_hours, measure

EVENT_DAY = date(2026, 8, 19)  # a Wednesday


def local(day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=LONDON).astimezone(UTC)


def metered(days: list[date], event_kwh: Decimal) -> dict[datetime, Decimal]:
    """1 kWh every half-hour of ``days``; the event day's 18:00-19:00 at ``event_kwh``."""
    data = {}
    for d in days:
        for t in half_hours(local(d, 0), local(d + timedelta(days=1), 0)):
            data[t] = Decimal(1)
    for t in half_hours(local(EVENT_DAY, 18), local(EVENT_DAY, 19)):
        data[t] = event_kwh
    return data


def test_fewer_than_ten_like_days_are_refused_unless_a_provisional_measurement_is_asked_for() -> None:
    # Three weekdays metered before the Wednesday, and a weekend day that is no like day.
    history = [date(2026, 8, 14), date(2026, 8, 16), date(2026, 8, 17), date(2026, 8, 18)]
    data = metered(history, Decimal("0.4"))
    start, end = local(EVENT_DAY, 18), local(EVENT_DAY, 19)
    with pytest.raises(
        NotReady, match="only 3 like days with readings before 2026-08-19; the baseline needs 10"
    ):
        measure(start, end, data)
    m = measure(start, end, data, min_days=1)
    assert m.provisional and m.days == (date(2026, 8, 18), date(2026, 8, 17), date(2026, 8, 14))
    assert m.reduction_kwh == 2 * (Decimal(1) - Decimal("0.4"))
    # A like day fewer than asked for is still refused; none at all always is.
    with pytest.raises(NotReady):
        measure(start, end, data, min_days=4)
    with pytest.raises(NotReady, match="only 0 like days"):
        measure(start, end, metered([], Decimal("0.4")), min_days=1)


def test_with_ten_like_days_the_measurement_is_not_provisional() -> None:
    weekdays = [EVENT_DAY - timedelta(days=n) for n in range(1, 15)]
    weekdays = [d for d in weekdays if d.weekday() < 5]
    assert len(weekdays) == BASELINE_DAYS
    m = measure(local(EVENT_DAY, 18), local(EVENT_DAY, 19), metered(weekdays, Decimal("0.25")), min_days=1)
    assert not m.provisional and len(m.days) == BASELINE_DAYS
    assert m.reduction_kwh == Decimal("1.5")
