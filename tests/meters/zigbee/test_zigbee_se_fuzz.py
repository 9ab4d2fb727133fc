"""Fuzzing the ZigBee SE codec: whatever the bytes, `decode_zcl` and `data_points` raise only
`DecodeError` subclasses. ``SMARTHUB_FUZZ_EXAMPLES`` sets the number of examples (default 300).
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smarthub.meters.errors import DecodeError
from smarthub.meters.zigbee_se import MeterFormatting, data_points, decode_zcl
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.zigbee_meter import ZigbeeMeterSimulator

EXAMPLES = int(os.environ.get("SMARTHUB_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_START = datetime(2024, 2, 1, tzinfo=UTC)
_SIM = ZigbeeMeterSimulator("00:11:22:33:44:55:66:77", "electric", HouseholdProfile(seed=8), _START)
VALID = [
    _SIM.formatting_report(),
    _SIM.report_at(_START + timedelta(hours=8)),
    b"\x1c_\x11\xc0\n\x00\x00\x25\x01\x02\x03\x04\x05\x06",  # zigpy test_frame_header + a uint48
    bytes.fromhex("182a0100000025e8030000000099098602030022e80300"),
]


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
            data[pos:pos] = draw(st.binary(min_size=1, max_size=6))
        else:
            del data[pos : pos + draw(st.integers(min_value=1, max_value=6))]
    return bytes(data)


def _decode_and_map(data: bytes, state: MeterFormatting) -> None:
    with contextlib.suppress(DecodeError):
        data_points(decode_zcl(data), state, "m", _START)


@FUZZ
@given(
    mutated(),
    st.builds(
        MeterFormatting, unit_of_measure=st.integers(0, 255), device_type=st.none() | st.integers(0, 255)
    ),
)
def test_mutated(data: bytes, state: MeterFormatting) -> None:
    _decode_and_map(data, state)


@FUZZ
@given(st.binary(max_size=120))
def test_random_bytes(data: bytes) -> None:
    state = MeterFormatting(unit_of_measure=0x80)
    _decode_and_map(data, state)
    _decode_and_map(b"\x18\x00\x0a" + data, state)
    _decode_and_map(b"\x18\x00\x01" + data, state)
