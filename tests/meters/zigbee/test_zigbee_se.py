"""ZigBee SE Metering (0x0702) ZCL codec, exact scaling and simulator.

Vectors:
* zigpy's tests (zigpy/zigpy, tests/test_zcl_foundation.py): the manufacturer-specific
  report header ``1c 5f 11 c0 0a`` (test_frame_header) and the read attribute record
  ``00 00 00 20 99`` (test_read_attribute_record), byte for byte;
* frames laid out as the ZCL specification's "Report Attributes command" and "Read Attributes
  Response command" frame formats with SE Metering attributes (values ours);
* the simulator's frames. Every frame is cross-checked with zigpy's deserializer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import zigpy.zcl.foundation as zf
from hypothesis import given
from hypothesis import strategies as st
from zigpy.zcl.clusters.smartenergy import Metering

from smarthub.meters.errors import MalformedFrame, TruncatedFrame
from smarthub.meters.zigbee_se import (
    AttributeRecord,
    MeterFormatting,
    ZclHeader,
    attribute_name,
    data_points,
    decode_zcl,
    encode_zcl,
    report_attributes,
)
from smarthub.sim.dsmr_meter import GAS_KWH_PER_M3
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.zigbee_meter import ZigbeeMeterSimulator

EUI = "00:0d:6f:00:0a:bc:de:f0"


def _zigpy(frame: bytes) -> tuple[zf.ZCLHeader, list[tuple[int, object]]]:
    hdr, rest = zf.ZCLHeader.deserialize(frame)
    if hdr.command_id == zf.GeneralCommand.Report_Attributes:
        schema = zf.GENERAL_COMMANDS[zf.GeneralCommand.Report_Attributes].schema
        report, rest = schema.deserialize(rest)
        assert rest == b""
        return hdr, [(a.attrid, a.value.value) for a in report.attribute_reports]
    records = []
    while rest:
        rec, rest = zf.ReadAttributeRecord.deserialize(rest)
        records.append((rec.attrid, rec.value.value if rec.value is not None else None))
    return hdr, records


def _cross_check(frame: bytes) -> None:
    ours = decode_zcl(frame)
    hdr, theirs = _zigpy(frame)
    assert ours.header.sequence == hdr.tsn
    assert ours.header.command_id == hdr.command_id
    assert ours.header.direction == hdr.frame_control.direction
    assert ours.header.manufacturer_code == hdr.manufacturer
    assert ours.header.disable_default_response == bool(hdr.frame_control.disable_default_response)
    assert [(r.attribute_id, r.value) for r in ours.records] == [
        (a, int(v) if isinstance(v, int) else v) for a, v in theirs
    ]


# ---- published vectors ----------------------------------------------------------------------


def test_zigpy_frame_header_vector() -> None:
    data = b"\x1c_\x11\xc0\n"
    frame = decode_zcl(data + b"\x00\x00\x25" + (12345678).to_bytes(6, "little"))
    h = frame.header
    assert (h.frame_type, h.manufacturer_code, h.direction, h.sequence, h.command_id) == (
        0,
        0x115F,
        1,
        0xC0,
        0x0A,
    )
    assert h.disable_default_response
    assert h.encode() == data
    assert ZclHeader(0, None, 1, True, 0xC0, 0x0A).encode() == b"\x18\xc0\n"  # the same without mfr
    # Manufacturer-specific attributes are not the standard ones.
    (p,) = data_points(frame, MeterFormatting(device_type=0), EUI)
    assert p.key == "electric:attr_0x0000" and p.value == Decimal(12345678) and p.unit is None
    assert p.flags == {"manufacturer_specific"}


def test_zigpy_read_attribute_record_vector() -> None:
    frame = decode_zcl(b"\x18\x07\x01" + b"\x00\x00\x00\x20\x99")
    assert frame.records == (AttributeRecord(0x0000, 0x20, 0x99, 0),)
    _cross_check(b"\x18\x07\x01" + b"\x00\x00\x00\x20\x99")


def test_read_attributes_response_with_failure_status() -> None:
    # CurrentSummationDelivered uint48 OK, 0x0999 UNSUPPORTED_ATTRIBUTE (0x86), Divisor uint24.
    data = bytes.fromhex("18 2a 01 0000 00 25 e8030000 0000 9909 86 0203 00 22 e80300".replace(" ", ""))
    frame = decode_zcl(data)
    assert [(r.attribute_id, r.status, r.value) for r in frame.records] == [
        (0x0000, 0, 1000),
        (0x0999, 0x86, None),
        (0x0302, 0, 1000),
    ]
    _cross_check(data)
    points = data_points(frame, MeterFormatting(device_type=1, unit_of_measure=0x01), "gas-1")
    assert [(p.key, p.value, p.unit) for p in points] == [
        ("gas:CurrentSummationDelivered", Decimal("1"), "m3"),
        ("gas:Divisor", Decimal(1000), None),
    ]
    assert encode_zcl(frame.header, frame.records) == data


# ---- scaling ------------------------------------------------------------------------------


def _report(*records: tuple[int, int, object]) -> bytes:
    return report_attributes(records)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("multiplier", "divisor", "raw", "expected"),
    [
        (1, 1000, 12_345_678, "12345.678"),
        (1, 1, 42, "42"),
        (3, 1000, 1_000_001, "3000.003"),
        (1, 100_000, 123, "0.00123"),
        (10, 1, 281_474_976_710_654, "2814749767106540"),  # uint48 max - 1: no float rounding
        (1, 16_777_215, 16_777_215, "1"),
    ],
)
def test_exact_scaling(multiplier: int, divisor: int, raw: int, expected: str) -> None:
    state = MeterFormatting()
    frame = decode_zcl(
        _report((0x0301, 0x22, multiplier), (0x0302, 0x22, divisor), (0x0306, 0x18, 0), (0x0000, 0x25, raw))
    )
    p = {x.key: x for x in data_points(frame, state, EUI)}["electric:CurrentSummationDelivered"]
    assert p.value == Decimal(expected) and p.unit == "kWh" and not p.flags
    assert (state.multiplier, state.divisor, state.device_type) == (multiplier, divisor, 0)


def test_state_learnt_from_an_earlier_report_and_rounding_flag() -> None:
    state = MeterFormatting()
    data_points(decode_zcl(_report((0x0302, 0x22, 3), (0x0300, 0x30, 0x00), (0x0306, 0x18, 0))), state, EUI)
    (p,) = data_points(decode_zcl(_report((0x0000, 0x25, 10))), state, EUI)
    assert p.flags == {"rounded"} and abs(p.value * 3 - 10) < Decimal("1e-50")
    # A zero divisor is ignored; the previous one stays.
    data_points(decode_zcl(_report((0x0302, 0x22, 0))), state, EUI)
    assert state.divisor == 3


def test_demand_is_signed_and_uses_the_demand_unit() -> None:
    state = MeterFormatting(divisor=1000, device_type=0)
    frame = decode_zcl(_report((0x0400, 0x2A, -1234)))
    (p,) = data_points(frame, state, EUI)
    assert (p.key, p.value, p.unit) == ("electric:InstantaneousDemand", Decimal("-1.234"), "kW")
    gas = MeterFormatting(divisor=1000, device_type=1, unit_of_measure=0x01)
    (q,) = data_points(frame, gas, "g")
    assert (q.key, q.unit) == ("gas:InstantaneousDemand", "m3/h")


def test_bcd_unit_of_measure() -> None:
    state = MeterFormatting(divisor=100, unit_of_measure=0x81, device_type=1)
    (p,) = data_points(decode_zcl(_report((0x0000, 0x25, 0x0012345678))), state, "g")
    assert (p.value, p.unit) == (Decimal("123456.78"), "m3")
    with pytest.raises(MalformedFrame):
        data_points(decode_zcl(_report((0x0000, 0x25, 0x00000000001A))), state, "g")


def test_unknown_attribute_tiers_status_and_mirrored_device_type() -> None:
    state = MeterFormatting(divisor=1000)
    frame = decode_zcl(
        _report(
            (0x0306, 0x18, 128),  # mirrored gas
            (0x0300, 0x30, 0x01),
            (0x0200, 0x18, 0x05),  # check meter + tamper
            (0x0104, 0x25, 5000),  # CurrentTier3SummationDelivered
            (0x0999, 0x21, 7),
            (0x0001, 0x25, 0xFFFFFFFFFFFF),  # the ZCL invalid value
        )
    )
    points = {p.key: p for p in data_points(frame, state, "g")}
    assert points["gas:CurrentTier3SummationDelivered"].value == Decimal(5)
    assert points["gas:CurrentTier3SummationDelivered"].unit == "m3"
    assert points["gas:attr_0x0999"].value == Decimal(7) and points["gas:attr_0x0999"].unit is None
    assert points["gas:CurrentSummationReceived"].flags == {"mirrored", "error", "tamper", "invalid"}
    assert points["gas:CurrentSummationReceived"].value == Decimal(0xFFFFFFFFFFFF)
    assert attribute_name(0x0100) == "CurrentTier1SummationDelivered"
    assert attribute_name(0x010B) == "CurrentTier6SummationReceived"
    assert attribute_name(0x1234) == "attr_0x1234"


def test_names_agree_with_zigpy_ids() -> None:
    ids = {a.id for a in Metering.AttributeDefs}
    for attr in (
        0x0000,
        0x0001,
        0x0200,
        0x0300,
        0x0301,
        0x0302,
        0x0303,
        0x0304,
        0x0306,
        0x0400,
        0x0100,
        0x010B,
    ):
        assert attr in ids


def test_display_formatting() -> None:
    state = MeterFormatting(summation_formatting=(6 << 3) | 3, demand_formatting=0x80 | (3 << 3) | 2)
    assert state.display(Decimal("12345.6789")) == "012345.678"
    assert state.display(Decimal("1234567.1")) == "234567.100"
    assert state.display(Decimal("1.239"), "demand") == "1.23"
    assert MeterFormatting().display(Decimal("1.5")) == "1.5"


def test_other_cluster_and_command_give_no_points() -> None:
    assert data_points(decode_zcl(_report((0, 0x25, 1)), cluster_id=0x0B04), MeterFormatting(), EUI) == []
    cluster_cmd = decode_zcl(b"\x09\x01\x00\xaa\xbb")
    assert cluster_cmd.records == () and cluster_cmd.payload == b"\xaa\xbb"
    assert data_points(cluster_cmd, MeterFormatting(), EUI) == []


def test_time_is_passed_through_in_utc() -> None:
    t = datetime(2024, 1, 1, 12, tzinfo=UTC)
    (p,) = data_points(decode_zcl(_report((0, 0x25, 1))), MeterFormatting(device_type=0), EUI, t)
    assert p.time == t


# ---- errors -------------------------------------------------------------------------------


def test_truncations_and_grammar() -> None:
    data = _report((0x0000, 0x25, 123), (0x0307, 0x41, b"site"), (0x0400, 0x2A, -5))
    for n in range(len(data)):
        if n in (3, 12, 20):  # record boundaries: a shorter but complete report
            decode_zcl(data[:n])
            continue
        with pytest.raises(TruncatedFrame):
            decode_zcl(data[:n])
    with pytest.raises(MalformedFrame):
        decode_zcl(b"\x1a\x00\x0a")  # reserved frame type 2
    with pytest.raises(MalformedFrame):
        decode_zcl(b"\x18\x00\x0a\x00\x00\x48\x00")  # array: not a Metering type
    with pytest.raises(MalformedFrame):
        decode_zcl(b"\x18\x00\x0a\x00\x00\x42\x01\xff")  # char string not UTF-8
    with pytest.raises(MalformedFrame):
        decode_zcl(bytearray(b"\x18").decode())  # type: ignore[arg-type]


# ---- round trips --------------------------------------------------------------------------


def _int_record(dtype: int, size: int, signed: bool) -> st.SearchStrategy[tuple[int, int, object]]:
    lo, hi = (-(1 << (8 * size - 1)), (1 << (8 * size - 1)) - 1) if signed else (0, (1 << (8 * size)) - 1)
    return st.tuples(st.integers(0, 0xFFFF), st.just(dtype), st.integers(lo, hi))


_records = st.one_of(
    *[_int_record(0x20 + i, i + 1, False) for i in range(8)],
    *[_int_record(0x28 + i, i + 1, True) for i in range(8)],
    *[_int_record(0x18 + i, i + 1, False) for i in range(8)],
    _int_record(0x30, 1, False),
    st.tuples(st.integers(0, 0xFFFF), st.just(0x10), st.booleans()),
    st.tuples(st.integers(0, 0xFFFF), st.just(0x41), st.binary(max_size=40)),
    st.tuples(
        st.integers(0, 0xFFFF), st.just(0x42), st.text(max_size=20).filter(lambda s: len(s.encode()) < 255)
    ),
    st.tuples(
        st.integers(0, 0xFFFF),
        st.just(0xE2),
        st.integers(0, 0xFFFFFFFE).map(lambda s: datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=s)),
    ),
)


@given(st.lists(_records, max_size=8), st.integers(0, 255), st.none() | st.integers(0, 0xFFFF))
def test_round_trip_and_zigpy_cross_check(
    records: list[tuple[int, int, object]], seq: int, mfr: int | None
) -> None:
    data = report_attributes(records, seq, mfr)  # type: ignore[arg-type]
    frame = decode_zcl(data)
    assert [(r.attribute_id, r.data_type, r.value) for r in frame.records] == records
    assert encode_zcl(frame.header, frame.records) == data
    hdr, theirs = _zigpy(data)
    assert hdr.tsn == seq and hdr.manufacturer == mfr
    for (attr, dtype, value), (their_attr, their_value) in zip(records, theirs, strict=True):
        assert attr == their_attr
        if dtype == 0x41:
            assert bytes(their_value) == value
        elif dtype == 0xE2:
            assert int(their_value) == int((value - datetime(2000, 1, 1, tzinfo=UTC)).total_seconds())  # type: ignore[operator]
        elif dtype == 0x42:
            # zigpy's CharacterString ends at the first NUL (devices pad with them); we keep the
            # octets the frame holds. Both agree on everything before it.
            assert their_value == value.split("\x00")[0]  # type: ignore[union-attr]
        elif dtype != 0x10:
            assert their_value == value


# ---- simulator ----------------------------------------------------------------------------


def test_electric_simulator_reports_scale_exactly() -> None:
    start = datetime(2024, 6, 1, tzinfo=UTC)
    sim = ZigbeeMeterSimulator(EUI, "electric", HouseholdProfile(seed=9, pv_kwp=3.0), start)
    state = MeterFormatting()
    fmt = sim.formatting_report()
    _cross_check(fmt)
    data_points(decode_zcl(fmt), state, sim.eui64)
    assert (state.multiplier, state.divisor, state.unit_of_measure, state.device_type) == (1, 1000, 0, 0)
    t = start
    last = Decimal(0)
    for step in range(1, 30):
        t = start + timedelta(minutes=37 * step)
        frame = sim.report_at(t)
        _cross_check(frame)
        points = {p.key: p for p in data_points(decode_zcl(frame), state, sim.eui64, t)}
        reg = sim.registers
        delivered = points["electric:CurrentSummationDelivered"]
        assert delivered.value == Decimal(reg.summation_delivered) / 1000 and delivered.unit == "kWh"
        assert delivered.value >= last
        last = delivered.value
        assert points["electric:CurrentSummationReceived"].value == Decimal(reg.summation_received) / 1000
        assert points["electric:InstantaneousDemand"].value == Decimal(reg.instantaneous_demand) / 1000
    assert sim.registers.summation_received > 0  # PV exported at midday
    with pytest.raises(ValueError):
        sim.report_at(start)


def test_gas_simulator_volume_from_the_calorific_value() -> None:
    start = datetime(2024, 1, 10, tzinfo=UTC)
    profile = HouseholdProfile(seed=4)
    sim = ZigbeeMeterSimulator(EUI, "gas", profile, start, divisor=1000, initial_gas_dm3=0)
    state = MeterFormatting()
    data_points(decode_zcl(sim.formatting_report()), state, "g")
    t = start + timedelta(days=1)
    points = {p.key: p for p in data_points(decode_zcl(sim.report_at(t)), state, "g", t)}
    volume = points["gas:CurrentSummationDelivered"]
    assert volume.unit == "m3" and "gas:CurrentSummationReceived" not in points
    _, _, gas_wh = profile.energy_wh(start, t)
    assert abs(float(volume.value) - gas_wh / 1000 / GAS_KWH_PER_M3) < 0.002
    assert volume.value == Decimal(sim.registers.summation_delivered) / 1000
    assert points["gas:InstantaneousDemand"].unit == "m3/h"


def test_simulator_rejects_bad_configuration() -> None:
    p = HouseholdProfile(seed=1)
    t = datetime(2024, 1, 1, tzinfo=UTC)
    for kwargs in ({"device_type": "water"}, {"device_type": "gas", "unit": 0x00}, {"divisor": 0}):
        args = {"eui64": EUI, "device_type": "electric", "profile": p, "start": t, **kwargs}
        with pytest.raises(ValueError):
            ZigbeeMeterSimulator(**args)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ZigbeeMeterSimulator("xyz", "electric", p, t)
