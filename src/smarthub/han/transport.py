"""HAN transports: where a port's bytes come from.

`SimulatedP1Transport` drives a simulated meter from the injected clock (no real I/O).
`SerialP1Transport` reads a real P1 port (DSMR 5: 115200 8N1; DSMR 2/3: 9600 7E1): a
:class:`~smarthub.han.serial_port.SerialStream` with the P1 settings.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from smarthub.clock import Clock, next_aligned
from smarthub.han.serial_port import SerialStream

Sink = Callable[[bytes], None]


class TelegramSource(Protocol):
    def telegram_at(self, t: datetime) -> bytes: ...


class SimulatedP1Transport:
    """Emits one telegram every ``period`` of simulated time, aligned to the period.

    A real DSMR 5 meter sends every second; the simulator sends less often so that a
    simulated day runs in seconds. Telegrams carry the meter's own timestamps, so the
    hub's arithmetic does not depend on how late the event loop delivers them.
    """

    def __init__(
        self,
        meter: TelegramSource,
        clock: Clock,
        sink: Sink,
        *,
        period: timedelta = timedelta(seconds=60),
        start: datetime | None = None,
        chunk: int = 0,
    ) -> None:
        self.meter = meter
        self.clock = clock
        self.sink = sink
        self.period = period
        self.start = start
        self.chunk = chunk  # split each telegram into chunks of this size, as a UART would
        self.sent = 0
        self.paused = False
        self.next_time: datetime | None = None
        self.sending_at: datetime | None = None

    async def run(self, until: datetime | None = None) -> None:
        """Emit telegrams until ``until`` (forever if None); a later call carries on from there."""
        if self.next_time is None:
            t0 = self.start or self.clock.now()
            self.next_time = next_aligned(t0, self.period)
        while until is None or self.next_time <= until:
            t = self.next_time
            await self.clock.sleep_until(t)
            if not self.paused:
                self.sending_at = t  # a simulated wire delivers at the instant it sends
                data = self.meter.telegram_at(t)
                if self.chunk:
                    for i in range(0, len(data), self.chunk):
                        self.sink(data[i : i + self.chunk])
                else:
                    self.sink(data)
                self.sent += 1
            self.next_time = t + self.period


class SerialP1Transport(SerialStream):
    """A real P1 port (DSMR 4/5: 115200 8N1; ``dsmr2``: 9600 7E1), as :class:`SerialStream`."""

    def __init__(self, device: str, sink: Sink, *, baudrate: int = 115200, dsmr2: bool = False) -> None:
        super().__init__(device, sink, baud=9600 if dsmr2 else baudrate, format="7E1" if dsmr2 else "8N1")
        self.dsmr2 = dsmr2
