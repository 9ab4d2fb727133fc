"""The simulated fleet: homes with a DSMR meter (electricity + gas on its M-Bus channel),
each with a real Smart Hub serving 2030.5 over mutual TLS on loopback.

Provisioning stands in for the installer and the GDSC's commissioning: the GDSC CA issues
each hub's server certificate and the collector's client certificate; the fleet writes a
manifest (hub URLs, LFDIs, premises and meters) that the GDSC registers from.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509

from smarthub.clock import Clock, SystemClock
from smarthub.gdsc.pki import CertificateAuthority, Role, lfdi
from smarthub.han.dlms_poll import DlmsPath, DlmsPaths
from smarthub.han.poll import PollLoop, SimulatedLink
from smarthub.han.wmbus_port import WMBusPort
from smarthub.hub.certificate import HubCertificate
from smarthub.hub.diagnostics import DiagnosedEvent, Diagnostics, DiagnosticsLog, MeterProfile
from smarthub.hub.firmware import FirmwareSlots, FirmwareUpdater, firmware_command
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.hub.keys import KeyRing
from smarthub.hub.management import CrlStore, ManagementInterface
from smarthub.hub.network import NetworkSettings, network_command
from smarthub.hub.privacy import ConsentStore, Granularity, HubPrivacy, privacy_commands
from smarthub.hub.registry import MeterRegistry, registry_commands
from smarthub.hub.repairs import DlmsMeterAccess, HubRepairs
from smarthub.hub.submeters import WanEvents, WanMeters
from smarthub.meters.dlms.client import DlmsClient
from smarthub.meters.dlms.security import SecurityKeys
from smarthub.model import ObisCode
from smarthub.model.identifiers import make_mpan
from smarthub.model.obis import EXPORT_ACTIVE_ENERGY, IMPORT_ACTIVE_ENERGY, IMPORT_ACTIVE_POWER
from smarthub.sim.consumer import add_smart_plugs, attach_sim_consumer_side
from smarthub.sim.dlms_meter import DlmsMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.rigs import Rig, SupplyControl, dlms_rig, dsmr_rig, iec_rig, mbus_rig, wmbus_rig, zigbee_rig
from smarthub.wan.ihd_resources import IhdResources
from smarthub.wan.server import HubWanServer
from smarthub.wan.tls import client_context, server_context

log = logging.getLogger(__name__)

STREETS = ("High Street", "Station Road", "Church Lane", "Victoria Road", "Mill Lane", "Park Avenue")
TOWNS = ("Leicester", "Loughborough", "Nottingham", "Derby", "Coventry", "Lincoln")


# The meter mixes of the demo fleet, in turn: every protocol the hub speaks is in use.
KINDS = ("dsmr", "dlms+wmbus", "iec+mbus+wmbus", "zigbee")


CELL_SIZE = 8  # homes behind one simulated WAN link (a cellular cell / concentrator)


@dataclass(frozen=True)
class HomeSpec:
    hub_id: str
    premises_id: str
    address: str
    mpan: str
    mprn: str
    kind: str
    index: int
    seed: int
    pv_kwp: float


def home_specs(homes: int, seed: int) -> list[HomeSpec]:
    rng = random.Random(seed)
    out = []
    for i in range(homes):
        out.append(
            HomeSpec(
                hub_id=f"HUB{i:06d}",
                premises_id=f"P{i:07d}",
                address=f"{rng.randint(1, 199)} {rng.choice(STREETS)}, {rng.choice(TOWNS)}",
                mpan=make_mpan(
                    rng.choice((11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23)), rng.randrange(10**10)
                ),
                mprn=str(rng.randint(10**7, 10**10 - 1)),
                kind=KINDS[i % len(KINDS)],
                index=i,
                seed=rng.randrange(2**31),
                pv_kwp=rng.choice((0.0, 0.0, 0.0, 3.5)),  # about a quarter of homes export solar
            )
        )
    return out


@dataclass
class Credentials:
    ca_pem: Path
    collector_pem: Path
    collector_key: Path

    def collector_context(self):  # type: ignore[no-untyped-def]
        return client_context(self.collector_pem, self.collector_key, self.ca_pem)


def provision(state: Path, specs: list[HomeSpec], now: datetime) -> Credentials:
    """Create the GDSC CA (or reuse it), the collector certificate and each hub's certificate."""
    ca_dir = state / "ca"
    if (ca_dir / "ca.pem").exists():
        ca = CertificateAuthority.load(ca_dir)
    else:
        ca_dir.mkdir(parents=True, exist_ok=True)
        ca = CertificateAuthority.create("smarthub GDSC root CA", now)
        ca.save(ca_dir)
    gdsc_dir = state / "gdsc"
    gdsc_dir.mkdir(parents=True, exist_ok=True)
    if not (gdsc_dir / "collector.pem").exists():
        ca.issue(Role.COLLECTOR, "collector-1", now).save(gdsc_dir, "collector")
    if not (gdsc_dir / "operator.pem").exists():
        ca.issue(Role.OPERATOR, "gdsc-operations", now).save(gdsc_dir, "operator")
    for spec in specs:
        hub_dir = state / "hubs" / spec.hub_id
        hub_dir.mkdir(parents=True, exist_ok=True)
        if not (hub_dir / "hub.pem").exists():
            ca.issue(Role.HUB, spec.hub_id, now, hosts=("127.0.0.1", "localhost")).save(hub_dir, "hub")
    return Credentials(ca_dir / "ca.pem", gdsc_dir / "collector.pem", gdsc_dir / "collector.key")


