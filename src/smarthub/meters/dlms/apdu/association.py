"""Association: the ACSE APDUs (AARQ 0x60, AARE 0x61, RLRQ 0x62, RLRE 0x63), BER-encoded, and the
xDLMS InitiateRequest/InitiateResponse they carry in their user-information, A-XDR with the
24-bit conformance block as a BER bit string ``5F 1F 04 00 xx xx xx``; ConfirmedServiceError
(0x0E), the answer to an initiate the server refuses (IEC 62056-5-3, "ACSE services and APDUs",
"xDLMS services").

We read the ACSE elements the COSEM profile uses (application context name, AP titles, ACSE
requirements, mechanism name, authentication value, result and diagnostic, user information)
and skip the others."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from smarthub.meters.dlms.apdu.common import need as _need
from smarthub.meters.dlms.errors import PROTOCOL, MalformedFrame, TruncatedFrame


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
