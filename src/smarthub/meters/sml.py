"""SML (Smart Message Language, SML 1.04 as profiled by BSI TR-03109-1 Annex IV / FNN "SML"):
the optical interface of German basic and eHZ meters (EMH, ISKRA MT175/MT681, EasyMeter, DZG,
Holley, eBZ, ...). Sans-I/O codec: one SML file (bytes) in, typed values out, and back.

Transport (SML 1.04, clause 8 "SML-Transport-Protokoll Version 1")::

    1B 1B 1B 1B 01 01 01 01 | messages (any 1B 1B 1B 1B doubled) | 00 * padding |
    1B 1B 1B 1B 1A <padding count> <CRC16>

The padding makes the file a multiple of 4 bytes. The CRC16 is CRC-16/X-25 (as HDLC, IEC
62056-46) over everything before it, sent least significant byte first; a few meters send
CRC-16/KERMIT instead (smllib's ``crc='kermit'``), which is accepted too and reported.

Messages are TL-encoded (clause 6): a type-length byte, type in bits 4-6 (0 octet string,
4 boolean, 5 integer, 6 unsigned, 7 list), bit 7 set when another TL byte follows (its low
nibble continues the length); for a list the length counts the elements, otherwise the bytes
including the TL bytes; ``00`` ends a message, ``01`` is an absent optional field. Each
message is ``list(transactionId, groupNo, abortOnError, list(tag, body), crc16, 00)``; the
bodies read here are OpenResponse (0x0101), GetListResponse (0x0701) and CloseResponse
(0x0201). A GetListResponse's ``valList`` holds ``SML_ListEntry`` = ``list(objName (OBIS, 6
bytes), status, valTime, unit (DLMS unit code), scaler, value, valueSignature)``.

Data points (:mod:`smarthub.model.datapoint`): protocol ``sml``, key the OBIS code
``A-B:C.D.E`` (``*F`` when F != 255), value ``value × 10^scaler`` exactly (``Decimal``), unit
from the DLMS unit code. The meter is the device id ``1-0:96.1.0`` / ``0-0:96.1.0`` when the
list carries one, else the server id (hex). The time is the list's ``actSensorTime`` or an
entry's ``valTime`` when they are a timestamp (seconds since 1970); a ``secIndex`` (seconds
since the meter started) is not a time of day and is not used.

Why our own codec: the reference (``smllib``, used in the tests and the benchmark) reports bad
input as a handful of its own exceptions and values as floats; ours raises only
:class:`~smarthub.meters.errors.DecodeError` subclasses (it is fuzzed), keeps values exact and
also encodes (the simulator emits real SML files).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from smarthub.meters.crc import CRC16_KERMIT
from smarthub.meters.dlms.cosem import UNIT_CODES, UNITS, _named
from smarthub.meters.dlms.hdlc import crc16_x25
from smarthub.meters.errors import ChecksumError, MalformedFrame, TruncatedFrame
from smarthub.model.datapoint import DataPoint
from smarthub.model.obis import ObisCode

__all__ = [
    "ListEntry",
    "SmlFile",
    "SmlMessage",
    "crc16_kermit",
    "data_points",
    "decode_file",
    "encode_file",
]

PROTOCOL = "sml"
ESCAPE = b"\x1b\x1b\x1b\x1b"
START = ESCAPE + b"\x01\x01\x01\x01"
END = ESCAPE + b"\x1a"
OPEN_RESPONSE, CLOSE_RESPONSE, GET_LIST_RESPONSE = 0x0101, 0x0201, 0x0701
MAX_DEPTH = 12
_DEVICE_ID = (ObisCode(1, 0, 96, 1, 0), ObisCode(0, 0, 96, 1, 0), ObisCode(1, 0, 0, 0, 9))
_DEVICE_KEYS = frozenset(str(o) for o in _DEVICE_ID)  # compared as strings: no Python-level __eq__


def crc16_kermit(data: bytes) -> int:
    """CRC-16/KERMIT (reflected 0x1021, init 0, no final XOR; check 0x2189)."""
    return CRC16_KERMIT(data)


@dataclass(frozen=True, slots=True)
class ListEntry:
    obis: ObisCode
    status: int | None
    val_time: tuple[int, int] | None  # (SML_Time choice: 1 secIndex, 2 timestamp, 3 local), value
    unit: int | None
    scaler: int | None
    value: int | bytes | bool | tuple[Any, ...] | None  # a list value (e.g. a time) stays a tuple


@dataclass(frozen=True, slots=True)
class SmlMessage:
    transaction_id: bytes
    tag: int
    body: Any  # the decoded body list (nested tuples), as sent


@dataclass(frozen=True, slots=True)
class SmlFile:
    messages: tuple[SmlMessage, ...]
    server_id: bytes | None
    act_sensor_time: tuple[int, int] | None
    entries: tuple[ListEntry, ...]
    crc: str = "x25"  # which CRC the file carried: "x25" or "kermit"
    padding: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Transport
# --------------------------------------------------------------------------------------------


def _unframe(data: bytes) -> tuple[bytes, str, int]:
    """The messages of one SML file (escapes undone, padding removed), its CRC kind, padding."""
    if len(data) < 8:
        raise TruncatedFrame(PROTOCOL, f"{len(data)} bytes: shorter than the start sequence", offset=0)
    if data[:8] != START:
        raise MalformedFrame(PROTOCOL, "file does not start with 1B1B1B1B 01010101", offset=0)
    body = bytearray()
    pos, n = 8, len(data)
    while True:
        i = data.find(ESCAPE, pos)
        if i < 0 or i + 4 >= n:
            raise TruncatedFrame(PROTOCOL, "no end sequence 1B1B1B1B 1A: file cut off", offset=n)
        body += data[pos:i]
        if data[i + 4 : i + 8] == ESCAPE:  # an escape sequence in the data is sent twice
            body += ESCAPE
            pos = i + 8
            continue
        if data[i + 4] == 0x1A:
            end = i
            break
        raise MalformedFrame(PROTOCOL, f"escape sequence followed by {data[i + 4]:02X}", offset=i + 4)
    if end + 8 > n:
        raise TruncatedFrame(PROTOCOL, "end sequence cut off before its CRC", offset=n)
    if end + 8 < n:
        raise MalformedFrame(PROTOCOL, f"{n - end - 8} bytes after the end sequence", offset=end + 8)
    padding = data[end + 5]  # 0..3 per the standard; DZG meters send 4 when already aligned
    sent = data[end + 6] | data[end + 7] << 8
    covered = data[: end + 6]
    kind = "x25"
    if crc16_x25(covered) != sent:
        if crc16_kermit(covered) == (data[end + 6] << 8 | data[end + 7]):
            kind = "kermit"
        else:
            raise ChecksumError(
                PROTOCOL,
                f"CRC16 {sent:04X} does not match the file ({crc16_x25(covered):04X})",
                offset=end + 6,
            )
    if padding:
        if len(body) < padding or any(body[-padding:]):
            raise MalformedFrame(PROTOCOL, f"padding of {padding} bytes is not zeros", offset=end - padding)
        del body[-padding:]
    return bytes(body), kind, padding


# --------------------------------------------------------------------------------------------
# TL encoding
# --------------------------------------------------------------------------------------------

_END = object()  # end-of-message marker 00


def _tl(data: bytes, pos: int) -> tuple[int, int, int]:
    """``(type, length, position after the TL bytes)``."""
    n = len(data)
    if pos >= n:
        raise TruncatedFrame(PROTOCOL, "TL byte missing", offset=pos)
    b = data[pos]
    kind = (b >> 4) & 0x07
    length = b & 0x0F
    p = pos + 1
    while b & 0x80:
        if p >= n:
            raise TruncatedFrame(PROTOCOL, "continued TL byte missing", offset=p)
        b = data[p]
        if b & 0x70:
            raise MalformedFrame(PROTOCOL, f"continued TL byte {b:02X} has a type", offset=p)
        length = (length << 4) | (b & 0x0F)
        p += 1
        if p - pos > 4:
            raise MalformedFrame(PROTOCOL, "TL field longer than 4 bytes", offset=pos)
    return kind, length, p


def _read(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    if depth <= 0:
        raise MalformedFrame(PROTOCOL, "SML nesting deeper than the limit", offset=pos)
    if pos >= len(data):
        raise TruncatedFrame(PROTOCOL, "SML value missing", offset=pos)
    if data[pos] == 0x00:
        return _END, pos + 1
    if data[pos] == 0x01:
        return None, pos + 1
    kind, length, p = _tl(data, pos)
    if kind == 7:
        items = []
        for _ in range(length):
            v, p = _read(data, p, depth - 1)
            if v is _END:
                raise MalformedFrame(PROTOCOL, "end of message inside a list", offset=p - 1)
            items.append(v)
        return tuple(items), p
    size = length - (p - pos)
    if size < 0:
        raise MalformedFrame(PROTOCOL, f"TL length {length} shorter than its TL bytes", offset=pos)
    end = p + size
    if end > len(data):
        raise TruncatedFrame(PROTOCOL, f"SML value of {size} bytes runs past the file", offset=p)
    raw = data[p:end]
    if kind == 0:
        return raw, end
    if kind == 4:
        if size != 1:
            raise MalformedFrame(PROTOCOL, f"boolean of {size} bytes", offset=pos)
        return raw[0] != 0, end
    if kind in (5, 6):
        if not 1 <= size <= 8:
            raise MalformedFrame(PROTOCOL, f"integer of {size} bytes (1..8)", offset=pos)
        return int.from_bytes(raw, "big", signed=kind == 5), end
    raise MalformedFrame(PROTOCOL, f"unknown SML type {kind}", offset=pos)


def _messages(body: bytes) -> list[SmlMessage]:
    out: list[SmlMessage] = []
    pos, n = 0, len(body)
    while pos < n:
        if body[pos] == 0x00:  # fill bytes between messages (before the padding) are tolerated
            pos += 1
            continue
        start = pos
        if body[pos] != 0x76:
            raise MalformedFrame(
                PROTOCOL, f"SML message does not start with list(6) 76: {body[pos]:02X}", offset=pos
            )
        pos += 1
        fields = []
        for _ in range(5):
            v, pos = _read(body, pos, MAX_DEPTH)
            if v is _END:
                raise MalformedFrame(PROTOCOL, "end of message inside a message", offset=pos - 1)
            fields.append(v)
        if pos >= n:
            raise TruncatedFrame(PROTOCOL, "SML message not closed by 00", offset=pos)
        if body[pos] != 0x00:
            raise MalformedFrame(PROTOCOL, "SML message not closed by 00", offset=pos)
        pos += 1
        tid, mbody = fields[0], fields[3]
        if not isinstance(mbody, tuple) or len(mbody) != 2 or not isinstance(mbody[0], int):
            raise MalformedFrame(PROTOCOL, "SML message body is not list(tag, body)", offset=start)
        out.append(SmlMessage(tid if isinstance(tid, bytes) else b"", mbody[0], mbody[1]))
    return out


def _time(v: Any) -> tuple[int, int] | None:
    if v is None:
        return None
    if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], int):
        if isinstance(v[1], int):
            return v[0], v[1]
        if isinstance(v[1], tuple) and v[1] and isinstance(v[1][0], int):  # localTimestamp
            return v[0], v[1][0]
    if isinstance(v, int):  # some meters send the seconds index without the choice
        return 1, v
    raise MalformedFrame(PROTOCOL, f"SML_Time is not list(choice, value): {v!r}")


def _entry(v: Any) -> ListEntry:
    if not isinstance(v, tuple) or len(v) != 7:
        raise MalformedFrame(PROTOCOL, f"SML_ListEntry is not a list of 7: {v!r}")
    name, status, val_time, unit, scaler, value, _sig = v
    if not isinstance(name, bytes) or len(name) != 6:
        raise MalformedFrame(PROTOCOL, f"objName is not a 6-byte OBIS code: {name!r}")
    for what, x in (("status", status), ("unit", unit), ("scaler", scaler)):
        if x is not None and (not isinstance(x, int) or isinstance(x, bool)):
            raise MalformedFrame(PROTOCOL, f"{what} is not an integer: {x!r}")
    if scaler is not None and not -128 <= scaler <= 127:
        raise MalformedFrame(PROTOCOL, f"scaler {scaler} outside int8")
    return ListEntry(_named(name)[0], status, _time(val_time), unit, scaler, value)


def decode_file(data: bytes) -> SmlFile:
    """Decode one SML file (start sequence to CRC). Raises only ``DecodeError`` subclasses."""
    body, kind, padding = _unframe(bytes(data))
    messages = _messages(body)
    server_id = None
    sensor_time = None
    entries: list[ListEntry] = []
    for m in messages:
        b = m.body
        if m.tag == OPEN_RESPONSE:
            if not isinstance(b, tuple) or len(b) != 6:
                raise MalformedFrame(PROTOCOL, "OpenResponse is not a list of 6")
            if isinstance(b[3], bytes):
                server_id = server_id or b[3]
        elif m.tag == GET_LIST_RESPONSE:
            if not isinstance(b, tuple) or len(b) != 7:
                raise MalformedFrame(PROTOCOL, "GetListResponse is not a list of 7")
            if isinstance(b[1], bytes):
                server_id = b[1]
            sensor_time = _time(b[3]) or sensor_time
            if not isinstance(b[4], tuple):
                raise MalformedFrame(PROTOCOL, "GetListResponse valList is not a list")
            entries += [_entry(e) for e in b[4]]
    if not messages:
        raise MalformedFrame(PROTOCOL, "SML file without messages")
    return SmlFile(tuple(messages), server_id, sensor_time, tuple(entries), kind, padding)


# --------------------------------------------------------------------------------------------
# Data points
# --------------------------------------------------------------------------------------------


def _text(v: bytes) -> str:
    if v and all(0x20 <= b < 0x7F for b in v):
        return v.decode("ascii")
    return v.hex()


def _when(t: tuple[int, int] | None) -> datetime | None:
    if t is None or t[0] not in (2, 3):
        return None
    try:
        return datetime.fromtimestamp(t[1], UTC)
    except (OverflowError, OSError, ValueError):
        raise MalformedFrame(PROTOCOL, f"timestamp {t[1]} out of range") from None


def data_points(file: bytes | SmlFile, meter: str | None = None) -> list[DataPoint]:
    """Every list entry with a value, as data points (see the module docstring)."""
    f = file if isinstance(file, SmlFile) else decode_file(file)
    keys = [str(e.obis) for e in f.entries]
    device = next(
        (
            e.value
            for e, key in zip(f.entries, keys, strict=True)
            if key in _DEVICE_KEYS and isinstance(e.value, bytes) and e.value
        ),
        None,
    )
    who = meter or (
        device.hex() if device is not None else (f.server_id.hex() if f.server_id else "unidentified")
    )
    when = _when(f.act_sensor_time)
    out: list[DataPoint] = []
    for e, key in zip(f.entries, keys, strict=True):
        value = e.value
        if value is None or key in _DEVICE_KEYS:
            continue
        t = _when(e.val_time) if e.val_time is not None else None
        t = t or when
        if type(value) is int:
            s = e.scaler or 0
            v = Decimal(value * 10**s) if s > 0 else Decimal(value).scaleb(s) if s else Decimal(value)
            out.append(DataPoint(who, PROTOCOL, key, v, UNITS.get(e.unit) if e.unit is not None else None, t))
        elif isinstance(value, bool):
            out.append(DataPoint(who, PROTOCOL, key, str(value).lower(), None, t))
        elif isinstance(value, int):
            s = e.scaler or 0
            v = Decimal(value * 10**s) if s > 0 else Decimal(value).scaleb(s)
            out.append(DataPoint(who, PROTOCOL, key, v, UNITS.get(e.unit) if e.unit is not None else None, t))
        elif isinstance(value, bytes):
            out.append(DataPoint(who, PROTOCOL, key, _text(value), None, t))
        else:
            out.append(DataPoint(who, PROTOCOL, key, repr(value), None, t, frozenset({"unparsed"})))
    return out


# --------------------------------------------------------------------------------------------
# Encoding (simulator, tests)
# --------------------------------------------------------------------------------------------


def _enc_tl(kind: int, length: int) -> bytes:
    if length < 16:
        return bytes(((kind << 4) | length,))
    nibbles = []
    while length:
        nibbles.append(length & 0x0F)
        length >>= 4
    nibbles.reverse()
    out = bytearray()
    for i, nib in enumerate(nibbles):
        more = 0x80 if i < len(nibbles) - 1 else 0
        out.append(more | ((kind << 4) if i == 0 else 0) | nib)
    return bytes(out)


def _enc_octets(raw: bytes) -> bytes:
    n = len(raw) + 1
    if n >= 16:
        n = len(raw) + 2
        if n >= 256:
            n = len(raw) + 3
    return _enc_tl(0, n) + raw


def _enc_int(v: int, signed: bool, size: int) -> bytes:
    return bytes((((5 if signed else 6) << 4) | (size + 1),)) + v.to_bytes(size, "big", signed=signed)


def _enc_list(items: Sequence[bytes]) -> bytes:
    return _enc_tl(7, len(items)) + b"".join(items)


_ABSENT = b"\x01"


def _message(tid: bytes, group: int, tag: int, body: bytes) -> bytes:
    head = (
        b"\x76"
        + _enc_octets(tid)
        + _enc_int(group, False, 1)
        + _enc_int(0, False, 1)
        + _enc_list([_enc_int(tag, False, 4), body])
    )
    # crc16 covers the message from its first byte up to the CRC field.
    return head + b"\x63" + crc16_x25(head).to_bytes(2, "big") + b"\x00"


def _value(v: int | bytes) -> bytes:
    if isinstance(v, bytes):
        return _enc_octets(v)
    size = max(1, (v.bit_length() + 8) // 8)
    size = 1 if size == 1 else 2 if size == 2 else 4 if size <= 4 else 8
    return _enc_int(v, True, size)


def encode_file(
    server_id: bytes,
    entries: Sequence[tuple[ObisCode, int | bytes, int | None, int | None]],
    *,
    transaction: int = 0,
    sensor_seconds: int | None = None,
    timestamp: datetime | None = None,
) -> bytes:
    """An SML file as a basic meter pushes it: OpenResponse, one GetListResponse carrying
    ``entries`` ``(obis, value, unit code or None, scaler or None)``, CloseResponse. The list's
    ``actSensorTime`` is ``timestamp`` (a timestamp) or ``sensor_seconds`` (a secIndex)."""
    tid = transaction.to_bytes(4, "big")
    open_body = _enc_list([_ABSENT, _ABSENT, _enc_octets(tid), _enc_octets(server_id), _ABSENT, _ABSENT])
    if timestamp is not None:
        act = _enc_list([_enc_int(2, False, 1), _enc_int(int(timestamp.timestamp()), False, 4)])
    elif sensor_seconds is not None:
        act = _enc_list([_enc_int(1, False, 1), _enc_int(sensor_seconds, False, 4)])
    else:
        act = _ABSENT
    vals = []
    for obis, value, unit, scaler in entries:
        vals.append(
            _enc_list(
                [
                    _enc_octets(obis.to_bytes()),
                    _ABSENT,
                    _ABSENT,
                    _enc_int(unit, False, 1) if unit is not None else _ABSENT,
                    _enc_int(scaler, True, 1) if scaler is not None else _ABSENT,
                    _value(value),
                    _ABSENT,
                ]
            )
        )
    list_body = _enc_list([_ABSENT, _enc_octets(server_id), _ABSENT, act, _enc_list(vals), _ABSENT, _ABSENT])
    body = (
        _message(tid + b"\x01", 0, OPEN_RESPONSE, open_body)
        + _message(tid + b"\x02", 0, GET_LIST_RESPONSE, list_body)
        + _message(tid + b"\x03", 0, CLOSE_RESPONSE, _enc_list([_ABSENT]))
    )
    escaped = body.replace(ESCAPE, ESCAPE + ESCAPE)
    padding = (-len(escaped)) % 4
    frame = START + escaped + bytes(padding) + END + bytes((padding,))
    return frame + crc16_x25(frame).to_bytes(2, "little")


UNIT_WH, UNIT_W = UNIT_CODES["Wh"], UNIT_CODES["W"]
