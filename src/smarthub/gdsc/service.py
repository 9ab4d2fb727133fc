"""The GDSC's one composition root: what ``smarthub gdsc`` runs, what the demo and the chaos run
put beside their simulated fleet, and what the benchmarks measure.

:meth:`GdscService.build` makes every part from one :class:`GdscConfig` (a state directory as
``smarthub demo --state`` or a deployment lays it out, the database, the retrieval window):

* the **store** (migrated), with the commissioning manifest's hubs registered;
* the shared **pull plan**, the **error log** (hub diagnoses and unreachable hubs into
  incidents), the **collector** (mutual TLS under the GDSC CA, the CA's CRL in the handshake
  and offered to the hubs with their bulk pulls) and the **scheduler** with its command courier;
* with ``gdsc/operator.{pem,key}``, the operator **signer**, and with it the **repairs** the
  error log decides (signed and queued every ``repairs_every``) and every step of the
  **upkeep** (:mod:`smarthub.gdsc.upkeep`: CRL re-publication, renewals, supplier changes and
  their opening reads, voucher re-sends, meter replacements, consent expiries, similar-homes
  comparisons, audit anchors); without it, the upkeep keeps the CRL and the meters only;
* with ``alerts`` (``HOST:PORT``), the **outage** side (:mod:`smarthub.gdsc.outages`): the UDP
  endpoint for hubs' last gasps and restorations (started with the windows), the correlator over
  the topology (``topology``, or ``gdsc/topology.csv`` / ``.geojson`` in the state, loaded at
  build), and the error log told which silent hubs are out of power (a power outage, not a dead
  hub nor a WAN fault). The hubs' alert keys come from commissioning (and the manifest's
  certificates), so alerts from real hubs verify;
* the data services **API** and the operator **console** on request (:meth:`GdscService.api`,
  :meth:`GdscService.console`).

Several GDSC processes may run against one PostgreSQL database: they share the pull plan, so each
hub is pulled once per window whichever process takes it. Under an accelerated clock (a
simulation), periodic work keeps a floor in wall time (the upkeep, the repairs, the hubs' event
pulls), so a fast clock does not turn it into a busy loop.

:meth:`GdscService.describe` says what was built, so ``smarthub gdsc``, the demo and the chaos run
can be shown to build the same GDSC for the same configuration (``tests/gdsc/test_assembly.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest, start_http_server

from smarthub.clock import AcceleratedClock, Clock, SystemClock
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.commissioning import register_manifest
from smarthub.gdsc.fleet.field_meters import FieldMeters
from smarthub.gdsc.fleet.key_escrow import KeyEscrow
from smarthub.gdsc.fleet.lifecycle import HubLifecycle
from smarthub.gdsc.fleet.pki import CertificateAuthority
from smarthub.gdsc.governance.aggregates import AggregationGroups
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.consent_sync import syncing_parties
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.gdsc.governance.hub_revocations import HubRevocations
from smarthub.gdsc.incidents.error_log import ErrorLog
from smarthub.gdsc.incidents.repairs import run_operations
from smarthub.gdsc.metrics import CertificateExpiry, CollectorMetrics, FleetGauges, SchedulerGauges
from smarthub.gdsc.outages.service import OutageService
from smarthub.gdsc.outages.topology import TopologyStore
from smarthub.gdsc.outages.topology import parse as parse_topology
from smarthub.gdsc.pull.collector import Collector
from smarthub.gdsc.pull.courier import CommandCourier
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.scheduler import RetrievalSchedule, Scheduler, WindowProgress, _wall_seconds
from smarthub.gdsc.pull.tables import Priority
from smarthub.gdsc.readings.vee.store import VeeSettings
from smarthub.gdsc.store import Store
from smarthub.gdsc.transfer.policies import TransferPolicies
from smarthub.gdsc.upkeep import Upkeep, crl_current, crl_stamp, keep_crl
from smarthub.wan.client.channel import ChannelEndpoint
from smarthub.wan.client.hub_client import HubClient
from smarthub.wan.contract.bodies import CommandBody
from smarthub.wan.contract.channel import hub_of_url
from smarthub.wan.contract.events import LOG_EVENT_POLL_RATE
from smarthub.wan.tls import client_context

if TYPE_CHECKING:
    from aiohttp import web
    from fastapi import FastAPI

log = logging.getLogger(__name__)

UPKEEP_EVERY = timedelta(minutes=5)
MIN_UPKEEP_WALL_S = 1.0
REPAIRS_EVERY = timedelta(minutes=15)
EVENTS_EVERY = timedelta(seconds=LOG_EVENT_POLL_RATE)  # the 2030.5 LogEventList pollRate
# A hub's events are re-read at most this often in wall time: under a simulation's clock the
# pollRate would otherwise re-read every open event's detail at nearly every pull.
MIN_EVENTS_WALL_S = 2.5


@dataclass(frozen=True)
class GdscConfig:
    """What a GDSC is built from. ``state`` holds ``ca/ca.pem``, ``gdsc/collector.{pem,key}`` and
    ``fleet.json``; with ``ca/ca.key`` the GDSC keeps the CRL, with ``gdsc/operator.{pem,key}``
    it signs commands. ``db_url``: default SQLite in ``gdsc/gdsc.sqlite``. ``seed`` spreads the
    scheduler's pulls within the window."""

    state: Path
    db_url: str | None = None
    window: timedelta = timedelta(minutes=30)
    events_every: timedelta | None = EVENTS_EVERY  # None: no event pulls (the pull benchmarks)
    upkeep_every: timedelta = UPKEEP_EVERY
    repairs_every: timedelta = REPAIRS_EVERY
    seed: int = 0
    alerts: str | None = None  # HOST:PORT of the last-gasp endpoint (UDP); None: no endpoint
    topology: Path | None = None  # a CSV/GeoJSON network topology to load at build
    alerts_max_skew: timedelta | None = None  # alerts' freshness check (default: the contract's)
    channel: str | None = None  # HOST:PORT of the endpoint for hubs' channels (wan.contract.channel)
    vee: bool = True  # every ingest through the VEE gate (smarthub.gdsc.readings.vee)

    @property
    def store_url(self) -> str:
        return store_url(self.state, self.db_url)


