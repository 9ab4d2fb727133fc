"""The simulated fleet: homes with meters of every protocol the hub speaks, each with a real Smart
Hub serving 2030.5 over mutual TLS on loopback, built by the same assembly as ``smarthub hub``
(:mod:`smarthub.assembly`) from a configuration per home (:func:`home_config`) whose transports
are simulated (:func:`smarthub.sim.rigs.simulated_connector`).

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
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from smarthub.assembly.config import (
    ConsumerConfig,
    HubConfig,
    MeterConfig,
    ServeConfig,
    SupplyConfig,
    TransportConfig,
    hub_config,
)
from smarthub.assembly.hub import build_hub
from smarthub.clock import Clock, SystemClock, next_aligned
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.han.dlms_control import SupplyControl
from smarthub.han.media import MEDIA, Placement, estimate
from smarthub.han.planning import PlannedMeter
from smarthub.han.poll import PollLoop, SimulatedLink
from smarthub.hub.diagnostics import DiagnosedEvent
from smarthub.hub.supply import supply_commands
from smarthub.meters.dlms.client import DlmsClient
from smarthub.meters.dlms.security import SecurityKeys
from smarthub.model import ObisCode
from smarthub.model.identifiers import make_mpan
from smarthub.model.prepayment import Voucher, voucher_envelope
from smarthub.sim.appliance_profiles import APPLIANCES
from smarthub.sim.consumer import plug_euis, sample_electricity, sample_gas
from smarthub.sim.dlms_meter import DlmsMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.radio import RadioLink
from smarthub.sim.rigs import DLMS_REGISTERS, Rig, dlms_access, simulated_connector
from smarthub.wan.contract.bodies import LinkTest
from smarthub.wan.contract.channel import channel_url
from smarthub.wan.tls import client_context

__all__ = ["DLMS_REGISTERS", "SupplyControl", "dlms_access", "supply_commands"]

log = logging.getLogger(__name__)

STREETS = ("High Street", "Station Road", "Church Lane", "Victoria Road", "Mill Lane", "Park Avenue")
TOWNS = ("Leicester", "Loughborough", "Nottingham", "Derby", "Coventry", "Lincoln")


# The meter mixes of the demo fleet, in turn: every protocol the hub speaks is in use.
KINDS = ("dsmr", "dlms+wmbus", "iec+mbus+wmbus", "zigbee")


CELL_SIZE = 8  # homes behind one simulated WAN link (a cellular cell / concentrator)

# Where a simulated home's radio meters are placed (smarthub.han.media): drawn per home until the
# link keeps this margin over the receiver's sensitivity, so a fleet starts with no weak signal
# (the hub calls a signal weak below sensitivity + 6 dB; 14 dB leaves two shadowing sigmas).
PLACEMENT_MARGIN_DB = 14.0


def zigbee_medium(spec: HomeSpec) -> str:
    """The ZigBee homes' HAN band, alternately 2.4 GHz and 868 MHz (GB's dual-band comms hubs
    carry both; Table 1 compares them)."""
    return "zigbee-2.4" if spec.index // len(KINDS) % 2 == 0 else "zigbee-868"


def han_placements(spec: HomeSpec, meters: list[tuple[str, str]]) -> dict[str, Placement]:
    """Each radio meter's place in the home, from the home's seed: ``meters`` as (id, medium
    key). A meter in a cupboard a few metres and walls from the hub, on its floor or one below."""
    rng = random.Random(f"{spec.seed}/han")
    out: dict[str, Placement] = {}
    for meter_id, medium in meters:
        while True:
            p = Placement(
                round(rng.uniform(2.0, 12.0), 1), walls=rng.randint(0, 3), floors=int(rng.random() < 0.3)
            )
            margin = estimate(MEDIA[medium], p).margin_db
            if margin is not None and margin >= PLACEMENT_MARGIN_DB:
                break
        out[meter_id] = p
    return out


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

    def collector_context(self):
        return client_context(self.collector_pem, self.collector_key, self.ca_pem)


def provision(
    state: Path, specs: list[HomeSpec], now: datetime, *, hub_days: int | None = None
) -> Credentials:
    """Create the GDSC CA (or reuse it), the collector certificate and each hub's certificate
    (valid indefinitely, the 2030.5 profile, or ``hub_days`` days: a chaos run's renewals)."""
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
            # The hub id (lower-cased) as a name too: what the GDSC checks on a hub's channel.
            hosts = ("127.0.0.1", "::1", "localhost", spec.hub_id.lower())
            ca.issue(Role.HUB, spec.hub_id, now, hosts=hosts, days=hub_days).save(hub_dir, "hub")
    return Credentials(ca_dir / "ca.pem", gdsc_dir / "collector.pem", gdsc_dir / "collector.key")


def home_config(
    spec: HomeSpec,
    state: Path,
    sim_start: datetime,
    *,
    smart_plugs: bool = True,
    plugs_everywhere: bool = False,
    poll_every: timedelta | None = None,
    radio_every: timedelta | None = None,
    power_quality: bool = False,
) -> HubConfig:
    """The hub configuration of one simulated home, by its kind: what an installer would write
    into its ``hub.toml``, with simulated transports. Ids are unique across the fleet by the
    home's index; the meters' keys are the manufacturer's (deterministic per seed).
    ``smart_plugs``: the ZigBee homes have the appliance plugs; ``plugs_everywhere``: every
    home has them (ZigBee devices on a ZigBee port of their own, whatever the home's meters)."""
    n = spec.index
    household = {"seed": spec.seed, "pv_kwp": spec.pv_kwp}
    POLL, RADIO = poll_every or POLL_PERIOD, radio_every or RADIO_PERIOD

    def sim(name: str, **options: Any) -> TransportConfig:
        return TransportConfig("simulated", name, options={**household, **options})

    def meter(protocol: str, transport: TransportConfig, meter_id: str, fuel: str, **kw: Any) -> MeterConfig:
        generator = spec.pv_kwp > 0 and fuel == "electricity"
        # Under an accelerated clock a busy event loop makes meters look late by many simulated
        # minutes; an hour of silence is a real fault even at 8,000x speed.
        return MeterConfig(
            protocol,
            transport,
            id=meter_id,
            fuel=fuel,
            generator=generator,
            stale_after=timedelta(hours=1),
            **kw,
        )

    meters: list[MeterConfig] = []
    if spec.kind == "dsmr":
        p1 = sim("p1")
        meters += [meter("dsmr", p1, f"E{n:011d}", "electricity"), meter("dsmr", p1, f"G{n:011d}", "gas")]
    elif spec.kind == "dlms+wmbus":
        title = b"LGZ" + (0x40000000 + n).to_bytes(5, "big")  # system title: manufacturer + serial
        radio = sim(
            "wmbus",
            mode=5,
            neighbour={"seed": spec.seed + 1, "ident": 90000000 + n, "key": _meter_key(spec, 99).hex()},
        )
        meters += [
            meter(
                "dlms",
                sim("dlms"),
                title.hex().upper(),
                "electricity",
                mode="poll",
                key=_meter_key(spec, 10),
                authentication_key=_meter_key(spec, 11),
                poll_every=POLL,
                breaker=True,
            ),
            meter("wmbus", radio, f"LSE{50000000 + n:08d}", "gas", key=_meter_key(spec, 2), poll_every=RADIO),
            meter(
                "wmbus", radio, f"LSE{60000000 + n:08d}", "water", key=_meter_key(spec, 3), poll_every=RADIO
            ),
        ]
    elif spec.kind == "iec+mbus+wmbus":
        meters += [
            meter(
                "iec62056-21", sim("iec"), f"{70000000 + n:08d}", "electricity", mode="poll", poll_every=POLL
            ),
            meter(
                "mbus",
                sim("mbus"),
                f"KAM{30000000 + n:08d}",
                "water",
                mode="poll",
                address=1,
                poll_every=POLL,
            ),
            meter(
                "wmbus",
                sim("wmbus", mode=7),
                f"LSE{40000000 + n:08d}",
                "gas",
                key=_meter_key(spec, 1),
                poll_every=RADIO,
            ),
        ]
    elif spec.kind == "zigbee":
        eui = f"00:0d:6f:00:{n >> 16 & 0xFF:02x}:{n >> 8 & 0xFF:02x}:{n & 0xFF:02x}"
        zigbee = sim("zigbee")
        meters += [
            meter("zigbee", zigbee, eui + ":01", "electricity", poll_every=RADIO),
            meter("zigbee", zigbee, eui + ":02", "gas", poll_every=RADIO),
        ]
    else:
        raise ValueError(f"unknown home kind {spec.kind!r}")
    if smart_plugs and (spec.kind == "zigbee" or plugs_everywhere):
        # Smart plugs on the HAN (cost per appliance at the IHD); sub-meters, kept off the WAN
        # unless the occupant consents to appliance data (hub.privacy, issue 25).
        plugs = sim("plugs")
        meters += [
            MeterConfig("zigbee", plugs, id=eui_, fuel="electricity", appliance=a.name, poll_every=RADIO)
            for eui_, a in zip(plug_euis(n), APPLIANCES, strict=True)
        ]
    # Supplies from the home's meters (first electricity and gas meter), the sample tariffs of
    # two suppliers, prepayment of electricity where a meter has a breaker (DLMS).
    effective = sim_start.date().replace(day=1)
    firsts: dict[str, str] = {}
    for m in meters:
        if m.fuel in ("electricity", "gas") and m.fuel not in firsts and not m.appliance and m.id:
            firsts[m.fuel] = m.id
    tariffs = {"electricity": sample_electricity(effective), "gas": sample_gas(effective)}
    suppliers = {"electricity": "Northern Power", "gas": "Shire Gas"}
    carbon = {"electricity": "180", "gas": "183"}  # g CO2e/kWh: grid average, natural gas
    supplies = tuple(
        SupplyConfig(f, meter_id, suppliers[f], tariffs[f].to_json(), carbon[f])
        for f, meter_id in sorted(firsts.items())
    )
    prepaid = ("electricity",) if any(m.breaker for m in meters) else ()
    hub_dir = state / "hubs" / spec.hub_id
    probation: dict[str, Any] = {"firmware_probation": max(timedelta(hours=1), 2 * max(POLL, RADIO))}
    return hub_config(
        spec.hub_id,
        hub_dir,
        ca=state / "ca" / "ca.pem",
        meters=tuple(meters),
        wan=ServeConfig("127.0.0.1", 0),
        consumer=ConsumerConfig(supplies, prepaid),
        # The simulated households opted in to half-hourly reads for settlement (the GB default
        # without opt-in would be monthly).
        gdsc_granularity="half-hourly",
        power_quality=power_quality,
        # A new firmware is kept if frames still arrive in its probation: an hour, or two of
        # the slowest meter's periods (a healthy version is never judged on a quiet spell, nor
        # on the few wall milliseconds a minute is at thousands of times real time).
        **probation,
    )


class SimulatedHome:
    """One home of the fleet: its hub built by the same assembly as ``smarthub hub`` from the
    home's configuration (:func:`home_config`), its meters simulated (``smarthub.sim.rigs``)."""

    def __init__(
        self,
        spec: HomeSpec,
        state: Path,
        clock: Clock,
        sim_start: datetime,
        telegram_period: timedelta,
        *,
        smart_plugs: bool = True,
        plugs_everywhere: bool = False,
        cert_clock: Clock | None = None,
        poll_every: timedelta | None = None,
        radio_every: timedelta | None = None,
        config: HubConfig | None = None,
        power_quality: bool = False,
    ) -> None:
        """``cert_clock``: what certificates and CRLs are checked against (default wall time, as
        OpenSSL does; a test running the GDSC's CRL dates on the simulated clock passes that).
        ``config``: the hub's configuration, else the one of the home's kind (:func:`home_config`)."""
        cert_clock = cert_clock or SystemClock()
        self.spec = spec
        self.dir = state / "hubs" / spec.hub_id
        self.clock = clock
        self.config = config or home_config(
            spec,
            state,
            sim_start,
            smart_plugs=smart_plugs,
            plugs_everywhere=plugs_everywhere,
            poll_every=poll_every,
            radio_every=radio_every,
            power_quality=power_quality,
        )
        # The home's radio meters (not the smart plugs), placed by its seed; their frames travel
        # through the link model of their medium (smarthub.sim.radio), so a meter's weak signal
        # and missing frames come from where it is.
        self.han_media = {
            str(m.id): zigbee_medium(spec) if m.protocol == "zigbee" else "wmbus-868"
            for m in self.config.meters
            if m.protocol in ("zigbee", "wmbus") and not m.appliance and m.id
        }
        rng = random.Random(f"{spec.seed}/radio")
        self.radio = {
            meter: RadioLink(MEDIA[self.han_media[meter]], p, random.Random(rng.randrange(2**32)))
            for meter, p in han_placements(spec, sorted(self.han_media.items())).items()
        }
        # The household whose demand the home's meters register (one per hub and seed).
        self.households: dict[tuple[str, int, float], HouseholdProfile] = {}
        self.assembly = a = build_hub(
            self.config,
            clock=clock,
            cert_clock=cert_clock,
            connectors={
                "simulated": simulated_connector(
                    clock, sim_start, telegram_period, self.radio, households=self.households
                )
            },
        )
        self.history, self.registry, self.hub = a.history, a.registry, a.hub
        self.repairs, self.diagnostics = a.repairs, a.diagnostics
        self.management, self.crls, self.network = a.management, a.crls, a.network
        self.consent, self.privacy, self.firmware = a.consent, a.privacy, a.firmware
        self.server, self.certificate, self.lfdi = a.server, a.certificate, a.lfdi
        self.consumer = a.consumer
        self.rigs: list[Rig] = a.connections
        self._supplies = a.supplies
        self._loops_by_meter = a.loops_by_meter
        self.appliances = {m.id: m.appliance for m in self.config.meters if m.appliance and m.id}
        self.swaps: list[MeterSwap] = []
        self.cert_clock = cert_clock
        if self.consumer.ledger is not None:
            self._open_prepayment(state)
        self.url = ""

    def _open_prepayment(self, state: Path) -> None:
        """The account opened with a £20 voucher signed by the GDSC operator, as a supplier would at
        the change to prepayment (credited once: its id is fixed per hub)."""
        operator_pem, operator_key = state / "gdsc" / "operator.pem", state / "gdsc" / "operator.key"
        if not operator_key.exists():
            return
        opening = Voucher(
            f"OPEN-{self.spec.hub_id}", self.spec.hub_id, "electricity", Decimal("20.00"), self.clock.now()
        )
        key = serialization.load_pem_private_key(operator_key.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        signature = key.sign(opening.canonical(), ec.ECDSA(hashes.SHA256()))
        envelope = voucher_envelope(opening, signature, operator_pem.read_bytes())
        self.consumer.ledger.top_up(envelope, self.cert_clock.now())

    async def _link_test(self, body: LinkTest) -> dict[str, Any]:
        return await self.assembly.link_test(body)

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

    def short_of(self, due: Mapping[tuple[str, ObisCode], int]) -> set[str]:
        """The meters with a channel whose half-hours up to its ``due`` boundary (epoch seconds)
        the hub has not all built yet: the reports that would close them were lost on the air,
        or have not come yet."""
        built = self.hub.interval_builder.anchor
        return {meter for (meter, obis), boundary in due.items() if (built(meter, obis) or 0) < boundary}

    async def drain(self, due: Mapping[tuple[str, ObisCode], int], until: datetime) -> set[str]:
        """Keep the meters :meth:`short_of` ``due`` reporting (or being polled), at their own
        period in life (:data:`RADIO_PERIOD`, :data:`POLL_PERIOD`: a long run samples every half
        hour only to save CPU), until the hub has built every due half-hour or the clock passes
        ``until``. A ZigBee SE summation is cumulative: the next report that gets through closes
        every half-hour a lost one left open, as it would minutes later in life. Returns the meters
        still short then (their half-hours are genuinely missing)."""
        short = self.short_of(due)
        loops = {id(loop): (meter, loop) for meter in short for loop in self._loops_by_meter.get(meter, [])}

        async def step(meter: str, loop: PollLoop) -> None:
            loop.period = min(loop.period, RADIO_PERIOD if meter in self.radio else POLL_PERIOD)
            if loop.next_time is None:
                return  # never started: nothing of it to close
            if loop.next_time < self.clock.now():  # started late: from now, not a backlog
                loop.next_time = next_aligned(self.clock.now(), loop.period)
            while self.short_of(due) and loop.next_time <= until:
                await loop.run(until=loop.next_time)  # one scheduled cycle

        await asyncio.gather(*(step(meter, loop) for meter, loop in loops.values()))
        return self.short_of(due)

    async def maintain(self, until: datetime | None, every: timedelta = timedelta(minutes=5)) -> None:
        """The hub's housekeeping (the assembly's): diagnoses, repairs, retention."""
        await self.assembly.maintain(until, every)

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

    async def start_server(self, ca_pem: Path | None = None, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve 2030.5 on ``host:port`` (the WAN part's start; again after a stop, a restart)."""
        self.url = await self.assembly.start_wan(host, port)
        self.assembly.parts["wan"].started = True
        return self.url

    async def start_channel(self, host: str, port: int) -> str:
        """Listen on no port; keep a channel open to the GDSC's endpoint instead (a hub behind a
        NAT, :mod:`smarthub.wan.contract.channel`); registered as ``channel://<hub id>``."""
        await self.assembly.start_channel(host, port)
        self.assembly.parts["wan"].started = True
        self.url = channel_url(self.spec.hub_id)
        return self.url

    async def stop(self) -> None:
        await self.assembly.stop()

    def han_layout(self) -> list[PlannedMeter]:
        """The home's radio meters where they are now, for the HAN planning report."""
        return [PlannedMeter(meter, link.placement) for meter, link in sorted(self.radio.items())]

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
            # The certificate the GDSC CA issued it: its alert key (last gasps) at the GDSC, and
            # the commissioning the GDSC renews.
            "certificate": (self.dir / "hub.pem").read_text(),
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
        poll_every: timedelta | None = None,
        radio_every: timedelta | None = None,
        configs: Mapping[str, HubConfig] | None = None,
        power_quality: bool = False,
        plugs_everywhere: bool = False,
    ) -> None:
        """``poll_every``/``radio_every``: how often polled meters are read and radio meters send
        (default :data:`POLL_PERIOD`, :data:`RADIO_PERIOD`; a divisor of 30 minutes). ``configs``:
        hubs' configurations by hub id, in place of their kind's (an apartment block's hubs).
        ``plugs_everywhere``: every home has the smart plugs, not only the ZigBee homes."""
        self.state = state
        self.specs = specs
        self.homes = [
            SimulatedHome(
                s,
                state,
                clock,
                sim_start,
                telegram_period,
                cert_clock=cert_clock,
                poll_every=poll_every,
                radio_every=radio_every,
                config=(configs or {}).get(s.hub_id),
                power_quality=power_quality,
                plugs_everywhere=plugs_everywhere,
            )
            for s in specs
        ]
        self._tasks: list[asyncio.Task[None]] = []

    async def start_servers(
        self,
        ca_pem: Path,
        channel: tuple[str, int] | None = None,
        channel_every: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        """Each hub serves 2030.5 on a port of its own on ``host`` (``::1``: IPv6), except every
        ``channel_every``-th (the 2nd, 4th, … with 2), which listens on no port and keeps a
        channel open to ``channel``."""
        for i, home in enumerate(self.homes):
            if channel is not None and channel_every > 0 and i % channel_every == channel_every - 1:
                await home.start_channel(*channel)
            else:
                await home.start_server(ca_pem, host)

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

    def clock_rebased(self) -> None:
        """The simulated clock was set back to the run's start (``AcceleratedClock.rebase``): the
        channel hubs' back-off waits, dated on the clock before, end now instead of lasting as
        long as the setback."""
        for home in self.homes:
            for site in home.assembly.server.channels:
                site.reconnect_now()

    async def start_meters(self, until: datetime | None = None) -> None:
        """Start every home's meters and housekeeping (the assembly's parts) until ``until``."""
        for h in self.homes:
            await h.assembly.start(("meters", "housekeeping"), until=until)
        self._tasks = [t for h in self.homes for t in h.assembly.tasks()]

    async def meters_done(self) -> bool:
        """Wait for the meter loops started with an end time; True if they had already finished."""
        already = all(t.done() for t in self._tasks)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return already

    async def halt(self) -> None:
        """End every home's loops at once (meters, housekeeping); the hubs still answer."""
        await asyncio.gather(*(h.assembly.halt() for h in self.homes))

    async def stop(self) -> None:
        await self.halt()
        for h in self.homes:
            await h.stop()

    async def drain(
        self, due: Mapping[tuple[str, str, ObisCode], int], until: datetime
    ) -> set[tuple[str, str]]:
        """Every home's :meth:`SimulatedHome.drain` of the channels in ``due`` ((hub, meter,
        channel) -> the boundary its half-hours are due to), at once; the (hub, meter) still short."""
        by_hub: dict[str, dict[tuple[str, ObisCode], int]] = {}
        for (hub, meter, obis), boundary in due.items():
            by_hub.setdefault(hub, {})[(meter, obis)] = boundary
        homes = [h for h in self.homes if h.spec.hub_id in by_hub]
        left = await asyncio.gather(*(h.drain(by_hub[h.spec.hub_id], until) for h in homes))
        return {(h.spec.hub_id, meter) for h, meters in zip(homes, left, strict=True) for meter in meters}

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
