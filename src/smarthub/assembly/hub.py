"""The hub's composition root: one function builds a complete Smart Hub from a
:class:`~smarthub.assembly.config.HubConfig`, for ``smarthub hub`` and for every home of the
simulated fleet alike.

The hub is a list of parts, each set up in order by one function and each with the same
``start`` / ``stop`` (Home Assistant's integration setup and unload, in small): ``history``,
``registry``, ``diagnostics`` (with the local repairs), ``core`` (the hub that translates and
stores), ``meters`` (the configured transports, ports and poll loops, commissioned in the
registry and watched by diagnostics), ``management`` (signed commands: mapping, keys, meter
pairing and replacement, link test, network, the CRL), ``privacy``, ``supply`` (where a meter
can switch its supply), ``firmware``, ``consumer`` (priced consumption, prepayment, the IHD),
``wan`` (IEEE 2030.5 over mutual TLS, sub-meters left out, the IHD resources),
``demand_response`` (the 2030.5 DRLC client and the appliance controller) and ``mqtt``, then
``housekeeping`` (time-based diagnoses, repairs, retention). Parts start in that order and stop
in the reverse one. Parts that a configuration does not ask for are not there.

Which transports make which connections is the ``connectors`` table: the real ones
(:mod:`.links`) by default, the simulated fleet adding its own for ``kind = "simulated"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from cryptography import x509

from smarthub.assembly.config import HubConfig, zone_of
from smarthub.assembly.links import ConnectContext, Connection, Connector, connect
from smarthub.clock import Clock, SystemClock
from smarthub.han.dlms_control import SupplyControl
from smarthub.han.poll import PollLoop
from smarthub.hub.alerts import AlertSender
from smarthub.hub.appliance_runs import from_history as runs_from_history
from smarthub.hub.appliances import (
    START_GRACE,
    Appliance,
    ApplianceController,
    PlugError,
    PlugLink,
    appliance_commands,
)
from smarthub.hub.certificate import HubCertificate
from smarthub.hub.delivered_keys import FILE_NAME as DELIVERED_KEYS_FILE
from smarthub.hub.delivered_keys import DeliveredKeys
from smarthub.hub.diagnostics import Diagnostics, DiagnosticsLog, MeterProfile
from smarthub.hub.drlc import DrlcClient, drlc_commands
from smarthub.hub.firmware import FirmwareSlots, FirmwareUpdater, firmware_command
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.hub.keys import load_or_create_master_key
from smarthub.hub.mains import MainsMonitor
from smarthub.hub.management import CrlStore, ManagementInterface
from smarthub.hub.metrics import HubMetrics
from smarthub.hub.network import NetworkSettings, network_command
from smarthub.hub.power_quality import from_history
from smarthub.hub.privacy import ConsentStore, Granularity, HubPrivacy, privacy_commands
from smarthub.hub.recovery import StorageMark, recovery_commands
from smarthub.hub.registry import MeterRegistry, registry_commands
from smarthub.hub.repairs import HubRepairs
from smarthub.hub.submeters import WanEvents, WanMeters
from smarthub.hub.supply import supply_commands
from smarthub.hub.transfer_policy import TransferPolicyStore, transfer_policy_command
from smarthub.model.tariff import TariffSchedule, schedule_from_json
from smarthub.security.certificates import lfdi
from smarthub.wan.contract.authority import host_header
from smarthub.wan.contract.bodies import (
    LinkTest,
    MeterReplace,
    SupplyDisconnect,
    SupplyLimit,
    SupplyReconnect,
    SupplyState,
)
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import server_context

log = logging.getLogger(__name__)

REAL_CONNECTORS: dict[str, Connector] = {"serial": connect, "tcp": connect, "pipe": connect}


class ReceiveOnlyZigbee:
    """The plug path of a hub whose ZigBee transports are the configured line bridges (tcp,
    pipe): they carry the plugs' reports *to* the hub, and this build sends nothing back, so a
    ZCL On/Off command has no way out. Said plainly rather than pretended: the controller is
    not run on it (see ``_demand_response``)."""

    async def request(self, eui64: str, cluster_id: int, payload: bytes) -> bytes:
        raise PlugError(
            f"no path to send ZCL cluster 0x{cluster_id:04X} to plug {eui64}: this build's ZigBee "
            "bridges (tcp, pipe) only receive"
        )


@dataclass
class DemandResponse:
    """The demand-response side of a hub: the DRLC client (None unless asked for) and the
    appliance controller whose plugs its events act on."""

    drlc: DrlcClient | None
    controller: ApplianceController


def wire_demand_response(
    a: HubAssembly,
    link: PlugLink,
    appliances: Iterable[Appliance],
    schedule: TariffSchedule | None = None,
    *,
    drlc: bool = True,
    start_grace: timedelta = START_GRACE,
) -> DemandResponse:
    """The DRLC client and the appliance controller on ``a``'s state, clock and LFDI, their
    management commands (``appliance.run``; with ``drlc``, ``drlc.event`` and ``drlc.responses``)
    registered: the one wiring of ``smarthub hub``'s ``[demand_response]`` and of the simulated
    homes' automation (smarthub.sim.home_automation)."""
    client = DrlcClient(a.dir / "drlc.sqlite", a.lfdi) if drlc else None
    controller = ApplianceController(
        a.dir / "appliances.sqlite", a.clock, link, schedule, client, start_grace=start_grace
    )
    for appliance in appliances:
        controller.add_appliance(appliance)
    handlers = dict(appliance_commands(controller))
    if client is not None:
        handlers.update(drlc_commands(client, a.clock, controller.notify))
    for ctype, handler in handlers.items():
        a.management.register(ctype, handler)
    a.demand_response = out = DemandResponse(client, controller)
    return out


