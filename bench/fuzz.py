"""Mutation fuzzer over every decoder of bytes from outside: each may return a value or raise
its documented error type(s), and nothing else (issue 8).

    .venv/bin/python bench/fuzz.py [--inputs 1000000] [--processes 2] [--seed 1] [--only NAME ...]

The corpus is real frames made by the project's own meter simulators and encoders (DSMR
telegrams, IEC 62056-21 readouts, M-Bus RSP_UD, wM-Bus mode 0/5/7, ZigBee ZCL reports, DLMS
HDLC/wrapper frames, APDUs, A-XDR values, ciphered pushes, interval blocks, 2030.5 bulk and
DeviceCapability bodies, signed /mgmt envelopes). Each input is, at random (seeded, so a run
is repeatable): a corpus frame with 1–6 byte flips, inserts, deletes, duplications, "interesting"
byte overwrites or truncations, or a splice of two frames; or pure random bytes. For formats
with a checksum the mutated frame's checksum is repaired half of the time, so the grammar
behind the checksum is exercised too.

Per decoder it prints: inputs run, inputs/s, unexpected exceptions (must be 0), how many
distinct error messages (digits folded) the decoder gave, and the ratio of its inputs/s to
``bytes.hex()`` over the same inputs in the same run (the reference: the cheapest full pass
over the bytes Python has). Every unexpected exception is printed with its input in hex, and
the exit status is 1. ``tests/security/test_fuzz.py`` runs the same code with a small N.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import random
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

Run = Callable[[bytes], object]
Fix = Callable[[bytearray], bytes]

CHUNK = 4000  # inputs per task handed to a worker
MAX_MESSAGES = 5000  # distinct messages kept per chunk (a bound on memory, not on the count's truth)
_DIGITS = re.compile(r"\d+")
_INTERESTING = (0x00, 0x01, 0x02, 0x03, 0x7E, 0x7F, 0x80, 0xFE, 0xFF, 0x68, 0x16, 0x0D, 0x0A, 0x21, 0x28)


@dataclass
class Target:
    """One decoder: its corpus, how one input is run, and the errors it documents."""

    name: str
    corpus: list[bytes]
    run: Run
    allowed: tuple[type[BaseException], ...]
    fix: Fix | None = None


# --- corpus and targets -------------------------------------------------------------------------

T0 = datetime(2024, 7, 15, tzinfo=UTC)
KEY = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
AUTH = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")


def _times(n: int, step: timedelta = timedelta(minutes=17)) -> list[datetime]:
    return [T0 + step * (i + 1) for i in range(n)]


def _dsmr() -> list[Target]:
    from smarthub.meters.dsmr import TelegramStream, crc16, data_points, decode_telegram
    from smarthub.meters.errors import DecodeError
    from smarthub.sim.dsmr_meter import DsmrMeterSimulator
    from smarthub.sim.load_profile import HouseholdProfile

    corpus = []
    for seed, gas in ((1, "G0001"), (2, None)):
        sim = DsmrMeterSimulator("E0001", gas, HouseholdProfile(seed), start=T0)
        corpus += [sim.telegram_at(t) for t in _times(4)]

    def fix(data: bytearray) -> bytes:
        bang = data.find(b"!")
        if bang < 0:
            return bytes(data)
        return bytes(data[: bang + 1]) + f"{crc16(bytes(data[: bang + 1])):04X}\r\n".encode()

    def stream(data: bytes) -> object:
        s = TelegramStream(max_buffer=4096)
        return s.feed(data[: len(data) // 2]) + s.feed(data[len(data) // 2 :])

    return [
        Target(
            "dsmr.decode_telegram+data_points",
            corpus,
            lambda d: data_points(decode_telegram(d)),
            (DecodeError,),
            fix,
        ),
        Target("dsmr.TelegramStream.feed", corpus, stream, (), fix),
    ]


def _iec() -> list[Target]:
    from smarthub.meters import iec62056_21 as iec
    from smarthub.meters.errors import DecodeError
    from smarthub.sim.iec_meter import IecMeterSimulator
    from smarthub.sim.load_profile import HouseholdProfile

    sim = IecMeterSimulator("12345678", "LGZ", HouseholdProfile(seed=1), T0)
    readouts = [sim.readout_at(t) for t in _times(4)]

    def fix(data: bytearray) -> bytes:
        stx, etx = data.find(0x02), data.rfind(0x03)
        if 0 <= stx < etx:
            return bytes(data[: etx + 1]) + bytes([iec.bcc(bytes(data[stx + 1 : etx + 1]))])
        return bytes(data)

    def messages(data: bytes) -> object:
        out: list[object] = []
        for decode in (iec.decode_identification, iec.decode_request, iec.decode_option_select):
            with contextlib.suppress(DecodeError):
                out.append(decode(data))
        return out

    others = [
        sim.identification_message,
        iec.encode_request(""),
        iec.encode_request("12345678"),
        iec.encode_option_select(9600),
        iec.encode_option_select(300, "1", "0"),
    ]
    return [
        Target(
            "iec62056_21.decode_readout+data_points",
            readouts,
            lambda d: iec.data_points(iec.decode_readout(d)),
            (DecodeError,),
            fix,
        ),
        Target("iec62056_21.identification/request/option", others, messages, ()),
    ]


def _mbus() -> list[Target]:
    from smarthub.meters import mbus, wmbus
    from smarthub.meters.errors import DecodeError
    from smarthub.sim.load_profile import HouseholdProfile
    from smarthub.sim.mbus_meter import MBusMeterSimulator
    from smarthub.sim.wmbus_meter import WMBusMeterSimulator

    wired: list[bytes] = [
        # pyMeterBus tests/test_hyd.py: a Hydrometer heat meter RSP_UD (12 records, CI 0x72).
        bytes.fromhex(
            "68545468084e727875015124232004467000000c06000000008c1006000000000c13439436018c20"
            "13000000008c4013480000008c8040131200000002fd1710003b3bbdebdd3c2bbdebdddd0a5a7401"
            "0a5e72010a6201006b16"
        ),
    ]
    for medium, addr in (("water", 5), ("heat", 6), ("gas", 7)):
        sim = MBusMeterSimulator(addr, 12345678 + addr, "KAM", medium, HouseholdProfile(addr), T0)
        for i, t in enumerate(_times(2)):
            answer = sim.respond(mbus.request_ud2(addr, bool(i % 2)), t)
            if answer:
                wired.append(answer)

    def fix(data: bytearray) -> bytes:
        if len(data) >= 9 and data[0] == 0x68:
            n = len(data) - 6
            if 3 <= n <= 255:
                data[1] = data[2] = n
                data[3] = 0x68
                data[-2] = mbus.checksum(bytes(data[4:-2]))
                data[-1] = 0x16
        return bytes(data)

    keys: dict[str, bytes | str] = {}
    wireless: dict[str, list[bytes]] = {"A": [], "B": []}
    for mode, fmt in ((0, "A"), (5, "A"), (5, "B"), (7, "A"), (7, "B")):
        sim = WMBusMeterSimulator(
            12345600 + mode, "KAM", "water", None if mode == 0 else KEY, HouseholdProfile(mode), T0, mode, fmt
        )
        keys[sim.meter_id] = KEY
        wireless[fmt] += [sim.frame_at(t) for t in _times(2)]

    def wm(data: bytes) -> object:
        return wmbus.data_points(data, keys)

    def wm_b(data: bytes) -> object:
        return wmbus.data_points(data, keys, frame_format="B")

    real, real_keys = _wmbus_real(keys)
    formats: dict[int, bytes] = {}  # compact formats learnt from the full frames among the inputs

    def wm_real(data: bytes) -> object:
        return wmbus.data_points(data, real_keys, formats=formats)

    return [
        Target("mbus.decode_frame+data_points", wired, lambda d: mbus.data_points(d), (DecodeError,), fix),
        Target("wmbus.data_points (format A, keys)", wireless["A"], wm, (DecodeError,)),
        Target("wmbus.data_points (format B, keys)", wireless["B"], wm_b, (DecodeError,)),
        Target("wmbus.data_points (real meters, ELL/compact/layouts)", real, wm_real, (DecodeError,)),
    ]


def _wmbus_real(sim_keys: dict[str, bytes | str]) -> tuple[list[bytes], dict[str, bytes | str]]:
    """Published frames of real wM-Bus meters (tests/meters/wmbus_captures.py: Kamstrup ELL AES-CTR
    and compact, Techem and Apator manufacturer layouts, Diehl mode 7, Sensus, Itron, Qundis, two
    with link CRCs) and the sub-meter simulators' frames, with their keys."""
    import importlib.util
    from pathlib import Path

    from smarthub.sim.load_profile import HouseholdProfile
    from smarthub.sim.wmbus_submeters import HcaSimulator, Multical21Simulator, WaterMeterSimulator

    path = Path(__file__).resolve().parents[1] / "tests" / "meters" / "wmbus_captures.py"
    spec = importlib.util.spec_from_file_location("wmbus_captures", path)
    assert spec is not None and spec.loader is not None
    caps = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(caps)
    frames = []
    for name, v in vars(caps).items():
        # MULTICAL21_FULL / _COMPACT: the receiver-decrypted form of a meter whose key is given
        skip = name.endswith("KEY") or name in ("MULTICAL21_FULL", "MULTICAL21_COMPACT")
        if name.isupper() and isinstance(v, bytes) and not skip:
            frames.append(v[: v[0] + 1] if name == "TECHEM_FHKV_69" else v)  # published with 3 extra bytes
    keys: dict[str, bytes | str] = dict(sim_keys)
    keys["KAM76348799"] = caps.MULTICAL21_KEY
    keys["APA88888888"] = caps.APATOR162_KEY
    sims = [
        HcaSimulator(10203040, KEY, HouseholdProfile(1), T0, mode=5),
        HcaSimulator(10203041, KEY, HouseholdProfile(2), T0, mode=7, frame_format="B"),
        WaterMeterSimulator(64641821, KEY, HouseholdProfile(3), T0, mode=7),
        Multical21Simulator(11223344, KEY, HouseholdProfile(4), T0, full_every=2),
    ]
    for sim in sims:
        keys[sim.meter_id] = KEY
        frames += [sim.frame_at(t) for t in _times(3, timedelta(hours=5))]
    return frames, keys


