"""A-XDR encoding of COSEM data (IEC 62056-6-2, "Data types"; IEC 62056-5-3, the ``Data`` CHOICE
of the xDLMS ASN.1 and its A-XDR encoding rules, IEC 61334-6).

Each value is a tag byte then its contents: fixed-width big-endian integers and floats, a
length-prefixed octet-/visible-/utf8-string, a bit-string prefixed with its length in bits,
an array or structure prefixed with its element count. A-XDR lengths are one byte below 0x80,
else ``0x80 | n`` followed by ``n`` length bytes.

Decoded values are plain Python values, chosen for speed and for the hub's use:

=====================  =============================================================
null-data, dont-care   ``None``
array                  ``list``
structure              ``tuple``
boolean                ``bool``
bit-string             :class:`BitString`
integers, enum, bcd    ``int`` (bcd: the two decimal digits' value)
float32/64             ``float``
octet-string           ``bytes`` (a 12-byte octet string is often a date-time:
                       :meth:`DateTime.from_bytes`)
visible/utf8-string    ``str``
date-time, date, time  :class:`DateTime`, :class:`CosemDate`, :class:`CosemTime`
compact-array          ``list`` of the element values (structures as tuples)
=====================  =============================================================

Encoding needs the types back, so :func:`encode_data` takes ``(tag, value)`` pairs; structure
and array elements are pairs too, or already-encoded ``bytes``.

Why our own codec rather than ``dlms-cosem``'s ``a_xdr``/``dlms_data`` (the reference the tests
and the benchmark compare with): speed (one recursive function over an immutable buffer, struct
unpacking, no per-value objects), typed errors (any input raises only ``DecodeError``
subclasses, with a depth limit and every length checked against the bytes left: the decoder is
fuzzed), and the 12-byte COSEM date-time with its "not specified" fields and deviation kept
exactly rather than guessed into a ``datetime``.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

from smarthub.meters.dlms.errors import PROTOCOL, MalformedFrame, TruncatedFrame

__all__ = [
    "BitString",
    "CosemDate",
    "CosemTime",
    "DateTime",
    "Tag",
    "decode_data",
    "decode_length",
    "encode_data",
    "encode_length",
]

DEFAULT_MAX_DEPTH = 16


class Tag(enum.IntEnum):
    NULL_DATA = 0
    ARRAY = 1
    STRUCTURE = 2
    BOOLEAN = 3
    BIT_STRING = 4
    DOUBLE_LONG = 5
    DOUBLE_LONG_UNSIGNED = 6
    FLOATING_POINT = 7
    OCTET_STRING = 9
    VISIBLE_STRING = 10
    UTF8_STRING = 12
    BCD = 13
    INTEGER = 15
    LONG = 16
    UNSIGNED = 17
    LONG_UNSIGNED = 18
    COMPACT_ARRAY = 19
    LONG64 = 20
    LONG64_UNSIGNED = 21
    ENUM = 22
    FLOAT32 = 23
    FLOAT64 = 24
    DATE_TIME = 25
    DATE = 26
    TIME = 27
    DONT_CARE = 255


_FIXED: dict[int, struct.Struct] = {
    Tag.DOUBLE_LONG: struct.Struct(">i"),
    Tag.DOUBLE_LONG_UNSIGNED: struct.Struct(">I"),
    Tag.FLOATING_POINT: struct.Struct(">f"),
    Tag.INTEGER: struct.Struct(">b"),
    Tag.LONG: struct.Struct(">h"),
    Tag.UNSIGNED: struct.Struct(">B"),
    Tag.LONG_UNSIGNED: struct.Struct(">H"),
    Tag.LONG64: struct.Struct(">q"),
    Tag.LONG64_UNSIGNED: struct.Struct(">Q"),
    Tag.ENUM: struct.Struct(">B"),
    Tag.FLOAT32: struct.Struct(">f"),
    Tag.FLOAT64: struct.Struct(">d"),
}
# Plain int/tag lookups in the hot loop (IntEnum hashing is slower than int's).
_FIXED_INT = {int(k): (v, v.size) for k, v in _FIXED.items()}


# --------------------------------------------------------------------------------------------
# Value types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BitString:
    """``length`` bits, most significant bit of ``data[0]`` first; unused trailing bits are 0."""

    length: int
    data: bytes

    def bits(self) -> str:
        return "".join(f"{b:08b}" for b in self.data)[: self.length]

    @classmethod
    def from_bits(cls, bits: str) -> BitString:
        padded = bits + "0" * (-len(bits) % 8)
        return cls(len(bits), bytes(int(padded[i : i + 8], 2) for i in range(0, len(padded), 8)))


def _opt(v: int, none: int) -> int | None:
    return None if v == none else v


@dataclass(frozen=True, slots=True)
class CosemDate:
    """The 5-byte COSEM date (IEC 62056-6-2, "Date and time formats"). ``None`` = not specified
    (0xFFFF / 0xFF). ``month`` may be 0xFD/0xFE (daylight saving end/begin) and ``day`` 0xFD/0xFE
    (second last / last day of the month): kept as they are."""

    year: int | None
    month: int | None
    day: int | None
    weekday: int | None

    @classmethod
    def from_bytes(cls, raw: bytes) -> CosemDate:
        if len(raw) != 5:
            raise MalformedFrame(PROTOCOL, f"a COSEM date is 5 bytes, got {len(raw)}")
        return cls(
            _opt((raw[0] << 8) | raw[1], 0xFFFF), _opt(raw[2], 0xFF), _opt(raw[3], 0xFF), _opt(raw[4], 0xFF)
        )

    def to_bytes(self) -> bytes:
        y = 0xFFFF if self.year is None else self.year
        return y.to_bytes(2, "big") + bytes(
            0xFF if v is None else v for v in (self.month, self.day, self.weekday)
        )


@dataclass(frozen=True, slots=True)
class CosemTime:
    """The 4-byte COSEM time; ``None`` = not specified (0xFF)."""

    hour: int | None
    minute: int | None
    second: int | None
    hundredths: int | None

    @classmethod
    def from_bytes(cls, raw: bytes) -> CosemTime:
        if len(raw) != 4:
            raise MalformedFrame(PROTOCOL, f"a COSEM time is 4 bytes, got {len(raw)}")
        return cls(*(_opt(b, 0xFF) for b in raw))

    def to_bytes(self) -> bytes:
        return bytes(0xFF if v is None else v for v in (self.hour, self.minute, self.second, self.hundredths))


# Clock status bits (IEC 62056-6-2, "Date and time formats", clock_status).
CLOCK_INVALID = 0x01
CLOCK_DOUBTFUL = 0x02
CLOCK_DIFFERENT_BASE = 0x04
CLOCK_INVALID_STATUS = 0x08
CLOCK_DAYLIGHT_SAVING = 0x80


@dataclass(frozen=True, slots=True)
class DateTime:
    """The 12-byte COSEM date-time: date (5), time (4), deviation (int16, minutes), clock status.

    ``deviation`` follows the Blue Book: "minutes of local time to UTC", i.e. UTC = local time +
    deviation; Central European winter time is sent as -60 (0xFFC4). 0x8000 (not specified)
    decodes to ``None``, as do 0xFF/0xFFFF date and time fields and a 0xFF clock status.
    """

    year: int | None
    month: int | None
    day: int | None
    weekday: int | None
    hour: int | None
    minute: int | None
    second: int | None
    hundredths: int | None
    deviation: int | None
    clock_status: int | None

    @classmethod
    def from_bytes(cls, raw: bytes) -> DateTime:
        if len(raw) != 12:
            raise MalformedFrame(PROTOCOL, f"a COSEM date-time is 12 bytes, got {len(raw)}")
        dev = (raw[9] << 8) | raw[10]
        return cls(
            _opt((raw[0] << 8) | raw[1], 0xFFFF),
            _opt(raw[2], 0xFF),
            _opt(raw[3], 0xFF),
            _opt(raw[4], 0xFF),
            _opt(raw[5], 0xFF),
            _opt(raw[6], 0xFF),
            _opt(raw[7], 0xFF),
            _opt(raw[8], 0xFF),
            None if dev == 0x8000 else (dev - 0x10000 if dev & 0x8000 else dev),
            _opt(raw[11], 0xFF),
        )

    def to_bytes(self) -> bytes:
        y = 0xFFFF if self.year is None else self.year
        dev = 0x8000 if self.deviation is None else self.deviation & 0xFFFF
        mid = (self.month, self.day, self.weekday, self.hour, self.minute, self.second, self.hundredths)
        return (
            y.to_bytes(2, "big")
            + bytes(0xFF if v is None else v for v in mid)
            + dev.to_bytes(2, "big")
            + bytes((0xFF if self.clock_status is None else self.clock_status,))
        )

    @classmethod
    def from_datetime(cls, dt: datetime, *, clock_status: int = 0, hundredths: bool = False) -> DateTime:
        """Encode an aware ``datetime`` with its UTC offset as the deviation (sign per the Blue Book)."""
        offset = dt.utcoffset()
        if offset is None:
            raise ValueError("DateTime.from_datetime needs an aware datetime")
        dst = dt.dst()
        status = clock_status | (CLOCK_DAYLIGHT_SAVING if dst else 0)
        return cls(
            dt.year,
            dt.month,
            dt.day,
            dt.isoweekday(),
            dt.hour,
            dt.minute,
            dt.second,
            dt.microsecond // 10000 if hundredths else 0,
            -int(offset.total_seconds() // 60),
            status,
        )

    def to_datetime(self, assume: tzinfo | None = UTC) -> datetime | None:
        """The instant in UTC, or ``None`` when a date or time field is not specified (a
        wildcard in a schedule). Without a deviation, local time is read in ``assume``
        (``None``: return ``None``). Raises :class:`MalformedFrame` on impossible values."""
        fields = (self.year, self.month, self.day, self.hour, self.minute)
        if any(v is None for v in fields):
            return None
        assert self.year is not None and self.month is not None and self.day is not None  # for mypy
        assert self.hour is not None and self.minute is not None
        if self.deviation is not None:
            if not -720 <= self.deviation <= 720:
                raise MalformedFrame(PROTOCOL, f"date-time deviation {self.deviation} outside -720..720")
            tz: tzinfo = timezone(timedelta(minutes=-self.deviation))
        elif assume is None:
            return None
        else:
            tz = assume
        hund = self.hundredths or 0
        try:
            local = datetime(
                self.year,
                self.month,
                self.day,
                self.hour,
                self.minute,
                self.second or 0,
                hund * 10000 if hund < 100 else 0,
                tzinfo=tz,
            )
        except ValueError as err:
            raise MalformedFrame(PROTOCOL, f"date-time out of range: {err}") from None
        return local.astimezone(UTC)


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def decode_length(data: bytes, pos: int) -> tuple[int, int]:
    """An A-XDR length at ``pos``: ``(length, position after it)``."""
    if pos >= len(data):
        raise TruncatedFrame(PROTOCOL, "A-XDR length missing", offset=pos)
    b = data[pos]
    if b < 0x80:
        return b, pos + 1
    n = b & 0x7F
    if n == 0 or n > 4:
        raise MalformedFrame(PROTOCOL, f"A-XDR length prefix {b:#04x} invalid", offset=pos)
    if pos + 1 + n > len(data):
        raise TruncatedFrame(PROTOCOL, "A-XDR length bytes missing", offset=pos)
    return int.from_bytes(data[pos + 1 : pos + 1 + n], "big"), pos + 1 + n


def encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n < 0x100:
        return bytes((0x81, n))
    if n < 0x10000:
        return b"\x82" + n.to_bytes(2, "big")
    return b"\x84" + n.to_bytes(4, "big")


def decode_data(
    data: bytes, pos: int = 0, *, max_depth: int = DEFAULT_MAX_DEPTH, whole: bool = False
) -> tuple[Any, int]:
    """Decode one ``Data`` value at ``pos``: ``(value, position after it)``. With ``whole``, the
    value must end exactly at the end of ``data``. Raises only ``DecodeError`` subclasses."""
    if not isinstance(data, bytes):
        data = bytes(data)
    try:
        value, end = _decode(data, pos, max_depth)
    except RecursionError:  # pragma: no cover - max_depth keeps well below the interpreter limit
        raise MalformedFrame(PROTOCOL, "A-XDR nesting too deep") from None
    if whole and end != len(data):
        raise MalformedFrame(PROTOCOL, f"{len(data) - end} bytes after the A-XDR value", offset=end)
    return value, end


def _decode(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    n = len(data)
    if pos >= n:
        raise TruncatedFrame(PROTOCOL, "A-XDR value missing", offset=pos)
    tag = data[pos]
    pos += 1
    fixed = _FIXED_INT.get(tag)
    if fixed is not None:
        s, size = fixed
        if pos + size > n:
            raise TruncatedFrame(PROTOCOL, f"A-XDR type {tag} needs {size} bytes", offset=pos)
        return s.unpack_from(data, pos)[0], pos + size
    if tag == 9 or tag == 10 or tag == 12:
        length, pos = decode_length(data, pos)
        end = pos + length
        if end > n:
            raise TruncatedFrame(PROTOCOL, f"A-XDR string of {length} bytes runs past the data", offset=pos)
        raw = data[pos:end]
        if tag == 9:
            return raw, end
        if tag == 10:
            return raw.decode("latin-1"), end
        try:
            return raw.decode("utf-8"), end
        except UnicodeDecodeError:
            raise MalformedFrame(PROTOCOL, "utf8-string is not valid UTF-8", offset=pos) from None
    if tag == 2 or tag == 1:
        if depth <= 0:
            raise MalformedFrame(PROTOCOL, "A-XDR nesting deeper than the limit", offset=pos - 1)
        count, pos = decode_length(data, pos)
        if count > n - pos:
            raise TruncatedFrame(
                PROTOCOL, f"A-XDR {count} elements cannot fit in {n - pos} bytes", offset=pos
            )
        items: list[Any] = []
        append = items.append
        fixed_int = _FIXED_INT
        for _ in range(count):
            # The common element types inline (a push is mostly integers and short octet-strings;
            # a call per element was half of a frame's decoding): only when the element is
            # whole; anything else, including every error, goes through _decode.
            if pos < n:
                t = data[pos]
                fixed = fixed_int.get(t)
                if fixed is not None:
                    s, size = fixed
                    if pos + 1 + size <= n:
                        append(s.unpack_from(data, pos + 1)[0])
                        pos += 1 + size
                        continue
                elif t == 9 and pos + 1 < n:
                    end = pos + 2 + data[pos + 1]
                    if data[pos + 1] < 0x80 and end <= n:
                        append(data[pos + 2 : end])
                        pos = end
                        continue
            v, pos = _decode(data, pos, depth - 1)
            append(v)
        return (tuple(items) if tag == 2 else items), pos
    if tag == 0 or tag == 255:
        return None, pos
    if tag == 3:
        if pos >= n:
            raise TruncatedFrame(PROTOCOL, "boolean value missing", offset=pos)
        return data[pos] != 0, pos + 1
    if tag == 25 or tag == 26 or tag == 27:
        size = 12 if tag == 25 else 5 if tag == 26 else 4
        if pos + size > n:
            raise TruncatedFrame(PROTOCOL, f"A-XDR date/time needs {size} bytes", offset=pos)
        raw = data[pos : pos + size]
        cls = DateTime if tag == 25 else CosemDate if tag == 26 else CosemTime
        return cls.from_bytes(raw), pos + size
    if tag == 4:
        bits, pos = decode_length(data, pos)
        nbytes = (bits + 7) // 8
        if pos + nbytes > n:
            raise TruncatedFrame(PROTOCOL, f"bit-string of {bits} bits runs past the data", offset=pos)
        return BitString(bits, data[pos : pos + nbytes]), pos + nbytes
    if tag == 13:
        if pos >= n:
            raise TruncatedFrame(PROTOCOL, "bcd value missing", offset=pos)
        b = data[pos]
        if b >> 4 > 9 or b & 0xF > 9:
            raise MalformedFrame(PROTOCOL, f"bcd byte {b:02X} has a non-decimal digit", offset=pos)
        return (b >> 4) * 10 + (b & 0xF), pos + 1
    if tag == 19:
        if depth <= 0:
            raise MalformedFrame(PROTOCOL, "A-XDR nesting deeper than the limit", offset=pos - 1)
        desc, pos = _type_description(data, pos, depth - 1)
        length, pos = decode_length(data, pos)
        end = pos + length
        if end > n:
            raise TruncatedFrame(PROTOCOL, "compact-array contents run past the data", offset=pos)
        body = data[:end]
        items = []
        while pos < end:
            v, after = _decode_untagged(desc, body, pos, depth - 1)
            if after == pos:
                raise MalformedFrame(PROTOCOL, "compact-array element description takes no bytes", offset=pos)
            items.append(v)
            pos = after
        return items, end
    raise MalformedFrame(PROTOCOL, f"unknown A-XDR data type tag {tag}", offset=pos - 1)


# TypeDescription (IEC 62056-6-2, compact-array): a tag; array adds a long-unsigned element
# count and the element's description; structure an A-XDR count and the members' descriptions.
TypeDesc = int | tuple[int, int, "TypeDesc"] | tuple[int, tuple["TypeDesc", ...]]


def _type_description(data: bytes, pos: int, depth: int) -> tuple[TypeDesc, int]:
    n = len(data)
    if pos >= n:
        raise TruncatedFrame(PROTOCOL, "compact-array type description missing", offset=pos)
    if depth <= 0:
        raise MalformedFrame(PROTOCOL, "compact-array type description nested too deep", offset=pos)
    tag = data[pos]
    pos += 1
    if tag == 1:
        if pos + 2 > n:
            raise TruncatedFrame(PROTOCOL, "compact-array array description truncated", offset=pos)
        count = (data[pos] << 8) | data[pos + 1]
        inner, pos = _type_description(data, pos + 2, depth - 1)
        return (1, count, inner), pos
    if tag == 2:
        count, pos = decode_length(data, pos)
        if count > n - pos:
            raise TruncatedFrame(PROTOCOL, "compact-array structure description truncated", offset=pos)
        members = []
        for _ in range(count):
            d, pos = _type_description(data, pos, depth - 1)
            members.append(d)
        return (2, tuple(members)), pos
    if tag == 19 or (tag not in _FIXED_INT and tag not in (0, 3, 4, 9, 10, 12, 13, 25, 26, 27, 255)):
        raise MalformedFrame(
            PROTOCOL, f"type {tag} not allowed in a compact-array description", offset=pos - 1
        )
    return tag, pos


def _decode_untagged(desc: TypeDesc, data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    if depth <= 0:
        raise MalformedFrame(PROTOCOL, "compact-array contents nested too deep", offset=pos)
    if isinstance(desc, tuple):
        if desc[0] == 1:
            _, count, inner = desc  # type: ignore[misc]
            if count > len(data) - pos and inner != 0:
                raise TruncatedFrame(PROTOCOL, "compact-array array contents truncated", offset=pos)
            items = []
            for _ in range(count):
                v, pos = _decode_untagged(inner, data, pos, depth - 1)
                items.append(v)
            return items, pos
        members = []
        for d in desc[1]:  # type: ignore[union-attr]
            v, pos = _decode_untagged(d, data, pos, depth - 1)
            members.append(v)
        return tuple(members), pos
    if desc == 0 or desc == 255:
        return None, pos
    # A simple type: decode it as if it carried its tag.
    fixed = _FIXED_INT.get(desc)
    if fixed is not None:
        s, size = fixed
        if pos + size > len(data):
            raise TruncatedFrame(PROTOCOL, f"compact-array element needs {size} bytes", offset=pos)
        return s.unpack_from(data, pos)[0], pos + size
    value, end = _decode(bytes((desc,)) + data[pos:], 0, depth)
    return value, pos + end - 1


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def encode_data(tag: int, value: Any = None) -> bytes:
    """Encode one value. Arrays and structures take a sequence of ``(tag, value)`` pairs or
    already-encoded ``bytes``; compact arrays take ``(type description, elements)`` with the
    description as :func:`decode_data` would build it (a tag, ``(1, count, desc)`` or
    ``(2, (desc, ...))``)."""
    fixed = _FIXED_INT.get(tag)
    if fixed is not None:
        return bytes((tag,)) + fixed[0].pack(value)
    if tag in (Tag.ARRAY, Tag.STRUCTURE):
        items = [v if isinstance(v, bytes | bytearray) else encode_data(*v) for v in value]
        return bytes((tag,)) + encode_length(len(items)) + b"".join(items)
    if tag == Tag.OCTET_STRING:
        return b"\x09" + encode_length(len(value)) + bytes(value)
    if tag == Tag.VISIBLE_STRING:
        raw: bytes = value.encode("latin-1")
        return b"\x0a" + encode_length(len(raw)) + raw
    if tag == Tag.UTF8_STRING:
        raw = value.encode("utf-8")
        return b"\x0c" + encode_length(len(raw)) + raw
    if tag in (Tag.NULL_DATA, Tag.DONT_CARE):
        return bytes((tag,))
    if tag == Tag.BOOLEAN:
        return b"\x03\xff" if value else b"\x03\x00"
    if tag == Tag.BIT_STRING:
        bits: BitString = value
        return b"\x04" + encode_length(bits.length) + bits.data
    if tag == Tag.BCD:
        if not 0 <= value <= 99:
            raise ValueError("bcd holds 0..99")
        return bytes((13, (value // 10) << 4 | value % 10))
    if tag in (Tag.DATE_TIME, Tag.DATE, Tag.TIME):
        stamp: DateTime | CosemDate | CosemTime = value
        return bytes((tag,)) + stamp.to_bytes()
    if tag == Tag.COMPACT_ARRAY:
        desc, elements = value
        contents = b"".join(_encode_untagged(desc, e) for e in elements)
        return b"\x13" + _encode_description(desc) + encode_length(len(contents)) + contents
    raise ValueError(f"cannot encode A-XDR type tag {tag}")


def _encode_description(desc: TypeDesc) -> bytes:
    if isinstance(desc, int):
        return bytes((desc,))
    if desc[0] == 1:
        _, count, inner = desc  # type: ignore[misc]
        return b"\x01" + count.to_bytes(2, "big") + _encode_description(inner)
    members: Sequence[TypeDesc] = desc[1]  # type: ignore[assignment]
    return b"\x02" + encode_length(len(members)) + b"".join(_encode_description(d) for d in members)


def _encode_untagged(desc: TypeDesc, value: Any) -> bytes:
    if isinstance(desc, int):
        return encode_data(desc, value)[1:]
    if desc[0] == 1:
        _, count, inner = desc  # type: ignore[misc]
        if len(value) != count:
            raise ValueError("compact-array array element count differs from its description")
        return b"".join(_encode_untagged(inner, v) for v in value)
    members: Sequence[TypeDesc] = desc[1]  # type: ignore[assignment]
    if len(value) != len(members):
        raise ValueError("compact-array structure member count differs from its description")
    return b"".join(_encode_untagged(d, v) for d, v in zip(members, value, strict=True))
