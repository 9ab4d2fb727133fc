"""The GDSC's bill: checked against an independent exact-fraction reference for any tariff."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model.test_tariff_strategies import (
    AUTUMN,
    SPRING,
    carbons,
    consumption,
    midnight,
    ref_round,
    ref_total_pence,
    schedules,
    windows,
)

from smarthub.gdsc.readings.billing import ConflictingConsumption, bill
from smarthub.model.tariff import RatePeriod, Tariff, TariffSchedule, TimeOfUse
from smarthub.model.tariff_calc import IntervalConsumption
from smarthub.model.tariff_carbon import FixedIntensity

HH = timedelta(minutes=30)
EVERY_DAY = {d: "all" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_bill_matches_the_exact_reference_for_any_tariff(data: st.DataObject) -> None:
    window = data.draw(windows)
    schedule = data.draw(schedules(window))
    carbon = data.draw(carbons(window))
    series = data.draw(consumption(window))
    # bill a sub-period so intervals outside it are present and must be ignored
    span = (window[1] - window[0]).days
    a = data.draw(st.integers(0, span - 1))
    b = data.draw(st.integers(a + 1, span))
    start, end = window[0] + timedelta(days=a), window[0] + timedelta(days=b)
    result = bill(schedule, carbon, series, start, end)
    total_p, kwh, co2_g = ref_total_pence(schedule, carbon, series, start, end)
    assert result.total * 100 == total_p
    assert Fraction(result.kwh) == kwh
    assert result.co2_kg * 1000 == ref_round(co2_g)  # kg to 3 places = whole grams, half up
    assert sum(line.quantity for line in result.standing) == (end - start).days


def economy_7() -> TariffSchedule:
    return TariffSchedule(
        [
            Tariff(
                tariff_id="e7",
                version=1,
                effective_from=date(2026, 1, 1),
                standing_charge_p_per_day=Decimal("53.35"),
                pricing=TimeOfUse(
                    rates={"night": Decimal("13.20"), "day": Decimal("27.10")},
                    day_types={
                        "all": (
                            RatePeriod(start="00:30", end="07:30", rate="night"),
                            RatePeriod(start="07:30", end="00:30", rate="day"),
                        )
                    },
                    week=EVERY_DAY,  # type: ignore[arg-type]
                ),
            )
        ]
    )


@pytest.mark.parametrize(
    ("day", "periods", "night"), [(SPRING, 46, 12), (AUTUMN, 50, 16), (date(2026, 7, 1), 48, 14)]
)
def test_economy_7_on_clock_change_days(day: date, periods: int, night: int) -> None:
    """1 kWh every half-hour of the day: 46/50/48 kWh, of which the 00:30-07:30 wall-clock
    night is 12 half-hours in spring (01:00-02:00 skipped), 16 in autumn (repeated)."""
    series = [IntervalConsumption(midnight(day) + i * HH, HH, Decimal(1)) for i in range(periods)]
    result = bill(
        economy_7(), FixedIntensity(g_per_kwh=Decimal("150.5")), series, day, day + timedelta(days=1)
    )
    lines = {line.description: line for line in result.energy}
    assert lines["Energy, night"].quantity == night
    assert lines["Energy, day"].quantity == periods - night
    day_p = ref_round((periods - night) * Fraction("27.10"))
    night_p = ref_round(night * Fraction("13.20"))
    assert lines["Energy, day"].amount * 100 == day_p
    assert lines["Energy, night"].amount * 100 == night_p
    net = day_p + night_p + 53
    assert result.total * 100 == net + ref_round(net * Fraction("0.05"))
    assert result.co2_kg == Decimal(periods) * Decimal("0.1505")


def test_repeated_intervals_count_once_and_conflicts_are_refused() -> None:
    day = date(2026, 7, 1)
    c = IntervalConsumption(midnight(day), HH, Decimal("0.5"))
    once = bill(economy_7(), FixedIntensity(g_per_kwh=Decimal(0)), [c], day, day + timedelta(days=1))
    twice = bill(economy_7(), FixedIntensity(g_per_kwh=Decimal(0)), [c, c], day, day + timedelta(days=1))
    assert once == twice and once.kwh == Decimal("0.5")
    with pytest.raises(ConflictingConsumption, match=r"given as 0\.5 kWh"):
        bill(
            economy_7(),
            FixedIntensity(g_per_kwh=Decimal(0)),
            [c, IntervalConsumption(c.start, HH, Decimal("0.6"))],
            day,
            day + timedelta(days=1),
        )
    with pytest.raises(ConflictingConsumption, match="intervals overlap"):
        bill(
            economy_7(),
            FixedIntensity(g_per_kwh=Decimal(0)),
            [c, IntervalConsumption(c.start + timedelta(minutes=15), timedelta(minutes=15), Decimal("0.1"))],
            day,
            day + timedelta(days=1),
        )


def test_tariff_version_change_mid_period_gives_lines_per_version() -> None:
    v1 = economy_7().versions[0]
    v2 = replace(v1, version=2, effective_from=date(2026, 7, 15), standing_charge_p_per_day=Decimal("60"))
    schedule = TariffSchedule([v1, v2])
    start, end = date(2026, 7, 1), date(2026, 8, 1)
    result = bill(schedule, FixedIntensity(g_per_kwh=Decimal(0)), [], start, end)
    assert [(line.tariff.version, line.quantity, line.amount) for line in result.standing] == [  # type: ignore[union-attr]
        (1, 14, Decimal("7.47")),  # 14 x 53.35p = 746.9p
        (2, 17, Decimal("10.20")),
    ]
    assert result.energy == ()
    assert result.vat_total == Decimal("0.88")  # 5% of £17.67 = 88.35p
