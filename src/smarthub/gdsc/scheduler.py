"""Pull scheduling: every registered hub once per retrieval window, spread across it.

`plan_window` is pure (no clock, no I/O): it places each hub at an offset inside the
window, evenly spaced in hub order of a stable hash, so load on the collector and the WAN
is flat instead of a thundering herd at the window start. The first and last 5 % of the
window are left free: at the start the hubs are still closing the interval that just
ended, at the end a slow pull would spill into the next window.

`Scheduler` runs the plan on an injected clock and hands each due pull to the collector,
retrying a failed pull once after a jittered backoff; anything still missing is picked up
by the next window's pull because pulls are incremental (cursor-based).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from smarthub.clock import Clock
from smarthub.gdsc.collector import Collector, PullOutcome
from smarthub.gdsc.store import HubRecord

MARGIN = 0.05


def _rank(hub_id: str) -> bytes:
    return hashlib.sha256(hub_id.encode()).digest()


def plan_window(
    window_start: datetime, window: timedelta, hubs: Sequence[HubRecord]
) -> list[tuple[datetime, HubRecord]]:
    """(due time, hub) for every hub, in due order, inside [start + 5 %, start + 95 %)."""
    ordered = sorted(hubs, key=lambda h: _rank(h.hub_id))
    n = len(ordered)
    span = window * (1 - 2 * MARGIN)
    return [(window_start + window * MARGIN + span * (i / n), h) for i, h in enumerate(ordered)]


def window_start_for(t: datetime, window: timedelta) -> datetime:
    epoch = t.timestamp()
    w = window.total_seconds()
    return datetime.fromtimestamp(epoch - epoch % w, t.tzinfo)


@dataclass
class WindowProgress:
    window_start: datetime
    planned: int
    done: int = 0
    failed: int = 0
    readings: int = 0
    inserted: int = 0


@dataclass
class Scheduler:
    collector: Collector
    clock: Clock
    hubs: Callable[[], Sequence[HubRecord]]
    window: timedelta = timedelta(minutes=30)
    retry_after: timedelta = timedelta(seconds=20)
    max_concurrency: int = 64
    seed: int = 0
    on_progress: Callable[[WindowProgress], None] | None = None
    windows: list[WindowProgress] = field(default_factory=list)
    pull_errors: int = 0

    def __post_init__(self) -> None:
        self._sem = asyncio.Semaphore(self.max_concurrency)
        self._rng = random.Random(self.seed)
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, until: datetime, first_window: datetime | None = None) -> None:
        """Run windows from the one containing now (or ``first_window``) until ``until``."""
        start = first_window or window_start_for(self.clock.now(), self.window)
        while start < until:
            await self.run_window(start)
            start += self.window
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def run_window(self, window_start: datetime) -> WindowProgress:
        plan = plan_window(window_start, self.window, self.hubs())
        progress = WindowProgress(window_start, len(plan))
        self.windows.append(progress)
        for due, hub in plan:
            await self.clock.sleep_until(due)
            task = asyncio.create_task(self._pull(hub, window_start, progress))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await self.clock.sleep_until(window_start + self.window)
        return progress

    async def _pull(self, hub: HubRecord, window_start: datetime, progress: WindowProgress) -> None:
        async with self._sem:
            outcome = await self.collector.pull(hub, window_start)
        if not outcome.ok:
            self.pull_errors += 1
            # Exponential backoff is pointless for one retry; the jitter spreads a burst of
            # failures (one WAN link down) so the retries do not arrive together.
            delay = self.retry_after * (1 + self._rng.random())
            await self.clock.sleep_until(self.clock.now() + delay)
            async with self._sem:
                outcome = await self.collector.pull(hub, window_start)
            if not outcome.ok:
                self.pull_errors += 1
        self._account(progress, outcome)

    def _account(self, progress: WindowProgress, outcome: PullOutcome) -> None:
        progress.done += 1
        progress.failed += 0 if outcome.ok else 1
        progress.readings += outcome.readings
        progress.inserted += outcome.inserted
        if self.on_progress is not None:
            self.on_progress(progress)
