"""DLMS/COSEM application layer PDUs, one module per service (IEC 62056-5-3; DLMS Green Book,
"DLMS/COSEM application layer": "ACSE services and APDUs", "xDLMS services", the ASN.1 of the
COSEM APDUs and their encodings).

* ACSE APDUs (AARQ 0x60, AARE 0x61, RLRQ 0x62, RLRE 0x63) are BER-encoded: tag, length, value;
  we read the elements the COSEM profile uses (application context name, AP titles, ACSE
  requirements, mechanism name, authentication value, result and diagnostic, user information)
  and skip the others;
* the xDLMS InitiateRequest/InitiateResponse inside the user-information are A-XDR, with the
  24-bit conformance block as a BER bit string ``5F 1F 04 00 xx xx xx``;
* GET (0xC0 request, 0xC4 response: normal, with datablock, next), SET and ACTION (normal only:
  0xC1/0xC5, 0xC3/0xC7), DataNotification (0x0F), ExceptionResponse (0xD8) and
  ConfirmedServiceError (0x0E) are A-XDR.

Ciphered APDUs (glo-/ded-/general-ciphering) are decrypted by :mod:`smarthub.meters.dlms.security`;
:func:`decode_apdu` returns them as :class:`CipheredPdu` without decrypting.

The modules: :mod:`.association` (ACSE and xDLMS initiate), :mod:`.get`, :mod:`.set`,
:mod:`.action`, :mod:`.notification`, :mod:`.exception`, :mod:`.ciphering`; :mod:`.common`
holds what they share. Everything public is importable from here as before the split.

Why our own codec rather than ``dlms-cosem``'s (the reference in tests and benchmark): speed
(slicing an immutable buffer, no attrs objects per field, the GET.response's data decoded by our
A-XDR decoder), sans-I/O typed errors (any input raises only ``DecodeError`` subclasses: fuzzed),
and exact Decimal scaling downstream (:mod:`smarthub.meters.dlms.cosem`).
"""

from __future__ import annotations

from smarthub.meters.dlms.apdu.action import ActionRequestNormal, ActionResponseNormal
from smarthub.meters.dlms.apdu.action import decode_request as _action_request
from smarthub.meters.dlms.apdu.action import decode_response as _action_response
from smarthub.meters.dlms.apdu.association import (
    Aare,
    Aarq,
    ApplicationContext,
    ConfirmedServiceError,
    Conformance,
    InitiateRequest,
    InitiateResponse,
    Mechanism,
    ReleaseRequest,
    ReleaseResponse,
)
from smarthub.meters.dlms.apdu.ciphering import CipheredPdu
from smarthub.meters.dlms.apdu.ciphering import decode as _ciphered
from smarthub.meters.dlms.apdu.common import invoke_id_and_priority
from smarthub.meters.dlms.apdu.exception import ExceptionResponse
from smarthub.meters.dlms.apdu.exception import decode as _exception_response
from smarthub.meters.dlms.apdu.get import (
    GetRequestNext,
    GetRequestNormal,
    GetResponseNormal,
    GetResponseWithBlock,
)
from smarthub.meters.dlms.apdu.get import decode_request as _get_request
from smarthub.meters.dlms.apdu.get import decode_response as _get_response
from smarthub.meters.dlms.apdu.notification import DataNotification
from smarthub.meters.dlms.apdu.notification import decode as _data_notification
from smarthub.meters.dlms.apdu.set import SetRequestNormal, SetResponseNormal
from smarthub.meters.dlms.apdu.set import decode_request as _set_request
from smarthub.meters.dlms.apdu.set import decode_response as _set_response
from smarthub.meters.dlms.errors import PROTOCOL, DecodeError, MalformedFrame, TruncatedFrame
from smarthub.meters.dlms.security import is_ciphered

__all__ = [
    "Aare",
    "Aarq",
    "ActionRequestNormal",
    "ActionResponseNormal",
    "Apdu",
    "ApplicationContext",
    "CipheredPdu",
    "ConfirmedServiceError",
    "Conformance",
    "DataNotification",
    "ExceptionResponse",
    "GetRequestNext",
    "GetRequestNormal",
    "GetResponseNormal",
    "GetResponseWithBlock",
    "InitiateRequest",
    "InitiateResponse",
    "Mechanism",
    "ReleaseRequest",
    "ReleaseResponse",
    "SetRequestNormal",
    "SetResponseNormal",
    "decode_apdu",
    "invoke_id_and_priority",
]


Apdu = (
    Aarq
    | Aare
    | ReleaseRequest
    | ReleaseResponse
    | InitiateRequest
    | InitiateResponse
    | ConfirmedServiceError
    | GetRequestNormal
    | GetRequestNext
    | GetResponseNormal
    | GetResponseWithBlock
    | SetRequestNormal
    | SetResponseNormal
    | ActionRequestNormal
    | ActionResponseNormal
    | DataNotification
    | ExceptionResponse
    | CipheredPdu
)


def decode_apdu(data: bytes, *, max_depth: int = 16) -> Apdu:
    """Decode one plain APDU (or recognise a ciphered one). Raises only ``DecodeError``."""
    data = bytes(data)
    if not data:
        raise TruncatedFrame(PROTOCOL, "empty APDU")
    tag = data[0]
    try:
        if tag == 0xC4:
            return _get_response(data, max_depth)
        if tag == 0xC0:
            return _get_request(data)
        if tag == 0xC1:
            return _set_request(data, max_depth)
        if tag == 0xC5:
            return _set_response(data)
        if tag == 0xC3:
            return _action_request(data, max_depth)
        if tag == 0xC7:
            return _action_response(data, max_depth)
        if tag == 0x0F:
            return _data_notification(data, max_depth)
        if tag == 0x60:
            return Aarq.from_bytes(data)
        if tag == 0x61:
            return Aare.from_bytes(data)
        if tag == 0x62:
            return ReleaseRequest.from_bytes(data)
        if tag == 0x63:
            return ReleaseResponse.from_bytes(data)
        if tag == 0x01:
            return InitiateRequest.from_bytes(data)
        if tag == 0x08:
            return InitiateResponse.from_bytes(data)
        if tag == 0x0E:
            return ConfirmedServiceError.from_bytes(data)
        if tag == 0xD8:
            return _exception_response(data)
        if is_ciphered(data):
            return _ciphered(data)
    except DecodeError:
        raise
    except (IndexError, ValueError) as err:  # pragma: no cover - defensive: map stray errors
        raise MalformedFrame(PROTOCOL, f"APDU {tag:#04x}: {err}") from None
    raise MalformedFrame(PROTOCOL, f"APDU tag {tag:#04x} not supported", offset=0)
