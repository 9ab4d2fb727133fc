from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from smarthub.gdsc.fleet.registry import HubRecord
from smarthub.gdsc.pull.scheduler import RetrievalSchedule, plan_window, window_start_for

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


def test_night_window_once_a_day_and_frequent_windows() -> None:
    night = RetrievalSchedule(
        "night", timedelta(days=1), length=timedelta(hours=4), offset=timedelta(hours=1)
    )
    every = RetrievalSchedule("every", W)
    day = datetime(2026, 3, 2, tzinfo=UTC)
    # Starting at noon: the night window of the next day, nothing of the day that has passed.
    assert night.starts_between(day + timedelta(hours=12), day + timedelta(days=2, hours=1)) == [
        day + timedelta(days=1, hours=1),
        day + timedelta(days=2, hours=1),
    ]
    # Starting inside a night window joins it.
    assert night.starts_between(day + timedelta(hours=3), day + timedelta(hours=3))[0] == day + timedelta(
        hours=1
    )
    assert len(every.starts_between(day, day + timedelta(hours=24) - W)) == 48
    # A night plan spreads every hub across the four hours, not the half-hour.
    plan = plan_window(day + timedelta(hours=1), night.window, hubs(100))
    assert plan[0][0] == day + timedelta(hours=1, minutes=12)
    assert plan[-1][0] < day + timedelta(hours=4, minutes=48)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"period": timedelta(0)}, "period must be positive"),
        ({"period": W, "length": timedelta(hours=1)}, "at most the period"),
        ({"period": W, "offset": W}, "offset must lie inside the period"),
    ],
)
def test_bad_schedules_are_refused(kwargs: dict[str, timedelta], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetrievalSchedule("x", **kwargs)
