"""Codec for one channel-day of interval readings: the compact block the GDSC store keeps.

A block holds the readings of one channel (hub, meter, OBIS, duration, unit, power of ten)
for one UTC day, as a grid of ``86400 // duration`` slots (48 for half-hourly data). Sans-I/O:
``encode`` turns ``{slot: (value, quality)}`` into bytes and ``decode`` turns bytes back,
raising :class:`BlockError` with the offset and the reason on any corrupt input.

Why a hand-written format: the store's goal is ≤ 4 bytes per half-hourly reading on
PostgreSQL *including* row and index overhead (issue 5). A native ``bigint[]`` costs 8 bytes
per value plus a 24-byte array header, so a row of 48 readings is > 4.5 bytes per reading
before any row overhead; general-purpose compressors (zlib, zstd) add more framing than they
save on ~100-byte inputs. Interval data is highly regular: days are usually complete, the
quality is usually the same for every slot, and consecutive values (consumption per interval,
or a cumulative register) differ little, so zig-zag varints of the deltas take 1–2 bytes.

Layout (all integers are unsigned LEB128 varints unless said otherwise)::

    header      1 byte: format version (high nibble, = 1) | flags (low nibble)
                  FULL  (0x1): every slot present, the bitmap is left out
                  DELTA (0x2): values are zig-zag deltas from the previous present value
                               (else zig-zag absolute values); the encoder keeps the shorter
    bitmap      ceil(slots / 8) bytes, slot i present iff bit (i % 8) of byte i // 8
                (absent when FULL; bits past the last slot must be 0)
    quality     the default quality (IEEE 2030.5 Reading.qualityFlags) of every reading
    exceptions  count k, then k pairs (gap, quality): gap is the rank of the reading among
                the present ones, counted from the previous exception (+1 after the first)
    values      one zig-zag varint per present reading, in slot order

A block must end exactly after its last value; trailing bytes are an error.
"""

from __future__ import annotations

from collections.abc import Mapping

VERSION = 1
FULL = 0x1
DELTA = 0x2
_KNOWN_FLAGS = FULL | DELTA
_MAX_VARINT_BYTES = 10  # 70 bits: any zig-zag delta of two int64 values fits
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class BlockError(ValueError):
    """A block that cannot be decoded (or readings that cannot be encoded)."""


def slots_per_day(duration: int) -> int:
    """Number of slots in a day for an interval duration (seconds) that divides the day."""
    if duration <= 0 or 86400 % duration:
        raise BlockError(f"interval duration {duration} s does not divide a day into whole slots")
    return 86400 // duration


def _unzigzag(z: int) -> int:
    return (z >> 1) if not z & 1 else -((z + 1) >> 1)


def _put(out: bytearray, n: int) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


# Encodings of the small varints that make up nearly every block (two bytes or less).
_SMALL = []
for _z in range(1 << 14):
    _b = bytearray()
    _put(_b, _z)
    _SMALL.append(bytes(_b))
del _z, _b


def _varints(zs: list[int]) -> bytes:
    try:
        return b"".join([_SMALL[z] for z in zs])
    except IndexError:  # a value beyond two bytes: the general path
        out = bytearray()
        for z in zs:
            _put(out, z)
        return bytes(out)


