"""GET (0xC0 request: normal, next; 0xC4 response: normal, with datablock), IEC 62056-5-3."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smarthub.meters.dlms.apdu.common import need as _need
from smarthub.meters.dlms.axdr import decode_data, decode_length, encode_length
from smarthub.meters.dlms.errors import PROTOCOL, MalformedFrame, TruncatedFrame
from smarthub.model.obis import ObisCode


@dataclass(frozen=True, slots=True)
class GetRequestNormal:
    invoke_id: int
    class_id: int
    instance: ObisCode
    attribute: int
    access_selection: bytes | None = None  # selector byte + encoded parameters
    priority: int = 0xC0  # high priority, confirmed

    def to_bytes(self) -> bytes:
        sel = b"\x00" if self.access_selection is None else b"\x01" + self.access_selection
        return (
            bytes((0xC0, 0x01, (self.invoke_id & 0x0F) | self.priority))
            + self.class_id.to_bytes(2, "big")
            + self.instance.to_bytes()
            + self.attribute.to_bytes(1, "big", signed=True)
            + sel
        )


@dataclass(frozen=True, slots=True)
class GetRequestNext:
    invoke_id: int
    block_number: int
    priority: int = 0xC0

    def to_bytes(self) -> bytes:
        return bytes((0xC0, 0x02, (self.invoke_id & 0x0F) | self.priority)) + self.block_number.to_bytes(
            4, "big"
        )


@dataclass(frozen=True, slots=True)
class GetResponseNormal:
    """``result`` 0 with ``data`` (the encoded value), or a data-access-result and no data.
    :func:`decode_apdu` also fills ``value`` with the decoded data."""

    invoke_id: int
    data: bytes | None
    result: int = 0
    priority: int = 0xC0
    value: Any = field(default=None, compare=False)

    def to_bytes(self) -> bytes:
        head = bytes((0xC4, 0x01, (self.invoke_id & 0x0F) | self.priority))
        if self.data is None:
            return head + bytes((0x01, self.result))
        return head + b"\x00" + self.data


@dataclass(frozen=True, slots=True)
class GetResponseWithBlock:
    """One block of a long GET: ``raw_data`` is a piece of the encoded value (or ``None`` with
    a data-access-result)."""

    invoke_id: int
    last_block: bool
    block_number: int
    raw_data: bytes | None
    result: int = 0
    priority: int = 0xC0

    def to_bytes(self) -> bytes:
        head = bytes((0xC4, 0x02, (self.invoke_id & 0x0F) | self.priority, 1 if self.last_block else 0))
        head += self.block_number.to_bytes(4, "big")
        if self.raw_data is None:
            return head + bytes((0x01, self.result))
        return head + b"\x00" + encode_length(len(self.raw_data)) + self.raw_data


def decode_request(data: bytes) -> GetRequestNormal | GetRequestNext:
    _need(data, 0, 3, "GET.request")
    kind, iip = data[1], data[2]
    if kind == 0x01:
        _need(data, 3, 10, "GET.request normal")
        class_id = int.from_bytes(data[3:5], "big")
        obis = ObisCode(*data[5:11])
        attribute = int.from_bytes(data[11:12], "big", signed=True)
        sel = None
        if data[12]:
            sel = data[13:]
            if not sel:
                raise TruncatedFrame(PROTOCOL, "GET.request access selection missing", offset=13)
        elif len(data) != 13:
            raise MalformedFrame(PROTOCOL, "bytes after GET.request normal", offset=13)
        return GetRequestNormal(iip & 0x0F, class_id, obis, attribute, sel, iip & 0xF0)
    if kind == 0x02:
        if len(data) != 7:
            raise MalformedFrame(PROTOCOL, "GET.request next is 7 bytes")
        return GetRequestNext(iip & 0x0F, int.from_bytes(data[3:7], "big"), iip & 0xF0)
    raise MalformedFrame(PROTOCOL, f"GET.request choice {kind} not supported", offset=1)


def decode_response(data: bytes, max_depth: int) -> GetResponseNormal | GetResponseWithBlock:
    _need(data, 0, 4, "GET.response")
    kind, iip = data[1], data[2]
    if kind == 0x01:
        if data[3] == 0x00:
            value, end = decode_data(data, 4, max_depth=max_depth)
            if end != len(data):
                raise MalformedFrame(PROTOCOL, "bytes after GET.response data", offset=end)
            return GetResponseNormal(iip & 0x0F, data[4:], 0, iip & 0xF0, value)
        if data[3] == 0x01:
            if len(data) != 5:
                raise MalformedFrame(PROTOCOL, "GET.response data-access-result is 5 bytes")
            return GetResponseNormal(iip & 0x0F, None, data[4], iip & 0xF0)
        raise MalformedFrame(PROTOCOL, f"Get-Data-Result choice {data[3]}", offset=3)
    if kind == 0x02:
        _need(data, 0, 10, "GET.response with datablock")
        last = data[3]
        if last > 1:
            raise MalformedFrame(PROTOCOL, f"last-block boolean {last}", offset=3)
        block = int.from_bytes(data[4:8], "big")
        if data[8] == 0x00:
            length, pos = decode_length(data, 9)
            if pos + length != len(data):
                raise MalformedFrame(PROTOCOL, "raw-data length does not match the APDU", offset=9)
            return GetResponseWithBlock(iip & 0x0F, bool(last), block, data[pos:], 0, iip & 0xF0)
        if data[8] == 0x01:
            if len(data) != 10:
                raise MalformedFrame(PROTOCOL, "datablock data-access-result is one byte")
            return GetResponseWithBlock(iip & 0x0F, bool(last), block, None, data[9], iip & 0xF0)
        raise MalformedFrame(PROTOCOL, f"DataBlock-G result choice {data[8]}", offset=8)
    raise MalformedFrame(PROTOCOL, f"GET.response choice {kind} not supported", offset=1)