class SimulatedHome:
    def __init__(
        self,
        spec: HomeSpec,
        state: Path,
        clock: Clock,
        sim_start: datetime,
        telegram_period: timedelta,
        *,
        smart_plugs: bool = True,
        cert_clock: Clock | None = None,
    ) -> None:
        """``cert_clock``: what certificates and CRLs are checked against (default wall time, as
        OpenSSL does; a test running the GDSC's CRL dates on the simulated clock passes that)."""
        cert_clock = cert_clock or SystemClock()
        self.spec = spec
        self.dir = state / "hubs" / spec.hub_id
        self.clock = clock
        self.history = HistoryStore(self.dir / "history.sqlite")
        self.repairs = HubRepairs()
        self.diagnostics = Diagnostics(DiagnosticsLog.beside(self.history.path), self.repairs)
        self.registry = MeterRegistry(self.dir / "meters.sqlite", clock)
        self.hub = SmartHub(
            spec.hub_id, self.history, clock=clock, diagnostics=self.diagnostics, registry=self.registry
        )
        cert = x509.load_pem_x509_certificate((self.dir / "hub.pem").read_bytes())
        self.lfdi = lfdi(cert)
        self.rigs = build_rigs(spec, self.hub, clock, sim_start, telegram_period)
        self.appliances = _smart_plugs(spec, self.hub, clock, sim_start, self.rigs) if smart_plugs else {}
        # The installer commissions the home's meters: radio meters must be (the receiver hears
        # the neighbours' too); wired ones are recorded as well, so a replacement names both.
        for rig in self.rigs:
            for meter, fuel in rig.meters:
                if not self.registry.is_active(meter):
                    self.registry.add(meter, rig.protocol, fuel)
        self._loops_by_meter: dict[str, list[PollLoop]] = {}
        for port in self.hub.ports.values():
            if isinstance(port, WMBusPort):
                self.repairs.add_radio(port)
        for rig in self.rigs:
            loops = [loop for loop in rig.loops if isinstance(loop, PollLoop)]
            for loop in loops:
                loop.observers.append(self.diagnostics.observe_poll_loop)
                self.repairs.add_loops([loop.name], [loop])
            if rig.supply is not None:
                self.repairs.add_dlms(
                    dlms_access(rig.supply.meter, rig.supply.link, rig.supply.client, loops[0])
                )
            for meter, fuel in rig.meters:
                self._loops_by_meter[meter] = loops
                self.repairs.add_loops([meter], loops)
                generator = spec.pv_kwp > 0 and fuel == "electricity"
                period = loops[0].period if loops else telegram_period
                # Under an accelerated clock a busy event loop makes meters look late by many
                # simulated minutes; an hour of silence is a real fault even at 8,000× speed.
                self.diagnostics.set_profile(
                    meter,
                    MeterProfile(expected_period=period, stale_after=timedelta(hours=1), generator=generator),
                )
        ca_cert = x509.load_pem_x509_certificate((state / "ca" / "ca.pem").read_bytes())
        # Certificates are checked against wall time (OpenSSL does too), unless told otherwise.
        self.management = ManagementInterface(
            spec.hub_id, ca_cert, cert_clock, self.dir / "management.sqlite"
        )
        for ctype, handler in self.hub.command_handlers().items():
            self.management.register(ctype, handler)
        # The simulated households opted in to half-hourly reads for settlement (the GB
        # default without opt-in would be monthly).
        self.consent = ConsentStore(self.dir / "consent.sqlite")
        if self.consent.granularity("gdsc") is not Granularity.HALF_HOURLY:
            self.consent.set("gdsc", Granularity.HALF_HOURLY, clock.now())
        privacy = HubPrivacy(self.consent, self.history, mirror=self.hub.mirror)
        for ctype, handler in privacy_commands(privacy, clock).items():  # consent.set, supplier.keys
            self.management.register(ctype, handler)
        # The GDSC CA's CRL, taken with the bulk pull: checked for commands and on every WAN
        # request. (Not in the TLS context: a CRL past its nextUpdate would cut the hub off the WAN.)
        self.crls = CrlStore(self.dir / "crl.pem", ca_cert, cert_clock)
        self.management.use_crl_store(self.crls)
        for ctype, handler in registry_commands(self.registry).items():
            self.management.register(ctype, handler)
        self.management.register("meter.replace", self._meter_replace(registry_commands(self.registry)))
        self.swaps: list[MeterSwap] = []
        self.network = NetworkSettings(self.dir / "network.json")
        self.management.register("network.configure", network_command(self.network))
        self.management.register("diagnostic.link_test", self._link_test)
        self._supplies = {rig.supply.meter: rig.supply for rig in self.rigs if rig.supply is not None}
        for ctype, handler in supply_commands(self._supplies).items():
            self.management.register(ctype, handler)
        # Firmware: a new version must show the hub core still holds its meters' readings.
        self.firmware = FirmwareUpdater(
            FirmwareSlots(self.dir / "firmware"), ca_cert, cert_clock, self._firmware_healthy
        )
        self.firmware.recover()
        self.management.register("firmware.update", firmware_command(self.firmware))
        self.consumer = attach_sim_consumer_side(
            self.hub,
            self.dir / "ihd",
            clock,
            self.rigs,
            sim_start,
            self.appliances,
            management=self.management,
            consent=self.consent,
            ca_cert=ca_cert,
            operator=(state / "gdsc" / "operator.pem", state / "gdsc" / "operator.key"),
            cert_clock=cert_clock,
        )
        # Sub-meters stay home: the WAN serves the hub's meters minus the appliance plugs.
        consumption = self.consumer.consumption
        self.server = HubWanServer(
            spec.hub_id,
            self.lfdi,
            WanMeters(self.hub, lambda meter: meter in consumption.appliances),
            lambda: int(clock.now().timestamp()),
            management=self.management,
            privacy=privacy,
            events=WanEvents(self.diagnostics.log, lambda meter: meter in consumption.appliances),
            monotonic=lambda: clock.now().timestamp(),
            client_allowed=self.network.client_allowed,
            revoked=self.crls.is_revoked,
            crls=self.crls,
        )
        # Certificate renewal (pki.certificate): the new certificate goes into the live TLS
        # context started below, and the server answers with its new LFDI.
        self.certificate = HubCertificate(
            spec.hub_id, self.dir / "hub.pem", self.dir / "hub.key", ca_cert, cert_clock, crls=self.crls,
            listeners=[lambda _cert, new_lfdi: setattr(self.server, "lfdi", new_lfdi)],
        )  # fmt: skip
        self.management.register("pki.certificate", self.certificate.handle)
        # Third-party displays of this home read its pricing and messages in 2030.5.
        IhdResources(
            self.server, consumption, self.consumer.store, clock.now, live=self.consumer.ihd.live
        ).install()
        self.url = ""

    async def _link_test(self, body: dict[str, Any]) -> dict[str, Any]:
        """Poll one meter now and report whether it answered and how long it took."""
        meter = str(body["meter"])
        loops = self._loops_by_meter.get(meter)
        if not loops:
            raise ValueError(f"{meter!r} is not a meter this hub polls or listens to")
        t0 = time.perf_counter()
        ok = all([await loop.poll_now() for loop in loops])
        return {"meter": meter, "ok": ok, "ms": round(1000 * (time.perf_counter() - t0), 2)}

    def _meter_replace(self, commands: dict[str, Any]) -> Any:
        """``meter.replace``: the registry records which meter replaced which; diagnostics stop
        expecting the old meter (its silence from now on is the exchange, not a fault)."""
        replace = commands["meter.replace"]

        def handler(body: dict[str, Any]) -> dict[str, Any]:
            out: dict[str, Any] = replace(body)
            self.diagnostics.retire(str(body["old"]), self.clock.now())
            return out

        return handler

    async def swap_dlms_meter(self) -> MeterSwap:
        """The installer exchanges this home's DLMS electricity meter for a new one (new system
        title, new suite 0 keys, registers from 0): a final read of the old meter and a first read
        of the new one at the same instant, under the poll loop's lock, then the loop polls the
        new meter. The GDSC's ``meter.replace`` command tells the hub's registry (see chaos)."""
        rig = next(r for r in self.rigs if r.protocol == "dlms" and r.supply is not None)
        assert rig.supply is not None
        old, loop = rig.supply.meter, rig.supply.loop
        profile = rig.supply.link.meter.profile  # type: ignore[attr-defined]
        title = b"LGZ" + (0x48000000 + self.spec.index).to_bytes(5, "big")
        new = title.hex().upper()
        keys = SecurityKeys(_meter_key(self.spec, 20), _meter_key(self.spec, 21))
        swapped: list[datetime] = []

        async def exchange(t: datetime) -> None:
            try:
                self.hub.accept(await loop.cycle(t), t, port="dlms")  # the old meter's final read
            except Exception as err:  # a failed final read leaves its last half-hour to estimation
                log.warning("final read of %s failed: %s", old, err)
            meter = DlmsMeterSimulator(title, new, profile, start=t, keys=keys, initial_import_wh=0)
            link = SimulatedLink(meter)
            client = DlmsClient(client_sap=1, server_address=1, system_title=b"SHB" + title[3:], keys=keys)
            self.repairs.add_dlms(dlms_access(new, link, client, loop))  # loop.cycle: the new meter
            self.hub.accept(await loop.cycle(t), t, port="dlms")  # the commissioning read
            rig.supply = self._supplies[new] = SupplyControl(new, link, client, loop)
            del self._supplies[old]
            swapped.append(t)

        await loop.exclusive(exchange)
        rig.meters = [(new, "electricity")]
        rig.channels = [(new, obis) for _, obis in rig.channels]
        self._loops_by_meter[new] = self._loops_by_meter.pop(old)
        self.repairs.add_loops([new], self._loops_by_meter[new])
        self.diagnostics.set_profile(new, self.diagnostics.profile(old))
        swap = MeterSwap(old, new, swapped[0], tuple(obis for _, obis in rig.channels))
        self.swaps.append(swap)
        return swap

    def expected_starts(self, start: int, end: int) -> dict[tuple[str, str, ObisCode], set[int]]:
        """The half-hours in [start, end) each channel of this home must deliver: a replaced
        meter's up to its exchange, its successor's from the next half-hour on (the half-hour of
        the exchange is whole for neither meter)."""
        out = {c: set(range(start, end, 1800)) for c in self.expected_channels()}
        for swap in self.swaps:
            at = int(swap.at.timestamp())
            for obis in swap.channels:
                out[(self.spec.hub_id, swap.old, obis)] = set(range(start, min(end, at - 1800 + 1), 1800))
                first = -(-at // 1800) * 1800
                out[(self.spec.hub_id, swap.new, obis)] = set(range(max(start, first), end, 1800))
        return out

    async def _firmware_healthy(self, version: str) -> bool:
        return self.firmware.slots.payload_path(version).exists() and len(self.hub.mirror) > 0

    async def maintain(self, until: datetime | None, every: timedelta = timedelta(minutes=5)) -> None:
        """The hub's housekeeping: time-based diagnoses, the repairs they call for, retention."""
        t = self.clock.now()
        compacted = t.date()
        while until is None or t <= until:
            await self.clock.sleep_until(t)
            self.hub.flush_storage()  # readings a full disk held back, once there is space
            self.diagnostics.tick(t)
            await self.diagnostics.repair_pending(t)
            if t.date() != compacted:  # once a day: retention (13 months of half-hours, then days)
                compacted = t.date()
                self.history.compact(t)
            t += every

    @property
    def meters(self) -> list[tuple[str, str]]:
        """The home's meters as the GDSC registers them: smart plugs stay in the home."""
        return [m for rig in self.rigs for m in rig.meters if m[0] not in self.appliances]

    def expected_channels(self) -> list[tuple[str, str, ObisCode]]:
        """The channels the GDSC must collect (a smart plug's never leaves the home)."""
        return [
            (self.spec.hub_id, meter, obis)
            for rig in self.rigs
            for meter, obis in rig.channels
            if meter not in self.appliances
        ]

    async def start_server(self, ca_pem: Path, host: str = "127.0.0.1", port: int = 0) -> str:
        ctx = server_context(self.dir / "hub.pem", self.dir / "hub.key", ca_pem)
        self.certificate.contexts.append(ctx)
        bound = await self.server.start(host, port, ctx)
        self.url = f"https://{host}:{bound}"
        return self.url

    async def stop(self) -> None:
        await self.server.stop()
        await self.consumer.stop()
        self.management.close()
        self.consent.close()
        self.diagnostics.log.disconnect()
        self.registry.close()
        self.history.close()

    def manifest_entry(self) -> dict[str, object]:
        s = self.spec
        return {
            "hub_id": s.hub_id,
            "premises_id": s.premises_id,
            "address": s.address,
            "mpan": s.mpan,
            "mprn": s.mprn,
            "url": self.url,
            "lfdi": self.lfdi,
            "meters": [list(m) for m in self.meters],
            # Homes share cells of CELL_SIZE: an outage of one cell is one incident at the GDSC.
            "wan_link": f"cell-{s.index // CELL_SIZE:04d}",
        }


@dataclass(frozen=True)
class MeterSwap:
    """A meter exchanged: ``at`` is the instant of the old meter's final read and the new one's
    first; ``channels`` the interval channels that moved from one to the other."""

    old: str
    new: str
    at: datetime
    channels: tuple[ObisCode, ...]


class Fleet:
    def __init__(
        self,
        state: Path,
        specs: list[HomeSpec],
        clock: Clock,
        sim_start: datetime,
        telegram_period: timedelta = timedelta(seconds=60),
        *,
        cert_clock: Clock | None = None,
    ) -> None:
        self.state = state
        self.specs = specs
        self.homes = [
            SimulatedHome(s, state, clock, sim_start, telegram_period, cert_clock=cert_clock) for s in specs
        ]
        self._tasks: list[asyncio.Task[None]] = []

    async def start_servers(self, ca_pem: Path) -> None:
        for home in self.homes:
            await home.start_server(ca_pem)

    def write_manifest(self, extra: dict[str, object] | None = None) -> Path:
        path = self.state / "fleet.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    **(extra or {}),
                    "hubs": [h.manifest_entry() for h in self.homes],
                    "specs": [asdict(s) for s in self.specs],
                },
                indent=1,
            )
        )
        tmp.replace(path)
        return path

    def start_meters(self, until: datetime | None = None) -> None:
        self._tasks = [
            asyncio.create_task(run) for h in self.homes for rig in h.rigs for run in rig.runs(until)
        ]
        self._tasks += [asyncio.create_task(h.maintain(until)) for h in self.homes]

    async def meters_done(self) -> bool:
        """Wait for the meter loops started with an end time; True if they had already finished."""
        already = all(t.done() for t in self._tasks)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return already

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for h in self.homes:
            await h.stop()

    def frame_errors(self) -> int:
        return sum(h.hub.stats.frame_errors for h in self.homes)

    def open_diagnoses(self) -> list[DiagnosedEvent]:
        return [e for h in self.homes for e in h.diagnostics.log.open_events()]

    def poll_failures(self) -> int:
        return sum(rig.failures for h in self.homes for rig in h.rigs)

    def expected_channels(self) -> list[tuple[str, str, ObisCode]]:
        return [c for h in self.homes for c in h.expected_channels()]

    def expected_starts(self, start: int, end: int) -> dict[tuple[str, str, ObisCode], set[int]]:
        """Every channel's expected half-hours in [start, end), meter exchanges accounted for."""
        return {k: v for h in self.homes for k, v in h.expected_starts(start, end).items()}


