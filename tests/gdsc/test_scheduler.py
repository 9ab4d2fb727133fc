from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from smarthub.gdsc.scheduler import plan_window, window_start_for
from smarthub.gdsc.store import HubRecord

W = timedelta(minutes=30)
START = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)


def hubs(n: int) -> list[HubRecord]:
    return [HubRecord(f"HUB{i}", f"P{i}", "https://x", "A" * 40, "active") for i in range(n)]


def test_every_hub_once_spread_evenly_inside_the_window() -> None:
    plan = plan_window(START, W, hubs(1000))
    assert sorted(h.hub_id for _, h in plan) == sorted(h.hub_id for h in hubs(1000))
    times = [t for t, _ in plan]
    assert times == sorted(times)
    assert times[0] >= START + W * 0.05 and times[-1] < START + W * 0.95
    gaps = {round((b - a).total_seconds(), 6) for a, b in itertools.pairwise(times)}
    assert len(gaps) == 1  # flat load: the same spacing between every two pulls


def test_plan_order_is_stable_and_not_alphabetical() -> None:
    a = [h.hub_id for _, h in plan_window(START, W, hubs(50))]
    b = [h.hub_id for _, h in plan_window(START + W, W, list(reversed(hubs(50))))]
    assert a == b
    assert a != sorted(a)


def test_window_start_for() -> None:
    assert window_start_for(START + timedelta(minutes=29, seconds=59), W) == START
    assert window_start_for(START + W, W) == START + W
