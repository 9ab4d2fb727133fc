"""The sub-meter simulators (heat cost allocator, water meters) against the published frames of
the devices they model, and against our decoder and the mapping table over a billing year."""

from __future__ import annotations

import importlib.util
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from smarthub.meters import wmbus
from smarthub.meters.mapping import MappingTable
from smarthub.model import Quality
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.wmbus_submeters import (
    HcaSimulator,
    Multical21Simulator,
    WaterMeterSimulator,
    hydrus_records,
    multical21_records,
    qcaloric_records,
)

_spec = importlib.util.spec_from_file_location(
    "wmbus_captures", Path(__file__).parents[1] / "wmbus_captures.py"
)
assert _spec is not None and _spec.loader is not None
c = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(c)

KEY = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2024, 12, 20, 8, tzinfo=UTC)


# ---- the layouts are the real devices' --------------------------------------------------------


def test_hca_layout_reproduces_the_published_q_caloric_frame() -> None:
    records = qcaloric_records(
        127, 145, date(2018, 12, 31), 79, date(2019, 1, 31), datetime(2019, 2, 20, 11, 32)
    )
    frame = wmbus.encode_frame(
        manufacturer="QDS",
        ident=78563412,
        version=0x35,
        device_type=0x08,
        records=records,
        access_no=0x74,
        config_flags=0x2000,
        with_crc=False,
    )
    assert frame == c.QCALORIC


def test_water_layout_reproduces_the_published_hydrus_records() -> None:
    records = hydrus_records(
        296789, 244623, date(2022, 12, 31), -2, 3375, 193, 294128, datetime(2023, 9, 30, 23, 59), 0x9F
    )
    published = wmbus.decode_frame(c.HYDRUS_MODE7).application
    assert published == b"\x2f\x2f" + records
    # and our mode-7 frame has the published frame's structure: ELL I, AFL (FCL 2C00, MCL 25,
    # 8-byte MAC), short header with configuration word 0740 and extension 10
    ours = wmbus.encode_frame(
        manufacturer="DME",
        ident=64641820,
        version=0x70,
        device_type=0x07,
        records=records,
        access_no=0x6A,
        mode=7,
        key=KEY,
        message_counter=0x009BB56A,
        ell_cc=0x00,
        with_crc=False,
    )
    assert ours[:10] == c.HYDRUS_MODE7[:10] and len(ours) == len(c.HYDRUS_MODE7)
    assert ours[10:12] == c.HYDRUS_MODE7[10:12]  # 8C 00
    assert ours[13:22] == c.HYDRUS_MODE7[13:22]  # 90 0F 00 2C 25 + message counter
    assert ours[30:36] == c.HYDRUS_MODE7[30:36]  # 7A 6A 00 40 07 10
    f = wmbus.decode_frame(ours, {"DME64641820": KEY})
    assert f.application == published and not f.receiver_decrypted


def test_multical21_simulator_encrypts_exactly_as_the_meter() -> None:
    records = multical21_records(0x71, 6408, 6408, 127, 19)
    kw = {"manufacturer": "KAM", "ident": 76348799, "version": 0x1B, "device_type": 0x16, "records": records}
    full = wmbus.encode_frame(
        **kw,  # type: ignore[arg-type]
        access_no=0x91,
        ci=wmbus.CI_NO_HEADER,
        key=c.MULTICAL21_KEY,
        ell_cc=0x20,
        ell_session=0x21AC7CD3,
        with_crc=False,
    )
    assert full == c.MULTICAL21_ENCRYPTED  # byte for byte, the meter's own ciphertext
    compact = wmbus.encode_frame(
        **kw,  # type: ignore[arg-type]
        access_no=0x87,
        ci=wmbus.CI_COMPACT,
        key=c.MULTICAL21_KEY,
        ell_cc=0x20,
        ell_session=0x21AD9ED1,
        with_crc=False,
    )
    assert compact[:17] == c.MULTICAL21_COMPACT[:17]
    iv = wmbus.ell_iv(compact[2:4], compact[4:10], 0x20, 0x21AD9ED1)
    assert wmbus._aes_ctr(c.MULTICAL21_KEY, iv, compact[17:]) == c.MULTICAL21_COMPACT[17:]


# ---- over a billing year ---------------------------------------------------------------------


def _frames(sim, start: datetime, days: int, step: timedelta = timedelta(hours=7)):  # type: ignore[no-untyped-def]
    t = start
    while t < start + timedelta(days=days):
        t += step
        yield t, sim.frame_at(t)


@pytest.mark.parametrize("mode", [5, 7])
def test_hca_counts_resets_at_its_set_day_and_keeps_month_ends(mode: int) -> None:
    profile = HouseholdProfile(3, tz=BERLIN)
    sim = HcaSimulator(10203040, KEY, profile, T0, mode=mode, initial_units=400, previous_period_units=950)
    keys = {sim.meter_id: KEY}
    assert sim.meter_id == "QDS10203040"
    seen_reset = False
    last_units = sim.registers.units
    for t, frame in _frames(sim, T0, 45):
        r = sim.registers
        pts = {p.key: p for p in wmbus.data_points(frame, keys, tz=BERLIN)}
        assert pts["heat_cost_allocator:hca_units"].value == r.units
        assert pts["heat_cost_allocator:hca_units/s1"].value == r.set_day_units
        assert pts["heat_cost_allocator:date/s1"].value == r.set_day.isoformat()
        assert pts["heat_cost_allocator:hca_units/s17"].value == r.month_units
        assert pts["heat_cost_allocator:date/s17"].value == r.month_end.isoformat()
        assert pts["heat_cost_allocator:hca_units"].time == t.replace(second=0, microsecond=0)
        if r.units < last_units:
            seen_reset = True  # the set day (31 December) has passed: counting restarted
            assert r.set_day == date(2024, 12, 31) and r.set_day_units >= 400
        last_units = r.units
        with pytest.raises(wmbus.DecryptionError):
            wmbus.decode_frame(frame, {sim.meter_id: bytes(16)})
    assert seen_reset and sim.registers.month_end == date(2025, 1, 31)
    assert 0 < sim.registers.units < 1000  # a radiator's winter weeks, not a year's worth


