"""The GDSC's Prometheus metrics, scraped over HTTP from a running GDSC and parsed with
``prometheus_client``'s own text parser: during a pull window the pull counter rises and the
window's backlog falls; the console and the API serve ``/metrics`` too; the fleet-wide gauges
come from the shared database and the per-process series carry the collector's name."""

from __future__ import annotations

import asyncio
import urllib.request
from datetime import timedelta
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from fastapi.testclient import TestClient as ApiClient
from prometheus_client.parser import text_string_to_metric_families

from smarthub.gdsc.incidents.error_log import ErrorLog
from smarthub.gdsc.metrics import FleetGauges
from smarthub.gdsc.store import Store
from smarthub.hub.diagnostics import DiagnosisCode
from smarthub.sim.demo import DemoConfig, setup, teardown

from .test_error_log import LINKS, T0, detail

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        v
        for (n, ls), v in samples.items()
        if n == name and all(dict(ls).get(k) == w for k, w in labels.items())
    )


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        return str(r.read().decode())


async def test_scrape_during_a_window_shows_pulls_rising_and_backlog_falling(tmp_path: Path) -> None:
    # One simulated half-hour window lasts 6 s of wall time: many scrapes fall inside it.
    cfg = DemoConfig(homes=6, days=1, seconds_per_day=48 * 6, seed=3, state=tmp_path)
    run = await setup(cfg)
    try:
        port = run.gdsc.serve_metrics(0)
        run.clock.rebase()
        window = cfg.sim_start + timedelta(minutes=30)  # the first window with readings to pull
        await run.fleet.start_meters(until=window + timedelta(minutes=30))
        pulling = asyncio.create_task(
            run.gdsc.run_windows(until=window + timedelta(minutes=30), first_window=window)
        )
        seen: list[tuple[float, float | None]] = []  # (pulls ok, backlog of the window) per scrape
        label = window.strftime("%Y-%m-%dT%H:%M:%SZ")
        while not pulling.done():
            s = parse(await asyncio.to_thread(scrape, port))
            backlog = [
                v for (n, ls), v in s.items() if n == "smarthub_plan_backlog" and ("window", label) in ls
            ]
            seen.append(
                (total(s, "smarthub_collector_pulls_total", outcome="ok"), backlog[0] if backlog else None)
            )
            await asyncio.sleep(0.25)
        await pulling
        final = parse(await asyncio.to_thread(scrape, port))
    finally:
        await teardown(run)
    pulls = [p for p, _ in seen]
    assert pulls == sorted(pulls), "a counter went down"
    assert pulls[0] < pulls[-1], "no pull counted while the window ran"
    backlog = [b for _, b in seen if b is not None]
    i = next(i for i, (_, b) in enumerate(seen) if b is not None)
    # Every hub of the window planned: in the backlog or pulled. A scrape reads the counters
    # before it queries the plan, so a pull that ends in between shows in the next scrape's count.
    after = (
        seen[i + 1][0] if i + 1 < len(seen) else total(final, "smarthub_collector_pulls_total", outcome="ok")
    )
    assert (seen[i][1] or 0) + after >= 6, seen
    assert backlog == sorted(backlog, reverse=True), f"the backlog rose: {seen}"
    assert backlog[-1] < backlog[0] and any(0 < b < backlog[0] for b in backlog), (
        seen
    )  # falling, scraped mid-way
    assert total(final, "smarthub_collector_pulls_total", outcome="ok") >= 6
    assert total(final, "smarthub_collector_pulls_total", outcome="failed") == 0
    assert total(final, "smarthub_collector_readings_ingested_total") > 0
    assert total(final, "smarthub_collector_pull_seconds_count") == total(
        final, "smarthub_collector_pulls_total"
    )
    assert total(final, "smarthub_store_ingest_rows_total") >= total(
        final, "smarthub_collector_readings_ingested_total"
    )
    assert any(n == "smarthub_plan_lease_takeovers_total" for n, _ in final)
    assert total(final, "smarthub_plan_lease_takeovers_total") == 0  # one collector: nothing to take over
    assert total(final, "smarthub_hubs_active") == 6 and total(final, "smarthub_metrics_db_up") == 1
    # Per-process series carry the scheduler's name; the fleet-wide gauges carry none.
    name = run.gdsc.scheduler.name
    for (n, ls), _ in final.items():
        if n.startswith(("smarthub_collector_", "smarthub_store_", "smarthub_scheduler_")):
            assert dict(ls).get("process") == name, n
        if n.startswith(("smarthub_plan_backlog", "smarthub_incidents_open", "smarthub_hubs_active")):
            assert "process" not in dict(ls), n


def _store_with_incidents(tmp_path: Path) -> tuple[Store, ErrorLog]:
    store = Store(f"sqlite:///{tmp_path / 'gdsc.sqlite'}")
    store.create_schema()
    log = ErrorLog(store, wan_link_of=LINKS.get)
    log.record_events("H1", [detail(1, DiagnosisCode.TAMPER, "E<1>")], T0)
    for hub in ("H1", "H2", "H3"):
        log.record_unreachable(hub, T0, "connect timeout")
    return store, log


async def test_console_serves_metrics_with_open_incidents_by_kind(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from smarthub.clock import ManualClock
    from smarthub.gdsc.incidents.console import console_app

    store, log = _store_with_incidents(tmp_path)
    registry = CollectorRegistry()
    registry.register(FleetGauges(store, ManualClock(T0)))
    async with TestClient(TestServer(console_app(store, list, log, registry))) as client:
        resp = await client.get("/metrics")
        assert resp.status == 200
        s = parse(await resp.text())
    open_by_kind = {dict(ls)["kind"]: v for (n, ls), v in s.items() if n == "smarthub_incidents_open"}
    assert open_by_kind.get("tamper") == 1, open_by_kind
    assert sum(open_by_kind.values()) == len(log.incidents(open_only=True))
    assert total(s, "smarthub_work_orders_open") == len(log.work_orders("open")) > 0
    store.close()


def test_api_counts_requests_by_route_template_and_serves_metrics(tmp_path: Path) -> None:
    from smarthub.clock import ManualClock
    from smarthub.gdsc.api.app import app_from_store
    from smarthub.sim.fleet import home_specs, provision

    provision(tmp_path, home_specs(1, 1), T0)
    store, _ = _store_with_incidents(tmp_path)
    app = app_from_store(store, tmp_path, ManualClock(T0))
    with ApiClient(app) as client:
        assert client.get("/v1/premises/P-1/readings").status_code == 401  # no credentials
        assert client.get("/v1/premises/P-2/readings").status_code == 401
        assert client.get("/no/such/thing").status_code == 404
        resp = client.get("/metrics")  # like any exporter: no credentials asked
        assert resp.status_code == 200
        text = resp.text
    s = parse(text)
    by_route = {
        (dict(ls)["route"], dict(ls)["status"]): v
        for (n, ls), v in s.items()
        if n == "smarthub_api_requests_total"
    }
    templates = [r for r, _ in by_route if r.startswith("/v1/premises/")]
    assert templates and all("{" in r for r in templates), by_route  # the template, not the path
    assert sum(v for (r, st), v in by_route.items() if r in templates and st == "401") == 2
    assert by_route.get(("(unmatched)", "404")) == 1
    assert "P-1" not in text and "P-2" not in text  # no ids in the labels
    assert total(s, "smarthub_api_request_seconds_count") >= 3
    assert total(s, "smarthub_incidents_open") == 2
    assert "/metrics" not in app.openapi()["paths"]  # not a data service: not in the API's document
    store.close()
