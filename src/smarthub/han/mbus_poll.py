"""Polling a wired M-Bus meter (EN 13757-2/3) through any `Link`: REQ_UD2 / RSP_UD, following
multi-telegram reads while the meter says more records follow."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

from smarthub.han.poll import Cycle, Link
from smarthub.han.ports import PortBatch
from smarthub.meters.mbus import MultiTelegramRead


def complete_mbus(buf: bytes) -> bool:
    """An E5 acknowledgement, or a whole long frame (68 L L 68 ... CS 16: L + 6 bytes)."""
    if buf[:1] == b"\xe5":
        return True
    if len(buf) >= 4 and buf[0] == 0x68:
        return len(buf) >= buf[1] + 6
    return len(buf) >= 5 and buf[0] == 0x10  # short frame


def mbus_cycle(link: Link, address: int, *, tz: tzinfo = UTC, max_telegrams: int = 16) -> Cycle:
    async def cycle(t: datetime) -> PortBatch:
        read = MultiTelegramRead(address, max_telegrams=max_telegrams)
        request: bytes | None = read.start()
        while request is not None:
            request = read.feed(await link.exchange(request, complete_mbus))
        return PortBatch(points=read.data_points(t, tz))

    return cycle
