"""The ZCL On/Off cluster (0x0006) commands a hub sends a smart plug, and the plug's Default
Response: byte-exact against zigpy, clear errors, and fuzzed (only DecodeError ever comes out).
``SMARTHUB_FUZZ_EXAMPLES`` sets the number of fuzz examples (default 300)."""

from __future__ import annotations

import contextlib
import os

import pytest
import zigpy.zcl.foundation as zf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from zigpy.zcl.clusters.general import OnOff

from smarthub.meters.errors import DecodeError, MalformedFrame, TruncatedFrame
from smarthub.meters.zigbee_se import (
    ON_OFF_CLUSTER,
    decode_default_response,
    decode_on_off,
    decode_zcl,
    encode_default_response,
    encode_on_off,
    on_off_state,
    report_attributes,
)

EXAMPLES = int(os.environ.get("SMARTHUB_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("command", ["off", "on", "toggle"])
@pytest.mark.parametrize("sequence", [0, 7, 255])
def test_commands_are_what_zigpy_builds_and_parses(command: str, sequence: int) -> None:
    ours = encode_on_off(command, sequence)
    theirs = zf.ZCLHeader.cluster(sequence, getattr(OnOff.ServerCommandDefs, command).id).serialize()
    assert ours == theirs
    hdr, rest = zf.ZCLHeader.deserialize(ours)
    assert (hdr.tsn, hdr.command_id, rest) == (sequence, getattr(OnOff.ServerCommandDefs, command).id, b"")
    assert hdr.frame_control.direction == zf.Direction.Client_to_Server
    cmd = decode_on_off(ours)
    assert (cmd.command, cmd.sequence, cmd.wants_response) == (command, sequence, True)


def test_default_response_as_zigpy_reads_it() -> None:
    frame = encode_default_response(ON_OFF_CLUSTER, 9, 0x01, 0x00)
    hdr, rest = zf.ZCLHeader.deserialize(frame)
    assert hdr.command_id == zf.GeneralCommand.Default_Response and hdr.tsn == 9
    assert hdr.frame_control.direction == zf.Direction.Server_to_Client
    args, _ = zf.GENERAL_COMMANDS[zf.GeneralCommand.Default_Response].schema.deserialize(rest)
    assert (args.command_id, args.status) == (0x01, zf.Status.SUCCESS)
    answer = decode_default_response(frame, ON_OFF_CLUSTER)
    assert (answer.sequence, answer.command_id, answer.status) == (9, 0x01, 0x00)


def test_the_plug_reports_its_state() -> None:
    frame = decode_zcl(report_attributes([(0x0000, 0x10, True)], 3), ON_OFF_CLUSTER)
    assert on_off_state(frame) is True
    assert on_off_state(decode_zcl(report_attributes([(0x0000, 0x10, None)]), ON_OFF_CLUSTER)) is None


@pytest.mark.parametrize(
    ("frame", "error", "message"),
    [
        (b"\x01\x05\x07", MalformedFrame, "unknown On/Off command 0x07"),
        (b"\x01\x05\x01\x00", MalformedFrame, "carries no payload"),
        (b"\x09\x05\x01", MalformedFrame, "not a cluster-specific client-to-server"),
        (b"\x00\x05\x01", MalformedFrame, "not a cluster-specific client-to-server"),
        (b"\x05\x34\x12\x05\x01", MalformedFrame, "manufacturer-specific"),
        (b"\x01\x05", TruncatedFrame, "header cut off"),
    ],
)
def test_bad_commands_say_what_is_wrong(frame: bytes, error: type[DecodeError], message: str) -> None:
    with pytest.raises(error, match=message):
        decode_on_off(frame)


def test_bad_default_responses_say_what_is_wrong() -> None:
    with pytest.raises(TruncatedFrame, match="Default Response cut off"):
        decode_default_response(b"\x18\x05\x0b\x01", ON_OFF_CLUSTER)
    with pytest.raises(MalformedFrame, match="expected a Default Response"):
        decode_default_response(b"\x18\x05\x0a", ON_OFF_CLUSTER)
    with pytest.raises(ValueError, match="must be one of"):
        encode_on_off("dim", 1)


VALID = [encode_on_off(c, 17) for c in ("on", "off", "toggle")] + [
    encode_default_response(ON_OFF_CLUSTER, 17, 1, 0)
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert"]))
        pos = draw(st.integers(min_value=0, max_value=max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif kind == "truncate":
            del data[pos:]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


@FUZZ
@given(st.one_of(mutated(), st.binary(max_size=12)))
def test_fuzz_only_decode_errors_come_out(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_on_off(data)
    with contextlib.suppress(DecodeError):
        decode_default_response(data, ON_OFF_CLUSTER)