def _zigbee() -> list[Target]:
    from smarthub.meters import zigbee_se as z
    from smarthub.meters.errors import DecodeError
    from smarthub.sim.load_profile import HouseholdProfile
    from smarthub.sim.zigbee_meter import ZigbeeMeterSimulator

    corpus = []
    for i, kind in enumerate(("electric", "gas")):
        sim = ZigbeeMeterSimulator(f"00:0d:6f:00:0a:bc:de:f{i}", kind, HouseholdProfile(seed=i + 1), T0)
        corpus += [sim.formatting_report()] + [sim.report_at(t) for t in _times(3)]

    def report(data: bytes) -> object:
        return z.data_points(z.decode_zcl(data), z.MeterFormatting(), "zigbee")

    onoff = [z.encode_on_off(c, 7) for c in ("on", "off", "toggle")] + [
        z.encode_default_response(0x0006, 7, 1, 0),
        z.encode_default_response(0x0702, 9, 0, 0x86),
    ]

    def onoff_run(data: bytes) -> object:
        out: list[object] = []
        with contextlib.suppress(DecodeError):
            out.append(z.decode_on_off(data))
        with contextlib.suppress(DecodeError):
            out.append(z.decode_default_response(data, 0x0006))
        return out

    return [
        Target("zigbee_se.decode_zcl+data_points", corpus, report, (DecodeError,)),
        Target("zigbee_se.decode_on_off/default_response", onoff, onoff_run, ()),
    ]


