"""``smarthub chaos``: a fleet run with faults injected, and an account of what survived.

The demo's fleet and the GDSC ``smarthub gdsc`` runs (real frames, real hubs with SQLite
histories, 2030.5 over mutual TLS, the GDSC's composition root with its shared pull plan, error
log, repairs and upkeep), with every hub's WAN behind a cuttable link (:mod:`smarthub.sim.faults`)
and a seeded schedule of faults:

* ``wan_outage``: one hub's WAN link down for up to 3 simulated days (the hub buffers; the
  GDSC's incremental pulls backfill it in order when it returns);
* ``cell_outage``: every hub of one cell down for an hour or two at once (one incident);
* ``power_cut``: a hub hears nothing and serves nothing for 1–3 hours (its meters keep
  counting; the hub interpolates the gap and flags it estimated);
* ``han_dropout``: one meter unheard for 30–120 minutes;
* ``collector_restart``: the collector replaced mid-run (TLS sessions and batches lost);
* ``database_restart``: the GDSC's database connections killed mid-ingest (PostgreSQL:
  ``pg_terminate_backend``; SQLite: the pool disposed);
* ``meter_replace``: a home's DLMS electricity meter exchanged mid-day for a new one (new system
  title, new keys, registers from 0): the installer's final read of the old meter and first read
  of the new one, then the GDSC's signed ``meter.replace`` command, delivered at the hub's next
  pull, records it in the hub's registry. The old meter owes its half-hours up to the exchange,
  the new one those from the next half-hour on (the half-hour of the exchange is whole for
  neither; settlement estimates it);
* ``clock_drift``: a DLMS meter's real-time clock runs fast or slow by minutes a day; the hub
  diagnoses the drift from the Clock it reads with the registers and re-syncs it (a SET of
  Clock attribute 2, read back), so its intervals stay in their half-hours.
* ``meter_moved``: a ZigBee home's electricity meter moved behind two floors (8 m, two walls),
  once in a home whose HAN is 802.15.4 at 2.4 GHz and once in one at 868 MHz. Radio meters'
  frames travel through the link model of their medium (:mod:`smarthub.sim.radio`, placed by
  the home's seed), so the hub's weak-signal diagnoses are caused, not injected: the 2.4 GHz
  meter is diagnosed, the 868 MHz one is not (``meters_moved``). The run writes the HAN planning
  report of every simulated home (``han-plan.json`` in the state directory: which Table 1 media
  reach which meters from where they are, :mod:`smarthub.han.planning`).

With ``channel_every`` (``smarthub chaos --channel-every 2``) every n-th hub listens on no port
and is reached only through the channel it keeps open to the GDSC (issue 26), over a cuttable
link of its own between it and the GDSC's channel endpoint; then also:

* ``channel_cut``: one channel hub's channels dropped and its reconnects refused for 10-90
  minutes (the home router restarted, its NAT mapping lost), then restored: the hub comes back
  by its own jittered back-off and the GDSC pulls what it buffered;
* ``channel_endpoint_restart``: the GDSC's channel endpoint stopped and started again (a
  redeploy): every parked channel of the fleet dropped at once, and every channel hub
  reconnecting on its own back-off.

* ``feeder_outage``: every home of one LV feeder loses mains together (the hubs send their
  last gasps from stored energy, then hear and serve nothing), then mains returns (restoration
  notices); ``substation_outage``: the same for every feeder of one secondary substation. The
  GDSC's alert endpoint and correlator (:mod:`smarthub.gdsc.outages`) run beside the scheduler,
  over the topology the simulator generates (:mod:`smarthub.sim.topology`); a ``power_cut`` of one
  home sends its last gasp too.

Prepayment homes receive top-ups during the run: signed vouchers issued by the GDSC and queued
as urgent commands, as the API's top-up does; the GDSC's upkeep (its voucher courier) settles
them from the hubs' verdicts and re-sends them after a hub comes back. At the end the run
counts, from the GDSC's store and the hubs' own ledgers, what was expected and what arrived:
``lost`` readings (absent, not even estimated), ``duplicates``, ``topups_lost`` (issued, never
credited) and ``topups_doubled`` (credited twice: impossible by construction, counted anyway).
Top-ups still on their way when the clock stops (a starved run's scheduler falls behind it) are
delivered in the GDSC's next windows first (:mod:`smarthub.sim.topups`), so ``topups_lost``
counts top-ups the hubs never credited even then, and ``topups_late`` those that came only then.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from smarthub.gdsc.commands.vouchers import VoucherIssuer
from smarthub.gdsc.outages import power_quality as pq
from smarthub.gdsc.outages.service import OutageService
from smarthub.gdsc.outages.topology import TopologyStore
from smarthub.gdsc.pull.tables import Priority
from smarthub.han.media import Placement
from smarthub.han.planning import plan
from smarthub.han.poll import SimulatedLink
from smarthub.hub.alerts import AlertSender, SequenceReservations, udp_transport
from smarthub.hub.diagnostics import DiagnosisCode, RepairAction, RepairOutcome
from smarthub.model import ObisCode
from smarthub.sim.chaos_life import FleetLife, plan_life, renewal_plan
from smarthub.sim.demo import HALF_HOUR, DemoConfig, DemoRun, account, free_port, setup, sweep, teardown
from smarthub.sim.dlms_meter import DlmsMeterSimulator
from smarthub.sim.dsmr_meter import DsmrMeterSimulator
from smarthub.sim.faults import HanGate, WanLink
from smarthub.sim.fleet import CELL_SIZE, Fleet, SimulatedHome, zigbee_medium
from smarthub.sim.loop_lag import LoopLag
from smarthub.sim.topology import feeder_size_for, fleet_topology
from smarthub.sim.topups import settle_top_ups
from smarthub.wan.contract.alerts import MAX_SKEW
from smarthub.wan.contract.authority import host_header
from smarthub.wan.contract.bodies import MeterReplace, PrepaymentTopup

log = logging.getLogger(__name__)

# The chaos run's own PostgreSQL connections carry a name of this prefix, unique to the run
# (chaos_db_url), so a "database restart" kills them and nobody else's: not other GDSCs, and not
# another chaos run on the same server and database (a shared name let one run's restart kill
# the other's connections mid-ingest: the PostgreSQL chaos test failed when several ran at once).
APPLICATION_NAME = "smarthub-chaos"

# Runs longer than this sample every meter every LONG_RUN_SAMPLES (the half-hour boundaries are
# what settlement needs) and pull each hub once a LONG_RUN_WINDOW (the bulk pulls, TLS and XML
# are most of a run's CPU): a month of 50 homes is then CPU-minutes, not hours. Commands (top-ups,
# renewals, consents) are urgent work, delivered at the scheduler's ticks whatever the window.
TOP_UP_DAY = timedelta(days=1)  # a daily top-up is credited within this of its issue
LONG_RUN_DAYS = 3
# Issue 19: simulated seconds from the cut to the outage open at the GDSC, at p95. The alert path
# holds no database access and no batching interval (gdsc.outages.receiver), so what is left is
# the datagram's hand-over between threads, milliseconds of wall time even at the run's speed.
OUTAGE_DETECT_GOAL_S = 60.0
LONG_RUN_SAMPLES = timedelta(minutes=30)
LONG_RUN_WINDOW = timedelta(hours=2)
MOVED = Placement(8.0, walls=2, floors=2)  # a meter_moved fault's new place: behind two floors


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    start: timedelta  # from the start of the run (simulated)
    length: timedelta
    target: str  # hub id, cell, meter id, or "gdsc"
    rate: float = 0.0  # clock_drift: seconds the meter's clock gains (or loses) per simulated day


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
    topups_late: int = 0  # credited only in the windows after the run's last (sim.topups)
    faults: dict[str, int] = field(default_factory=dict)
    pull_errors: int = 0
    incidents_open: int = 0
    incidents_closed: int = 0
    work_orders: int = 0
    hub_errors_open: int = 0
    meters_replaced: int = 0  # exchanges the hub's registry records (meter.replace applied)
    clock_resyncs: int = 0  # successful re-syncs of drifting meter clocks by the hubs
    clock_drift_max_s: float = 0.0  # the largest offset a drifting meter's clock reached
    # Network outages (feeder and substation faults) and what the GDSC made of them.
    outages_injected: int = 0
    outages_detected: int = 0  # an outage opened at the GDSC at the fault's node (or above it)
    outage_detect_p95_s: float | None = None  # simulated s from the cut to the outage opened
    restorations_matched: int = 0  # detected outages closed by their homes' restoration notices
    false_outages: int = 0  # outages opened over a premises no power fault cut (e.g. a WAN fault)
    alerts_stored: int = 0
    alerts_refused: int = 0
    # Issue 19's goal: every injected outage detected within OUTAGE_DETECT_GOAL_S (simulated) at
    # p95, every restoration matched, no false outage.
    outage_detect_goal_s: float = 0.0
    outage_goal_met: bool = False
    # Power failures from the meters' own records (issue 19 item 3; with --power-quality): per
    # injected outage, its length and what the network operator's summary of its node says (the
    # DSMR meters' long failures and the longest from their logs).
    power_failures: list[dict[str, Any]] = field(default_factory=list)
    # What the GDSC's upkeep must keep true over weeks (issue 24).
    commands_refused_stale_crl: int = 0  # commands the hubs refused under a stale CRL: must be 0
    # ... and as signed by an unknown or revoked signer (after the operator's rotation): must be 0
    commands_refused_signer: int = 0
    topup_days_missed: int = 0  # daily top-ups not credited within a day (no fault excusing): must be 0
    renewals_due: int = 0  # hub certificate renewals that fell due (sim.chaos_life)
    renewals_done: int = 0  # of those, installed at the hub before expiry and moved to by the GDSC
    revocations: dict[str, int] = field(default_factory=dict)
    operator_vouchers_resigned: int = 0  # pending vouchers signed again under the new operator
    operator_commands_resigned: int = 0  # undelivered commands signed again under it
    consents_granted: int = 0
    consent_revocations: int = 0
    consent_revocations_applied: int = 0  # at the hub
    consent_expiries: int = 0  # consents that ran their term inside the run
    consent_expiries_applied: int = 0  # ... and ended at the hub's privacy filter
    tenancy_changes: int = 0
    supplier_changes: int = 0
    opening_reads: int = 0  # complete opening reads stored at the GDSC
    tariff_changes: int = 0
    tariffs_applied: int = 0
    firmware_updated: int = 0  # hubs that kept the good version
    firmware_rollout_complete: bool = False
    firmware_rolled_back: int = 0  # hubs that rolled the bad version back on their own
    firmware_halted: bool = False  # ... and the roll-out stopped there
    firmware_not_offered: int = 0  # hubs the bad version never reached
    life_events_failed: int = 0
    # Hubs reached only through their channel (issue 26) and what the GDSC's endpoint saw.
    channel_hubs: int = 0
    channels_accepted: int = 0  # channels parked at the GDSC (reconnects included)
    channels_taken: int = 0  # ... used by a pull or a command
    channel_reconnect_failures: int = 0  # the hubs' attempts refused or cut unused (backed off)
    # HAN media (issue 26): weak-signal diagnoses the hubs opened (caused by the link model, none
    # injected), and per medium whether the meter moved behind two floors was diagnosed.
    weak_signal_diagnoses: int = 0
    meters_moved: dict[str, bool] = field(default_factory=dict)
    han_plan_misses: dict[str, int] = field(default_factory=dict)  # meters each medium misses
    seconds: float = 0.0
    # How late the event loop ran its timers (sim.loop_lag): a starved run's late renewals and
    # top-ups measure the machine, not the code
    loop_lag_p95_s: float = 0.0
    loop_lag_max_s: float = 0.0
    loop_lag_p95_sim_s: float = 0.0
    starved: bool = False

    def json_line(self) -> str:
        return json.dumps(asdict(self))


def long_wan_outage(days: int) -> tuple[timedelta, timedelta]:
    """The run's long WAN outage (one hub, from 2 hours in): its start and length, up to 3
    days, over 4 hours before the run's end. The longest any fault keeps a hub from the GDSC:
    the hub certificates' validity is planned past its end (:func:`renewal_plan`)."""
    return timedelta(hours=2), min(timedelta(days=3), timedelta(days=days) - timedelta(hours=6))


