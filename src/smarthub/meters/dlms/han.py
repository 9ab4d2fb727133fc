"""DLMS/COSEM pushes as HAN ports send them (Norway, Sweden, Denmark, Austria, Luxembourg,
Switzerland): a DataNotification, plain or general-glo-ciphered, every few seconds.

Transports, recognised by the first byte of a capture:

* HDLC (``7E``): UI or I frames, segmented ones (format field S bit) joined, LLC header
  ``E6 E7 00`` stripped (IEC 62056-46); General Block Transfer APDUs (``E0``, IEC 62056-5-3
  "general-block-transfer") joined block by block (Landis+Gyr E450);
* wired M-Bus long frames (``68 L L 68``, EN 13757-2): the Austrian customer interface carries
  the ciphered APDU split over several long frames whose CI field is the DLMS transport's
  (``0x00``-``0x1F``: bit 4 set on the last segment, bits 0-3 the sequence number), each followed
  by STSAP and DTSAP (Netz NÖ "Kundenschnittstelle", IEC 62056-7-3);
* the wrapper (``00 01``, IEC 62056-47), an LLC-prefixed APDU (``E6 E7 00``) or a bare APDU.

Ciphered APDUs: security control low nibble = suite id; suites 0 and 1 both protect APDUs
with AES-128-GCM (:mod:`smarthub.meters.dlms.security`). Encryption-only APDUs (``0x20``,
``0x21``) have no tag, so a wrong key shows only as plaintext that is not an APDU: that is
reported as :class:`~smarthub.meters.errors.WrongKey` ("decrypts to garbage").

List layouts (the notification body):

* self-describing entries, as a structure *or an array* (Aidon): ``(logical name, value
  [, scaler_unit])``, optionally after a leading date-time;
* flat sequences: an optional list identifier string (``Kamstrup_V0001``) or date-time, then
  ``logical name, value`` pairs (Kamstrup, Kaifa MA304 in Sweden) or ``logical name, value,
  scaler_unit`` triples (Austria), optionally ending in the bare meter number;
* positional values without OBIS codes (Kaifa's Norwegian ``KFM_001`` lists), named by a
  :class:`~smarthub.meters.dlms.profiles.ListProfile` chosen by identifier and length.

Values without a scaler_unit in the frame take the profile's; a positional list no profile
knows raises :class:`~smarthub.meters.errors.UnknownLayout` with the raw values.

The meter is named by the serial the list carries (``0-0:96.1.0``, Kamstrup's ``1-1:0.0.5``, the
trailing meter number), else the sender's system title, else the caller's hint; the time is
the list's clock, else the APDU's date-time (local times without a deviation are read in
``assume``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from smarthub.meters.dlms.apdu import DataNotification, decode_apdu
from smarthub.meters.dlms.apdu.ciphering import decode as decode_ciphered
from smarthub.meters.dlms.axdr import DateTime, decode_length
from smarthub.meters.dlms.errors import PROTOCOL, DecryptionError, NoKeyError
from smarthub.meters.dlms.hdlc import HdlcFramer, SegmentReassembler
from smarthub.meters.dlms.profiles import ListProfile, ListProfiles, UnitSpec
from smarthub.meters.dlms.security import (
    CipheredApdu,
    InvocationCounterGuard,
    SecurityKeys,
    decipher_apdu,
    is_ciphered,
)
from smarthub.meters.dlms.wrapper import decode_wrapper
from smarthub.meters.errors import (
    ChecksumError,
    DecodeError,
    MalformedFrame,
    TruncatedFrame,
    UnknownLayout,
)
from smarthub.model.datapoint import DataPoint
from smarthub.model.obis import ObisCode

__all__ = ["HanPush", "decode_push", "extract_apdus", "list_points"]

GBT = 0xE0
_LLC = (b"\xe6\xe7\x00", b"\xe6\xe6\x00")
_MODEL_OBIS = frozenset({ObisCode(0, 0, 96, 1, 7), ObisCode(1, 1, 96, 1, 1), ObisCode(0, 0, 42, 0, 0)})


@dataclass(frozen=True, slots=True)
class HanPush:
    """One decoded push: the meter it names, its time, its data points, and what identified it."""

    meter: str
    time: datetime | None
    points: list[DataPoint]
    identification: dict[str, str] = field(default_factory=dict)  # identifier, serial, model
    system_title: bytes | None = None
    security_control: int | None = None  # None: sent in clear
    profile: str | None = None  # the list profile used, if any


# --------------------------------------------------------------------------------------------
# Transports
# --------------------------------------------------------------------------------------------


def extract_apdus(data: bytes) -> list[bytes]:
    """The APDUs carried by a capture of one or more frames (see the module docstring)."""
    data = bytes(data)
    if not data:
        raise TruncatedFrame(PROTOCOL, "empty input")
    first = data[0]
    if first == 0x7E:
        infos = _hdlc_infos(data)
    elif first == 0x68:
        infos = _mbus_apdus(data)
    elif data[:2] == b"\x00\x01":
        infos = [decode_wrapper(data).apdu]
    else:
        infos = [data]
    out: list[bytes] = []
    blocks: list[bytes] = []
    for info in infos:
        apdu = info[3:] if info[:3] in _LLC else info
        if apdu[:1] == bytes((GBT,)):
            last, block = _gbt_block(apdu)
            blocks.append(block)
            if last:
                out.append(b"".join(blocks))
                blocks = []
            continue
        if blocks:
            raise MalformedFrame(PROTOCOL, "general-block-transfer interrupted before its last block")
        if apdu:
            out.append(apdu)
    if blocks:
        raise TruncatedFrame(PROTOCOL, "general-block-transfer ends before its last block")
    if not out:
        raise TruncatedFrame(PROTOCOL, "no APDU in the input")
    return out


def _hdlc_infos(data: bytes) -> list[bytes]:
    framer = HdlcFramer()
    segments = SegmentReassembler()
    infos: list[bytes] = []
    for f in framer.feed(data):
        if isinstance(f, DecodeError):
            raise f
        if not f.info:
            continue
        whole = segments.add(f)
        if whole is not None:
            infos.append(whole)
    if framer.pending > 1:  # a lone closing flag may open a next frame: not a cut-off one
        raise TruncatedFrame(PROTOCOL, f"HDLC frame cut off ({framer.pending} bytes of it present)")
    if segments.in_progress:
        raise TruncatedFrame(PROTOCOL, "segmented HDLC frames end before the last segment")
    return infos


def _mbus_apdus(data: bytes) -> list[bytes]:
    """APDUs split over EN 13757-2 long frames with the DLMS transport's CI field."""
    out: list[bytes] = []
    parts: list[bytes] = []
    pos, n = 0, len(data)
    while pos < n:
        if data[pos] != 0x68:
            raise MalformedFrame(PROTOCOL, f"M-Bus long frame expected, found {data[pos]:02X}", offset=pos)
        if pos + 4 > n:
            raise TruncatedFrame(PROTOCOL, "M-Bus frame header cut off", offset=pos)
        length = data[pos + 1]
        if data[pos + 2] != length or data[pos + 3] != 0x68:
            raise MalformedFrame(PROTOCOL, "M-Bus long frame header is not 68 L L 68", offset=pos)
        end = pos + 4 + length + 2
        if end > n:
            raise TruncatedFrame(PROTOCOL, f"M-Bus long frame of L = {length} cut off", offset=n)
        body = data[pos + 4 : pos + 4 + length]
        if sum(body) & 0xFF != data[end - 2]:
            raise ChecksumError(PROTOCOL, "M-Bus checksum does not match the frame", offset=end - 2)
        if data[end - 1] != 0x16:
            raise MalformedFrame(PROTOCOL, "M-Bus frame does not end with 16", offset=end - 1)
        if length < 5:
            raise MalformedFrame(PROTOCOL, f"M-Bus frame of L = {length} has no DLMS segment", offset=pos)
        ci = body[2]
        if ci > 0x1F:
            raise MalformedFrame(
                PROTOCOL, f"M-Bus CI {ci:02X} is not a DLMS transport segment", offset=pos + 6
            )
        parts.append(body[5:])  # after C, A, CI, STSAP, DTSAP
        if ci & 0x10:
            out.append(b"".join(parts))
            parts = []
        pos = end
    if parts:
        raise TruncatedFrame(PROTOCOL, "M-Bus segments end before the last one (CI bit 4)")
    return out


