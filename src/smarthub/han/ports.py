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
    # The radio's reception level for the frame (dBm), when the receiver reports one, and the
    # receiver's sensitivity, against which the hub judges a weak signal (smarthub.han.media).
    rssi_dbm: float | None = None
    sensitivity_dbm: float | None = None


class HanPort(Protocol):
    """A port the hub holds: named, of one protocol. Most take a byte stream (:class:`Port`);
    the ZigBee port takes the bridge's frames (device, cluster, payload) instead."""

    name: str
    protocol: str


class Port(HanPort, Protocol):
    """A port fed with the bytes of its transport."""

    def receive(self, data: bytes) -> PortBatch: ...
