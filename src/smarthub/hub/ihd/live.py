"""Live power for the IHD: the data mirror tells this module of each new reading, and it pushes
the home's power to every open screen (Server-Sent Events, the HTML living standard's
``text/event-stream``), so a new reading is on screen as soon as it is mirrored, not at the
next poll.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

from smarthub.hub.mirror import DataMirror
from smarthub.model import Reading
from smarthub.model.obis import EXPORT_ACTIVE_POWER, IMPORT_ACTIVE_POWER

_POWER = (IMPORT_ACTIVE_POWER, EXPORT_ACTIVE_POWER)


class LivePower:
    """Net electrical power of the home's supply meter (import minus export, W)."""

    def __init__(self, mirror: DataMirror, meter: str | None, queue_size: int = 16) -> None:
        self.mirror = mirror
        self.meter = meter
        self.queue_size = queue_size
        self._queues: set[asyncio.Queue[dict[str, Any]]] = set()
        mirror.observers.append(self.observe)

    def current(self) -> dict[str, Any] | None:
        if self.meter is None:
            return None
        imp = self.mirror.latest(self.meter, IMPORT_ACTIVE_POWER)
        exp = self.mirror.latest(self.meter, EXPORT_ACTIVE_POWER)
        if imp is None and exp is None:
            return None
        watts = Decimal(0)
        times = []
        for r, sign in ((imp, 1), (exp, -1)):
            if r is not None:
                value, _unit = r.in_base_unit()  # W
                watts += sign * value
                times.append(r.time)
        return {"watts": str(watts.quantize(Decimal(1))), "time": max(times).isoformat()}

    def observe(self, readings: list[Reading]) -> None:
        if not any(r.meter == self.meter and r.obis in _POWER for r in readings):
            return
        now = self.current()
        if now is None:
            return
        for q in list(self._queues):
            if q.full():  # a screen that stopped reading gets the newest value, not a backlog
                q.get_nowait()
            q.put_nowait(now)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self.queue_size)
        self._queues.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._queues.discard(q)

    @property
    def listeners(self) -> int:
        return len(self._queues)


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
