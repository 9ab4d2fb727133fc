"""A home for the IHD tests: a real hub (history, mirror, management interface, consent store)
with its consumer side, fed real readings by the test and real ZigBee frames from simulated
smart plugs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from smarthub.clock import ManualClock, SystemClock
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.pki import CertificateAuthority, IssuedCertificate, Role
from smarthub.han.zigbee_port import ZigbeePort
from smarthub.hub.consumption import Supply
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.hub.ihd.app import COOKIE, CSRF_HEADER, csrf_token
from smarthub.hub.ihd.home import ConsumerSide, attach_consumer_side
from smarthub.hub.management import CommandResult, ManagementInterface
from smarthub.hub.prepayment_bridge import Breaker
from smarthub.hub.privacy import ConsentStore, HubPrivacy
from smarthub.hub.tariffs import CostAccumulator
from smarthub.model import Reading, Unit
from smarthub.model.obis import GAS_VOLUME, IMPORT_ACTIVE_ENERGY, IMPORT_ACTIVE_POWER
from smarthub.model.prepayment import Voucher, voucher_envelope
from smarthub.model.tariff_carbon import FixedIntensity
from smarthub.sim.appliance_profiles import APPLIANCES, ApplianceProfile
from smarthub.sim.consumer import sample_electricity, sample_gas
from smarthub.sim.zigbee_meter import ZigbeeMeterSimulator

ELEC, GAS = "E0000000001", "G0000000001"
EVERY_DAY = {d: "all" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


# The simulated fleet's sample tariffs: the display under test shows what the demo homes pay.
electricity_tariff = sample_electricity
gas_tariff = sample_gas


@dataclass
class Plug:
    eui: str
    meter: ZigbeeMeterSimulator
    profile: ApplianceProfile


@dataclass
class IhdHome:
    dir: Path
    clock: ManualClock
    hub: SmartHub
    side: ConsumerSide
    consent: ConsentStore
    privacy: HubPrivacy
    management: ManagementInterface
    signer: CommandSigner
    operator: IssuedCertificate
    port: ZigbeePort
    ca: CertificateAuthority
    plugs: list[Plug] = field(default_factory=list)
    elec_wh: int = 5_000_000
    gas_l: int = 1_000_000
    vouchers: int = 0
    last_voucher: dict[str, str] | None = None

    def register(self, t: datetime, elec_w: int, gas_l_per_h: int = 0) -> None:
        """Advance the meters to ``t`` at a constant power since the last reading and feed the hub."""
        self.clock.set(max(self.clock.now(), t))
        self.hub.ingest(
            [
                Reading(ELEC, IMPORT_ACTIVE_ENERGY, Decimal(self.elec_wh), Unit.WH, t),
                Reading(GAS, GAS_VOLUME, Decimal(self.gas_l) / 1000, Unit.M3, t),
            ]
        )
        for plug in self.plugs:
            self.hub.accept(self.port.receive_frame(plug.eui, plug.meter.report_at(t)), t, port="zigbee")

    def run(self, start: datetime, end: datetime, elec_w: int = 800, gas_l_per_h: int = 250) -> None:
        """Half-hourly readings from ``start`` to ``end`` (inclusive) at constant rates."""
        t = start
        while t <= end:
            self.register(t, elec_w, gas_l_per_h)
            self.elec_wh += elec_w // 2
            self.gas_l += gas_l_per_h // 2
            t += timedelta(minutes=30)

    def power(self, watts: int, t: datetime) -> None:
        """A new instantaneous power reading, as the meter's P1/ZigBee report brings it."""
        self.hub.ingest([Reading(ELEC, IMPORT_ACTIVE_POWER, Decimal(watts), Unit.W, t)])

    async def command(self, ctype: str, body: dict[str, Any]) -> CommandResult:
        signed = self.signer.command(self.hub.hub_id, ctype, body, datetime.now(UTC))
        return await self.management.handle(signed.envelope())

    async def top_up(self, amount: str, fuel: str = "electricity") -> CommandResult:
        """A signed voucher, sent as the GDSC sends it: a signed ``prepayment.topup`` command."""
        self.vouchers += 1
        v = Voucher(f"VT{self.vouchers:08d}", self.hub.hub_id, fuel, Decimal(amount), self.clock.now())
        assert self.operator.private_key is not None
        sig = self.operator.private_key.sign(v.canonical(), ec.ECDSA(hashes.SHA256()))
        self.last_voucher = voucher_envelope(v, sig, self.operator.cert_pem)
        return await self.command("prepayment.topup", self.last_voucher)

    async def close(self) -> None:
        await self.side.stop()
        self.management.close()
        self.consent.close()
        self.hub.history.close()


