"""DataNotification (0x0F), the unconfirmed push of a meter's HAN port (IEC 62056-5-3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smarthub.meters.dlms.apdu.common import need as _need
from smarthub.meters.dlms.axdr import DateTime, decode_data
from smarthub.meters.dlms.errors import PROTOCOL, MalformedFrame


@dataclass(frozen=True, slots=True)
class DataNotification:
    """0x0F: long-invoke-id-and-priority (4 bytes), optional date-time, the notification body
    (one ``Data``; ``body`` holds it encoded, ``value`` decoded)."""

    long_invoke_id: int
    date_time: DateTime | None
    body: bytes
    value: Any = field(default=None, compare=False)

    def to_bytes(self) -> bytes:
        # date-time is OCTET STRING OPTIONAL; the Green Book examples send it as 0C + 12 bytes
        # (the length doubling as the presence flag), 00 when absent.
        dt = b"\x00" if self.date_time is None else b"\x0c" + self.date_time.to_bytes()
        return b"\x0f" + self.long_invoke_id.to_bytes(4, "big") + dt + self.body


def decode(data: bytes, max_depth: int) -> DataNotification:
    _need(data, 0, 7, "DataNotification")
    long_id = int.from_bytes(data[1:5], "big")
    flag = data[5]
    pos = 6
    dt = None
    if flag:
        # 0C + 12 bytes (Green Book examples); also 01 0C + 12 and 01 + 12 (dlms-cosem writes
        # this), and 09 0C + 12 (Kaifa's Norwegian HAN lists tag it as a Data octet-string).
        if flag in (0x01, 0x09) and data[6:7] == b"\x0c":
            pos = 7
        elif flag not in (0x01, 0x0C):
            raise MalformedFrame(PROTOCOL, f"DataNotification date-time length {flag} (must be 12)", offset=5)
        _need(data, pos, 12, "DataNotification date-time")
        dt = DateTime.from_bytes(data[pos : pos + 12])
        pos += 12
    value, end = decode_data(data, pos, max_depth=max_depth)
    if end != len(data):
        raise MalformedFrame(PROTOCOL, "bytes after the DataNotification body", offset=end)
    return DataNotification(long_id, dt, data[pos:], value)
