"""Polling a wired M-Bus meter (EN 13757-2/3) through any `Link`: REQ_UD2 / RSP_UD, following
multi-telegram reads while the meter says more records follow."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

from smarthub.han.poll import Cycle, Link
from smarthub.han.ports import PortBatch
from smarthub.meters.errors import MalformedFrame
from smarthub.meters.mbus import ADDR_SECONDARY, MBusMaster, MultiTelegramRead, select_secondary


def complete_mbus(buf: bytes) -> bool:
    """An E5 acknowledgement, or a whole long frame (68 L L 68 ... CS 16: L + 6 bytes)."""
    if buf[:1] == b"\xe5":
        return True
    if len(buf) >= 4 and buf[0] == 0x68:
        return len(buf) >= buf[1] + 6
    return len(buf) >= 5 and buf[0] == 0x10  # short frame


def mbus_cycle(
    link: Link,
    address: int,
    *,
    tz: tzinfo = UTC,
    max_telegrams: int = 16,
    secondary: str | None = None,
    manufacturer: str | None = None,
) -> Cycle:
    """A poll cycle of the slave at primary ``address``, or, with ``secondary`` (8 BCD digits, F a
    wildcard; optionally its ``manufacturer``), of the slave selected by its secondary address
    (EN 13757-3, SND_UD with CI 0x52 to address 0xFD, acknowledged with E5, then read at 0xFD).

    The frame count bit is kept from one cycle to the next (EN 13757-2): a slave answers a
    REQ_UD2 with the FCB of the previous one by repeating its last telegram, so a master that
    started every poll with the same FCB would read a one-telegram meter's first answer forever.
    """
    master = MBusMaster()

    async def cycle(t: datetime) -> PortBatch:
        target = address
        if secondary is not None:
            ack = await link.exchange(select_secondary(secondary, manufacturer), complete_mbus)
            if ack[:1] != b"\xe5":
                raise MalformedFrame(
                    "mbus", f"no slave acknowledged the selection of secondary address {secondary}"
                )
            target = ADDR_SECONDARY
        read = MultiTelegramRead(target, max_telegrams=max_telegrams, master=master)
        request: bytes | None = read.start()
        while request is not None:
            request = read.feed(await link.exchange(request, complete_mbus))
        return PortBatch(points=read.data_points(t, tz))

    return cycle