def _decodes(decode: Run, data: bytes) -> bool:
    try:
        decode(data)
    except ValueError:
        return False
    return True


def _dlms() -> list[Target]:
    from smarthub.meters.dlms import axdr, hdlc, wrapper
    from smarthub.meters.dlms.apdu import decode_apdu
    from smarthub.meters.dlms.client import DlmsClient
    from smarthub.meters.dlms.decode import frame_data_points
    from smarthub.meters.dlms.security import SecurityKeys, decipher_apdu
    from smarthub.meters.errors import DecodeError
    from smarthub.model.obis import ObisCode
    from smarthub.sim.dlms_meter import DlmsMeterSimulator
    from smarthub.sim.load_profile import HouseholdProfile

    keys = SecurityKeys(KEY, AUTH)
    title = bytes.fromhex("4D4D4D0000BC614E")
    t = T0 + timedelta(days=1)
    hdlc_frames: list[bytes] = []
    wrapper_frames: list[bytes] = []
    apdus: list[bytes] = []
    for transport, out in (("hdlc", hdlc_frames), ("wrapper", wrapper_frames)):
        sim = DlmsMeterSimulator(title, "1", HouseholdProfile(1), T0, transport=transport)  # type: ignore[arg-type]
        client = DlmsClient(max_pdu=1024, transport=transport)  # type: ignore[arg-type]
        req = client.connect()
        answers = []
        while True:
            answer = sim.respond(req, t)
            answers.append(answer)
            if client.receive(answer) is not None:
                break
            req = client.next_request()
        for obis, cls, attr in (
            (ObisCode(1, 0, 1, 8, 0), 3, 2),
            (ObisCode(1, 0, 1, 8, 0), 3, 3),
            (ObisCode(0, 0, 1, 0, 0), 8, 2),
        ):
            answer = sim.respond(client.get(obis, cls, attr), t)
            answers.append(answer)
            client.receive(answer)
        answers.append(sim.respond(client.get(ObisCode(1, 0, 99, 1, 0), 7, 2), t))
        out += [a for a in answers if a]
    for f in hdlc_frames:
        with contextlib.suppress(DecodeError):
            info = hdlc.decode_frame(f).info
            if info[:2] == b"\xe6\xe7":
                apdus.append(info[3:])
    for f in wrapper_frames:
        with contextlib.suppress(DecodeError):
            apdus.append(wrapper.decode_wrapper(f).apdu)
    pushing = DlmsMeterSimulator(title, "1", HouseholdProfile(1), T0, keys)
    pushes = [pushing.push_at(tt) for tt in _times(3)]
    ciphered = [pushing.push_apdu_at(tt) for tt in _times(3, timedelta(hours=2))]
    plain_pushes = [DlmsMeterSimulator(title, "1", HouseholdProfile(2), T0).push_at(tt) for tt in _times(2)]
    wrapped_pushes = [
        DlmsMeterSimulator(title, "1", HouseholdProfile(3), T0, keys, transport="wrapper").push_at(tt)
        for tt in _times(2)
    ]
    apdus += [DlmsMeterSimulator(title, "1", HouseholdProfile(2), T0).push_apdu_at(tt) for tt in _times(2)]
    apdus = [a for a in apdus if _decodes(decode_apdu, a)]  # a profile block's first segment does not
    values = [
        axdr.encode_data(axdr.Tag.DOUBLE_LONG_UNSIGNED, 123456),
        axdr.encode_data(axdr.Tag.OCTET_STRING, bytes(12)),
        axdr.encode_data(axdr.Tag.VISIBLE_STRING, "ABCDEF"),
        axdr.encode_data(
            axdr.Tag.STRUCTURE,
            [
                (axdr.Tag.INTEGER, -3),
                (axdr.Tag.ENUM, 30),
                (axdr.Tag.LONG64, -(2**40)),
                (axdr.Tag.BOOLEAN, True),
            ],
        ),
        axdr.encode_data(axdr.Tag.ARRAY, [(axdr.Tag.LONG_UNSIGNED, i) for i in range(5)]),
    ]
    for a in apdus:
        if a[:1] == b"\x0f" and len(a) > 6:  # a DataNotification's body is an A-XDR value
            values.append(a[6:] if a[5:6] == b"\x00" else a[5:])

    def fix(data: bytearray) -> bytes:
        """Repair an HDLC frame's length, HCS and FCS (IEC 62056-46 §6.4) so the parser goes past them."""
        if len(data) < 9 or data[0] != 0x7E or data[-1] != 0x7E:
            return bytes(data)
        n = len(data) - 2
        if n > hdlc.MAX_FRAME_LENGTH:
            return bytes(data)
        data[1] = (data[1] & 0xF8) | (n >> 8)
        data[2] = n & 0xFF
        pos = 3
        for _ in range(2):  # destination, then source address: bytes until one with bit 0 set
            while pos < n and not data[pos] & 1:
                pos += 1
            pos += 1
        pos += 1  # control
        if pos + 2 < n - 2:
            data[pos : pos + 2] = hdlc.crc16_x25(data[1:pos]).to_bytes(2, "little")
        data[-3:-1] = hdlc.crc16_x25(data[1:-3]).to_bytes(2, "little")
        return bytes(data)

    def framer(data: bytes) -> object:
        f = hdlc.HdlcFramer()
        return f.feed(data[:7]) + f.feed(data[7:])

    def push_frames(data: bytes) -> object:
        return frame_data_points(data, key=KEY, authentication_key=AUTH)

    return [
        Target(
            "dlms.hdlc.decode_frame",
            hdlc_frames + pushes + plain_pushes,
            lambda d: hdlc.decode_frame(d),
            (DecodeError,),
            fix,
        ),
        Target("dlms.hdlc.HdlcFramer.feed", hdlc_frames + pushes, framer, (), fix),
        Target(
            "dlms.wrapper.decode_wrapper",
            wrapper_frames + wrapped_pushes,
            lambda d: wrapper.decode_wrapper(d),
            (DecodeError,),
        ),
        Target("dlms.apdu.decode_apdu", apdus, lambda d: decode_apdu(d), (DecodeError,)),
        Target("dlms.axdr.decode_data", values, lambda d: axdr.decode_data(d, whole=True), (DecodeError,)),
        Target("dlms.security.decipher_apdu", ciphered, lambda d: decipher_apdu(d, keys), (DecodeError,)),
        Target(
            "dlms.decode.frame_data_points",
            pushes + plain_pushes + wrapped_pushes,
            push_frames,
            (DecodeError,),
            fix,
        ),
    ]


