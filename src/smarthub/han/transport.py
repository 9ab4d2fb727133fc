"""HAN transports: where a port's bytes come from.

`SimulatedP1Transport` drives a simulated meter from the injected clock (no real I/O).
`SerialP1Transport` reads a real P1 port through pyserial (DSMR 5: 115200 8N1; DSMR 2/3:
9600 7E1) in a thread and hands the bytes to the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from smarthub.clock import Clock, next_aligned

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


class SerialP1Transport:
    """A real P1 port. Bytes are read in a thread and delivered to ``sink`` on the loop."""

    def __init__(self, device: str, sink: Sink, *, baudrate: int = 115200, dsmr2: bool = False) -> None:
        self.device = device
        self.sink = sink
        self.baudrate = 9600 if dsmr2 else baudrate
        self.dsmr2 = dsmr2
        self._stop = threading.Event()

    async def run(self) -> None:
        import serial  # pyserial; imported here so the hub runs without a serial port

        loop = asyncio.get_running_loop()
        port = serial.Serial(
            self.device,
            baudrate=self.baudrate,
            bytesize=serial.SEVENBITS if self.dsmr2 else serial.EIGHTBITS,
            parity=serial.PARITY_EVEN if self.dsmr2 else serial.PARITY_NONE,
            stopbits=serial.STOPBITS_ONE,
            timeout=0.5,
        )

        def pump() -> None:
            with port:
                while not self._stop.is_set():
                    data = port.read(4096)
                    if data:
                        loop.call_soon_threadsafe(self.sink, data)

        try:
            await asyncio.to_thread(pump)
        finally:
            self._stop.set()

    def stop(self) -> None:
        self._stop.set()