#: Allocations (of container objects) between two young collections while the GDSC runs; the
#: interpreter's default is 700.
GC_YOUNG_THRESHOLD = 10_000


def settle_gc() -> None:
    """The GC for a collector's run loop (``GdscService.run``; ``bench/pull.py`` measures with it).

    The objects built at setup leave the GC's full collections (``gc.freeze``: ~155,000 of them,
    scanned once or twice per 1,000-hub pull, 0.24 ms per hub). Young collections are 14 times
    rarer: a pull allocates ~100 tuples per reading batch that die young, freed by their reference
    counts, so at the default 700 a cold pull paid ~0.15 ms per hub in them, at 10,000 ~0.06
    (``gc.callbacks``, 500 hubs). The older generations' thresholds are left as they are."""
    gc.freeze()
    _young, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``PORT`` (on 127.0.0.1) → (host, port); ValueError else."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "0.0.0.0"
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"endpoint {text!r}: the port must be a number (HOST:PORT)") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"endpoint {text!r}: port {number} out of range")
    return host, number


def topology_file(config: GdscConfig) -> Path | None:
    """The topology to load: the configured file, else ``gdsc/topology.{csv,geojson}``."""
    if config.topology is not None:
        return config.topology
    for name in ("topology.csv", "topology.geojson"):
        if (config.state / "gdsc" / name).exists():
            return config.state / "gdsc" / name
    return None


def store_url(state: Path, db_url: str | None = None) -> str:
    """The GDSC database of a state directory: ``db_url``, or SQLite in ``gdsc/gdsc.sqlite``."""
    return db_url or f"sqlite:///{(state / 'gdsc' / 'gdsc.sqlite').resolve()}"


