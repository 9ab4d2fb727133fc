"""Wired M-Bus codec: published frames, round trips, errors, master requests."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smarthub.meters import mbus
from smarthub.meters.errors import ChecksumError, MalformedFrame, TruncatedFrame

from . import vectors as v


def _values(frame: bytes) -> list[tuple[str, object, str | None]]:
    return [(p.key, p.value, p.unit) for p in mbus.data_points(frame)]


def test_pymeterbus_hyd_heat_meter() -> None:
    t = mbus.decode_telegram(v.PYMETERBUS_HYD)
    assert t.meter == "HYD51017578"
    assert t.header is not None and t.header.device_type == 0x04 and t.header.access_no == 0x46
    assert len(t.records) == 12
    pts = mbus.data_points(v.PYMETERBUS_HYD)
    by_key = {p.key: p for p in pts}
    assert by_key["heat:volume"].value == Decimal("1369.443") and by_key["heat:volume"].unit == "m3"
    assert by_key["heat:volume/u1"].value == Decimal("0.048")
    assert by_key["heat:volume/u2"].value == Decimal("0.012")
    assert by_key["heat:energy/t1"].value == 0
    assert by_key["heat:error_flags"].value == 16 and "error" in by_key["heat:error_flags"].flags
    assert by_key["heat:flow_temperature"].value == Decimal("17.4")
    assert by_key["heat:return_temperature"].value == Decimal("17.2")
    assert by_key["heat:temperature_difference"].value == Decimal("0.1")
    assert by_key["heat:temperature_difference"].unit == "K"
    # BCD with hex digits (the meter's "error" marker): kept as text, flagged, never a number
    assert by_key["heat:volume_flow/err"].value == "DDEBBD"
    assert "invalid" in by_key["heat:volume_flow/err"].flags
    assert all(p.meter == "HYD51017578" and p.protocol == "mbus" for p in pts)


def test_pymeterbus_elvaco_plain_text_vif_and_more_follows() -> None:
    t = mbus.decode_telegram(v.PYMETERBUS_ELVACO)
    assert len(t.records) == 12  # pyMeterBus counts the 0x1F marker as a 13th record
    assert t.more_follows
    vals = [r.value for r in t.records]
    assert vals[:8] == [
        Decimal(0),
        Decimal("45.64"),
        Decimal("45.52"),
        Decimal("58.12"),
        Decimal("22.56"),
        Decimal("21.60"),
        Decimal("23.39"),
        Decimal(24),
    ]
    assert t.records[1].unit == "%RH"  # plain-text VIF, reversed ASCII
    assert t.records[7].unit == "h"  # 86400 s in pyMeterBus
    assert t.records[10].value == "54000834"  # fabrication number
    assert t.records[11].value == "262144"  # software version, an identifier


def test_pymeterbus_weptech_extension_tables() -> None:
    t = mbus.decode_telegram(v.PYMETERBUS_WEPTECH)
    assert [r.quantity for r in t.records] == [
        "fabrication_no",
        "actuality_duration",
        "vife_0xfd_0x71",
        "external_temperature",
        "relative_humidity",
        "error_flags",
    ]
    assert t.records[0].value == "64000449"
    assert t.records[1].value == 10 and t.records[1].unit == "min"  # 600 s
    assert t.records[3].value == Decimal("22.0")
    assert t.records[4].value == Decimal("53.1") and t.records[4].unit == "%"


def test_pymeterbus_ci76_big_endian() -> None:
    t = mbus.decode_telegram(v.PYMETERBUS_CI76)
    vals = [r.value for r in t.records]
    assert vals[0] == date(2016, 3, 18)
    assert vals[1] == Decimal(5853400000000) and t.records[1].unit == "J"
    assert vals[3] == Decimal("379716.8")
    assert vals[8] == Decimal("26.3")
    assert vals[9] == Decimal(107000)
    assert vals[10] == Decimal("42.5") and vals[11] == Decimal("38.9")
    assert vals[12] == 38071 and t.records[12].unit == "h"  # 137055600 s
    assert vals[14] == 14866


def test_short_and_control_frames() -> None:
    f = mbus.decode_frame(v.PYMETERBUS_SHORT)
    assert (f.kind, f.c, f.a) == ("short", 0x08, 0x0B)
    f = mbus.decode_frame(v.PYMETERBUS_CONTROL)
    assert (f.kind, f.c, f.a, f.ci, f.data) == ("control", 0x08, 0x0B, 0x72, b"")
    assert mbus.decode_frame(b"\xe5").kind == "ack"


def test_wmbusmeters_dvparser_records() -> None:
    recs, more, mfr = mbus.decode_records(v.WMBUSMETERS_DV1)
    assert recs[0].value == Decimal("123.456") and recs[0].quantity == "volume"
    assert recs[1].value == Decimal("234.567") and recs[1].storage == 4
    assert recs[1].quantity == "volume_vife_0x3e"
    assert recs[2].quantity == "customer_location" and recs[2].value == "9876543210"
    assert not more and mfr == b"\x88\x2f"


def test_wmbusmeters_dates() -> None:
    (r,), _, _ = mbus.decode_records(v.WMBUSMETERS_DATE_2010_12_31)
    assert r.value == date(2010, 12, 31) and r.storage == 8
    (r,), _, _ = mbus.decode_records(v.WMBUSMETERS_DATE_2007_04_30)
    assert r.value == date(2007, 4, 30) and r.storage == 1
    (r,), _, _ = mbus.decode_records(v.WMBUSMETERS_DATE_YEAR_127)
    assert "invalid" in r.flags and isinstance(r.value, str)


def test_frame_time_from_datetime_record() -> None:
    recs = [mbus.RecordSpec(b"\x6d", mbus.encode_datetime_f(datetime(2024, 5, 6, 7, 8)))]
    frame = mbus.encode_rsp_ud(1, 12345678, "KAM", 1, 7, 1, [*recs, mbus.RecordSpec(b"\x13", 5)])
    pts = mbus.data_points(frame)
    assert all(p.time == datetime.fromisoformat("2024-05-06T07:08:00+00:00") for p in pts)
    assert pts[1].key == "water:volume" and pts[1].value == Decimal("0.005")
    fallback = datetime.fromisoformat("2024-01-01T00:00:00+00:00")
    frame = mbus.encode_rsp_ud(1, 12345678, "KAM", 1, 7, 1, [mbus.RecordSpec(b"\x13", 5)])
    assert mbus.data_points(frame, time=fallback)[0].time == fallback


def test_checksum_and_truncation_errors() -> None:
    bad = bytearray(v.PYMETERBUS_HYD)
    bad[-2] ^= 1
    with pytest.raises(ChecksumError):
        mbus.decode_frame(bytes(bad))
    with pytest.raises(ChecksumError):
        mbus.decode_frame(b"\x10\x40\x05\x44\x16")
    for cut in (1, 3, 10, len(v.PYMETERBUS_HYD) - 1):
        with pytest.raises(TruncatedFrame):
            mbus.decode_frame(v.PYMETERBUS_HYD[:cut])
    with pytest.raises(MalformedFrame):
        mbus.decode_frame(b"\x00")
    with pytest.raises(TruncatedFrame):
        # a record whose value runs past the end of the frame
        mbus.decode_telegram(mbus.encode_long(8, 1, 0x78, b"\x04\x13\x01\x02"))


def test_master_requests() -> None:
    assert mbus.snd_nke(5) == bytes.fromhex("1040054516")
    assert mbus.request_ud2(5, fcb=False) == bytes.fromhex("105B056016")
    assert mbus.request_ud2(5, fcb=True) == bytes.fromhex("107B058016")
    sel = mbus.select_secondary(12345678, "KAM", None, 0x07)
    f = mbus.decode_frame(sel)
    assert (f.c, f.a, f.ci) == (0x53, 0xFD, 0x52)
    assert f.data == bytes.fromhex("78563412") + bytes.fromhex("2D2C") + b"\xff\x07"
    assert mbus.decode_frame(mbus.select_secondary("1234FFFF")).data[:4] == bytes.fromhex("FFFF3412")
    m = mbus.MBusMaster()
    first = m.snd_nke(3)
    assert first == mbus.snd_nke(3)
    assert m.request_ud2(3) == mbus.request_ud2(3, True)
    m.answered(3)
    assert m.request_ud2(3) == mbus.request_ud2(3, False)


# ---- round trips ---------------------------------------------------------------------------

_INT_RANGES = {
    "int8": 1,
    "int16": 2,
    "int24": 3,
    "int32": 4,
    "int48": 6,
    "int64": 8,
}
_BCD_DIGITS = {"bcd2": 2, "bcd4": 4, "bcd6": 6, "bcd8": 8, "bcd12": 12}
_NUM_VIFS = [
    b"\x13",
    b"\x03",
    b"\x06",
    b"\x2b",
    b"\x3b",
    b"\x5a",
    b"\x62",
    b"\xfd\x48",
    b"\xfb\x00",
    b"\x93\x3c",
]


@st.composite
def record_specs(draw: st.DrawFn) -> mbus.RecordSpec:
    coding = draw(
        st.sampled_from([*_INT_RANGES, *_BCD_DIGITS, "real32", "none", "text", "lvar_bcd", "lvar_binary"])
    )
    value: int | float | str | None
    if coding in _INT_RANGES:
        bits = 8 * _INT_RANGES[coding]
        value = draw(st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1))
    elif coding in _BCD_DIGITS:
        d = _BCD_DIGITS[coding]
        value = draw(st.integers(-(10 ** (d - 1) - 1), 10**d - 1))
    elif coding == "real32":
        value = draw(st.floats(width=32, allow_nan=False, allow_infinity=False))
    elif coding == "text":
        value = draw(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20))
    elif coding == "lvar_bcd":
        value = draw(st.integers(-(10**18) + 1, 10**18 - 1))
    elif coding == "lvar_binary":
        value = draw(st.integers(0, 2**100))
    else:
        value = None
    return mbus.RecordSpec(
        vif=draw(st.sampled_from(_NUM_VIFS)),
        value=value,
        coding=coding,
        function=draw(st.sampled_from(["inst", "max", "min", "err"])),
        storage=draw(st.integers(0, 2**21 - 1)),
        tariff=draw(st.integers(0, 255)),
        subunit=draw(st.integers(0, 15)),
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(record_specs(), max_size=6))
def test_round_trip_records(specs: list[mbus.RecordSpec]) -> None:
    data = mbus.encode_records(specs)
    if len(data) > 240:
        return
    frame = mbus.encode_rsp_ud(7, 87654321, "ELS", 3, 0x03, 9, specs)
    t = mbus.decode_telegram(frame)
    assert t.meter == "ELS87654321" and t.address == 7
    assert len(t.records) == len(specs)
    for spec, rec in zip(specs, t.records, strict=True):
        assert (rec.function, rec.storage, rec.tariff, rec.subunit) == (
            spec.function,
            spec.storage,
            spec.tariff,
            spec.subunit,
        )
        if spec.coding == "none":
            assert rec.value is None
        elif spec.coding == "real32":
            assert rec.raw == pytest.approx(spec.value) or rec.raw == spec.value
            assert isinstance(rec.value, Decimal)
        else:
            assert rec.raw == spec.value
    pts = mbus.data_points(frame)
    assert all(p.key.startswith("gas:") for p in pts)


def test_scaling_is_exact() -> None:
    frame = mbus.encode_rsp_ud(1, 1, "KAM", 1, 4, 1, [mbus.RecordSpec(b"\x07", 123456789, "int64")])
    p, status = mbus.data_points(frame)
    assert p.key == "heat:energy" and p.unit == "Wh" and p.value == Decimal(123456789) * 10**4
    assert status.key == "heat:status" and status.value == 0
    frame = mbus.encode_rsp_ud(1, 1, "KAM", 1, 4, 1, [mbus.RecordSpec(b"\xfb\x01", 7, "int16")])
    p, _status = mbus.data_points(frame)
    assert p.value == Decimal(7_000_000) and p.unit == "Wh"  # 7 MWh