@dataclass
class Part:
    """One part of the hub: ``start(until)`` and ``stop()``; ``tasks`` it runs while started."""

    name: str
    on_start: Callable[[datetime | None], Awaitable[list[asyncio.Task[Any]] | None]] | None = None
    on_stop: Callable[[], Awaitable[None] | None] | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    started: bool = False

    async def start(self, until: datetime | None = None) -> None:
        if self.started and not (self.tasks and all(t.done() for t in self.tasks)):
            return  # running (a part whose loops have all ended, e.g. at ``until``, starts again)
        self.started = True
        if self.on_start is not None:
            self.tasks = list(await self.on_start(until) or [])

    async def halt(self) -> None:
        """End the part's loops (its objects stay open)."""
        pending = {t for t in self.tasks if not t.done()}
        while pending:
            # Cancel again until they end: on Python 3.11 asyncio.wait_for (inside a poll cycle)
            # can swallow a cancellation that lands as its inner call completes.
            for t in pending:
                t.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.5)
        self.tasks = []

    async def stop(self) -> None:
        await self.halt()
        if self.on_stop is not None:
            result = self.on_stop()
            if result is not None:
                await result
        self.started = False


def _after(*closers: Callable[[], Any]) -> Callable[[], Awaitable[None]]:
    async def stop() -> None:
        for close in closers:
            result = close()
            if asyncio.iscoroutine(result):
                await result

    return stop


