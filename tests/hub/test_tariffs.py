"""The hub's running cost equals the GDSC's bill exactly, whatever order readings arrive in."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model.test_tariff_strategies import (
    AUTUMN,
    SPRING,
    as_utc,
    carbons,
    consumption,
    midnight,
    schedules,
    windows,
)

from smarthub.gdsc.readings.billing import bill
from smarthub.hub.tariffs import CostAccumulator, OverlappingInterval
from smarthub.model.tariff import (
    Dynamic,
    Flat,
    HalfHourlySeries,
    MissingPrice,
    RatePeriod,
    Tariff,
    TariffSchedule,
    Tier,
    Tiered,
    TimeOfUse,
)
from smarthub.model.tariff_calc import IntervalConsumption
from smarthub.model.tariff_carbon import FixedIntensity

HH = timedelta(minutes=30)
EVERY_DAY = {d: "all" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_hub_cost_equals_the_gdsc_bill_exactly(data: st.DataObject) -> None:
    """Any tariff (all kinds, several versions, any VAT), any series around both clock changes,
    delivered shuffled, partly re-sent and partly first sent wrong then corrected: every bill
    line the hub would show equals the GDSC's, as Decimals."""
    window = data.draw(windows)
    schedule = data.draw(schedules(window))
    carbon = data.draw(carbons(window))
    series = data.draw(consumption(window))
    wrong = data.draw(st.lists(st.sampled_from(series), max_size=5)) if series else []
    delivered = [IntervalConsumption(c.start, c.duration, c.kwh + Decimal("1.25")) for c in wrong]
    delivered += data.draw(st.permutations(series))
    delivered += data.draw(st.lists(st.sampled_from(series), max_size=5)) if series else []  # re-sent
    acc = CostAccumulator(schedule, carbon)
    for c in delivered:
        acc.add(c)

    span = (window[1] - window[0]).days
    a = data.draw(st.integers(0, span - 1))
    b = data.draw(st.integers(a + 1, span))
    start, end = window[0] + timedelta(days=a), window[0] + timedelta(days=b)
    assert acc.bill(start, end) == bill(schedule, carbon, series, start, end)

    now = data.draw(st.integers(0, span * 48 - 1).map(lambda i: midnight(window[0]) + i * HH))
    for summary in (acc.today(now), acc.this_week(now), acc.this_month(now)):
        expected = bill(schedule, carbon, series, summary.start, summary.end)
        assert summary.bill == expected
        assert (summary.cost, summary.kwh, summary.co2_kg, summary.unpriced) == (
            expected.total,
            expected.kwh,
            expected.co2_kg,
            0,
        )


def tou() -> TariffSchedule:
    """A ToU tariff with three rates: night 00:30-05:30, peak 16:00-19:00, day otherwise."""
    return TariffSchedule(
        [
            Tariff(
                tariff_id="go",
                version=1,
                effective_from=date(2026, 1, 1),
                standing_charge_p_per_day=Decimal("48.97"),
                pricing=TimeOfUse(
                    rates={"night": Decimal("8.50"), "day": Decimal("26.00"), "peak": Decimal("38.00")},
                    day_types={
                        "all": (
                            RatePeriod(start="00:30", end="05:30", rate="night"),
                            RatePeriod(start="05:30", end="16:00", rate="day"),
                            RatePeriod(start="16:00", end="19:00", rate="peak"),
                            RatePeriod(start="19:00", end="00:30", rate="day"),
                        )
                    },
                    week=EVERY_DAY,  # type: ignore[arg-type]
                ),
            )
        ]
    )


def test_today_week_month_on_the_autumn_change() -> None:
    """Readings of the 50-period autumn day arrive newest first; today is that whole day,
    the week starts Monday 19 October, the month on 1 October."""
    acc = CostAccumulator(tou(), FixedIntensity(g_per_kwh=Decimal(200)))
    for i in reversed(range(50)):
        acc.add(IntervalConsumption(midnight(AUTUMN) + i * HH, HH, Decimal("0.4")))
    now = as_utc(AUTUMN, 20)
    today = acc.today(now)
    assert (today.start, today.end, today.kwh, today.co2_kg) == (
        AUTUMN,
        AUTUMN + timedelta(days=1),
        Decimal(20),
        Decimal(4),
    )
    assert acc.this_week(now).start == date(2026, 10, 19)
    month = acc.this_month(now)
    assert month.start == date(2026, 10, 1) and month.kwh == Decimal(20)
    assert [line.quantity for line in month.bill.standing] == [25]
    # 12 night half-hours (00:30-05:30 wall clock, 01:00-02:00 twice), 6 peak, 32 day
    lines = {line.description: line.quantity for line in today.bill.energy}
    assert lines == {
        "Energy, night": Decimal("4.8"),
        "Energy, day": Decimal("12.8"),
        "Energy, peak": Decimal("2.4"),
    }


def test_current_and_next_rate_at_an_injected_time() -> None:
    acc = CostAccumulator(tou(), FixedIntensity(g_per_kwh=Decimal(0)))
    now = as_utc(date(2026, 7, 1), 15, 10)  # 15:10 BST
    current, following = acc.current_rate(now), acc.next_rate(now)
    assert (current.name, current.unit_price_p_per_kwh, current.start, current.until) == (
        "day",
        Decimal("26.00"),
        as_utc(date(2026, 7, 1), 5, 30),
        as_utc(date(2026, 7, 1), 16),
    )
    assert following is not None
    assert (following.name, following.start, following.until) == (
        "peak",
        as_utc(date(2026, 7, 1), 16),
        as_utc(date(2026, 7, 1), 19),
    )
    late = as_utc(date(2026, 7, 1), 23, 45)
    assert acc.next_rate(late).name == "night"  # type: ignore[union-attr]
    assert acc.current_rate(late).until == as_utc(date(2026, 7, 2), 0, 30)


