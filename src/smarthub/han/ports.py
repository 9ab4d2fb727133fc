"""What every HAN port hands the hub: protocol data points and typed decode errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from smarthub.meters.errors import DecodeError
from smarthub.model.datapoint import DataPoint


@dataclass
class PortBatch:
    points: list[DataPoint] = field(default_factory=list)
    errors: list[DecodeError] = field(default_factory=list)


class HanPort(Protocol):
    """A port the hub holds: named, of one protocol. Most take a byte stream (:class:`Port`);
    the ZigBee port takes the bridge's frames (device, cluster, payload) instead."""

    name: str
    protocol: str


class Port(HanPort, Protocol):
    """A port fed with the bytes of its transport."""

    def receive(self, data: bytes) -> PortBatch: ...