class HubAssembly:
    """A complete hub built from ``config`` (see the module docstring). The parts' objects are
    attributes (``hub``, ``history``, ``management``, ``server``, ...) for whoever drives it."""

    # Set by the setup steps (_SETUP), in their order; declared here for the type checker.
    history: HistoryStore
    registry: MeterRegistry
    repairs: HubRepairs
    diagnostics: Diagnostics
    mains: MainsMonitor
    hub: SmartHub
    ca_cert: x509.Certificate
    management: ManagementInterface
    crls: CrlStore
    network: NetworkSettings
    consent: ConsentStore
    privacy: HubPrivacy
    transfer_policy: TransferPolicyStore
    firmware: FirmwareUpdater
    lfdi: str
    server: HubWanServer
    certificate: HubCertificate
    storage: StorageMark

    def __init__(
        self,
        config: HubConfig,
        *,
        clock: Clock | None = None,
        cert_clock: Clock | None = None,
        connectors: dict[str, Connector] | None = None,
        plug_link: PlugLink | None = None,
    ) -> None:
        """``plug_link``: the path to the configured appliances' plugs (default
        :class:`ReceiveOnlyZigbee`, all a real hub has in this build)."""
        self.config = config
        self.plug_link = plug_link
        self.clock = clock or SystemClock()
        # Certificates are checked against wall time (OpenSSL does too) even when the hub's
        # clock is a simulated one.
        self.cert_clock = cert_clock or SystemClock()
        self.connectors = {**REAL_CONNECTORS, **(connectors or {})}
        self.dir = config.state
        self.dir.mkdir(parents=True, exist_ok=True)
        self.parts: dict[str, Part] = {}
        self.connections: list[Connection] = []
        self.loops_by_meter: dict[str, list[PollLoop]] = {}
        self.supplies: dict[str, SupplyControl] = {}
        self.submeters: set[str] = {m.id for m in config.meters if m.appliance and m.id}
        self.consumer: Any = None
        self.mqtt: Any = None
        self.demand_response: DemandResponse | None = None
        self.url = ""
        try:
            for name, setup in _SETUP:
                part = setup(self)
                if part is not None:
                    self.parts[name] = part
        except BaseException:
            # A part that failed to set up: close what the ones before it opened.
            for part in reversed(list(self.parts.values())):
                with contextlib.suppress(Exception):
                    result = part.on_stop() if part.on_stop else None
                    if asyncio.iscoroutine(result):
                        result.close()
            raise

    # -- running -------------------------------------------------------------------------------
    async def start(self, only: Iterable[str] | None = None, *, until: datetime | None = None) -> None:
        """Start the parts (those named in ``only``, by default all) in order; ``until`` ends the
        simulated loops and the housekeeping at that instant of the hub's clock."""
        return_freed_memory()
        names = set(only) if only is not None else None
        for name, part in self.parts.items():
            if names is None or name in names:
                await part.start(until)

    async def halt(self) -> None:
        """End every part's loops, all at once (the parts stay open: the WAN still answers)."""
        await asyncio.gather(*(part.halt() for part in self.parts.values()))

    async def stop(self) -> None:
        # Every part's loops end first: a meter loop still running while a later part (the
        # prepayment ledger, the consumer) closes its database would write into a closed file.
        await self.halt()
        for part in reversed(list(self.parts.values())):
            try:
                await part.stop()
            except Exception:  # one part failing to stop must not keep the others open
                log.exception("hub %s: stopping %s failed", self.config.hub_id, part.name)

    def tasks(self) -> list[asyncio.Task[Any]]:
        return [t for p in self.parts.values() for t in p.tasks]

    # -- commands ------------------------------------------------------------------------------
    async def link_test(self, body: LinkTest) -> dict[str, Any]:
        """``diagnostic.link_test``: poll one meter now; whether it answered and how long it took."""
        meter = body.meter
        loops = self.loops_by_meter.get(meter)
        if not loops:
            raise ValueError(f"{meter!r} is not a meter this hub polls or listens to")
        t0 = time.perf_counter()
        ok = all([await loop.poll_now() for loop in loops])
        return {"meter": meter, "ok": ok, "ms": round(1000 * (time.perf_counter() - t0), 2)}

    def meter_replace(self, replace: Callable[[MeterReplace], dict[str, Any]]) -> Callable[..., Any]:
        """``meter.replace``: the registry records which meter replaced which; diagnostics stop
        expecting the old meter (its silence from now on is the exchange, not a fault)."""

        def handler(body: MeterReplace) -> dict[str, Any]:
            out = replace(body)
            self.diagnostics.retire(body.old, self.clock.now())
            return out

        return handler

    def appliance_name(self, meter: str) -> str | None:
        """The appliance a sub-meter measures, as the consumer named it (IHD map, else config)."""
        if self.consumer is not None and meter in self.consumer.consumption.appliances:
            return self.consumer.consumption.appliances[meter]
        return next((m.appliance for m in self.config.meters if m.id == meter and m.appliance), None)

    def is_submeter(self, meter: str) -> bool:
        """Sub-meters stay home: the WAN serves the hub's meters minus the appliance plugs."""
        return meter in self.submeters or (
            self.consumer is not None and meter in self.consumer.consumption.appliances
        )

    async def firmware_healthy(self, version: str) -> bool:
        """A new version is kept only if its payload is in place and the hub still takes its
        meters' frames during the probation (on the hub's clock)."""
        if not self.firmware.slots.payload_path(version).exists():
            return False
        if not self.config.meters:
            return True
        before = self.hub.stats.frames_ok
        deadline = self.clock.now() + self.config.firmware_probation
        # Looked at every second, or a hundredth of the probation if longer: an hour's probation
        # on a simulated clock must not be 3,600 turns of the event loop.
        step = max(timedelta(seconds=1), self.config.firmware_probation / 100)
        while self.clock.now() < deadline:
            await self.clock.sleep_until(min(deadline, self.clock.now() + step))
            if self.hub.stats.frames_ok > before:
                return True
        return self.hub.stats.frames_ok > before

    # -- housekeeping --------------------------------------------------------------------------
    async def maintain(self, until: datetime | None, every: timedelta = timedelta(minutes=5)) -> None:
        """Time-based diagnoses, the repairs they call for, readings a full disk held back, and
        once a day the history's retention (13 months of half-hours, then days)."""
        t = self.clock.now()
        compacted = t.date()
        while until is None or t <= until:
            await self.clock.sleep_until(t)
            self.hub.flush_storage()
            self.diagnostics.tick(t)
            await self.diagnostics.repair_pending(t)
            if t.date() != compacted:
                compacted = t.date()
                self.history.compact(t)
            t += every

    # -- the WAN --------------------------------------------------------------------------------
    def _wan_context(self) -> ssl.SSLContext:
        ctx = server_context(self.config.certificate, self.config.private_key, self.config.ca)
        self.certificate.contexts.append(ctx)  # a renewed certificate is loaded into it
        return ctx

    async def start_channel(self, host: str, port: int) -> None:
        """Keep a channel open to the GDSC's endpoint (a hub it cannot dial)."""
        await self.server.start_channel(host, port, self._wan_context(), clock=self.clock)

    async def start_wan(self, host: str, port: int) -> str:
        ctx = self._wan_context()
        bound = await self.server.start(host, port, ctx)
        self.url = f"https://{host_header(host, bound)}"
        return self.url


