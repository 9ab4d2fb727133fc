"""The simulated fleet: homes with a DSMR meter (electricity + gas on its M-Bus channel),
each with a real Smart Hub serving 2030.5 over mutual TLS on loopback.

Provisioning stands in for the installer and the GDSC's commissioning: the GDSC CA issues
each hub's server certificate and the collector's client certificate; the fleet writes a
manifest (hub URLs, LFDIs, premises and meters) that the GDSC registers from.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509

from smarthub.clock import Clock
from smarthub.gdsc.pki import CertificateAuthority, Role, lfdi
from smarthub.han.p1 import P1Port
from smarthub.han.transport import SimulatedP1Transport
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.model.identifiers import make_mpan
from smarthub.model.obis import EXPORT_ACTIVE_ENERGY, GAS_VOLUME, IMPORT_ACTIVE_ENERGY
from smarthub.sim.dsmr_meter import DsmrMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.wan.server import HubWanServer
from smarthub.wan.tls import client_context, server_context

STREETS = ("High Street", "Station Road", "Church Lane", "Victoria Road", "Mill Lane", "Park Avenue")
TOWNS = ("Leicester", "Loughborough", "Nottingham", "Derby", "Coventry", "Lincoln")

# The interval channels every simulated home produces (import/export electricity, gas).
CHANNELS_PER_HOME = (IMPORT_ACTIVE_ENERGY, EXPORT_ACTIVE_ENERGY, GAS_VOLUME)


@dataclass(frozen=True)
class HomeSpec:
    hub_id: str
    premises_id: str
    address: str
    mpan: str
    mprn: str
    elec_meter: str
    gas_meter: str
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
                elec_meter=f"E{seed % 1000:03d}{i:08d}",
                gas_meter=f"G{seed % 1000:03d}{i:08d}",
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
    for spec in specs:
        hub_dir = state / "hubs" / spec.hub_id
        hub_dir.mkdir(parents=True, exist_ok=True)
        if not (hub_dir / "hub.pem").exists():
            ca.issue(Role.HUB, spec.hub_id, now, hosts=("127.0.0.1", "localhost")).save(hub_dir, "hub")
    return Credentials(ca_dir / "ca.pem", gdsc_dir / "collector.pem", gdsc_dir / "collector.key")


class SimulatedHome:
    def __init__(
        self, spec: HomeSpec, state: Path, clock: Clock, sim_start: datetime, telegram_period: timedelta
    ) -> None:
        self.spec = spec
        self.dir = state / "hubs" / spec.hub_id
        self.clock = clock
        self.history = HistoryStore(self.dir / "history.sqlite")
        self.hub = SmartHub(spec.hub_id, self.history)
        self.port = self.hub.attach(P1Port("p1"))
        cert = x509.load_pem_x509_certificate((self.dir / "hub.pem").read_bytes())
        self.lfdi = lfdi(cert)
        self.meter = DsmrMeterSimulator(
            spec.elec_meter, spec.gas_meter, HouseholdProfile(spec.seed, pv_kwp=spec.pv_kwp), start=sim_start
        )
        self.transport = SimulatedP1Transport(
            self.meter,
            clock,
            lambda data: self.hub.receive("p1", data),
            period=telegram_period,
            start=sim_start,
        )
        self.server = HubWanServer(spec.hub_id, self.lfdi, self.hub, lambda: int(clock.now().timestamp()))
        self.url = ""

    async def start_server(self, ca_pem: Path, host: str = "127.0.0.1", port: int = 0) -> str:
        ctx = server_context(self.dir / "hub.pem", self.dir / "hub.key", ca_pem)
        bound = await self.server.start(host, port, ctx)
        self.url = f"https://{host}:{bound}"
        return self.url

    async def stop(self) -> None:
        await self.server.stop()
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
            "meters": [[s.elec_meter, "electricity"], [s.gas_meter, "gas"]],
        }


class Fleet:
    def __init__(
        self,
        state: Path,
        specs: list[HomeSpec],
        clock: Clock,
        sim_start: datetime,
        telegram_period: timedelta = timedelta(seconds=60),
    ) -> None:
        self.state = state
        self.specs = specs
        self.homes = [SimulatedHome(s, state, clock, sim_start, telegram_period) for s in specs]
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
        self._tasks = [asyncio.create_task(h.transport.run(until)) for h in self.homes]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for h in self.homes:
            await h.stop()

    def frame_errors(self) -> int:
        return sum(h.hub.stats.frame_errors for h in self.homes)
