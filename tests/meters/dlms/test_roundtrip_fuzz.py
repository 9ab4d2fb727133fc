"""Property tests: encode -> decode round trips (A-XDR, HDLC, wrapper, GCM), and fuzzing: whatever
the bytes, the decoders raise only ``DecodeError`` subclasses and the framers raise nothing.

``SMARTHUB_FUZZ_EXAMPLES`` scales the fuzzing (default 300).
"""

from __future__ import annotations

import contextlib
import math
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smarthub.meters.dlms.apdu import decode_apdu
from smarthub.meters.dlms.axdr import BitString, DateTime, Tag, decode_data, encode_data
from smarthub.meters.dlms.client import PushReceiver
from smarthub.meters.dlms.errors import DecodeError
from smarthub.meters.dlms.hdlc import (
    FrameType,
    HdlcAddress,
    HdlcFrame,
    HdlcFramer,
    decode_frame,
    encode_frame,
)
from smarthub.meters.dlms.security import (
    InvocationCounterGuard,
    SecurityKeys,
    cipher_apdu,
    decipher_apdu,
    decrypt,
    encrypt,
)
from smarthub.meters.dlms.wrapper import WrapperFrame, WrapperFramer, decode_wrapper, encode_wrapper
from smarthub.sim.dlms_meter import DlmsMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile

EXAMPLES = int(os.environ.get("SMARTHUB_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROUND = settings(max_examples=150, deadline=None)
KEYS = SecurityKeys(bytes(range(16)), bytes(range(0xD0, 0xE0)))
TITLE = bytes.fromhex("4D4D4D0000BC614E")

# ---- A-XDR ---------------------------------------------------------------------------------

_INT_RANGES = {
    Tag.INTEGER: (-(2**7), 2**7 - 1),
    Tag.LONG: (-(2**15), 2**15 - 1),
    Tag.DOUBLE_LONG: (-(2**31), 2**31 - 1),
    Tag.LONG64: (-(2**63), 2**63 - 1),
    Tag.UNSIGNED: (0, 255),
    Tag.ENUM: (0, 255),
    Tag.LONG_UNSIGNED: (0, 2**16 - 1),
    Tag.DOUBLE_LONG_UNSIGNED: (0, 2**32 - 1),
    Tag.LONG64_UNSIGNED: (0, 2**64 - 1),
}
_opt_byte = st.one_of(st.none(), st.integers(0, 254))
date_times = st.builds(
    DateTime,
    st.one_of(st.none(), st.integers(0, 0xFFFE)),
    _opt_byte,
    _opt_byte,
    _opt_byte,
    _opt_byte,
    _opt_byte,
    _opt_byte,
    _opt_byte,
    st.one_of(st.none(), st.integers(-720, 720)),
    _opt_byte,
)
simple = st.one_of(
    st.just((Tag.NULL_DATA, None)),
    st.booleans().map(lambda b: (Tag.BOOLEAN, b)),
    *[st.integers(lo, hi).map(lambda v, t=t: (t, v)) for t, (lo, hi) in _INT_RANGES.items()],
    st.binary(max_size=300).map(lambda b: (Tag.OCTET_STRING, b)),
    st.text(st.characters(max_codepoint=255), max_size=40).map(lambda s: (Tag.VISIBLE_STRING, s)),
    st.text(max_size=40).map(lambda s: (Tag.UTF8_STRING, s)),
    st.integers(0, 99).map(lambda v: (Tag.BCD, v)),
    st.floats(width=32, allow_nan=False).map(lambda f: (Tag.FLOAT32, f)),
    st.floats(allow_nan=False).map(lambda f: (Tag.FLOAT64, f)),
    st.text("01", max_size=40).map(lambda s: (Tag.BIT_STRING, BitString.from_bits(s))),
    date_times.map(lambda d: (Tag.DATE_TIME, d)),
)
typed = st.recursive(
    simple,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6).map(lambda xs: (Tag.STRUCTURE, xs)),
        st.lists(inner, max_size=6).map(lambda xs: (Tag.ARRAY, xs)),
    ),
    max_leaves=25,
)


def native(tv: tuple[int, Any]) -> Any:
    tag, v = tv
    if tag == Tag.STRUCTURE:
        return tuple(native(x) for x in v)
    if tag == Tag.ARRAY:
        return [native(x) for x in v]
    return v


