"""A hub serving everything it can over 2030.5, for the interop tests: a real hub (history,
data mirror, privacy filter, management, consumer side) fed a real DSMR telegram and
half-hourly readings, with diagnosed events, supplier messages, tariffs and live power; its
WAN server on loopback with mutual TLS; and a certificate per role that can read it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from hub.ihd_home import ELEC, GAS, IhdHome, make_home, pki

from smarthub.gdsc.pki import CertificateAuthority, Role
from smarthub.han.p1 import P1Port
from smarthub.hub.diagnostics import DiagnosisCode, DiagnosticsLog
from smarthub.hub.privacy import Granularity, HubPrivacy
from smarthub.hub.submeters import WanEvents, WanMeters
from smarthub.sim.dsmr_meter import DsmrMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.wan.server.ihd_resources import IhdResources
from smarthub.wan.server.resources import HubWanServer

HUB_ID = "HUB000001"
DSMR_METER = "4530303434303037313331353830373134"  # a DSMR 5 equipment id (34 digits, as KAIFA sends)


@dataclass(frozen=True)
class Client:
    """A certificate of one role, and where a client holding it starts (its /dcap)."""

    role: Role
    name: str
    start: str = "/dcap"


# Every role that reads this hub, and what it reads as.
CLIENTS = {
    "collector": Client(Role.COLLECTOR, "collector"),  # the GDSC's own collection: half-hourly
    "collector-for-registers": Client(Role.COLLECTOR, "collector", "/dcap?recipient=tariff-supplier"),
    "party-daily": Client(Role.PARTY, "energy-app.example"),  # a third party with daily consent
    "party-registers": Client(Role.PARTY, "tariff-supplier"),  # tariff-register totals only
    "ihd": Client(Role.IHD, f"{HUB_ID}/kitchen"),  # this home's display
}
# Roles that hold a GDSC certificate but read nothing here.
REFUSED = {"installer": Client(Role.INSTALLER, "Ann Installer"), "operator": Client(Role.OPERATOR, "ops")}


@dataclass
class FullHub:
    home: IhdHome
    server: HubWanServer
    url: str
    dir: Path
    ca: CertificateAuthority

    def files(self, who: str) -> tuple[Path, Path, Path]:
        """(certificate, key, CA) of the client ``who``."""
        return self.dir / f"{who}.pem", self.dir / f"{who}.key", self.dir / "ca" / "ca.pem"


@contextlib.asynccontextmanager
async def full_hub(tmp: Path, wall_now: datetime) -> AsyncIterator[FullHub]:
    from smarthub.wan.tls import server_context

    start = datetime(2026, 11, 22, tzinfo=wall_now.tzinfo)
    now = start + timedelta(hours=37)  # 13:00 the next day: a complete day and a half
    ca, operator = pki(start)
    home = make_home(tmp / "hub", start, prepayment=False, ca=(ca, operator))
    home.run(start, now)
    home.power(640, now)
    # A real DSMR telegram on the P1 port: its meter's tariff registers reach the data mirror.
    dsmr = DsmrMeterSimulator(DSMR_METER, None, HouseholdProfile(5), now - timedelta(minutes=10))
    p1 = home.hub.attach(P1Port("p1"))
    home.hub.accept(p1.receive(dsmr.telegram_at(now)), now, port="p1")
    for i in range(7):  # supplier messages, one more than a page of five
        body = {"text": f"Message {i}", "priority": "normal", "start": now.isoformat(), "duration_s": 3600}
        assert (await home.command("message.display", body)).status == "applied"
    log = DiagnosticsLog(tmp / "events.sqlite")
    for i, device in enumerate((ELEC, GAS, ELEC, GAS, ELEC, GAS, ELEC)):
        log.record(list(DiagnosisCode)[i], device, "meter", now - timedelta(minutes=i), "seen", {"n": i})
    home.consent.set("gdsc", Granularity.HALF_HOURLY, now)
    home.consent.set("energy-app.example", Granularity.DAILY, now)
    home.consent.set("tariff-supplier", Granularity.TARIFF_REGISTERS, now)
    ca.save(tmp / "ca")
    hub_cert = ca.issue(Role.HUB, HUB_ID, wall_now, hosts=("127.0.0.1",))
    hub_cert.save(tmp, "hub")
    for who, client in {**CLIENTS, **REFUSED}.items():
        ca.issue(client.role, client.name, wall_now).save(tmp, who)
    appliances = home.side.consumption.appliances
    server = HubWanServer(
        HUB_ID,
        hub_cert.lfdi,
        WanMeters(home.hub, lambda meter: meter in appliances),
        lambda: int(home.clock.now().timestamp()),
        management=home.management,
        privacy=HubPrivacy(home.consent, home.hub.history, mirror=home.hub.mirror),
        events=WanEvents(log, lambda meter: meter in appliances),
    )
    server.limiter.rate, server.limiter.burst = 1e9, 10**9  # a crawl pages lists one item at a time
    IhdResources(
        server, home.side.consumption, home.side.store, home.clock.now, live=home.side.ihd.live
    ).install()
    port = await server.start(
        "127.0.0.1", 0, server_context(tmp / "hub.pem", tmp / "hub.key", tmp / "ca" / "ca.pem")
    )
    try:
        yield FullHub(home, server, f"https://127.0.0.1:{port}", tmp, ca)
    finally:
        await server.stop()
        log.disconnect()
        await home.close()


__all__ = ["CLIENTS", "DSMR_METER", "HUB_ID", "REFUSED", "Client", "FullHub", "full_hub"]
