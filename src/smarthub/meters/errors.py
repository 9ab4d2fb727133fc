"""Typed decode errors shared by every codec. A decoder raises nothing else on bad input.

The classes say *what kind* of problem a frame has, so that `smarthub decode` and the hub can
tell a user the one thing to do about it (the most common support question in this field):

==========================  ======  ==========================================================
class                       status  meaning / what to do
==========================  ======  ==========================================================
:class:`MalformedFrame`     2       the bytes do not follow the protocol (wrong protocol chosen?)
:class:`ChecksumError`      3       CRC / FCS / BCC / checksum mismatch: a corrupt capture
:class:`TruncatedFrame`     4       the frame ends early: capture the whole frame
:class:`KeyMissing`         5       the frame is encrypted and no key was given for its meter
:class:`WrongKey`           6       a key was given but the tag fails / it decrypts to garbage
:class:`UnknownLayout`      7       decoded, but no list profile / mapping knows the values
==========================  ======  ==========================================================

``exit_status(err)`` gives the status above (``smarthub decode`` exits with it); subclasses of
several (a wM-Bus "no key" is a ``KeyMissing`` and a ``wmbus.DecryptionError``) resolve in the
order ``UnknownLayout``, ``KeyMissing``, ``WrongKey``, ``TruncatedFrame``, ``ChecksumError``,
``MalformedFrame`` (the most specific first).
"""

from __future__ import annotations

from collections.abc import Sequence


class DecodeError(ValueError):
    """Bad input to a meter codec. ``str(err)`` says which protocol, what was wrong, and where."""

    def __init__(self, protocol: str, message: str, *, offset: int | None = None) -> None:
        self.protocol = protocol
        self.offset = offset
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{protocol}: {message}{where}")


class ChecksumError(DecodeError):
    """The frame's CRC / checksum does not match its contents."""


class TruncatedFrame(DecodeError):
    """The frame ends before its structure says it should."""


class MalformedFrame(DecodeError):
    """The bytes do not follow the protocol's grammar."""


class KeyMissing(DecodeError):
    """The frame is encrypted and no key is configured for its sender."""


class WrongKey(DecodeError):
    """A key was tried and failed: the authentication tag does not verify, or the plaintext is
    not what the protocol requires (wM-Bus ``2F 2F``, a parseable DLMS APDU)."""


class UnknownLayout(DecodeError):
    """The frame decoded, but its values cannot be named: a DLMS list without OBIS codes whose
    list identifier and length match no list profile. ``values`` holds the raw values, in order,
    as ``repr`` strings, so a user can write the missing profile."""

    def __init__(self, protocol: str, message: str, values: Sequence[str] = ()) -> None:
        self.values = tuple(values)
        super().__init__(protocol, message)


EXIT_STATUS: tuple[tuple[type[DecodeError], int, str], ...] = (
    (UnknownLayout, 7, "unknown list layout"),
    (KeyMissing, 5, "no key"),
    (WrongKey, 6, "wrong key"),
    (TruncatedFrame, 4, "truncated frame"),
    (ChecksumError, 3, "corrupt frame"),
    (MalformedFrame, 2, "malformed frame"),
)


def classify(err: DecodeError) -> tuple[int, str]:
    """``(exit status, kind)`` of a decode error (see the module docstring)."""
    for cls, status, kind in EXIT_STATUS:
        if isinstance(err, cls):
            return status, kind
    return 2, "bad input"


def exit_status(err: DecodeError) -> int:
    return classify(err)[0]
