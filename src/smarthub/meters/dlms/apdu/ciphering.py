"""Ciphered APDUs (glo-, ded- and general-ciphering) recognised, not decrypted: their security
header read so that :mod:`smarthub.meters.dlms.security` can decrypt them (IEC 62056-5-3)."""

from __future__ import annotations

from dataclasses import dataclass

from smarthub.meters.dlms.apdu.common import need as _need
from smarthub.meters.dlms.axdr import decode_length
from smarthub.meters.dlms.errors import PROTOCOL, MalformedFrame, TruncatedFrame
from smarthub.meters.dlms.security import GENERAL_DED_CIPHERING, GENERAL_GLO_CIPHERING


@dataclass(frozen=True, slots=True)
class CipheredPdu:
    """A ciphered APDU, not decrypted (see :func:`smarthub.meters.dlms.security.decipher_apdu`)."""

    tag: int
    system_title: bytes | None
    security_control: int
    invocation_counter: int
    raw: bytes


def decode(data: bytes) -> CipheredPdu:
    tag = data[0]
    pos = 1
    title = None
    if tag in (GENERAL_GLO_CIPHERING, GENERAL_DED_CIPHERING):
        n, pos = decode_length(data, pos)
        if n != 8:
            raise MalformedFrame(PROTOCOL, f"system title of {n} bytes", offset=1)
        _need(data, pos, 8, "system title")
        title = data[pos : pos + 8]
        pos += 8
    length, pos = decode_length(data, pos)
    if pos + length != len(data):
        raise MalformedFrame(PROTOCOL, "ciphered content length does not match the APDU", offset=pos)
    if length < 5:
        raise TruncatedFrame(PROTOCOL, "ciphered content shorter than its security header", offset=pos)
    return CipheredPdu(tag, title, data[pos], int.from_bytes(data[pos + 1 : pos + 5], "big"), data)
