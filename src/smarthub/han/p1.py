"""A DSMR P1 port on the hub: bytes from any transport in, data points and typed errors out."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from smarthub.han.ports import PortBatch
from smarthub.meters.dsmr import Telegram, TelegramStream, data_points
from smarthub.meters.errors import DecodeError


class P1Port:
    """Frames a P1 byte stream into telegrams and maps each to data points.

    A bad telegram (CRC mismatch, truncation, grammar) yields a :class:`DecodeError` in
    the batch and contributes no data point: nothing from it reaches the mirror or history.
    """

    protocol = "dsmr"

    def __init__(self, name: str, tz: ZoneInfo | None = None) -> None:
        self.name = name
        self.tz = tz or ZoneInfo("Europe/Amsterdam")
        self._stream = TelegramStream(tz=self.tz)
        self.frames = 0
        self.errors = 0

    def receive(self, data: bytes) -> PortBatch:
        batch = PortBatch()
        for item in self._stream.feed(data):
            if isinstance(item, Telegram):
                try:
                    batch.points.extend(data_points(item))
                    self.frames += 1
                except DecodeError as err:
                    self.errors += 1
                    batch.errors.append(err)
            else:
                self.errors += 1
                batch.errors.append(item)
        return batch
