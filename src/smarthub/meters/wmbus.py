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

* 0x8C / 0x8D: extended link layer I / II (communication control, access number; ELL II also
  the session number and the payload CRC). ELL encryption (AES-CTR) is not supported;
* 0x90: authentication and fragmentation layer (AFL): fragment control, message control,
  key information, message counter, MAC, message length;
* 0x7A short / 0x72 long transport header, 0x78 none; the configuration word gives the
  security mode and the number of encrypted 16-byte blocks.

Security (OMS Vol. 2 "Security", EN 13757-7 "Transport and security services"):

* mode 5: AES-128-CBC, IV = M-field (2) || A-field (6) || access number repeated 8 times,
  persistent key per meter;
* mode 7: AES-128-CBC with a zero IV and an ephemeral key derived from the meter's master key
  with AES-CMAC (the OMS key derivation function: ``Kenc = CMAC(K, 0x00 || message counter ||
  meter id || 0x07 * 7)``, ``Kmac`` likewise with 0x01); the AFL MAC (AES-CMAC truncated to
  the AFL length) over AFL.MCL || AFL.MCR || [AFL.ML] || the transport layer is verified;
* either way the decrypted data must begin with the filler ``2F 2F``, else
  :class:`DecryptionError`: a wrong key never yields readings.

The application data is then decoded by :mod:`smarthub.meters.mbus` (EN 13757-3 records).

