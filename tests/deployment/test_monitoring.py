"""The Prometheus alerting rules and the Grafana dashboard in ``packaging/``: the rules pass
``promtool check rules``; every dashboard query is valid PromQL (checked by promtool as a
recording rule) and, like every rule, names only metrics a running GDSC exports; the dashboard
has what Grafana's file provisioning reads; and a real Prometheus server scrapes a running GDSC.

promtool and prometheus come with Debian's ``prometheus`` package (``make prometheus`` installs it
when run as root); without them those tests are skipped and say so."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from smarthub.sim.demo import DemoConfig, DemoRun, setup, teardown

from .svgplot import line_chart

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
RULES = PACKAGING / "prometheus" / "smarthub-rules.yml"
DASHBOARD = PACKAGING / "grafana" / "dashboards" / "smarthub-gdsc.json"
PROVISIONING = PACKAGING / "grafana" / "provisioning"
ARTIFACTS = PACKAGING.parent / "test-artifacts" / "monitoring"
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian package prometheus: make prometheus, as root)"
)
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="prometheus is not installed (Debian package prometheus: make prometheus, as root)",
)
# Histogram and counter series carry suffixes the family name does not.
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def dashboard() -> dict:  # type: ignore[type-arg]
    loaded: dict = json.loads(DASHBOARD.read_text())  # type: ignore[type-arg]
    return loaded


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]


def rule_exprs() -> list[str]:
    doc = yaml.safe_load(RULES.read_text())
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bsmarthub_[a-z_]+", expr))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)


@needs_promtool
def test_rules_pass_promtool() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_refuses_a_bad_rule(tmp_path: Path) -> None:
    """The check above can fail."""
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: sum(rate(x[5m])\n")
    assert promtool("check", "rules", str(bad)).returncode != 0


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"smarthub:panel_{i}", "expr": e} for i, e in enumerate(dashboard_exprs())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-as-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_has_what_grafana_provisioning_reads() -> None:
    d = dashboard()
    assert d["uid"] and d["title"] and isinstance(d["schemaVersion"], int)
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in d["panels"]:
        assert p["type"] in ("timeseries", "stat") and p["targets"], p["title"]
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]) and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        assert all(t["refId"] and t["expr"] for t in p["targets"])
    titles = " ".join(p["title"].lower() for p in d["panels"])
    for topic in ("pulls", "error", "latency", "backlog", "ingest", "incidents", "api latency"):
        assert topic in titles, topic
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "smarthub.yml").read_text())
    assert providers["apiVersion"] == 1 and providers["providers"][0]["type"] == "file"
    sources = yaml.safe_load((PROVISIONING / "datasources" / "smarthub.yml").read_text())
    uid = sources["datasources"][0]["uid"]
    assert d["templating"]["list"][0]["current"]["value"] == uid


@pytest.fixture
async def gdsc(tmp_path: Path) -> AsyncIterator[DemoRun]:
    """A GDSC with two hubs, one window pulled, one API request served; still running."""
    cfg = DemoConfig(homes=2, days=1, seconds_per_day=48 * 2, seed=5, state=tmp_path / "state")
    run = await setup(cfg)
    try:
        run.clock.rebase()
        window = cfg.sim_start + timedelta(minutes=30)
        await run.fleet.start_meters(until=window + timedelta(minutes=30))
        await run.gdsc.run_windows(until=window + timedelta(minutes=30), first_window=window)
        with TestClient(run.gdsc.api()) as client:
            assert client.get("/v1/portfolio").status_code == 401
        yield run
    finally:
        await teardown(run)


async def test_rules_and_dashboard_name_only_exported_metrics(gdsc: DemoRun) -> None:
    exported = {f.name for f in text_string_to_metric_families(gdsc.gdsc.metrics_text().decode())}
    exported |= {n + s for n in exported for s in SUFFIXES}
    used = set().union(*(metric_names(e) for e in dashboard_exprs() + rule_exprs()))
    assert used and used <= exported, sorted(used - exported)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _query(base: str, expr: str) -> list[dict]:  # type: ignore[type-arg]
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    result: list[dict] = body["data"]["result"]  # type: ignore[type-arg]
    return result


@needs_prometheus
async def test_a_real_prometheus_scrapes_the_gdsc_and_loads_the_rules(gdsc: DemoRun, tmp_path: Path) -> None:
    assert PROMETHEUS is not None
    target = gdsc.gdsc.serve_metrics(0)
    shutil.copy(RULES, tmp_path / "smarthub-rules.yml")
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": ["smarthub-rules.yml"],
                "scrape_configs": [
                    {
                        "job_name": "smarthub-collector",
                        "static_configs": [{"targets": [f"127.0.0.1:{target}"]}],
                    }
                ],
            }
        )
    )
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        pulls: list[dict] = []  # type: ignore[type-arg]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            try:
                pulls = _query(base, 'sum(smarthub_collector_pulls_total{outcome="ok"})')
                up = _query(base, 'up{job="smarthub-collector"}')
            except OSError:
                pulls, up = [], []
            if pulls and up and float(pulls[0]["value"][1]) >= 2:
                break
            time.sleep(0.5)
        assert pulls and float(pulls[0]["value"][1]) >= 2, "Prometheus did not scrape the GDSC's pulls"
        assert float(up[0]["value"][1]) == 1
        assert float(_query(base, "max(smarthub_hubs_active)")[0]["value"][1]) == 2
        with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=5) as r:
            groups = json.loads(r.read())["data"]["groups"]
        names = {rule["name"] for g in groups for rule in g["rules"]}
        assert {"SmarthubMissedWindow", "SmarthubCertificateExpiresSoon", "SmarthubBacklogGrowing"} <= names
        assert all(rule.get("health") in ("ok", "unknown") for g in groups for rule in g["rules"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _start_prometheus(tmp_path: Path, target: int) -> tuple[subprocess.Popen[bytes], str]:
    assert PROMETHEUS is not None
    shutil.copy(RULES, tmp_path / "smarthub-rules.yml")
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": ["smarthub-rules.yml"],
                "scrape_configs": [
                    {
                        "job_name": "smarthub-collector",
                        "static_configs": [{"targets": [f"127.0.0.1:{target}"]}],
                    }
                ],
            }
        )
    )
    port = _free_port()
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{port}"


def _query_range(base: str, expr: str, start: float, end: float) -> dict[str, list[tuple[float, float]]]:
    url = f"{base}/api/v1/query_range?" + urllib.parse.urlencode(
        {"query": expr, "start": start, "end": end, "step": "1s"}
    )
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    out: dict[str, list[tuple[float, float]]] = {}
    for series in body["data"]["result"]:
        name = ",".join(f"{k}={v}" for k, v in sorted(series["metric"].items()))
        out[name] = [(float(t), float(v)) for t, v in series["values"] if v not in ("NaN", "+Inf", "-Inf")]
    return out


@needs_prometheus
async def test_dashboard_panels_plotted_from_a_real_scrape(tmp_path: Path) -> None:
    """Prometheus scrapes a GDSC through two windows; the dashboard's pull, backlog and latency
    queries (rate windows shortened to the run's length) are read back and drawn as SVG into
    test-artifacts/monitoring/: the panels as Grafana would show them, without Grafana."""
    cfg = DemoConfig(homes=4, days=1, seconds_per_day=48 * 4, seed=9, state=tmp_path / "state")
    run = await setup(cfg)
    proc = None
    try:
        proc, base = _start_prometheus(tmp_path, run.gdsc.serve_metrics(0))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # Prometheus up and scraping before the windows run
            try:
                if _query(base, 'up{job="smarthub-collector"}'):
                    break
            except OSError:
                pass
            await asyncio.sleep(0.5)
        start = time.time()
        run.clock.rebase()
        first = cfg.sim_start + timedelta(minutes=30)
        await run.fleet.start_meters(until=first + timedelta(hours=1))
        await run.gdsc.run_windows(until=first + timedelta(hours=1), first_window=first)
        await asyncio.sleep(3)  # the last scrapes
        end = time.time()
        wanted = ("Pulls per second by outcome", "Backlog by priority", "Pull latency percentiles")
        panels = {p["title"]: p for p in dashboard()["panels"] if p["title"] in wanted}
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        drawn = {}
        for title, p in panels.items():
            series: dict[str, list[tuple[float, float]]] = {}
            for t in p["targets"]:
                for name, pts in _query_range(base, t["expr"].replace("[5m]", "[5s]"), start, end).items():
                    label = name if "{{" in t["legendFormat"] else f"{t['legendFormat']} {name}".strip()
                    series[label] = [(ts - start, v) for ts, v in pts]
            drawn[title] = series
            slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
            (ARTIFACTS / f"{slug}.svg").write_text(
                line_chart(title, series, p["fieldConfig"]["defaults"]["unit"])
            )
        pulls = [v for s in drawn["Pulls per second by outcome"].values() for _, v in s]
        backlog = [v for s in drawn["Backlog by priority"].values() for _, v in s]
        assert pulls and max(pulls) > 0, "no pull rate in the scraped series"
        assert backlog and max(backlog) > 0 and backlog[-1] < max(backlog), "the backlog never fell"
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        await teardown(run)