async def pair_screen(
    s: aiohttp.ClientSession, url: str, code: str, name: str = "", **kwargs: Any
) -> aiohttp.ClientResponse:
    """Pair through the form as a browser does: load it (its double-submit token and cookie),
    then post the code. On success the session holds the screen's cookie and, as a default
    header, its CSRF token (a page's forms carry it as a hidden field)."""
    form = await (await s.get(url + "/pair")).text()
    found = re.search(r'name="csrf" value="([^"]+)"', form)
    assert found is not None, form
    r = await s.post(url + "/pair", data={"code": code, "csrf": found.group(1), "name": name}, **kwargs)
    cookie = next((c for c in s.cookie_jar if c.key == COOKIE), None)
    if cookie is not None:
        s.headers[CSRF_HEADER] = csrf_token(cookie.value)
    return r


async def paired_session(url: str, code: str, name: str = "") -> aiohttp.ClientSession:
    s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    r = await pair_screen(s, url, code, name)
    assert r.url.path == "/", r.url
    return s


def pki(start: datetime) -> tuple[CertificateAuthority, IssuedCertificate]:
    # Valid at wall time (the management interface checks commands against it, like the fleet's
    # hubs) and at the simulated time (the ledger checks a voucher's signer when it arrives).
    issued = min(datetime.now(UTC), start) - timedelta(days=30)
    ca = CertificateAuthority.create("GDSC CA", issued)
    return ca, ca.issue(Role.OPERATOR, "operator", issued)


def make_home(
    tmp: Path,
    start: datetime,
    *,
    prepayment: bool = True,
    plugs: tuple[ApplianceProfile, ...] = APPLIANCES[:3],
    ca: tuple[CertificateAuthority, IssuedCertificate] | None = None,
    breakers: dict[str, Breaker] | None = None,
    history: HistoryStore | None = None,
) -> IhdHome:
    tmp.mkdir(parents=True, exist_ok=True)
    ca_, operator = ca or pki(start)
    clock = ManualClock(start)
    history = history or HistoryStore(tmp / "history.sqlite")
    hub = SmartHub("HUB000001", history, clock=clock)
    management = ManagementInterface("HUB000001", ca_.certificate, SystemClock(), tmp / "management.sqlite")
    consent = ConsentStore(tmp / "consent.sqlite")
    counter = iter(range(1, 10**6))
    assert operator.private_key is not None
    signer = CommandSigner(operator.private_key, operator.cert_pem, lambda hub: next(counter))
    day = start.date() - timedelta(days=40)
    supplies = [
        Supply(
            "electricity",
            ELEC,
            "Northern Power",
            CostAccumulator(electricity_tariff(day), FixedIntensity(g_per_kwh=Decimal(180))),
        ),
        Supply(
            "gas", GAS, "Shire Gas", CostAccumulator(gas_tariff(day), FixedIntensity(g_per_kwh=Decimal(183)))
        ),
    ]
    side = attach_consumer_side(
        hub,
        tmp / "ihd",
        clock,
        supplies,
        management=management,
        consent=consent,
        recipients=["gdsc", "energy-app.example"],
        prepayment=prepayment,
        ca_cert=ca_.certificate,
        breakers=breakers,
    )
    port = ZigbeePort("zigbee")
    hub.attach(port)
    home = IhdHome(
        tmp, clock, hub, side, consent, HubPrivacy(consent, history), management, signer, operator, port, ca_
    )
    for i, profile in enumerate(plugs):
        eui = f"00:0d:6f:00:00:00:{i + 1:02x}:10"
        meter = ZigbeeMeterSimulator(eui, "electric", profile, start=start, initial_wh=0)  # type: ignore[arg-type]
        hub.accept(port.receive_frame(eui, meter.formatting_report()), start, port="zigbee")
        side.consumption.set_appliance(meter.eui64, profile.name)
        home.plugs.append(Plug(meter.eui64, meter, profile))
    return home
