"""bench/hub.py in a short run: the hub process, fed by the meters process over its real
transports, mirrors every protocol that reported and serves the GDSC's pull half-way."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "hub.py"


def _bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_hub", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_hub"] = module
    spec.loader.exec_module(module)
    return module


def test_short_run_feeds_the_hub_over_its_transports_and_measures_it(tmp_path: Path) -> None:
    bench = _bench()
    r = bench.run(10.0, tmp_path)
    # P1 sends every second and radio meters every 30 s (spread): both report in 10 s; the
    # polled meters only if a poll boundary falls inside the run.
    assert r["frames"]["dsmr"] >= 5 and r["frames"]["wmbus"] >= 5 and r["frames"]["zigbee"] >= 1
    assert r["frame_errors"] == 0 and r["poll_failures"] == 0, r["last_errors"]
    # Every batch that carried readings has its arrival -> mirror time, each one positive.
    assert {k: len(v) for k, v in r["latency_ms"].items()} == r["frames"]
    assert all(x > 0 for xs in r["latency_ms"].values() for x in xs)
    # The DSMR meter's two meters plus every radio meter heard so far are in the mirror.
    assert r["meters"] >= 2 + r["frames"]["wmbus"] // 2
    assert r["requests"] == 3 and r["usage_points_pulled"] >= 2  # the GDSC's pull was answered
    sent = r["meters_process"]["sent"]
    assert sent["p1"] >= r["frames"]["dsmr"] and sent["wmbus"] >= r["frames"]["wmbus"]
    assert r["rss_mb"] > r["rss_imports_mb"] > 0 and r["cpu_percent"] > 0