def test_hca_tamper_reaches_the_data_model_as_status_and_questionable_readings() -> None:
    profile = HouseholdProfile(4, tz=BERLIN)
    sim = HcaSimulator(10203041, KEY, profile, T0)
    table = MappingTable.default()
    t = T0 + timedelta(hours=2)
    ok = table.translate(wmbus.data_points(sim.frame_at(t), {sim.meter_id: KEY}, tz=BERLIN), t)
    # the month-end value (storage 17 on this device) has no meaning shared by all makes: kept raw
    assert {u.point.key for u in ok.unmapped} == {
        "heat_cost_allocator:hca_units/s17",
        "heat_cost_allocator:date/s17",
    }
    assert {str(r.obis) for r in ok.readings} == {"4-0:1.0.0", "4-0:1.2.0", "4-0:96.10.1"}
    assert all(r.quality == Quality.VALID for r in ok.readings)
    sim.status = 0x0A  # application error + permanent error: the allocator was removed
    t += timedelta(hours=1)
    bad = table.translate(wmbus.data_points(sim.frame_at(t), {sim.meter_id: KEY}, tz=BERLIN), t)
    by = {str(r.obis): r for r in bad.readings}
    assert by["4-0:96.10.1"].value == 0x0A
    assert all(r.quality == Quality.QUESTIONABLE for r in bad.readings)
    # the set-day reading (the last set day before the start: 2023-12-31) is stamped at its end
    assert by["4-0:1.2.0"].time == datetime(2023, 12, 31, 23, tzinfo=UTC)  # 24:00 Berlin


@pytest.mark.parametrize(("mode", "fmt"), [(7, "A"), (5, "B"), (0, "A")])
def test_water_meter_set_day_and_month_end_values(mode: int, fmt: str) -> None:
    profile = HouseholdProfile(6, tz=BERLIN)
    sim = WaterMeterSimulator(
        64641821, KEY if mode else None, profile, T0, mode=mode, frame_format=fmt, initial_volume_l=12000
    )
    keys = {sim.meter_id: KEY}
    for _t, frame in _frames(sim, T0, 46, timedelta(hours=11)):
        r = sim.registers
        f = wmbus.decode_frame(frame, keys)
        assert f.security_mode == mode and (f.afl is not None) == (mode == 7)
        pts = {p.key: p for p in wmbus.data_points(f, tz=BERLIN)}
        assert pts["water:volume"].value == Decimal(r.volume_l) / 1000
        assert pts["water:volume/s1"].value == Decimal(r.set_day_l) / 1000
        assert pts["water:volume/s1/t2"].value == Decimal(r.set_day_l) / 1000
        assert pts["water:volume/s3"].value == Decimal(r.month_l) / 1000
        assert pts["water:volume_flow"].value == Decimal(r.flow_l_h) / 1000
        assert pts["water:flow_temperature"].value == Decimal(r.water_temp_dc) / 10
        assert pts["water:remaining_battery_life"].value == r.battery_days
    r = sim.registers
    assert r.set_day == date(2024, 12, 31) and 12000 < r.set_day_l < r.volume_l
    assert r.month_end == datetime(2025, 1, 31, 23, 59)
    readings = {
        str(x.obis): x
        for x in MappingTable.default().translate(wmbus.data_points(frame, keys, tz=BERLIN), T0).readings
    }
    assert readings["8-0:1.2.0"].value == Decimal(r.set_day_l) / 1000
    assert readings["8-0:1.2.0"].time == datetime(2024, 12, 31, 23, tzinfo=UTC)  # 24:00 Berlin


def test_multical21_full_and_compact_frames_decode_with_a_learnt_format() -> None:
    profile = HouseholdProfile(7, tz=BERLIN)
    sim = Multical21Simulator(11223344, KEY, profile, T0, full_every=4, initial_volume_l=300)
    keys = {sim.meter_id: KEY}
    formats: dict[int, bytes] = {}
    cis = []
    for _t, frame in _frames(sim, T0, 20, timedelta(hours=13)):
        f = wmbus.decode_frame(frame, keys, formats=formats)
        cis.append(f.ci)
        pts = {p.key: p.value for p in wmbus.data_points(f)}
        r = sim.registers
        assert pts["cold_water:volume"] == Decimal(r.volume_l) / 1000
        assert pts["cold_water:volume/s1"] == Decimal(r.target_l) / 1000
        assert pts["cold_water:info_codes"] == r.info_codes
    assert cis.count(wmbus.CI_NO_HEADER) * 4 >= len(cis) > cis.count(wmbus.CI_NO_HEADER)
    assert sim.registers.target_l > 300  # the 1st of January passed: the target moved on
    sim.info_codes = 0x04  # leak
    t = sim.registers.time + timedelta(hours=1)
    pts = wmbus.data_points(sim.frame_at(t), keys)
    assert all("leak" in p.flags for p in pts)
