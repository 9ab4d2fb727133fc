"""Wireless M-Bus (EN 13757-4 link layer, OMS Vol. 2 / EN 13757-7 security): codec.

Link layer (EN 13757-4, "Data link layer", frame formats A and B)::

    L C M M A A A A A A | CI ...

``L`` counts the bytes after itself. Format A splits the frame into a first block of 10
bytes (L..A) and then blocks of 16 bytes (the last one shorter), each followed by a CRC;
``L`` excludes the CRCs. Format B has one CRC over the first up to 126 bytes and a second
one over the rest; ``L`` includes the CRCs. The CRC is CRC-16/EN-13757: polynomial 0x3D65,
initial value 0, not reflected, final XOR 0xFFFF (check value 0xC2B7 over ``"123456789"``).
Many receivers strip the CRCs before delivery: ``has_crc=False`` takes such frames, whose
``L`` then counts the bytes after itself as delivered.

Above the link layer (CI fields, EN 13757-4 / EN 13757-7 / OMS Vol. 2):

* 0x8C / 0x8D / 0x8E / 0x8F: extended link layer I-IV (communication control, access number;
  II and IV also the session number SN and the payload CRC). SN bits 29-31 = 1: the payload
  (CRC included) is AES-128-CTR encrypted with the initial counter block M || A || CC || SN ||
  0000 || 00 (:func:`ell_iv`), as Kamstrup's Multical 21 / flowIQ / OMNIPOWER do; the payload
  CRC (CRC-16/EN-13757 over the rest, LSB first) verifying after decryption is the key check;
* 0x90: authentication and fragmentation layer (AFL): fragment control, message control,
  key information, message counter, MAC, message length. Fragmented messages are refused;
* 0x7A short / 0x72 long transport header, 0x78 none; the configuration word gives the
  security mode and the number of encrypted 16-byte blocks;
* 0x79 compact frame (EN 13757-3): a format signature (CRC-16/EN-13757 of the record headers of
  the full frame), the full frame's CRC and the values alone. The headers come from a full frame
  (CI 0x78) of the same signature seen earlier (``formats``) or from the layout table
  (:mod:`smarthub.meters.wmbus_layouts`); the rebuilt full frame must match its CRC;
* 0xA0-0xB7 manufacturer specific: decoded when the layout table has the manufacturer's layout
  (Techem FHKV heat cost allocators, Apator), else :class:`UnknownLayout` with the raw bytes.
  Manufacturer data after DIF 0x0F and manufacturer VIFs (Kamstrup info codes) likewise.

Security (OMS Vol. 2 "Security", EN 13757-7 "Transport and security services"):

* mode 5: AES-128-CBC, IV = M-field (2) || A-field (6) || access number repeated 8 times,
  persistent key per meter;
* mode 7: AES-128-CBC with a zero IV and an ephemeral key derived from the meter's master key
  with AES-CMAC (the OMS key derivation function: ``Kenc = CMAC(K, 0x00 || message counter ||
  meter id || 0x07 * 7)``, ``Kmac`` likewise with 0x01); the AFL MAC (AES-CMAC truncated to
  the AFL length) over AFL.MCL || AFL.MCR || [AFL.ML] || the transport layer is verified;
* either way the decrypted data must begin with the filler ``2F 2F``, else
  :class:`DecryptionError`: a wrong key never yields readings;
* a frame marked encrypted but delivered in clear (receivers holding the keys, published
  captures) is taken only when no key is configured for its meter, flagged ``receiver_decrypted``.

The application data is then decoded by :mod:`smarthub.meters.mbus` (EN 13757-3 records).

Why our own codec: no maintained Python wM-Bus decoder exists (``pywmbus`` was last released
in 2017); ``pyMeterBus`` decodes only mode 5 short-header frames without link-layer CRCs and
reports failures as generic exceptions. Ours is sans-I/O (one frame as radio delivers it in,
typed values out), raises only :class:`~smarthub.meters.errors.DecodeError` subclasses (it is
fuzzed), computes CRCs from a table, and keeps register values exact (``Decimal``).
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from smarthub.meters import mbus
from smarthub.meters.errors import (
    ChecksumError,
    DecodeError,
    KeyMissing,
    MalformedFrame,
    TruncatedFrame,
    UnknownLayout,
    WrongKey,
)
from smarthub.meters.wmbus_layouts import WMBusLayouts, compact_lengths, format_signature
from smarthub.model.datapoint import DataPoint

__all__ = [
    "Afl",
    "DecryptionError",
    "Ell",
    "NoKeyError",
    "WMBusFrame",
    "WMBusLayouts",
    "compact_payload",
    "crc16",
    "data_points",
    "decode_frame",
    "derive_key",
    "detect_crc",
    "ell_iv",
    "encode_frame",
]

PROTOCOL = "wmbus"
C_SND_NR = 0x44


class DecryptionError(WrongKey):
    """No key for the meter, or the key does not decrypt the frame (no ``2F 2F``, bad MAC)."""

    def __init__(self, message: str, *, meter: str | None = None, offset: int | None = None) -> None:
        self.meter = meter
        super().__init__(PROTOCOL, message, offset=offset)


class NoKeyError(DecryptionError, KeyMissing):
    """The frame is encrypted and no key is configured for its meter."""


# --------------------------------------------------------------------------------------------
# CRC-16/EN-13757
# --------------------------------------------------------------------------------------------


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 8
        for _ in range(8):
            r = (r << 1) ^ 0x3D65 if r & 0x8000 else r << 1
        table.append(r & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()
_CRC_PAIRS: list[int] = []


def _crc_pairs() -> list[int]:
    """Two bytes per step: for a 16-bit MSB-first CRC the register after bytes ``b0 b1`` depends
    on ``register ^ (b0 << 8 | b1)`` alone, so one 65,536-entry table replaces two lookups
    (built on first use, ~20 ms): format B's blocks of up to 126 bytes take half the steps."""
    if not _CRC_PAIRS:
        t = _CRC_TABLE
        _CRC_PAIRS.extend(((t[x >> 8] & 0xFF) << 8) ^ t[(x & 0xFF) ^ (t[x >> 8] >> 8)] for x in range(65536))
    return _CRC_PAIRS