def _sml() -> list[Target]:
    from smarthub.meters import sml
    from smarthub.meters.errors import DecodeError
    from smarthub.sim.load_profile import HouseholdProfile
    from smarthub.sim.sml_meter import SmlMeterSimulator

    # smllib 1.7 tests/test_frames.py, 'Frame Issue #15 (FIXED)': an EMH meter's SML file.
    files = [
        bytes.fromhex(
            "1b1b1b1b010101017605077707006200620072630101760107ffffffffffff05027d02560b0a01454d480000"
            "9f384672620165027d082b62016312980076050777070162006200726307017707ffffffffffff0b0a01454d"
            "4800009f3846070100620affff72620165027d082b7577070100603201010101010104454d48017707010060"
            "0100ff010101010b0a01454d4800009f38460177070100010800ff641c010472620165027d082b621e52ff65"
            "01ddf5f40177070100020800ff0172620165027d082b621e52ff6501d4dc0d0177070100100700ff0101621b"
            "520053039f01010163ec0100760507770702620062007263020171016344d5001b1b1b1b1a008aa9"
        )
    ]
    for i, stamps in enumerate((False, True)):
        sim = SmlMeterSimulator("EMH", 1000 + i, HouseholdProfile(i + 1), T0, timestamps=stamps)
        files += [sim.file_at(t) for t in _times(2)]

    def fix(data: bytearray) -> bytes:
        if len(data) >= 16 and data[:8] == sml.START and data[-8:-3] == sml.END:
            data[-2:] = sml.crc16_x25(bytes(data[:-2])).to_bytes(2, "little")
        return bytes(data)

    return [Target("sml.decode_file+data_points", files, lambda d: sml.data_points(d), (DecodeError,), fix)]


