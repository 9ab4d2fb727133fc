"""The demo: a GDSC and a fleet of simulated homes on loopback, one accelerated day.

Everything is real except the meters and the clock: DSMR telegrams with CRCs, Smart Hubs
with SQLite histories, 2030.5 XML over mutual TLS, and the GDSC ``smarthub gdsc`` runs (its
composition root, :class:`~smarthub.gdsc.service.GdscService`: a CA, a registry, the shared
plan, the scheduler, the collector ingesting into SQLite or PostgreSQL, the error log, the
repairs and the upkeep). The demo adds only the simulated fleet. At the end it counts, from the
GDSC's store, every half-hourly reading expected of every channel of every home.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from smarthub.clock import AcceleratedClock
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.incidents.error_log import ErrorLog
from smarthub.gdsc.pull.collector import Collector
from smarthub.gdsc.pull.scheduler import Scheduler, WindowProgress
from smarthub.gdsc.service import GdscConfig, GdscService
from smarthub.gdsc.store import Store
from smarthub.sim.fleet import Credentials, Fleet, home_specs, provision
from smarthub.wan.contract.authority import host_header

HALF_HOUR = timedelta(minutes=30)


@dataclass
class DemoConfig:
    homes: int = 20
    days: int = 1
    seconds_per_day: float = 60.0
    seed: int = 1
    state: Path = Path("state")
    db_url: str | None = None
    # Every n-th hub listens on no port and is reached through its channel (0: none do).
    channel_every: int = 0
    channel_port: int = 0  # the GDSC's channel endpoint (0: a free port on the loopback)
    # Every hub, the channel endpoint and the alert endpoint on IPv6 (::1) instead of 127.0.0.1.
    ipv6: bool = False
    sim_start: datetime = datetime(2026, 3, 2, tzinfo=UTC)
    telegram_period: timedelta = timedelta(seconds=60)
    # Certificates and CRLs on the simulated clock (the chaos run): issued at ``sim_start``,
    # checked by the hubs and dated by the GDSC on the simulated clock (see :func:`setup`).
    # Otherwise on wall time, as OpenSSL checks them (the demo).
    sim_certificates: bool = False
    hub_certificate_days: int | None = None  # hub certificates' validity (None: indefinite)
    # Every meter's sampling period (P1 telegrams, polls, radio), a divisor of 30 minutes; None:
    # the fleet's defaults (a telegram a minute, polls every 5, radio every 2). Weeks of a fleet
    # at a few seconds a day need fewer samples: the half-hour boundaries are what count.
    sample_every: timedelta | None = None
    window: timedelta = HALF_HOUR  # the GDSC's retrieval window (each hub pulled once in each)
    # Every hub keeps power quality ([power_quality] enabled): voltages, sags and swells, power
    # failures (hub.power_quality). Off by default: it multiplies the readings pulled (README).
    power_quality: bool = False
    # Every home has the smart plugs on its HAN (appliance sub-meters; by default only the ZigBee
    # homes): ``demo --services`` turns it on for the appliance-health service.
    plugs_everywhere: bool = False

    @property
    def host(self) -> str:
        """The loopback address every part of the run binds and dials."""
        return "::1" if self.ipv6 else "127.0.0.1"

    @property
    def speed(self) -> float:
        return 86400.0 / self.seconds_per_day

    @property
    def end(self) -> datetime:
        return self.sim_start + timedelta(days=self.days)


@dataclass
class DemoResult:
    homes: int
    days: int
    readings_expected: int
    readings_stored: int
    missing: int
    duplicates: int
    pull_errors: int
    seconds: float
    conflicts: int = 0
    frame_errors: int = 0
    estimated: int = 0
    poll_failures: int = 0
    unmapped: int = 0
    open_diagnoses: int = 0
    foreign_dropped: int = 0
    protocols: str = ""
    hub_events: int = 0
    incidents_open: int = 0
    work_orders_open: int = 0
    repairs_sent: int = 0
    # The GDSC's VEE gate: meter-days whose half-hours were compared with the register advance
    # between the hubs' daily register reads, those that did not add up, and readings it held.
    vee_days_checked: int = 0
    vee_days_mismatched: int = 0
    vee_held: int = 0

    def json_line(self) -> str:
        return json.dumps(asdict(self))


def gdsc_config(cfg: DemoConfig) -> GdscConfig:
    """The GDSC the demo (and the chaos run) builds: what ``smarthub gdsc --state`` builds for
    the same state directory, database and seed."""
    channel = host_header(cfg.host, cfg.channel_port) if cfg.channel_every else None
    return GdscConfig(cfg.state, cfg.db_url, window=cfg.window, seed=cfg.seed, channel=channel)


@dataclass
class DemoRun:
    """A running demo; exposes live state for progress displays and the operator page."""

    cfg: DemoConfig
    fleet: Fleet
    clock: AcceleratedClock
    gdsc: GdscService
    creds: Credentials | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def store(self) -> Store:
        return self.gdsc.store

    @property
    def scheduler(self) -> Scheduler:
        return self.gdsc.scheduler

    @property
    def collector(self) -> Collector:
        return self.gdsc.collector

    @property
    def error_log(self) -> ErrorLog:
        return self.gdsc.error_log

    @property
    def signer(self) -> CommandSigner | None:
        return self.gdsc.signer


async def setup(
    cfg: DemoConfig,
    on_progress: Callable[[WindowProgress], None] | None = None,
    wan: Callable[[Fleet], Awaitable[None]] | None = None,
) -> DemoRun:
    """Provision, start the fleet's servers, then build the GDSC. ``wan`` runs once the hubs
    listen and before the manifest is written (the chaos run puts its cuttable WAN links there)."""
    cfg.state.mkdir(parents=True, exist_ok=True)
    specs = home_specs(cfg.homes, cfg.seed)
    issued = cfg.sim_start if cfg.sim_certificates else datetime.now(UTC)
    creds = provision(cfg.state, specs, issued, hub_days=cfg.hub_certificate_days)
    clock = AcceleratedClock(cfg.sim_start, cfg.speed)
    cert_clock = clock if cfg.sim_certificates else None
    fleet = Fleet(
        cfg.state,
        specs,
        clock,
        cfg.sim_start,
        cfg.sample_every or cfg.telegram_period,
        cert_clock=cert_clock,
        poll_every=cfg.sample_every,
        radio_every=cfg.sample_every,
        power_quality=cfg.power_quality,
        plugs_everywhere=cfg.plugs_everywhere,
    )
    if cfg.channel_every and not cfg.channel_port:
        cfg = replace(cfg, channel_port=free_port(cfg.host))
    channel = (cfg.host, cfg.channel_port) if cfg.channel_every else None
    # A channel hub connects (with back-off) until the GDSC's endpoint listens: order is free.
    await fleet.start_servers(creds.ca_pem, channel, cfg.channel_every, host=cfg.host)
    if wan is not None:
        await wan(fleet)
    fleet.write_manifest({"sim_start": cfg.sim_start.isoformat(), "speed": cfg.speed})
    gdsc = GdscService.build(gdsc_config(cfg), clock, tls_clock=cert_clock, on_progress=on_progress)
    if cfg.sim_certificates:
        tls_on_simulated_time(gdsc.ssl_context)
    return DemoRun(cfg, fleet, clock, gdsc, creds)


# OpenSSL's X509_V_FLAG_NO_CHECK_TIME (not among Python's ssl.VerifyFlags).
X509_V_FLAG_NO_CHECK_TIME = 0x200000


def tls_on_simulated_time(ctx: ssl.SSLContext) -> None:
    """Leave certificate and CRL dates in ``ctx``'s handshakes to the simulated clock.

    OpenSSL checks validity periods and CRL dates against the host's clock, and Python's ``ssl``
    cannot hand it another (no ``X509_VERIFY_PARAM_set_time``). A run whose certificates and
    CRLs live on a simulated clock weeks ahead of or behind the host's would be refused for
    dates alone, so its collector's context skips OpenSSL's date checks; everything else in
    the handshake (chain, signature, revocation against the CRL, hostname) is checked as ever,
    and the dates are checked where the simulation's clock rules: the hubs' command, voucher
    and firmware signers and their CRL's age, the GDSC's renewals and CRL re-publication."""
    ctx.verify_flags |= X509_V_FLAG_NO_CHECK_TIME


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def run_day(run: DemoRun, *, meters_run_on: bool = False) -> DemoResult:
    """Run the simulated days, then the window that collects the last interval; count.
    ``meters_run_on``: the meters start again the moment the day's loops end, carrying on
    from the day's end with no gap (the fleet that :func:`keep_running` keeps pulling)."""
    cfg = run.cfg
    run.clock.rebase()  # simulated time starts now that every server is listening
    run.fleet.clock_rebased()
    run.started = time.monotonic()
    last_window_end = cfg.end + HALF_HOUR
    await run.fleet.start_meters(until=cfg.end)
    await run.gdsc.run_windows(until=last_window_end, first_window=cfg.sim_start)
    # On a loaded machine a meter loop can trail the accelerated clock and deliver the day's
    # last sample after its hub's pull in the closing window; the GDSC picks it up in its next
    # window, as it would in life, so the count is taken after that window.
    await run.fleet.meters_done()
    if meters_run_on:
        await run.fleet.start_meters()
    await run.gdsc.run_windows(until=last_window_end + HALF_HOUR, first_window=last_window_end)
    await sweep(run, last_window_end + HALF_HOUR)
    seconds = time.monotonic() - run.started
    return await asyncio.to_thread(account, run, seconds)