def plan_faults(
    homes: list[SimulatedHome], days: int, rng: random.Random, channel_hubs: list[str] | None = None
) -> list[Fault]:
    """The run's faults, from the seed: the same seed, the same faults. ``channel_hubs``: the
    hubs reached through a channel (their channel faults are drawn after all others, so a run
    without channel hubs has the faults it always had)."""
    run = timedelta(days=days)
    ids = [h.spec.hub_id for h in homes]
    meters = [(h.spec.hub_id, m) for h in homes for m, _ in h.meters]
    faults: list[Fault] = []

    def at(earliest: timedelta, length: timedelta) -> timedelta:
        # Every fault ends at least three hours before the run does, so its recovery is seen.
        latest = run - length - timedelta(hours=3)
        span = max((latest - earliest).total_seconds(), 0)
        return earliest + timedelta(seconds=int(rng.uniform(0, span)) // 60 * 60)

    faults.append(Fault("wan_outage", *long_wan_outage(days), rng.choice(ids)))
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
    # Drawn after the others, so adding them left the earlier faults of a seed unchanged.
    dlms = [h.spec.hub_id for h in homes if "dlms" in h.spec.kind]
    if dlms:
        swapped = rng.choice(dlms)
        faults.append(Fault("meter_replace", at(timedelta(hours=1), timedelta(0)), timedelta(0), swapped))
        drifting = rng.choice([h for h in dlms if h != swapped] or dlms)
        length = min(timedelta(hours=12), run - timedelta(hours=6))
        rate = rng.choice((-1, 1)) * rng.uniform(10, 20) * 60  # 10-20 minutes a day, fast or slow
        faults.append(Fault("clock_drift", at(timedelta(hours=1), length), length, drifting, rate))
    # Network outages, drawn last (earlier faults of a seed unchanged): feeders in the first half
    # of the run, a substation in the second, so the two never merge into one outage.
    feeders = -(-len(homes) // feeder_size_for(len(homes)))
    half = run / 2
    for _ in range(max(1, days)):
        length = timedelta(minutes=rng.randint(30, 90))
        start = timedelta(hours=1) + timedelta(
            seconds=int(rng.uniform(0, max((half - length - timedelta(hours=1)).total_seconds(), 0)))
            // 60
            * 60
        )
        faults.append(Fault("feeder_outage", start, length, f"LV-{rng.randrange(feeders):04d}"))
    if feeders >= 2:
        length = timedelta(minutes=rng.randint(30, 90))
        faults.append(
            Fault("substation_outage", at(half, length), length, f"SS-{rng.randrange(feeders // 2):03d}")
        )
    # Drawn after the network outages (earlier faults of a seed unchanged): a meter moved behind
    # two floors in the first ZigBee home of each band.
    firsts: dict[str, str] = {}
    for h in homes:
        if h.spec.kind == "zigbee":
            firsts.setdefault(zigbee_medium(h.spec), h.spec.hub_id)
    if len(firsts) == 2:
        when = at(timedelta(hours=1), timedelta(hours=6))
        for medium in ("zigbee-2.4", "zigbee-868"):
            faults.append(Fault("meter_moved", when, timedelta(0), firsts[medium]))
    if channel_hubs:
        for _ in range(max(1, len(channel_hubs) // 4) * days):
            length = timedelta(minutes=rng.randint(10, 90))
            faults.append(
                Fault("channel_cut", at(timedelta(hours=1), length), length, rng.choice(channel_hubs))
            )
        for _ in range(max(1, days // 2)):
            faults.append(
                Fault("channel_endpoint_restart", at(timedelta(hours=1), timedelta(0)), timedelta(0), "gdsc")
            )
    return sorted(faults, key=lambda f: f.start)


class Chaos:
    def __init__(self, cfg: DemoConfig) -> None:
        # Certificates and CRLs on the simulated clock: weeks of CRL re-publication, renewals
        # and the hubs' stale-CRL policy happen inside the run (sim.demo.setup).
        cfg.sim_certificates = True
        cfg.hub_certificate_days, self.renew_before, self.renew_spread = renewal_plan(
            cfg.days, away_until=sum(long_wan_outage(cfg.days), timedelta(0))
        )
        if cfg.days > LONG_RUN_DAYS and cfg.sample_every is None:
            # Weeks at a minute a day: fewer samples, and each hub pulled every two hours.
            cfg.sample_every, cfg.window = LONG_RUN_SAMPLES, LONG_RUN_WINDOW
        self.cfg = cfg
        self.life: FleetLife | None = None
        self.application_name = APPLICATION_NAME  # run_chaos gives each run its own
        self.rng = random.Random(cfg.seed)
        self.links: dict[str, WanLink] = {}  # hub id -> its WAN link
        self.gates: dict[str, HanGate] = {}
        self.injected: dict[str, int] = {}
        self.run: DemoRun | None = None
        self.vouchers: dict[str, str] = {}  # voucher id -> hub
        self.drift_max = 0.0
        self.ended: set[str] = set()  # hubs revoked during the run
        self.credited_before: dict[str, int] = {}
        self.outages: OutageService | None = None
        self.unpowered: dict[str, int] = {}  # hub -> power faults holding it off (they may overlap)
        # (kind, node, premises, cut at, restored at) of every power fault, as injected
        self.power_faults: list[tuple[str, str, frozenset[str], Any, Any]] = []
        self.offline: dict[str, list[tuple[datetime, datetime]]] = {}  # hub -> WAN/power faults
        self.daily: list[tuple[str, int, str, datetime]] = []  # (hub, day, voucher, issued)
        self.channel_hubs: list[str] = []  # hubs reached only through their channel
        self.moved: dict[str, tuple[str, str]] = {}  # meter -> (hub, medium key), moved upstairs
        self.issuers: list[VoucherIssuer] = []  # the run's voucher issuers (the operator's key)

    async def _wan(self, fleet: Fleet) -> None:
        """Every hub's WAN behind a cuttable link: a dialled hub's in front of its port, a
        channel hub's between it and the GDSC's channel endpoint (its channel restarted there)."""
        host = self.cfg.host
        for home in fleet.homes:
            link = self.links[home.spec.hub_id] = WanLink(home.spec.hub_id)
            if home.url.startswith("channel://"):
                port = await link.relay(host, self.cfg.channel_port, host)
                await home.assembly.server.stop_channels()
                await home.start_channel(host, port)
                self.channel_hubs.append(home.spec.hub_id)
            else:
                port = await link.relay(host, int(home.url.rsplit(":", 1)[1]), host)
                home.url = f"https://{host_header(host, port)}"
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
        self._note_offline(fault)
        undo: Callable[[], None] = lambda: None  # noqa: E731
        if fault.kind in ("wan_outage", "channel_cut"):
            self.links[fault.target].cut()
            undo = self.links[fault.target].restore
        elif fault.kind == "channel_endpoint_restart":
            endpoint = run.gdsc.channels
            assert endpoint is not None and endpoint.port is not None
            port = endpoint.port
            await endpoint.stop()
            await endpoint.start(self.cfg.host, port)
        elif fault.kind == "cell_outage":
            hubs = self._cell(fault.target)
            for h in hubs:
                self.links[h].cut()

            def undo() -> None:
                for h in hubs:
                    self.links[h].restore()
        elif fault.kind == "power_cut":
            undo = self._cut_power("power_cut", fault.target, [fault.target])
        elif fault.kind in ("feeder_outage", "substation_outage"):
            undo = self._cut_power(fault.kind, fault.target, self._hubs_under(fault.target))
        elif fault.kind == "han_dropout":
            hub, meter = fault.target.split("/", 1)
            self.gates[hub].silence(meter)

            def undo() -> None:
                self.gates[hub].restore(meter)
        elif fault.kind == "collector_restart":
            await run.gdsc.replace_collector()
        elif fault.kind == "database_restart":
            await asyncio.to_thread(self._kill_database_connections)
        elif fault.kind == "meter_replace":
            await self._replace_meter(self._home(fault.target))
        elif fault.kind == "meter_moved":
            home = self._home(fault.target)
            meter = next(m for m, fuel in home.meters if fuel == "electricity")
            home.radio[meter].placement = MOVED
            self.moved[meter] = (fault.target, home.han_media[meter])
        elif fault.kind == "clock_drift":
            await self._drift(self._home(fault.target), fault)
            return
        if fault.length:
            await run.clock.sleep_until(self.cfg.sim_start + fault.start + fault.length)
            undo()

    def _fault_hubs(self, fault: Fault) -> list[str]:
        """The hubs a fault acts on (none for the GDSC's own)."""
        if fault.kind == "cell_outage":
            return self._cell(fault.target)
        if fault.kind in ("feeder_outage", "substation_outage"):
            return self._hubs_under(fault.target)
        if fault.target == "gdsc":
            return []
        return [fault.target.split("/", 1)[0]]

    def _note_offline(self, fault: Fault) -> None:
        """The hubs a WAN or power fault cuts off, and for how long (simulated)."""
        if fault.kind not in (
            "wan_outage",
            "cell_outage",
            "power_cut",
            "feeder_outage",
            "substation_outage",
            "channel_cut",
        ):
            return
        start = self.cfg.sim_start + fault.start
        for h in self._fault_hubs(fault):
            self.offline.setdefault(h, []).append((start, start + fault.length))

    def _hubs_under(self, node: str) -> list[str]:
        assert self.run is not None
        topo = fleet_topology(self.run.fleet.specs)
        premises = {
            p
            for p, place in topo.places.items()
            if node in (place.feeder_id, topo.nodes[place.feeder_id].parent_id)
        }
        return [h.spec.hub_id for h in self.run.fleet.homes if h.spec.premises_id in premises]

    def _cut_power(self, kind: str, node: str, hubs: list[str]) -> Callable[[], None]:
        """Mains off at these homes: each hub's last gasp first (its supply's power-good line
        drops while the hold-up energy lasts), then nothing heard and nothing served. The undo
        brings mains back: the hub starts serving and its restoration notice follows."""
        run = self.run
        assert run is not None
        cut = run.clock.now()
        record = [kind, node, frozenset(self._home(h).spec.premises_id for h in hubs), cut, None]
        lost = []
        for h in hubs:
            self.unpowered[h] = self.unpowered.get(h, 0) + 1
            if self.unpowered[h] == 1:
                lost.append(h)
                self._home(h).assembly.mains.supply_lost(cut)
        for h in lost:  # the last gasps are out at the instant of the loss; then the silence
            self.gates[h].silence(None)
            self.links[h].cut()
            for meter in self._dsmr_meters(h):  # the meter counts and logs the failure itself
                meter.power_lost(cut)

        def undo() -> None:
            now = run.clock.now()
            record[4] = now
            self.power_faults.append(tuple(record))  # type: ignore[arg-type]
            for h in hubs:
                self.unpowered[h] -= 1
                if self.unpowered[h] == 0:
                    self.gates[h].restore(None)
                    self.links[h].restore()
                    for meter in self._dsmr_meters(h):
                        meter.power_restored(now)
                    self._home(h).assembly.mains.supply_restored(now)

        return undo

    def _dsmr_meters(self, hub_id: str) -> list[DsmrMeterSimulator]:
        """The home's simulated DSMR meters (behind its P1 transports)."""
        return [
            loop.meter
            for rig in self._home(hub_id).rigs
            for loop in rig.loops
            if isinstance(getattr(loop, "meter", None), DsmrMeterSimulator)
        ]

    def _power_failure_figures(self) -> list[dict[str, Any]]:
        """Each injected outage against the network operator's power-failure summary of its node
        over the run (what ``GET /v1/network/nodes/{node}/power-quality`` answers)."""
        run = self.run
        assert run is not None
        if not self.cfg.power_quality:
            return []
        topo = TopologyStore(run.store.engine).snapshot()
        start, end = int(self.cfg.sim_start.timestamp()), int(self.cfg.end.timestamp()) + 86400
        out = []
        for kind, node, premises, cut, restored in self.power_faults:
            if kind not in ("feeder_outage", "substation_outage"):
                continue
            under = sorted(p for p in topo.under([node]) if p in topo.places)
            dsmr = sum(
                1
                for h in run.fleet.homes
                if h.spec.premises_id in premises and self._dsmr_meters(h.spec.hub_id)
            )
            out.append(
                {
                    "node": node,
                    "minutes": round((restored - cut).total_seconds() / 60, 1) if restored else None,
                    "dsmr_homes_cut": dsmr,
                    **pq.failures(run.store.engine, under, start, end),
                }
            )
        return out

    async def _start_outages(self) -> None:
        """The GDSC's outage side: the fleet's topology loaded, the UDP endpoint started (the hubs'
        alert keys came with the manifest), and each hub's last gasps pointed at it."""
        run = self.run
        assert run is not None
        topo = TopologyStore(run.store.engine)
        await asyncio.to_thread(topo.load, fleet_topology(run.fleet.specs))
        # The hubs' and the GDSC's clocks are one simulated clock here, but a datagram a busy
        # event loop reads 100 ms late is minutes late at demo speed: the freshness check allows
        # the real 10 minutes or two wall seconds, whichever is longer in simulated time.
        skew = max(MAX_SKEW, timedelta(seconds=2 * run.clock.speed))
        self.outages = svc = await asyncio.to_thread(
            OutageService, run.store.engine, run.clock, max_skew=skew
        )
        # The hubs' alert keys were registered with the manifest (each hub's certificate); the
        # error log learns which silent hubs sent a last gasp.
        run.gdsc.attach_outages(svc)
        port = await svc.start(self.cfg.host)
        for home in run.fleet.homes:
            key = serialization.load_pem_private_key((home.dir / "hub.key").read_bytes(), password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            sequences = SequenceReservations(home.diagnostics.log._file)
            home.assembly.mains.sender = AlertSender(
                home.spec.hub_id, key, udp_transport(self.cfg.host, port), sequences
            )

    def _outage_figures(self) -> dict[str, Any]:
        """Injected network outages against what the GDSC opened and closed (module docstring)."""
        svc = self.outages
        if svc is None:
            return {}
        topo = svc.correlator.topology
        outages = list(svc.correlator.outages.values())
        injected = [f for f in self.power_faults if f[0] in ("feeder_outage", "substation_outage")]
        delays: list[float] = []
        matched = 0
        for _, node, _premises, cut, restored in injected:
            covering = [
                o
                for o in outages
                if o.opened >= cut
                and (o.location == node or o.location in _ancestors(topo, node))
                and (restored is None or o.opened <= restored)
            ]
            if not covering:
                log.error(
                    "outage at %s (cut %s) not detected; the GDSC's: %s",
                    node,
                    cut,
                    [
                        (
                            o.outage_id,
                            o.level,
                            o.location,
                            o.opened,
                            o.closed,
                            o.merged_into,
                            sorted(o.premises),
                        )
                        for o in outages
                    ],
                )
                continue
            first = min(covering, key=lambda o: o.opened)
            delays.append((first.opened - cut).total_seconds())
            final = [o for o in covering if o.merged_into is None]
            if final and all(
                o.closed is not None and restored is not None and o.closed >= restored for o in final
            ):
                matched += 1
        unpowered: set[str] = set().union(*(f[2] for f in self.power_faults))
        false = [o for o in outages if o.merged_into is None and not set(o.premises) <= unpowered]
        for o in false:
            log.error("false outage %s at %s over %s", o.outage_id, o.location, sorted(o.premises))
        delays.sort()
        p95 = delays[max(0, -(-95 * len(delays) // 100) - 1)] if delays else None
        stats = svc.receiver.stats
        met = (
            len(delays) == len(injected)
            and (p95 is None or p95 <= OUTAGE_DETECT_GOAL_S)
            and matched == len(injected)
            and not false
        )
        log.log(
            logging.INFO if met else logging.ERROR,
            "outages: %d injected, %d detected (p95 %s s, goal %g s), %d restorations matched, "
            "%d false: goal %s",
            len(injected),
            len(delays),
            p95,
            OUTAGE_DETECT_GOAL_S,
            matched,
            len(false),
            "met" if met else "NOT met",
        )
        return dict(
            outage_detect_goal_s=OUTAGE_DETECT_GOAL_S,
            outage_goal_met=met,
            outages_injected=len(injected),
            outages_detected=len(delays),
            outage_detect_p95_s=round(p95, 1) if p95 is not None else None,
            restorations_matched=matched,
            false_outages=len(false),
            alerts_stored=stats.accepted,
            alerts_refused=sum(stats.refused.values()),
        )

    def _han_figures(self) -> dict[str, Any]:
        """Weak signals the hubs diagnosed; the moved meters' diagnoses, by medium."""
        run = self.run
        assert run is not None
        weak: set[str] = {
            e.device
            for h in run.fleet.homes
            for e in h.diagnostics.log.events(limit=100_000)
            if e.code is DiagnosisCode.HAN_WEAK_SIGNAL
        }
        return dict(
            weak_signal_diagnoses=len(weak),
            meters_moved={medium: meter in weak for meter, (_hub, medium) in sorted(self.moved.items())},
        )

    def _han_plan(self) -> dict[str, int]:
        """The HAN planning report of every simulated home, written as ``han-plan.json`` in the
        state directory; how many of the fleet's radio meters each medium would miss."""
        run = self.run
        assert run is not None
        report = []
        misses: dict[str, int] = {}
        for home in run.fleet.homes:
            layout = home.han_layout()
            if not layout:
                continue
            media = plan(layout)
            report.append(
                {
                    "hub": home.spec.hub_id,
                    "in_use": home.han_media,
                    "meters": {m.id: vars(m.placement) for m in layout},
                    "media": [p.as_dict() for p in media],
                }
            )
            for p in media:
                misses[p.medium] = misses.get(p.medium, 0) + len(p.misses)
        (self.cfg.state / "han-plan.json").write_text(json.dumps(report, indent=1, default=str))
        return misses

    def _channel_figures(self) -> dict[str, Any]:
        run = self.run
        assert run is not None
        endpoint = run.gdsc.channels
        if endpoint is None or not self.channel_hubs:
            return {}
        sites = [site for h in self.channel_hubs for site in self._home(h).assembly.server.channels]
        return dict(
            channel_hubs=len(self.channel_hubs),
            channels_accepted=endpoint.stats.accepted,
            channels_taken=endpoint.stats.taken,
            channel_reconnect_failures=sum(s.stats.failures + s.stats.dropped for s in sites),
        )

    def _home(self, hub_id: str) -> SimulatedHome:
        assert self.run is not None
        return next(h for h in self.run.fleet.homes if h.spec.hub_id == hub_id)

    async def _replace_meter(self, home: SimulatedHome) -> None:
        """Exchange the home's DLMS meter once the hub hears it (an installer does not commission
        a meter while the hub is without power), then queue the GDSC's ``meter.replace``."""
        run = self.run
        assert run is not None and run.signer is not None
        gate = self.gates[home.spec.hub_id]
        old = next(m for rig in home.rigs if rig.protocol == "dlms" for m, _ in rig.meters)
        while None in gate.silent or old in gate.silent:
            await run.clock.sleep_until(run.clock.now() + timedelta(minutes=5))
        swap = await home.swap_dlms_meter()
        body = MeterReplace(swap.old, swap.new, "dlms", "electricity")
        await asyncio.to_thread(
            run.gdsc.plan.queue_command, run.signer, home.spec.hub_id, "meter.replace", body, swap.at
        )
        log.info("meter %s replaced by %s at %s", swap.old, swap.new, swap.at)

    async def _drift(self, home: SimulatedHome, fault: Fault) -> None:
        """Let the meter's clock gain ``fault.rate`` seconds a day (by simulated time elapsed)
        until the fault ends; the hub's diagnostics and clock re-sync act on their own."""
        run = self.run
        assert run is not None
        rig = next(r for r in home.rigs if r.protocol == "dlms" and r.supply is not None)
        assert rig.supply is not None
        link = rig.supply.link
        assert isinstance(link, SimulatedLink) and isinstance(link.meter, DlmsMeterSimulator)
        meter = link.meter
        end = self.cfg.sim_start + fault.start + fault.length
        last = run.clock.now()
        while last < end:
            await run.clock.sleep_until(min(last + timedelta(minutes=1), end))
            now = run.clock.now()
            meter.clock_offset += timedelta(seconds=fault.rate * (now - last).total_seconds() / 86400)
            self.drift_max = max(self.drift_max, abs(meter.clock_offset.total_seconds()))
            last = now

    def _clock_resyncs(self) -> int:
        assert self.run is not None
        return sum(
            1
            for h in self.run.fleet.homes
            for e in h.diagnostics.log.events(limit=100_000)
            if e.code is DiagnosisCode.CLOCK_DRIFT
            for a in e.attempts
            if a.action is RepairAction.RESYNC_CLOCK and a.outcome is RepairOutcome.SUCCEEDED
        )

    def _meters_replaced(self) -> int:
        assert self.run is not None
        return sum(
            1
            for h in self.run.fleet.homes
            for swap in h.swaps
            for e in h.registry.entries()
            if e.meter == swap.old and e.replaced_by == swap.new
        )

    def _kill_database_connections(self) -> None:
        store = self.run.store  # type: ignore[union-attr]
        if store.dialect == "postgresql":
            kill_connections(store.engine, self.application_name)
        store.engine.dispose()  # every pooled connection is gone, as after a server restart

    # -- top-ups --------------------------------------------------------------------------------
    def _issuer(self) -> VoucherIssuer:
        run = self.run
        assert run is not None
        key = serialization.load_pem_private_key(
            (self.cfg.state / "gdsc" / "operator.key").read_bytes(), password=None
        )
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        issuer = VoucherIssuer(run.store, key, (self.cfg.state / "gdsc" / "operator.pem").read_bytes())
        self.issuers.append(issuer)
        return issuer

    def _new_operator(self, key: ec.EllipticCurvePrivateKey, pem: bytes) -> None:
        """The operator certificate was rotated (sim.chaos_life): vouchers are signed with the
        new key from now on, as the GDSC's own signer's commands are."""
        for issuer in self.issuers:
            issuer.private_key, issuer.signer_pem = key, pem

    async def _top_ups(self, until_offset: timedelta) -> None:
        """Issue top-ups to prepayment homes at random times, each queued at once as an urgent
        command (as the API's top-up does); the GDSC's voucher courier does the rest."""
        run = self.run
        assert run is not None and run.signer is not None
        issuer = self._issuer()
        prepaid = [h for h in run.fleet.homes if h.consumer.ledger is not None]
        if not prepaid:
            return
        times = sorted(
            self.cfg.sim_start + timedelta(seconds=self.rng.uniform(3600, until_offset.total_seconds()))
            for _ in range(2 * len(prepaid) * self.cfg.days)
        )
        for t in times:
            await run.clock.sleep_until(t)
            home = self.rng.choice(prepaid)
            if home.spec.hub_id in self.ended:
                continue
            amount = Decimal(self.rng.choice(["5.00", "10.00", "20.00"]))
            await self._top_up_retrying(issuer, home.spec.hub_id, amount)

    async def _daily_top_ups(self) -> None:
        """Every prepaid home tops up once every day, between 06:00 and 18:00 (simulated): the
        delivery a stale CRL at the hubs would stop (``topup_days_missed``). Drawn from a seed
        of their own, so the other top-ups and the faults of a seed stay as they were."""
        run = self.run
        assert run is not None and run.signer is not None
        issuer = self._issuer()
        rng = random.Random(f"{self.cfg.seed}/daily-top-ups")
        prepaid = [h.spec.hub_id for h in run.fleet.homes if h.consumer.ledger is not None]
        times = sorted(
            (self.cfg.sim_start + timedelta(days=d, seconds=rng.uniform(6 * 3600, 18 * 3600)), d, hub)
            for d in range(self.cfg.days)
            for hub in prepaid
        )
        for t, day, hub in times:
            await run.clock.sleep_until(t)
            if hub in self.ended:
                continue  # revoked meanwhile: nothing is delivered to it any more
            issued = await self._top_up_retrying(issuer, hub, Decimal("1.00"))
            if issued is not None:
                self.daily.append((hub, day, *issued))

    async def _top_up_retrying(
        self, issuer: VoucherIssuer, hub_id: str, amount: Decimal
    ) -> tuple[str, datetime] | None:
        """A top-up, tried again while a database restart interrupts it (an exception here
        would end the task issuing the run's top-ups, as it did on PostgreSQL); (voucher, when)."""
        run = self.run
        assert run is not None
        for attempt in range(3):
            now = run.clock.now()
            try:
                return await asyncio.to_thread(self._top_up, issuer, hub_id, amount, now), now
            except DBAPIError as err:
                log.warning("top-up to %s: %s (try %d)", hub_id, err, attempt + 1)
                await run.clock.sleep_until(run.clock.now() + timedelta(minutes=5))
        log.error("top-up to %s not issued: the database stayed away", hub_id)
        return None

    def _top_up(self, issuer: VoucherIssuer, hub_id: str, amount: Decimal, now: Any) -> str:
        run = self.run
        assert run is not None and run.signer is not None
        voucher = issuer.issue(hub_id, "electricity", amount, now)
        self.vouchers[voucher.voucher_id] = hub_id
        try:
            (pending,) = [p for p in issuer.pending(hub_id) if p.voucher_id == voucher.voucher_id]
            run.gdsc.plan.queue_command(
                run.signer,
                hub_id,
                "prepayment.topup",
                PrepaymentTopup.parse(pending.envelope),
                now,
                Priority.URGENT,
            )
        except DBAPIError as err:  # recorded, not queued: the voucher courier queues it later
            log.warning("top-up %s to %s recorded, not queued: %s", voucher.voucher_id, hub_id, err)
        return voucher.voucher_id

    def _top_up_days_missed(self, ended: datetime | None = None) -> int:
        """Daily top-ups not credited at the hub within a day (:data:`TOP_UP_DAY`) of being
        issued, where no fault (WAN or power) cut the hub off meanwhile. A hub refusing commands
        (a stale CRL, a revoked signer) misses every day from then on; a slow hour does not.

        ``ended``: when the run's own windows ended. A top-up not yet a day old then is not a
        missed day whenever the catch-up after (the sweep, :mod:`smarthub.sim.topups`) credits
        it: those are condensed windows whose simulated hours are a starved process's, not the
        GDSC's; it is counted late or lost instead."""
        run = self.run
        assert run is not None
        applied: dict[str, float] = {}
        for home in run.fleet.homes:
            if home.consumer.ledger is not None:
                for t in home.consumer.ledger.top_ups():
                    applied[t["voucher_id"]] = float(t["applied"])
        counted = min(run.clock.now(), ended) if ended is not None else run.clock.now()
        missed = 0
        for hub, day, voucher, issued in self.daily:
            due = issued + TOP_UP_DAY
            at = applied.get(voucher)
            if at is not None and at <= due.timestamp():
                continue
            if counted < due:
                continue  # its day is not over when the run ended (topups_late/_lost say the rest)
            if any(a < due and b > issued for a, b in self.offline.get(hub, [])):
                continue  # cut off meanwhile: delivered when it came back (or counted as lost)
            log.error(
                "daily top-up %s to %s (day %d, issued %s) not credited within a day (credited at %s)",
                voucher,
                hub,
                day,
                issued.isoformat(),
                datetime.fromtimestamp(at, issued.tzinfo).isoformat() if at is not None else "-",
            )
            missed += 1
        return missed

    def _refused_stale_crl(self) -> int:
        assert self.run is not None
        return sum(h.management.refusals.get("stale_crl", 0) for h in self.run.fleet.homes)

    def _refused_signer(self) -> int:
        assert self.run is not None
        return sum(h.management.refusals.get("unknown_signer", 0) for h in self.run.fleet.homes)

    def _credited_top_ups(self) -> set[str]:
        """Voucher ids credited in the hubs' own ledgers."""
        assert self.run is not None
        return {
            t["voucher_id"]
            for home in self.run.fleet.homes
            if home.consumer.ledger is not None
            for t in home.consumer.ledger.top_ups()
        }

    def _undelivered_top_ups(self) -> dict[str, str]:
        """Top-ups (voucher id -> hub) issued to a hub still in service, not credited there yet."""
        credited = self._credited_top_ups()
        return {v: hub for v, hub in self.vouchers.items() if v not in credited and hub not in self.ended}

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
        for v in sorted(issued - set(credited)):
            log.error("top-up %s to %s never credited", v, self.vouchers[v])
        return (
            len(issued),
            sum(1 for v in issued if v in credited),
            sum(1 for n in credited.values() if n > 1),
        )

    def _expected(self) -> dict[tuple[str, str, ObisCode], set[int]]:
        """The half-hours (starts, epoch s) expected of every channel: a replaced meter's up to
        its exchange, its successor's after, a revoked hub's up to its revocation."""
        run = self.run
        assert run is not None
        start, end = int(self.cfg.sim_start.timestamp()), int(self.cfg.end.timestamp())
        revoked = self.life.revoked_hubs if self.life is not None else {}
        out = {}
        for (hub, meter, obis), starts in run.fleet.expected_starts(start, end).items():
            if hub in revoked:  # refused from its revocation: expected up to its last pulls
                cutoff = revoked[hub].timestamp()
                starts = {s for s in starts if s + 1800 <= cutoff}
            out[(hub, meter, obis)] = starts
        return out

    async def _drain(self, until: datetime) -> set[tuple[str, str]]:
        """When the meters stop, the meters whose hub has not built every expected half-hour
        (the last reports were lost on the air: a ZigBee meter behind two floors gets one frame
        in ten through) report on (:meth:`Fleet.drain`) until it has, or until ``until``, while
        the GDSC's windows go on. In life the meters never stop: the next report that gets
        through closes the half-hours, minutes later; what is still missing at ``until`` is
        counted lost. Returns the (hub, meter) still short."""
        run = self.run
        assert run is not None
        await run.fleet.meters_done()
        due = {key: max(starts) + 1800 for key, starts in self._expected().items() if starts}
        short = await run.fleet.drain(due, until)
        if short:
            log.error("meters still short of their last half-hours after the drain: %s", sorted(short))
        return short

    def _expected_and_missing(self) -> tuple[int, int]:
        """Half-hours expected of every channel (:meth:`_expected`) and how many of them the
        GDSC's store lacks."""
        run = self.run
        assert run is not None
        start, end = int(self.cfg.sim_start.timestamp()), int(self.cfg.end.timestamp())
        stored = run.store.channel_starts(start, end)
        expected = missing = 0
        for (hub, meter, obis), starts in self._expected().items():
            expected += len(starts)
            absent = sorted(starts - stored.get((hub, meter, str(obis)), set()))
            if absent:
                log.error("lost: %s %s %s half-hours starting %s", hub, meter, obis, absent[:10])
            missing += len(absent)
        return expected, missing

    # -- the run --------------------------------------------------------------------------------
    async def start(self) -> DemoRun:
        """The demo's fleet, each hub's WAN behind a cuttable link, and the GDSC."""
        if self.cfg.channel_every and not self.cfg.channel_port:
            self.cfg.channel_port = free_port(self.cfg.host)  # the channel hubs' links relay to it
        self.run = await setup(self.cfg, wan=self._wan)
        return self.run

    async def run_all(self) -> ChaosResult:
        cfg = self.cfg
        run = await self.start()
        drain: asyncio.Task[set[tuple[str, str]]] | None = None
        try:
            await self._start_outages()
            faults = plan_faults(run.fleet.homes, cfg.days, self.rng, self.channel_hubs)
            han_plan_misses = await asyncio.to_thread(self._han_plan)
            spans: dict[str, list[tuple[timedelta, timedelta]]] = {}
            power: dict[str, list[tuple[timedelta, timedelta]]] = {}
            for f in faults:
                for h in self._fault_hubs(f):
                    spans.setdefault(h, []).append((f.start, f.start + max(f.length, HALF_HOUR)))
                    if f.kind in ("power_cut", "feeder_outage", "substation_outage"):
                        power.setdefault(h, []).append((f.start, f.start + f.length))

            def busy(hub: str, start: timedelta, end: timedelta) -> bool:
                return any(a < end and b > start for a, b in spans.get(hub, []))

            def unpowered(hub: str, start: timedelta, end: timedelta) -> bool:
                return any(a < end and b > start for a, b in power.get(hub, []))

            self.life = life = FleetLife(run, self.ended.add, self.gates)
            life.on_operator = self._new_operator
            run.gdsc.upkeep.renew_before = self.renew_before
            run.gdsc.upkeep.renew_spread = self.renew_spread
            await asyncio.to_thread(life.prepare)
            network = [f.start + f.length for f in faults if f.kind in ("feeder_outage", "substation_outage")]
            events = plan_life(
                run.fleet.homes,
                cfg.days,
                random.Random(f"{cfg.seed}/life"),
                busy,
                revoke_after=max(network, default=timedelta(0)) + timedelta(hours=1),
                unpowered=unpowered,
            )
            run.clock.rebase()
            run.fleet.clock_rebased()
            started = time.monotonic()
            lag = LoopLag(speed=run.clock.speed)
            lag.start()
            last_window_end = cfg.end + cfg.window
            await run.fleet.start_meters(until=meters_until(cfg))
            background = [
                asyncio.create_task(self._top_ups(timedelta(days=cfg.days) - timedelta(hours=4))),
                asyncio.create_task(self._daily_top_ups()),
                asyncio.create_task(life.play(events)),
                *(asyncio.create_task(self._inject(f)) for f in faults),
            ]
            # Meters short of their last half-hours report on into the first closing window.
            drain = asyncio.create_task(self._drain(until=last_window_end + cfg.window))
            await run.gdsc.run_windows(until=last_window_end, first_window=cfg.sim_start)
            await run.fleet.meters_done()
            for task in background:
                with contextlib.suppress(Exception):
                    await task
            for link in self.links.values():
                link.restore()
            # Closing windows: what the hubs buffered during the last faults comes in.
            await run.gdsc.run_windows(until=last_window_end + 2 * cfg.window, first_window=last_window_end)
            await drain
            # Then the GDSC's next windows, condensed: a pull of every hub until each has
            # answered once (a pull that fell into backoff at the very end is retried later in
            # life too). "lost" counts what is not at the GDSC even then: data gone, not late.
            # The upkeep runs between those windows as ever (a renewal whose answer was lost is
            # adopted from the certificate the hub presents, before the next pull).
            unreachable = await sweep(run, last_window_end + 2 * cfg.window)
            for _ in range(2):
                if not unreachable:
                    break
                await run.gdsc.upkeep.run_once()
                unreachable = await sweep(run, last_window_end + 2 * cfg.window)
            if unreachable:
                log.error("hubs still unreachable after the sweep: %s", unreachable)
            # Top-ups the starved scheduler had not reached yet go out in the next windows.
            late = set(self._undelivered_top_ups())
            await settle_top_ups(run, self._undelivered_top_ups)
            late -= set(self._undelivered_top_ups())
            seconds = time.monotonic() - started
            await lag.stop()
            if lag.figures()["starved"]:
                log.error(
                    "the run was starved of CPU (event loop late by %s simulated s at p95): wall-clock "
                    "timeouts became simulated hours, so late renewals and top-ups measure the machine",
                    lag.figures()["loop_lag_p95_sim_s"],
                )
            demo = await asyncio.to_thread(account, run, seconds)
            expected, missing = await asyncio.to_thread(self._expected_and_missing)
            issued, credited, doubled = self._count_top_ups()
            summary = run.error_log.summary()
            if self.outages is not None:
                await self.outages.receiver.drain()
            outage_figures = self._outage_figures()
            outage_figures["power_failures"] = await asyncio.to_thread(self._power_failure_figures)
            return ChaosResult(
                homes=cfg.homes,
                days=cfg.days,
                seed=cfg.seed,
                readings_expected=expected,
                readings_stored=demo.readings_stored,
                lost=missing,
                duplicates=demo.duplicates,
                estimated=demo.estimated,
                topups_issued=issued,
                topups_credited=credited,
                topups_lost=issued - credited,
                topups_doubled=doubled,
                topups_late=len(late),
                faults_injected=sum(self.injected.values()),
                faults=dict(sorted(self.injected.items())),
                pull_errors=demo.pull_errors,
                incidents_open=summary["incidents_open"],
                incidents_closed=summary["incidents_closed"],
                work_orders=len(run.error_log.work_orders()),
                hub_errors_open=len(run.gdsc.plan.open_errors()),
                meters_replaced=self._meters_replaced(),
                clock_resyncs=self._clock_resyncs(),
                clock_drift_max_s=round(self.drift_max, 1),
                commands_refused_stale_crl=self._refused_stale_crl(),
                commands_refused_signer=self._refused_signer(),
                topup_days_missed=self._top_up_days_missed(ended=last_window_end + 2 * cfg.window),
                **await asyncio.to_thread(life.figures),
                **self._channel_figures(),
                **self._han_figures(),
                han_plan_misses=han_plan_misses,
                seconds=round(seconds, 1),
                **lag.figures(),
                **outage_figures,
            )
        finally:
            if drain is not None and not drain.done():
                drain.cancel()
            if self.outages is not None:
                await self.outages.close()
            for link in self.links.values():
                await link.close()
            await teardown(run)


def meters_until(cfg: DemoConfig) -> datetime:
    """When the run's meters stop: one sampling period and a few minutes past the end, as
    they run on in life. A meter whose clock is slow (within the drift limit, or a second
    behind after a re-sync) stamps its midnight read just before midnight, and the day's last
    half-hour completes only with the read after it: a sampling period later (30 minutes in
    a long run; ten minutes past the end left the last half-hour of a DLMS meter unclosed,
    counted lost, in a 10-day run)."""
    return cfg.end + (cfg.sample_every or timedelta(0)) + timedelta(minutes=10)


def _ancestors(topo: Any, node: str) -> list[str]:
    out, n = [], topo.nodes.get(node)
    while n is not None and n.parent_id is not None:
        out.append(n.parent_id)
        n = topo.nodes.get(n.parent_id)
    return out


def kill_connections(engine: Any, app: str) -> int:
    """Terminate the PostgreSQL connections named ``app`` (but the one asking); how many."""
    with engine.connect() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND application_name = :app"
            ),
            {"app": app},
        ).scalar_one()
        conn.commit()
    return int(killed)


def application_name() -> str:
    """This run's PostgreSQL application_name: the prefix, the process and a random part."""
    return f"{APPLICATION_NAME}-{os.getpid()}-{secrets.token_hex(6)}"


def chaos_db_url(url: str | None, app: str | None = None) -> str | None:
    """``url`` with the chaos run's application_name (PostgreSQL), so it can kill only its own."""
    if not url or not url.startswith("postgresql"):
        return url
    return f"{url}{'&' if '?' in url else '?'}application_name={app or application_name()}"


async def run_chaos(cfg: DemoConfig) -> ChaosResult:
    app = application_name()
    cfg.db_url = chaos_db_url(cfg.db_url, app)
    chaos = Chaos(cfg)
    chaos.application_name = app
    return await chaos.run_all()
