"""Last-gasp and restoration alerts: the only messages a hub sends the GDSC unasked.

Everything else on the WAN is pulled by the GDSC (DESIGN.md §1). A hub losing its mains has
a few hundred milliseconds of stored energy (the supply's hold-up capacitors) to say so, and
that decides the transport:

**One UDP datagram, not an HTTPS request.** A short HTTPS request needs a TCP handshake (1
round trip), a TLS 1.3 handshake with mutual certificates (1 more, plus an ECDSA signature and a
certificate-chain verification at each end) and then the request: three round trips on a
cellular link whose round trip alone is 100-600 ms under load, and a session that may have to be
set up from a dead radio context. That does not fit the hold-up time. One datagram of ~200 bytes
is one transmission the radio sends as soon as it is handed over; nothing waits for an answer.
Losing it is acceptable because it is not the only record: the hub also writes a
``POWER_FAILURE`` diagnosis the GDSC pulls, and on restoration sends a second datagram.
Both kinds go the same way (one code path, one format).

**Authenticated without a session.** The datagram is signed with the hub's own key (the private
key of its 2030.5 device certificate: ECDSA P-256 / SHA-256, the key the hub already proves in
every mutual-TLS pull), over a domain-separation prefix so the signature can never be taken for
another of the hub's signatures. The GDSC verifies against the public key of the certificate it
registered for that hub (its LFDI is the certificate's fingerprint, IEEE 2030.5 §6.3.4).

**Replay-protected.** Every alert carries a per-hub sequence number that only rises (the hub
reserves blocks of numbers on disk ahead of use, so a power cut mid-send never reuses one) and
the hub's send time. The GDSC accepts a sequence number once, within a sliding window as IPsec's
anti-replay check does (RFC 4303 §3.4.3: datagrams may arrive out of order), and refuses an
alert whose send time is further than :data:`MAX_SKEW` from its own clock.

This module is sans-I/O: bytes in, typed values out; signing and verification take the keys.

Wire format (big-endian), :data:`VERSION` 1::

    magic "SHAL" | version u8 | kind u8 | cause u8 | hub-id length u8 | hub id (UTF-8, 1-64)
    | seq u64 | sent u64 (ms since 1970 UTC) | lost_at u64 (ms) | duration_s u32
    | source length u8 | source (UTF-8, 0-64: the meter whose records gave the duration)
    | signature (64 bytes: r || s of ECDSA P-256 over SHA-256 of DOMAIN || everything before it)
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

MAGIC = b"SHAL"
VERSION = 1
DOMAIN = b"smarthub alert v1\x00"  # signed first: no other signature of the hub's key starts so
SIGNATURE_LEN = 64
MAX_HUB_ID = 64
MAX_SOURCE = 64
MAX_SKEW = timedelta(minutes=10)  # accepted difference between the hub's and the GDSC's clocks
MAX_DATAGRAM = 4 + 4 + MAX_HUB_ID + 8 + 8 + 8 + 4 + 1 + MAX_SOURCE + SIGNATURE_LEN

_ECDSA = ec.ECDSA(hashes.SHA256())  # made once: its construction costs a fifth of a verification
_HEAD = struct.Struct(">4sBBBB")
_BODY = struct.Struct(">QQQI")


class AlertKind(enum.IntEnum):
    LAST_GASP = 1  # mains lost; sent from stored energy
    RESTORATION = 2  # mains back; carries the outage's duration from the meter's own records


class Cause(enum.IntEnum):
    """What told the hub that mains was lost (or, for a restoration, where its duration came from)."""

    UNKNOWN = 0
    HUB_SUPPLY = 1  # the hub's own power supply (power-good signal)
    VOLTAGE_COLLAPSE = 2  # a meter's supply-voltage register (1-0:32.7.0 ...) fell below the limit
    METER_EVENT = 3  # a DLMS power-failure event or the DSMR power-failure log (1-0:99.97.0)
    METER_COUNTER = 4  # a power-failure counter rose (0-0:96.7.21 / 0-0:96.7.9)
    HUB_CLOCK = 5  # restoration: duration from the hub's own record (no meter record to hand)


class BadAlert(ValueError):
    """An alert datagram that cannot be decoded; the message names what is wrong."""


class AlertRefused(Exception):
    """A well-formed alert refused by a check (``reason``: forged, replayed, stale, unknown_hub...)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Alert:
    kind: AlertKind
    hub_id: str
    seq: int
    sent: datetime  # the hub's clock when it sent the alert
    lost_at: datetime  # when mains was lost (a restoration: the start of the outage it ends)
    duration_s: int = 0  # a restoration: the outage's length; a last gasp: 0
    cause: Cause = Cause.UNKNOWN
    source: str = ""  # a restoration: the meter whose power-failure records gave the duration

    def __post_init__(self) -> None:
        if not 0 < len(self.hub_id.encode()) <= MAX_HUB_ID:
            raise BadAlert(f"hub id must be 1-{MAX_HUB_ID} bytes of UTF-8")
        if len(self.source.encode()) > MAX_SOURCE:
            raise BadAlert(f"source must be at most {MAX_SOURCE} bytes of UTF-8")
        if not 0 <= self.seq < 2**64:
            raise BadAlert("sequence number out of range")
        if not 0 <= self.duration_s < 2**32:
            raise BadAlert("duration out of range")
        for name in ("sent", "lost_at"):
            if getattr(self, name).tzinfo is None:
                raise BadAlert(f"{name} must be timezone-aware")

    @property
    def restored_at(self) -> datetime:
        return self.lost_at + timedelta(seconds=self.duration_s)

    def body(self) -> bytes:
        """The signed part of the datagram."""
        hub = self.hub_id.encode()
        src = self.source.encode()
        return (
            _HEAD.pack(MAGIC, VERSION, int(self.kind), int(self.cause), len(hub))
            + hub
            + _BODY.pack(self.seq, _ms(self.sent), _ms(self.lost_at), self.duration_s)
            + bytes([len(src)])
            + src
        )


