"""The chaos run at test size: faults of every kind injected, nothing lost, no top-up lost.

`make bench` / README: `smarthub chaos --homes 200 --days 3 --seed S` is the full size.
"""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest

from smarthub.sim.chaos import plan_faults, run_chaos
from smarthub.sim.demo import DemoConfig


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_a_fleet_with_faults_loses_nothing(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    db = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    cfg = DemoConfig(homes=8, days=1, seconds_per_day=20, seed=11, state=tmp_path, db_url=db)
    r = await run_chaos(cfg)
    assert r.faults == {
        "cell_outage": 1,
        "collector_restart": 1,
        "database_restart": 1,
        "clock_drift": 1,
        "feeder_outage": 1,
        "han_dropout": 1,
        "meter_replace": 1,
        "power_cut": 1,
        "substation_outage": 1,
        "wan_outage": 1,
    }
    assert r.readings_expected == r.readings_stored > 0
    assert (r.lost, r.duplicates) == (0, 0)
    assert r.topups_issued > 0 and (r.topups_lost, r.topups_doubled) == (0, 0)
    assert r.pull_errors > 0  # the outages were real: pulls failed while they lasted
    assert r.estimated > 0  # power cuts and dropouts were bridged by interpolation, flagged
    # Incidents were opened and closed again as hubs recovered (the last faults' may still be
    # open when the run stops: the hubs clear them at their own pace).
    assert r.incidents_closed > 0
    # The exchanged meter: the old one's half-hours up to the swap, the new one's after (counted
    # in lost/duplicates above), and the hub's registry says which replaced which.
    assert r.meters_replaced == 1
    # The drifting clock was diagnosed and set right, more than once at 10-20 minutes a day,
    # so it never strayed far from the hub's time (the diagnosis threshold is 60 s).
    assert r.clock_resyncs >= 1
    assert 60 < r.clock_drift_max_s < 180
    # Network outages (issue 19): a feeder's and a substation's homes lost mains together; each
    # became one outage at the GDSC from the hubs' last gasps, within a minute (simulated), and
    # closed with their restoration notices; the WAN faults (a cell, a hub's link) opened none.
    assert (r.outages_injected, r.outages_detected, r.restorations_matched) == (2, 2, 2)
    # At this test's speed (4,320x) one wall millisecond is 4.3 simulated seconds, so thread
    # switches alone cost a simulated minute: the 60 s goal is for the CLI's speed; here
    # the bound is 10 simulated minutes (139 wall ms), far below any pull-based detection.
    assert r.outage_detect_p95_s is not None and r.outage_detect_p95_s <= 600
    assert r.false_outages == 0 and r.alerts_refused == 0


def test_the_fault_plan_is_fixed_by_the_seed_and_ends_before_the_run() -> None:
    class Home:
        def __init__(self, i: int) -> None:
            kind = ("dsmr", "dlms+wmbus")[i % 2]
            self.spec = type("S", (), {"hub_id": f"HUB{i:06d}", "index": i, "kind": kind})()
            self.meters = [(f"E{i}", "electricity"), (f"G{i}", "gas")]

    homes = [Home(i) for i in range(40)]
    a = plan_faults(homes, 3, random.Random(4))  # type: ignore[arg-type]
    b = plan_faults(homes, 3, random.Random(4))  # type: ignore[arg-type]
    assert a == b and a != plan_faults(homes, 3, random.Random(5))  # type: ignore[arg-type]
    (outage,) = [f for f in a if f.kind == "wan_outage"]
    assert outage.length.days == 2 and outage.length.seconds == 18 * 3600  # 3 days less 6 h
    for f in a:
        assert f.start + f.length <= timedelta(days=3)
    (swap,) = [f for f in a if f.kind == "meter_replace"]
    (drift,) = [f for f in a if f.kind == "clock_drift"]
    assert swap.target != drift.target and {swap.target, drift.target} <= {
        f"HUB{i:06d}" for i in range(1, 40, 2)
    }
    assert 600 <= abs(drift.rate) <= 1200  # 10-20 minutes a day
