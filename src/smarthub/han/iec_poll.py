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
    link: Link,
    *,
    address: str = "",
    meter_id: str | None = None,
    tz: ZoneInfo | None = None,
    max_baud: int = 19200,
) -> Cycle:
    """A poll cycle: sign on, switch baud, read the data block, return its data points.

    On a link that can change its rate (``set_baud``, a serial port), the acknowledgement with
    the option select goes out at the sign-on rate (``send``), and only then does the port
    switch (IEC 62056-21:2002, 6.3.2: the tariff device changes rate after the acknowledgement);
    each cycle starts from the sign-on rate again (``reset``). A link that cannot (TCP to a
    gateway at a fixed rate) should be polled with ``max_baud`` at that rate.
    """

    async def cycle(t: datetime) -> PortBatch:
        master = IecMaster(max_baud=max_baud)
        reset = getattr(link, "reset", None)
        if reset is not None:
            await reset()
        out = master.start(address)
        for _ in range(MAX_EXCHANGES):
            reply = await link.exchange(out, _complete)
            out = b""
            switched = False
            for event in master.receive(reply):
                if isinstance(event, ProtocolError):
                    return PortBatch(errors=[event.error])
                if isinstance(event, SendBytes):
                    out += event.data
                elif isinstance(event, SwitchBaud):
                    set_baud = getattr(link, "set_baud", None)
                    send = getattr(link, "send", None)
                    if set_baud is not None and send is not None:
                        await send(out)  # the option select leaves at the sign-on rate
                        out = b""
                        await set_baud(event.baud)
                        switched = True
                elif isinstance(event, Readout):
                    kwargs = {"tz": tz} if tz is not None else {}
                    return PortBatch(points=data_points(event, meter_id=meter_id, time=t, **kwargs))
            if not out and not switched:
                break
        return PortBatch(errors=[MalformedFrame("iec62056-21", "meter did not complete a data readout")])

    return cycle
