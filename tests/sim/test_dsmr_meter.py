"""The simulated DSMR 5 meter: valid telegrams, exact registers, tariffs and 5-minute gas."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from dsmr_parser import telegram_specifications
from dsmr_parser.parsers import TelegramParser

from smarthub.meters.dsmr import TelegramStream, decode_telegram, readings
from smarthub.model import ObisCode, Quality, Unit
from smarthub.sim.dsmr_meter import GAS_KWH_PER_M3, DsmrMeterSimulator, DsmrRegisters, tariff_at
from smarthub.sim.load_profile import HouseholdProfile

AMS = ZoneInfo("Europe/Amsterdam")
E_ID = "E0044007131650618"
G_ID = "G0019340315370616"
# Wednesday 2025-01-15, winter: gas is burning, tariff 2 from 07:00 to 23:00 local.
WEDNESDAY = datetime(2025, 1, 15, tzinfo=UTC)


def meter(
    start: datetime = WEDNESDAY, seed: int = 1, pv_kwp: float = 0.0, **kw: object
) -> DsmrMeterSimulator:
    return DsmrMeterSimulator(E_ID, G_ID, HouseholdProfile(seed, pv_kwp=pv_kwp), start, **kw)  # type: ignore[arg-type]


def decoded_registers(data: bytes) -> dict[str, object]:
    """(OBIS text -> Reading) for the electricity meter, plus "gas" for the gas reading."""
    out: dict[str, object] = {}
    for r in readings(decode_telegram(data)):
        out["gas" if r.meter == G_ID else str(r.obis)] = r
    return out


def wh(reading: object) -> int:
    value, unit = reading.in_base_unit()  # type: ignore[attr-defined]
    assert unit is Unit.WH and value == value.to_integral_value()
    return int(value)


def test_telegram_is_valid_dsmr5_for_us_and_for_dsmr_parser() -> None:
    m = meter(failure_log=[(datetime(2024, 12, 2, 3, 4, 5, tzinfo=UTC), 240)])
    t = WEDNESDAY + timedelta(hours=9, seconds=7)
    data = m.telegram_at(t)
    telegram = decode_telegram(data)
    assert telegram.header == "/ISK5\\2M550T-1012"
    assert telegram.timestamp == t
    for obis in (
        "1-3:0.2.8",
        "0-0:96.14.0",
        "1-0:2.7.0",
        "0-0:96.7.21",
        "0-0:96.7.9",
        "1-0:99.97.0",
        "1-0:32.7.0",
        "1-0:31.7.0",
        "0-1:24.1.0",
    ):
        assert telegram.get(obis) is not None, obis
    log = telegram.get("1-0:99.97.0")
    assert log is not None and [v.value for v in log.values] == [
        Decimal(1),
        "0-0:96.7.19",
        datetime(2024, 12, 2, 3, 4, 5, tzinfo=UTC),
        Decimal(240),
    ]

    ref = TelegramParser(telegram_specifications.V5).parse(data.decode("ascii"))  # checks the CRC too
    r = m.registers
    assert ref.ELECTRICITY_USED_TARIFF_1.value == Decimal(r.import_t1_wh) / 1000
    assert ref.ELECTRICITY_USED_TARIFF_2.value == Decimal(r.import_t2_wh) / 1000
    assert ref.P1_MESSAGE_TIMESTAMP.value == t
    assert ref.ELECTRICITY_ACTIVE_TARIFF.value == "0002"


def test_readings_equal_the_exact_registers() -> None:
    m = meter()
    rng = random.Random(3)
    t = WEDNESDAY
    for _ in range(50):
        t += timedelta(seconds=rng.randrange(1, 4000))
        got = decoded_registers(m.telegram_at(t))
        r = m.registers
        assert r.time == t
        assert wh(got["1-0:1.8.1"]) == r.import_t1_wh
        assert wh(got["1-0:1.8.2"]) == r.import_t2_wh
        assert wh(got["1-0:2.8.1"]) == r.export_t1_wh
        assert wh(got["1-0:2.8.2"]) == r.export_t2_wh
        assert wh(got["1-0:1.8.0"]) == r.import_wh
        assert got["1-0:1.8.0"].quality == Quality.VALID | Quality.DERIVED  # type: ignore[attr-defined]
        gas = got["gas"]
        assert gas.value == Decimal(r.gas_dm3) / 1000  # type: ignore[attr-defined]
        assert gas.obis == ObisCode(7, 0, 3, 0, 0)  # type: ignore[attr-defined]
        assert gas.time == r.gas_time  # type: ignore[attr-defined]
        assert got["1-0:1.7.0"].value == Decimal(r.import_w) / 1000  # type: ignore[attr-defined]


def test_registers_never_decrease_and_time_never_goes_back() -> None:
    m = meter(pv_kwp=3, start=datetime(2025, 5, 3, 4, tzinfo=UTC))
    previous = m.registers
    t = previous.time
    rng = random.Random(9)
    for _ in range(300):
        t += timedelta(seconds=rng.choice([1, 10, 10, 60, 300, 1799]))
        r = m.advance(t)
        for name in ("import_t1_wh", "import_t2_wh", "export_t1_wh", "export_t2_wh", "gas_dm3"):
            assert getattr(r, name) >= getattr(previous, name), name
        previous = r
    assert m.telegram_at(t)  # the same instant again is fine
    with pytest.raises(ValueError, match="backwards"):
        m.telegram_at(t - timedelta(seconds=1))
    with pytest.raises(ValueError):
        m.telegram_at(datetime(2025, 5, 4))


def test_half_hour_deltas_add_up_and_match_the_profile() -> None:
    # The hub's interval arithmetic: deltas of the register between half-hour boundaries,
    # read from telegrams every 10 s, sum to the register's overall advance and each matches
    # the profile's energy for that half hour to within the Wh resolution.
    start = WEDNESDAY + timedelta(hours=5)
    m = meter(start=start, seed=21)
    first = None
    at_boundary: list[DsmrRegisters] = []
    t = start
    while t <= start + timedelta(hours=4):
        got = decoded_registers(m.telegram_at(t))
        if first is None:
            first = got
        if t.minute % 30 == 0 and t.second == 0:
            at_boundary.append(m.registers)
            assert wh(got["1-0:1.8.0"]) == m.registers.import_wh
        t += timedelta(seconds=10)
    assert len(at_boundary) == 9
    deltas = [b.import_wh - a.import_wh for a, b in itertools.pairwise(at_boundary)]
    assert sum(deltas) == at_boundary[-1].import_wh - at_boundary[0].import_wh
    for (a, b), delta in zip(itertools.pairwise(at_boundary), deltas, strict=True):
        expected, _, _ = m.profile.energy_wh(a.time, b.time)
        assert abs(delta - expected) < 2, (a.time, delta, expected)
        assert delta > 0


def test_one_jump_equals_many_small_steps() -> None:
    start = WEDNESDAY + timedelta(hours=20)
    end = start + timedelta(hours=14, minutes=3, seconds=11)  # across 23:00 and 07:00 local
    stepped, jumped = meter(start=start, seed=5), meter(start=start, seed=5)
    t = start
    while t < end:
        t = min(end, t + timedelta(seconds=10))
        stepped.advance(t)
    a, b = stepped.advance(end), jumped.advance(end)
    for name in ("import_t1_wh", "import_t2_wh", "gas_dm3"):
        assert abs(getattr(a, name) - getattr(b, name)) <= 1, name
    assert a.gas_time == b.gas_time


def test_tariff_split_night_day_and_weekend() -> None:
    assert tariff_at(datetime(2025, 1, 15, 5, 59, tzinfo=UTC), AMS) == 1  # 06:59 local
    assert tariff_at(datetime(2025, 1, 15, 6, 0, tzinfo=UTC), AMS) == 2  # 07:00 local
    assert tariff_at(datetime(2025, 1, 15, 21, 59, tzinfo=UTC), AMS) == 2  # 22:59 local
    assert tariff_at(datetime(2025, 1, 15, 22, 0, tzinfo=UTC), AMS) == 1  # 23:00 local
    assert tariff_at(datetime(2025, 7, 15, 5, 0, tzinfo=UTC), AMS) == 2  # 07:00 CEST
    assert tariff_at(datetime(2025, 1, 18, 12, 0, tzinfo=UTC), AMS) == 1  # Saturday

    m = meter(start=WEDNESDAY + timedelta(hours=1))  # 02:00 local
    night = m.advance(WEDNESDAY + timedelta(hours=6))  # 07:00 local
    day = m.advance(WEDNESDAY + timedelta(hours=12))  # 13:00 local
    assert night.import_t1_wh > 3_000_000 // 2 and night.import_t2_wh == 3_000_000 // 2
    assert day.import_t1_wh == night.import_t1_wh and day.import_t2_wh > night.import_t2_wh
    assert night.tariff == 2 and day.tariff == 2
    assert m.advance(WEDNESDAY + timedelta(hours=22)).tariff == 1
    saturday = m.advance(datetime(2025, 1, 18, 12, tzinfo=UTC))
    weekend = m.advance(datetime(2025, 1, 18, 15, tzinfo=UTC))
    assert weekend.import_t2_wh == saturday.import_t2_wh
    assert weekend.import_t1_wh > saturday.import_t1_wh
    indicator = decode_telegram(m.telegram_at(datetime(2025, 1, 18, 15, tzinfo=UTC))).get("0-0:96.14.0")
    assert indicator is not None and indicator.value == Decimal(1)


def test_gas_is_captured_at_five_minute_boundaries() -> None:
    start = WEDNESDAY + timedelta(hours=6, minutes=2, seconds=30)  # 07:02:30 local, heating on
    m = meter(start=start)
    assert m.registers.gas_time == WEDNESDAY + timedelta(hours=6)
    t = WEDNESDAY + timedelta(hours=6, minutes=7, seconds=33)
    r1 = m.advance(t)
    assert r1.gas_time == WEDNESDAY + timedelta(hours=6, minutes=5)
    r2 = m.advance(WEDNESDAY + timedelta(hours=6, minutes=9, seconds=59))
    assert (r2.gas_dm3, r2.gas_time) == (r1.gas_dm3, r1.gas_time)  # no new boundary: no change
    data = m.telegram_at(WEDNESDAY + timedelta(hours=6, minutes=10))
    r3 = m.registers
    assert r3.gas_time == WEDNESDAY + timedelta(hours=6, minutes=10)
    _, _, gas_wh = m.profile.energy_wh(r1.gas_time, r3.gas_time)
    assert abs((r3.gas_dm3 - r1.gas_dm3) - gas_wh / GAS_KWH_PER_M3) <= 1
    assert r3.gas_dm3 > r1.gas_dm3
    line = decode_telegram(data).get("0-1:24.2.1")
    assert line is not None
    assert line.values[0].raw == "250115071000W"
    assert line.values[1].raw == f"{r3.gas_dm3 // 1000:05d}.{r3.gas_dm3 % 1000:03d}*m3"


def test_pv_home_exports_at_noon_in_summer() -> None:
    start = datetime(2025, 6, 18, 8, tzinfo=UTC)
    m = meter(start=start, pv_kwp=6.0, seed=2)
    got = decoded_registers(m.telegram_at(start + timedelta(hours=4)))
    assert m.registers.export_t2_wh > 0
    assert wh(got["1-0:2.8.0"]) == m.registers.export_wh
    assert m.registers.export_w == max(0, round(-m.profile.net_import_w(start + timedelta(hours=4))))


def test_telegram_timestamp_through_the_autumn_clock_change() -> None:
    start = datetime(2025, 10, 25, 23, 50, tzinfo=UTC)
    m = meter(start=start)
    stream = TelegramStream()
    seen = []
    for s in range(0, 3 * 3600, 600):
        t = start + timedelta(seconds=s)
        (telegram,) = stream.feed(m.telegram_at(t))
        seen.append(telegram.timestamp)  # type: ignore[union-attr]
    assert seen == [start + timedelta(seconds=s) for s in range(0, 3 * 3600, 600)]


def test_without_a_gas_meter_there_are_no_mbus_lines() -> None:
    m = DsmrMeterSimulator(E_ID, None, HouseholdProfile(1), WEDNESDAY)
    telegram = decode_telegram(m.telegram_at(WEDNESDAY + timedelta(minutes=1)))
    assert telegram.get("0-1:24.1.0") is None
    assert {r.meter for r in readings(telegram)} == {E_ID}


def test_constructor_checks() -> None:
    with pytest.raises(ValueError):
        DsmrMeterSimulator(E_ID, G_ID, HouseholdProfile(1), datetime(2025, 1, 1))
    with pytest.raises(ValueError):
        meter(initial_import_wh=-1)
    with pytest.raises(UnicodeEncodeError):
        DsmrMeterSimulator("Zoë", None, HouseholdProfile(1), WEDNESDAY)
    m = meter(initial_import_wh=1_234_567, initial_gas_dm3=42, initial_export_wh=11)
    r = m.registers
    assert (r.import_wh, r.export_wh, r.gas_dm3) == (1_234_567, 11, 42)
