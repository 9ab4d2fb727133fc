"""Benchmark: a simulated day for a fleet, end to end, at several clock speeds.

Prints, for each speed, the wall seconds, the CPU seconds of the process and whether the
store ended complete (missing 0, duplicates 0), and the ratio of the wall time to the spine
issue's budget of 60 s for `smarthub demo --homes 20 --days 1 --headless`. The fastest speed
at which nothing is missing is how much headroom the default (30 s per day) has.

    .venv/bin/python bench/demo_day.py [--homes 20]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from smarthub.sim.demo import DemoConfig, run_day, setup, teardown

BUDGET_S = 60.0


async def one(homes: int, seconds_per_day: float) -> tuple[float, float, int, int]:
    with tempfile.TemporaryDirectory() as d:
        run = await setup(DemoConfig(homes=homes, days=1, seconds_per_day=seconds_per_day, state=Path(d)))
        cpu0 = time.process_time()
        try:
            result = await run_day(run)
        finally:
            await teardown(run)
        return result.seconds, time.process_time() - cpu0, result.missing, result.duplicates


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--homes", type=int, default=20)
    args = ap.parse_args()
    print(f"{'s/day asked':>11} {'wall s':>8} {'cpu s':>7} {'missing':>8} {'dups':>5} {'wall/budget':>12}")
    for spd in (30.0, 10.0, 5.0):
        wall, cpu, missing, dups = asyncio.run(one(args.homes, spd))
        print(f"{spd:>11.0f} {wall:>8.1f} {cpu:>7.1f} {missing:>8d} {dups:>5d} {wall / BUDGET_S:>12.2f}")
    print(f"reference: the spine issue's budget, {BUDGET_S:.0f} s for {args.homes} homes x 1 day")


if __name__ == "__main__":
    main()
