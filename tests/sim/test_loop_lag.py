"""The event-loop lag an accelerated run reports: next to none on an idle loop, the blocking
time when the loop is held (as a starved machine holds it), scaled to simulated seconds."""

from __future__ import annotations

import asyncio
import time

from smarthub.sim.loop_lag import LoopLag


async def test_an_idle_loop_is_not_starved() -> None:
    lag = LoopLag(speed=720, every=0.01)
    lag.start()
    await asyncio.sleep(0.3)
    await lag.stop()
    assert len(lag.samples) >= 5
    assert lag.figures()["starved"] is False  # p95 under 0.25 wall s


async def test_a_held_loop_is_reported_late_and_starved_at_its_speed() -> None:
    for speed, starved in ((720, False), (20_000, True)):
        lag = LoopLag(speed=speed, every=0.01)
        lag.start()
        for _ in range(20):
            await asyncio.sleep(0)
            time.sleep(0.05)  # the loop held, as another process holding the CPU would
        await lag.stop()
        f = lag.figures()
        # each sample woke only after a hold: 0.05 s late less the 0.01 s it asked for, at least
        assert f["loop_lag_p95_s"] >= 0.03 and f["loop_lag_max_s"] >= 0.03
        assert (
            f["loop_lag_p95_sim_s"] == round(float(f["loop_lag_p95_s"]) * speed, 1)
            or abs(float(f["loop_lag_p95_sim_s"]) - float(f["loop_lag_p95_s"]) * speed) < speed * 0.001
        )
        assert f["starved"] is starved