# How often the simulated hub polls its polled meters and how often radio meters transmit.
# Real hubs poll registers every few minutes, and OMS/ZigBee battery meters transmit every
# 30 s to 15 min; any period that divides 30 min puts samples on the settlement boundaries.
# (The DSMR P1 port sends every second in life; the simulator uses `telegram_period`.)
POLL_PERIOD = timedelta(minutes=5)
RADIO_PERIOD = timedelta(minutes=2)


def _meter_key(spec: HomeSpec, slot: int) -> bytes:
    """A per-meter AES key, as the meter's manufacturer ships it to the installer (deterministic per seed)."""
    return hashlib.sha256(f"{spec.seed}/{spec.hub_id}/{slot}".encode()).digest()[:16]


def supply_commands(supplies: dict[str, SupplyControl]) -> dict[str, Any]:
    """``supply.*`` commands: the GDSC (for a supplier) switching or limiting a meter's breaker."""

    def pick(body: dict[str, Any]) -> SupplyControl:
        meter = str(body["meter"])
        if meter not in supplies:
            raise ValueError(f"{meter!r} has no breaker this hub controls")
        return supplies[meter]

    async def disconnect(body: dict[str, Any]) -> dict[str, Any]:
        return await pick(body).disconnect()

    async def reconnect(body: dict[str, Any]) -> dict[str, Any]:
        return await pick(body).reconnect()

    async def state(body: dict[str, Any]) -> dict[str, Any]:
        return await pick(body).state()

    async def limit(body: dict[str, Any]) -> dict[str, Any]:
        return await pick(body).limit(int(body["watts"]))

    return {
        "supply.disconnect": disconnect,
        "supply.reconnect": reconnect,
        "supply.state": state,
        "supply.limit": limit,
    }


