"""Wireless receivers and line bridges: the iM871A stick's HCI framing, rtl-wmbus and plain hex
lines, ZigBee bridge lines, pipes; and a wired M-Bus meter polled again and again."""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smarthub.han.im871a import (
    DEVMGMT,
    PING_RSP,
    RADIOLINK,
    WMBUSMSG_IND,
    HciFramer,
    HciMessage,
    Im871aReceiver,
    encode_hci,
    rssi_dbm,
)
from smarthub.han.lines import LineFramer, PipeStream, WMBusLines, ZigbeeLines, wmbus_line, zigbee_line
from smarthub.han.mbus_poll import mbus_cycle
from smarthub.han.poll import SimulatedLink
from smarthub.han.wmbus_port import WMBusPort
from smarthub.han.zigbee_port import ZigbeePort
from smarthub.meters.errors import ChecksumError, DecodeError, MalformedFrame
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.mbus_meter import MBusMeterSimulator
from smarthub.sim.wires import im871a_frame, strip_link_crcs
from smarthub.sim.wmbus_meter import WMBusMeterSimulator
from smarthub.sim.zigbee_meter import ZigbeeMeterSimulator

T0 = datetime(2026, 3, 2, tzinfo=UTC)
EXAMPLES = int(os.environ.get("SMARTHUB_FUZZ_EXAMPLES", "300"))
KEY = bytes(range(16))

# A frame as rtl-wmbus prints it (the wmbusmeters fork: CRCs removed, L corrected), from the
# comment in wmbusmeters' src/wmbus_rtlwmbus.cc: a Qundis (QDS) heat cost allocator, id 94740459.
RTL_WMBUS_LINE = (
    "C1;1;1;2019-02-09 07:14:18.000;117;102;94740459;0x49449344590474943508780dff5f3500827f0000f10007b06e"
    "ffff530100005f2c620100007f2118010000008000800080008000000000000000000e003f005500d4ff2f046d10086922"
)


def meter(ident: int = 12345678) -> WMBusMeterSimulator:
    return WMBusMeterSimulator(ident, "LSE", "water", KEY, HouseholdProfile(1), start=T0, mode=5)


def test_the_stick_framing_round_trips_with_crc_rssi_and_time_stamp() -> None:
    raw = encode_hci(RADIOLINK, WMBUSMSG_IND, b"\x44\x93\x15", rssi=200, timestamp=0x01020304)
    assert raw[:4] == bytes((0xA5, 0xE2, 0x03, 0x03))  # SOF, CRC|RSSI|time stamp + radio link, msg, length
    (msg,) = HciFramer().feed(raw)
    assert msg == HciMessage(RADIOLINK, WMBUSMSG_IND, b"\x44\x93\x15", 0x01020304, 200)
    assert msg.telegram() == b"\x03\x44\x93\x15"  # the length byte back in front


def test_the_stick_framer_resynchronises_after_noise_and_a_corrupted_frame() -> None:
    good = encode_hci(DEVMGMT, PING_RSP)
    bad = bytearray(encode_hci(RADIOLINK, WMBUSMSG_IND, bytes(20), rssi=100))
    bad[10] ^= 0xFF
    framer = HciFramer()
    out = framer.feed(b"\x00\x13" + bytes(bad[:7])) + framer.feed(bytes(bad[7:]) + good)
    errors = [o for o in out if isinstance(o, DecodeError)]
    messages = [o for o in out if isinstance(o, HciMessage)]
    assert any(isinstance(e, ChecksumError) for e in errors)
    assert messages == [HciMessage(DEVMGMT, PING_RSP, b"")]  # nothing of the corrupted frame


async def test_telegrams_through_the_stick_decode_with_the_meters_key() -> None:
    sim = meter()
    radio = WMBusPort("stick", {sim.meter_id: KEY}, has_crc=False)
    stick = Im871aReceiver(radio)
    stream = b"".join(im871a_frame(sim.frame_at(T0 + timedelta(minutes=i))) for i in range(3))
    batches = stick.receive(stream[:17]) + stick.receive(stream[17:])  # split mid-frame, as USB does
    assert [len(b.errors) for b in batches] == [0, 0, 0] and all(b.points for b in batches)
    assert {p.meter for b in batches for p in b.points} == {sim.meter_id}


def test_the_sticks_rssi_byte_becomes_dbm_and_reaches_the_hubs_judgement() -> None:
    """The raw RSSI byte on the data sheet's line (half a dB a step, −100 dBm at 45, 0 dBm from
    230 up), passed on with the receiver's sensitivity so the hub can call a signal weak."""
    assert (rssi_dbm(45), rssi_dbm(205), rssi_dbm(125), rssi_dbm(230), rssi_dbm(255)) == (
        -100.0,
        -20.0,
        -60.0,
        0.0,
        0.0,
    )
    assert rssi_dbm(0) == -122.5
    with pytest.raises(ValueError, match=r"not 0\.\.255"):
        rssi_dbm(256)
    sim = meter()
    stick = Im871aReceiver(WMBusPort("stick", {sim.meter_id: KEY}, has_crc=False))
    (batch,) = stick.receive(im871a_frame(sim.frame_at(T0), rssi=49))
    assert batch.points and batch.rssi_dbm == -98.0 and batch.sensitivity_dbm == -100.0
    no_rssi = encode_hci(
        RADIOLINK, WMBUSMSG_IND, strip_link_crcs(sim.frame_at(T0 + timedelta(minutes=1)))[1:]
    )
    (plain,) = stick.receive(no_rssi)
    assert plain.points and plain.rssi_dbm is None