def open_store(state: Path, db_url: str | None = None) -> Store:
    """The state's store, migrated to the current schema, its meter key escrow under the
    state's key-encryption key (``gdsc/escrow.key``, created on first use); the caller closes it."""
    store = Store(store_url(state, db_url))
    store.create_schema()
    store.enable_key_escrow(KeyEscrow.from_state(state))
    return store


def clock_from_manifest(state: Path) -> Clock:
    """The manifest's simulated clock (sim_start, speed, wall_start) if it has one, else real
    time: a GDSC process and a fleet process started on one state agree on the time."""
    manifest_path = state / "fleet.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    if "speed" in manifest and "wall_start" in manifest:  # a running fleet's shared clock
        return AcceleratedClock(
            datetime.fromisoformat(manifest["sim_start"]),
            float(manifest["speed"]),
            float(manifest["wall_start"]),
        )
    return SystemClock()


def operator_signer(state: Path, store: Store) -> CommandSigner | None:
    """The GDSC operator's command signer (``gdsc/operator.{pem,key}``), counters from the store."""
    if not (state / "gdsc" / "operator.key").exists():
        return None
    return CommandSigner.from_files(
        str(state / "gdsc" / "operator.pem"), str(state / "gdsc" / "operator.key"), store.next_command_counter
    )


def collector_tls_context(
    cert: str | Path, key: str | Path, ca_pem: str | Path, crl: str | Path | None
) -> ssl.SSLContext:
    """The collectors' client context: mutual TLS under the GDSC CA and, given the CA's CRL,
    revoked hubs refused in the handshake (OpenSSL CRL_CHECK_LEAF,
    :func:`smarthub.wan.tls.client_context`). The CRL must be kept current (the upkeep)."""
    return client_context(cert, key, ca_pem, crl)