def _han() -> list[Target]:
    from smarthub.meters.dlms.han import decode_push
    from smarthub.meters.dlms.security import SecurityKeys
    from smarthub.meters.errors import DecodeError

    # Published captures (see tests/meters/real_captures.py): Kamstrup (amshan), Kaifa NO list 2
    # (amshan), Netz NOE over M-Bus with its published key (dlms_parser).
    netz_key = bytes.fromhex("36C66639E48A8CA4D6BC8B282A793BBB")
    frames = [
        bytes.fromhex(
            "7ea0e22b2113239ae6e7000f000000000c07e6011801123a32ff80000002190a0e4b616d73747275705f5630"
            "30303109060101000005ff0a103537303635363733323635393034303709060101600101ff0a123638343131"
            "3338424e32343531303130393009060101010700ff060000033a09060101020700ff06000000000906010103"
            "0700ff060000006809060101040700ff06000000b0090601011f0700ff06000000ed09060101330700ff0600"
            "00005909060101470700ff060000004b09060101200700ff1200e809060101340700ff1200e9090601014807"
            "00ff1200ec84467e"
        ),
        bytes.fromhex(
            "e6e7000f40000000090c07e40119060d091eff800000020d09074b464d5f3030310910363937303633313430"
            "3236313434373609084d4133303448334506000026110600000000060000000006000001b306000084150600"
            "006dc7060000470206000008780600000000060000088c"
        ),
        bytes.fromhex(
            "68fafa6853ff000167db084b464d675000000981f8200000002388d5ab4f97515aafc6b88d2f85daa7a0e3c0"
            "c40d004535c397c9d037ab7dbda329107615444894a1a0dd7e85f02d496cecd3ff46af5fb3c9229cfe8f3ee4"
            "606ab2e1f409f36aad2e50900a4396fc6c2e083f373233a69616950758bfc7d63a9e9b6e99e21b2cbc2b9347"
            "72ca51fd4d69830711cab1f8cff25f0a329337cba51904f0caed88d61968743c8454ba922eb00038182c22fe"
            "316d16f2a9f544d6f75d51a4e92a1c4ef8ab19a2b7feaa32d0726c0ed80229ae6c0f7621a4209251ace2b2bc"
            "66ff0327a653bb686c756be033c7a281f1d2a7e1fa31c3983e15f8fd16cc5787e6f517166814146853ff1101"
            "67419a3cfda44be438c96f0e38bf83d98316"
        ),
    ]
    keys = SecurityKeys(netz_key, netz_key)
    return [Target("dlms.han.decode_push", frames, lambda d: decode_push(d, keys=keys), (DecodeError,))]


