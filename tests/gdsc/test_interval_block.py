"""The channel-day block codec: round trips, fuzzing, and clear errors on corrupt blocks."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smarthub.gdsc.readings.interval_block import DELTA, FULL, BlockError, decode, encode, slots_per_day

EXAMPLES = int(os.environ.get("SMARTHUB_FUZZ_EXAMPLES", "300"))
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
DURATIONS = st.sampled_from([1800, 900, 3600, 86400, 300, 60])


@st.composite
def days(draw: st.DrawFn) -> tuple[int, dict[int, tuple[int, int]]]:
    slots = slots_per_day(draw(DURATIONS))
    present = draw(st.sets(st.integers(0, slots - 1), max_size=min(slots, 96)))
    values = st.one_of(INT64, st.integers(-5000, 5000))
    quality = st.sampled_from([0, 1, 1, 1, 4, 8, 0x10, 0xFFFF])
    return slots, {s: (draw(values), draw(quality)) for s in present}


@settings(max_examples=EXAMPLES, deadline=None)
@given(days())
def test_round_trip(day: tuple[int, dict[int, tuple[int, int]]]) -> None:
    slots, readings = day
    assert decode(encode(slots, readings), slots) == readings


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(max_size=80), st.sampled_from([1, 24, 48, 96]))
def test_arbitrary_bytes_decode_or_raise_block_error(data: bytes, slots: int) -> None:
    try:
        out = decode(data, slots)
    except BlockError:
        return
    # Whatever decodes must re-encode to a block that decodes to the same readings.
    assert decode(encode(slots, out), slots) == out


@settings(max_examples=EXAMPLES, deadline=None)
@given(days(), st.data())
def test_any_truncation_or_flipped_byte_is_an_error_or_another_valid_day(
    day: tuple[int, dict[int, tuple[int, int]]], data: st.DataObject
) -> None:
    slots, readings = day
    block = encode(slots, readings)
    cut = data.draw(st.integers(0, len(block) - 1))
    with pytest.raises(BlockError):
        decode(block[:cut], slots)
    i = data.draw(st.integers(0, len(block) - 1))
    flipped = bytearray(block)
    flipped[i] ^= data.draw(st.integers(1, 255))
    try:
        other = decode(bytes(flipped), slots)
    except BlockError:
        return
    assert decode(encode(slots, other), slots) == other


def test_a_full_half_hourly_day_is_compact() -> None:
    # A household's consumption in Wh per half hour, all valid: 1 + 1 + 1 + ~2 bytes a value.
    values = [120, 95, 90, 88, 85, 90, 110, 300, 650, 420, 380, 360, 500, 610, 480, 390] * 3
    block = encode(48, {i: (v, 1) for i, v in enumerate(values)})
    assert block[0] & FULL
    assert len(block) <= 3 + 2 * 48
    # A cumulative register moves little from one half hour to the next: deltas win.
    register = encode(48, {i: (1_234_567 + 150 * i, 1) for i in range(48)})
    assert register[0] & DELTA and len(register) <= 3 + 4 + 2 * 47


def test_sparse_day_and_quality_exceptions() -> None:
    readings = {0: (5, 1), 7: (6, 1), 8: (-3, 8), 47: (2**63 - 1, 1)}
    block = encode(48, readings)
    assert not block[0] & FULL
    assert decode(block, 48) == readings
    assert decode(encode(48, {}), 48) == {}


@pytest.mark.parametrize(
    ("block", "slots", "message"),
    [
        (b"", 48, "empty block"),
        (b"\x21\x01\x00", 48, "version 2"),
        (b"\x15\x01\x00", 1, "unknown block flags"),
        (b"\x10\x01", 48, "truncated presence bitmap"),
        (b"\x10\x00\x00\x00\x00\x00\x80\x01\x00", 47, "past the day"),
        (b"\x11\x01\x00\x02\x00", 1, "1 trailing bytes"),
        (b"\x11\x01\x00", 1, "truncated varint at offset 3"),
        (b"\x11\x01\x02\x00\x04\x00\x04\x02", 1, "2 quality exceptions for 1 readings"),
        (b"\x11" + b"\xff" * 11, 1, "varint longer than 10 bytes"),
        (b"\x11\x01\x00\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 1, "does not fit a signed 64-bit"),
    ],
)
def test_corrupt_blocks_say_what_is_wrong(block: bytes, slots: int, message: str) -> None:
    with pytest.raises(BlockError, match=message):
        decode(block, slots)


def test_bad_input_to_encode() -> None:
    with pytest.raises(BlockError, match="slot 48 outside"):
        encode(48, {48: (1, 1)})
    with pytest.raises(BlockError, match="signed 64-bit"):
        encode(48, {0: (2**63, 1)})
    with pytest.raises(BlockError, match="does not divide a day"):
        slots_per_day(7)