def crc16(data: bytes) -> int:
    """CRC-16/EN-13757 of ``data`` (``crc16(b"123456789") == 0xC2B7``)."""
    crc = 0
    n = len(data)
    if n >= 48:  # below, building the word array costs more than it saves
        pairs = _crc_pairs()
        words = array("H")
        words.frombytes(bytes(data[: n & ~1]))
        if sys.byteorder == "little":
            words.byteswap()  # the MSB-first CRC takes the first byte as the high half
        for w in words:
            crc = pairs[crc ^ w]
        if n & 1:
            crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[(crc >> 8) ^ data[-1]]
        return crc ^ 0xFFFF
    t = _CRC_TABLE
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ t[(crc >> 8) ^ b]
    return crc ^ 0xFFFF


def _check(data: bytes, start: int, end: int) -> None:
    if end + 2 > len(data):
        raise TruncatedFrame(PROTOCOL, "block CRC missing", offset=len(data))
    got = data[end] << 8 | data[end + 1]
    want = crc16(data[start:end])
    if got != want:
        raise ChecksumError(PROTOCOL, f"block CRC 0x{got:04X}, computed 0x{want:04X}", offset=end)


def _strip_a(data: bytes) -> bytes:
    if len(data) < 12:
        raise TruncatedFrame(PROTOCOL, "format A first block needs 10 bytes and a CRC", offset=len(data))
    length = data[0]
    if length < 10:
        raise MalformedFrame(PROTOCOL, f"L = {length}: C, M, A and CI need at least 10", offset=0)
    rest = length - 9
    blocks = (rest + 15) // 16
    total = 12 + rest + 2 * blocks
    if len(data) < total:
        raise TruncatedFrame(
            PROTOCOL, f"format A frame of L = {length} needs {total} bytes", offset=len(data)
        )
    if len(data) > total:
        raise MalformedFrame(PROTOCOL, "trailing bytes after the frame", offset=total)
    _check(data, 0, 10)
    out = bytearray(data[:10])
    pos = 12
    while rest > 0:
        k = min(16, rest)
        _check(data, pos, pos + k)
        out += data[pos : pos + k]
        pos += k + 2
        rest -= k
    return bytes(out)


def _strip_b(data: bytes) -> bytes:
    if not data:
        raise TruncatedFrame(PROTOCOL, "empty frame", offset=0)
    total = data[0] + 1
    if len(data) < total:
        raise TruncatedFrame(
            PROTOCOL, f"format B frame of L = {data[0]} needs {total} bytes", offset=len(data)
        )
    if len(data) > total:
        raise MalformedFrame(PROTOCOL, "trailing bytes after the frame", offset=total)
    if total < 13:
        raise MalformedFrame(PROTOCOL, f"L = {data[0]} too small for format B", offset=0)
    if total <= 128:
        _check(data, 0, total - 2)
        body = bytearray(data[: total - 2])
    else:
        if total < 131:
            raise MalformedFrame(PROTOCOL, f"L = {data[0]} leaves an empty third block", offset=0)
        _check(data, 0, 126)
        _check(data, 128, total - 2)
        body = bytearray(data[:126] + data[128 : total - 2])
    body[0] = len(body) - 1  # L as if the CRCs had never been there
    return bytes(body)


def _add_crcs(body: bytes, frame_format: str) -> bytes:
    """``body`` (L..end, L counting the bytes after it) to a frame with CRCs."""
    if frame_format == "A":
        out = bytearray(body[:10])
        out += crc16(body[:10]).to_bytes(2, "big")
        for i in range(10, len(body), 16):
            block = body[i : i + 16]
            out += block + crc16(block).to_bytes(2, "big")
        return bytes(out)
    if frame_format == "B":
        n = len(body)
        if n <= 126:
            data = bytearray(body)
            data[0] = n - 1 + 2
            return bytes(data) + crc16(bytes(data)).to_bytes(2, "big")
        data = bytearray(body)
        data[0] = n - 1 + 4
        if data[0] > 255:
            raise ValueError("frame too long for format B")
        first, second = bytes(data[:126]), bytes(data[126:])
        return first + crc16(first).to_bytes(2, "big") + second + crc16(second).to_bytes(2, "big")
    raise ValueError(f"frame format is 'A' or 'B', got {frame_format!r}")


_LAYOUTS = WMBusLayouts.default()  # the shipped table (wmbus_layouts.json)


# --------------------------------------------------------------------------------------------
# Frame model
# --------------------------------------------------------------------------------------------

# CI of the extended link layers (EN 13757-4 "Extended Link Layer") -> bytes after the CI.
_ELL_LENGTH = {0x8C: 2, 0x8D: 8, 0x8E: 10, 0x8F: 16}
ELL_AES_CTR = 1  # SN bits 29-31 (ENC): 0 none, 1 AES-128-CTR, the rest reserved
CI_NO_HEADER = 0x78  # EN 13757-3 application data without transport header ("full frame")
CI_COMPACT = 0x79  # EN 13757-3 compact frame without header: format signature, data CRC, values
MAX_LEARNT_FORMATS = 1024  # compact formats a caller's store learns at most (radio hears neighbours)