@ROUND
@given(typed)
def test_axdr_round_trip(tv: tuple[int, Any]) -> None:
    raw = encode_data(*tv)
    value, end = decode_data(raw, whole=True)
    assert end == len(raw)
    assert value == native(tv) or (isinstance(value, float) and math.isclose(value, native(tv)))


@ROUND
@given(
    st.lists(st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=8), st.integers(-128, 127)), max_size=20)
)
def test_compact_array_round_trip(rows: list[tuple[int, bytes, int]]) -> None:
    desc = (2, (6, 9, 15))
    value, _ = decode_data(encode_data(Tag.COMPACT_ARRAY, (desc, rows)), whole=True)
    assert value == rows


@ROUND
@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(UTC)),
    st.integers(-720, 720),
)
def test_date_time_round_trip(dt: datetime, minutes: int) -> None:
    from datetime import timezone

    local = dt.replace(microsecond=0).astimezone(timezone(timedelta(minutes=minutes)))
    d = DateTime.from_datetime(local)
    assert DateTime.from_bytes(d.to_bytes()) == d
    assert d.to_datetime() == dt.replace(microsecond=0)


# ---- HDLC, wrapper ---------------------------------------------------------------------------

addresses = st.one_of(
    st.integers(0, 127).map(HdlcAddress),
    st.tuples(st.integers(0, 127), st.integers(0, 127)).map(lambda a: HdlcAddress(a[0], a[1], 2)),
    st.tuples(st.integers(0, 0x3FFF), st.integers(0, 0x3FFF)).map(lambda a: HdlcAddress(a[0], a[1], 4)),
)
frames = st.builds(
    HdlcFrame,
    st.sampled_from(list(FrameType)),
    addresses,
    addresses,
    st.binary(max_size=300),
    st.integers(0, 7),
    st.integers(0, 7),
    st.booleans(),
    st.booleans(),
).map(
    lambda f: HdlcFrame(
        f.type,
        f.destination,
        f.source,
        f.info,
        f.ns if f.type is FrameType.I else 0,
        f.nr if f.type in (FrameType.I, FrameType.RR, FrameType.RNR) else 0,
        f.pf,
        f.segmented,
    )
)


@ROUND
@given(st.lists(frames, min_size=1, max_size=4), st.integers(1, 50))
def test_hdlc_round_trip_and_stream(fs: list[HdlcFrame], chunk: int) -> None:
    wire = b"".join(encode_frame(f) for f in fs)
    for f in fs:
        assert decode_frame(encode_frame(f)) == f
    framer = HdlcFramer()
    got: list[object] = []
    for i in range(0, len(wire), chunk):
        got += framer.feed(wire[i : i + chunk])
    assert got == fs


@ROUND
@given(
    st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=200)), max_size=4)
)
def test_wrapper_round_trip(items: list[tuple[int, int, bytes]]) -> None:
    fs = [WrapperFrame(*i) for i in items]
    wire = b"".join(encode_wrapper(f) for f in fs)
    assert [decode_wrapper(encode_wrapper(f)) for f in fs] == fs
    framer = WrapperFramer()
    got: list[object] = []
    for i in range(0, len(wire), 7):
        got += framer.feed(wire[i : i + 7])
    assert got == fs


# ---- GCM -------------------------------------------------------------------------------------


@ROUND
@given(
    st.binary(max_size=300),
    st.integers(0, 2**32 - 1),
    st.sampled_from([0x10, 0x20, 0x30]),
    st.binary(min_size=8, max_size=8),
)
def test_gcm_round_trip(plain: bytes, ic: int, sc: int, title: bytes) -> None:
    content = encrypt(sc, title, ic, KEYS.encryption_key, KEYS.authentication_key, plain)
    assert decrypt(content, title, KEYS.encryption_key, KEYS.authentication_key) == (plain, ic, sc)


@ROUND
@given(st.binary(min_size=1, max_size=200), st.integers(1, 2**32 - 1), st.booleans())
def test_cipher_apdu_round_trip(body: bytes, ic: int, general: bool) -> None:
    plain = b"\xc4" + body
    apdu = cipher_apdu(plain, TITLE, ic, KEYS, general=general)
    out = decipher_apdu(apdu, KEYS, system_title=None if general else TITLE)
    assert (out.plain, out.invocation_counter, out.system_title) == (plain, ic, TITLE)


