"""Replaying a capture log into a hub: a real installation's timestamped frames
(:mod:`smarthub.meters.capture_log`) through the hub's own ports, each taken at its original
time, into the mirror and the history (``smarthub hub --config hub.toml --replay capture.log``).

A frame goes to the hub's port for its protocol when the configuration has one (so the meters'
keys, list profiles and counters apply as they would live); otherwise it is decoded on its own
(:func:`smarthub.meters.decode.decode_points`, with the key and id of the configuration's only
meter of that protocol, if it has exactly one). Either way the hub takes it with ``received`` =
the captured time: points whose frame carries no time of its own are stamped with it, and the
half-hourly intervals are those the meter's traffic made at the time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from smarthub.assembly.config import zone_of
from smarthub.han.ports import PortBatch
from smarthub.meters.capture_log import CapturedFrame
from smarthub.meters.decode import decode_points
from smarthub.meters.errors import DecodeError, classify


@dataclass
class ReplayResult:
    frames: int = 0
    decoded: int = 0
    readings: int = 0
    intervals: int = 0
    problems: Counter[str] = field(default_factory=Counter)  # kind of problem → frames
    first: datetime | None = None
    last: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "decoded": self.decoded,
            "readings": self.readings,
            "intervals_stored": self.intervals,
            "problems": dict(self.problems),
            "first": self.first.isoformat() if self.first else None,
            "last": self.last.isoformat() if self.last else None,
        }


def replay(assembly: Any, frames: Iterable[CapturedFrame]) -> ReplayResult:
    """Feed ``frames`` (in their order) to ``assembly``'s hub; see the module docstring."""
    hub, config = assembly.hub, assembly.config
    ports: dict[str, Any] = {}
    for port in hub.ports.values():
        if hasattr(port, "receive"):
            ports.setdefault(port.protocol, port)
    only: dict[str, list[Any]] = {}
    for m in config.meters:
        only.setdefault(m.protocol, []).append(m)
    out = ReplayResult()
    readings0, intervals0 = hub.stats.readings, hub.stats.intervals_stored
    for f in frames:
        out.frames += 1
        out.first = out.first or f.time
        out.last = f.time
        port = ports.get(f.protocol)
        if port is not None:
            batch = port.receive(f.data)
        else:
            meters = only.get(f.protocol, [])
            m = meters[0] if len(meters) == 1 else None
            try:
                points = decode_points(
                    f.protocol,
                    f.data,
                    key=m.key if m else None,
                    meter=m.id if m else None,
                    authentication_key=m.authentication_key if m else None,
                    assume=ZoneInfo(zone_of(config, m)) if m else ZoneInfo("UTC"),
                )
                batch = PortBatch(points=points)
            except DecodeError as err:
                batch = PortBatch(errors=[err])
        for problem in hub.accept(batch, f.time, port=f"replay:{f.protocol}"):
            out.problems[classify(problem)[1]] += 1
        if batch.points:
            out.decoded += 1
    out.readings = hub.stats.readings - readings0
    out.intervals = hub.stats.intervals_stored - intervals0
    return out