# -- the setup of each part, in order --------------------------------------------------------------


def _history(a: HubAssembly) -> Part:
    a.history = HistoryStore(a.dir / "history.sqlite")
    return Part("history", on_stop=_after(a.history.close))


def _registry(a: HubAssembly) -> Part:
    a.registry = MeterRegistry(a.dir / "meters.sqlite", a.clock)
    return Part("registry", on_stop=_after(a.registry.close))


def _diagnostics(a: HubAssembly) -> Part:
    a.repairs = HubRepairs()
    a.diagnostics = Diagnostics(DiagnosticsLog.beside(a.history.path), a.repairs)
    return Part("diagnostics", on_stop=_after(a.diagnostics.log.disconnect))


def _mains(a: HubAssembly) -> Part:
    """Loss and return of mains, with the last gasp to the GDSC when ``[wan] alerts`` names its
    endpoint (smarthub.hub.mains, smarthub.hub.alerts)."""
    sender = None
    if a.config.alerts is not None:
        sender = AlertSender.from_files(
            a.config.hub_id, a.config.private_key, a.diagnostics.log._file, a.config.alerts
        )
    a.mains = a.diagnostics.mains = MainsMonitor(a.config.hub_id, sender, a.diagnostics.log, clock=a.clock)
    return Part("mains", on_stop=_after(sender.close) if sender is not None else None)


def _core(a: HubAssembly) -> Part:
    a.hub = SmartHub(
        a.config.hub_id, a.history, clock=a.clock, diagnostics=a.diagnostics, registry=a.registry
    )
    if a.config.power_quality:
        # Counters and the failure log taken up where the history left them: a power cut that
        # took the hub down with its meter is counted when it comes back (hub.power_quality).
        a.hub.power_quality = from_history(a.history)
    # Every smart plug's starts and seconds run (appliance health's short-cycling test); they stay
    # home with the plug's energy unless a consent covers appliances (hub.submeters).
    a.hub.appliance_runs = runs_from_history(a.history, a.is_submeter)
    return Part("core")


