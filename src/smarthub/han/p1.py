"""A DSMR P1 port on the hub: bytes from any transport in, readings and typed errors out."""

from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from smarthub.meters.dsmr import Telegram, TelegramStream, readings
from smarthub.meters.errors import DecodeError
from smarthub.model import Reading


@dataclass
class PortBatch:
    readings: list[Reading] = field(default_factory=list)
    errors: list[DecodeError] = field(default_factory=list)


class P1Port:
    """Frames a P1 byte stream into telegrams and maps each to readings.

    A bad telegram (CRC mismatch, truncation, grammar) yields a :class:`DecodeError` in
    the batch and contributes no reading: nothing from it reaches the mirror or history.
    """

    protocol = "dsmr"

    def __init__(self, name: str, tz: ZoneInfo | None = None) -> None:
        self.name = name
        self.tz = tz or ZoneInfo("Europe/Amsterdam")
        self._stream = TelegramStream(tz=self.tz)
        self.telegrams = 0
        self.errors = 0

    def receive(self, data: bytes) -> PortBatch:
        batch = PortBatch()
        for item in self._stream.feed(data):
            if isinstance(item, Telegram):
                try:
                    batch.readings.extend(readings(item))
                    self.telegrams += 1
                except DecodeError as err:
                    self.errors += 1
                    batch.errors.append(err)
            else:
                self.errors += 1
                batch.errors.append(item)
        return batch