def _gbt_block(apdu: bytes) -> tuple[bool, bytes]:
    if len(apdu) < 6:
        raise TruncatedFrame(PROTOCOL, "general-block-transfer header cut off")
    control = apdu[1]
    length, pos = decode_length(apdu, 6)
    if pos + length != len(apdu):
        raise (TruncatedFrame if pos + length > len(apdu) else MalformedFrame)(
            PROTOCOL, f"general-block-transfer block says {length} bytes, {len(apdu) - pos} present"
        )
    return bool(control & 0x80), apdu[pos:]


# --------------------------------------------------------------------------------------------
# Lists
# --------------------------------------------------------------------------------------------


def _plausible_datetime(v: Any) -> bool:
    if isinstance(v, DateTime):
        return True
    if not isinstance(v, bytes) or len(v) != 12:
        return False
    month, day, hour, minute = v[2], v[3], v[5], v[6]
    return (
        (month == 0xFF or 1 <= month <= 14)
        and (day == 0xFF or 1 <= day <= 31 or day >= 0xFD)
        and (hour == 0xFF or hour < 24)
        and (minute == 0xFF or minute < 60)
    )


def _time(v: Any, assume: tzinfo) -> datetime | None:
    dt = v if isinstance(v, DateTime) else DateTime.from_bytes(v)
    return dt.to_datetime(assume)