def _meters(a: HubAssembly) -> Part:
    """Every configured transport connected, and each connection wired the same way: its meters
    commissioned, its loops watched by diagnostics and reachable by the repairs, its meters'
    expectations set."""
    ctx = ConnectContext(a.hub, a.clock, a.config.hub_id, lambda m: ZoneInfo(zone_of(a.config, m)))
    by_id = {m.id: m for m in a.config.meters if m.id}
    for transport, meters in a.config.transports:
        connector = a.connectors.get(transport.kind)
        if connector is None:
            raise ValueError(f"no connector for {transport.kind} transports ({transport.describe()})")
        a.connections += connector(ctx, transport, meters)
    for conn in a.connections:
        # The installer commissions the home's meters: radio meters must be (the receiver hears
        # the neighbours' too); wired ones are recorded as well, so a replacement names both.
        for meter, fuel in conn.meters:
            if not a.registry.is_active(meter):
                a.registry.add(meter, conn.protocol, fuel)
        if conn.radio is not None:
            a.repairs.add_radio(conn.radio)
    for conn in a.connections:
        loops = [loop for loop in conn.loops if isinstance(loop, PollLoop)]
        for loop in loops:
            loop.observers.append(a.diagnostics.observe_poll_loop)
            a.repairs.add_loops([loop.name], [loop])
        if conn.access is not None:
            a.repairs.add_dlms(conn.access)
        if conn.supply is not None:
            a.supplies[conn.supply.meter] = conn.supply
        for meter, _fuel in conn.meters:
            a.loops_by_meter[meter] = loops
            a.repairs.add_loops([meter], loops)
            m = by_id.get(meter)
            a.diagnostics.set_profile(
                meter,
                MeterProfile(
                    expected_period=(loops[0].period if loops else conn.period),
                    stale_after=m.stale_after if m else None,
                    generator=m.generator if m else False,
                ),
            )

    async def start(until: datetime | None) -> list[asyncio.Task[Any]]:
        return [asyncio.create_task(run) for conn in a.connections for run in conn.runs(until)]

    async def stop() -> None:
        for conn in a.connections:
            await conn.close()

    return Part("meters", start, stop)


def _management(a: HubAssembly) -> Part:
    a.ca_cert = x509.load_pem_x509_certificate(a.config.ca.read_bytes())
    a.management = ManagementInterface(a.config.hub_id, a.ca_cert, a.cert_clock, a.dir / "management.sqlite")
    m = a.management
    # Keys delivered by meter.key before this start win over the configured ones (installed by
    # _meters above); new ones are written there before they are used.
    keys = DeliveredKeys(a.dir / DELIVERED_KEYS_FILE, load_or_create_master_key(a.dir / "master.key"))
    a.hub.delivered_keys = keys
    a.hub.restore_delivered_keys()
    for ctype, handler in a.hub.command_handlers().items():  # mapping.update, meter.key
        m.register(ctype, handler)
    # The GDSC CA's CRL, taken with the bulk pull: checked for commands and on every WAN request.
    # (Not in the TLS context: a CRL past its nextUpdate would cut the hub off the WAN.)
    a.crls = CrlStore(a.dir / "crl.pem", a.ca_cert, a.cert_clock)
    m.use_crl_store(a.crls)
    registry = registry_commands(a.registry)
    for ctype, handler in registry.items():
        m.register(ctype, handler)
    m.register("meter.replace", a.meter_replace(registry["meter.replace"]))
    a.network = NetworkSettings(a.dir / "network.json")
    m.register("network.configure", network_command(a.network))
    m.register("diagnostic.link_test", a.link_test)
    return Part("management", on_stop=_after(m.close, keys.close))


def _privacy(a: HubAssembly) -> Part:
    # Until the householder opts in, the GDSC gets monthly totals (the GB default), unless the
    # configuration records another decision at first start.
    a.consent = ConsentStore(a.dir / "consent.sqlite", clock=a.clock)
    wanted = a.config.gdsc_granularity
    if wanted is not None and a.consent.version("gdsc") is None:
        a.consent.set("gdsc", Granularity(wanted), a.clock.now())
    # The GDSC's transfer policy narrows what its own collection gets (hub.transfer_policy).
    a.transfer_policy = TransferPolicyStore(a.dir / "transfer_policy.sqlite")
    a.privacy = HubPrivacy(
        a.consent, a.history, mirror=a.hub.mirror, is_submeter=a.is_submeter, cap=a.transfer_policy.cap
    )
    for ctype, handler in privacy_commands(a.privacy, a.clock).items():  # consent.set, supplier.keys
        a.management.register(ctype, handler)
    a.management.register("transfer.policy", transfer_policy_command(a.transfer_policy))
    return Part("privacy", on_stop=_after(a.consent.close, a.transfer_policy.close))


