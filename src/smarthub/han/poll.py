"""Poll loops for meters the hub must ask (DLMS/COSEM, IEC 62056-21, wired M-Bus), and the
link abstraction they talk through.

A poll cycle is protocol code (a sans-I/O master driven over a `Link`) that returns a
`PortBatch`. `PollLoop` runs cycles on the injected clock, aligned to the poll period so
that register samples fall on settlement boundaries, and never lets one meter's failure
stop the others: a failed cycle is counted and reported as a typed error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from smarthub.clock import Clock, next_aligned
from smarthub.han.ports import PortBatch
from smarthub.meters.errors import DecodeError

log = logging.getLogger(__name__)


class Link(Protocol):
    async def exchange(self, request: bytes, complete: Callable[[bytes], bool]) -> bytes: ...


class Responder(Protocol):
    def respond(self, request: bytes, t: datetime) -> bytes | None: ...


class SimulatedLink:
    """A wire to a simulated meter: the meter answers as of the cycle's instant ``t``."""

    def __init__(self, meter: Responder) -> None:
        self.meter = meter
        self.t: datetime | None = None
        self.exchanges = 0

    async def exchange(self, request: bytes, complete: Callable[[bytes], bool]) -> bytes:
        if self.t is None:
            raise RuntimeError("SimulatedLink used outside a poll cycle")
        self.exchanges += 1
        return self.meter.respond(request, self.t) or b""


Cycle = Callable[[datetime], Awaitable[PortBatch]]
T = TypeVar("T")


def simulated(link: SimulatedLink, cycle: Cycle) -> Cycle:
    """Run ``cycle`` with the simulated meter answering as of each cycle's instant."""

    async def run(t: datetime) -> PortBatch:
        link.t = t
        return await cycle(t)

    return run


class PollLoop:
    def __init__(
        self,
        name: str,
        clock: Clock,
        cycle: Cycle,
        sink: Callable[[PortBatch, datetime], object],
        *,
        period: timedelta,
        start: datetime | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.clock = clock
        self.cycle = cycle
        self.sink = sink
        self.period = period
        self.start = start
        self.timeout = timeout
        self.next_time: datetime | None = None
        self.cycles = 0
        self.failures = 0
        self.paused = False
        # Called after every cycle, ok or not (the hub's link diagnostics watch this).
        self.observers: list[Callable[[PollLoop, datetime], object]] = []
        self._cycle_lock = asyncio.Lock()
        self.last_cycle: datetime | None = None

    async def run(self, until: datetime | None = None) -> None:
        if self.next_time is None:
            t0 = self.start or self.clock.now()
            self.next_time = next_aligned(t0, self.period)
        while until is None or self.next_time <= until:
            t = self.next_time
            await self.clock.sleep_until(t)
            if self.next_time != t:
                continue  # a re-poll (poll_now) took this slot while we slept
            if not self.paused:
                await self._one(t)
            if self.next_time == t:
                self.next_time = t + self.period

    async def exclusive(self, session: Callable[[datetime], Awaitable[T]]) -> T:
        """Run another session with this loop's meter (a control command) between two cycles,
        at an instant after every one the meter has answered for; the schedule skips any
        cycle that instant has overtaken."""
        async with self._cycle_lock:
            t = self.clock.now()
            if self.last_cycle is not None and t <= self.last_cycle:
                t = self.last_cycle + timedelta(seconds=1)
            self.last_cycle = t
            while self.next_time is not None and self.next_time <= t:
                self.next_time += self.period
            return await session(t)

    async def poll_now(self) -> bool:
        """An extra cycle now, outside the schedule (a diagnostic re-poll); True if it succeeded."""
        failures, cycles = self.failures, self.cycles
        t = self.clock.now()
        if self.last_cycle is not None and t <= self.last_cycle:
            # The meter has answered for this instant already (a re-poll right after a cycle):
            # ask as of just after it, as exclusive() does, rather than skip the cycle.
            t = self.last_cycle + timedelta(seconds=1)
        # A scheduled cycle due by now would ask the meter about an earlier instant than this
        # one: the re-poll takes its place.
        while self.next_time is not None and self.next_time <= t:
            self.next_time += self.period
        await self._one(t)
        return self.cycles > cycles and self.failures == failures

    async def _one(self, t: datetime) -> None:
        # One cycle at a time, in time order: a meter is never asked about an instant earlier
        # than one it has already answered for.
        async with self._cycle_lock:
            if self.last_cycle is not None and t <= self.last_cycle:
                return
            self.last_cycle = t
            await self._cycle(t)

    async def _cycle(self, t: datetime) -> None:
        self.cycles += 1
        try:
            batch: PortBatch | None = await asyncio.wait_for(self.cycle(t), self.timeout)
        except DecodeError as err:
            self.failures += 1
            batch = PortBatch(errors=[err])
        except (OSError, TimeoutError, ConnectionError) as err:
            self.failures += 1
            log.warning("poll of %s failed: %s", self.name, err)
            batch = None
        except Exception:  # a bug in one meter's session must not stop this loop or the others
            self.failures += 1
            log.exception("poll of %s failed unexpectedly", self.name)
            batch = None
        if batch is not None:
            self.sink(batch, t)
        for observe in self.observers:
            observe(self, t)
