"""``smarthub chaos``: a fleet run with faults injected, and an account of what survived.

The demo's fleet and GDSC (real frames, real hubs with SQLite histories, 2030.5 over mutual
TLS, the shared pull plan, the error log), with every hub's WAN behind a cuttable link
(:mod:`smarthub.sim.faults`) and a seeded schedule of faults:

* ``wan_outage``: one hub's WAN link down for up to 3 simulated days (the hub buffers; the
  GDSC's incremental pulls backfill it in order when it returns);
* ``cell_outage``: every hub of one cell down for an hour or two at once (one incident);
* ``power_cut``: a hub hears nothing and serves nothing for 1–3 hours (its meters keep
  counting; the hub interpolates the gap and flags it estimated);
* ``han_dropout``: one meter unheard for 30–120 minutes;
* ``collector_restart``: the collector replaced mid-run (TLS sessions and batches lost);
* ``database_restart``: the GDSC's database connections killed mid-ingest (PostgreSQL:
  ``pg_terminate_backend``; SQLite: the pool disposed).

Prepayment homes receive top-ups during the run: signed vouchers issued by the GDSC, queued
as urgent commands, re-queued until the hub's verdict says credited. At the end the run
counts, from the GDSC's store and the hubs' own ledgers, what was expected and what arrived:
``lost`` readings (absent, not even estimated), ``duplicates``, ``topups_lost`` (issued, never
credited) and ``topups_doubled`` (credited twice: impossible by construction, counted anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text

from smarthub.gdsc.collector import Collector
from smarthub.gdsc.operations import run_operations
from smarthub.gdsc.plan import PullPlan
from smarthub.gdsc.vouchers import VoucherIssuer
from smarthub.sim.demo import HALF_HOUR, DemoConfig, DemoRun, account, setup, sweep, teardown
from smarthub.sim.faults import HanGate, WanLink
from smarthub.sim.fleet import CELL_SIZE, Fleet, SimulatedHome

log = logging.getLogger(__name__)

# The chaos run's own PostgreSQL connections carry this name, so a "database restart" kills
# them and nobody else's (other GDSCs, other test runs on the same server).
APPLICATION_NAME = "smarthub-chaos"


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    start: timedelta  # from the start of the run (simulated)
    length: timedelta
    target: str  # hub id, cell, meter id, or "gdsc"


@dataclass
class ChaosResult:
    homes: int
    days: int
    seed: int
    readings_expected: int
    readings_stored: int
    lost: int
    duplicates: int
    estimated: int
    topups_issued: int
    topups_credited: int
    topups_lost: int
    topups_doubled: int
    faults_injected: int
    faults: dict[str, int] = field(default_factory=dict)
    pull_errors: int = 0
    incidents_open: int = 0
    incidents_closed: int = 0
    work_orders: int = 0
    hub_errors_open: int = 0
    seconds: float = 0.0

    def json_line(self) -> str:
        return json.dumps(asdict(self))


def plan_faults(homes: list[SimulatedHome], days: int, rng: random.Random) -> list[Fault]:
    """The run's faults, from the seed: the same seed, the same faults."""
    run = timedelta(days=days)
    ids = [h.spec.hub_id for h in homes]
    meters = [(h.spec.hub_id, m) for h in homes for m, _ in h.meters]
    faults: list[Fault] = []

    def at(earliest: timedelta, length: timedelta) -> timedelta:
        # Every fault ends at least three hours before the run does, so its recovery is seen.
        latest = run - length - timedelta(hours=3)
        span = max((latest - earliest).total_seconds(), 0)
        return earliest + timedelta(seconds=int(rng.uniform(0, span)) // 60 * 60)

    long_outage = min(timedelta(days=3), run - timedelta(hours=6))
    faults.append(Fault("wan_outage", timedelta(hours=2), long_outage, rng.choice(ids)))
    cells = sorted({f"cell-{i // CELL_SIZE:04d}" for i in range(len(homes))})
    for _ in range(max(1, days // 2)):
        length = timedelta(minutes=rng.randint(60, 120))
        faults.append(Fault("cell_outage", at(timedelta(hours=1), length), length, rng.choice(cells)))
    for _ in range(max(1, len(homes) // 10) * days):
        length = timedelta(minutes=rng.randint(60, 180))
        faults.append(Fault("power_cut", at(timedelta(hours=1), length), length, rng.choice(ids)))
    for _ in range(max(1, len(homes) // 5) * days):
        length = timedelta(minutes=rng.randint(30, 120))
        hub, meter = rng.choice(meters)
        faults.append(Fault("han_dropout", at(timedelta(hours=1), length), length, f"{hub}/{meter}"))
    for _ in range(days):
        faults.append(Fault("collector_restart", at(timedelta(hours=1), timedelta(0)), timedelta(0), "gdsc"))
        faults.append(Fault("database_restart", at(timedelta(hours=1), timedelta(0)), timedelta(0), "gdsc"))
    return sorted(faults, key=lambda f: f.start)


class Chaos:
    def __init__(self, cfg: DemoConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.links: dict[str, WanLink] = {}  # hub id -> its WAN link
        self.gates: dict[str, HanGate] = {}
        self.injected: dict[str, int] = {}
        self.run: DemoRun | None = None
        self.vouchers: dict[str, tuple[str, int]] = {}  # voucher id -> (hub, urgent job id)
        self.credited_before: dict[str, int] = {}

    async def _wan(self, fleet: Fleet) -> None:
        for home in fleet.homes:
            link = self.links[home.spec.hub_id] = WanLink(home.spec.hub_id)
            port = await link.relay("127.0.0.1", int(home.url.rsplit(":", 1)[1]))
            home.url = f"https://127.0.0.1:{port}"
            self.gates[home.spec.hub_id] = HanGate(home.hub)

    def _cell(self, cell: str) -> list[str]:
        assert self.run is not None
        n = int(cell.split("-")[1])
        return [h.spec.hub_id for h in self.run.fleet.homes if h.spec.index // CELL_SIZE == n]

    async def _inject(self, fault: Fault) -> None:
        run = self.run
        assert run is not None
        await run.clock.sleep_until(self.cfg.sim_start + fault.start)
        self.injected[fault.kind] = self.injected.get(fault.kind, 0) + 1
        log.info("fault %s on %s for %s", fault.kind, fault.target, fault.length)
        undo: Callable[[], None] = lambda: None  # noqa: E731
        if fault.kind == "wan_outage":
            self.links[fault.target].cut()
            undo = self.links[fault.target].restore
        elif fault.kind == "cell_outage":
            hubs = self._cell(fault.target)
            for h in hubs:
                self.links[h].cut()

            def undo() -> None:
                for h in hubs:
                    self.links[h].restore()
        elif fault.kind == "power_cut":
            self.links[fault.target].cut()
            self.gates[fault.target].silence(None)

            def undo() -> None:
                self.gates[fault.target].restore(None)
                self.links[fault.target].restore()
        elif fault.kind == "han_dropout":
            hub, meter = fault.target.split("/", 1)
            self.gates[hub].silence(meter)

            def undo() -> None:
                self.gates[hub].restore(meter)
        elif fault.kind == "collector_restart":
            old = run.collector
            assert run.creds is not None
            new = Collector(
                run.store,
                run.creds.collector_context(),
                run.clock,
                error_log=run.error_log,
                events_every=old.events_every,
            )
            run.collector = run.scheduler.collector = new
            await old.close()
        elif fault.kind == "database_restart":
            await asyncio.to_thread(self._kill_database_connections)
        if fault.length:
            await run.clock.sleep_until(self.cfg.sim_start + fault.start + fault.length)
            undo()

    def _kill_database_connections(self) -> None:
        store = self.run.store  # type: ignore[union-attr]
        if store.dialect == "postgresql":
            with store.engine.connect() as conn:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        " AND application_name = :app"
                    ),
                    {"app": APPLICATION_NAME},
                )
                conn.commit()
        store.engine.dispose()  # every pooled connection is gone, as after a server restart

    # -- top-ups --------------------------------------------------------------------------------
    def _issuer(self) -> VoucherIssuer:
        run = self.run
        assert run is not None
        key = serialization.load_pem_private_key(
            (self.cfg.state / "gdsc" / "operator.key").read_bytes(), password=None
        )
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return VoucherIssuer(run.store, key, (self.cfg.state / "gdsc" / "operator.pem").read_bytes())

    async def _top_ups(self, until_offset: timedelta) -> None:
        """Issue top-ups to prepayment homes at random times; re-queue until credited."""
        run = self.run
        assert run is not None and run.signer is not None and run.scheduler.plan is not None
        plan: PullPlan = run.scheduler.plan
        issuer = self._issuer()
        prepaid = [h for h in run.fleet.homes if h.consumer.ledger is not None]
        if not prepaid:
            return
        times = sorted(
            self.cfg.sim_start + timedelta(seconds=self.rng.uniform(3600, until_offset.total_seconds()))
            for _ in range(2 * len(prepaid) * self.cfg.days)
        )
        t = self.cfg.sim_start + timedelta(minutes=10)
        end = self.cfg.sim_start + until_offset + timedelta(hours=2)
        while t < end:
            await run.clock.sleep_until(t)
            while times and times[0] <= t:
                times.pop(0)
                home = self.rng.choice(prepaid)
                amount = Decimal(self.rng.choice(["5.00", "10.00", "20.00"]))
                voucher = await asyncio.to_thread(issuer.issue, home.spec.hub_id, "electricity", amount, t)
                self.vouchers[voucher.voucher_id] = (home.spec.hub_id, -1)
            await asyncio.to_thread(self._settle_and_requeue, issuer, plan, t)
            t += HALF_HOUR

    def _settle_and_requeue(self, issuer: VoucherIssuer, plan: PullPlan, now: Any) -> None:
        run = self.run
        assert run is not None and run.signer is not None
        for p in issuer.pending():
            hub, job = self.vouchers.get(p.voucher_id, (p.hub_id, -1))
            if job >= 0:
                state = plan.urgent_job(job)
                if state.get("state") not in ("done", "failed"):
                    continue  # still queued or in flight
                result = json.loads(state["result"]) if state.get("result") else None
                if isinstance(result, dict) and issuer.settle(hub, p.voucher_id, result, now) != "pending":
                    continue
            signed = run.signer.command(hub, "prepayment.topup", p.envelope, now)
            self.vouchers[p.voucher_id] = (hub, plan.enqueue_command(signed, now))

    def _count_top_ups(self) -> tuple[int, int, int]:
        """(issued, credited at the hubs, credited more than once) from the hubs' ledgers."""
        run = self.run
        assert run is not None
        credited: dict[str, int] = {}
        for home in run.fleet.homes:
            if home.consumer.ledger is None:
                continue
            for t in home.consumer.ledger.top_ups():
                credited[t["voucher_id"]] = credited.get(t["voucher_id"], 0) + 1
        issued = set(self.vouchers)
        return (
            len(issued),
            sum(1 for v in issued if v in credited),
            sum(1 for n in credited.values() if n > 1),
        )

    # -- the run --------------------------------------------------------------------------------
    async def run_all(self) -> ChaosResult:
        cfg = self.cfg
        self.run = run = await setup(cfg, wan=self._wan)
        try:
            faults = plan_faults(run.fleet.homes, cfg.days, self.rng)
            run.clock.rebase()
            started = time.monotonic()
            last_window_end = cfg.end + HALF_HOUR
            run.fleet.start_meters(until=cfg.end)
            assert run.error_log is not None and run.signer is not None and run.scheduler.plan is not None
            background = [
                asyncio.create_task(
                    run_operations(run.error_log, run.signer, run.scheduler.plan, run.clock, last_window_end)
                ),
                asyncio.create_task(self._top_ups(timedelta(days=cfg.days) - timedelta(hours=4))),
                *(asyncio.create_task(self._inject(f)) for f in faults),
            ]
            await run.scheduler.run(until=last_window_end, first_window=cfg.sim_start)
            await run.fleet.meters_done()
            for task in background:
                with contextlib.suppress(Exception):
                    await task
            for link in self.links.values():
                link.restore()
            # Closing windows: what the hubs buffered during the last faults comes in.
            await run.scheduler.run(until=last_window_end + 2 * HALF_HOUR, first_window=last_window_end)
            # Then the GDSC's next windows, condensed: a pull of every hub until each has
            # answered once (a pull that fell into backoff at the very end is retried later in
            # life too). "lost" counts what is not at the GDSC even then: data gone, not late.
            unreachable = await sweep(run, last_window_end + 2 * HALF_HOUR)
            if unreachable:
                log.error("hubs still unreachable after the sweep: %s", unreachable)
            seconds = time.monotonic() - started
            demo = await asyncio.to_thread(account, run, seconds)
            issued, credited, doubled = self._count_top_ups()
            summary = run.error_log.summary()
            return ChaosResult(
                homes=cfg.homes,
                days=cfg.days,
                seed=cfg.seed,
                readings_expected=demo.readings_expected,
                readings_stored=demo.readings_stored,
                lost=demo.missing,
                duplicates=demo.duplicates,
                estimated=demo.estimated,
                topups_issued=issued,
                topups_credited=credited,
                topups_lost=issued - credited,
                topups_doubled=doubled,
                faults_injected=sum(self.injected.values()),
                faults=dict(sorted(self.injected.items())),
                pull_errors=demo.pull_errors,
                incidents_open=summary["incidents_open"],
                incidents_closed=summary["incidents_closed"],
                work_orders=len(run.error_log.work_orders()),
                hub_errors_open=len(run.scheduler.plan.open_errors()),
                seconds=round(seconds, 1),
            )
        finally:
            for link in self.links.values():
                await link.close()
            await teardown(run)


def chaos_db_url(url: str | None) -> str | None:
    """``url`` with the chaos run's application_name (PostgreSQL), so it can kill only its own."""
    if not url or not url.startswith("postgresql"):
        return url
    return f"{url}{'&' if '?' in url else '?'}application_name={APPLICATION_NAME}"


async def run_chaos(cfg: DemoConfig) -> ChaosResult:
    cfg.db_url = chaos_db_url(cfg.db_url)
    return await Chaos(cfg).run_all()
