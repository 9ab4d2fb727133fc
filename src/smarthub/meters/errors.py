"""Typed decode errors shared by every codec. A decoder raises nothing else on bad input."""

from __future__ import annotations


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
