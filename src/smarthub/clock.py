"""Injected time. Nothing in smarthub reads the system clock directly; it asks a `Clock`.

`AcceleratedClock` maps wall time to simulated time at a fixed speed from a shared epoch,
so separate processes (a fleet of hubs, a GDSC) agree on simulated time without talking.
`ManualClock` is for tests that step time explicitly.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


def next_aligned(t: datetime, period: timedelta) -> datetime:
    """The first instant at or after ``t`` that is a whole number of ``period`` since the epoch
    (so samples every 5 min fall on every half-hour boundary)."""
    p = period.total_seconds()
    return datetime.fromtimestamp(-(-t.timestamp() // p) * p, t.tzinfo)


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep_until(self, t: datetime) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, t: datetime) -> None:
        delay = (t - self.now()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)


class AcceleratedClock:
    """Simulated time = ``sim_start + (wall - wall_start) * speed``."""

    def __init__(self, sim_start: datetime, speed: float, wall_start: float | None = None) -> None:
        if sim_start.tzinfo is None:
            raise ValueError("sim_start must be timezone-aware")
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.sim_start = sim_start
        self.speed = speed
        self.wall_start = time.time() if wall_start is None else wall_start

    def now(self) -> datetime:
        return self.sim_start + timedelta(seconds=(time.time() - self.wall_start) * self.speed)

    def rebase(self, wall_start: float | None = None) -> None:
        """Make ``sim_start`` correspond to now (or ``wall_start``): call once setup is done."""
        self.wall_start = time.time() if wall_start is None else wall_start

    def wall_seconds(self, sim: timedelta) -> float:
        return sim.total_seconds() / self.speed

    async def sleep_until(self, t: datetime) -> None:
        """Sleep until ``t``; an instant already past still yields to the event loop once: a loop
        that trails the accelerated clock (a meter catching up on a busy machine) would otherwise
        run without ever yielding, and no server, timer or signal handler would run meanwhile."""
        while True:
            delay = (t - self.now()).total_seconds() / self.speed
            if delay <= 0:
                await asyncio.sleep(0)
                return
            await asyncio.sleep(delay)


class ManualClock:
    """A clock that moves only when told; sleepers wake when it passes their time."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self._now = start
        self._changed = asyncio.Event()

    def now(self) -> datetime:
        return self._now

    def advance(self, by: timedelta) -> None:
        self.set(self._now + by)

    def set(self, t: datetime) -> None:
        if t < self._now:
            raise ValueError("ManualClock cannot go backwards")
        self._now = t
        self._changed.set()
        self._changed = asyncio.Event()

    async def sleep_until(self, t: datetime) -> None:
        while self._now < t:
            await self._changed.wait()