def _text(v: Any) -> str:
    if isinstance(v, str):
        return v.rstrip("\x00")
    if isinstance(v, bytes):
        stripped = v.rstrip(b"\x00")
        if stripped and all(0x20 <= b < 0x7F for b in stripped):
            return stripped.decode("ascii")
        return v.hex()
    return repr(v)


def _is_text(v: Any) -> bool:
    if isinstance(v, str):
        return True
    if not isinstance(v, bytes) or len(v) == 6 or not v:
        return False
    return all(0x20 <= b < 0x7F for b in v.rstrip(b"\x00"))


def _is_obis(v: Any) -> bool:
    return isinstance(v, bytes) and len(v) == 6


def _is_scaler_unit(v: Any) -> bool:
    return (
        isinstance(v, tuple)
        and len(v) == 2
        and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
        and -128 <= v[0] <= 127
    )


def _is_identifier(obis: ObisCode) -> bool:
    return obis.c == 0 and obis.d == 2 and obis.e == 129


class _Builder:
    def __init__(self, profiles: ListProfiles, assume: tzinfo) -> None:
        self.profiles = profiles
        self.assume = assume
        self.time: datetime | None = None
        self.ident: dict[str, str] = {}
        self.serials: dict[ObisCode, str] = {}
        self.values: list[tuple[ObisCode, Any, int, str | None]] = []
        self.units: ListProfile | None = None

    def identifier(self, text: str) -> None:
        self.ident.setdefault("identifier", text)
        self.units = self.units or self.profiles.units(text)

    def add(self, obis: ObisCode, value: Any, su: Any = None) -> None:
        """One named value; ``su`` the frame's scaler_unit (decoded structure) if it has one."""
        if obis in self.profiles.clock_obis and (_plausible_datetime(value) or value is None):
            if value is not None:
                self.time = _time(value, self.assume)
            return
        if _is_identifier(obis):
            self.identifier(_text(value))
            return
        if obis in self.profiles.serial_obis:
            self.serials[obis] = _text(value)
            return
        if obis in _MODEL_OBIS:
            self.ident.setdefault("model", _text(value))
            return
        if su is not None:
            from smarthub.meters.dlms.cosem import UNITS

            self.values.append((obis, value, su[0], UNITS.get(su[1])))
        else:
            self.values.append((obis, value, 0, None))

    def finish(self, meter_hint: str | None, system_title: bytes | None) -> tuple[str, list[DataPoint]]:
        for obis in self.profiles.serial_obis:
            if obis in self.serials:
                self.ident["serial"] = self.serials[obis]
                break
        meter = self.ident.get("serial") or (system_title.hex().upper() if system_title else None)
        meter = meter or meter_hint or "unidentified"
        units = self.units.units if self.units is not None and self.units.units is not None else {}
        points: list[DataPoint] = []
        for obis, value, scaler, unit in self.values:
            spec: UnitSpec | None = units.get(obis)
            key = obis
            if spec is not None:
                if unit is None:
                    scaler, unit = spec.scaler, spec.unit
                key = spec.as_obis or obis
            p = _point(meter, key, value, scaler, unit, self.time)
            if p is not None:
                points.append(p)
        return meter, points