def _firmware(a: HubAssembly) -> Part:
    slots = FirmwareSlots(a.dir / "firmware")
    # The updater's own deadline must not cut the configured probation short (its default is 5
    # minutes; a configuration may ask for longer).
    probation = max(timedelta(minutes=5), a.config.firmware_probation + timedelta(minutes=1))
    a.firmware = FirmwareUpdater(slots, a.ca_cert, a.cert_clock, a.firmware_healthy, probation=probation)
    a.firmware.recover()
    a.management.register("firmware.update", firmware_command(a.firmware))
    return Part("firmware")


def _consumer(a: HubAssembly) -> Part | None:
    """Priced consumption and the IHD for the configured supplies; prepayment for the fuels
    named, switched through the meters that can (the supplier's remote disconnect of a prepaid
    meter then goes through the prepayment bridge, which keeps its hold across restarts)."""
    consumer = a.config.consumer
    if consumer is None:
        return None
    from smarthub.hub.consumption import Supply
    from smarthub.hub.ihd.home import attach_consumer_side
    from smarthub.hub.prepayment_bridge import supply_commands as prepaid_supply_commands
    from smarthub.hub.tariffs import CostAccumulator
    from smarthub.model.tariff import schedule_from_json
    from smarthub.model.tariff_carbon import FixedIntensity

    supplies = [
        Supply(
            s.fuel,
            s.meter,
            s.supplier,
            CostAccumulator(
                schedule_from_json(s.tariff_json), FixedIntensity(g_per_kwh=Decimal(s.co2_g_per_kwh))
            ),
        )
        for s in consumer.supplies
    ]
    fuel_of = {m.id: m.fuel for m in a.config.meters if m.id}
    breakers = {
        fuel: next(s for meter, s in a.supplies.items() if fuel_of.get(meter) == fuel)
        for fuel in consumer.prepayment
    }
    a.consumer = side = attach_consumer_side(
        a.hub,
        a.dir / "ihd",
        a.clock,
        supplies,
        management=a.management,
        consent=a.consent,
        prepayment=bool(breakers),
        prepaid_fuels=list(breakers) or None,
        ca_cert=a.ca_cert,
        breakers=breakers,
        cert_clock=a.cert_clock,
    )
    for m in a.config.meters:
        if m.appliance and m.id:
            side.consumption.set_appliance(m.id, m.appliance)
    if side.bridge is not None:
        prepaid = {s.meter: (fuel, s) for fuel, s in breakers.items()}
        bridged = prepaid_supply_commands(side.bridge, prepaid)
        plain = supply_commands(a.supplies)
        for ctype in plain:
            a.management.register(ctype, _by_meter(ctype, prepaid, bridged, plain))
    ihd = a.config.ihd

    async def start(until: datetime | None) -> None:
        if ihd is not None:
            await side.serve(ihd.listen, ihd.port)
            log.info("in-home display on %s", side.url)

    return Part("consumer", start, side.stop)


def _by_meter(ctype: str, prepaid: dict[str, Any], bridged: dict[str, Any], plain: dict[str, Any]) -> Any:
    async def handler(body: SupplyDisconnect | SupplyReconnect | SupplyState | SupplyLimit) -> dict[str, Any]:
        table = bridged if body.meter in prepaid and ctype in bridged else plain
        return await table[ctype](body)

    return handler


def _supply(a: HubAssembly) -> Part | None:
    """``supply.*`` for the meters whose supply the hub may switch (replaced for prepaid meters
    by the consumer part)."""
    if not a.supplies:
        return None
    for ctype, handler in supply_commands(a.supplies).items():
        a.management.register(ctype, handler)
    return Part("supply")


def _recovery(a: HubAssembly) -> Part:
    """The storage mark the GDSC reads with every pull, and the commands that restore a blank
    hub (smarthub.hub.recovery): history into the history (and the display's consumption),
    the prepayment backup into the ledger."""
    a.storage = StorageMark(a.dir / "storage.json", found_data=bool(a.history.channels()), now=a.clock.now())
    side = a.consumer
    observe, since = None, None
    if side is not None:
        from smarthub.hub.ihd.home import replay_since

        observe = side.consumption.observe
        clock = a.clock

        def since() -> datetime:
            return replay_since(clock.now())

    handlers = recovery_commands(
        a.storage,
        a.history,
        a.clock,
        ledger=None if side is None else side.ledger,
        consent=a.consent,
        observe=observe,
        observe_since=since,
        after_restore=None if side is None or side.bridge is None else side.bridge.charge_after_backup,
    )
    for ctype, handler in handlers.items():
        a.management.register(ctype, handler)
    return Part("recovery")


