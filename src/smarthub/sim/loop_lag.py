"""How late the event loop runs its timers: whether an accelerated run measured the code or the
machine.

An accelerated run (the demo, ``smarthub chaos``) maps wall seconds to simulated ones at its
speed (720x at 120 s a day). On a starved machine every timer fires late, and a wall-clock
timeout (a 15 s HTTP request timeout is 3 simulated hours at 720x) turns into hours of simulated
time: renewals and top-ups then miss their days for want of CPU, not for a defect (seen in the
30-day chaos runs beside other work). This samples the loop's lag — a task that asks to sleep
``every`` wall seconds and records how much later it woke — and reports it in wall and simulated
seconds, so a run can say it was starved instead of leaving its figures to be misread."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

# A run whose loop woke this late (simulated) at the 95th percentile is reported as starved: a
# tenth of a half-hour, the resolution every pull, window and reading in the run is planned at.
STARVED_P95_SIM_S = 180.0


@dataclass
class LoopLag:
    speed: float  # simulated seconds per wall second
    every: float = 0.25  # wall seconds between samples
    samples: list[float] = field(default_factory=list)  # wall seconds late, each sample
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sample())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _sample(self) -> None:
        while True:
            asked = time.monotonic()
            await asyncio.sleep(self.every)
            self.samples.append(max(0.0, time.monotonic() - asked - self.every))

    def figures(self) -> dict[str, Any]:
        """p95 and max lag in wall and simulated seconds, and whether the run was starved."""
        if not self.samples:
            return {"loop_lag_p95_s": 0.0, "loop_lag_max_s": 0.0, "loop_lag_p95_sim_s": 0.0, "starved": False}
        ordered = sorted(self.samples)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        return {
            "loop_lag_p95_s": round(p95, 3),
            "loop_lag_max_s": round(ordered[-1], 3),
            "loop_lag_p95_sim_s": round(p95 * self.speed, 1),
            "starved": p95 * self.speed > STARVED_P95_SIM_S,
        }


__all__ = ["STARVED_P95_SIM_S", "LoopLag"]