Why our own codec: no maintained Python wM-Bus decoder exists (``pywmbus`` was last released
in 2017); ``pyMeterBus`` decodes only mode 5 short-header frames without link-layer CRCs and
reports failures as generic exceptions. Ours is sans-I/O (one frame as radio delivers it in,
typed values out), raises only :class:`~smarthub.meters.errors.DecodeError` subclasses (it is
fuzzed), computes CRCs from a table, and keeps register values exact (``Decimal``).
"""

from __future__ import annotations

from collections.abc import Mapping
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
    WrongKey,
)
from smarthub.model.datapoint import DataPoint

__all__ = [
    "Afl",
    "DecryptionError",
    "Ell",
    "NoKeyError",
    "WMBusFrame",
    "crc16",
    "data_points",
    "decode_frame",
    "derive_key",
    "detect_crc",
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


def crc16(data: bytes) -> int:
    """CRC-16/EN-13757 of ``data`` (``crc16(b"123456789") == 0xC2B7``)."""
    crc = 0
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


# --------------------------------------------------------------------------------------------
# Frame model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ell:
    """Extended link layer (CI 0x8C ELL I, 0x8D ELL II)."""

    ci: int
    cc: int
    access_no: int
    session_no: int | None = None
    payload_crc: int | None = None


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
    application: bytes  # decrypted application data (records)
    telegram: mbus.Telegram

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


def _key_for(keys: Mapping[str, bytes | str] | None, meter: str) -> bytes:
    key = None if keys is None else keys.get(meter)
    if key is None:
        raise NoKeyError(f"frame is encrypted and there is no key for meter {meter}", meter=meter)
    if isinstance(key, str):
        try:
            key = bytes.fromhex(key)
        except ValueError:
            raise DecryptionError(f"key for meter {meter} is not hexadecimal", meter=meter) from None
    if len(key) != 16:
        raise DecryptionError(f"key for meter {meter} is {len(key)} bytes, AES-128 needs 16", meter=meter)
    return bytes(key)


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
                f"{n} bytes: more than L + 1 = {length + 1} (no CRCs) but fewer than the {total_a} "
                "of format A with CRCs",
                offset=n,
            )
    if n < length + 1:
        raise TruncatedFrame(PROTOCOL, f"L = {length} needs {length + 1} bytes, {n} present", offset=n)
    raise MalformedFrame(
        PROTOCOL, f"{n} bytes fit neither L + 1 = {length + 1} (no CRCs, format B) nor format A with CRCs"
    )


def decode_frame(
    data: bytes,
    keys: Mapping[str, bytes | str] | None = None,
    *,
    has_crc: bool | None = None,
    frame_format: str | None = None,
) -> WMBusFrame:
    """Decode one wM-Bus frame (as one radio packet), decrypting with ``keys[meter id]``.

    ``has_crc=None`` with no ``frame_format`` (the default) detects from L and the length
    whether the link-layer CRCs are present, and in which frame format (:func:`detect_crc`); a
    ``frame_format`` given alone means the CRCs are there.

    ``keys`` maps the meter id as the data points name it (``"KAM12345678"``) to its AES-128 key
    (bytes or hex). Raises :class:`DecryptionError` when the key is missing or wrong.
    """
    data = bytes(data)
    if has_crc is None:
        if frame_format is None:
            has_crc, frame_format = detect_crc(data)
        else:
            has_crc = True
    frame_format = frame_format or "A"
    if has_crc:
        if frame_format == "A":
            body = _strip_a(data)
        elif frame_format == "B":
            body = _strip_b(data)
        else:
            raise ValueError(f"frame format is 'A' or 'B', got {frame_format!r}")
    else:
        if not data:
            raise TruncatedFrame(PROTOCOL, "empty frame", offset=0)
        if len(data) < data[0] + 1:
            raise TruncatedFrame(PROTOCOL, f"L = {data[0]} needs {data[0] + 1} bytes", offset=len(data))
        if len(data) > data[0] + 1:
            raise MalformedFrame(PROTOCOL, "trailing bytes after the frame", offset=data[0] + 1)
        body = data
    if len(body) < 11:
        raise TruncatedFrame(PROTOCOL, "frame ends before its CI field", offset=len(body))
    c = body[1]
    m = body[2] | body[3] << 8
    manufacturer = mbus.decode_manufacturer(m)
    ident_raw = bytes(body[4:8])
    ident = mbus._bcd_id(ident_raw)
    version, device_type = body[8], body[9]
    link_meter = mbus.meter_id(manufacturer, ident, ident_raw)
    pos = 10
    ell = afl = None
    ci = body[pos]
    if ci in (0x8C, 0x8D):
        n = 2 if ci == 0x8C else 8
        _need(body, pos + 1, n, "ELL")
        if ci == 0x8C:
            ell = Ell(ci, body[pos + 1], body[pos + 2])
        else:
            sn = int.from_bytes(body[pos + 3 : pos + 7], "little")
            ell = Ell(ci, body[pos + 1], body[pos + 2], sn, body[pos + 7] | body[pos + 8] << 8)
            if sn >> 29 & 0x07:
                raise MalformedFrame(PROTOCOL, "ELL AES-CTR encryption is not supported", offset=pos)
        pos += 1 + n
        _need(body, pos, 1, "CI after ELL")
        ci = body[pos]
    if ci == 0x90:
        afl, pos = _parse_afl(body, pos)
        if afl.more_fragments:
            raise MalformedFrame(PROTOCOL, "fragmented messages (AFL.MF) are not supported", offset=pos)
        _need(body, pos, 1, "CI after AFL")
        ci = body[pos]
    tpl_start = pos
    header: mbus.Header | None
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
    elif ci == 0x78:
        header = None
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
        if enc_len == 0:
            raise DecryptionError(f"security mode {mode} with no encrypted blocks", meter=meter)
        if len(payload) < enc_len:
            raise TruncatedFrame(
                PROTOCOL, f"{nblocks} encrypted blocks need {enc_len} bytes, {len(payload)} left", offset=pos
            )
        key = _key_for(keys, meter)
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
                    + (afl.message_length.to_bytes(2, "little") if afl.message_length is not None else b"")
                    + body[tpl_start:]
                )
                if _cmac(kmac, mac_input)[: len(afl.mac)] != afl.mac:
                    raise DecryptionError("AFL MAC does not verify: wrong key or altered frame", meter=meter)
            plain = _aes_cbc(kenc, bytes(16), payload[:enc_len], encrypt=False)
        if plain[:2] != b"\x2f\x2f":
            raise DecryptionError(
                f"decrypted data does not start with 2F 2F: wrong key for {meter}?", meter=meter, offset=pos
            )
        app = plain + payload[enc_len:]
    else:
        raise DecryptionError(f"security mode {mode} is not supported", meter=meter)
    records, more, mfr_data = mbus.decode_records(app, base=pos if mode == 0 else 0)
    telegram = mbus.Telegram(
        header=header,
        records=records,
        more_follows=more,
        manufacturer_data=mfr_data,
        medium=header.device_type if header is not None and header.device_type is not None else device_type,
        meter=meter,
        flags=mbus._status_flags(header.status) if header is not None else frozenset(),
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
    )


def _with_cfe(h: mbus.Header, cfe: int) -> mbus.Header:
    return mbus.Header(
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
) -> list[DataPoint]:
    """Decode (and decrypt) one frame to data points, protocol ``wmbus``.

    ``time``: used when the frame carries no current date-time record; ``tz``: the zone of the
    meter's wall clock.
    """
    f = (
        frame
        if isinstance(frame, WMBusFrame)
        else decode_frame(frame, keys, has_crc=has_crc, frame_format=frame_format)
    )
    return mbus.telegram_points(f.telegram, time=time, tz=tz, protocol=PROTOCOL)


# --------------------------------------------------------------------------------------------
# Encoding (simulator, tests)
# --------------------------------------------------------------------------------------------


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
    frame_format: str = "A",
    with_crc: bool = True,
) -> bytes:
    """Build a frame carrying the application data ``records`` (EN 13757-3 records).

    ``ci``: 0x7A short or 0x72 long transport header, or 0x78 none (mode 0 only). Mode 5/7
    prefix ``2F 2F`` and pad with 0x2F to whole blocks; mode 7 adds an AFL (MCL, MCR, 8-byte
    MAC) with ``message_counter``. ``ell_cc`` adds an ELL I with that communication control.
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
    if ci == 0x7A:
        tpl = bytes((ci,)) + mbus.encode_short_header(access_no, status, signature)
    elif ci == 0x72:
        tpl = bytes((ci,)) + mbus.encode_long_header(
            ident, manufacturer, version, device_type, access_no, status, signature
        )
    elif ci == 0x78:
        if mode:
            raise ValueError("CI 0x78 has no configuration word: no encryption")
        tpl = bytes((ci,))
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
    if ell_cc is not None:
        prefix += bytes((0x8C, ell_cc & 0xFF, access_no & 0xFF))
    if mode == 7:
        mcl = 0x25  # MCMP (message counter present) | AT = 5: AES-CMAC-128, MAC truncated to 8 bytes
        mcr = message_counter.to_bytes(4, "little")
        kmac = derive_key(key, 0x01, message_counter, id_raw)  # type: ignore[arg-type]
        mac = _cmac(kmac, bytes((mcl,)) + mcr + tpl + payload)[:8]
        fcl = 0x2000 | 0x0800 | 0x0400  # MCLP | MCRP | MACP
        afl_fields = fcl.to_bytes(2, "little") + bytes((mcl,)) + mcr + mac
        prefix += bytes((0x90, len(afl_fields))) + afl_fields
    body_wo_l = bytes((c,)) + m + a + prefix + tpl + payload
    if len(body_wo_l) > 255:
        raise ValueError("frame too long")
    body = bytes((len(body_wo_l),)) + body_wo_l
    return _add_crcs(body, frame_format) if with_crc else body