def _wan(a: HubAssembly) -> Part:
    cert = x509.load_pem_x509_certificate(a.config.certificate.read_bytes())
    a.lfdi = lfdi(cert)

    is_submeter = a.is_submeter
    monotonic: dict[str, Any] = {}
    if not isinstance(a.clock, SystemClock):
        clock = a.clock
        monotonic["monotonic"] = lambda: clock.now().timestamp()  # rate limits in simulated time
    a.server = HubWanServer(
        a.config.hub_id,
        a.lfdi,
        # Sub-meters leave the home only under a consent covering appliances (hub.privacy).
        WanMeters(a.hub, is_submeter, shared=a.privacy.appliances_shared, names=a.appliance_name),
        lambda: int(a.clock.now().timestamp()),
        management=a.management,
        privacy=a.privacy,
        events=WanEvents(a.diagnostics.log, is_submeter),
        client_allowed=a.network.client_allowed,
        revoked=a.crls.is_revoked,
        crls=a.crls,  # the GDSC's CRL, taken with the bulk pull
        **monotonic,
    )
    server = a.server
    storage = a.storage
    a.server.storage = lambda: storage.header  # the GDSC learns of a blank hub with its pulls
    a.server.metrics = HubMetrics(
        a.hub,
        connections=lambda: [(c.protocol, c.failures) for c in a.connections],
        open_events=a.diagnostics.log.open_events,
        files={"history": str(a.history.path), "diagnostics": a.diagnostics.log.path},
        wan=lambda: (server.requests, server.rate_limited),
        last_pull=lambda: server.last_collector_request,
    ).render
    # Certificate renewal (pki.certificate): into the live TLS context, and the server answers
    # with its new LFDI.
    a.certificate = HubCertificate(
        a.config.hub_id, a.config.certificate, a.config.private_key, a.ca_cert, a.cert_clock,
        crls=a.crls, listeners=[lambda _cert, new_lfdi: setattr(a.server, "lfdi", new_lfdi)],
    )  # fmt: skip
    a.management.register("pki.certificate", a.certificate.handle)
    if a.consumer is not None:
        from smarthub.wan.server.ihd_resources import IhdResources

        # Third-party displays of this home read its pricing, messages and live demand in 2030.5.
        side = a.consumer
        IhdResources(a.server, side.consumption, side.store, a.clock.now, live=side.ihd.live).install()
        # The consent revocations asked at the display ride on the GDSC's pulls (wan.contract.revocations).
        a.server.revocations = side.revocations

    async def start(until: datetime | None) -> None:
        if a.config.wan.listen != "none":
            await a.start_wan(a.config.wan.listen, a.config.wan.port)
            log.info("hub %s serving IEEE 2030.5 on %s/dcap (mutual TLS)", a.config.hub_id, a.url)
        if a.config.channel is not None:
            await a.start_channel(*a.config.channel)
            log.info("hub %s keeps a channel open to the GDSC at %s:%d", a.config.hub_id, *a.config.channel)

    return Part("wan", start, a.server.stop)


def _demand_response(a: HubAssembly) -> Part | None:
    """``[demand_response]`` and ``[[appliance]]``: the DRLC client holds the GDSC's events and
    answers them (IEEE 2030.5 §10.7); the controller places the appliances' runs around them on
    the electricity tariff of ``[consumer]`` (none: runs cannot be placed) and switches the
    plugs, when the hub has a path to them."""
    c = a.config
    if not c.demand_response and not c.appliances:
        return None
    supplies = c.consumer.supplies if c.consumer is not None else ()
    tariff = next((s.tariff_json for s in supplies if s.fuel == "electricity"), None)
    link = a.plug_link or ReceiveOnlyZigbee()
    dr = wire_demand_response(
        a,
        link,
        [
            Appliance(x.name, x.plug, x.category, x.interruptible, x.dr_enabled, x.min_duty_percent)
            for x in c.appliances
        ],
        schedule_from_json(tariff) if tariff is not None else None,
        drlc=c.demand_response,
    )

    async def start(until: datetime | None) -> list[asyncio.Task[Any]]:
        if isinstance(link, ReceiveOnlyZigbee):
            if c.appliances:
                log.warning(
                    "hub %s: demand-response events are held and answered, runs placed, but no "
                    "plug is switched: this build cannot send ZCL On/Off over its ZigBee bridges",
                    c.hub_id,
                )
            return []
        return [asyncio.create_task(dr.controller.run_forever(until))]

    closers = [dr.controller.close] + ([dr.drlc.close] if dr.drlc is not None else [])
    return Part("demand_response", start, _after(*closers))


