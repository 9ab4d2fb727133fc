"""The shared calculation: intervals, tier boundaries, the rounding rule, against exact fractions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.test_tariff_strategies import AUTUMN, SPRING, decimals, ref_round, tiered
from smarthub.model.tariff import Flat, Tariff, TariffSchedule, Tier, Tiered
from smarthub.model.tariff_calc import (
    IntervalConsumption,
    Totals,
    classify,
    round_pence,
    settle,
    settlement_periods,
)

HH = timedelta(minutes=30)


def test_settlement_periods_per_day() -> None:
    assert settlement_periods(SPRING) == 46
    assert settlement_periods(AUTUMN) == 50
    assert settlement_periods(date(2026, 7, 1)) == 48


@pytest.mark.parametrize(
    ("start", "duration", "kwh", "message"),
    [
        (datetime(2026, 7, 1, 0, 15, tzinfo=UTC), HH, Decimal(1), "crosses a settlement-period boundary"),
        (datetime(2026, 7, 1), HH, Decimal(1), "must be timezone-aware"),
        (datetime(2026, 7, 1, tzinfo=UTC), HH, Decimal(-1), "cannot be negative"),
        (datetime(2026, 7, 1, tzinfo=UTC), HH, Decimal("0.0000001"), "more than 6 decimal places"),
        (datetime(2026, 7, 1, tzinfo=UTC), timedelta(0), Decimal(1), "must be positive"),
        (datetime(2026, 7, 1, tzinfo=UTC), HH, 1.5, "finite Decimal"),
    ],
)
def test_bad_intervals_are_refused(start: datetime, duration: timedelta, kwh: Decimal, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IntervalConsumption(start, duration, kwh)


@settings(max_examples=200, deadline=None)
@given(tiered(), decimals("0", "40", 3))
def test_tier_split_shares_out_exactly_and_fills_tiers_in_order(t: Tiered, kwh: Decimal) -> None:
    parts = t.split(kwh)
    assert sum(k for _, k in parts) == kwh
    floor = Decimal(0)
    for tier, k in parts:
        width = None if tier.up_to_kwh is None else tier.up_to_kwh - floor
        assert k >= 0 and (width is None or k <= width)
        # a tier is used only once every tier below it is full
        assert k == 0 or kwh > floor
        if tier.up_to_kwh is not None:
            assert k == min(max(kwh - floor, Decimal(0)), width)
            floor = tier.up_to_kwh


@settings(max_examples=100, deadline=None)
@given(tiered(), st.data())
def test_tier_boundary_cost_is_continuous(t: Tiered, data: st.DataObject) -> None:
    """At a tier bound every kWh so far is in the lower tiers; one more Wh costs the next tier's price."""
    bounds = [x.up_to_kwh for x in t.tiers if x.up_to_kwh is not None]
    if not bounds:
        return
    i = data.draw(st.integers(0, len(bounds) - 1))
    b = bounds[i]

    def cost(kwh: Decimal) -> Decimal:
        return sum((k * tier.unit_rate_p_per_kwh for tier, k in t.split(kwh)), Decimal(0))

    at = dict((tier.name, k) for tier, k in t.split(b))
    assert at[t.tiers[i + 1].name] == 0
    wh = Decimal("0.001")
    assert cost(b + wh) - cost(b) == wh * t.tiers[i + 1].unit_rate_p_per_kwh
    assert cost(b) - cost(b - wh) == wh * t.tiers[i].unit_rate_p_per_kwh


def flat(price: Decimal, standing: Decimal, vat: Decimal) -> TariffSchedule:
    return TariffSchedule(
        [
            Tariff(
                tariff_id="f",
                version=1,
                effective_from=date(2026, 1, 1),
                standing_charge_p_per_day=standing,
                vat_rate=vat,
                pricing=Flat(unit_rate_p_per_kwh=price),
            )
        ]
    )


