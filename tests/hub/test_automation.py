"""Appliance scheduling: the cheapest feasible start, checked against brute force."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model.test_tariff_strategies import AUTUMN, as_utc, decimals, midnight, pricing, schedules, windows

from smarthub.hub.automation import ApplianceRun, NoFeasibleWindow, cheapest
from smarthub.model.tariff import Tariff, TariffError, TariffSchedule, Tier, Tiered
from smarthub.model.tariff_calc import IntervalConsumption, classify

from .test_tariffs import tou

EVERY_DAY = {d: "all" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def brute_force(
    run: ApplianceRun, schedule: TariffSchedule, earliest: datetime, deadline: datetime
) -> tuple[datetime, Decimal] | None:
    """Try every step-aligned start; price each step as a billed interval (`classify`) plus VAT."""
    s = int(run.step.total_seconds())
    t = datetime.fromtimestamp(int(earliest.timestamp()) // s * s, UTC)
    if t < earliest:
        t += run.step
    best = None
    while t + run.duration <= deadline:
        cost = Decimal(0)
        for i, kwh in enumerate(run.energy_kwh):
            c = IntervalConsumption(t + i * run.step, run.step, kwh)
            _, amount = classify(schedule, c)
            cost += amount * (1 + schedule.in_force(c.day).vat_rate)
        if best is None or cost < best[1]:
            best = (t, cost)
        t += run.step
    return best


# Night 00:30-05:30 8.5p, peak 16:00-19:00 38p, day otherwise 26p (local time).
go = tou


# A 40 °C cotton wash in 15-minute steps: heating, wash, rinse, spin (kW).
WASH = ApplianceRun.from_power(
    "washing machine",
    [Decimal("2.0"), Decimal("2.0"), Decimal("0.3"), Decimal("0.3"), Decimal("0.3"), Decimal("0.5")],
    timedelta(minutes=15),
)


@pytest.mark.parametrize("day", [date(2026, 7, 1), AUTUMN - timedelta(days=1)])
def test_washing_machine_goes_into_the_night_rate(day: date) -> None:
    """Loaded at 18:30, wanted by 08:00: the 1h30 wash starts at 00:30 local, the first moment
    of the night rate (on 24/25 October too, where 00:30 is still BST)."""
    earliest, deadline = as_utc(day, 18, 30), as_utc(day + timedelta(days=1), 8)
    plan = cheapest(WASH, go(), earliest, deadline)
    assert plan.start == as_utc(day + timedelta(days=1), 0, 30)
    assert plan.cost_p == Decimal("1.35") * Decimal("8.50") * Decimal("1.05")
    assert (plan.start, plan.cost_p) == brute_force(WASH, go(), earliest, deadline)


def test_washing_machine_with_a_tight_deadline_avoids_the_peak() -> None:
    """Loaded at 13:00, needed by 17:00: the cheapest run ends by 16:00 (day rate throughout), and
    of the equal-cost starts the earliest is taken."""
    day = date(2026, 7, 1)
    plan = cheapest(WASH, go(), as_utc(day, 13, 5), as_utc(day, 17))
    assert plan.start == as_utc(day, 13, 15)
    assert plan.end <= as_utc(day, 16)
    assert (plan.start, plan.cost_p) == brute_force(WASH, go(), as_utc(day, 13, 5), as_utc(day, 17))


def test_infeasible_and_unschedulable_runs_are_refused() -> None:
    day = date(2026, 7, 1)
    with pytest.raises(NoFeasibleWindow, match="does not fit"):
        cheapest(WASH, go(), as_utc(day, 13), as_utc(day, 14, 15))
    block = TariffSchedule(
        [
            Tariff(
                tariff_id="b",
                version=1,
                effective_from=date(2026, 1, 1),
                standing_charge_p_per_day=Decimal(0),
                pricing=Tiered(
                    block="day", tiers=(Tier(name="all", up_to_kwh=None, unit_rate_p_per_kwh=Decimal(20)),)
                ),
            )
        ]
    )
    with pytest.raises(TariffError, match="tiered"):
        cheapest(WASH, block, as_utc(day, 13), as_utc(day, 20))
    with pytest.raises(ValueError, match="must divide the 30-minute"):
        ApplianceRun("dryer", (Decimal(1),), timedelta(minutes=7))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_cheapest_start_matches_brute_force(data: st.DataObject) -> None:
    window = data.draw(windows)
    kinds = pricing(window).filter(lambda p: not isinstance(p, Tiered))
    schedule = data.draw(schedules(window, kinds))
    step = data.draw(st.sampled_from([timedelta(minutes=m) for m in (5, 10, 15, 30)]))
    run = ApplianceRun(
        "appliance", tuple(data.draw(st.lists(decimals("0", "2", 3), min_size=1, max_size=12))), step
    )
    lo, hi = midnight(window[0]), midnight(window[1])
    minutes = int((hi - lo).total_seconds() // 60)
    a = data.draw(st.integers(0, minutes - 1))
    b = data.draw(st.integers(a, minutes))
    earliest, deadline = lo + timedelta(minutes=a), lo + timedelta(minutes=b)
    expected = brute_force(run, schedule, earliest, deadline)
    if expected is None:
        with pytest.raises(NoFeasibleWindow):
            cheapest(run, schedule, earliest, deadline)
    else:
        plan = cheapest(run, schedule, earliest, deadline)
        assert (plan.start, plan.cost_p) == expected
        assert plan.start >= earliest and plan.end <= deadline
