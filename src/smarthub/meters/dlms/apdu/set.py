"""SET, normal only (0xC1 request, 0xC5 response; no block transfer, no with-list),
IEC 62056-5-3."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smarthub.meters.dlms.apdu.common import descriptor as _descriptor
from smarthub.meters.dlms.apdu.common import need as _need
from smarthub.meters.dlms.axdr import decode_data
from smarthub.meters.dlms.errors import PROTOCOL, MalformedFrame
from smarthub.model.obis import ObisCode


@dataclass(frozen=True, slots=True)
class SetRequestNormal:
    """0xC1 0x01: invoke-id-and-priority, cosem-attribute-descriptor (class id, instance id,
    attribute id), optional selective-access-descriptor (``access_selection``: selector byte +
    its encoded parameters), and ``data``: the encoded ``Data`` to write (:func:`decode_apdu`
    fills ``value`` with it decoded)."""

    invoke_id: int
    class_id: int
    instance: ObisCode
    attribute: int
    data: bytes
    access_selection: bytes | None = None
    priority: int = 0xC0
    value: Any = field(default=None, compare=False)

    def to_bytes(self) -> bytes:
        sel = b"\x00" if self.access_selection is None else b"\x01" + self.access_selection
        return (
            bytes((0xC1, 0x01, (self.invoke_id & 0x0F) | self.priority))
            + self.class_id.to_bytes(2, "big")
            + self.instance.to_bytes()
            + self.attribute.to_bytes(1, "big", signed=True)
            + sel
            + self.data
        )


@dataclass(frozen=True, slots=True)
class SetResponseNormal:
    """0xC5 0x01: invoke-id-and-priority and the data-access-result (0 = success)."""

    invoke_id: int
    result: int = 0
    priority: int = 0xC0

    def to_bytes(self) -> bytes:
        return bytes((0xC5, 0x01, (self.invoke_id & 0x0F) | self.priority, self.result))


def decode_request(data: bytes, max_depth: int) -> SetRequestNormal:
    _need(data, 0, 2, "SET.request")
    if data[1] != 0x01:
        raise MalformedFrame(PROTOCOL, f"SET.request choice {data[1]} not supported (normal only)", offset=1)
    iip, class_id, obis, attribute = _descriptor(data, "SET.request normal")
    pos = 13
    sel = None
    if data[12] == 0x01:
        _need(data, pos, 1, "SET.request access selector")
        _, end = decode_data(data, pos + 1, max_depth=max_depth)  # the access parameters
        sel, pos = data[pos:end], end
    elif data[12] != 0x00:
        raise MalformedFrame(PROTOCOL, f"access-selection flag {data[12]}", offset=12)
    value, end = decode_data(data, pos, max_depth=max_depth)
    if end != len(data):
        raise MalformedFrame(PROTOCOL, "bytes after SET.request data", offset=end)
    return SetRequestNormal(iip & 0x0F, class_id, obis, attribute, data[pos:], sel, iip & 0xF0, value)


def decode_response(data: bytes) -> SetResponseNormal:
    _need(data, 0, 2, "SET.response")
    if data[1] != 0x01:
        raise MalformedFrame(PROTOCOL, f"SET.response choice {data[1]} not supported (normal only)", offset=1)
    _need(data, 0, 4, "SET.response normal")
    if len(data) != 4:
        raise MalformedFrame(PROTOCOL, "bytes after SET.response normal", offset=4)
    return SetResponseNormal(data[2] & 0x0F, data[3], data[2] & 0xF0)