async def sweep(run: DemoRun, window_start: datetime, rounds: int = 5) -> list[str]:
    """The GDSC's next windows, condensed: pull every hub until each has answered once.

    The count that follows measures what reached the GDSC at all, not whether a CPU-starved
    run's last scheduled pull happened to fall before the clock stopped (the hubs keep their
    data; a later window would fetch it). Returns the hubs that never answered."""
    todo = await asyncio.to_thread(run.store.active_hubs)
    for _ in range(rounds):
        outcomes = await asyncio.gather(*(run.collector.pull(h, window_start) for h in todo))
        todo = [h for h, o in zip(todo, outcomes, strict=True) if not o.ok]
        if not todo:
            break
        await asyncio.sleep(0.5)
    return [h.hub_id for h in todo]


async def keep_running(run: DemoRun, stop: asyncio.Event) -> None:
    """After the day (run with ``meters_run_on``): the GDSC keeps pulling its windows until
    ``stop`` is set; then the meters stop and the pulls in flight finish. The GDSC's own
    failure is raised."""
    # A horizon the calendar can hold (the scheduler rounds it up to a window end).
    horizon = run.clock.now() + timedelta(days=365 * 100)
    pulling = asyncio.create_task(run.gdsc.run_windows(until=horizon))
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([pulling, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        # The meters first: on a busy machine their loops trail the clock and take most of each
        # turn of the event loop, which every later step of the shutdown would wait behind.
        await run.fleet.halt()
        stopped.cancel()
        if not pulling.done():
            pulling.cancel()
        try:
            await pulling
        except asyncio.CancelledError:
            if not stop.is_set():
                raise


def account(run: DemoRun, seconds: float) -> DemoResult:
    cfg = run.cfg
    start, end = int(cfg.sim_start.timestamp()), int(cfg.end.timestamp())
    expected_starts = set(range(start, end, 1800))
    stored = run.store.channel_starts(start, end)
    expected = 0
    present = 0
    for hub_id, meter, obis in run.fleet.expected_channels():
        got = stored.get((hub_id, meter, str(obis)), set())
        expected += len(expected_starts)
        present += len(got & expected_starts)
    return DemoResult(
        homes=cfg.homes,
        days=cfg.days,
        readings_expected=expected,
        readings_stored=run.store.count_readings(start, end),
        missing=expected - present,
        duplicates=run.store.duplicate_keys(),
        pull_errors=run.scheduler.pull_errors,
        seconds=round(seconds, 2),
        conflicts=run.collector.conflicts,
        frame_errors=run.fleet.frame_errors(),
        poll_failures=run.fleet.poll_failures(),
        open_diagnoses=len(run.fleet.open_diagnoses()),
        foreign_dropped=sum(h.hub.stats.foreign for h in run.fleet.homes),
        unmapped=sum(h.hub.stats.unmapped for h in run.fleet.homes),
        estimated=run.store.count_estimated(start, end),
        protocols=",".join(sorted({rig.protocol for h in run.fleet.homes for rig in h.rigs if rig.meters})),
        vee_days_checked=run.store.vee_counters["days_checked"],
        vee_days_mismatched=run.store.vee_counters["days_mismatched"],
        vee_held=len(run.store.findings(status="held", limit=1_000_000)),
        **_error_log_figures(run),
    )


def _error_log_figures(run: DemoRun) -> dict[str, int]:
    s = run.error_log.summary()
    return {
        "hub_events": s["events"],
        "incidents_open": s["incidents_open"],
        "work_orders_open": s["work_orders_open"],
        "repairs_sent": s["repairs_sent"],
    }


async def teardown(run: DemoRun) -> None:
    await run.fleet.halt()  # the meter loops first (see keep_running)
    await run.gdsc.close()
    await run.fleet.stop()
