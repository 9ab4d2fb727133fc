"""Fuzzing both decoders: whatever the bytes, only `DecodeError` subclasses escape.

The default size keeps `make test` quick; `SMARTHUB_FUZZ_EXAMPLES=20000` scales it up.
"""

from __future__ import annotations

import contextlib
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smarthub.meters import mbus, wmbus
from smarthub.meters.errors import DecodeError

from . import vectors as v

EXAMPLES = int(os.environ.get("SMARTHUB_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
KEYS = {"KAM12345678": KEY, "AXI00096255": v.PYMETERBUS_WMBUS_MODE5_KEY}

WIRED = [v.PYMETERBUS_HYD, v.PYMETERBUS_ELVACO, v.PYMETERBUS_WEPTECH, v.PYMETERBUS_CI76, v.PYMETERBUS_SHORT]
_REC = mbus.encode_records(
    [
        mbus.RecordSpec(b"\x13", 1234567),
        mbus.RecordSpec(b"\x6d", 0x2C3F1F3B),
        mbus.RecordSpec(b"\xfd\x17", 3, "int8"),
        mbus.RecordSpec(b"\x5a", "abc", "text"),
    ]
)
WIRELESS = [
    (
        wmbus.encode_frame(
            manufacturer="KAM",
            ident=12345678,
            version=1,
            device_type=7,
            records=_REC,
            access_no=5,
            mode=mode,
            key=KEY,
            message_counter=3,
            frame_format=fmt,
            ell_cc=0x20 if mode == 7 else None,
        ),
        fmt,
    )
    for mode in (0, 5, 7)
    for fmt in ("A", "B")
]


def _fix_checksum(data: bytearray) -> bytes:
    """Repair a mutated long frame's L and CS so the application layer gets exercised."""
    if len(data) >= 9 and data[0] == 0x68:
        n = len(data) - 6
        if 3 <= n <= 255:
            data[1] = data[2] = n
            data[3] = 0x68
            data[-2] = mbus.checksum(bytes(data[4:-2]))
            data[-1] = 0x16
    return bytes(data)


def _mutate(draw: st.DrawFn, data: bytes) -> bytearray:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "replace"]))
        pos = draw(st.integers(0, max(0, len(out) - 1)))
        if kind == "flip" and out:
            out[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del out[pos:]
        elif kind == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del out[pos : pos + draw(st.integers(1, 8))]
        elif out:
            out[pos] = draw(st.integers(0, 255))
    return out


@FUZZ
@given(st.binary(max_size=300))
def test_wired_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        mbus.data_points(data)
    with contextlib.suppress(DecodeError):
        mbus.decode_records(data)


@FUZZ
@given(st.data())
def test_wired_mutations(data: st.DataObject) -> None:
    frame = _fix_checksum(_mutate(data.draw, data.draw(st.sampled_from(WIRED))))
    with contextlib.suppress(DecodeError):
        mbus.data_points(frame)


@FUZZ
@given(st.binary(max_size=300), st.booleans(), st.sampled_from(["A", "B"]))
def test_wireless_arbitrary_bytes(data: bytes, has_crc: bool, fmt: str) -> None:
    with contextlib.suppress(DecodeError):
        wmbus.data_points(data, KEYS, has_crc=has_crc, frame_format=fmt)


@FUZZ
@given(st.data())
def test_wireless_mutations(data: st.DataObject) -> None:
    frame, fmt = data.draw(st.sampled_from(WIRELESS))
    # Mutate the CRC-free form, then give it valid L and CRCs, so that the upper layers get fuzzed.
    body = wmbus.decode_frame(frame, KEYS, frame_format=fmt)
    plain = bytearray(wmbus.encode_frame(**_plain_kwargs(body)))
    mutated = _mutate(data.draw, plain)
    if mutated:
        mutated[0] = (len(mutated) - 1) & 0xFF
    with contextlib.suppress(DecodeError):
        wmbus.data_points(bytes(mutated), KEYS, has_crc=False)
    if len(mutated) >= 11 and len(mutated) - 1 == mutated[0]:
        with contextlib.suppress(DecodeError):
            wmbus.data_points(wmbus._add_crcs(bytes(mutated), fmt), KEYS, frame_format=fmt)


def _plain_kwargs(f: wmbus.WMBusFrame) -> dict[str, object]:
    return {
        "manufacturer": f.manufacturer,
        "ident": f.ident or 0,
        "version": f.version,
        "device_type": f.device_type,
        "records": f.application[2:] if f.security_mode else f.application,
        "access_no": f.header.access_no if f.header else 0,
        "mode": f.security_mode,
        "key": KEY,
        "message_counter": 3,
        "ell_cc": 0x20 if f.ell else None,
        "with_crc": False,
    }
