"""Fuzzing the IEC 62056-21 codec: whatever the bytes, `decode_readout` and `data_points` raise only
`DecodeError` subclasses, and `IecMaster.receive` raises nothing.

``SMARTHUB_FUZZ_EXAMPLES`` sets the number of examples (default 300).
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smarthub.meters.errors import DecodeError
from smarthub.meters.iec62056_21 import (
    _HOUR_STARTS,
    IecMaster,
    ProtocolError,
    _clock,
    _decode_stepwise,
    bcc,
    data_points,
    decode_readout,
)
from smarthub.sim.iec_meter import IecMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile

EXAMPLES = int(os.environ.get("SMARTHUB_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_START = datetime(2024, 10, 27, 0, 0, tzinfo=UTC)
_METER = IecMeterSimulator("31415926", "LGZ", HouseholdProfile(seed=5), _START)
VALID = [
    _METER.readout_at(_START + timedelta(hours=1, minutes=30)),  # the autumn clock change hour
    b'\x023:14(314*kWh)4:15(415*kWh)\r\n!\r\n\x03"',
]
IDENT = _METER.identification_message


def fix_bcc(data: bytes) -> bytes:
    """Give a mutated frame a correct BCC again, so the grammar checks get exercised."""
    etx = data.find(b"\x03", 1)
    if data[:1] != b"\x02" or etx < 0:
        return data
    return data[: etx + 1] + bytes([bcc(data[1 : etx + 1])])


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        pos = draw(st.integers(min_value=0, max_value=max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(
                st.binary(min_size=1, max_size=6)
                | st.sampled_from([b"(", b")", b"!", b"*", b"\r\n", b"\x03"])
            )
        else:
            del data[pos : pos + draw(st.integers(min_value=1, max_value=6))]
    if draw(st.booleans()):
        return fix_bcc(bytes(data))
    return bytes(data)


def _decode_and_map(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        readout = decode_readout(data)
        data_points(readout, time=_START) if readout.get("0.0.0") else data_points(readout, "m")


@FUZZ
@given(mutated())
def test_decode_mutated(data: bytes) -> None:
    _decode_and_map(data)


@FUZZ
@given(st.binary(max_size=300))
def test_decode_random_bytes(data: bytes) -> None:
    _decode_and_map(data)
    _decode_and_map(fix_bcc(b"\x02" + data + b"!\r\n\x03\x00"))


@FUZZ
@given(
    st.lists(
        st.binary(max_size=40) | st.sampled_from([IDENT, b"/?!\r\n", b"\x02", b"\x03", b"\x15"]), max_size=8
    ),
    st.lists(mutated(), max_size=2),
)
def test_master_framer_never_raises(chunks: list[bytes], frames: list[bytes]) -> None:
    master = IecMaster(max_message=512)
    master.start()
    for piece in [*chunks, IDENT, *frames]:
        for ev in master.receive(piece):
            if isinstance(ev, ProtocolError):
                assert isinstance(ev.error, DecodeError)


@FUZZ
@given(mutated() | st.builds(lambda d: IDENT + d, mutated()))
def test_the_one_match_path_decodes_as_the_stepwise_one(data: bytes) -> None:
    """``decode_readout`` takes a well-formed framed message in one regular-expression match;
    whatever the bytes, it answers exactly as the step-by-step decoder (same readout, or the
    same error at the same offset)."""

    def outcome(decode: object) -> object:
        try:
            return decode(data)  # type: ignore[operator]
        except DecodeError as err:
            return (type(err), str(err), err.offset)

    assert outcome(decode_readout) == outcome(lambda d: _decode_stepwise(d, None))


def test_the_clock_is_the_same_from_the_hour_cache() -> None:
    """A meter's clock read in an hour seen before (the cached hour start plus minutes and
    seconds) is the instant computed from scratch, around both clock changes too."""
    london = ZoneInfo("Europe/London")
    for day, hours in (("241027", range(24)), ("240331", range(24)), ("240715", (0, 10, 23))):
        for hour in hours:
            for t in (f"{hour:02d}0000", f"{hour:02d}:30:15", f"{hour:02d}5959", f"{hour:02d}:59:60"):
                _HOUR_STARTS.clear()
                try:
                    fresh = _clock(day, t, london)
                except DecodeError as err:
                    fresh = str(err)  # type: ignore[assignment]
                for _ in range(2):  # the second read comes from the cache when the hour has one
                    try:
                        again = _clock(day, t, london)
                    except DecodeError as err:
                        again = str(err)  # type: ignore[assignment]
                    assert again == fresh, (day, t)


@FUZZ
@given(st.binary(max_size=2048))
def test_the_folded_bcc_is_the_xor_of_every_byte(data: bytes) -> None:
    expected = 0
    for b in data:
        expected ^= b
    assert bcc(data) == expected
