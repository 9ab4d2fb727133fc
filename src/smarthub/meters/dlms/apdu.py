"""DLMS/COSEM application layer PDUs (IEC 62056-5-3; DLMS Green Book, "DLMS/COSEM application
layer": "ACSE services and APDUs", "xDLMS services", the ASN.1 of the COSEM APDUs and their
encodings).

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

Why our own codec rather than ``dlms-cosem``'s (the reference in tests and benchmark): speed
(slicing an immutable buffer, no attrs objects per field, the GET.response's data decoded by our
A-XDR decoder), sans-I/O typed errors (any input raises only ``DecodeError`` subclasses: fuzzed),
and exact Decimal scaling downstream (:mod:`smarthub.meters.dlms.cosem`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from smarthub.meters.dlms.axdr import DateTime, decode_data, decode_length, encode_length
from smarthub.meters.dlms.errors import PROTOCOL, DecodeError, MalformedFrame, TruncatedFrame
from smarthub.meters.dlms.security import GENERAL_DED_CIPHERING, GENERAL_GLO_CIPHERING, is_ciphered
from smarthub.model.obis import ObisCode

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


class Conformance(enum.IntFlag):
    """The xDLMS conformance block (IEC 62056-5-3, "Conformance block"): ASN.1 bit n of the
    24-bit string is integer bit 23 - n."""

    GENERAL_PROTECTION = 1 << 22
    GENERAL_BLOCK_TRANSFER = 1 << 21
    READ = 1 << 20
    WRITE = 1 << 19
    UNCONFIRMED_WRITE = 1 << 18
    ATTRIBUTE0_SUPPORTED_WITH_SET = 1 << 15
    PRIORITY_MGMT_SUPPORTED = 1 << 14
    ATTRIBUTE0_SUPPORTED_WITH_GET = 1 << 13
    BLOCK_TRANSFER_WITH_GET_OR_READ = 1 << 12
    BLOCK_TRANSFER_WITH_SET_OR_WRITE = 1 << 11
    BLOCK_TRANSFER_WITH_ACTION = 1 << 10
    MULTIPLE_REFERENCES = 1 << 9
    INFORMATION_REPORT = 1 << 8
    DATA_NOTIFICATION = 1 << 7
    ACCESS = 1 << 6
    PARAMETERIZED_ACCESS = 1 << 5
    GET = 1 << 4
    SET = 1 << 3
    SELECTIVE_ACCESS = 1 << 2
    EVENT_NOTIFICATION = 1 << 1
    ACTION = 1 << 0


class ApplicationContext(enum.IntEnum):
    """Last arc of the application context name 2.16.756.5.8.1.x."""

    LN = 1
    SN = 2
    LN_CIPHERED = 3
    SN_CIPHERED = 4


class Mechanism(enum.IntEnum):
    """Last arc of the authentication mechanism name 2.16.756.5.8.2.x."""

    NONE = 0
    LLS = 1
    HLS = 2
    HLS_MD5 = 3
    HLS_SHA1 = 4
    HLS_GMAC = 5
    HLS_SHA256 = 6
    HLS_ECDSA = 7


_CONTEXT_PREFIX = bytes.fromhex("608574050801")
_MECHANISM_PREFIX = bytes.fromhex("608574050802")


def invoke_id_and_priority(invoke_id: int, *, high_priority: bool = True, confirmed: bool = True) -> int:
    return (invoke_id & 0x0F) | (0x40 if confirmed else 0) | (0x80 if high_priority else 0)


# --------------------------------------------------------------------------------------------
# BER helpers for the ACSE APDUs
# --------------------------------------------------------------------------------------------


def _ber_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n < 0x100:
        return bytes((0x81, n))
    return b"\x82" + n.to_bytes(2, "big")


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes((tag,)) + _ber_length(len(value)) + value


def _read_tlv(data: bytes, pos: int, end: int) -> tuple[int, bytes, int]:
    if pos + 2 > end:
        raise TruncatedFrame(PROTOCOL, "BER element truncated", offset=pos)
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise MalformedFrame(PROTOCOL, f"multi-byte BER tag {tag:#04x} not used by COSEM ACSE", offset=pos)
    b = data[pos + 1]
    pos += 2
    if b < 0x80:
        length = b
    elif b in (0x81, 0x82):
        k = b & 0x7F
        if pos + k > end:
            raise TruncatedFrame(PROTOCOL, "BER length truncated", offset=pos)
        length = int.from_bytes(data[pos : pos + k], "big")
        pos += k
    else:
        raise MalformedFrame(PROTOCOL, f"BER length form {b:#04x} not supported", offset=pos - 1)
    if pos + length > end:
        raise TruncatedFrame(
            PROTOCOL, f"BER element {tag:#04x} of {length} bytes runs past its APDU", offset=pos
        )
    return tag, data[pos : pos + length], pos + length


def _elements(data: bytes, expected_tag: int, name: str) -> dict[int, bytes]:
    if not data or data[0] != expected_tag:
        raise MalformedFrame(PROTOCOL, f"not an {name} (tag {expected_tag:#04x})", offset=0)
    _tag, body, end = _read_tlv(data, 0, len(data))
    if end != len(data):
        raise MalformedFrame(PROTOCOL, f"{len(data) - end} bytes after the {name}", offset=end)
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(body):
        t, v, pos = _read_tlv(body, pos, len(body))
        out[t] = v
    return out


def _oid_arc(value: bytes, prefix: bytes, what: str) -> int:
    # value: 06 07 <7-byte OID> (application context / mechanism name are [n] EXPLICIT OBJECT ID
    # in AARQ/AARE, [n] IMPLICIT for the mechanism name: accept both).
    oid = value[2:] if value[:1] == b"\x06" else value
    if len(oid) != 7 or oid[:6] != prefix:
        raise MalformedFrame(PROTOCOL, f"{what} {value.hex()} is not a DLMS UA object identifier")
    return oid[6]


def _octets_in(value: bytes, inner_tag: int, what: str) -> bytes:
    tag, v, end = _read_tlv(value, 0, len(value))
    if tag != inner_tag or end != len(value):
        raise MalformedFrame(PROTOCOL, f"{what} is not wrapped as expected")
    return v


def _int_in(value: bytes, what: str) -> int:
    v = _octets_in(value, 0x02, what)
    if not 1 <= len(v) <= 4:
        raise MalformedFrame(PROTOCOL, f"{what} integer of {len(v)} bytes")
    return int.from_bytes(v, "big", signed=True)


def _user_information(value: bytes) -> bytes:
    return _octets_in(value, 0x04, "user-information")


# --------------------------------------------------------------------------------------------
# xDLMS Initiate
# --------------------------------------------------------------------------------------------


def _conformance_bytes(c: int) -> bytes:
    return b"\x5f\x1f\x04\x00" + int(c).to_bytes(3, "big")


def _read_conformance(data: bytes, pos: int) -> tuple[int, int]:
    if data[pos : pos + 4] != b"\x5f\x1f\x04\x00" or pos + 7 > len(data):
        raise MalformedFrame(PROTOCOL, "conformance block not encoded as 5F 1F 04 00 xx xx xx", offset=pos)
    return int.from_bytes(data[pos + 4 : pos + 7], "big"), pos + 7


def _need(data: bytes, pos: int, n: int, what: str) -> None:
    if pos + n > len(data):
        raise TruncatedFrame(PROTOCOL, f"{what} truncated", offset=pos)


@dataclass(frozen=True, slots=True)
class InitiateRequest:
    proposed_conformance: int
    client_max_receive_pdu_size: int = 0xFFFF
    dedicated_key: bytes | None = None
    response_allowed: bool = True
    proposed_quality_of_service: int | None = None
    proposed_dlms_version: int = 6

    TAG = 0x01

    def to_bytes(self) -> bytes:
        out = bytearray(b"\x01")
        if self.dedicated_key is None:
            out.append(0)
        else:
            out += b"\x01" + bytes((len(self.dedicated_key),)) + self.dedicated_key
        out += b"\x00" if self.response_allowed else b"\x01\x00"
        out += (
            b"\x00"
            if self.proposed_quality_of_service is None
            else bytes((1, self.proposed_quality_of_service))
        )
        out.append(self.proposed_dlms_version)
        out += _conformance_bytes(self.proposed_conformance)
        out += self.client_max_receive_pdu_size.to_bytes(2, "big")
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> InitiateRequest:
        _need(data, 0, 2, "InitiateRequest")
        if data[0] != 0x01:
            raise MalformedFrame(PROTOCOL, "not an InitiateRequest", offset=0)
        pos = 1
        key = None
        if data[pos]:
            _need(data, pos, 2, "dedicated key")
            k = data[pos + 1]
            _need(data, pos + 2, k, "dedicated key")
            key = data[pos + 2 : pos + 2 + k]
            pos += 2 + k
        else:
            pos += 1
        _need(data, pos, 1, "response-allowed")
        allowed = True
        if data[pos]:
            _need(data, pos, 2, "response-allowed")
            allowed = bool(data[pos + 1])
            pos += 2
        else:
            pos += 1
        _need(data, pos, 1, "quality of service")
        qos = None
        if data[pos]:
            _need(data, pos, 2, "quality of service")
            qos = data[pos + 1]
            pos += 2
        else:
            pos += 1
        _need(data, pos, 1, "DLMS version")
        version = data[pos]
        conformance, pos = _read_conformance(data, pos + 1)
        _need(data, pos, 2, "client max receive PDU size")
        size = int.from_bytes(data[pos : pos + 2], "big")
        if pos + 2 != len(data):
            raise MalformedFrame(PROTOCOL, "bytes after the InitiateRequest", offset=pos + 2)
        return cls(conformance, size, key, allowed, qos, version)


@dataclass(frozen=True, slots=True)
class InitiateResponse:
    negotiated_conformance: int
    server_max_receive_pdu_size: int
    negotiated_dlms_version: int = 6
    negotiated_quality_of_service: int | None = None
    vaa_name: int = 0x0007  # the LN referencing VAA

    TAG = 0x08

    def to_bytes(self) -> bytes:
        qos = (
            b"\x00"
            if self.negotiated_quality_of_service is None
            else bytes((1, self.negotiated_quality_of_service))
        )
        return (
            b"\x08"
            + qos
            + bytes((self.negotiated_dlms_version,))
            + _conformance_bytes(self.negotiated_conformance)
            + self.server_max_receive_pdu_size.to_bytes(2, "big")
            + self.vaa_name.to_bytes(2, "big")
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> InitiateResponse:
        _need(data, 0, 2, "InitiateResponse")
        if data[0] != 0x08:
            raise MalformedFrame(PROTOCOL, "not an InitiateResponse", offset=0)
        pos = 1
        qos = None
        if data[pos]:
            _need(data, pos, 2, "quality of service")
            qos = data[pos + 1]
            pos += 2
        else:
            pos += 1
        _need(data, pos, 1, "DLMS version")
        version = data[pos]
        conformance, pos = _read_conformance(data, pos + 1)
        _need(data, pos, 4, "InitiateResponse PDU size and VAA name")
        size = int.from_bytes(data[pos : pos + 2], "big")
        vaa = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if pos + 4 != len(data):
            raise MalformedFrame(PROTOCOL, "bytes after the InitiateResponse", offset=pos + 4)
        return cls(conformance, size, version, qos, vaa)


@dataclass(frozen=True, slots=True)
class ConfirmedServiceError:
    """0x0E: which service failed (1 = initiateError, ...), the ServiceError choice (6 =
    initiate) and its value (e.g. 1 = dlms-version-too-low)."""

    service: int
    error_type: int
    error: int

    TAG = 0x0E

    def to_bytes(self) -> bytes:
        return bytes((0x0E, self.service, self.error_type, self.error))

    @classmethod
    def from_bytes(cls, data: bytes) -> ConfirmedServiceError:
        if len(data) != 4 or data[0] != 0x0E:
            raise MalformedFrame(PROTOCOL, "ConfirmedServiceError is 4 bytes: 0E service type value")
        return cls(data[1], data[2], data[3])


# --------------------------------------------------------------------------------------------
# ACSE
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Aarq:
    """AARQ. ``user_information`` holds the encoded InitiateRequest, plain or glo-ciphered."""

    user_information: bytes
    application_context: int = ApplicationContext.LN
    calling_ap_title: bytes | None = None  # the client's system title (ciphered contexts)
    mechanism: int | None = None
    authentication_value: bytes | None = None  # LLS password or HLS challenge

    TAG = 0x60

    @property
    def ciphered(self) -> bool:
        return self.application_context in (ApplicationContext.LN_CIPHERED, ApplicationContext.SN_CIPHERED)

    def to_bytes(self) -> bytes:
        body = _tlv(0xA1, _tlv(0x06, _CONTEXT_PREFIX + bytes((self.application_context,))))
        if self.calling_ap_title is not None:
            body += _tlv(0xA6, _tlv(0x04, self.calling_ap_title))
        if self.mechanism is not None and self.mechanism != Mechanism.NONE:
            body += _tlv(0x8A, b"\x07\x80")
            body += _tlv(0x8B, _MECHANISM_PREFIX + bytes((self.mechanism,)))
            if self.authentication_value is not None:
                body += _tlv(0xAC, _tlv(0x80, self.authentication_value))
        body += _tlv(0xBE, _tlv(0x04, self.user_information))
        return _tlv(0x60, body)

    @classmethod
    def from_bytes(cls, data: bytes) -> Aarq:
        el = _elements(data, 0x60, "AARQ")
        if 0xA1 not in el:
            raise MalformedFrame(PROTOCOL, "AARQ without application-context-name")
        ctx = _oid_arc(el[0xA1], _CONTEXT_PREFIX, "application context name")
        title = _octets_in(el[0xA6], 0x04, "calling-AP-title") if 0xA6 in el else None
        mech = _oid_arc(el[0x8B], _MECHANISM_PREFIX, "mechanism name") if 0x8B in el else None
        auth = _octets_in(el[0xAC], 0x80, "calling-authentication-value") if 0xAC in el else None
        if 0xBE not in el:
            raise MalformedFrame(PROTOCOL, "AARQ without user-information (xDLMS InitiateRequest)")
        return cls(_user_information(el[0xBE]), ctx, title, mech, auth)


@dataclass(frozen=True, slots=True)
class Aare:
    """AARE. ``result`` 0 accepted, 1 rejected-permanent, 2 rejected-transient;
    ``diagnostic_source`` 1 acse-service-user, 2 acse-service-provider."""

    result: int
    diagnostic: int
    user_information: bytes | None
    application_context: int = ApplicationContext.LN
    diagnostic_source: int = 1
    responding_ap_title: bytes | None = None  # the server's system title (ciphered contexts)
    mechanism: int | None = None
    authentication_value: bytes | None = None  # HLS server-to-client challenge

    TAG = 0x61

    @property
    def ciphered(self) -> bool:
        return self.application_context in (ApplicationContext.LN_CIPHERED, ApplicationContext.SN_CIPHERED)

    def to_bytes(self) -> bytes:
        body = _tlv(0xA1, _tlv(0x06, _CONTEXT_PREFIX + bytes((self.application_context,))))
        body += _tlv(0xA2, _tlv(0x02, bytes((self.result,))))
        body += _tlv(0xA3, _tlv(0xA0 + self.diagnostic_source, _tlv(0x02, bytes((self.diagnostic,)))))
        if self.responding_ap_title is not None:
            body += _tlv(0xA4, _tlv(0x04, self.responding_ap_title))
        if self.mechanism is not None and self.mechanism != Mechanism.NONE:
            body += _tlv(0x88, b"\x07\x80")
            body += _tlv(0x89, _MECHANISM_PREFIX + bytes((self.mechanism,)))
            if self.authentication_value is not None:
                body += _tlv(0xAA, _tlv(0x80, self.authentication_value))
        if self.user_information is not None:
            body += _tlv(0xBE, _tlv(0x04, self.user_information))
        return _tlv(0x61, body)

    @classmethod
    def from_bytes(cls, data: bytes) -> Aare:
        el = _elements(data, 0x61, "AARE")
        for tag, name in (
            (0xA1, "application-context-name"),
            (0xA2, "result"),
            (0xA3, "result-source-diagnostic"),
        ):
            if tag not in el:
                raise MalformedFrame(PROTOCOL, f"AARE without {name}")
        ctx = _oid_arc(el[0xA1], _CONTEXT_PREFIX, "application context name")
        result = _int_in(el[0xA2], "AARE result")
        src_tag, src_body, end = _read_tlv(el[0xA3], 0, len(el[0xA3]))
        if src_tag not in (0xA1, 0xA2) or end != len(el[0xA3]):
            raise MalformedFrame(
                PROTOCOL, "AARE result-source-diagnostic is neither service-user nor -provider"
            )
        diagnostic = _int_in(src_body, "AARE diagnostic")
        title = _octets_in(el[0xA4], 0x04, "responding-AP-title") if 0xA4 in el else None
        mech = _oid_arc(el[0x89], _MECHANISM_PREFIX, "mechanism name") if 0x89 in el else None
        auth = _octets_in(el[0xAA], 0x80, "responding-authentication-value") if 0xAA in el else None
        info = _user_information(el[0xBE]) if 0xBE in el else None
        return cls(result, diagnostic, info, ctx, src_tag - 0xA0, title, mech, auth)


@dataclass(frozen=True, slots=True)
class ReleaseRequest:
    reason: int | None = 0  # 0 normal, 1 urgent, 30 user-defined
    user_information: bytes | None = None

    TAG = 0x62

    def to_bytes(self) -> bytes:
        body = b"" if self.reason is None else _tlv(0x80, bytes((self.reason,)))
        if self.user_information is not None:
            body += _tlv(0xBE, _tlv(0x04, self.user_information))
        return _tlv(self.TAG, body)

    @classmethod
    def from_bytes(cls, data: bytes) -> ReleaseRequest:
        el = _elements(data, cls.TAG, "RLRQ")
        return cls(*_release_fields(el))


@dataclass(frozen=True, slots=True)
class ReleaseResponse:
    reason: int | None = 0  # 0 normal, 1 not-finished, 30 user-defined
    user_information: bytes | None = None

    TAG = 0x63

    def to_bytes(self) -> bytes:
        body = b"" if self.reason is None else _tlv(0x80, bytes((self.reason,)))
        if self.user_information is not None:
            body += _tlv(0xBE, _tlv(0x04, self.user_information))
        return _tlv(self.TAG, body)

    @classmethod
    def from_bytes(cls, data: bytes) -> ReleaseResponse:
        el = _elements(data, cls.TAG, "RLRE")
        return cls(*_release_fields(el))


def _release_fields(el: dict[int, bytes]) -> tuple[int | None, bytes | None]:
    reason = None
    if 0x80 in el:
        if len(el[0x80]) != 1:
            raise MalformedFrame(PROTOCOL, "release reason is one byte")
        reason = el[0x80][0]
    info = _user_information(el[0xBE]) if 0xBE in el else None
    return reason, info


# --------------------------------------------------------------------------------------------
# GET
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GetRequestNormal:
    invoke_id: int
    class_id: int
    instance: ObisCode
    attribute: int
    access_selection: bytes | None = None  # selector byte + encoded parameters
    priority: int = 0xC0  # high priority, confirmed

    def to_bytes(self) -> bytes:
        sel = b"\x00" if self.access_selection is None else b"\x01" + self.access_selection
        return (
            bytes((0xC0, 0x01, (self.invoke_id & 0x0F) | self.priority))
            + self.class_id.to_bytes(2, "big")
            + self.instance.to_bytes()
            + self.attribute.to_bytes(1, "big", signed=True)
            + sel
        )


@dataclass(frozen=True, slots=True)
class GetRequestNext:
    invoke_id: int
    block_number: int
    priority: int = 0xC0

    def to_bytes(self) -> bytes:
        return bytes((0xC0, 0x02, (self.invoke_id & 0x0F) | self.priority)) + self.block_number.to_bytes(
            4, "big"
        )


@dataclass(frozen=True, slots=True)
class GetResponseNormal:
    """``result`` 0 with ``data`` (the encoded value), or a data-access-result and no data.
    :func:`decode_apdu` also fills ``value`` with the decoded data."""

    invoke_id: int
    data: bytes | None
    result: int = 0
    priority: int = 0xC0
    value: Any = field(default=None, compare=False)

    def to_bytes(self) -> bytes:
        head = bytes((0xC4, 0x01, (self.invoke_id & 0x0F) | self.priority))
        if self.data is None:
            return head + bytes((0x01, self.result))
        return head + b"\x00" + self.data


@dataclass(frozen=True, slots=True)
class GetResponseWithBlock:
    """One block of a long GET: ``raw_data`` is a piece of the encoded value (or ``None`` with
    a data-access-result)."""

    invoke_id: int
    last_block: bool
    block_number: int
    raw_data: bytes | None
    result: int = 0
    priority: int = 0xC0

    def to_bytes(self) -> bytes:
        head = bytes((0xC4, 0x02, (self.invoke_id & 0x0F) | self.priority, 1 if self.last_block else 0))
        head += self.block_number.to_bytes(4, "big")
        if self.raw_data is None:
            return head + bytes((0x01, self.result))
        return head + b"\x00" + encode_length(len(self.raw_data)) + self.raw_data


# --------------------------------------------------------------------------------------------
# SET and ACTION (normal only: no block transfer, no with-list)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetRequestNormal:
    """0xC1 0x01: invoke-id-and-priority, cosem-attribute-descriptor (class id, instance id,
    attribute id), optional selective-access-descriptor (``access_selection``: selector byte +
    its encoded parameters), and ``data``: the encoded ``Data`` to write (:func:`decode_apdu`
    fills ``value`` with it decoded)."""

    invoke_id: int
    class_id: int
    instance: ObisCode
    attribute: int
    data: bytes
    access_selection: bytes | None = None
    priority: int = 0xC0
    value: Any = field(default=None, compare=False)

    def to_bytes(self) -> bytes:
        sel = b"\x00" if self.access_selection is None else b"\x01" + self.access_selection
        return (
            bytes((0xC1, 0x01, (self.invoke_id & 0x0F) | self.priority))
            + self.class_id.to_bytes(2, "big")
            + self.instance.to_bytes()
            + self.attribute.to_bytes(1, "big", signed=True)
            + sel
            + self.data
        )


@dataclass(frozen=True, slots=True)
class SetResponseNormal:
    """0xC5 0x01: invoke-id-and-priority and the data-access-result (0 = success)."""

    invoke_id: int
    result: int = 0
    priority: int = 0xC0

    def to_bytes(self) -> bytes:
        return bytes((0xC5, 0x01, (self.invoke_id & 0x0F) | self.priority, self.result))


@dataclass(frozen=True, slots=True)
class ActionRequestNormal:
    """0xC3 0x01: invoke-id-and-priority, cosem-method-descriptor (class id, instance id,
    method id) and the optional method-invocation-parameters (``parameter``: one encoded
    ``Data``, or ``None``; :func:`decode_apdu` fills ``value`` with it decoded)."""

    invoke_id: int
    class_id: int
    instance: ObisCode
    method: int
    parameter: bytes | None = None
    priority: int = 0xC0
    value: Any = field(default=None, compare=False)

    def to_bytes(self) -> bytes:
        params = b"\x00" if self.parameter is None else b"\x01" + self.parameter
        return (
            bytes((0xC3, 0x01, (self.invoke_id & 0x0F) | self.priority))
            + self.class_id.to_bytes(2, "big")
            + self.instance.to_bytes()
            + self.method.to_bytes(1, "big", signed=True)
            + params
        )


@dataclass(frozen=True, slots=True)
class ActionResponseNormal:
    """0xC7 0x01: invoke-id-and-priority, the action-result (0 = success) and the optional
    return-parameters, a Get-Data-Result: ``data`` (an encoded ``Data``; ``value`` decoded) or
    ``data_result`` (a data-access-result), or neither when absent."""

    invoke_id: int
    result: int = 0
    data: bytes | None = None
    data_result: int | None = None
    priority: int = 0xC0
    value: Any = field(default=None, compare=False)

    def to_bytes(self) -> bytes:
        head = bytes((0xC7, 0x01, (self.invoke_id & 0x0F) | self.priority, self.result))
        if self.data is not None:
            return head + b"\x01\x00" + self.data
        if self.data_result is not None:
            return head + bytes((0x01, 0x01, self.data_result))
        return head + b"\x00"


# --------------------------------------------------------------------------------------------
# DataNotification, ExceptionResponse, ciphered
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataNotification:
    """0x0F: long-invoke-id-and-priority (4 bytes), optional date-time, the notification body
    (one ``Data``; ``body`` holds it encoded, ``value`` decoded)."""

    long_invoke_id: int
    date_time: DateTime | None
    body: bytes
    value: Any = field(default=None, compare=False)

    def to_bytes(self) -> bytes:
        # date-time is OCTET STRING OPTIONAL; the Green Book examples send it as 0C + 12 bytes
        # (the length doubling as the presence flag), 00 when absent.
        dt = b"\x00" if self.date_time is None else b"\x0c" + self.date_time.to_bytes()
        return b"\x0f" + self.long_invoke_id.to_bytes(4, "big") + dt + self.body


@dataclass(frozen=True, slots=True)
class ExceptionResponse:
    """0xD8: state-error (1 service-not-allowed, 2 service-unknown) and service-error."""

    state_error: int
    service_error: int
    detail: bytes = b""

    def to_bytes(self) -> bytes:
        return bytes((0xD8, self.state_error, self.service_error)) + self.detail


@dataclass(frozen=True, slots=True)
class CipheredPdu:
    """A ciphered APDU, not decrypted (see :func:`smarthub.meters.dlms.security.decipher_apdu`)."""

    tag: int
    system_title: bytes | None
    security_control: int
    invocation_counter: int
    raw: bytes


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
            if len(data) < 3:
                raise TruncatedFrame(PROTOCOL, "ExceptionResponse truncated")
            return ExceptionResponse(data[1], data[2], data[3:])
        if is_ciphered(data):
            return _ciphered(data)
    except DecodeError:
        raise
    except (IndexError, ValueError) as err:  # pragma: no cover - defensive: map stray errors
        raise MalformedFrame(PROTOCOL, f"APDU {tag:#04x}: {err}") from None
    raise MalformedFrame(PROTOCOL, f"APDU tag {tag:#04x} not supported", offset=0)


def _get_request(data: bytes) -> GetRequestNormal | GetRequestNext:
    _need(data, 0, 3, "GET.request")
    kind, iip = data[1], data[2]
    if kind == 0x01:
        _need(data, 3, 10, "GET.request normal")
        class_id = int.from_bytes(data[3:5], "big")
        obis = ObisCode(*data[5:11])
        attribute = int.from_bytes(data[11:12], "big", signed=True)
        sel = None
        if data[12]:
            sel = data[13:]
            if not sel:
                raise TruncatedFrame(PROTOCOL, "GET.request access selection missing", offset=13)
        elif len(data) != 13:
            raise MalformedFrame(PROTOCOL, "bytes after GET.request normal", offset=13)
        return GetRequestNormal(iip & 0x0F, class_id, obis, attribute, sel, iip & 0xF0)
    if kind == 0x02:
        if len(data) != 7:
            raise MalformedFrame(PROTOCOL, "GET.request next is 7 bytes")
        return GetRequestNext(iip & 0x0F, int.from_bytes(data[3:7], "big"), iip & 0xF0)
    raise MalformedFrame(PROTOCOL, f"GET.request choice {kind} not supported", offset=1)


def _get_response(data: bytes, max_depth: int) -> GetResponseNormal | GetResponseWithBlock:
    _need(data, 0, 4, "GET.response")
    kind, iip = data[1], data[2]
    if kind == 0x01:
        if data[3] == 0x00:
            value, end = decode_data(data, 4, max_depth=max_depth)
            if end != len(data):
                raise MalformedFrame(PROTOCOL, "bytes after GET.response data", offset=end)
            return GetResponseNormal(iip & 0x0F, data[4:], 0, iip & 0xF0, value)
        if data[3] == 0x01:
            if len(data) != 5:
                raise MalformedFrame(PROTOCOL, "GET.response data-access-result is 5 bytes")
            return GetResponseNormal(iip & 0x0F, None, data[4], iip & 0xF0)
        raise MalformedFrame(PROTOCOL, f"Get-Data-Result choice {data[3]}", offset=3)
    if kind == 0x02:
        _need(data, 0, 10, "GET.response with datablock")
        last = data[3]
        if last > 1:
            raise MalformedFrame(PROTOCOL, f"last-block boolean {last}", offset=3)
        block = int.from_bytes(data[4:8], "big")
        if data[8] == 0x00:
            length, pos = decode_length(data, 9)
            if pos + length != len(data):
                raise MalformedFrame(PROTOCOL, "raw-data length does not match the APDU", offset=9)
            return GetResponseWithBlock(iip & 0x0F, bool(last), block, data[pos:], 0, iip & 0xF0)
        if data[8] == 0x01:
            if len(data) != 10:
                raise MalformedFrame(PROTOCOL, "datablock data-access-result is one byte")
            return GetResponseWithBlock(iip & 0x0F, bool(last), block, None, data[9], iip & 0xF0)
        raise MalformedFrame(PROTOCOL, f"DataBlock-G result choice {data[8]}", offset=8)
    raise MalformedFrame(PROTOCOL, f"GET.response choice {kind} not supported", offset=1)


def _descriptor(data: bytes, what: str) -> tuple[int, int, ObisCode, int]:
    """invoke-id-and-priority, class id, instance id and attribute/method id of a normal
    SET/ACTION request (bytes 2..11)."""
    _need(data, 0, 13, what)
    return (
        data[2],
        int.from_bytes(data[3:5], "big"),
        ObisCode(*data[5:11]),
        int.from_bytes(data[11:12], "big", signed=True),
    )


def _set_request(data: bytes, max_depth: int) -> SetRequestNormal:
    _need(data, 0, 2, "SET.request")
    if data[1] != 0x01:
        raise MalformedFrame(PROTOCOL, f"SET.request choice {data[1]} not supported (normal only)", offset=1)
    iip, class_id, obis, attribute = _descriptor(data, "SET.request normal")
    pos = 13
    sel = None
    if data[12] == 0x01:
        _need(data, pos, 1, "SET.request access selector")
        _, end = decode_data(data, pos + 1, max_depth=max_depth)  # the access parameters
        sel, pos = data[pos:end], end
    elif data[12] != 0x00:
        raise MalformedFrame(PROTOCOL, f"access-selection flag {data[12]}", offset=12)
    value, end = decode_data(data, pos, max_depth=max_depth)
    if end != len(data):
        raise MalformedFrame(PROTOCOL, "bytes after SET.request data", offset=end)
    return SetRequestNormal(iip & 0x0F, class_id, obis, attribute, data[pos:], sel, iip & 0xF0, value)


def _set_response(data: bytes) -> SetResponseNormal:
    _need(data, 0, 2, "SET.response")
    if data[1] != 0x01:
        raise MalformedFrame(PROTOCOL, f"SET.response choice {data[1]} not supported (normal only)", offset=1)
    _need(data, 0, 4, "SET.response normal")
    if len(data) != 4:
        raise MalformedFrame(PROTOCOL, "bytes after SET.response normal", offset=4)
    return SetResponseNormal(data[2] & 0x0F, data[3], data[2] & 0xF0)


def _action_request(data: bytes, max_depth: int) -> ActionRequestNormal:
    _need(data, 0, 2, "ACTION.request")
    if data[1] != 0x01:
        raise MalformedFrame(
            PROTOCOL, f"ACTION.request choice {data[1]} not supported (normal only)", offset=1
        )
    iip, class_id, obis, method = _descriptor(data, "ACTION.request normal")
    if data[12] == 0x00:
        if len(data) != 13:
            raise MalformedFrame(PROTOCOL, "bytes after ACTION.request without parameters", offset=13)
        return ActionRequestNormal(iip & 0x0F, class_id, obis, method, None, iip & 0xF0)
    if data[12] != 0x01:
        raise MalformedFrame(PROTOCOL, f"method-invocation-parameters flag {data[12]}", offset=12)
    value, end = decode_data(data, 13, max_depth=max_depth)
    if end != len(data):
        raise MalformedFrame(PROTOCOL, "bytes after ACTION.request parameters", offset=end)
    return ActionRequestNormal(iip & 0x0F, class_id, obis, method, data[13:], iip & 0xF0, value)


def _action_response(data: bytes, max_depth: int) -> ActionResponseNormal:
    _need(data, 0, 2, "ACTION.response")
    if data[1] != 0x01:
        raise MalformedFrame(
            PROTOCOL, f"ACTION.response choice {data[1]} not supported (normal only)", offset=1
        )
    _need(data, 0, 5, "ACTION.response normal")
    iip, result = data[2], data[3]
    if data[4] == 0x00:
        if len(data) != 5:
            raise MalformedFrame(PROTOCOL, "bytes after ACTION.response without return parameters", offset=5)
        return ActionResponseNormal(iip & 0x0F, result, None, None, iip & 0xF0)
    if data[4] != 0x01:
        raise MalformedFrame(PROTOCOL, f"return-parameters flag {data[4]}", offset=4)
    _need(data, 5, 2, "ACTION.response return parameters")
    if data[5] == 0x00:
        value, end = decode_data(data, 6, max_depth=max_depth)
        if end != len(data):
            raise MalformedFrame(PROTOCOL, "bytes after ACTION.response return data", offset=end)
        return ActionResponseNormal(iip & 0x0F, result, data[6:], None, iip & 0xF0, value)
    if data[5] == 0x01:
        if len(data) != 7:
            raise MalformedFrame(PROTOCOL, "ACTION.response data-access-result is one byte", offset=6)
        return ActionResponseNormal(iip & 0x0F, result, None, data[6], iip & 0xF0)
    raise MalformedFrame(PROTOCOL, f"Get-Data-Result choice {data[5]}", offset=5)


def _data_notification(data: bytes, max_depth: int) -> DataNotification:
    _need(data, 0, 7, "DataNotification")
    long_id = int.from_bytes(data[1:5], "big")
    flag = data[5]
    pos = 6
    dt = None
    if flag:
        # 0C + 12 bytes (Green Book examples); also 01 0C + 12 and 01 + 12 (dlms-cosem writes
        # this), and 09 0C + 12 (Kaifa's Norwegian HAN lists tag it as a Data octet-string).
        if flag in (0x01, 0x09) and data[6:7] == b"\x0c":
            pos = 7
        elif flag not in (0x01, 0x0C):
            raise MalformedFrame(PROTOCOL, f"DataNotification date-time length {flag} (must be 12)", offset=5)
        _need(data, pos, 12, "DataNotification date-time")
        dt = DateTime.from_bytes(data[pos : pos + 12])
        pos += 12
    value, end = decode_data(data, pos, max_depth=max_depth)
    if end != len(data):
        raise MalformedFrame(PROTOCOL, "bytes after the DataNotification body", offset=end)
    return DataNotification(long_id, dt, data[pos:], value)


def _ciphered(data: bytes) -> CipheredPdu:
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
