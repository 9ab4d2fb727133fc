"""The DLMS/COSEM transport layer for IP networks: the wrapper (IEC 62056-47, "The wrapper
protocol data unit (WPDU)"; Green Book, "TCP-UDP/IP based communication profiles").

Each APDU travels behind an 8-byte header, all fields big-endian unsigned 16-bit::

    version (0x0001) | source wPort | destination wPort | length of the APDU

Client wPorts are the client SAPs (16 = public client, 1 = management...), the server wPort
is the logical device (1 = management logical device).

Why our own codec: the same reasons as :mod:`smarthub.meters.dlms.hdlc` (speed, sans-I/O
framing with typed errors, fuzzed decoder); the wrapper is small but the framer is where a
truncated TCP segment or a stray byte has to be handled without an exception escaping.
"""

from __future__ import annotations

from dataclasses import dataclass

from smarthub.meters.dlms.errors import PROTOCOL, DecodeError, MalformedFrame, TruncatedFrame

__all__ = ["WRAPPER_VERSION", "WrapperFrame", "WrapperFramer", "decode_wrapper", "encode_wrapper"]

WRAPPER_VERSION = 0x0001
HEADER_LENGTH = 8


@dataclass(frozen=True, slots=True)
class WrapperFrame:
    source: int  # source wPort
    destination: int  # destination wPort
    apdu: bytes


def encode_wrapper(frame: WrapperFrame) -> bytes:
    if len(frame.apdu) > 0xFFFF:
        raise ValueError("a wrapper APDU is at most 65535 bytes")
    if not (0 <= frame.source <= 0xFFFF and 0 <= frame.destination <= 0xFFFF):
        raise ValueError("wPorts are 16-bit")
    return (
        WRAPPER_VERSION.to_bytes(2, "big")
        + frame.source.to_bytes(2, "big")
        + frame.destination.to_bytes(2, "big")
        + len(frame.apdu).to_bytes(2, "big")
        + frame.apdu
    )


def decode_wrapper(data: bytes | bytearray | memoryview) -> WrapperFrame:
    """Decode exactly one WPDU. Raises only ``DecodeError`` subclasses."""
    data = bytes(data)
    if len(data) < HEADER_LENGTH:
        raise TruncatedFrame(PROTOCOL, f"wrapper header needs 8 bytes, got {len(data)}")
    version = int.from_bytes(data[0:2], "big")
    if version != WRAPPER_VERSION:
        raise MalformedFrame(PROTOCOL, f"wrapper version {version:#06x} is not 0x0001", offset=0)
    length = int.from_bytes(data[6:8], "big")
    if len(data) - HEADER_LENGTH < length:
        raise TruncatedFrame(PROTOCOL, f"wrapper says {length} APDU bytes, {len(data) - 8} present", offset=6)
    if len(data) - HEADER_LENGTH > length:
        raise MalformedFrame(
            PROTOCOL, f"{len(data) - 8 - length} bytes after the wrapper APDU", offset=8 + length
        )
    return WrapperFrame(int.from_bytes(data[2:4], "big"), int.from_bytes(data[4:6], "big"), data[8:])


class WrapperFramer:
    """Splits a TCP byte stream into WPDUs. ``feed`` never raises. On a header whose version is
    not 0x0001 it reports one error and skips to the next ``00 01`` that could start a header."""

    def __init__(self, max_apdu: int = 0xFFFF) -> None:
        self.max_apdu = max_apdu
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[WrapperFrame | DecodeError]:
        buf = self._buf
        buf += data
        out: list[WrapperFrame | DecodeError] = []
        i = 0
        n = len(buf)
        while n - i >= 2:
            if buf[i] != 0x00 or buf[i + 1] != 0x01:
                nxt = buf.find(b"\x00\x01", i + 1)
                skip_to = nxt if nxt >= 0 else n - 1
                out.append(MalformedFrame(PROTOCOL, f"{skip_to - i} bytes without a wrapper header skipped"))
                i = skip_to
                continue
            if n - i < HEADER_LENGTH:
                break
            length = int.from_bytes(buf[i + 6 : i + 8], "big")
            if length > self.max_apdu:
                out.append(
                    MalformedFrame(PROTOCOL, f"wrapper APDU of {length} bytes exceeds {self.max_apdu}")
                )
                i += 1
                continue
            if n - i < HEADER_LENGTH + length:
                break
            out.append(
                WrapperFrame(
                    int.from_bytes(buf[i + 2 : i + 4], "big"),
                    int.from_bytes(buf[i + 4 : i + 6], "big"),
                    bytes(buf[i + 8 : i + 8 + length]),
                )
            )
            i += HEADER_LENGTH + length
        del buf[:i]
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)
