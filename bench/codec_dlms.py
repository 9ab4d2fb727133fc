"""DLMS/COSEM benchmark cases: our codec against ``dlms-cosem`` on the same bytes.

Frames come from :class:`smarthub.sim.dlms_meter.DlmsMeterSimulator`:

* an HDLC I-frame carrying GET.response normal of Register 1-0:1.8.0 (decoded to a data point);
* an HDLC I-frame carrying one block (GET.response with datablock) of the load profile;
* a general-glo-ciphered (suite 0) DataNotification push, decrypted and decoded to data points.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib.metadata import version

from _codec_bench import BenchCase

from smarthub.meters.dlms.apdu import GetResponseNormal, decode_apdu
from smarthub.meters.dlms.client import DlmsClient
from smarthub.meters.dlms.cosem import ScalerUnit, notification_data_points, register_data_point
from smarthub.meters.dlms.hdlc import decode_frame, strip_llc
from smarthub.meters.dlms.security import SecurityKeys, decipher_apdu
from smarthub.model.obis import ObisCode
from smarthub.sim.dlms_meter import DlmsMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile

KEYS = SecurityKeys(
    bytes.fromhex("000102030405060708090A0B0C0D0E0F"), bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
)
TITLE = bytes.fromhex("4D4D4D0000BC614E")
IMPORT = ObisCode(1, 0, 1, 8, 0)
WH = ScalerUnit(0, 30)


def _frames() -> tuple[bytes, bytes, bytes]:
    t0 = datetime(2024, 1, 15, tzinfo=UTC)
    t = t0 + timedelta(days=1)
    sim = DlmsMeterSimulator(TITLE, "1", HouseholdProfile(1), t0)
    client = DlmsClient(max_pdu=1024)
    out = client.connect()
    while client.receive(sim.respond(out, t)) is None:
        out = client.next_request()
    register = sim.respond(client.get(IMPORT, 3, 2), t)
    client.receive(register)
    block = sim.respond(client.get(ObisCode(1, 0, 99, 1, 0), 7, 2), t)  # first HDLC segment
    push = DlmsMeterSimulator(TITLE, "1", HouseholdProfile(1), t0, KEYS).push_apdu_at(t)
    return register, block, push


def cases() -> list[BenchCase]:
    register, block, push = _frames()

    def ours_register() -> object:
        apdu = decode_apdu(strip_llc(decode_frame(register).info, response=True))
        assert isinstance(apdu, GetResponseNormal)
        return register_data_point("m", IMPORT, apdu.value, WH)

    def ours_block() -> object:
        frame = decode_frame(block)
        return frame.info  # a segment: the APDU continues in the next frame

    def ours_push() -> object:
        c = decipher_apdu(push, KEYS)
        n = decode_apdu(c.plain)
        return notification_data_points(c.system_title.hex(), n.value)  # type: ignore[union-attr]

    try:
        from dlms_cosem import utils as dc_utils
        from dlms_cosem.connection import XDlmsApduFactory
        from dlms_cosem.hdlc.frames import InformationFrame
        from dlms_cosem.protocol.xdlms import DataNotification, GeneralGlobalCipher

        ref_name = f"dlms-cosem {version('dlms-cosem')}"

        def ref_register() -> object:
            frame = InformationFrame.from_bytes(register)
            apdu = XDlmsApduFactory.apdu_from_bytes(frame.payload[3:])
            return dc_utils.parse_as_dlms_data(apdu.data)

        def ref_block() -> object:
            return InformationFrame.from_bytes(block).payload

        def ref_push() -> object:
            g = GeneralGlobalCipher.from_bytes(push)
            plain = g.to_plain_apdu(KEYS.encryption_key, KEYS.authentication_key)
            n = DataNotification.from_bytes(plain)
            return dc_utils.parse_as_dlms_data(n.body)

        refs: list[object | None] = [ref_register, ref_block, ref_push]
    except ImportError:  # pragma: no cover - the reference is a test extra
        ref_name = ""
        refs = [None, None, None]

    return [
        BenchCase(
            "dlms",
            "HDLC GET.response Register 1-0:1.8.0 -> data point",
            ours_register,
            refs[0],
            ref_name,
            len(register),
        ),  # type: ignore[arg-type]
        BenchCase(
            "dlms", "HDLC I-frame segment of a profile block", ours_block, refs[1], ref_name, len(block)
        ),  # type: ignore[arg-type]
        BenchCase(
            "dlms",
            "general-glo-ciphered DataNotification -> data points",
            ours_push,
            refs[2],
            ref_name,
            len(push),
        ),  # type: ignore[arg-type]
    ]