@settings(max_examples=300, deadline=None)
@given(
    decimals("0", "60", 4),
    decimals("0", "80", 3),
    decimals("0", "0.3", 4),
    st.lists(decimals("0", "3", 3), min_size=1, max_size=10),
)
def test_vat_and_line_rounding_follow_the_stated_rule(
    price: Decimal, standing: Decimal, vat: Decimal, kwhs: list[Decimal]
) -> None:
    s = flat(price, standing, vat)
    start = datetime(2026, 7, 1, tzinfo=UTC)
    totals = Totals()
    for i, k in enumerate(kwhs):
        key, amount = classify(s, IntervalConsumption(start + i * HH, HH, k))
        totals.add(key, k, amount, Decimal(0))
    bill = settle(s, totals, date(2026, 7, 1), date(2026, 7, 2))
    energy_p = ref_round(sum(Fraction(k) for k in kwhs) * Fraction(price))
    standing_p = ref_round(Fraction(standing))
    net_p = energy_p + standing_p
    vat_p = ref_round(net_p * Fraction(vat))
    assert bill.net * 100 == net_p
    assert bill.vat_total * 100 == vat_p
    assert bill.total * 100 == net_p + vat_p
    assert all(
        line.amount == line.amount.quantize(Decimal("0.01"))
        for line in (*bill.energy, *bill.standing, *bill.vat)
    )


def test_worked_example_half_pennies_round_up() -> None:
    """3 kWh at 24.5p = 73.5p -> 74p; 1 day at 60.5p -> 61p; VAT 5% of £1.35 = 6.75p -> 7p."""
    s = flat(Decimal("24.5"), Decimal("60.5"), Decimal("0.05"))
    totals = Totals()
    for i in range(3):
        c = IntervalConsumption(datetime(2026, 7, 1, tzinfo=UTC) + i * HH, HH, Decimal(1))
        key, amount = classify(s, c)
        totals.add(key, c.kwh, amount, Decimal(0))
    bill = settle(s, totals, date(2026, 7, 1), date(2026, 7, 2))
    assert [line.amount for line in bill.energy] == [Decimal("0.74")]
    assert [line.amount for line in bill.standing] == [Decimal("0.61")]
    assert [line.amount for line in bill.vat] == [Decimal("0.07")]
    assert bill.total == Decimal("1.42")


def test_negative_amounts_round_half_away_from_zero() -> None:
    assert round_pence(Decimal("-73.5")) == Decimal(-74)
    assert round_pence(Decimal("73.5")) == Decimal(74)
    assert round_pence(Decimal("-0.49")) == Decimal(0)


def test_daily_block_resets_each_local_day_across_the_autumn_change() -> None:
    """A 5 kWh daily lifeline block: the 50 periods of the autumn change day at 0.2 kWh = 10 kWh,
    5 in each tier; the next day's first 5 kWh are lifeline again."""
    t = Tiered(
        block="day",
        tiers=(
            Tier(name="lifeline", up_to_kwh=Decimal(5), unit_rate_p_per_kwh=Decimal(10)),
            Tier(name="standard", up_to_kwh=None, unit_rate_p_per_kwh=Decimal(30)),
        ),
    )
    s = TariffSchedule(
        [
            Tariff(
                tariff_id="b",
                version=1,
                effective_from=date(2026, 1, 1),
                standing_charge_p_per_day=Decimal(0),
                vat_rate=Decimal(0),
                pricing=t,
            )
        ]
    )
    totals = Totals()
    start = datetime(2026, 10, 24, 23, tzinfo=UTC)  # local midnight, BST
    for i in range(50 + 48):
        c = IntervalConsumption(start + i * HH, HH, Decimal("0.2"))
        key, amount = classify(s, c)
        totals.add(key, c.kwh, amount, Decimal(0))
    bill = settle(s, totals, AUTUMN, AUTUMN + timedelta(days=2))
    lines = {line.description: (line.quantity, line.amount) for line in bill.energy}
    assert lines["Energy, lifeline"] == (Decimal(10), Decimal("1.00"))
    assert lines["Energy, standard"] == (Decimal("9.6"), Decimal("2.88"))
