"""DLMS/COSEM security suite 0: AES-128-GCM with a 12-byte tag (IEC 62056-5-3 and the DLMS Green
Book, "Cryptographic protection": "Security suite", "Security header", "Initialization vector",
"Additional authenticated data"; NIST SP 800-38D for GCM itself).

A ciphered APDU's protected content is::

    security control (1) | invocation counter (4) | ciphertext | authentication tag (12)

* security control: bits 0-3 the suite id, bit 4 authentication, bit 5 encryption, bit 6 the
  broadcast key, bit 7 compression (not supported here). Suite 1 (ECDH/ECDSA P-256 for key
  agreement and signatures) protects APDUs with the same AES-128-GCM as suite 0, so its
  ciphered APDUs decrypt alike (Austrian meters push with 0x21); suite 2 uses AES-256 and is
  refused. 0x30 = authenticated and encrypted,
  0x10 = authenticated only (the plaintext travels in clear, the tag covers it), 0x20 =
  encrypted only (no tag);
* IV = the sender's system title (8 bytes) || invocation counter (4 bytes, big-endian);
* AAD = security control || authentication key, followed by the plaintext when only
  authentication is applied, or by the challenge for HLS-GMAC;
* service-specific ciphering wraps the content with a glo- tag (global key, e.g. glo-get-request
  0xC8, glo-get-response 0xCC, glo-initiate-request 0x21) or a ded- tag (dedicated key) and an
  A-XDR length; general-glo-ciphering (0xDB) and general-ded-ciphering (0xDC) also carry the
  sender's system title, for APDUs (pushes) whose receiver does not know the sender.

Why our own code rather than ``dlms-cosem``'s: the same sans-I/O, typed-error design as the rest
of the stack (a failed tag is a :class:`DecryptionError` with a specific message, a counter not
above the last accepted one a :class:`ReplayError`, both ``DecodeError`` subclasses, and the
ciphered-APDU decoder is fuzzed), and replay protection per sender that the reference leaves
to the caller.

Everything goes through ``cryptography``'s ``AESGCM``, one object per key kept in a small cache
(building a cipher context per frame cost 6 of the 28 us of a pushed frame; issue 17).
``AESGCM.decrypt`` only takes 16-byte tags, so a 12-byte tag is verified as GCM defines it
(NIST SP 800-38D, 7.2: the tag is recomputed over the received ciphertext and compared) in two
calls: GCM's keystream depends only on the key and IV, so ``encrypt(iv, C)`` yields the
candidate plaintext P (CTR is its own inverse; its tag is discarded), and ``encrypt(iv, P, aad)``
yields C again with the full tag over C and the AAD, whose first 12 bytes must equal the
received tag (``hmac.compare_digest``). The plaintext is returned only once that holds.
Encrypted-only content (0x20, no tag) is the keystream alone: ``encrypt(iv, C)`` without its tag.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from smarthub.meters.dlms.axdr import decode_length, encode_length
from smarthub.meters.dlms.errors import (
    PROTOCOL,
    DecryptionError,
    MalformedFrame,
    NoKeyError,
    ReplayError,
    TruncatedFrame,
)

__all__ = [
    "DED_TAGS",
    "GENERAL_DED_CIPHERING",
    "GENERAL_GLO_CIPHERING",
    "GLO_TAGS",
    "SC_AUTHENTICATED",
    "SC_AUTHENTICATED_ENCRYPTED",
    "SC_ENCRYPTED",
    "CipheredApdu",
    "DecryptionError",
    "InvocationCounterGuard",
    "ReplayError",
    "SecurityKeys",
    "cipher_apdu",
    "decipher_apdu",
    "decrypt",
    "encrypt",
    "hls_gmac",
    "is_ciphered",
]

TAG_LENGTH = 12
SC_AUTHENTICATED = 0x10
SC_ENCRYPTED = 0x20
SC_AUTHENTICATED_ENCRYPTED = 0x30
SC_BROADCAST_KEY = 0x40
SC_COMPRESSED = 0x80

GENERAL_GLO_CIPHERING = 0xDB
GENERAL_DED_CIPHERING = 0xDC

# Plain xDLMS tag -> service-specific glo- / ded- ciphered tag (IEC 62056-5-3, xDLMS APDU ASN.1).
GLO_TAGS = {
    0x01: 0x21,  # initiate-request
    0x08: 0x28,  # initiate-response
    0x0E: 0x2E,  # confirmed-service-error
    0xC0: 0xC8,  # get-request
    0xC1: 0xC9,  # set-request
    0xC2: 0xCA,  # event-notification-request
    0xC3: 0xCB,  # action-request
    0xC4: 0xCC,  # get-response
    0xC5: 0xCD,  # set-response
    0xC7: 0xCF,  # action-response
}
DED_TAGS = {
    0x01: 0x41,
    0x08: 0x48,
    0x0E: 0x4E,
    0xC0: 0xD0,
    0xC1: 0xD1,
    0xC2: 0xD2,
    0xC3: 0xD3,
    0xC4: 0xD4,
    0xC5: 0xD5,
    0xC7: 0xD7,
}
_GLO_CIPHERED = frozenset(GLO_TAGS.values())
_DED_CIPHERED = frozenset(DED_TAGS.values())
_ALL_CIPHERED = _GLO_CIPHERED | _DED_CIPHERED | {GENERAL_GLO_CIPHERING, GENERAL_DED_CIPHERING}


@dataclass(frozen=True, slots=True)
class SecurityKeys:
    """Suite 0 keys: the global unicast encryption key, the authentication key and, optionally,
    the global broadcast encryption key (all 16 bytes)."""

    encryption_key: bytes
    authentication_key: bytes
    broadcast_key: bytes | None = None

    def __post_init__(self) -> None:
        for name in ("encryption_key", "authentication_key", "broadcast_key"):
            key = getattr(self, name)
            if key is not None and len(key) != 16:
                raise ValueError(f"security suite 0 uses 16-byte keys; {name} has {len(key)}")

    def __repr__(self) -> str:  # keys stay out of logs and tracebacks
        return "SecurityKeys(<redacted>)"


@lru_cache(maxsize=256)
def _aead(key: bytes) -> AESGCM:
    """One ``AESGCM`` per key (a hub reads a few dozen meters; the bound keeps it small)."""
    return AESGCM(key)


def is_ciphered(apdu: bytes) -> bool:
    return bool(apdu) and apdu[0] in _ALL_CIPHERED


def _iv(system_title: bytes, invocation_counter: int) -> bytes:
    if len(system_title) != 8:
        raise ValueError(f"a system title is 8 bytes, got {len(system_title)}")
    if not 0 <= invocation_counter <= 0xFFFFFFFF:
        raise ValueError("the invocation counter is 32-bit")
    return system_title + invocation_counter.to_bytes(4, "big")


def encrypt(
    security_control: int,
    system_title: bytes,
    invocation_counter: int,
    key: bytes,
    authentication_key: bytes,
    plaintext: bytes,
) -> bytes:
    """The protected content: SC || IC || ciphertext (or plaintext) || tag (none for 0x20)."""
    iv = _iv(system_title, invocation_counter)
    sc = security_control & 0x3F
    header = bytes((security_control,)) + invocation_counter.to_bytes(4, "big")
    if security_control & 0x0F or security_control & SC_COMPRESSED:
        raise ValueError("only security suite 0 without compression is supported")
    if sc & 0x30 == SC_AUTHENTICATED_ENCRYPTED:
        out = _aead(bytes(key)).encrypt(iv, plaintext, bytes((security_control,)) + authentication_key)
        return header + out[: len(plaintext) + TAG_LENGTH]
    if sc & 0x30 == SC_AUTHENTICATED:
        aad = bytes((security_control,)) + authentication_key + plaintext
        tag = _aead(bytes(key)).encrypt(iv, b"", aad)[:TAG_LENGTH]
        return header + plaintext + tag
    if sc & 0x30 == SC_ENCRYPTED:
        return header + _aead(bytes(key)).encrypt(iv, plaintext, None)[: len(plaintext)]
    raise ValueError("security control applies neither authentication nor encryption")


def decrypt(
    content: bytes,
    system_title: bytes,
    key: bytes,
    authentication_key: bytes,
) -> tuple[bytes, int, int]:
    """Verify and decrypt protected content (SC || IC || ...): ``(plaintext, invocation counter,
    security control)``. A failed tag raises :class:`DecryptionError`."""
    if len(content) < 5:
        raise TruncatedFrame(PROTOCOL, "ciphered content shorter than its security header")
    sc = content[0]
    ic = int.from_bytes(content[1:5], "big")
    if sc & 0x0F > 1:
        raise MalformedFrame(
            PROTOCOL, f"security suite {sc & 0x0F} not supported (suites 0 and 1: AES-128-GCM)"
        )
    if sc & SC_COMPRESSED:
        raise MalformedFrame(PROTOCOL, "compressed ciphered APDUs are not supported")
    if len(system_title) != 8:
        raise MalformedFrame(PROTOCOL, f"system title of {len(system_title)} bytes (must be 8)")
    iv = system_title + content[1:5]
    body = content[5:]
    mode = sc & 0x30
    if mode == 0:
        raise MalformedFrame(PROTOCOL, "ciphered APDU with security control applying no protection")
    aead = _aead(bytes(key))
    if mode == SC_ENCRYPTED:
        return aead.encrypt(iv, body, None)[: len(body)], ic, sc
    if len(body) < TAG_LENGTH:
        raise TruncatedFrame(PROTOCOL, "ciphered content shorter than its 12-byte authentication tag")
    payload, tag = body[:-TAG_LENGTH], body[-TAG_LENGTH:]
    if mode == SC_AUTHENTICATED:
        expected = aead.encrypt(iv, b"", bytes((sc,)) + authentication_key + payload)[:TAG_LENGTH]
        if not hmac.compare_digest(expected, tag):
            raise DecryptionError(
                PROTOCOL,
                f"GMAC authentication tag does not verify (sender {system_title.hex()}, "
                f"invocation counter {ic}): wrong authentication key or tampered APDU",
            )
        return payload, ic, sc
    n = len(payload)
    plain = aead.encrypt(iv, payload, None)[:n]  # the keystream applied: the candidate plaintext
    expected = aead.encrypt(iv, plain, bytes((sc,)) + authentication_key)[n : n + TAG_LENGTH]
    if not hmac.compare_digest(expected, tag):
        raise DecryptionError(
            PROTOCOL,
            f"AES-GCM authentication tag does not verify (sender {system_title.hex()}, "
            f"invocation counter {ic}): wrong key or tampered ciphertext",
        )
    return plain, ic, sc


def hls_gmac(system_title: bytes, invocation_counter: int, keys: SecurityKeys, challenge: bytes) -> bytes:
    """HLS-GMAC (mechanism 5) response to ``challenge``: SC 0x10 || IC || GMAC tag (12 bytes)."""
    iv = _iv(system_title, invocation_counter)
    aad = bytes((SC_AUTHENTICATED,)) + keys.authentication_key + challenge
    tag = _aead(keys.encryption_key).encrypt(iv, b"", aad)[:TAG_LENGTH]
    return bytes((SC_AUTHENTICATED,)) + invocation_counter.to_bytes(4, "big") + tag


@dataclass(frozen=True, slots=True)
class CipheredApdu:
    """A deciphered APDU: the plain APDU, who sent it and with which counter and protection."""

    plain: bytes
    system_title: bytes
    invocation_counter: int
    security_control: int
    ciphered_tag: int


def cipher_apdu(
    plain: bytes,
    system_title: bytes,
    invocation_counter: int,
    keys: SecurityKeys,
    *,
    security_control: int = SC_AUTHENTICATED_ENCRYPTED,
    general: bool = False,
    dedicated_key: bytes | None = None,
) -> bytes:
    """Protect a plain xDLMS APDU: service-specific glo-/ded- ciphering by default, or
    general-glo-/general-ded-ciphering (carrying ``system_title``) when ``general``."""
    if not plain:
        raise ValueError("nothing to cipher")
    if security_control & SC_BROADCAST_KEY:
        if keys.broadcast_key is None:
            raise ValueError("security control asks for the broadcast key, which is not configured")
        key = keys.broadcast_key
    else:
        key = dedicated_key if dedicated_key is not None else keys.encryption_key
    content = encrypt(security_control, system_title, invocation_counter, key, keys.authentication_key, plain)
    if general:
        tag = GENERAL_DED_CIPHERING if dedicated_key is not None else GENERAL_GLO_CIPHERING
        return bytes((tag, 8)) + system_title + encode_length(len(content)) + content
    table = DED_TAGS if dedicated_key is not None else GLO_TAGS
    try:
        tag = table[plain[0]]
    except KeyError:
        raise ValueError(f"no service-specific ciphered tag for APDU tag {plain[0]:#04x}") from None
    return bytes((tag,)) + encode_length(len(content)) + content


def decipher_apdu(
    apdu: bytes,
    keys: SecurityKeys,
    *,
    system_title: bytes | None = None,
    guard: InvocationCounterGuard | None = None,
    dedicated_key: bytes | None = None,
) -> CipheredApdu:
    """Verify and decrypt a ciphered APDU. ``system_title`` is the sender's, needed for the
    service-specific forms (the general forms carry it). With a ``guard``, a counter not above
    the sender's last accepted one raises :class:`ReplayError`, and the counter is recorded only
    once the tag verifies. Raises only ``DecodeError`` subclasses on any input."""
    apdu = bytes(apdu)
    if not apdu:
        raise TruncatedFrame(PROTOCOL, "empty ciphered APDU")
    tag = apdu[0]
    pos = 1
    if tag in (GENERAL_GLO_CIPHERING, GENERAL_DED_CIPHERING):
        st_len, pos = decode_length(apdu, pos)
        if st_len != 8:
            raise MalformedFrame(PROTOCOL, f"system title of {st_len} bytes (must be 8)", offset=1)
        if pos + 8 > len(apdu):
            raise TruncatedFrame(PROTOCOL, "system title runs past the APDU", offset=pos)
        sender = apdu[pos : pos + 8]
        pos += 8
    elif tag in _GLO_CIPHERED or tag in _DED_CIPHERED:
        if system_title is None:
            raise DecryptionError(
                PROTOCOL, "service-specific ciphered APDU but the sender's system title is unknown"
            )
        sender = system_title
    else:
        raise MalformedFrame(PROTOCOL, f"tag {tag:#04x} is not a ciphered APDU", offset=0)
    length, pos = decode_length(apdu, pos)
    if pos + length != len(apdu):
        if pos + length > len(apdu):
            raise TruncatedFrame(
                PROTOCOL, f"ciphered content says {length} bytes, {len(apdu) - pos} present", offset=pos
            )
        raise MalformedFrame(
            PROTOCOL, f"{len(apdu) - pos - length} bytes after the ciphered content", offset=pos
        )
    content = apdu[pos:]
    if len(content) < 5:
        raise TruncatedFrame(PROTOCOL, "ciphered content shorter than its security header", offset=pos)
    sc = content[0]
    ded = tag in _DED_CIPHERED or tag == GENERAL_DED_CIPHERING
    if sc & SC_BROADCAST_KEY:
        key = keys.broadcast_key
        if key is None:
            raise NoKeyError(PROTOCOL, "APDU ciphered with the broadcast key, which is not configured")
    elif ded:
        if dedicated_key is None:
            raise NoKeyError(PROTOCOL, "APDU ciphered with a dedicated key, which this session has not got")
        key = dedicated_key
    else:
        key = keys.encryption_key
    ic = int.from_bytes(content[1:5], "big")
    if guard is not None:
        guard.check(sender, ic)
    plain, ic, sc = decrypt(content, sender, key, keys.authentication_key)
    if guard is not None:
        guard.accept(sender, ic)
    return CipheredApdu(plain, sender, ic, sc, tag)


class InvocationCounterGuard:
    """Replay protection: per sender system title, only a counter above the last accepted one
    passes (Green Book, "Invocation counter": the receiver checks that it is increasing).
    ``initial`` seeds it with counters persisted from earlier sessions."""

    def __init__(self, initial: Mapping[bytes, int] | None = None) -> None:
        self._last: dict[bytes, int] = dict(initial or {})

    def last(self, system_title: bytes) -> int | None:
        return self._last.get(bytes(system_title))

    def check(self, system_title: bytes, invocation_counter: int) -> None:
        last = self._last.get(bytes(system_title))
        if last is not None and invocation_counter <= last:
            raise ReplayError(
                PROTOCOL,
                f"invocation counter {invocation_counter} from {bytes(system_title).hex()} is not above "
                f"the last accepted {last}: replayed or reordered APDU",
            )

    def accept(self, system_title: bytes, invocation_counter: int) -> None:
        self.check(system_title, invocation_counter)
        self._last[bytes(system_title)] = invocation_counter

    def snapshot(self) -> dict[bytes, int]:
        """The counters to persist."""
        return dict(self._last)