@dataclass(frozen=True, slots=True)
class Ell:
    """Extended link layer (CI 0x8C ELL I, 0x8D ELL II, 0x8E ELL III, 0x8F ELL IV).

    ``session_no`` and ``payload_crc`` exist in ELL II/IV; ``payload_crc`` is the decrypted one
    when the ELL was encrypted. ``encryption`` is the SN's ENC field (1 = AES-CTR)."""

    ci: int
    cc: int
    access_no: int
    session_no: int | None = None
    payload_crc: int | None = None

    @property
    def encryption(self) -> int:
        return 0 if self.session_no is None else self.session_no >> 29 & 0x07


@dataclass(frozen=True, slots=True)
class Afl:
    """Authentication and fragmentation layer (CI 0x90)."""

    fcl: int
    mcl: int | None
    key_info: int | None
    message_counter: int | None
    mac: bytes | None
    message_length: int | None
    raw_mcr: bytes = b""

    @property
    def more_fragments(self) -> bool:
        return bool(self.fcl & 0x4000)


@dataclass(frozen=True, slots=True)
class WMBusFrame:
    c: int
    manufacturer: str
    ident: int | None
    ident_raw: bytes
    version: int
    device_type: int
    ell: Ell | None
    afl: Afl | None
    header: mbus.Header | None
    security_mode: int
    application: bytes  # decrypted application data (records; a compact frame's rebuilt records)
    telegram: mbus.Telegram
    ci: int = CI_NO_HEADER  # the CI that introduced the application data
    format_signature: int | None = None  # a compact frame's (or a learnt full frame's) signature
    layout: str | None = None  # the manufacturer layout that named the values, if any
    receiver_decrypted: bool = False  # marked encrypted, delivered in clear (no key was given)

    @property
    def meter(self) -> str:
        """The meter the data belongs to: the long transport header's identity if present."""
        return self.telegram.meter or mbus.meter_id(self.manufacturer, self.ident, self.ident_raw)


# --------------------------------------------------------------------------------------------
# Security
# --------------------------------------------------------------------------------------------


def _cmac(key: bytes, data: bytes) -> bytes:
    c = cmac.CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def derive_key(master_key: bytes, constant: int, message_counter: int, ident_raw: bytes) -> bytes:
    """OMS key derivation (EN 13757-7 / OMS Vol. 2 "KDF"): AES-CMAC over
    ``constant || message counter (4, LSB first) || meter id (4, as sent) || 0x07 * 7``.
    ``constant``: 0x00 Kenc and 0x01 Kmac from the meter, 0x10 / 0x11 towards it."""
    return _cmac(
        master_key, bytes((constant,)) + message_counter.to_bytes(4, "little") + ident_raw + b"\x07" * 7
    )


def _aes_cbc(key: bytes, iv: bytes, data: bytes, encrypt: bool) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    op = cipher.encryptor() if encrypt else cipher.decryptor()
    return op.update(data) + op.finalize()


def _aes_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    op = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()  # CTR: the same both ways
    return op.update(data) + op.finalize()


def ell_iv(m: bytes, a: bytes, cc: int, session_no: int) -> bytes:
    """Initial counter block of ELL AES-CTR (EN 13757-4 "ELL encryption"): M-field (2) ||
    A-field (6) || CC || SN (4, as sent) || frame number (2) = 0 || block counter = 0."""
    return bytes(m) + bytes(a) + bytes((cc & 0xFF,)) + session_no.to_bytes(4, "little") + b"\x00\x00\x00"


def _maybe_key(keys: Mapping[str, bytes | str] | None, meter: str) -> bytes | None:
    key = None if keys is None else keys.get(meter)
    if key is None:
        return None
    if isinstance(key, str):
        try:
            key = bytes.fromhex(key)
        except ValueError:
            raise DecryptionError(f"key for meter {meter} is not hexadecimal", meter=meter) from None
    if len(key) != 16:
        raise DecryptionError(f"key for meter {meter} is {len(key)} bytes, AES-128 needs 16", meter=meter)
    return bytes(key)


def _key_for(keys: Mapping[str, bytes | str] | None, meter: str) -> bytes:
    key = _maybe_key(keys, meter)
    if key is None:
        raise NoKeyError(f"frame is encrypted and there is no key for meter {meter}", meter=meter)
    return key


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def _need(body: bytes, pos: int, n: int, what: str) -> None:
    if pos + n > len(body):
        raise TruncatedFrame(PROTOCOL, f"{what} needs {n} bytes, {max(0, len(body) - pos)} left", offset=pos)


