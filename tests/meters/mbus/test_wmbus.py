"""Wireless M-Bus codec: published vectors, security modes 5 and 7, formats A and B, errors."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from smarthub.meters import mbus, wmbus
from smarthub.meters.errors import ChecksumError, MalformedFrame, TruncatedFrame

from . import vectors as v

KEY = bytes.fromhex("000102030405060708090A0B0C0D0E0F")  # the OMS Vol. 2 example key


def test_crc_check_values() -> None:
    for data, crc in v.WMBUSMETERS_CRC:
        assert wmbus.crc16(data) == crc


def test_pymeterbus_mode5_vector() -> None:
    meter = "AXI00096255"  # M-field 0x0709, id 00096255
    f = wmbus.decode_frame(v.PYMETERBUS_WMBUS_MODE5, {meter: v.PYMETERBUS_WMBUS_MODE5_KEY}, has_crc=False)
    assert f.security_mode == 5 and f.meter == meter and f.header is not None
    assert f.header.access_no == 0x13 and f.header.encrypted_blocks == 2
    pts = wmbus.data_points(f)
    assert [(p.key, p.value) for p in pts] == [
        ("heat:energy", Decimal(0)),
        ("heat:datetime", "2020-04-21T10:16:00+00:00"),
        ("heat:volume", Decimal("0.071")),
        ("heat:status", Decimal(0x10)),  # status byte 0x10: temporary error
    ]
    assert all(p.protocol == "wmbus" and p.time == datetime(2020, 4, 21, 10, 16, tzinfo=UTC) for p in pts)
    assert all("temporary_error" in p.flags for p in pts)


def test_wrong_or_missing_key() -> None:
    with pytest.raises(wmbus.DecryptionError) as err:
        wmbus.decode_frame(v.PYMETERBUS_WMBUS_MODE5, {"AXI00096255": KEY}, has_crc=False)
    assert err.value.meter == "AXI00096255"
    with pytest.raises(wmbus.DecryptionError):
        wmbus.decode_frame(v.PYMETERBUS_WMBUS_MODE5, {}, has_crc=False)
    with pytest.raises(wmbus.DecryptionError):
        wmbus.decode_frame(v.PYMETERBUS_WMBUS_MODE5, None, has_crc=False)


RECORDS = mbus.encode_records(
    [
        mbus.RecordSpec(b"\x13", 1234567),
        mbus.RecordSpec(b"\x6d", mbus.encode_datetime_f(datetime(2024, 2, 3, 4, 5))),
        mbus.RecordSpec(b"\x93\x3c", 5, "int16", storage=1),  # volume with VIFE 0x3C, storage 1
    ]
)


@pytest.mark.parametrize("mode", [0, 5, 7])
@pytest.mark.parametrize("fmt", ["A", "B"])
@pytest.mark.parametrize("ci", [0x7A, 0x72])
@pytest.mark.parametrize("ell", [None, 0x20])
def test_encode_decode_all_variants(mode: int, fmt: str, ci: int, ell: int | None) -> None:
    frame = wmbus.encode_frame(
        manufacturer="KAM",
        ident=12345678,
        version=0x1B,
        device_type=0x16,
        records=RECORDS * 3,
        access_no=200,
        mode=mode,
        key=KEY if mode else None,
        message_counter=0x01020304,
        ci=ci,
        ell_cc=ell,
        frame_format=fmt,
    )
    f = wmbus.decode_frame(frame, {"KAM12345678": KEY}, frame_format=fmt)
    assert f.security_mode == mode and f.meter == "KAM12345678"
    assert (f.ell is not None) == (ell is not None)
    assert (f.afl is not None) == (mode == 7)
    if mode == 7:
        assert f.afl is not None and f.afl.message_counter == 0x01020304
    pts = wmbus.data_points(f)
    assert pts[0].key == "cold_water:volume" and pts[0].value == Decimal("1234.567")
    assert pts[2].key == "cold_water:volume_vife_0x3c/s1"
    assert pts[0].time == datetime(2024, 2, 3, 4, 5, tzinfo=UTC)
    # the same frame as a receiver delivers it, link-layer CRCs removed
    stripped = wmbus.encode_frame(
        manufacturer="KAM",
        ident=12345678,
        version=0x1B,
        device_type=0x16,
        records=RECORDS * 3,
        access_no=200,
        mode=mode,
        key=KEY if mode else None,
        message_counter=0x01020304,
        ci=ci,
        ell_cc=ell,
        with_crc=False,
    )
    assert wmbus.decode_frame(stripped, {"KAM12345678": KEY}, has_crc=False).application == f.application


def _frame(mode: int, fmt: str = "A") -> bytes:
    return wmbus.encode_frame(
        manufacturer="KAM",
        ident=12345678,
        version=1,
        device_type=7,
        records=RECORDS,
        access_no=1,
        mode=mode,
        key=KEY,
        message_counter=9,
        frame_format=fmt,
    )


def test_mode7_wrong_key_and_tampered_mac() -> None:
    frame = _frame(7)
    with pytest.raises(wmbus.DecryptionError):
        wmbus.decode_frame(frame, {"KAM12345678": bytes(16)})
    body = bytearray(wmbus.encode_frame(**_kw(7), with_crc=False))
    body[-1] ^= 0x01  # alter the ciphertext: the MAC no longer verifies
    with pytest.raises(wmbus.DecryptionError, match="MAC"):
        wmbus.decode_frame(bytes(body), {"KAM12345678": KEY}, has_crc=False)


def _kw(mode: int) -> dict[str, object]:
    return {
        "manufacturer": "KAM",
        "ident": 12345678,
        "version": 1,
        "device_type": 7,
        "records": RECORDS,
        "access_no": 1,
        "mode": mode,
        "key": KEY,
        "message_counter": 9,
    }


def test_kdf_is_aes_cmac() -> None:
    # RFC 4493 example 2: CMAC(2b7e..., 6bc1bee22e409f96e93d7e117393172a) = 070a16b4...
    key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    msg = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
    assert wmbus._cmac(key, msg) == bytes.fromhex("070a16b46b4d4144f79bdd9dd04a287c")
    k1 = wmbus.derive_key(KEY, 0x00, 1, bytes.fromhex("78563412"))
    assert k1 == wmbus._cmac(KEY, bytes.fromhex("00 01000000 78563412 07070707070707"))
    assert k1 != wmbus.derive_key(KEY, 0x00, 2, bytes.fromhex("78563412"))


@pytest.mark.parametrize("fmt", ["A", "B"])
def test_crc_errors_and_truncation(fmt: str) -> None:
    frame = bytearray(_frame(5, fmt))
    for pos in (3, 11, len(frame) - 3):
        bad = bytearray(frame)
        bad[pos] ^= 0x10
        with pytest.raises(ChecksumError):
            wmbus.decode_frame(bytes(bad), {"KAM12345678": KEY}, frame_format=fmt)
    for cut in (0, 5, 12, len(frame) - 1):
        with pytest.raises(TruncatedFrame):
            wmbus.decode_frame(bytes(frame[:cut]), {"KAM12345678": KEY}, frame_format=fmt)
    with pytest.raises(MalformedFrame):
        wmbus.decode_frame(bytes(frame) + b"\x00", {"KAM12345678": KEY}, frame_format=fmt)


def test_format_b_long_frame_has_two_crcs() -> None:
    records = mbus.encode_records([mbus.RecordSpec(b"\x13", i) for i in range(25)])
    frame = wmbus.encode_frame(
        manufacturer="KAM", ident=1, version=1, device_type=7, records=records, access_no=1, frame_format="B"
    )
    assert len(frame) == frame[0] + 1 and len(frame) > 128
    f = wmbus.decode_frame(frame, frame_format="B")
    assert [r.raw for r in f.telegram.records] == list(range(25))
