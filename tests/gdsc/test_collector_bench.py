"""bench/pull.py at a small N: every hub's day arrives exactly once, through real TLS and real hubs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from smarthub.gdsc.store import Store

BENCH = Path(__file__).resolve().parents[2] / "bench" / "pull.py"


def _bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_pull", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_pull"] = module
    spec.loader.exec_module(module)
    return module


def test_every_hub_is_pulled_and_its_readings_stored_exactly_once(db_url: str, tmp_path: Path) -> None:
    bench = _bench()
    report = bench.run(
        5,
        processes=2,
        concurrency=3,
        db_url=db_url,
        state=tmp_path / "state",
        show_progress=False,
        reference_seconds=0.1,
    )
    cold, warm = report.passes
    assert (cold.pulled, cold.failed, warm.pulled, warm.failed) == (5, 0, 5, 0), cold.errors + warm.errors
    assert cold.readings == 5 * 96 and warm.readings == 0  # the second pass finds nothing new
    assert warm.resumed == 5  # every second pull resumed its TLS session
    assert report.duplicates == 0 and report.stored == 5 * 96
    store = Store(db_url)
    try:
        rows = [(r.hub_id, r.meter_id, r.interval_start, r.value) for r in store.readings()]
    finally:
        store.close()
    got = sorted(tuple(r) for r in rows)
    hubs = sorted(report.per_hub)
    assert len(hubs) == 5
    expected = sorted(
        (hub, meter, r.start, r.value)
        for hub in hubs
        for meter in bench.meters_of(hub)
        for r in bench.day_rows(hub, meter)
    )
    assert got == expected  # every hub's every half-hour, each once, with the value the hub served