def test_dynamic_rates_and_prices_not_yet_published() -> None:
    start = midnight(date(2026, 7, 1))
    prices = HalfHourlySeries(start=start, values=(Decimal("20"), Decimal("20"), Decimal("-3.5")))
    schedule = TariffSchedule(
        [
            Tariff(
                tariff_id="agile",
                version=1,
                effective_from=date(2026, 7, 1),
                standing_charge_p_per_day=Decimal("47.8"),
                pricing=Dynamic(unit_rates_p_per_kwh=prices),
            )
        ]
    )
    acc = CostAccumulator(schedule, FixedIntensity(g_per_kwh=Decimal(100)))
    assert acc.current_rate(start).until == start + 2 * HH
    assert acc.next_rate(start).unit_price_p_per_kwh == Decimal("-3.5")  # type: ignore[union-attr]
    assert acc.next_rate(start + 2 * HH) is None  # the price after that is not published
    for i in range(4):
        acc.add(IntervalConsumption(start + i * HH, HH, Decimal(1)))
    today = acc.today(start)
    assert today.unpriced == 1 and today.kwh == 3
    with pytest.raises(MissingPrice, match="1 interval"):
        acc.bill(date(2026, 7, 1), date(2026, 7, 2))
    # newly published prices arrive as a re-issue of the tariff (a higher version, same day)
    more = HalfHourlySeries(start=start, values=(*prices.values, Decimal("10"), *(Decimal(15),) * 44))
    reissue = replace(schedule.versions[0], version=2, pricing=Dynamic(unit_rates_p_per_kwh=more))
    updated = schedule.with_version(reissue)
    acc.update_tariff(updated)
    series = [IntervalConsumption(start + i * HH, HH, Decimal(1)) for i in range(4)]
    assert acc.bill(date(2026, 7, 1), date(2026, 7, 2)) == bill(
        updated, FixedIntensity(g_per_kwh=Decimal(100)), series, date(2026, 7, 1), date(2026, 7, 2)
    )


def test_tiered_rate_follows_consumption_in_the_block() -> None:
    schedule = TariffSchedule(
        [
            Tariff(
                tariff_id="block",
                version=1,
                effective_from=date(2026, 1, 1),
                standing_charge_p_per_day=Decimal(0),
                pricing=Tiered(
                    block="day",
                    tiers=(
                        Tier(name="first 2 kWh", up_to_kwh=Decimal(2), unit_rate_p_per_kwh=Decimal(12)),
                        Tier(name="above", up_to_kwh=None, unit_rate_p_per_kwh=Decimal(30)),
                    ),
                ),
            )
        ]
    )
    acc = CostAccumulator(schedule, FixedIntensity(g_per_kwh=Decimal(0)))
    t = midnight(date(2026, 7, 1))
    acc.add(IntervalConsumption(t, HH, Decimal("1.5")))
    now = t + HH
    assert (acc.current_rate(now).name, acc.current_rate(now).kwh_to_next_tier) == (
        "first 2 kWh",
        Decimal("0.5"),
    )
    assert acc.next_rate(now).name == "above"  # type: ignore[union-attr]
    acc.add(IntervalConsumption(t + HH, HH, Decimal("0.5")))
    assert acc.current_rate(now).name == "above" and acc.next_rate(now) is None


def test_overlapping_and_resized_intervals_are_refused() -> None:
    acc = CostAccumulator(tou(), FixedIntensity(g_per_kwh=Decimal(0)))
    t = datetime(2026, 7, 1, 12, tzinfo=UTC)
    assert acc.add(IntervalConsumption(t, HH, Decimal(1)))
    assert not acc.add(IntervalConsumption(t, HH, Decimal(1)))  # re-sent: no change
    with pytest.raises(OverlappingInterval, match="re-sent with duration"):
        acc.add(IntervalConsumption(t, timedelta(minutes=15), Decimal(1)))
    with pytest.raises(OverlappingInterval, match="overlaps"):
        acc.add(IntervalConsumption(t + timedelta(minutes=15), timedelta(minutes=15), Decimal(1)))


def test_spring_change_day_has_46_periods_of_standing_and_energy() -> None:
    acc = CostAccumulator(
        TariffSchedule(
            [
                Tariff(
                    tariff_id="f",
                    version=1,
                    effective_from=date(2026, 1, 1),
                    standing_charge_p_per_day=Decimal(50),
                    pricing=Flat(unit_rate_p_per_kwh=Decimal(20)),
                )
            ]
        ),
        FixedIntensity(g_per_kwh=Decimal(0)),
    )
    for i in range(46):
        acc.add(IntervalConsumption(midnight(SPRING) + i * HH, HH, Decimal(1)))
    acc.add(IntervalConsumption(midnight(SPRING + timedelta(days=1)), HH, Decimal(1)))  # next day: not today
    today = acc.today(as_utc(SPRING, 23, 59))
    assert today.kwh == 46
    assert today.bill.net == Decimal("9.70")  # 46 x 20p + 50p