def _mqtt(a: HubAssembly) -> Part | None:
    c = a.config.mqtt
    if c is None:
        return None
    from smarthub.hub.mqtt_export import MqttExporter, MqttSettings, hub_entities

    settings = MqttSettings(
        enabled=True,
        host=c.host,
        port=c.port,
        username=c.username,
        password=c.password,
        discovery_prefix=c.discovery_prefix,
        base_topic=c.base_topic,
        publish_every_s=c.publish_every_s,
    )
    a.mqtt = exporter = MqttExporter(a.config.hub_id, settings, a.clock)
    meters = [m for m in a.config.meters if m.id and not m.appliance]
    electricity = next((m.id for m in meters if m.fuel == "electricity"), None)
    gas = next((m.id for m in meters if m.fuel == "gas"), None)
    hub_entities(exporter, a.hub.mirror.latest, electricity, gas)

    async def start(until: datetime | None) -> list[asyncio.Task[Any]]:
        exporter.start()
        return [asyncio.create_task(exporter.run(until))]

    return Part("mqtt", start, exporter.stop)


def _housekeeping(a: HubAssembly) -> Part:
    async def start(until: datetime | None) -> list[asyncio.Task[Any]]:
        return [asyncio.create_task(a.maintain(until))]

    return Part("housekeeping", start)


_SETUP: list[tuple[str, Callable[[HubAssembly], Part | None]]] = [
    ("history", _history),
    ("registry", _registry),
    ("diagnostics", _diagnostics),
    ("mains", _mains),
    ("core", _core),
    ("meters", _meters),
    ("management", _management),
    ("privacy", _privacy),
    ("supply", _supply),
    ("firmware", _firmware),
    ("consumer", _consumer),
    ("recovery", _recovery),
    ("wan", _wan),
    ("demand_response", _demand_response),
    ("mqtt", _mqtt),
    ("housekeeping", _housekeeping),
]


# glibc's M_MMAP_THRESHOLD (malloc.h): blocks at least this big are mapped on their own and
# unmapped when freed.
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 256 * 1024


def return_freed_memory() -> None:
    """Make large freed blocks go back to the system (glibc only; elsewhere nothing).

    glibc raises its mmap threshold to the size of the largest block freed so far, so after the
    first big transient allocation the next ones come from the heap and stay resident once
    freed. A pairing code's scrypt (16 MB of working memory, twice per screen paired) thus left
    the hub 16 MB larger for good, a quarter of its memory budget (issue 17). A fixed threshold
    (setting it turns the adjustment off) returns such blocks when they are freed; blocks under
    it, nearly all of a hub's, are unaffected. The process-wide setting, made by the composition
    root of the hub process."""
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)


def build_hub(
    config: HubConfig,
    *,
    clock: Clock | None = None,
    cert_clock: Clock | None = None,
    connectors: dict[str, Connector] | None = None,
    plug_link: PlugLink | None = None,
) -> HubAssembly:
    """The hub ``config`` describes, set up and not yet started (see :class:`HubAssembly`)."""
    return HubAssembly(config, clock=clock, cert_clock=cert_clock, connectors=connectors, plug_link=plug_link)


def describe(a: HubAssembly) -> dict[str, Any]:
    """What was built: parts, management commands, meters and their transports (for the
    ``smarthub hub`` start line and for comparing two builds)."""
    return {
        "parts": list(a.parts),
        "commands": sorted(a.management.handlers),
        "meters": sorted((meter, conn.protocol) for conn in a.connections for meter, _ in conn.meters),
        "repairs": a.repairs.reachable(),
    }
