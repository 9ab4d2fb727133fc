"""The household load model: calibration over a year, determinism, and integration."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from smarthub.sim.load_profile import PV_YIELD_KWH_PER_KWP, HouseholdProfile

YEAR = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
MINUTE = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("seed", "annual_kwh", "annual_gas_kwh"),
    [(1, 2700, 11500), (42, 4500, 18000), (7, 1500, 6000)],
)
def test_a_year_sums_to_the_annual_figures(seed: int, annual_kwh: float, annual_gas_kwh: float) -> None:
    profile = HouseholdProfile(seed, annual_kwh=annual_kwh, annual_gas_kwh=annual_gas_kwh)
    imp, exp, gas = profile.energy_wh(*YEAR)
    assert exp == 0
    assert imp / 1000 == pytest.approx(annual_kwh, rel=0.15)
    assert gas / 1000 == pytest.approx(annual_gas_kwh, rel=0.15)


def test_pv_yields_a_typical_dutch_year() -> None:
    # PV does not change the demand (separate random streams), so the PV energy is what the
    # import went down by plus what was exported.
    without = HouseholdProfile(3, pv_kwp=0.0)
    with_pv = HouseholdProfile(3, pv_kwp=4.0)
    load, _, gas = without.energy_wh(*YEAR)
    imp, exp, gas_pv = with_pv.energy_wh(*YEAR)
    assert gas_pv == gas
    pv_kwh = (load - imp + exp) / 1000
    assert pv_kwh == pytest.approx(4.0 * PV_YIELD_KWH_PER_KWP, rel=0.15)
    assert exp > 0 and imp < load


def test_same_seed_same_values_in_any_order() -> None:
    instants = [YEAR[0] + timedelta(minutes=random.Random(5).randrange(525_600)) for _ in range(200)]
    a = HouseholdProfile(11, pv_kwp=3)
    b = HouseholdProfile(11, pv_kwp=3)
    forward = [(a.power_w(t), a.pv_w(t), a.gas_w(t)) for t in instants]
    backward = [(b.power_w(t), b.pv_w(t), b.gas_w(t)) for t in reversed(instants)]
    assert forward == backward[::-1]
    other = HouseholdProfile(12, pv_kwp=3)
    assert [other.power_w(t) for t in instants] != [p for p, _, _ in forward]


def test_values_are_constant_within_a_minute_and_zone_independent() -> None:
    p = HouseholdProfile(2)
    t = datetime(2025, 2, 3, 18, 21, tzinfo=UTC)
    assert p.power_w(t) == p.power_w(t + timedelta(seconds=59.9))
    assert p.power_w(t) == p.power_w(t.astimezone(p.tz))
    assert p.power_w(t) > 0 and p.gas_w(t) > 0
    with pytest.raises(ValueError):
        p.power_w(datetime(2025, 2, 3, 18, 21))


def test_energy_is_the_integral_of_the_per_minute_power() -> None:
    p = HouseholdProfile(4, pv_kwp=3.5)
    start = datetime(2025, 6, 21, 9, 0, tzinfo=UTC)
    for m in range(0, 240, 7):
        t = start + m * MINUTE
        imp, exp, gas = p.energy_wh(t, t + MINUTE)
        net = p.power_w(t) - p.pv_w(t)
        assert imp == pytest.approx(max(net, 0) / 60)
        assert exp == pytest.approx(max(-net, 0) / 60)
        assert gas == pytest.approx(p.gas_w(t) / 60)
        # Half a minute is half the energy (power is constant within the minute).
        half = p.energy_wh(t, t + MINUTE / 2)
        assert half[0] == pytest.approx(imp / 2) and half[2] == pytest.approx(gas / 2)


def test_energy_is_additive_across_any_split() -> None:
    p = HouseholdProfile(9, pv_kwp=2)
    t0 = datetime(2025, 3, 29, 21, 13, 17, tzinfo=UTC)  # spans midnight and the spring clock change
    t2 = t0 + timedelta(hours=30, seconds=41)
    whole = p.energy_wh(t0, t2)
    rng = random.Random(1)
    for _ in range(20):
        t1 = t0 + (t2 - t0) * rng.random()
        first, second = p.energy_wh(t0, t1), p.energy_wh(t1, t2)
        for k in range(3):
            assert first[k] + second[k] == pytest.approx(whole[k], rel=1e-9, abs=1e-6)
    assert p.energy_wh(t0, t0) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        p.energy_wh(t2, t0)


def test_pv_is_dark_at_night_and_absent_without_panels() -> None:
    p = HouseholdProfile(5, pv_kwp=4)
    none = HouseholdProfile(5)
    for day in range(0, 365, 30):
        midnight = YEAR[0] + timedelta(days=day)
        assert p.pv_w(midnight) == 0
        assert p.pv_w(midnight + timedelta(hours=23, minutes=30)) == 0
        noon = midnight + timedelta(hours=11, minutes=40)
        assert none.pv_w(noon) == 0
        assert 0 <= p.pv_w(noon) <= 4000
    summer = sum(p.pv_w(datetime(2025, 6, d, 11, 40, tzinfo=UTC)) for d in range(1, 31))
    winter = sum(p.pv_w(datetime(2025, 12, d, 11, 40, tzinfo=UTC)) for d in range(1, 31))
    assert summer > 2 * winter


def test_daily_and_seasonal_shape() -> None:
    p = HouseholdProfile(8)
    days = [datetime(2025, 1, 6, tzinfo=UTC) + timedelta(days=d) for d in range(28)]
    # Local evening (18:00-21:00 CET = 17:00-20:00 UTC) against local night (01:00-04:00 CET).
    evening = sum(p.energy_wh(d + timedelta(hours=17), d + timedelta(hours=20))[0] for d in days)
    night = sum(p.energy_wh(d, d + timedelta(hours=3))[0] for d in days)
    assert evening > 1.5 * night
    january = p.energy_wh(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC))
    july = p.energy_wh(datetime(2025, 7, 1, tzinfo=UTC), datetime(2025, 8, 1, tzinfo=UTC))
    assert january[0] > july[0]
    assert january[2] > 4 * july[2]  # heating
    assert july[2] > 0  # hot water all year


def test_rejects_nonsense_parameters() -> None:
    with pytest.raises(ValueError):
        HouseholdProfile(1, annual_kwh=0)
    with pytest.raises(ValueError):
        HouseholdProfile(1, pv_kwp=-1)


def test_twenty_homes_for_a_day_minute_by_minute() -> None:
    # The fleet simulation's access pattern; no timing assertion, but it must agree with one
    # integration over the whole day.
    day = datetime(2025, 11, 12, tzinfo=UTC)
    for seed in range(20):
        p = HouseholdProfile(seed, pv_kwp=3 if seed % 4 == 0 else 0)
        total = [0.0, 0.0, 0.0]
        for m in range(1440):
            for k, e in enumerate(p.energy_wh(day + m * MINUTE, day + (m + 1) * MINUTE)):
                total[k] += e
        whole = p.energy_wh(day, day + timedelta(days=1))
        assert total == pytest.approx(list(whole))


def test_a_switched_plug_behind_the_meter_adds_what_it_drew_while_on() -> None:
    """``demo --services``: the EV charger's plug is behind the home's meter, so the meter
    registers the household's own demand plus 7 kW for exactly the time the hub had it on."""
    from smarthub.sim.smart_plug import SmartPlugSimulator, SwitchedLoad

    t0 = datetime(2026, 3, 2, 16, tzinfo=UTC)
    plug = SmartPlugSimulator("00:0d:6f:0e:00:00:00:01", [7000], timedelta(hours=1), t0, standby_w=7000)
    plain, loaded = HouseholdProfile(7), HouseholdProfile(7)
    loaded.extra_loads.append(SwitchedLoad(plug, 7000))
    plug.log += [(t0 + timedelta(minutes=10), True), (t0 + timedelta(minutes=25), False)]
    plug.log += [(t0 + timedelta(minutes=40), True)]
    hour = (t0, t0 + timedelta(hours=1))
    extra = loaded.energy_wh(*hour)[0] - plain.energy_wh(*hour)[0]
    assert abs(extra - 7000 * (15 + 20) / 60) < 1e-6  # on 16:10-16:25 and from 16:40
    assert loaded.energy_wh(*hour)[1:] == plain.energy_wh(*hour)[1:]  # export and gas as they were
    at = t0 + timedelta(minutes=30)
    assert loaded.power_w(at) == plain.power_w(at)  # off then
    assert (
        loaded.net_import_w(at + timedelta(minutes=15))
        == plain.net_import_w(at + timedelta(minutes=15)) + 7000
    )