def _parse_afl(body: bytes, pos: int) -> tuple[Afl, int]:
    _need(body, pos, 2, "AFL header")
    afl_len = body[pos + 1]
    start = pos + 2
    end = start + afl_len
    _need(body, start, afl_len, "AFL")
    if afl_len < 2:
        raise MalformedFrame(PROTOCOL, "AFL shorter than its fragment control field", offset=pos + 1)
    fcl = body[start] | body[start + 1] << 8
    p = start + 2
    mcl = ki = mcr = ml = None
    raw_mcr = b""
    mac = None
    if fcl & 0x2000:
        _need(body[:end], p, 1, "AFL.MCL")
        mcl = body[p]
        p += 1
    if fcl & 0x0200:
        _need(body[:end], p, 2, "AFL.KI")
        ki = body[p] | body[p + 1] << 8
        p += 2
    if fcl & 0x0800:
        _need(body[:end], p, 4, "AFL.MCR")
        raw_mcr = bytes(body[p : p + 4])
        mcr = int.from_bytes(raw_mcr, "little")
        p += 4
    ml_len = 2 if fcl & 0x1000 else 0
    if fcl & 0x0400:
        mac_len = end - p - ml_len
        if mac_len <= 0:
            raise MalformedFrame(PROTOCOL, "AFL.MAC announced but no room for it", offset=p)
        mac = bytes(body[p : p + mac_len])
        p += mac_len
    if ml_len:
        _need(body[:end], p, 2, "AFL.ML")
        ml = body[p] | body[p + 1] << 8
        p += 2
    if p != end:
        raise MalformedFrame(PROTOCOL, f"AFL.L = {afl_len} does not match its fields", offset=pos + 1)
    return Afl(fcl, mcl, ki, mcr, mac, ml, raw_mcr), end


