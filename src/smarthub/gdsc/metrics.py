"""The GDSC's Prometheus metrics (``prometheus-client``; nothing here writes the text format).

Two kinds, with different rules for adding them up across processes:

- **Per process** (:class:`CollectorMetrics`, :class:`ApiMetrics`): what *this* collector or API
  process did: pulls by outcome, pull latency, bytes, readings, ingest batches, requests. Each
  series carries ``process`` (the scheduler's ``host-pid`` name, or ``api-host-pid``), so several
  collectors on one plan never collide and ``sum()`` over them is the fleet's total.
- **Fleet-wide** (:class:`FleetGauges`): read from the shared database at scrape time: the plan's
  backlog per priority class and window, the plan's jobs by state, open incidents by kind, open
  work orders, active hubs. Every process that exports them reports the *same* value (they come
  from one database), so they carry no process label and dashboards aggregate them with
  ``max()``, never ``sum()``.

Each GDSC gets its own :class:`~prometheus_client.CollectorRegistry` (two GDSCs in one test process
do not share counters); ``/metrics`` on the operator page, on the API's port, or on a
collector's ``--metrics-port`` renders it with :func:`prometheus_client.generate_latest`.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector as PromCollector
from sqlalchemy import func, select

from smarthub.clock import Clock
from smarthub.gdsc.incidents.error_log import incidents, work_orders
from smarthub.gdsc.pull.tables import CLAIMED, PENDING, Priority, pull_plan, urgent_work, utc
from smarthub.wan.contract.diagnosis import DiagnosisCode

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from smarthub.gdsc.pull.collector import PullOutcome
    from smarthub.gdsc.pull.scheduler import Scheduler
    from smarthub.gdsc.store import Store

log = logging.getLogger(__name__)

# Pull latency on loopback is milliseconds; over a cellular WAN seconds: buckets for both.
PULL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
INGEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
API_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def process_name(prefix: str = "") -> str:
    """``host-pid`` (the scheduler's default name), with an optional prefix."""
    return f"{prefix}{socket.gethostname()}-{os.getpid()}"[:64]


class CollectorMetrics:
    """What one collector process did (see the module docstring). Fed by the collector's
    observers (:meth:`observe_pull`, :meth:`observe_ingest`); the scheduler's in-flight pulls
    and windows are read at scrape time."""

    def __init__(self, registry: CollectorRegistry, process: str) -> None:
        self.process = process
        label = ["process"]
        self.pulls = Counter(
            "smarthub_collector_pulls", "Pulls finished, by outcome (ok, failed) and path (bulk, walk)",
            [*label, "outcome", "path"], registry=registry,
        )  # fmt: skip
        self.pull_seconds = Histogram(
            "smarthub_collector_pull_seconds", "Wall time of one pull (connect, fetch, ingest)",
            label, buckets=PULL_BUCKETS, registry=registry,
        )  # fmt: skip
        self.bytes = Counter(
            "smarthub_collector_received_bytes", "Response body bytes received from hubs", label,
            registry=registry,
        )  # fmt: skip
        self.readings = Counter(
            "smarthub_collector_readings", "Interval readings received from hubs", label, registry=registry
        )
        self.inserted = Counter(
            "smarthub_collector_readings_ingested", "Readings new to the store (ingested)", label,
            registry=registry,
        )  # fmt: skip
        self.resumed = Counter(
            "smarthub_collector_tls_resumed_pulls",
            "Bulk pulls whose TLS session was resumed (ratio: over pulls with path=bulk)",
            label, registry=registry,
        )  # fmt: skip
        self.ingest_seconds = Histogram(
            "smarthub_store_ingest_batch_seconds", "Wall time of one ingest transaction (many pulls)",
            label, buckets=INGEST_BUCKETS, registry=registry,
        )  # fmt: skip
        self.ingest_rows = Counter(
            "smarthub_store_ingest_rows", "Rows handed to the store's ingest", label, registry=registry
        )
        self.ingest_batches = Counter(
            "smarthub_store_ingest_batches", "Ingest transactions", label, registry=registry
        )

    def observe_pull(self, outcome: PullOutcome, seconds: float) -> None:
        p = self.process
        self.pulls.labels(p, "ok" if outcome.ok else "failed", "bulk" if outcome.bulk else "walk").inc()
        self.pull_seconds.labels(p).observe(seconds)
        if outcome.body_bytes:
            self.bytes.labels(p).inc(outcome.body_bytes)
        if outcome.readings:
            self.readings.labels(p).inc(outcome.readings)
        if outcome.inserted:
            self.inserted.labels(p).inc(outcome.inserted)
        if outcome.resumed:
            self.resumed.labels(p).inc()

    def observe_ingest(self, pulls: int, rows: int, seconds: float) -> None:
        p = self.process
        self.ingest_batches.labels(p).inc()
        self.ingest_rows.labels(p).inc(rows)
        self.ingest_seconds.labels(p).observe(seconds)


class SchedulerGauges(PromCollector):
    """The scheduler's state at scrape time: pulls and deliveries in flight, windows planned,
    pulls done and failed (cumulative for this process)."""

    def __init__(self, scheduler: Callable[[], Scheduler], process: str) -> None:
        self.scheduler = scheduler
        self.process = process

    def collect(self) -> Iterator[Any]:
        s = self.scheduler()
        p = [self.process]
        inflight = GaugeMetricFamily(
            "smarthub_collector_in_flight",
            "Pulls (bulk) and deliveries (urgent) in flight",
            labels=["process", "kind"],
        )
        bulk, urgent = s.in_flight()
        inflight.add_metric([*p, "bulk"], bulk)
        inflight.add_metric([*p, "urgent"], urgent)
        yield inflight
        windows = list(s.windows)
        planned = CounterMetricFamily(
            "smarthub_plan_windows_planned",
            "Windows this process planned or found planned",
            labels=["process"],
        )
        planned.add_metric(p, len(windows))
        yield planned
        ended = CounterMetricFamily(
            "smarthub_scheduler_window_pulls",
            "Planned pulls this process ended, by result",
            labels=["process", "result"],
        )
        ended.add_metric([*p, "done"], sum(w.done for w in windows))
        ended.add_metric([*p, "failed"], sum(w.failed for w in windows))
        yield ended
        delivered = CounterMetricFamily(
            "smarthub_scheduler_urgent_delivered",
            "Urgent jobs (commands, on-demand reads) delivered",
            labels=["process"],
        )
        delivered.add_metric(p, s.delivered)
        yield delivered
        if s.plan is not None:
            takeovers = CounterMetricFamily(
                "smarthub_plan_lease_takeovers",
                "Bulk pulls this process took over after another collector's lease ran out "
                "(result: claimed again, or found already pulled and marked done)",
                labels=["process", "result"],
            )
            takeovers.add_metric([*p, "claimed"], s.plan.takeovers)
            takeovers.add_metric([*p, "found_done"], s.plan.takeovers_found_done)
            yield takeovers


class FleetGauges(PromCollector):
    """Fleet-wide figures from the shared database at scrape time (no process label; aggregate
    with ``max()``). A database that does not answer yields ``smarthub_metrics_db_up 0`` and
    none of the others, rather than failing the scrape."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily("smarthub_metrics_db_up", "Whether the GDSC database answered this scrape")
        try:
            families = list(self._families())
        except Exception as err:  # the scrape must answer, and say the database did not
            log.warning("metrics: the GDSC database did not answer: %s", err)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterable[Any]:
        now = utc(self.clock.now())
        names = {p.value: p.name.lower() for p in Priority}
        backlog = GaugeMetricFamily(
            "smarthub_plan_backlog",
            "Work not yet done: bulk pulls of open windows (by schedule and window) and urgent jobs",
            labels=["priority", "schedule", "window"],
        )
        jobs = GaugeMetricFamily(
            "smarthub_plan_jobs", "Pull-plan rows of the open windows by state", labels=["schedule", "state"]
        )
        open_incidents = GaugeMetricFamily(
            "smarthub_incidents_open", "Open incidents in the error log by kind", labels=["scope", "kind"]
        )
        p, u = pull_plan, urgent_work
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                select(p.c.schedule, p.c.window_start, p.c.state, func.count())
                .where(p.c.deadline > now)
                .group_by(p.c.schedule, p.c.window_start, p.c.state)
            ).all()
            urgent = conn.execute(
                select(u.c.priority, func.count())
                .where(u.c.state.in_((PENDING, CLAIMED)))
                .group_by(u.c.priority)
            ).all()
            inc = conn.execute(
                select(incidents.c.scope, incidents.c.code, func.count())
                .where(incidents.c.closed.is_(None))
                .group_by(incidents.c.scope, incidents.c.code)
            ).all()
            orders = conn.execute(
                select(func.count()).select_from(work_orders).where(work_orders.c.status == "open")
            ).scalar_one()
        by_state: dict[tuple[str, str], int] = {}
        for schedule, window_start, state, n in rows:
            by_state[(schedule, state)] = by_state.get((schedule, state), 0) + int(n)
            if state in (PENDING, CLAIMED):
                label = _window_label(window_start)
                backlog.add_metric(["bulk", schedule, label], int(n))
        for priority, n in urgent:
            backlog.add_metric([names.get(int(priority), str(priority)), "", ""], int(n))
        for (schedule, state), n in sorted(by_state.items()):
            jobs.add_metric([schedule, state], n)
        for scope, code, n in inc:
            open_incidents.add_metric([scope, _code_name(code)], int(n))
        yield backlog
        yield jobs
        yield open_incidents
        wo = GaugeMetricFamily("smarthub_work_orders_open", "Open work orders")
        wo.add_metric([], int(orders))
        yield wo
        hubs = GaugeMetricFamily("smarthub_hubs_active", "Hubs registered and active")
        hubs.add_metric([], len(self.store.active_hubs()))
        yield hubs


class CertificateExpiry(PromCollector):
    """When this process's certificates expire (``notAfter`` as a Unix time), read from their
    PEM files at each scrape (a renewal shows at once); a missing file is left out."""

    def __init__(self, certificates: dict[str, Path]) -> None:
        self.certificates = certificates

    @classmethod
    def of_state(cls, state: Path) -> CertificateExpiry:
        """The GDSC's own certificates in a state directory (``ca/``, ``gdsc/``)."""
        return cls(
            {
                "ca": state / "ca" / "ca.pem",
                "collector": state / "gdsc" / "collector.pem",
                "operator": state / "gdsc" / "operator.pem",
                "api-server": state / "gdsc" / "api-server.pem",
            }
        )

    def collect(self) -> Iterator[Any]:
        from cryptography import x509

        family = GaugeMetricFamily(
            "smarthub_certificate_expiry_timestamp_seconds",
            "notAfter of the GDSC's own certificates (CA, collector, operator, API server)",
            labels=["certificate"],
        )
        for name, path in sorted(self.certificates.items()):
            try:
                cert = x509.load_pem_x509_certificate(path.read_bytes())
            except (OSError, ValueError):
                continue
            family.add_metric([name], cert.not_valid_after_utc.timestamp())
        yield family


def _window_label(window_start: object) -> str:
    """A window start as ``YYYY-MM-DDTHH:MM:SSZ`` (SQLite hands back naive UTC datetimes)."""
    if not isinstance(window_start, datetime):
        return str(window_start)
    if window_start.tzinfo is None:
        window_start = window_start.replace(tzinfo=UTC)
    return window_start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _code_name(code: int) -> str:
    try:
        return DiagnosisCode(int(code)).name.lower()
    except ValueError:
        return str(code)


class ApiMetrics:
    """ASGI middleware: requests by route template (never the raw path: bounded cardinality, no
    hub or party ids in labels), method and status, and their latency.

    Hand-written rather than ``prometheus-fastapi-instrumentator``: one more dependency for ~30
    lines, and this one knows the API's mounted token endpoint and its 405 gate."""

    def __init__(
        self,
        app: ASGIApp,
        registry: CollectorRegistry,
        process: str,
        routes: Callable[[], Iterable[Any]] = tuple,
    ) -> None:
        """``routes``: the app's routes, to name a request's route template when the request was
        answered before routing (the gate's 401 and 405)."""
        self.app = app
        self.process = process
        self.routes = routes
        self.requests = Counter(
            "smarthub_api_requests", "API requests by route template, method and status",
            ["process", "route", "method", "status"], registry=registry,
        )  # fmt: skip
        self.seconds = Histogram(
            "smarthub_api_request_seconds", "API request latency by route template",
            ["process", "route", "method"], buckets=API_BUCKETS, registry=registry,
        )  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        t0 = time.perf_counter()

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = _route_of(scope, self.routes())
            method = str(scope.get("method", ""))
            self.requests.labels(self.process, route, method, str(status)).inc()
            self.seconds.labels(self.process, route, method).observe(time.perf_counter() - t0)


def _route_of(scope: Scope, routes: Iterable[Any]) -> str:
    from starlette.routing import Match, Route

    route = scope.get("route")
    template = getattr(route, "path", None)
    if isinstance(template, str):
        return template
    for r in routes:
        if isinstance(r, Route) and r.matches(scope)[0] is not Match.NONE:
            return r.path
    path = str(scope.get("path", ""))
    for prefix in ("/oauth", "/metrics"):
        if path == prefix or path.startswith(prefix + "/"):
            return prefix
    return "(unmatched)"


__all__ = [
    "ApiMetrics",
    "CertificateExpiry",
    "CollectorMetrics",
    "FleetGauges",
    "SchedulerGauges",
    "process_name",
]
