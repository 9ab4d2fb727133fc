"""Tariff value types: validation with specific errors, JSON round trip, ToU lookup on clock-change days."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.test_tariff_strategies import (
    AUTUMN,
    SPRING,
    as_utc,
    carbons,
    ref_rate,
    schedules,
    time_of_use,
    windows,
)
from smarthub.model.tariff import (
    Dynamic,
    Flat,
    HalfHourlySeries,
    InvalidTariff,
    MissingPrice,
    NoTariffInForce,
    Tariff,
    TariffSchedule,
    TimeOfUse,
    schedule_from_json,
    tariff_from_json,
)
from smarthub.model.tariff_carbon import carbon_from_json, carbon_to_json

EVERY_DAY = {d: "all" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def tou_json(periods: list[dict[str, str]], **extra: object) -> dict[str, object]:
    return {
        "tariff_id": "e7",
        "version": 1,
        "effective_from": "2026-01-01",
        "standing_charge_p_per_day": "53.35",
        "pricing": {
            "type": "time_of_use",
            "rates": {"night": "13.20", "day": "27.10"},
            "day_types": {"all": periods},
            "week": EVERY_DAY,
            **extra,
        },
    }


E7 = [{"start": "00:30", "end": "07:30", "rate": "night"}, {"start": "07:30", "end": "00:30", "rate": "day"}]


def test_economy_7_parses_and_round_trips() -> None:
    t = tariff_from_json(json.dumps(tou_json(E7)))
    assert t.vat_rate == Decimal("0.05")
    assert tariff_from_json(t.to_json()) == t
    assert json.loads(t.to_json())["standing_charge_p_per_day"] == "53.35"  # decimals travel as strings


@pytest.mark.parametrize(
    ("periods", "message"),
    [
        (
            [
                {"start": "00:30", "end": "08:00", "rate": "night"},
                {"start": "07:30", "end": "00:30", "rate": "day"},
            ],
            "overlap at 07:30-08:00",
        ),
        (
            [
                {"start": "00:30", "end": "07:00", "rate": "night"},
                {"start": "07:30", "end": "00:30", "rate": "day"},
            ],
            "do not cover 07:00-07:30",
        ),
        (
            [
                {"start": "00:30", "end": "07:30", "rate": "night"},
                {"start": "07:30", "end": "00:30", "rate": "peak"},
            ],
            "rate 'peak' is not in rates",
        ),
        (
            [
                {"start": "00:15", "end": "07:30", "rate": "night"},
                {"start": "07:30", "end": "00:15", "rate": "day"},
            ],
            "not on a settlement-period boundary",
        ),
        ([{"start": "25:00", "end": "07:30", "rate": "night"}], "'25:00' is not a time of day"),
    ],
)
def test_invalid_time_of_use_periods_are_refused_with_the_reason(
    periods: list[dict[str, str]], message: str
) -> None:
    with pytest.raises(InvalidTariff, match=message):
        tariff_from_json(json.dumps(tou_json(periods)))


def test_unknown_fields_and_negative_prices_are_refused() -> None:
    doc = tou_json(E7)
    doc["discount"] = "5"
    with pytest.raises(InvalidTariff, match="discount: Extra inputs are not permitted"):
        tariff_from_json(json.dumps(doc))
    doc = tou_json(E7)
    doc["pricing"]["rates"]["night"] = "-1"  # type: ignore[index]
    with pytest.raises(
        InvalidTariff,
        match=r"pricing.time_of_use.rates.night: '-1' is not a decimal string of 0 or more",
    ):
        tariff_from_json(json.dumps(doc))
    doc = tou_json(E7)
    doc["pricing"]["week"] = {"mon": "all"}  # type: ignore[index]
    with pytest.raises(InvalidTariff, match="week: no day type for tue, wed"):
        tariff_from_json(json.dumps(doc))
    doc = tou_json(E7, bank_holiday_day_type="holiday", bank_holidays=["2026-12-25"])
    with pytest.raises(InvalidTariff, match="day type 'holiday' is used but not defined"):
        tariff_from_json(json.dumps(doc))


def test_dynamic_prices_may_be_negative_but_not_float_garbage() -> None:
    series = {"start": "2026-06-01T00:00:00Z", "values": ["-2.5", "10.125"]}
    doc = {
        "tariff_id": "agile",
        "version": 1,
        "effective_from": "2026-06-01",
        "standing_charge_p_per_day": "47.8",
        "pricing": {"type": "dynamic", "unit_rates_p_per_kwh": series},
    }
    t = tariff_from_json(json.dumps(doc))
    assert isinstance(t.pricing, Dynamic)
    assert t.pricing.unit_rates_p_per_kwh.at(datetime(2026, 6, 1, 0, 45, tzinfo=UTC)) == Decimal("10.125")
    with pytest.raises(MissingPrice, match="series covers 2026-06-01T00:00:00"):
        t.pricing.unit_rates_p_per_kwh.at(datetime(2026, 6, 1, 1, 0, tzinfo=UTC))
    series["start"] = "2026-06-01T00:10:00Z"
    with pytest.raises(InvalidTariff, match="not on a half-hour boundary"):
        tariff_from_json(json.dumps(doc))
    series["start"], series["values"] = "2026-06-01T00:00:00Z", ["NaN"]
    with pytest.raises(InvalidTariff):
        tariff_from_json(json.dumps(doc))


def test_tiers_must_increase_and_end_unbounded() -> None:
    base = {"tariff_id": "b", "version": 1, "effective_from": "2026-01-01", "standing_charge_p_per_day": "0"}
    ok = {
        "type": "tiered",
        "block": "day",
        "tiers": [
            {"name": "lifeline", "up_to_kwh": "5", "unit_rate_p_per_kwh": "10"},
            {"name": "standard", "up_to_kwh": None, "unit_rate_p_per_kwh": "30"},
        ],
    }
    tariff_from_json(json.dumps({**base, "pricing": ok}))
    bad = json.loads(json.dumps(ok))
    bad["tiers"][1]["up_to_kwh"] = "4"
    with pytest.raises(InvalidTariff, match="last tier \\('standard'\\) must be unbounded"):
        tariff_from_json(json.dumps({**base, "pricing": bad}))
    bad["tiers"] = [
        {"name": "a", "up_to_kwh": "5", "unit_rate_p_per_kwh": "1"},
        {"name": "b", "up_to_kwh": "5", "unit_rate_p_per_kwh": "1"},
        {"name": "c", "up_to_kwh": None, "unit_rate_p_per_kwh": "1"},
    ]
    with pytest.raises(InvalidTariff, match="tier bounds must increase"):
        tariff_from_json(json.dumps({**base, "pricing": bad}))


def test_schedule_picks_the_version_in_force_and_refuses_inconsistent_versions() -> None:
    v1 = Tariff(
        tariff_id="f",
        version=1,
        effective_from=date(2026, 1, 1),
        standing_charge_p_per_day=Decimal(50),
        pricing=Flat(unit_rate_p_per_kwh=Decimal(25)),
    )
    v2 = replace(v1, version=2, effective_from=date(2026, 4, 1))
    s = TariffSchedule([v2, v1])
    assert s.in_force(date(2026, 3, 31)).version == 1
    assert s.in_force(date(2026, 4, 1)).version == 2
    with pytest.raises(NoTariffInForce, match="no version in force on 2025-12-31"):
        s.in_force(date(2025, 12, 31))
    with pytest.raises(InvalidTariff, match="before version 1"):
        TariffSchedule([v1, replace(v1, version=2, effective_from=date(2025, 12, 1))])
    with pytest.raises(InvalidTariff, match="version 1 of 'f' given twice"):
        TariffSchedule([v1, v1])
    reissue = replace(v1, version=3, effective_from=date(2026, 4, 1))
    assert TariffSchedule([v1, v2, reissue]).in_force(date(2026, 5, 1)) is reissue
    with pytest.raises(InvalidTariff, match="already differs"):
        s.with_version(replace(v2, standing_charge_p_per_day=Decimal(51)))
    assert s.with_version(v2) is s
    assert schedule_from_json(s.to_json()) == s


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_schedules_and_carbon_round_trip_through_json(data: st.DataObject) -> None:
    window = data.draw(windows)
    s = data.draw(schedules(window))
    assert schedule_from_json(s.to_json()) == s
    c = data.draw(carbons(window))
    assert carbon_from_json(carbon_to_json(c)) == c


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_tou_rate_matches_a_wall_clock_reading_of_the_periods(data: st.DataObject) -> None:
    """ToU boundaries: at every settlement period of a window (including both clock changes),
    the rate is the one whose wall-clock period contains the local time."""
    window = data.draw(windows)
    tou = data.draw(time_of_use(window))
    t = datetime(window[0].year, window[0].month, window[0].day, tzinfo=UTC) - timedelta(hours=1)
    while t < datetime(window[1].year, window[1].month, window[1].day, tzinfo=UTC):
        assert tou.rate_at(t) == ref_rate(tou, t)
        assert tou.rate_at(t + timedelta(minutes=29, seconds=59)) == ref_rate(tou, t)
        t += timedelta(minutes=30)


def test_clock_change_days_charge_the_wall_clock_hours() -> None:
    """Night 01:00-02:00 local: on the spring change it does not exist (0 periods), in autumn it
    happens twice (4 periods)."""
    tou = TimeOfUse(
        rates={"night": Decimal(10), "day": Decimal(30)},
        day_types={
            "all": (
                {"start": "01:00", "end": "02:00", "rate": "night"},
                {"start": "02:00", "end": "01:00", "rate": "day"},
            )
        },  # type: ignore[arg-type]
        week=EVERY_DAY,  # type: ignore[arg-type]
    )

    def nights(day: date) -> int:
        t, end, n = as_utc(day, 0), as_utc(day + timedelta(days=1), 0), 0
        while t < end:
            n += tou.rate_at(t) == "night"
            t += timedelta(minutes=30)
        return n

    assert nights(SPRING) == 0
    assert nights(AUTUMN) == 4
    assert nights(AUTUMN + timedelta(days=1)) == 2


def test_bank_holiday_takes_its_own_day_type() -> None:
    tou = TimeOfUse(
        rates={"cheap": Decimal(5), "normal": Decimal(20)},
        day_types={
            "work": ({"start": "00:00", "end": "24:00", "rate": "normal"},),
            "off": ({"start": "00:00", "end": "00:00", "rate": "cheap"},),
        },  # type: ignore[arg-type]
        week={**{d: "work" for d in ("mon", "tue", "wed", "thu", "fri")}, "sat": "off", "sun": "off"},  # type: ignore[arg-type]
        bank_holiday_day_type="off",
        bank_holidays=(date(2026, 12, 25),),
    )
    assert tou.rate_at(as_utc(date(2026, 12, 24), 12)) == "normal"  # Thursday
    assert tou.rate_at(as_utc(date(2026, 12, 25), 12)) == "cheap"  # Friday, Christmas Day
    assert tou.rate_at(as_utc(date(2026, 12, 26), 12)) == "cheap"  # Saturday


def test_series_start_is_normalised_to_utc() -> None:
    s = HalfHourlySeries(start=as_utc(date(2026, 7, 1), 0), values=(Decimal(1),))
    assert s.start.tzinfo is UTC
    with pytest.raises(InvalidTariff, match="start: Input should have timezone info"):
        HalfHourlySeries(start=datetime(2026, 7, 1), values=(Decimal(1),))  # naive


def test_carbon_series_must_not_be_negative() -> None:
    text = '{"type": "series", "g_per_kwh": {"start": "2026-06-01T00:00:00Z", "values": ["120", "-1"]}}'
    with pytest.raises(InvalidTariff, match="at period 1 is negative"):
        carbon_from_json(text)
    with pytest.raises(InvalidTariff, match="Extra inputs"):
        carbon_from_json('{"type": "fixed", "g_per_kwh": "200", "source": "x"}')