@dataclass
class GdscService:
    """A built GDSC (see the module docstring); :meth:`build` makes one."""

    config: GdscConfig
    clock: Clock
    tls_clock: Clock
    store: Store
    plan: PullPlan
    error_log: ErrorLog
    ssl_context: ssl.SSLContext
    collector: Collector
    scheduler: Scheduler
    upkeep: Upkeep
    signer: CommandSigner | None = None
    crl: Path | None = None  # the CRL the collectors check hubs against, if current at start
    outages: OutageService | None = None  # the last-gasp endpoint and correlator (``alerts``)
    alerts_port: int | None = None  # the UDP port it listens on, once started
    channels: ChannelEndpoint | None = None  # where hubs that cannot be dialled park (``channel``)
    channel_port: int | None = None  # its TCP port, once started
    # The Prometheus metrics (smarthub.gdsc.metrics): this process's collector, its scheduler and
    # the fleet-wide gauges, in a registry of this GDSC's own.
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    collector_metrics: CollectorMetrics | None = None
    metrics_server: Any = None  # the --metrics-port HTTP server, once started

    @classmethod
    def build(
        cls,
        config: GdscConfig,
        clock: Clock,
        *,
        tls_clock: Clock | None = None,
        on_progress: Callable[[WindowProgress], None] | None = None,
    ) -> GdscService:
        """Every part from ``config`` (``tls_clock`` dates CRLs: the system clock, OpenSSL's)."""
        tls_clock = tls_clock or SystemClock()
        state = config.state
        store = open_store(state, config.db_url)
        if config.vee:  # invalid data is never stored as truth: quarantined, with the evidence
            store.enable_vee(VeeSettings(now=lambda: int(clock.now().timestamp())))
        register_manifest(store, json.loads((state / "fleet.json").read_text()))
        signer = operator_signer(state, store)
        crl_path = state / "ca" / "crl.pem"
        due = keep_crl(state, store, signer, tls_clock.now())
        crl = crl_path if due is not None or crl_current(crl_path, tls_clock.now()) else None
        if crl is None:
            log.warning("no current CRL at %s: revoked hubs are refused only by the store", crl_path)
        ctx = collector_tls_context(
            state / "gdsc" / "collector.pem", state / "gdsc" / "collector.key", state / "ca" / "ca.pem", crl
        )
        error_log = ErrorLog(store, wan_link_of=store.wan_link)
        channels = None
        if config.channel is not None:
            parse_listen(config.channel)  # a bad address fails the build, not the first window
            channel_hubs = ChannelHubs(store)
            channels = ChannelEndpoint(known=channel_hubs.__contains__)
        collector = _collector(config, store, ctx, clock, error_log, crl, channels)
        # The transfer policies decide which hubs each window pulls (none set: every hub, every
        # window), and a hub's changed policy is queued for it once it has been pulled.
        policies = TransferPolicies(store.engine)
        scheduler = Scheduler(
            collector,
            clock,
            store.active_hubs,
            window=config.window,
            seed=config.seed,
            on_progress=on_progress,
            on_unreachable=error_log.record_unreachable,
            schedules=(RetrievalSchedule("every", config.window, planner=policies.planner(config.window)),),
        )
        assert scheduler.plan is not None
        if signer is not None:
            # What rides on a hub's pull: its changed transfer policy, and the HAN scan (and the
            # registration) of a meter fitted at its premises (smarthub.gdsc.fleet.field_meters).
            plan, sign, field = scheduler.plan, signer, FieldMeters(store.engine, escrow=store.key_escrow)

            def after_pulls(hub_ids: Sequence[str], now: datetime) -> None:
                policies.after_pulls(plan, sign, hub_ids, now)
                field.after_pulls(plan, sign, hub_ids, now)

            scheduler.after_pulls = after_pulls
            # Consent revocations asked at a home's display ride on its pull and are applied as
            # the API applies the occupant's (audited; consent.set queued for the hubs).
            collector.revocations = HubRevocations(
                AccessGuard(syncing_parties(store, signer, clock), AuditLog(store.engine), clock)
            )
        upkeep = Upkeep(
            state, store, collector, signer, clock, tls_clock, crl_path, crl_due=due, plan=scheduler.plan
        )
        upkeep.crl_applied = crl_stamp(crl_path) if crl is not None else None
        upkeep.on_crl_applied.append(lambda: _drop_connections(scheduler))
        built = cls(
            config, clock, tls_clock, store, scheduler.plan, error_log, ctx, collector, scheduler, upkeep,
            signer, crl,
        )  # fmt: skip
        built.channels = channels
        built.collector_metrics = CollectorMetrics(built.metrics, scheduler.name)
        built._watch(collector)
        built.metrics.register(SchedulerGauges(lambda: built.scheduler, scheduler.name))
        built.metrics.register(FleetGauges(store, clock))
        built.metrics.register(CertificateExpiry.of_state(state))
        if config.alerts is not None:
            parse_listen(config.alerts)  # a bad address fails the build, not the first window
            topo = topology_file(config)
            if topo is not None:
                fmt = "geojson" if topo.suffix in (".geojson", ".json") else "csv"
                topology = TopologyStore(store.engine)
                topology.load(parse_topology(topo.read_text(), fmt))
                # Feeders are the planning aggregates' groups (k-anonymity per feeder).
                topology.feeder_groups(AggregationGroups(store.engine), clock.now())
            skew = {} if config.alerts_max_skew is None else {"max_skew": config.alerts_max_skew}
            built.attach_outages(OutageService(store.engine, clock, **skew))
        return built

    def attach_outages(self, outages: OutageService) -> None:
        """The outage side (built here with ``alerts``, or by the chaos run): closed with the GDSC,
        and the error log told which silent hubs sent a last gasp."""
        self.outages = outages
        self.error_log.power_out = outages.power_out

    @classmethod
    def from_state(
        cls,
        state: Path,
        clock: Clock,
        db_url: str | None = None,
        window: timedelta = timedelta(minutes=30),
        *,
        tls_clock: Clock | None = None,
        upkeep_every: timedelta = UPKEEP_EVERY,
    ) -> GdscService:
        """:meth:`build` for ``state``, ``db_url``, ``window`` and ``upkeep_every``."""
        config = GdscConfig(state, db_url, window=window, upkeep_every=upkeep_every)
        return cls.build(config, clock, tls_clock=tls_clock)

    @property
    def upkeep_every(self) -> timedelta:
        return max(self.config.upkeep_every, _wall_seconds(self.clock, MIN_UPKEEP_WALL_S))

    @property
    def repairs_every(self) -> timedelta:
        return max(self.config.repairs_every, _wall_seconds(self.clock, MIN_UPKEEP_WALL_S))

    def describe(self) -> dict[str, Any]:
        """What was built and how it is set: the same configuration describes the same GDSC."""
        return {
            "store": self.store.dialect,
            "hubs": len(self.store.active_hubs()),
            "plan": {"lease_s": self.plan.lease.total_seconds(), "max_tries": self.plan.max_tries},
            "collector": {
                "bulk": self.collector.bulk,
                "error_log": self.collector.error_log is self.error_log,
                "events_every_s": None
                if self.collector.error_log is None
                else self.collector.events_every.total_seconds(),
                "crl": self.crl is not None,
            },
            "scheduler": {
                "window_s": self.config.window.total_seconds(),
                "tick_s": None if self.scheduler.tick is None else self.scheduler.tick.total_seconds(),
                "seed": self.scheduler.seed,
                "on_unreachable": self.scheduler.on_unreachable is not None,
                "courier": self.scheduler.courier is not None,
            },
            "signer": self.signer is not None,
            "repairs_every_s": None if self.signer is None else self.repairs_every.total_seconds(),
            "channel": self.config.channel,
            "alerts": None
            if self.config.alerts is None or self.outages is None
            else {
                "listen": self.config.alerts,
                "premises_on_map": len(self.outages.correlator.topology.places),
                "error_log": self.error_log.power_out == self.outages.power_out,
            },
            "upkeep": {
                "every_s": self.upkeep_every.total_seconds(),
                "steps": [name for name, _ in self.upkeep.steps(self.clock.now())],
                "keeps_crl": self.upkeep.crl_due is not None,
            },
        }

    # -- running -----------------------------------------------------------------------------
    async def run_windows(self, until: datetime, first_window: datetime | None = None) -> None:
        """Pull the windows from ``first_window`` (default: the current one) until ``until``, with
        the upkeep and the repairs running beside the scheduler; the parts stay open."""
        await self.start_alerts()
        await self.start_channels()
        stop = asyncio.Event()
        background = [asyncio.create_task(self.upkeep.loop(self.upkeep_every, stop))]
        if self.outages is not None:
            background.append(asyncio.create_task(self._refresh_topology(stop)))
        if self.signer is not None:
            background.append(
                asyncio.create_task(
                    run_operations(
                        self.error_log, self.signer, self.plan, self.clock, until, self.repairs_every
                    )
                )
            )
        try:
            await self.scheduler.run(until, first_window)
        finally:
            stop.set()
            for task in background[1:]:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)

    async def run(self, until: datetime, first_window: datetime | None = None) -> None:
        """:meth:`run_windows`, then :meth:`close`: what ``smarthub gdsc`` does."""
        settle_gc()
        try:
            await self.run_windows(until, first_window)
        finally:
            await self.close()

    async def replace_collector(self, ssl_context: ssl.SSLContext | None = None) -> Collector:
        """A collector restart: a new collector (TLS sessions and batches of the old one lost)
        takes over the scheduler's pulls, its command deliveries and the upkeep's CRL hand-over.

        ``ssl_context``: the collector's new TLS context (a new collector certificate, the old
        one to be revoked); the commands go out under it too, or the hubs would refuse them
        once they hold the CRL that lists the old certificate."""
        old, old_courier = self.collector, None
        if ssl_context is not None:
            self.ssl_context = ssl_context
            old_courier, self.scheduler.courier = (
                self.scheduler.courier,
                CommandCourier(ssl_context, channels=self.channels),
            )
        self.collector = _collector(
            self.config, self.store, self.ssl_context, self.clock, self.error_log, self.crl, self.channels
        )
        self.scheduler.collector = self.upkeep.collector = self.collector
        self._watch(self.collector)
        await old.close()
        if old_courier is not None:
            await old_courier.close()
        return self.collector

    async def _refresh_topology(self, stop: asyncio.Event) -> None:
        """Re-read the topology every upkeep interval: the API (maybe another process) edits it."""
        assert self.outages is not None
        every = self.upkeep_every.total_seconds() / max(getattr(self.clock, "speed", 1.0), 1e-9)
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)
            if not stop.is_set():
                await asyncio.to_thread(self.outages.refresh_topology)

    async def start_alerts(self) -> int | None:
        """Start the last-gasp endpoint if configured and not yet listening; the UDP port."""
        if self.outages is None or self.config.alerts is None:
            return None
        if not self.outages.started:
            host, port = parse_listen(self.config.alerts)
            self.alerts_port = await self.outages.start(host, port)
            log.info("last-gasp endpoint on %s:%d (UDP)", host, self.alerts_port)
        return self.alerts_port

    async def start_channels(self) -> int | None:
        """Start the endpoint for hubs' channels if configured and not yet listening; its port."""
        if self.channels is None or self.config.channel is None:
            return None
        if self.channels.port is None:
            host, port = parse_listen(self.config.channel)
            self.channel_port = await self.channels.start(host, port)
            log.info("channel endpoint on %s:%d (TCP)", host, self.channel_port)
        return self.channel_port

    def _watch(self, collector: Collector) -> None:
        """The collector's pulls and ingest transactions counted in this GDSC's metrics."""
        if self.collector_metrics is not None:
            collector.observers.append(self.collector_metrics.observe_pull)
            collector.ingest_observers.append(self.collector_metrics.observe_ingest)

    def metrics_text(self) -> bytes:
        """The metrics in the Prometheus text format (what ``/metrics`` serves)."""
        return generate_latest(self.metrics)

    def serve_metrics(self, port: int, host: str = "127.0.0.1") -> int:
        """``/metrics`` on ``host:port`` (0: any free port) from a thread of its own, so a scrape
        answers even while the event loop is busy pulling; the bound port. Closed by :meth:`close`."""
        server, _thread = start_http_server(port, host, registry=self.metrics)
        self.metrics_server = server
        return int(server.server_port)

    async def close(self) -> None:
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
            self.metrics_server = None
        if self.channels is not None:
            await self.channels.stop()
        if self.outages is not None:
            await self.outages.close()
        await self.scheduler.close()
        await self.collector.close()
        self.store.close()

    # -- on request ---------------------------------------------------------------------------
    def api(self) -> FastAPI:
        """The data services API over this GDSC's store, clock and operator key."""
        from smarthub.gdsc.api.app import app_from_store

        return app_from_store(self.store, self.config.state, self.clock, metrics=self.metrics)

    def console(self) -> web.Application:
        """The operator page: fleet health, the scheduler's windows, the error log."""
        from smarthub.gdsc.incidents.console import console_app

        return console_app(
            self.store, lambda: self.scheduler.windows, self.error_log, self.metrics, clock=self.clock
        )


