"""What the COSEM APDUs share: the invoke-id-and-priority byte, the length check, and the
attribute/method descriptor of the normal SET and ACTION requests (IEC 62056-5-3)."""

from __future__ import annotations

from smarthub.meters.dlms.errors import PROTOCOL, TruncatedFrame
from smarthub.model.obis import ObisCode


def invoke_id_and_priority(invoke_id: int, *, high_priority: bool = True, confirmed: bool = True) -> int:
    return (invoke_id & 0x0F) | (0x40 if confirmed else 0) | (0x80 if high_priority else 0)


def need(data: bytes, pos: int, n: int, what: str) -> None:
    if pos + n > len(data):
        raise TruncatedFrame(PROTOCOL, f"{what} truncated", offset=pos)


def descriptor(data: bytes, what: str) -> tuple[int, int, ObisCode, int]:
    """invoke-id-and-priority, class id, instance id and attribute/method id of a normal
    SET/ACTION request (bytes 2..11)."""
    need(data, 0, 13, what)
    return (
        data[2],
        int.from_bytes(data[3:5], "big"),
        ObisCode(*data[5:11]),
        int.from_bytes(data[11:12], "big", signed=True),
    )
