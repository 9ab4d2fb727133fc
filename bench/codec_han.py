"""Published captures from real meters through our decoders, against the reference library for
the same protocol where it can take them: DLMS HAN pushes (``dlms-cosem``: HDLC UI frame,
DataNotification and A-XDR, which is all it does with a push; it has no list profiles) and an
IEC 62056-21 readout (``iec62056-21``, given the data message without the identification
line, which it does not take)."""

from __future__ import annotations

from importlib.metadata import version

from _codec_bench import BenchCase
from codec_sml import real_captures

from smarthub.meters.dlms.han import decode_push
from smarthub.meters.dlms.security import SecurityKeys
from smarthub.meters.iec62056_21 import data_points, decode_readout


def cases() -> list[BenchCase]:
    c = real_captures()
    netz = SecurityKeys(c.NETZ_NOE_KEY, c.NETZ_NOE_KEY)
    out: list[BenchCase] = []
    try:
        from dlms_cosem.hdlc.frames import UnnumberedInformationFrame
        from dlms_cosem.protocol.xdlms import DataNotification
        from dlms_cosem.utils import parse_as_dlms_data

        ref_name = f"dlms-cosem {version('dlms-cosem')}"

        def dc(frame: bytes) -> object:
            ui = UnnumberedInformationFrame.from_bytes(frame)
            return parse_as_dlms_data(DataNotification.from_bytes(ui.payload[3:]).body)
    except ImportError:  # pragma: no cover - the reference is a test extra
        dc, ref_name = None, ""  # type: ignore[assignment]
    for name, frame in (
        ("Aidon HAN push (array, 26 values, real)", c.AIDON_NO_3PHASE),
        ("Kamstrup HAN push (no scalers, profile, real)", c.KAMSTRUP_NO_LIST1),
    ):
        ref = (lambda frame=frame: dc(frame)) if dc is not None else None  # type: ignore[misc]
        label = ref_name
        if ref is not None:
            try:
                ref()
            except Exception as err:  # the reference cannot read this real frame: say so, time nothing
                ref, label = None, f"{ref_name} fails on it ({type(err).__name__})"
        out.append(
            BenchCase(
                "dlms",
                f"{name} -> data points",
                lambda frame=frame: decode_push(frame),  # type: ignore[misc]
                ref,
                label,
                len(frame),
            )
        )
    kam = SecurityKeys(c.KAMSTRUP_OMNIPOWER_EK, c.KAMSTRUP_OMNIPOWER_AK)
    kam_ref, kam_label = None, ref_name
    if dc is not None:
        from dlms_cosem.protocol.xdlms import GeneralGlobalCipher

        def kam_ref() -> object:  # type: ignore[misc]
            ui = UnnumberedInformationFrame.from_bytes(c.KAMSTRUP_OMNIPOWER)
            g = GeneralGlobalCipher.from_bytes(ui.payload[3:])
            plain = g.to_plain_apdu(c.KAMSTRUP_OMNIPOWER_EK, c.KAMSTRUP_OMNIPOWER_AK)
            return parse_as_dlms_data(DataNotification.from_bytes(plain).body)

        try:
            kam_ref()
        except Exception as err:  # say so, time nothing
            kam_ref, kam_label = None, f"{ref_name} fails on it ({type(err).__name__})"
    out.append(
        BenchCase(
            "dlms",
            "Kamstrup OMNIPOWER push, AES-GCM auth+enc (real) -> data points",
            lambda: decode_push(c.KAMSTRUP_OMNIPOWER, keys=kam),
            kam_ref,
            kam_label,
            len(c.KAMSTRUP_OMNIPOWER),
        )
    )
    out.append(
        BenchCase(
            "dlms",
            "Iskra AM550 push, 3 segmented HDLC frames (real) -> data points",
            lambda: decode_push(c.ISKRA_AM550_SEGMENTED),
            None,
            "dlms-cosem has no HDLC segment reassembly",
            len(c.ISKRA_AM550_SEGMENTED),
        )
    )
    out.append(
        BenchCase(
            "dlms",
            "Netz NOE push, 2 M-Bus frames, ciphered (real) -> data points",
            lambda: decode_push(c.NETZ_NOE, keys=netz),
            None,
            "",
            len(c.NETZ_NOE),
        )
    )
    readout = c.ISKRA_MT174
    stx = readout[readout.index(b"\x02") :]
    try:
        from iec62056_21.messages import ReadoutDataMessage

        text = stx.decode("latin-1")

        def iec_ref() -> object:
            return ReadoutDataMessage.from_representation(text)

        iec_name = f"iec62056-21 {version('iec62056-21')}"
    except ImportError:  # pragma: no cover
        iec_ref, iec_name = None, ""  # type: ignore[assignment]
    out.append(
        BenchCase(
            "iec62056-21",
            "Iskra MT174 readout with identification line (real), decode",
            lambda: decode_readout(readout),
            iec_ref,
            iec_name,
            len(readout),
        )
    )
    out.append(
        BenchCase(
            "iec62056-21",
            "Iskra MT174 readout with identification line (real) -> data points",
            lambda: data_points(decode_readout(readout)),
            iec_ref,
            iec_name,
            len(readout),
        )
    )
    return out