class ChannelHubs:
    """The hub ids registered as reached through a channel (``channel://<hub id>``), the ones the
    channel endpoint parks connections for; re-read from the registry at most every
    ``refresh`` seconds of wall time (a hub commissioned with a channel parks within that)."""

    def __init__(self, store: Store, refresh: float = 30.0) -> None:
        self.store = store
        self.refresh = refresh
        self._ids: frozenset[str] = frozenset()
        self._read_at: float | None = None

    def __contains__(self, hub_id: object) -> bool:
        now = time.monotonic()
        if self._read_at is None or now - self._read_at > self.refresh:
            self._ids = frozenset(h.hub_id for h in self.store.active_hubs() if hub_of_url(h.url))
            self._read_at = now
        return hub_id in self._ids


def _collector(
    config: GdscConfig,
    store: Store,
    ctx: ssl.SSLContext,
    clock: Clock,
    error_log: ErrorLog,
    crl: Path | None,
    channels: ChannelEndpoint | None = None,
) -> Collector:
    kw: dict[str, Any] = {"channels": channels}
    if config.events_every is not None:
        kw |= {
            "error_log": error_log,
            "events_every": max(config.events_every, _wall_seconds(clock, MIN_EVENTS_WALL_S)),
        }
    collector = Collector(store, ctx, clock, **kw)
    if crl is not None:
        collector.offer_crl(crl)  # the hubs take it with their pulls (wan.contract.crl_sync)
    return collector


