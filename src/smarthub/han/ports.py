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


class Port(Protocol):
    name: str
    protocol: str

    def receive(self, data: bytes) -> PortBatch: ...