def _interval_block() -> list[Target]:
    from smarthub.gdsc.readings.interval_block import BlockError, decode, encode

    rng = random.Random(7)
    corpus = [
        encode(48, {i: (rng.randrange(0, 900), 0) for i in range(48)}),
        encode(48, {i: (rng.randrange(0, 900), 0) for i in range(0, 48, 3)}),
        encode(48, {i: (i * 1000, 0x10 if i % 7 == 0 else 0) for i in range(48)}),
        encode(48, {i: (-(2**40) + i, 0) for i in range(0, 48, 2)}),
        encode(48, {0: (5, 0)}),
        encode(48, {}),
    ]

    def run(data: bytes) -> object:
        return decode(data, 48)

    return [Target("gdsc.interval_block.decode", corpus, run, (BlockError,))]


def _wan() -> list[Target]:
    from smarthub.model.obis import ObisCode
    from smarthub.wan.client.bulk import BulkParser, ChannelRows, MirrorPoint, write_mirror_usage_points
    from smarthub.wan.client.hub_client import PullError
    from smarthub.wan.client.pull import bulk_link
    from smarthub.wan.contract.sep2_xml import device_capability, to_bytes

    @dataclass
    class Row:
        start: int
        duration: int
        value: int
        quality: int

    imp, gas = ObisCode(1, 0, 1, 8, 0), ObisCode(7, 0, 3, 0, 0)
    day = 1_720_000_000
    rows = [Row(day + i * 1800, 1800, 100 + i, 0) for i in range(6)]
    bodies = [
        write_mirror_usage_points(
            "HUB1",
            "AB" * 20,
            "/mup",
            [
                MirrorPoint("E1", 0, [ChannelRows(imp, 1800, rows, day + 6 * 1800)]),
                MirrorPoint("G1", 1, [ChannelRows(gas, 1800, rows[:3], day + 6 * 1800)]),
            ],
            2,
        ),
        write_mirror_usage_points("HUB1", "AB" * 20, "/mup", [], 0),
    ]

    def bulk(data: bytes) -> object:
        p = BulkParser()
        out = p.feed(data[: len(data) // 3]) + p.feed(data[len(data) // 3 :])
        return out, p.close()

    dcaps = [
        to_bytes(device_capability("/dcap", 900, "/tm", ("/upt", 2), ("/edev", 1), ("/mup", 2))),
        to_bytes(device_capability("/dcap", 900, "/tm", ("/upt", 0), ("/edev", 1), None)),
    ]
    return [
        Target("wan.bulk.BulkParser (2030.5 /mup)", bodies, bulk, (PullError,)),
        Target("wan.pull.bulk_link (2030.5 /dcap)", dcaps, bulk_link, (PullError,)),
    ]


def _management() -> list[Target]:
    from smarthub.clock import ManualClock
    from smarthub.gdsc.commands.signer import CommandSigner
    from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
    from smarthub.hub.management import CommandRefused, ManagementInterface
    from smarthub.wan.contract.commands import Command

    now = datetime(2026, 1, 1, tzinfo=UTC)
    ca = CertificateAuthority.create("fuzz CA", now)
    op = ca.issue(Role.OPERATOR, "ops", now)
    signer = CommandSigner(op.private_key, op.cert_pem, lambda hub: 1)
    envelopes = [
        signer.sign(Command("HUB1", i + 1, t, b, now.isoformat())).envelope()
        for i, (t, b) in enumerate((("diagnostic.ping", {"nonce": 5}), ("tariff.set", {"x": [1, 2]})))
    ]
    mgmt = ManagementInterface("HUB1", ca.certificate, ManualClock(now), ":memory:")
    return [Target("hub.management.verify (/mgmt envelope)", envelopes, mgmt.verify, (CommandRefused,))]


def _revocations() -> list[Target]:
    """The consent revocations' documents: the GDSC parses the hub's requests, the hub the
    GDSC's answers (``wan.contract.revocations``)."""
    from smarthub.wan.contract import revocations as r

    at = datetime(2026, 11, 24, 13, tzinfo=UTC)
    requests = [
        r.requests_json([r.RevocationRequest("0123456789abcdef", "K1", "ADV", at, "Kitchen #1")]),
        r.requests_json([r.RevocationRequest(f"r{i}", f"K{i}", "ADV", at, "") for i in range(3)]),
        r.requests_json([]),
    ]
    answers = [
        r.answers_json(
            [r.RevocationAnswer("r1", r.APPLIED, at), r.RevocationAnswer("r2", r.REFUSED, at, "no")]
        ),
        r.answers_json([]),
    ]
    return [
        Target("wan.revocations.parse_requests (GET /crv)", requests, r.parse_requests, (r.BadRevocations,)),
        Target("wan.revocations.parse_answers (PUT /crv)", answers, r.parse_answers, (r.BadRevocations,)),
    ]


BUILDERS = (
    _dsmr, _iec, _mbus, _zigbee, _dlms, _sml, _han, _interval_block, _wan, _management, _revocations,
)  # fmt: skip


def targets() -> list[Target]:
    """Every decoder, built once per process."""
    global _TARGETS
    if _TARGETS is None:
        _TARGETS = [t for build in BUILDERS for t in build()]
    return _TARGETS


_TARGETS: list[Target] | None = None


def names() -> list[str]:
    return [t.name for t in targets()]


# --- mutation -----------------------------------------------------------------------------------


def mutate(rng: random.Random, target: Target) -> bytes:
    corpus = target.corpus
    r = rng.random()
    if r < 0.08:  # pure random bytes
        return rng.randbytes(rng.randrange(0, 300))
    data = bytearray(rng.choice(corpus))
    if r < 0.18 and len(corpus) > 1:  # splice two frames
        other = rng.choice(corpus)
        data = data[: rng.randrange(0, len(data) + 1)] + other[rng.randrange(0, len(other) + 1) :]
    for _ in range(rng.randrange(1, 7)):
        kind = rng.randrange(7)
        pos = rng.randrange(0, len(data) + 1)
        if kind == 0 and data:  # flip one bit
            p = min(pos, len(data) - 1)
            data[p] ^= 1 << rng.randrange(8)
        elif kind == 1:  # insert random bytes
            data[pos:pos] = rng.randbytes(rng.randrange(1, 9))
        elif kind == 2:  # delete a range
            del data[pos : pos + rng.randrange(1, 9)]
        elif kind == 3 and data:  # an interesting byte
            data[min(pos, len(data) - 1)] = rng.choice(_INTERESTING)
        elif kind == 4 and data:  # duplicate a range
            n = rng.randrange(1, 17)
            data[pos:pos] = data[pos : pos + n]
        elif kind == 5 and rng.random() < 0.3:  # truncate
            del data[pos:]
        elif kind == 6 and data:  # a random byte
            data[min(pos, len(data) - 1)] = rng.randrange(256)
    if target.fix is not None and rng.random() < 0.5:
        return target.fix(data)
    return bytes(data)


# --- running ------------------------------------------------------------------------------------


@dataclass
class Unexpected:
    error: str
    input_hex: str
    trace: str


@dataclass
class Stats:
    name: str
    inputs: int = 0
    seconds: float = 0.0
    reference_seconds: float = 0.0
    unexpected: list[Unexpected] = field(default_factory=list)
    unexpected_count: int = 0
    messages: set[str] = field(default_factory=set)

    def add(self, other: Stats) -> None:
        self.inputs += other.inputs
        self.seconds += other.seconds
        self.reference_seconds += other.reference_seconds
        self.unexpected_count += other.unexpected_count
        self.unexpected += other.unexpected[: max(0, 20 - len(self.unexpected))]
        if len(self.messages) < 200_000:
            self.messages |= other.messages


def run_chunk(name: str, seed: int, chunk: int, n: int) -> Stats:
    """Run ``n`` inputs (seeded by ``seed`` and ``chunk``) through the decoder ``name``."""
    target = next(t for t in targets() if t.name == name)
    rng = random.Random(f"{seed}/{name}/{chunk}")
    inputs = [mutate(rng, target) for _ in range(n)]
    stats = Stats(name, inputs=n)
    run, allowed = target.run, target.allowed
    messages = stats.messages
    start = time.perf_counter()
    returns_errors = not allowed  # a stream decoder hands its errors back instead of raising
    for data in inputs:
        try:
            out = run(data)
            if returns_errors and len(messages) < MAX_MESSAGES:
                for err in out:  # type: ignore[attr-defined]
                    if isinstance(err, Exception):
                        messages.add(f"{type(err).__name__}: {_DIGITS.sub('#', str(err))[:160]}")
        except allowed as err:
            if len(messages) < MAX_MESSAGES:
                messages.add(f"{type(err).__name__}: {_DIGITS.sub('#', str(err))[:160]}")
        except Exception as err:
            stats.unexpected_count += 1
            if len(stats.unexpected) < 5:
                stats.unexpected.append(
                    Unexpected(f"{type(err).__name__}: {err}", data.hex(), traceback.format_exc())
                )
    stats.seconds = time.perf_counter() - start
    start = time.perf_counter()
    for data in inputs:
        data.hex()
    stats.reference_seconds = time.perf_counter() - start
    return stats


def _task(args: tuple[str, int, int, int]) -> Stats:
    return run_chunk(*args)


def fuzz(
    inputs: int, *, seed: int = 1, processes: int = 1, only: list[str] | None = None, live: bool = False
) -> list[Stats]:
    """Fuzz every decoder (or those named in ``only``) with ``inputs`` inputs each."""
    chosen = [n for n in names() if not only or any(o in n for o in only)]
    tasks = [
        (name, seed, i, min(CHUNK, inputs - i * CHUNK))
        for name in chosen
        for i in range((inputs + CHUNK - 1) // CHUNK)
    ]
    total = {name: Stats(name) for name in chosen}
    done, started = 0, time.perf_counter()
    last, grand = 0.0, inputs * len(chosen)
    results: Iterator[Stats]
    pool = None
    if processes > 1:
        pool = multiprocessing.get_context("fork").Pool(processes)
        results = pool.imap_unordered(_task, tasks, chunksize=1)
    else:
        results = (_task(t) for t in tasks)
    try:
        for s in results:
            total[s.name].add(s)
            done += s.inputs
            if live and (time.perf_counter() - last >= 0.5 or done == grand):
                last = time.perf_counter()
                bad = sum(t.unexpected_count for t in total.values())
                rate = done / (time.perf_counter() - started)
                sys.stderr.write(
                    f"\r{done:>10,}/{grand:,} inputs  {rate:8,.0f}/s  unexpected {bad}  [{s.name[:40]:<40}]"
                )
                sys.stderr.flush()
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    if live:
        sys.stderr.write("\n")
    return [total[n] for n in chosen]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=1_000_000, help="inputs per decoder")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="substrings of decoder names to run")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    results = fuzz(args.inputs, seed=args.seed, processes=args.processes, only=args.only, live=True)
    wall = time.perf_counter() - start
    print(
        f"{'decoder':<46} {'inputs':>10} {'inputs/s':>9} {'unexpected':>10} {'messages':>8} {'vs hex()':>9}"
    )
    for s in results:
        rate = s.inputs / s.seconds if s.seconds else 0.0
        ref = s.inputs / s.reference_seconds if s.reference_seconds else 0.0
        print(
            f"{s.name:<46} {s.inputs:>10,} {rate:>9,.0f} {s.unexpected_count:>10} {len(s.messages):>8} "
            f"{rate / ref if ref else 0:>9.4f}"
        )
    print(
        f"reference: bytes.hex() over the same inputs; rates are per process (CPU time in the decoder), "
        f"{args.processes} processes, {wall:.0f} s wall"
    )
    bad = [s for s in results if s.unexpected_count]
    for s in bad:
        for u in s.unexpected:
            print(f"\nUNEXPECTED in {s.name}: {u.error}\n  input: {u.input_hex}\n{u.trace}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