# -- what the command line does with a state directory ---------------------------------------------


@contextlib.contextmanager
def open_lifecycle(state: Path, db_url: str | None = None) -> Iterator[HubLifecycle]:
    """The state's hub lifecycle: its CA (``ca/`` with ``ca.key``), store, shared pull plan and,
    with ``gdsc/operator.{pem,key}``, the signer of the commands it queues."""
    if not (state / "ca" / "ca.key").exists():
        raise FileNotFoundError(f"{state} has no ca/ca.key (the GDSC CA)")
    store = open_store(state, db_url)
    try:
        signer = operator_signer(state, store)
        yield HubLifecycle(store, CertificateAuthority.load(state / "ca"), PullPlan(store), signer)
    finally:
        store.close()


def _signer(state: Path, store: Store) -> CommandSigner:
    signer = operator_signer(state, store)
    if signer is None:
        raise FileNotFoundError(f"{state} has no gdsc/operator.key: no command can be signed")
    return signer


def queue_command(
    state: Path,
    hub_id: str,
    command_type: str,
    body: CommandBody | dict[str, Any],
    now: datetime,
    db_url: str | None = None,
    priority: Priority | None = None,
) -> int:
    """Sign a management command and queue it in the shared plan; the job id.

    A running GDSC delivers it at its next scheduling tick, ahead of any bulk pull (top-up,
    disconnect and reconnect are urgent; other commands on-demand unless ``priority`` says).
    """
    store = open_store(state, db_url)
    try:
        if not any(h.hub_id == hub_id for h in store.active_hubs()):
            raise LookupError(f"hub {hub_id!r} is not registered (or not active) at this GDSC")
        return PullPlan(store).queue_command(_signer(state, store), hub_id, command_type, body, now, priority)
    finally:
        store.close()