# ---- fuzzing ---------------------------------------------------------------------------------

_sim = DlmsMeterSimulator(TITLE, "1", HouseholdProfile(3), datetime(2024, 1, 1, tzinfo=UTC), KEYS)
SEEDS_APDU = [
    bytes.fromhex("6129A109060760857405080101A203020100A305A103020100BE10040E0800065F1F040000501F01F40007"),
    bytes.fromhex("601DA109060760857405080101BE10040E01000000065F1F0400007E1F04B0"),
    b"\xc4\x01\xc1\x00\x06\x00\x00\x13\x91",
    b"\xc4\x02\xc1\x00\x00\x00\x00\x01\x00\x0a\x01\x02\x02\x02\x09\x00\x06\x00\x00\x00",
    bytes.fromhex("0f000000010002020906010001080000060000000a"),
    bytes.fromhex("c0010000080000010000ff0200"),
    bytes.fromhex("6203800100"),
]
SEEDS_CIPHERED = [_sim.push_apdu_at(datetime(2024, 1, 1, 0, m, tzinfo=UTC)) for m in range(1, 4)] + [
    cipher_apdu(b"\xc4\x01\xc1\x00\x06\x00\x00\x13\x91", TITLE, 5, KEYS)
]
SEEDS_HDLC = [
    bytes.fromhex("7EA01F21022373E6C781801205019A06019A070400000001080400000001CCA27E"),
    bytes.fromhex("7ea00802232193bd647e"),
    DlmsMeterSimulator(TITLE, "1", HouseholdProfile(3), datetime(2024, 1, 1, tzinfo=UTC)).push_at(
        datetime(2024, 1, 1, 1, tzinfo=UTC)
    ),
]
SEEDS_AXDR = [
    bytes.fromhex("0101020409 0c07e30c130402000000ffc400 0600000001 0600000002".replace(" ", "")),
    b"\x13\x02\x02\x06\x09\x05\x00\x00\x00\x01\x00",
]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "replace"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 8))]
        elif kind == "replace" and data:
            data[pos] = draw(st.integers(0, 255))
    return bytes(data)


def _only_decode_errors(fn: Any, data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        fn(data)


@FUZZ
@given(mutated(SEEDS_HDLC), st.integers(1, 64))
def test_fuzz_hdlc(data: bytes, chunk: int) -> None:
    _only_decode_errors(decode_frame, data)
    framer = HdlcFramer()
    for i in range(0, len(data), chunk):
        for item in framer.feed(data[i : i + chunk]):
            assert isinstance(item, HdlcFrame | DecodeError)
    assert framer.pending <= len(data)


@FUZZ
@given(
    st.one_of(st.binary(max_size=300), mutated([encode_wrapper(WrapperFrame(1, 16, s)) for s in SEEDS_APDU]))
)
def test_fuzz_wrapper(data: bytes) -> None:
    _only_decode_errors(decode_wrapper, data)
    framer = WrapperFramer()
    for i in range(0, len(data), 5):
        for item in framer.feed(data[i : i + 5]):
            assert isinstance(item, WrapperFrame | DecodeError)


@FUZZ
@given(mutated(SEEDS_AXDR + [s[3:] for s in SEEDS_APDU[2:4]]))
def test_fuzz_axdr(data: bytes) -> None:
    _only_decode_errors(lambda d: decode_data(d, whole=True), data)


@FUZZ
@given(mutated(SEEDS_APDU))
def test_fuzz_apdu(data: bytes) -> None:
    _only_decode_errors(decode_apdu, data)


@FUZZ
@given(mutated(SEEDS_CIPHERED))
def test_fuzz_ciphered_apdu(data: bytes) -> None:
    _only_decode_errors(
        lambda d: decipher_apdu(d, KEYS, system_title=TITLE, guard=InvocationCounterGuard()), data
    )
    for item in PushReceiver("wrapper", KEYS).feed(encode_wrapper(WrapperFrame(1, 16, data))):
        assert isinstance(item, tuple | DecodeError)