def detect_crc(data: bytes) -> tuple[bool, str]:
    """``(has_crc, frame_format)`` of a frame, from L and the length delivered.

    A frame of ``L + 1`` bytes is either stripped of its CRCs (as receiver sticks and SDR
    decoders deliver it, and as the OMS specification prints its examples) or format B, whose L
    includes its CRCs: it is format B when the CRC in its last two bytes (and, past 128 bytes,
    at 126) verifies, else stripped. A frame of exactly the format-A length for its L (a CRC
    after the first 10 bytes and after every 16 after that) is format A with CRCs.
    """
    if not data:
        raise TruncatedFrame(PROTOCOL, "empty frame", offset=0)
    n, length = len(data), data[0]
    if n == length + 1:
        if n >= 13:
            try:
                _strip_b(data)
                return True, "B"
            except DecodeError:
                pass
        return False, "A"
    if length >= 10:
        rest = length - 9
        total_a = 12 + rest + 2 * ((rest + 15) // 16)
        if n == total_a:
            return True, "A"
        if length + 1 < n < total_a:
            raise TruncatedFrame(
                PROTOCOL,
                f"{n} bytes: a format A frame with CRCs cut short (L = {length} needs {total_a}), or "
                f"the {length + 1} bytes L announces without CRCs and {n - length - 1} bytes after it "
                "(a receiver's RSSI/LQI appended?)",
                offset=n,
            )
    if n < length + 1:
        raise TruncatedFrame(PROTOCOL, f"L = {length} needs {length + 1} bytes, {n} present", offset=n)
    raise MalformedFrame(
        PROTOCOL, f"{n} bytes fit neither L + 1 = {length + 1} (no CRCs, format B) nor format A with CRCs"
    )


def _link_body(data: bytes, has_crc: bool | None, frame_format: str | None) -> bytes:
    """L..end with the link-layer CRCs removed and L counting the bytes after itself."""
    if has_crc is None:
        if frame_format is None:
            has_crc, frame_format = detect_crc(data)
        else:
            has_crc = True
    frame_format = frame_format or "A"
    if has_crc:
        if frame_format == "A":
            return _strip_a(data)
        if frame_format == "B":
            return _strip_b(data)
        raise ValueError(f"frame format is 'A' or 'B', got {frame_format!r}")
    if not data:
        raise TruncatedFrame(PROTOCOL, "empty frame", offset=0)
    if len(data) < data[0] + 1:
        raise TruncatedFrame(PROTOCOL, f"L = {data[0]} needs {data[0] + 1} bytes", offset=len(data))
    if len(data) > data[0] + 1:
        raise MalformedFrame(PROTOCOL, "trailing bytes after the frame", offset=data[0] + 1)
    return data


def _parse_ell(
    body: bytes, pos: int, keys: Mapping[str, bytes | str] | None, meter: str
) -> tuple[Ell, bytes, int, bool]:
    """The ELL at ``pos``; returns it, the body with an encrypted payload decrypted, the position
    of the next CI, and whether the payload came in clear although marked encrypted."""
    ci = body[pos]
    n = _ELL_LENGTH[ci]
    _need(body, pos + 1, n, f"ELL (CI 0x{ci:02X})")
    cc, acc = body[pos + 1], body[pos + 2]
    if ci in (0x8C, 0x8E):
        return Ell(ci, cc, acc), body, pos + 1 + n, False
    sn_at = pos + 3 if ci == 0x8D else pos + 11
    sn = int.from_bytes(body[sn_at : sn_at + 4], "little")
    crc_at = sn_at + 4
    enc = sn >> 29 & 0x07
    clear = False
    if enc == ELL_AES_CTR:
        if ci == 0x8F:
            raise MalformedFrame(
                PROTOCOL, "ELL IV (with destination address) AES-CTR is not supported", offset=pos
            )
        payload = body[crc_at:]
        as_sent_ok = _payload_crc_ok(payload)
        key = _maybe_key(keys, meter)
        if key is not None:
            plain = _aes_ctr(key, ell_iv(body[2:4], body[4:10], cc, sn), payload)
            if not _payload_crc_ok(plain):
                raise DecryptionError(
                    f"ELL payload CRC does not verify after AES-CTR decryption: wrong key for {meter}?",
                    meter=meter,
                    offset=crc_at,
                )
            body = body[:crc_at] + plain
        elif as_sent_ok:
            clear = True  # a receiver (or a published capture) already decrypted it
        else:
            raise NoKeyError(
                f"frame is encrypted (ELL AES-CTR) and there is no key for meter {meter}", meter=meter
            )
    elif enc:
        raise MalformedFrame(PROTOCOL, f"ELL encryption {enc} is reserved", offset=sn_at)
    payload_crc = body[crc_at] | body[crc_at + 1] << 8
    return Ell(ci, cc, acc, sn, payload_crc), body, crc_at + 2, clear


def _payload_crc_ok(payload: bytes) -> bool:
    """ELL PayloadCRC (2 bytes, LSB first) over the rest of the frame."""
    return len(payload) >= 3 and crc16(payload[2:]) == (payload[0] | payload[1] << 8)


def _compact_records(
    body: bytes, pos: int, formats: Mapping[int, bytes] | None, lay: WMBusLayouts
) -> tuple[int, bytes]:
    """A compact frame (CI 0x79) at ``pos``: its format signature and the full frame's records,
    rebuilt from the headers of the format and the values, checked with the full-frame CRC."""
    _need(body, pos + 1, 4, "compact frame header")
    sig = body[pos + 1] | body[pos + 2] << 8
    full_crc = body[pos + 3] | body[pos + 4] << 8
    values = body[pos + 5 :]
    headers = (formats.get(sig) if formats is not None else None) or lay.formats.get(sig)
    if headers is None:
        raise UnknownLayout(
            PROTOCOL,
            f"compact frame of format signature 0x{sig:04X}: no full frame of that format has been "
            "seen (decode one of the meter's full frames first, or add the format to the layout table)",
            values=[values.hex().upper()],
        )
    try:
        parts = compact_lengths(headers)
    except ValueError as err:
        raise UnknownLayout(
            PROTOCOL, f"compact format 0x{sig:04X}: {err}", values=[values.hex().upper()]
        ) from None
    full = bytearray()
    i = 0
    for header, length in parts:
        if i + length > len(values):
            raise TruncatedFrame(
                PROTOCOL,
                f"compact frame ends inside the value of {header.hex().upper()}",
                offset=pos + 5 + len(values),
            )
        full += header + values[i : i + length]
        i += length
    if i != len(values):
        raise MalformedFrame(
            PROTOCOL,
            f"compact frame carries {len(values) - i} bytes more than its format",
            offset=pos + 5 + i,
        )
    if crc16(bytes(full)) != full_crc:
        raise ChecksumError(
            PROTOCOL,
            f"compact frame's full-frame CRC 0x{full_crc:04X} does not match the rebuilt frame "
            f"(0x{crc16(bytes(full)):04X}): corrupt, or another format with the same signature",
            offset=pos + 3,
        )
    return sig, bytes(full)


def _learn_format(
    records: Sequence[mbus.Record], app: bytes, formats: MutableMapping[int, bytes]
) -> int | None:
    """Remember the record headers of a full frame so its compact frames can be decoded."""
    headers = bytearray()
    size = 0
    for r in records:
        if r.vif & 0x7F == 0x7C or r.coding not in _FIXED:
            return None
        h = bytes((r.dif, *r.dife, r.vif, *r.vife))
        headers += h
        size += len(h) + _FIXED[r.coding]
    if not records or size != len(app):  # fillers or manufacturer data: not a compact-able frame
        return None
    sig = format_signature(bytes(headers))
    if sig not in formats and len(formats) < MAX_LEARNT_FORMATS:
        formats[sig] = bytes(headers)
    return sig


_FIXED = {
    "none": 0,
    "int8": 1,
    "int16": 2,
    "int24": 3,
    "int32": 4,
    "real32": 4,
    "int48": 6,
    "int64": 8,
    "bcd2": 1,
    "bcd4": 2,
    "bcd6": 3,
    "bcd8": 4,
    "bcd12": 6,
}


def _name_manufacturer_vifs(
    records: tuple[mbus.Record, ...], manufacturer: str, lay: WMBusLayouts
) -> tuple[tuple[mbus.Record, ...], frozenset[str]]:
    """Records with a manufacturer-specific VIF the layout table knows get its quantity; the bits
    it names that are set become flags of the telegram (a leak alarm marks every value)."""
    out = []
    flags: set[str] = set()
    for r in records:
        if r.vif & 0x7F == 0x7F and r.vife:
            known = lay.vif(manufacturer, r.vife)
            if known is not None:
                flags |= known.flags(r.raw)
                r = r._replace(quantity=known.quantity)
        out.append(r)
    return tuple(out), frozenset(flags)


def decode_frame(
    data: bytes,
    keys: Mapping[str, bytes | str] | None = None,
    *,
    has_crc: bool | None = None,
    frame_format: str | None = None,
    formats: MutableMapping[int, bytes] | None = None,
    layouts: WMBusLayouts | None = None,
) -> WMBusFrame:
    """Decode one wM-Bus frame (as one radio packet), decrypting with ``keys[meter id]``.

    ``has_crc=None`` with no ``frame_format`` (the default) detects from L and the length
    whether the link-layer CRCs are present, and in which frame format (:func:`detect_crc`); a
    ``frame_format`` given alone means the CRCs are there.

    ``keys`` maps the meter id as the data points name it (``"KAM12345678"``) to its AES-128 key
    (bytes or hex). Raises :class:`DecryptionError` when the key is wrong, :class:`NoKeyError`
    when it is missing. A frame marked encrypted (ELL AES-CTR, mode 5 or 7) whose payload is
    already clear — its ELL payload CRC verifies as sent, or it starts with ``2F 2F`` — is taken
    *only when no key is given for its meter* (flag ``receiver_decrypted``): receivers that hold
    the keys, and published captures, deliver frames that way; with a key the frame must decrypt.

    ``formats``: a store of compact-frame formats (signature -> record headers) that full frames
    (CI 0x78) are learnt into and compact frames (CI 0x79) are read from, kept by the caller per
    receiver; the layout table's known formats are always consulted. ``layouts``: the
    manufacturer table (default :meth:`WMBusLayouts.default`).
    """
    data = bytes(data)
    body = _link_body(data, has_crc, frame_format)
    if len(body) < 11:
        raise TruncatedFrame(PROTOCOL, "frame ends before its CI field", offset=len(body))
    lay = layouts if layouts is not None else _LAYOUTS
    c = body[1]
    m = body[2] | body[3] << 8
    manufacturer = mbus.decode_manufacturer(m)
    ident_raw = bytes(body[4:8])
    ident = mbus._bcd_id(ident_raw)
    version, device_type = body[8], body[9]
    link_meter = mbus.meter_id(manufacturer, ident, ident_raw)
    pos = 10
    ell = afl = None
    clear = False
    ci = body[pos]
    if ci in _ELL_LENGTH:
        ell, body, pos, clear = _parse_ell(body, pos, keys, link_meter)
        _need(body, pos, 1, "CI after ELL")
        ci = body[pos]
    if ci == 0x90:
        afl, pos = _parse_afl(body, pos)
        if afl.more_fragments or afl.fcl & 0xFF > 1:
            raise MalformedFrame(
                PROTOCOL, "fragmented messages (AFL.MF / fragment id) are not supported", offset=pos
            )
        _need(body, pos, 1, "CI after AFL")
        ci = body[pos]
    if 0xA0 <= ci <= 0xB7:
        return _manufacturer_frame(
            body,
            pos,
            ci,
            c,
            manufacturer,
            ident,
            ident_raw,
            version,
            device_type,
            ell,
            afl,
            clear,
            link_meter,
            lay,
        )
    tpl_start = pos
    header: mbus.Header | None
    signature: int | None = None
    if ci == 0x7A:
        _need(body, pos + 1, 4, "short transport header")
        header = mbus.Header(
            ci=ci,
            access_no=body[pos + 1],
            status=body[pos + 2],
            signature=body[pos + 3] | body[pos + 4] << 8,
        )
        pos += 5
        iv_m, iv_a = body[2:4], body[4:10]
    elif ci == 0x72:
        _need(body, pos + 1, 12, "long transport header")
        header = mbus._long_header(ci, body[pos + 1 : pos + 13], big_endian=False)
        iv_m, iv_a = body[pos + 5 : pos + 7], body[pos + 1 : pos + 5] + body[pos + 7 : pos + 9]
        pos += 13
    elif ci == CI_NO_HEADER:
        header = None
        pos += 1
        iv_m = iv_a = b""
    elif ci == CI_COMPACT:
        header = None
        signature, rebuilt = _compact_records(body, pos, formats, lay)
        body = body[: pos + 1] + rebuilt
        pos += 1
        iv_m = iv_a = b""
    else:
        raise MalformedFrame(PROTOCOL, f"unsupported CI 0x{ci:02X}", offset=pos)
    mode = 0
    if header is not None:
        mode = header.security_mode
        if mode == 7:
            _need(body, pos, 1, "configuration field extension")
            header = _with_cfe(header, body[pos])
            pos += 1
    meter = header.meter_id if header is not None and header.meter_id else link_meter
    meter_ident_raw = header.ident_raw if header is not None and header.ident_raw else ident_raw
    payload = body[pos:]
    if mode == 0:
        app = payload
    elif mode in (5, 7):
        assert header is not None
        nblocks = header.encrypted_blocks
        enc_len = 16 * nblocks
        key = _maybe_key(keys, meter)
        if key is None and payload[:2] == b"\x2f\x2f":
            app, clear = payload, True  # receiver-decrypted: nothing to decrypt, no MAC to check
        else:
            if enc_len == 0:
                raise DecryptionError(f"security mode {mode} with no encrypted blocks", meter=meter)
            if len(payload) < enc_len:
                raise TruncatedFrame(
                    PROTOCOL,
                    f"{nblocks} encrypted blocks need {enc_len} bytes, {len(payload)} left",
                    offset=pos,
                )
            if key is None:
                raise NoKeyError(f"frame is encrypted and there is no key for meter {meter}", meter=meter)
            if mode == 5:
                iv = bytes(iv_m) + bytes(iv_a) + bytes((header.access_no,)) * 8
                plain = _aes_cbc(key, iv, payload[:enc_len], encrypt=False)
            else:
                if afl is None or afl.message_counter is None:
                    raise DecryptionError("security mode 7 needs the AFL message counter", meter=meter)
                kenc = derive_key(key, 0x00, afl.message_counter, meter_ident_raw)
                if afl.mac is not None:
                    kmac = derive_key(key, 0x01, afl.message_counter, meter_ident_raw)
                    mac_input = (
                        (bytes((afl.mcl,)) if afl.mcl is not None else b"")
                        + afl.raw_mcr
                        + (
                            afl.message_length.to_bytes(2, "little")
                            if afl.message_length is not None
                            else b""
                        )
                        + body[tpl_start:]
                    )
                    if _cmac(kmac, mac_input)[: len(afl.mac)] != afl.mac:
                        raise DecryptionError(
                            "AFL MAC does not verify: wrong key or altered frame", meter=meter
                        )
                plain = _aes_cbc(kenc, bytes(16), payload[:enc_len], encrypt=False)
            if plain[:2] != b"\x2f\x2f":
                raise DecryptionError(
                    f"decrypted data does not start with 2F 2F: wrong key for {meter}?",
                    meter=meter,
                    offset=pos,
                )
            app = plain + payload[enc_len:]
    else:
        raise DecryptionError(f"security mode {mode} is not supported", meter=meter)
    encrypted_tpl = mode != 0 and not clear
    medium = header.device_type if header is not None and header.device_type is not None else device_type
    version_of = header.version if header is not None and header.version is not None else version
    layout = None
    if header is not None and lay.has_layouts(manufacturer):
        layout = lay.layout(manufacturer, ci, medium, version_of)
    layout_name = None
    if layout is not None:  # the application data is the manufacturer's, not EN 13757-3 records
        fill = len(app) - len(app.lstrip(b"\x2f"))
        records = layout.records(app[fill:], base=fill if encrypted_tpl else pos + fill)
        more, mfr_data, vif_flags = False, bytes(app[fill:]), frozenset[str]()
        layout_name = layout.name
        if layout.medium is not None:
            medium = layout.medium
    else:
        base = 0 if encrypted_tpl or ci == CI_COMPACT else pos
        records, more, mfr_data = mbus.decode_records(app, base=base)
        vif_flags = frozenset()
        if lay.has_vifs(manufacturer):
            records, vif_flags = _name_manufacturer_vifs(records, manufacturer, lay)
    if ci == CI_NO_HEADER and formats is not None and not more and not mfr_data:
        signature = _learn_format(records, app, formats)
    flags = mbus._status_flags(header.status) if header is not None else frozenset()
    if vif_flags:
        flags |= vif_flags
    if clear:
        flags |= {"receiver_decrypted"}
    telegram = mbus.Telegram(
        header=header,
        records=records,
        more_follows=more,
        manufacturer_data=mfr_data,
        medium=medium,
        meter=meter,
        flags=flags,
    )
    return WMBusFrame(
        c=c,
        manufacturer=manufacturer,
        ident=ident,
        ident_raw=ident_raw,
        version=version,
        device_type=device_type,
        ell=ell,
        afl=afl,
        header=header,
        security_mode=mode,
        application=bytes(app),
        telegram=telegram,
        ci=ci,
        format_signature=signature,
        layout=layout_name,
        receiver_decrypted=clear,
    )


def _manufacturer_frame(
    body: bytes,
    pos: int,
    ci: int,
    c: int,
    manufacturer: str,
    ident: int | None,
    ident_raw: bytes,
    version: int,
    device_type: int,
    ell: Ell | None,
    afl: Afl | None,
    clear: bool,
    meter: str,
    lay: WMBusLayouts,
) -> WMBusFrame:
    """A manufacturer-specific CI (EN 13757-4: 0xA0-0xB7): decoded by the layout table or refused
    with the raw payload (``UnknownLayout``)."""
    payload = bytes(body[pos + 1 :])
    layout = lay.layout(manufacturer, ci, device_type, version)
    if layout is None:
        raise UnknownLayout(
            PROTOCOL,
            f"manufacturer-specific CI 0x{ci:02X} from {meter} ({manufacturer}, device type "
            f"0x{device_type:02X}, version 0x{version:02X}): no layout in the wM-Bus layout table",
            values=[payload.hex().upper()],
        )
    records = layout.records(payload, base=pos + 1)
    telegram = mbus.Telegram(
        header=None,
        records=records,
        manufacturer_data=payload,
        medium=layout.medium if layout.medium is not None else device_type,
        meter=meter,
        flags=frozenset({"receiver_decrypted"}) if clear else frozenset(),
    )
    return WMBusFrame(
        c=c,
        manufacturer=manufacturer,
        ident=ident,
        ident_raw=ident_raw,
        version=version,
        device_type=device_type,
        ell=ell,
        afl=afl,
        header=None,
        security_mode=0,
        application=payload,
        telegram=telegram,
        ci=ci,
        layout=layout.name,
        receiver_decrypted=clear,
    )


def _with_cfe(h: mbus.Header, cfe: int) -> mbus.Header:
    return mbus.Header(  # not dataclasses.replace: that introspects the fields on every call
        ci=h.ci,
        access_no=h.access_no,
        status=h.status,
        signature=h.signature,
        ident=h.ident,
        ident_raw=h.ident_raw,
        manufacturer=h.manufacturer,
        version=h.version,
        device_type=h.device_type,
        config_ext=cfe,
    )


def data_points(
    frame: bytes | WMBusFrame,
    keys: Mapping[str, bytes | str] | None = None,
    time: datetime | None = None,
    tz: tzinfo = UTC,
    *,
    has_crc: bool | None = None,
    frame_format: str | None = None,
    formats: MutableMapping[int, bytes] | None = None,
) -> list[DataPoint]:
    """Decode (and decrypt) one frame to data points, protocol ``wmbus``.

    ``time``: used when the frame carries no current date-time record; ``tz``: the zone of the
    meter's wall clock. ``formats``: see :func:`decode_frame`.
    """
    f = (
        frame
        if isinstance(frame, WMBusFrame)
        else decode_frame(frame, keys, has_crc=has_crc, frame_format=frame_format, formats=formats)
    )
    return mbus.telegram_points(f.telegram, time=time, tz=tz, protocol=PROTOCOL)


# --------------------------------------------------------------------------------------------
# Encoding (simulator, tests)
# --------------------------------------------------------------------------------------------


def compact_payload(records: bytes) -> bytes:
    """The compact form (after CI 0x79) of the full frame's ``records``: format signature,
    full-frame CRC (both LSB first), then the values without their headers."""
    parsed, more, mfr = mbus.decode_records(records)
    if more or mfr:
        raise ValueError("a compact frame carries records only")
    headers = bytearray()
    values = bytearray()
    for r in parsed:
        h = bytes((r.dif, *r.dife, r.vif, *r.vife))
        if r.coding not in _FIXED or r.vif & 0x7F == 0x7C:
            raise ValueError(f"record {h.hex().upper()} has no fixed length")
        n = _FIXED[r.coding]
        headers += h
        values += records[r.offset + len(h) : r.offset + len(h) + n]
    return (
        format_signature(bytes(headers)).to_bytes(2, "little") + crc16(records).to_bytes(2, "little") + values
    )


def encode_frame(
    *,
    manufacturer: str,
    ident: int,
    version: int,
    device_type: int,
    records: bytes,
    access_no: int,
    mode: int = 0,
    key: bytes | None = None,
    message_counter: int = 0,
    status: int = 0,
    c: int = C_SND_NR,
    ci: int = 0x7A,
    ell_cc: int | None = None,
    ell_session: int | None = None,
    config_flags: int = 0,
    frame_format: str = "A",
    with_crc: bool = True,
) -> bytes:
    """Build a frame carrying the application data ``records`` (EN 13757-3 records).

    ``ci``: 0x7A short or 0x72 long transport header, 0x78 none, or 0x79 the compact form of
    ``records`` (0x78/0x79: mode 0 only). Mode 5/7 prefix ``2F 2F`` and pad with 0x2F to whole
    blocks; mode 7 adds an AFL (MCL, MCR, 8-byte MAC) with ``message_counter``. ``ell_cc`` adds
    an ELL I with that communication control; with ``ell_session`` an ELL II (session number as
    sent: its bits 29-31 = 1 encrypt the payload with AES-CTR and ``key``, as Kamstrup does).
    ``config_flags``: configuration-word bits besides mode and block count (0x2000: synchronous).
    """
    m = mbus.encode_manufacturer(manufacturer).to_bytes(2, "little")
    id_raw = mbus._id_bcd_with_wildcards(ident)
    a = id_raw + bytes((version & 0xFF, device_type & 0xFF))
    if mode not in (0, 5, 7):
        raise ValueError("security mode is 0, 5 or 7")
    if mode:
        if key is None or len(key) != 16:
            raise ValueError("modes 5 and 7 need a 16-byte key")
        plain = b"\x2f\x2f" + records
        plain += b"\x2f" * (-len(plain) % 16)
        nblocks = len(plain) // 16
        if nblocks > 15:
            raise ValueError("at most 15 encrypted blocks")
        signature = mode << 8 | nblocks << 4
    else:
        plain = records
        signature = 0
    signature |= config_flags & 0xE00F
    if ci == 0x7A:
        tpl = bytes((ci,)) + mbus.encode_short_header(access_no, status, signature)
    elif ci == 0x72:
        tpl = bytes((ci,)) + mbus.encode_long_header(
            ident, manufacturer, version, device_type, access_no, status, signature
        )
    elif ci in (CI_NO_HEADER, CI_COMPACT):
        if mode:
            raise ValueError(f"CI 0x{ci:02X} has no configuration word: no TPL encryption")
        tpl = bytes((ci,))
        if ci == CI_COMPACT:
            plain = compact_payload(records)
    else:
        raise ValueError(f"CI 0x{ci:02X} not supported by the encoder")
    if mode == 7:
        tpl += b"\x10"  # configuration field extension: KDF selection 1 (OMS KDF), key id 0
    if mode == 5:
        iv = m + a + bytes((access_no & 0xFF,)) * 8
        payload = _aes_cbc(key, iv, plain, encrypt=True)  # type: ignore[arg-type]
    elif mode == 7:
        kenc = derive_key(key, 0x00, message_counter, id_raw)  # type: ignore[arg-type]
        payload = _aes_cbc(kenc, bytes(16), plain, encrypt=True)
    else:
        payload = plain
    prefix = b""
    if mode == 7:
        mcl = 0x25  # MCMP (message counter present) | AT = 5: AES-CMAC-128, MAC truncated to 8 bytes
        mcr = message_counter.to_bytes(4, "little")
        kmac = derive_key(key, 0x01, message_counter, id_raw)  # type: ignore[arg-type]
        mac = _cmac(kmac, bytes((mcl,)) + mcr + tpl + payload)[:8]
        fcl = 0x2000 | 0x0800 | 0x0400  # MCLP | MCRP | MACP
        afl_fields = fcl.to_bytes(2, "little") + bytes((mcl,)) + mcr + mac
        prefix += bytes((0x90, len(afl_fields))) + afl_fields
    rest = prefix + tpl + payload
    if ell_session is not None:
        cc = 0x20 if ell_cc is None else ell_cc & 0xFF
        sn = ell_session & 0xFFFFFFFF
        crc_and_rest = crc16(rest).to_bytes(2, "little") + rest
        if sn >> 29 & 0x07 == ELL_AES_CTR:
            if key is None or len(key) != 16:
                raise ValueError("ELL AES-CTR needs a 16-byte key")
            crc_and_rest = _aes_ctr(key, ell_iv(m, a, cc, sn), crc_and_rest)
        rest = bytes((0x8D, cc, access_no & 0xFF)) + sn.to_bytes(4, "little") + crc_and_rest
    elif ell_cc is not None:
        rest = bytes((0x8C, ell_cc & 0xFF, access_no & 0xFF)) + rest
    body_wo_l = bytes((c,)) + m + a + rest
    if len(body_wo_l) > 255:
        raise ValueError("frame too long")
    body = bytes((len(body_wo_l),)) + body_wo_l
    return _add_crcs(body, frame_format) if with_crc else body
