"""ACTION, normal only (0xC3 request, 0xC7 response; no block transfer, no with-list),
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
class ActionRequestNormal:
    """0xC3 0x01: invoke-id-and-priority, cosem-method-descriptor (class id, instance id,
    method id) and the optional method-invocation-parameters (``parameter``: one encoded
    ``Data``, or ``None``; :func:`decode_apdu` fills ``value`` with it decoded)."""

    invoke_id: int
    class_id: int
    instance: ObisCode
    method: int
    parameter: bytes | None = None
    priority: int = 0xC0
    value: Any = field(default=None, compare=False)

    def to_bytes(self) -> bytes:
        params = b"\x00" if self.parameter is None else b"\x01" + self.parameter
        return (
            bytes((0xC3, 0x01, (self.invoke_id & 0x0F) | self.priority))
            + self.class_id.to_bytes(2, "big")
            + self.instance.to_bytes()
            + self.method.to_bytes(1, "big", signed=True)
            + params
        )


@dataclass(frozen=True, slots=True)
class ActionResponseNormal:
    """0xC7 0x01: invoke-id-and-priority, the action-result (0 = success) and the optional
    return-parameters, a Get-Data-Result: ``data`` (an encoded ``Data``; ``value`` decoded) or
    ``data_result`` (a data-access-result), or neither when absent."""

    invoke_id: int
    result: int = 0
    data: bytes | None = None
    data_result: int | None = None
    priority: int = 0xC0
    value: Any = field(default=None, compare=False)

    def to_bytes(self) -> bytes:
        head = bytes((0xC7, 0x01, (self.invoke_id & 0x0F) | self.priority, self.result))
        if self.data is not None:
            return head + b"\x01\x00" + self.data
        if self.data_result is not None:
            return head + bytes((0x01, 0x01, self.data_result))
        return head + b"\x00"


def decode_request(data: bytes, max_depth: int) -> ActionRequestNormal:
    _need(data, 0, 2, "ACTION.request")
    if data[1] != 0x01:
        raise MalformedFrame(
            PROTOCOL, f"ACTION.request choice {data[1]} not supported (normal only)", offset=1
        )
    iip, class_id, obis, method = _descriptor(data, "ACTION.request normal")
    if data[12] == 0x00:
        if len(data) != 13:
            raise MalformedFrame(PROTOCOL, "bytes after ACTION.request without parameters", offset=13)
        return ActionRequestNormal(iip & 0x0F, class_id, obis, method, None, iip & 0xF0)
    if data[12] != 0x01:
        raise MalformedFrame(PROTOCOL, f"method-invocation-parameters flag {data[12]}", offset=12)
    value, end = decode_data(data, 13, max_depth=max_depth)
    if end != len(data):
        raise MalformedFrame(PROTOCOL, "bytes after ACTION.request parameters", offset=end)
    return ActionRequestNormal(iip & 0x0F, class_id, obis, method, data[13:], iip & 0xF0, value)


def decode_response(data: bytes, max_depth: int) -> ActionResponseNormal:
    _need(data, 0, 2, "ACTION.response")
    if data[1] != 0x01:
        raise MalformedFrame(
            PROTOCOL, f"ACTION.response choice {data[1]} not supported (normal only)", offset=1
        )
    _need(data, 0, 5, "ACTION.response normal")
    iip, result = data[2], data[3]
    if data[4] == 0x00:
        if len(data) != 5:
            raise MalformedFrame(PROTOCOL, "bytes after ACTION.response without return parameters", offset=5)
        return ActionResponseNormal(iip & 0x0F, result, None, None, iip & 0xF0)
    if data[4] != 0x01:
        raise MalformedFrame(PROTOCOL, f"return-parameters flag {data[4]}", offset=4)
    _need(data, 5, 2, "ACTION.response return parameters")
    if data[5] == 0x00:
        value, end = decode_data(data, 6, max_depth=max_depth)
        if end != len(data):
            raise MalformedFrame(PROTOCOL, "bytes after ACTION.response return data", offset=end)
        return ActionResponseNormal(iip & 0x0F, result, data[6:], None, iip & 0xF0, value)
    if data[5] == 0x01:
        if len(data) != 7:
            raise MalformedFrame(PROTOCOL, "ACTION.response data-access-result is one byte", offset=6)
        return ActionResponseNormal(iip & 0x0F, result, None, data[6], iip & 0xF0)
    raise MalformedFrame(PROTOCOL, f"Get-Data-Result choice {data[5]}", offset=5)
