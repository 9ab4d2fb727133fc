"""IEC 62056-21 mode C codec, master state machine and simulator.

Vectors:
* the ``iec62056-21`` package's own tests (pwitab/iec62056-21, tests/test_data.py and
  tests/test_bcc.py): readout, request, option select, identification and BCC examples, used
  byte for byte;
* a readout laid out as the standard's data readout example (IEC 62056-21:2002, clause 6.3.4
  and the mode C flow diagram: identification ``/XXXZ...``, ``ACK 0 Z 0``, ``STX ... ! CR LF
  ETX BCC``) with the addresses a GB/EU meter sends; its values are ours, its BCC computed;
* the simulator's readouts. Every readout is cross-checked with the reference library.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from iec62056_21 import messages as ref
from iec62056_21 import utils as ref_utils

from smarthub.meters.errors import ChecksumError, MalformedFrame, TruncatedFrame
from smarthub.meters.iec62056_21 import (
    DataSet,
    IecMaster,
    IecValue,
    MasterState,
    ProtocolError,
    Readout,
    SendBytes,
    SwitchBaud,
    bcc,
    data_points,
    decode_identification,
    decode_option_select,
    decode_readout,
    decode_request,
    encode_identification,
    encode_option_select,
    encode_readout,
    encode_request,
)
from smarthub.sim.iec_meter import IecMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile

# pwitab/iec62056-21 tests/test_data.py, TestReadoutDataMessage.
REF_READOUT = b'\x023:14(314*kWh)4:15(415*kWh)\r\n!\r\n\x03"'
REF_READOUT_BAD_BCC = b"\x023:14(314*kWh)4:15(415*kWh)\r\n!\r\n\x03x"


def _frame(block: str) -> bytes:
    body = block.encode("ascii") + b"!\r\n\x03"
    return b"\x02" + body + bytes([bcc(body)])


# Laid out as the standard's data readout (clause 6.3.4); values ours.
STANDARD_LIKE = _frame(
    "0.0.0(12345678)\r\n"
    "C.1.0(87654321)\r\n"
    "0.9.1(14:30:05)\r\n"
    "0.9.2(1240715)\r\n"
    "F.F(00000000)\r\n"
    "1.8.0(012345.678*kWh)\r\n"
    "1.8.0*01(012000.001*kWh)\r\n"
    "1-0:2.8.0(000012.5*kWh)\r\n"
    "1.6.0(05.120*kW)(2407151230)\r\n"
    "32.7.0(239.8*V)52.7.0(240.1*V)72.7.0(238.9*V)\r\n"
    "5.8.0(000123.4*kvarh)\r\n"
)


def _ref_sets(frame: bytes) -> list[tuple[str | None, str, str | None]]:
    msg = ref.ReadoutDataMessage.from_representation(frame.decode("latin-1"))
    return [(ds.address, ds.value, ds.unit) for line in msg.data_block.data_lines for ds in line.data_sets]


def _our_sets(readout: Readout) -> list[tuple[str | None, str, str | None]]:
    out: list[tuple[str | None, str, str | None]] = []
    for ds in readout.data_sets():
        for i, v in enumerate(ds.values):
            out.append((ds.address if i == 0 else None, v.value, v.unit))
    return out


# ---- published vectors ----------------------------------------------------------------------


def test_reference_library_readout_vector() -> None:
    r = decode_readout(REF_READOUT)
    assert r.bcc == ord('"')
    assert [[(ds.address, ds.values) for ds in line] for line in r.lines] == [
        [("3:14", (IecValue("314", "kWh"),)), ("4:15", (IecValue("415", "kWh"),))]
    ]
    assert encode_readout(list(r.lines)) == REF_READOUT


def test_reference_library_bad_bcc_vector() -> None:
    with pytest.raises(ChecksumError) as err:
        decode_readout(REF_READOUT_BAD_BCC)
    assert err.value.protocol == "iec62056-21"
    assert err.value.offset == len(REF_READOUT_BAD_BCC) - 1


@pytest.mark.parametrize(
    "hex_or_bytes",
    [
        bytes.fromhex("01573202433030332839313033323430393232333929031b"),  # test_bcc.py, bytes1
        b"\x01P0\x02(1234567)\x03P",  # test_bcc.py, bytes_2
        b"\x01R1\x021.8.0(1)\x03k",  # test_data.py, command message
        b"\x01B0\x03q",  # test_data.py, break
        b"\x023:171.0(0)\x03\x12",  # test_data.py, answer data message
    ],
)
def test_bcc_vectors(hex_or_bytes: bytes) -> None:
    assert bcc(hex_or_bytes[1:-1]) == hex_or_bytes[-1]
    assert ref_utils.calculate_bcc(hex_or_bytes[1:-1]) == hex_or_bytes[-1:]


def test_bcc_matches_a_plain_xor_for_all_lengths() -> None:
    data = bytes(range(1, 128)) * 3
    for n in range(len(data)):
        x = 0
        for b in data[:n]:
            x ^= b
        assert bcc(data[:n]) == x


def test_reference_library_request_vectors() -> None:
    assert encode_request("45678903") == b"/?45678903!\r\n"
    assert encode_request() == b"/?!\r\n"
    assert decode_request(b"/?45678903!\r\n") == "45678903"
    assert decode_request(b"/?!\r\n") == ""


def test_reference_library_option_select_vector() -> None:
    opt = decode_option_select(b"\x06051\r\n")
    assert (opt.protocol_control, opt.baud_char, opt.mode) == ("0", "5", "1")
    assert encode_option_select(9600, mode="1") == b"\x06051\r\n"
    assert encode_option_select(9600) == b"\x06050\r\n"


def test_reference_library_identification_vector() -> None:
    ident = decode_identification(b"/Els6\\2EK280\r\n")
    assert (ident.manufacturer, ident.baud_char, ident.baud) == ("Els", "6", 19200)
    assert ident.capabilities == ("2",)
    assert ident.identification == "EK280"
    # The reference keeps the capability character in the identification.
    other = ref.IdentificationMessage.from_representation("/Els6\\2EK280\r\n")
    assert other.identification == "".join(ident.capabilities) + ident.identification
    assert encode_identification("Els", 19200, "EK280", ["2"]) == b"/Els6\\2EK280\r\n"


def test_identification_without_capability() -> None:
    ident = decode_identification(b"/LGZ4ZMD3104100.B32\r\n")
    assert (ident.manufacturer, ident.baud, ident.capabilities, ident.identification) == (
        "LGZ",
        4800,
        (),
        "ZMD3104100.B32",
    )


@pytest.mark.parametrize(
    "bad", [b"", b"LGZ4X\r\n", b"/L\r\n", b"/LGZ4ab!c\r\n", b"/LG\xff4abc\r\n", b"/LGZ\\abc\r\n"]
)
def test_bad_identification(bad: bytes) -> None:
    with pytest.raises((MalformedFrame, TruncatedFrame)):
        decode_identification(bad)


# ---- the standard-like readout, decoded and mapped ------------------------------------------


def test_standard_like_readout_matches_reference() -> None:
    r = decode_readout(STANDARD_LIKE)
    assert _our_sets(r) == _ref_sets(STANDARD_LIKE)
    assert r.get("1.6.0") == DataSet("1.6.0", (IecValue("05.120", "kW"), IecValue("2407151230")))
    assert len(r.lines[9]) == 3


def test_standard_like_data_points() -> None:
    points = {p.key: p for p in data_points(decode_readout(STANDARD_LIKE))}
    # 0.9.2 = 1YYMMDD (century digit 1 = 20xx); London is on BST (UTC+1) in July.
    when = datetime(2024, 7, 15, 13, 30, 5, tzinfo=UTC)
    assert {p.meter for p in points.values()} == {"12345678"}  # 0.0.0 before C.1.0
    assert {p.time for p in points.values()} == {when}
    assert points["1.8.0"].value == Decimal("12345.678") and points["1.8.0"].unit == "kWh"
    assert str(points["1.8.0"].value) == "12345.678"
    assert points["1.8.0*01"].value == Decimal("12000.001")
    assert points["1-0:2.8.0"].value == Decimal("12.5")
    assert points["1.6.0"].unit == "kW"
    assert points["1.6.0/1"].value == Decimal("2407151230")
    assert points["52.7.0"].value == Decimal("240.1") and points["52.7.0"].unit == "V"
    assert points["5.8.0"].unit == "kvarh"
    assert points["0.0.0"].value == "12345678"  # serials stay text
    assert points["C.1.0"].value == "87654321"
    assert points["0.9.1"].value == "14:30:05"
    assert points["F.F"].value == "00000000"
    assert all(p.protocol == "iec62056-21" and not p.flags for p in points.values())


def test_data_points_time_zone_winter_and_injected_tz() -> None:
    frame = _frame("0.9.1(235959)\r\n0.9.2(241231)\r\n1.8.0(1*kWh)\r\n")
    (p, *_) = [x for x in data_points(decode_readout(frame), meter_id="m") if x.key == "1.8.0"]
    assert p.time == datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC)
    (q, *_) = [
        x
        for x in data_points(decode_readout(frame), "m", tz=ZoneInfo("Europe/Amsterdam"))
        if x.key == "1.8.0"
    ]
    assert q.time == datetime(2024, 12, 31, 22, 59, 59, tzinfo=UTC)


def test_data_points_fallbacks_and_error_flag() -> None:
    frame = _frame("1.8.0(000001.000*kWh)\r\nF.F(00000004)\r\n")
    ident = decode_identification(b"/ISk5\\2MT174-0001\r\n")
    t = datetime(2024, 1, 1, 12, tzinfo=UTC)
    points = data_points(decode_readout(frame, ident), time=t)
    assert {p.meter for p in points} == {"MT174-0001"}
    assert {p.time for p in points} == {t}
    assert all(p.flags == {"error"} for p in points)
    assert {p.meter for p in data_points(decode_readout(frame, ident), meter_id="X")} == {"X"}
    with pytest.raises(MalformedFrame):
        data_points(decode_readout(frame))  # no serial, no identification, no meter_id


@pytest.mark.parametrize(
    "block",
    [
        "0.9.1(25:00:00)\r\n0.9.2(240101)\r\n",
        "0.9.1(12:00:00)\r\n0.9.2(241341)\r\n",
        "0.9.2(5240101)\r\n0.9.1(x)\r\n",
    ],
)
def test_data_points_bad_clock_is_malformed(block: str) -> None:
    with pytest.raises(MalformedFrame):
        data_points(decode_readout(_frame(block)), meter_id="m")


def test_continuation_data_set_without_address() -> None:
    frame = _frame("P.01(2407150000)(00)(15)\r\n(0.123*kWh)(0.456*kWh)\r\n")
    keys = [p.key for p in data_points(decode_readout(frame), meter_id="m")]
    assert keys == ["P.01", "P.01/1", "P.01/2", "P.01/3", "P.01/4"]
    assert _our_sets(decode_readout(frame))[3:] == [("", "0.123", "kWh"), (None, "0.456", "kWh")]


# ---- errors -------------------------------------------------------------------------------


def test_every_truncation_is_truncated_frame() -> None:
    for n in range(len(STANDARD_LIKE)):
        with pytest.raises(TruncatedFrame):
            decode_readout(STANDARD_LIKE[:n])


def test_every_single_bit_flip_is_detected() -> None:
    for i in range(1, len(STANDARD_LIKE)):
        for bit in range(7):
            bad = bytearray(STANDARD_LIKE)
            bad[i] ^= 1 << bit
            with pytest.raises((ChecksumError, MalformedFrame, TruncatedFrame)):
                decode_readout(bytes(bad))


@pytest.mark.parametrize(
    "block",
    [
        "1.8.0(1*kWh\r\n",  # unbalanced
        "1.8.0(1*kWh)",  # line not ended by CR LF before "!"
        "1.8.0(1*kWh)\n",  # bare LF
        "1.8.0(1*k*Wh)\r\n",  # two "*"
        "1.8.0\r\n",  # no value
        "12345678901234567(1)\r\n",  # address longer than 16
        "1.8.0(1)x\r\n",  # trailing text
        "\r\n",  # empty line
    ],
)
def test_grammar_errors_are_malformed(block: str) -> None:
    with pytest.raises(MalformedFrame):
        decode_readout(_frame(block))


def test_other_malformed_frames() -> None:
    with pytest.raises(MalformedFrame):
        decode_readout(b"1.8.0(1)\r\n!\r\n\x03\x00")  # no STX
    with pytest.raises(MalformedFrame):
        decode_readout(REF_READOUT + b"\r\n")  # bytes after the BCC
    body = b"1.8.0(1)\r\n\x03"  # no "!"
    with pytest.raises(MalformedFrame):
        decode_readout(b"\x02" + body + bytes([bcc(body)]))
    body = "1.8.0(\u00e9)\r\n!\r\n\x03".encode("latin-1")
    with pytest.raises(MalformedFrame):
        decode_readout(b"\x02" + body + bytes([bcc(body)]))
    with pytest.raises(MalformedFrame):
        decode_readout("text")  # type: ignore[arg-type]


def test_encoder_rejects_what_it_cannot_carry() -> None:
    with pytest.raises(ValueError):
        encode_readout([DataSet("1.8.0", (IecValue("1(2"),))])
    with pytest.raises(ValueError):
        encode_readout([DataSet("1.8.0", ())])
    with pytest.raises(ValueError):
        encode_request("a!b")


# ---- round trips ----------------------------------------------------------------------------

_ADDR_CHARS = st.sampled_from("0123456789.:-*&CFPabcxyz ")
_VAL_CHARS = st.sampled_from("0123456789.-+: ,abcXYZ")
_value = st.builds(
    IecValue,
    st.text(_VAL_CHARS, max_size=20),
    st.none() | st.text(st.sampled_from("kWhVAvar%3m"), max_size=6),
)
_data_set = st.builds(
    DataSet,
    st.text(_ADDR_CHARS, max_size=16),
    st.tuples(_value) | st.lists(_value, min_size=1, max_size=4).map(tuple),
)
_lines = st.lists(st.lists(_data_set, min_size=1, max_size=3).map(tuple), max_size=8)


@given(_lines)
def test_round_trip(lines: list[tuple[DataSet, ...]]) -> None:
    frame = encode_readout(lines)
    r = decode_readout(frame)
    # A data set with an empty address merges with the one before it when decoded (same text).
    assert encode_readout(list(r.lines)) == frame
    assert r.bcc == frame[-1]


@given(_lines)
def test_data_points_are_the_data_sets(lines: list[tuple[DataSet, ...]]) -> None:
    """``data_points`` takes the block apart with string splits, the data sets view with a
    regular expression: the same keys, units and values (as text, or its number) either way."""
    r = decode_readout(encode_readout(lines))
    expected: list[tuple[str, str, str | None]] = []
    address, n = "", 0
    for ds in r.data_sets():
        if ds.address:
            address, n = ds.address, -1
        if not address:
            continue  # nothing to name these values by
        for v in ds.values:
            n += 1
            expected.append((f"{address}/{n}" if n else address, v.value, v.unit or None))
    try:
        points = data_points(r, "m")
    except MalformedFrame:
        return  # a generated 0.9.1/0.9.2 pair that is no clock
    assert [(p.key, p.unit) for p in points] == [(k, u) for k, _, u in expected]
    for p, (_, text, _) in zip(points, expected, strict=True):
        if isinstance(p.value, Decimal):
            assert (
                p.value == Decimal(text.strip()) and text.strip().lstrip("+-").replace(".", "", 1).isdigit()
            )
        else:
            assert p.value == text


@given(_lines.filter(lambda ls: all(ds.address for line in ls for ds in line)))
@settings(max_examples=100)
def test_round_trip_cross_checked_with_reference(lines: list[tuple[DataSet, ...]]) -> None:
    frame = encode_readout(lines)
    ours = [(ds.address, str(ds.values[0])) for ds in decode_readout(frame).data_sets()]
    # The reference splits data sets at every ")", so compare single-value sets only.
    if all(len(ds.values) == 1 for line in lines for ds in line):
        theirs = _ref_sets(frame)
        assert [(a, v if u is None else f"{v}*{u}") for a, v, u in theirs] == ours


# ---- the master against the simulated meter ---------------------------------------------


def _session(
    meter: IecMeterSimulator, t: datetime, chunk: int, echo: bool, max_baud: int = 19200
) -> tuple[list[object], Readout | None]:
    master = IecMaster(max_baud=max_baud)
    events: list[object] = []
    outgoing = [master.start(meter.serial)]
    readout = None
    while outgoing:
        sent = outgoing.pop(0)
        reply = (sent if echo else b"") + meter.respond(sent, t)
        for i in range(0, len(reply), chunk):
            for ev in master.receive(reply[i : i + chunk]):
                events.append(ev)
                if isinstance(ev, SendBytes):
                    outgoing.append(ev.data)
                elif isinstance(ev, Readout):
                    readout = ev
    return events, readout


@pytest.mark.parametrize(("chunk", "echo"), [(1, False), (7, True), (4096, False)])
def test_sign_on_to_readout_session(chunk: int, echo: bool) -> None:
    start = datetime(2024, 7, 15, 0, 0, tzinfo=UTC)
    meter = IecMeterSimulator("12345678", "LGZ", HouseholdProfile(seed=3), start)
    t = start + timedelta(hours=9, minutes=17, seconds=42)
    events, readout = _session(meter, t, chunk, echo)
    assert events[0] == SendBytes(b"\x06050\r\n")
    assert events[1] == SwitchBaud(9600)
    assert isinstance(events[2], Readout) and len(events) == 3
    assert readout is not None and readout.identification is not None
    assert readout.identification.manufacturer == "LGZ"
    assert _our_sets(readout) == _ref_sets(meter.readout_at(t))
    points = {p.key: p for p in data_points(readout)}
    reg = meter.registers
    assert {p.meter for p in points.values()} == {"12345678"}
    assert {p.time for p in points.values()} == {t}
    assert points["1.8.0"].value == Decimal(reg.import_wh).scaleb(-3)
    assert points["1.8.1"].value + points["1.8.2"].value == points["1.8.0"].value
    assert points["2.8.0"].value == Decimal(reg.export_wh).scaleb(-3)
    assert points["1.7.0"].value == Decimal(reg.import_w).scaleb(-3) and points["1.7.0"].unit == "kW"
    assert points["32.7.0"].unit == "V"


def test_session_baud_cap_and_address_mismatch() -> None:
    start = datetime(2024, 1, 15, tzinfo=UTC)
    meter = IecMeterSimulator("42", "ABB", HouseholdProfile(seed=1), start)
    events, readout = _session(meter, start + timedelta(minutes=5), 3, False, max_baud=2400)
    assert events[:2] == [SendBytes(b"\x06030\r\n"), SwitchBaud(2400)] and readout is not None
    assert meter.respond(encode_request("43"), start + timedelta(minutes=6)) == b""
    assert meter.respond(b"garbage", start + timedelta(minutes=6)) == b""
    assert meter.respond(encode_option_select(9600, mode="1"), start + timedelta(minutes=6)) == b""


def test_master_errors() -> None:
    m = IecMaster()
    m.start()
    (ev,) = m.receive(b"/ABCA\\2modeB\r\n")  # mode B baud character
    assert isinstance(ev, ProtocolError) and m.state == MasterState.FAILED
    assert m.receive(b"/LGZ5X\r\n") == []  # failed sessions ignore input until start()
    m.start()
    m.receive(b"/LGZ5X\r\n")
    (ev,) = m.receive(REF_READOUT_BAD_BCC)
    assert isinstance(ev, ProtocolError) and isinstance(ev.error, ChecksumError)
    m.start()
    m.receive(b"/LGZ5X\r\n")
    (ev,) = m.receive(b"\x15")
    assert isinstance(ev, ProtocolError)
    m = IecMaster(max_message=64)
    m.start()
    m.receive(b"/LGZ5X\r\n")
    (ev,) = m.receive(b"\x02" + b"1.8.0(1)\r\n" * 10)
    assert isinstance(ev.error, TruncatedFrame)


def test_simulator_time_cannot_go_backwards() -> None:
    start = datetime(2024, 3, 1, tzinfo=UTC)
    meter = IecMeterSimulator("1", "LGZ", HouseholdProfile(seed=2), start)
    meter.advance(start + timedelta(days=1))
    with pytest.raises(ValueError):
        meter.advance(start)
    before = meter.registers.import_wh
    meter.advance(start + timedelta(days=2))
    assert meter.registers.import_wh > before