def encode(slots: int, readings: Mapping[int, tuple[int, int]]) -> bytes:
    """Encode ``{slot: (value, quality)}`` for a day of ``slots`` slots."""
    if slots <= 0 or slots > 86400:
        raise BlockError(f"a day has 1..86400 slots, not {slots}")
    order = sorted(readings)
    if order and (order[0] < 0 or order[-1] >= slots):
        bad = order[0] if order[0] < 0 else order[-1]
        raise BlockError(f"slot {bad} outside the day's {slots} slots")
    pairs = [readings[s] for s in order]
    values = [p[0] for p in pairs]
    qualities = [p[1] for p in pairs]
    if values and not (min(values) >= INT64_MIN and max(values) <= INT64_MAX):
        bad = min(values) if min(values) < INT64_MIN else max(values)
        raise BlockError(f"value {bad} does not fit a signed 64-bit integer")
    kinds = set(qualities)
    if kinds and not (min(kinds) >= 0 and max(kinds) <= 0xFFFF):
        raise BlockError(f"quality flags {min(kinds) if min(kinds) < 0 else max(kinds)} outside 0..65535")
    full = len(order) == slots
    out = bytearray()
    out.append((VERSION << 4) | (FULL if full else 0))
    if not full:
        bitmap = bytearray((slots + 7) // 8)
        for s in order:
            bitmap[s >> 3] |= 1 << (s & 7)
        out += bitmap
    default = max(kinds, key=qualities.count) if len(kinds) > 1 else next(iter(kinds), 0)
    _put(out, default)
    exceptions = [(i, q) for i, q in enumerate(qualities) if q != default] if len(kinds) > 1 else []
    _put(out, len(exceptions))
    prev = -1
    for i, q in exceptions:
        _put(out, i - prev - 1)
        _put(out, q)
        prev = i
    absolute = _varints([v + v if v >= 0 else -v - v - 1 for v in values])
    deltas = [b - a for a, b in zip([0, *values], values, strict=False)]
    delta = _varints([d + d if d >= 0 else -d - d - 1 for d in deltas])
    if len(delta) < len(absolute):
        out[0] |= DELTA
        out += delta
    else:
        out += absolute
    return bytes(out)


def decode(data: bytes, slots: int) -> dict[int, tuple[int, int]]:
    """Decode a block of a day of ``slots`` slots into ``{slot: (value, quality)}``."""
    if slots <= 0 or slots > 86400:
        raise BlockError(f"a day has 1..86400 slots, not {slots}")
    if not data:
        raise BlockError("empty block")
    head = data[0]
    if head >> 4 != VERSION:
        raise BlockError(f"block format version {head >> 4} is not {VERSION}")
    if head & 0xF & ~_KNOWN_FLAGS:
        raise BlockError(f"unknown block flags 0x{head & 0xF:x}")
    pos = 1
    n = len(data)
    if head & FULL:
        present = list(range(slots))
    else:
        width = (slots + 7) // 8
        if pos + width > n:
            raise BlockError(f"truncated presence bitmap: needs {width} bytes at offset {pos}")
        bitmap = data[pos : pos + width]
        present = [s for s in range(slots) if bitmap[s >> 3] >> (s & 7) & 1]
        if slots % 8 and bitmap[-1] >> (slots % 8):
            raise BlockError(f"presence bitmap marks slots past the day's {slots}")
        pos += width

    def take() -> int:
        nonlocal pos
        result = shift = 0
        start = pos
        while True:
            if pos >= n:
                raise BlockError(f"truncated varint at offset {start}")
            if pos - start >= _MAX_VARINT_BYTES:
                raise BlockError(f"varint longer than {_MAX_VARINT_BYTES} bytes at offset {start}")
            b = data[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    default = take()
    if default > 0xFFFF:
        raise BlockError(f"quality flags {default} outside 0..65535")
    count = len(present)
    qualities = [default] * count
    k = take()
    if k > count:
        raise BlockError(f"{k} quality exceptions for {count} readings")
    rank = -1
    for _ in range(k):
        rank += take() + 1
        if rank >= count:
            raise BlockError(f"quality exception for reading {rank} of {count}")
        q = take()
        if q > 0xFFFF:
            raise BlockError(f"quality flags {q} outside 0..65535")
        qualities[rank] = q
    out: dict[int, tuple[int, int]] = {}
    last = 0
    delta = bool(head & DELTA)
    for i, s in enumerate(present):
        v = _unzigzag(take())
        if delta:
            v += last
            last = v
        if not INT64_MIN <= v <= INT64_MAX:
            raise BlockError(f"value of slot {s} does not fit a signed 64-bit integer")
        out[s] = (v, qualities[i])
    if pos != n:
        raise BlockError(f"{n - pos} trailing bytes after the last value at offset {pos}")
    return out


__all__ = ["DELTA", "FULL", "VERSION", "BlockError", "decode", "encode", "slots_per_day"]