async def send_command(
    state: Path,
    hub_id: str,
    command_type: str,
    body: CommandBody | dict[str, Any],
    now: datetime,
    db_url: str | None = None,
) -> dict[str, Any]:
    """Sign a management command with the GDSC operator key and deliver it to one hub now.

    The counter comes from the store, so it keeps rising across GDSC restarts.
    """
    store = open_store(state, db_url)
    try:
        hub = next((h for h in store.active_hubs() if h.hub_id == hub_id), None)
        if hub is None:
            raise LookupError(f"hub {hub_id!r} is not registered (or not active) at this GDSC")
        signed = _signer(state, store).command(hub_id, command_type, body, now)
        ctx = client_context(
            state / "gdsc" / "collector.pem", state / "gdsc" / "collector.key", state / "ca" / "ca.pem"
        )
        client = HubClient(hub.url, ctx, hub.lfdi)
        try:
            return await client.post_command(signed.envelope())
        finally:
            await client.close()
    finally:
        store.close()


async def _drop_connections(scheduler: Scheduler) -> None:
    """The courier's kept-alive connections to hubs taken out of use (the courier it has now: a
    new collector certificate replaces it), each closed once its delivery under way, if any, has
    its verdict; the next command to a hub opens a verified one."""
    if scheduler.courier is not None:
        await scheduler.courier.retire_sessions()


__all__ = [
    "GdscConfig",
    "GdscService",
    "clock_from_manifest",
    "collector_tls_context",
    "open_lifecycle",
    "open_store",
    "operator_signer",
    "parse_listen",
    "queue_command",
    "send_command",
    "store_url",
]