# The registers the hub polls from its DLMS meters (as sim.rigs.dlms_rig does).
DLMS_REGISTERS = (IMPORT_ACTIVE_ENERGY, EXPORT_ACTIVE_ENERGY, IMPORT_ACTIVE_POWER)


def dlms_access(meter: str, link: SimulatedLink, client: DlmsClient, loop: PollLoop) -> DlmsMeterAccess:
    """A simulated DLMS meter as the hub's repairs reach it: its HDLC port (the rig's link and
    client) and, as the fallback path, its TCP wrapper port, polled by ``loop`` on the active one;
    its suite 0 keys in a ring so a re-key can try another."""
    sim = link.meter
    assert hasattr(sim, "interface"), "a DLMS rig's link leads to a DlmsMeterSimulator"
    wrapper = DlmsClient(
        client_sap=client.client_sap,
        server_address=1,
        system_title=client.system_title,
        keys=client.keys,
        transport="wrapper",
    )
    paths = DlmsPaths(
        meter,
        [
            DlmsPath("hdlc", link, client),
            DlmsPath("wrapper", SimulatedLink(sim.interface("wrapper")), wrapper),
        ],
        DLMS_REGISTERS,
    )
    loop.cycle = paths.cycle
    ring: KeyRing[SecurityKeys] = KeyRing()
    if client.keys is not None:
        ring[meter] = client.keys
    return DlmsMeterAccess(paths, loop, ring)


