"""A wireless M-Bus receiver port (EN 13757-4 / OMS): each radio packet is one frame.

Meters are decrypted with their own keys (mode 5 or 7); a frame from a meter whose key the
hub does not hold, or that fails its 2F2F/MAC check, is a typed error and yields nothing.
OMS meters carry a date-time of minute resolution; between frames every ~30 s that is too
coarse to place a register on a settlement boundary, so by default points are stamped with
the hub's receive time instead (``use_meter_clock=False``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import MutableMapping
from datetime import UTC, tzinfo

from smarthub.han.ports import PortBatch
from smarthub.meters.errors import DecodeError
from smarthub.meters.wmbus import data_points


class WMBusPort:
    protocol = "wmbus"

    def __init__(
        self,
        name: str,
        keys: MutableMapping[str, bytes] | None = None,
        *,
        tz: tzinfo = UTC,
        has_crc: bool = True,
        use_meter_clock: bool = False,
    ) -> None:
        self.name = name
        self.keys: MutableMapping[str, bytes] = keys if keys is not None else {}
        self.tz = tz
        self.has_crc = has_crc
        self.use_meter_clock = use_meter_clock
        self.frames = 0
        self.errors = 0

    def receive(self, data: bytes) -> PortBatch:
        try:
            points = data_points(data, self.keys, tz=self.tz, has_crc=self.has_crc)
        except DecodeError as err:
            self.errors += 1
            return PortBatch(errors=[err])
        self.frames += 1
        if not self.use_meter_clock:
            points = [dataclasses.replace(p, time=None) for p in points]
        return PortBatch(points=points)