def test_a_radio_port_tells_frames_with_and_without_crcs_apart() -> None:
    sim = meter()
    radio = WMBusPort("radio", {sim.meter_id: KEY}, has_crc=None)
    with_crc = sim.frame_at(T0)
    without = strip_link_crcs(sim.frame_at(T0 + timedelta(minutes=1)))
    assert radio.receive(with_crc).points and radio.receive(without).points and radio.errors == 0


def test_rtl_wmbus_and_plain_hex_lines() -> None:
    frame = wmbus_line(RTL_WMBUS_LINE)
    assert len(frame) == frame[0] + 1 == 74  # CRCs removed, L corrected
    assert frame[4:8] == bytes.fromhex("59047494")  # the id the line names, BCD, least significant first
    assert wmbus_line("0x" + frame.hex().upper()) == frame == wmbus_line(" ".join(f"{b:02x}" for b in frame))
    with pytest.raises(ChecksumError, match="flagged"):
        wmbus_line(RTL_WMBUS_LINE.replace("C1;1;1;", "C1;0;1;"))
    with pytest.raises(MalformedFrame, match="not hex"):
        wmbus_line("T1;1;1;2019-02-09;117;102;94740459;0xZZ")


async def test_hex_lines_from_a_pipe_reach_the_port(tmp_path: Path) -> None:
    sim = meter()
    lines = "".join(f"{sim.frame_at(T0 + timedelta(minutes=i)).hex()}\n" for i in range(3)) + "garbage\n"
    fifo = tmp_path / "wmbus.fifo"
    os.mkfifo(fifo)
    radio = WMBusPort("radio", {sim.meter_id: KEY}, has_crc=None)
    receiver = WMBusLines(radio)
    batches = []
    pipe = PipeStream(str(fifo), lambda data: batches.extend(receiver.receive(data)))
    task = asyncio.create_task(pipe.run())
    await asyncio.to_thread(fifo.write_text, lines)  # a decoder writing, then going away
    for _ in range(100):
        if len(batches) == 4:
            break
        await asyncio.sleep(0.02)
    pipe.stop()
    await task
    assert [bool(b.points) for b in batches] == [True, True, True, False]
    assert isinstance(batches[3].errors[0], MalformedFrame)


def test_zigbee_bridge_lines() -> None:
    sim = ZigbeeMeterSimulator("00:0d:6f:00:0a:bc:de:f0", "gas", HouseholdProfile(2), start=T0)
    port = ZigbeePort("zb")
    bridge = ZigbeeLines(port)
    text = f"00:0D:6F:00:0A:BC:DE:F0 {sim.formatting_report().hex()}\n00:0d:6f:00:0a:bc:de:f0 0702 {sim.report_at(T0).hex()}\n"
    batches = bridge.receive(text.encode())
    assert [bool(b.points) for b in batches] == [True, True] and port.errors == 0
    with pytest.raises(MalformedFrame, match="EUI-64"):
        zigbee_line("00:0d:6f 0011")


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_the_stick_framer_never_raises(data: bytes) -> None:
    framer = HciFramer()
    for i in range(0, len(data), 37):
        for item in framer.feed(data[i : i + 37]):
            assert isinstance(item, HciMessage | DecodeError)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_line_parsers_raise_only_decode_errors(text: str) -> None:
    for parse in (wmbus_line, zigbee_line):
        with contextlib.suppress(DecodeError):
            parse(text)
    for item in LineFramer("wmbus").feed(text.encode("utf-8", "surrogatepass")):
        assert isinstance(item, str | DecodeError)


async def test_a_one_telegram_mbus_meter_polled_again_answers_afresh() -> None:
    """EN 13757-2: a slave repeats its last telegram when the frame count bit does not toggle, so
    the master keeps the bit from one poll to the next (each poll used to start at FCB = 1)."""
    sim = MBusMeterSimulator(5, 30000001, "KAM", "water", HouseholdProfile(11), start=T0)
    link = SimulatedLink(sim)
    hour = 0
    for cycle in (mbus_cycle(link, 5), mbus_cycle(link, 0, secondary="30000001")):
        times = []
        for _ in range(3):
            hour += 1
            link.t = T0 + timedelta(hours=hour)
            batch = await cycle(link.t)
            times.append(next(p.time for p in batch.points if p.key == "water:volume"))
        assert len(set(times)) == 3, times  # three polls, three readouts