def _smart_plugs(
    spec: HomeSpec, hub: SmartHub, clock: Clock, start: datetime, rigs: list[Rig]
) -> dict[str, str]:
    """Smart plugs on the ZigBee homes' HAN (cost per appliance at the IHD); plug → appliance.
    Their intervals stay in the home: the WAN server is given `WanMeters`, which leaves them out."""
    if spec.kind != "zigbee":
        return {}
    rig, appliances = add_smart_plugs(hub, clock, start, spec.index, RADIO_PERIOD)
    rigs.append(rig)
    return appliances


def _neighbour(hub: SmartHub, clock: Clock, start: datetime, spec: HomeSpec, radio: WMBusPort) -> Rig:
    """The next-door water meter, whose frames this home's receiver hears too. Even with its key
    known (the same installer fitted both) it is not commissioned here, so it must not count."""
    rig = wmbus_rig(
        hub,
        clock,
        start,
        HouseholdProfile(spec.seed + 1),
        radio,
        90000000 + spec.index,
        "water",
        _meter_key(spec, 99),
        mode=5,
        period=RADIO_PERIOD,
    )
    return Rig("wmbus-neighbour", [], [], rig.loops)


def build_rigs(spec: HomeSpec, hub: SmartHub, clock: Clock, start: datetime, period: timedelta) -> list[Rig]:
    """The meters of one home, by its kind; ids are unique across the fleet by the home index."""
    profile = HouseholdProfile(spec.seed, pv_kwp=spec.pv_kwp)
    n = spec.index
    if spec.kind == "dsmr":
        return [dsmr_rig(hub, clock, start, profile, f"E{n:011d}", f"G{n:011d}", period)]
    if spec.kind == "dlms+wmbus":
        radio = hub.attach(WMBusPort("wmbus", KeyRing(), tz=profile.tz))
        assert isinstance(radio, WMBusPort)
        title = b"LGZ" + (0x40000000 + n).to_bytes(5, "big")  # system title: manufacturer + serial
        keys = SecurityKeys(_meter_key(spec, 10), _meter_key(spec, 11))
        return [
            dlms_rig(hub, clock, start, profile, title, keys, POLL_PERIOD),
            wmbus_rig(
                hub,
                clock,
                start,
                profile,
                radio,
                50000000 + n,
                "gas",
                _meter_key(spec, 2),
                mode=5,
                period=RADIO_PERIOD,
            ),
            wmbus_rig(
                hub,
                clock,
                start,
                profile,
                radio,
                60000000 + n,
                "water",
                _meter_key(spec, 3),
                mode=5,
                period=RADIO_PERIOD,
            ),
            _neighbour(hub, clock, start, spec, radio),
        ]
    if spec.kind == "iec+mbus+wmbus":
        radio = hub.attach(WMBusPort("wmbus", KeyRing(), tz=profile.tz))
        assert isinstance(radio, WMBusPort)
        return [
            iec_rig(hub, clock, start, profile, f"{70000000 + n:08d}", POLL_PERIOD),
            mbus_rig(hub, clock, start, profile, 1, 30000000 + n, "water", POLL_PERIOD),
            wmbus_rig(
                hub,
                clock,
                start,
                profile,
                radio,
                40000000 + n,
                "gas",
                _meter_key(spec, 1),
                mode=7,
                period=RADIO_PERIOD,
            ),
        ]
    if spec.kind == "zigbee":
        eui = f"00:0d:6f:00:{n >> 16 & 0xFF:02x}:{n >> 8 & 0xFF:02x}:{n & 0xFF:02x}"
        return [zigbee_rig(hub, clock, start, profile, eui + ":01", eui + ":02", RADIO_PERIOD)]
    raise ValueError(f"unknown home kind {spec.kind!r}")
