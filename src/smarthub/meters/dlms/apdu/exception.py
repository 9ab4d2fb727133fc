"""ExceptionResponse (0xD8): the server's answer to an APDU it cannot take (IEC 62056-5-3)."""

from __future__ import annotations

from dataclasses import dataclass

from smarthub.meters.dlms.errors import PROTOCOL, TruncatedFrame


@dataclass(frozen=True, slots=True)
class ExceptionResponse:
    """0xD8: state-error (1 service-not-allowed, 2 service-unknown) and service-error."""

    state_error: int
    service_error: int
    detail: bytes = b""

    def to_bytes(self) -> bytes:
        return bytes((0xD8, self.state_error, self.service_error)) + self.detail


def decode(data: bytes) -> ExceptionResponse:
    if len(data) < 3:
        raise TruncatedFrame(PROTOCOL, "ExceptionResponse truncated")
    return ExceptionResponse(data[1], data[2], data[3:])