def _point(
    meter: str, obis: ObisCode, value: Any, scaler: int, unit: str | None, t: datetime | None
) -> DataPoint | None:
    if value is None:
        return None
    key = str(obis)
    if isinstance(value, bool):
        return DataPoint(meter, PROTOCOL, key, str(value).lower(), None, t)
    if isinstance(value, int):
        v = Decimal(value * 10**scaler) if scaler > 0 else Decimal(value).scaleb(scaler)
        return DataPoint(meter, PROTOCOL, key, v, unit, t)
    if isinstance(value, float):
        return DataPoint(meter, PROTOCOL, key, Decimal(repr(value)).scaleb(scaler), unit, t)
    if _plausible_datetime(value):
        when = _time(value, UTC)
        return DataPoint(meter, PROTOCOL, key, when.isoformat() if when else _text(value), None, t)
    if isinstance(value, bytes | str):
        return DataPoint(meter, PROTOCOL, key, _text(value), None, t)
    return DataPoint(meter, PROTOCOL, key, repr(value), None, t, frozenset({"unparsed"}))


def list_points(
    body: Any,
    *,
    date_time: DateTime | None = None,
    profiles: ListProfiles | None = None,
    meter: str | None = None,
    system_title: bytes | None = None,
    assume: tzinfo = UTC,
) -> tuple[str, datetime | None, list[DataPoint], dict[str, str], str | None]:
    """``(meter, time, points, identification, profile name)`` of a notification body."""
    profiles = profiles or ListProfiles.default()
    if not isinstance(body, tuple | list):
        raise MalformedFrame(PROTOCOL, f"DataNotification body is neither a structure nor an array: {body!r}")
    b = _Builder(profiles, assume)
    if date_time is not None:
        b.time = date_time.to_datetime(assume)
    items = list(body)
    used: str | None = None
    if len(items) > 1 and _plausible_datetime(items[0]):
        b.time = _time(items.pop(0), assume)
    if items and all(isinstance(i, tuple) for i in items):
        for entry in items:
            if len(entry) not in (2, 3) or not _is_obis(entry[0]):
                raise MalformedFrame(
                    PROTOCOL, f"list entry is not (logical name, value[, scaler_unit]): {entry!r}"
                )
            su = entry[2] if len(entry) == 3 else None
            if su is not None and not _is_scaler_unit(su):
                raise MalformedFrame(PROTOCOL, f"scaler_unit is not structure(integer, enum): {su!r}")
            b.add(ObisCode(*entry[0]), entry[1], su)
    else:
        if items and _is_text(items[0]) and not (len(items) > 1 and _is_obis(items[0])):
            ident = _text(items[0])
            positional = profiles.positional(ident, len(items))
        else:
            ident = None
            positional = profiles.positional(None, len(items))
        if positional is not None:
            used = positional.name
            _positional(b, items, positional)
        elif not _flat(b, items, ident, profiles):
            raise UnknownLayout(
                PROTOCOL,
                f"list of {len(items)} values without OBIS codes"
                + (f", list identifier {ident!r}," if ident else "")
                + " matches no list profile; add one to the list-profile table",
                [_text(v) if isinstance(v, bytes | str) else repr(v) for v in items],
            )
    who, points = b.finish(meter, system_title)
    if b.units is not None:
        used = used or b.units.name
    return who, b.time, points, b.ident, used


def _positional(b: _Builder, items: Sequence[Any], profile: ListProfile) -> None:
    assert profile.positions is not None
    for pos, value in zip(profile.positions, items, strict=True):
        if pos.role == "identifier":
            b.identifier(_text(value))
        elif pos.role == "serial":
            b.serials[pos.obis] = _text(value)
            if pos.obis not in b.profiles.serial_obis:
                b.ident["serial"] = _text(value)
        elif pos.role == "model":
            b.ident.setdefault("model", _text(value))
        elif pos.role == "clock":
            if _plausible_datetime(value):
                b.time = _time(value, b.assume)
        else:
            if isinstance(value, tuple | list):
                raise MalformedFrame(PROTOCOL, f"profile {profile.name!r}: element {value!r} is not a value")
            b.values.append((pos.obis, value, pos.scaler, pos.unit))


def _flat(b: _Builder, items: list[Any], ident: str | None, profiles: ListProfiles) -> bool:
    """Pairs or triples after an optional identifier; False when the list is not of that shape."""
    k = 0
    n = len(items)
    if ident is not None:
        b.identifier(ident)
        k = 1
    named = 0
    while k < n:
        v = items[k]
        if _is_obis(v) and k + 1 < n:
            obis = ObisCode(*v)
            value = items[k + 1]
            k += 2
            su = None
            if k < n and _is_scaler_unit(items[k]):
                su = items[k]
                k += 1
            b.add(obis, value, su)
            named += 1
            continue
        if k == n - 1 and named and profiles.trailing_string_is_serial and _is_text(v):
            b.ident["serial"] = _text(v)
            b.serials[ObisCode(0, 0, 96, 1, 0)] = _text(v)
            k += 1
            continue
        return False
    return named > 0 or (ident is not None and n == 1)


