"""Polling an IEC 62056-21 meter (optical head or RS-485 in mode C) through any `Link`."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from smarthub.han.poll import Cycle, Link
from smarthub.han.ports import PortBatch
from smarthub.meters.errors import MalformedFrame
from smarthub.meters.iec62056_21 import IecMaster, ProtocolError, Readout, SendBytes, SwitchBaud, data_points

MAX_EXCHANGES = 6  # request, option select, and a few echo/noise retries


def _complete(buf: bytes) -> bool:
    """A data message is whole one byte (the BCC) after ETX; any other message at CR LF."""
    stx = buf.find(b"\x02")
    if stx >= 0:
        etx = buf.find(b"\x03", stx)
        return etx >= 0 and len(buf) > etx + 1
    return buf.endswith(b"\r\n")


def iec_cycle(
    link: Link, *, address: str = "", meter_id: str | None = None, tz: ZoneInfo | None = None
) -> Cycle:
    """A poll cycle: sign on, switch baud, read the data block, return its data points."""

    async def cycle(t: datetime) -> PortBatch:
        master = IecMaster()
        out = master.start(address)
        for _ in range(MAX_EXCHANGES):
            reply = await link.exchange(out, _complete)
            out = b""
            for event in master.receive(reply):
                if isinstance(event, ProtocolError):
                    return PortBatch(errors=[event.error])
                if isinstance(event, SendBytes):
                    out += event.data
                elif isinstance(event, SwitchBaud):
                    set_baud = getattr(link, "set_baud", None)
                    if set_baud is not None:
                        await set_baud(event.baud)
                elif isinstance(event, Readout):
                    kwargs = {"tz": tz} if tz is not None else {}
                    return PortBatch(points=data_points(event, meter_id=meter_id, time=t, **kwargs))
            if not out:
                break
        return PortBatch(errors=[MalformedFrame("iec62056-21", "meter did not complete a data readout")])

    return cycle