def _ms(t: datetime) -> int:
    ms = round(t.timestamp() * 1000)
    if not 0 <= ms < 2**64:
        raise BadAlert(f"time {t.isoformat()} out of range")
    return ms


def _time(ms: int) -> datetime:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        raise BadAlert(f"time {ms} ms out of range") from None


def sign(alert: Alert, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The datagram: the alert's body and the hub's signature over it."""
    if not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("alerts are signed with a P-256 key (the hub's 2030.5 certificate key)")
    body = alert.body()
    r, s = decode_dss_signature(key.sign(DOMAIN + body, _ECDSA))
    return body + r.to_bytes(32, "big") + s.to_bytes(32, "big")


def peek(datagram: bytes) -> tuple[str, int]:
    """(hub id, sequence number) without checking anything else: for rate limiting a flood
    before spending a signature verification on it. Raises :class:`BadAlert`."""
    if len(datagram) < _HEAD.size or datagram[:4] != MAGIC:
        raise BadAlert("not a smarthub alert (magic)")
    n = datagram[7]
    end = _HEAD.size + n
    if not 0 < n <= MAX_HUB_ID or len(datagram) < end + 8:
        raise BadAlert("hub id length out of range or datagram cut short")
    try:
        hub = datagram[_HEAD.size : end].decode()
    except UnicodeDecodeError:
        raise BadAlert("hub id is not UTF-8") from None
    return hub, int.from_bytes(datagram[end : end + 8], "big")


def decode(datagram: bytes) -> tuple[Alert, bytes, bytes]:
    """(alert, signed body, raw signature) of a datagram; the signature is not checked here
    (:func:`verify`). Raises :class:`BadAlert` naming the fault."""
    if len(datagram) > MAX_DATAGRAM:
        raise BadAlert(f"datagram of {len(datagram)} bytes is longer than any alert ({MAX_DATAGRAM})")
    if len(datagram) < _HEAD.size:
        raise BadAlert("datagram too short for an alert header")
    magic, version, kind, cause, n = _HEAD.unpack_from(datagram)
    if magic != MAGIC:
        raise BadAlert("not a smarthub alert (magic)")
    if version != VERSION:
        raise BadAlert(f"alert version {version} unknown (this side speaks {VERSION})")
    pos = _HEAD.size
    if not 0 < n <= MAX_HUB_ID:
        raise BadAlert(f"hub id length {n} out of range 1-{MAX_HUB_ID}")
    need = pos + n + _BODY.size + 1
    if len(datagram) < need:
        raise BadAlert("datagram cut short in the alert body")
    try:
        hub = datagram[pos : pos + n].decode()
    except UnicodeDecodeError:
        raise BadAlert("hub id is not UTF-8") from None
    pos += n
    seq, sent, lost, duration = _BODY.unpack_from(datagram, pos)
    pos += _BODY.size
    m = datagram[pos]
    pos += 1
    if m > MAX_SOURCE:
        raise BadAlert(f"source length {m} out of range 0-{MAX_SOURCE}")
    if len(datagram) != pos + m + SIGNATURE_LEN:
        raise BadAlert(
            f"datagram is {len(datagram)} bytes; its fields say {pos + m + SIGNATURE_LEN}"
            " (with the signature)"
        )
    try:
        source = datagram[pos : pos + m].decode()
    except UnicodeDecodeError:
        raise BadAlert("source is not UTF-8") from None
    pos += m
    try:
        kind_ = AlertKind(kind)
    except ValueError:
        raise BadAlert(f"alert kind {kind} unknown") from None
    try:
        cause_ = Cause(cause)
    except ValueError:
        raise BadAlert(f"cause {cause} unknown") from None
    alert = Alert(kind_, hub, seq, _time(sent), _time(lost), duration, cause_, source)
    return alert, datagram[:pos], datagram[pos:]


def verify(body: bytes, signature: bytes, key: ec.EllipticCurvePublicKey) -> bool:
    """Whether ``signature`` is the hub key's over ``body``."""
    if len(signature) != SIGNATURE_LEN:
        return False
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if r <= 0 or s <= 0:
        return False
    try:
        key.verify(encode_dss_signature(r, s), DOMAIN + body, _ECDSA)
    except InvalidSignature:
        return False
    return True


class ReplayWindow:
    """Sequence numbers seen for one hub: the highest and a bitmap of the ``size`` below it
    (RFC 4303 §3.4.3). A number is accepted once; older than the window, never."""

    __slots__ = ("bits", "highest", "size")

    def __init__(self, highest: int = -1, size: int = 64) -> None:
        self.highest = highest
        self.bits = 0  # bit i: highest - i was seen (bit 0 is highest itself)
        self.size = size
        if highest >= 0:
            self.bits = 1

    @classmethod
    def after(cls, highest: int, size: int = 64) -> ReplayWindow:
        """A window for a hub whose numbers up to ``highest`` are stored: every number at or
        below it counts as seen (which of them were is not worth a read; a hub's numbers only
        rise, so only a datagram overtaken by a restart of the GDSC is refused for it)."""
        w = cls(highest, size)
        if highest >= 0:
            w.bits = (1 << size) - 1
        return w

    def check(self, seq: int) -> bool:
        """Whether ``seq`` would be accepted (no change)."""
        if seq > self.highest:
            return True
        back = self.highest - seq
        return back < self.size and not (self.bits >> back) & 1

    def accept(self, seq: int) -> bool:
        """Accept ``seq`` if new; False if it is a replay or too old."""
        if not self.check(seq):
            return False
        if seq > self.highest:
            shift = seq - self.highest
            self.bits = ((self.bits << shift) | 1) & ((1 << self.size) - 1) if shift < self.size else 1
            self.highest = seq
        else:
            self.bits |= 1 << (self.highest - seq)
        return True


__all__ = [
    "DOMAIN",
    "MAX_DATAGRAM",
    "MAX_SKEW",
    "Alert",
    "AlertKind",
    "AlertRefused",
    "BadAlert",
    "Cause",
    "ReplayWindow",
    "decode",
    "peek",
    "sign",
    "verify",
]