# --------------------------------------------------------------------------------------------
# Pushes
# --------------------------------------------------------------------------------------------


def decode_push(
    data: bytes,
    *,
    keys: SecurityKeys | None = None,
    meter: str | None = None,
    profiles: ListProfiles | None = None,
    assume: tzinfo = UTC,
    guard: InvocationCounterGuard | None = None,
    verify_tag: bool = True,
) -> list[HanPush]:
    """Every push in a capture (one or more frames of one transport)."""
    return [
        decode_push_apdu(
            apdu, keys=keys, meter=meter, profiles=profiles, assume=assume, guard=guard, verify_tag=verify_tag
        )
        for apdu in extract_apdus(data)
    ]


def decode_push_apdu(
    apdu: bytes,
    *,
    keys: SecurityKeys | None = None,
    meter: str | None = None,
    profiles: ListProfiles | None = None,
    assume: tzinfo = UTC,
    guard: InvocationCounterGuard | None = None,
    verify_tag: bool = True,
) -> HanPush:
    """One push APDU. ``verify_tag=False`` accepts an authenticated-and-encrypted push whose tag
    fails when it decrypts to a DataNotification (a user who was given the encryption key but
    not the authentication key); its points carry the flag ``"unauthenticated"``."""
    sender = None
    sc = None
    unverified = False
    if is_ciphered(apdu):
        if keys is None:
            raise NoKeyError(PROTOCOL, "the push is encrypted (general-glo-ciphering) and no key was given")
        try:
            c = decipher_apdu(apdu, keys, guard=guard)
        except DecryptionError as err:
            plain = _unverified_plain(apdu, keys.encryption_key)
            if plain is None:
                raise
            if verify_tag:
                raise DecryptionError(
                    PROTOCOL,
                    "the encryption key is right (the push decrypts to a DataNotification) but the "
                    "authentication tag does not verify: wrong or missing authentication key, or an "
                    "altered frame",
                ) from err
            c = CipheredApdu(plain[0], plain[1], plain[2], plain[3], apdu[0])
            unverified = True
        sender, sc = c.system_title, c.security_control
        try:
            n = decode_apdu(c.plain)
        except DecodeError:
            if sc & 0x10:  # authenticated: the key is right, the meter sent something we cannot read
                raise
            raise DecryptionError(
                PROTOCOL,
                f"the push decrypts to garbage (security control {sc:#04x} has no authentication tag "
                "to check): wrong key",
            ) from None
    else:
        n = decode_apdu(apdu)
    if not isinstance(n, DataNotification):
        raise MalformedFrame(PROTOCOL, f"pushed APDU is a {type(n).__name__}, not a DataNotification")
    who, t, points, ident, used = list_points(
        n.value, date_time=n.date_time, profiles=profiles, meter=meter, system_title=sender, assume=assume
    )
    if unverified:
        points = [p._replace(flags=p.flags | {"unauthenticated"}) for p in points]
    return HanPush(who, t, points, ident, sender, sc, used)


def _unverified_plain(apdu: bytes, key: bytes) -> tuple[bytes, bytes, int, int] | None:
    """``(plain, system title, counter, security control)`` of a general-glo-ciphered
    authenticated-and-encrypted APDU decrypted without checking its tag (GCM's keystream is
    AES-CTR from IV || 00000002), when that plaintext is a DataNotification; else None."""
    try:
        c = decode_ciphered(apdu)
        if c.tag != 0xDB or c.system_title is None or c.security_control & 0x30 != 0x30:
            return None
        _, pos = decode_length(apdu, 10)
        content = apdu[pos:]
        iv = c.system_title + content[1:5] + b"\x00\x00\x00\x02"
        dec = Cipher(algorithms.AES(key), modes.CTR(iv)).decryptor()
        plain = dec.update(content[5:-12]) + dec.finalize()
        if not isinstance(decode_apdu(plain), DataNotification):
            return None
    except DecodeError:
        return None
    return plain, c.system_title, c.invocation_counter, c.security_control
