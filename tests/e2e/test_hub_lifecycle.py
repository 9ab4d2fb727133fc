"""A hub's life end to end: installer commissioning, revocation, the CRL command, replacement.

Real Smart Hubs serve IEEE 2030.5 over mutual TLS on loopback, a real collector pulls them into
the real store (SQLite and PostgreSQL), the real CA issues and revokes, and the CRL reaches the
hubs as a signed management command over the same channel.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from smarthub.clock import SystemClock
from smarthub.gdsc.collector import Collector
from smarthub.gdsc.commands import CommandSigner
from smarthub.gdsc.commissioning import CommissioningRefused, CommissioningRequest, sign_request
from smarthub.gdsc.courier import CommandCourier
from smarthub.gdsc.hub_lifecycle import HubLifecycle, hub_commissioning
from smarthub.gdsc.pki import CertificateAuthority, IssuedCertificate, Role
from smarthub.gdsc.plan import PullPlan, pull_plan
from smarthub.gdsc.store import HubRecord, Store, hubs, meters
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.hub.management import CrlStore, ManagementInterface
from smarthub.model import ObisCode, Reading, Unit
from smarthub.wan import httpd as web
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import apply_crl, client_context, server_context

IMPORT = ObisCode.parse("1-0:1.8.0")
DAY0 = datetime(2026, 3, 2, tzinfo=UTC)
STEPS_PER_DAY = 24 * 12  # a register reading every 5 minutes
PREMISES = "P-0001"


def feed(hub: SmartHub, first_step: int, last_step: int) -> None:
    """Register readings of meter E1 at DAY0 + 5 min * step, for steps first..last (inclusive)."""
    for i in range(first_step, last_step + 1):
        t = DAY0 + timedelta(minutes=5 * i)
        hub.ingest([Reading("E1", IMPORT, Decimal(1_000_000 + 25 * i + i % 7) / 1000, Unit.KWH, t)])


class GatedServer(HubWanServer):
    """Holds the bulk readings response until the test lets it go: a pull caught in flight."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.gate: asyncio.Event | None = None
        self.reached = asyncio.Event()

    async def mirror_usage_points(self, request: web.Request) -> web.Response:
        if self.gate is not None:
            self.reached.set()
            await self.gate.wait()
        return await super().mirror_usage_points(request)


@dataclass
class RunningHub:
    hub_id: str
    hub: SmartHub
    server: GatedServer
    management: ManagementInterface
    crls: CrlStore
    history: HistoryStore
    port: int


@dataclass
class World:
    dir: Path
    ca: CertificateAuthority
    store: Store
    plan: PullPlan
    lifecycle: HubLifecycle
    installer: IssuedCertificate
    now: datetime
    running: list[RunningHub] = field(default_factory=list)

    def collector_ctx(self, stem: str = "collector"):  # type: ignore[no-untyped-def]
        return client_context(self.dir / f"{stem}.pem", self.dir / f"{stem}.key", self.dir / "ca" / "ca.pem")

    def request(
        self, hub_id: str, *, replaces: str | None = None, installer: IssuedCertificate | None = None
    ) -> bytes:
        who = installer or self.installer
        assert who.private_key is not None
        req = CommissioningRequest(
            hub_id=hub_id,
            premises_id=PREMISES,
            url="https://127.0.0.1:1",  # the hub's port is known once it listens (set below)
            hosts=("127.0.0.1",),
            meters_by_fuel=(("E1", "electricity"),),
            issued=datetime.now(UTC),
            address="1 Test Street",
            replaces=replaces,
        )
        return sign_request(req, who.private_key, who.cert_pem)

    async def start_hub(self, hub_id: str, issued: IssuedCertificate, first: int, last: int) -> RunningHub:
        d = self.dir / hub_id
        issued.save(d, "hub")
        history = HistoryStore(d / "history.sqlite")
        hub = SmartHub(hub_id, history)
        feed(hub, first, last)
        clock = SystemClock()
        management = ManagementInterface(hub_id, self.ca.certificate, clock, d / "management.sqlite")
        ctx = server_context(d / "hub.pem", d / "hub.key", self.dir / "ca" / "ca.pem")
        crls = CrlStore(d / "crl.pem", self.ca.certificate, clock, [lambda _crl, path: apply_crl(ctx, path)])
        management.use_crl_store(crls)
        server = GatedServer(
            hub_id, issued.lfdi, hub, lambda: int(DAY0.timestamp()), management=management, crls=crls
        )
        port = await server.start("127.0.0.1", 0, ctx)
        with self.store.engine.begin() as conn:  # the address the installer's tool would report
            conn.execute(hubs.update().where(hubs.c.hub_id == hub_id).values(url=f"https://127.0.0.1:{port}"))
        running = RunningHub(hub_id, hub, server, management, crls, history, port)
        self.running.append(running)
        return running

    def record(self, hub_id: str) -> HubRecord:
        with self.store.engine.connect() as conn:
            r = conn.execute(select(hubs).where(hubs.c.hub_id == hub_id)).one()
        return HubRecord(r.hub_id, r.premises_id, r.url, r.lfdi, r.status, r.wan_link)


@pytest.fixture
def world(tmp_path: Path, db_url: str, wall_now: datetime) -> Iterator[World]:
    ca = CertificateAuthority.create("test GDSC CA", wall_now)
    ca.save(tmp_path / "ca")
    ca.issue(Role.COLLECTOR, "collector", wall_now).save(tmp_path, "collector")
    operator = ca.issue(Role.OPERATOR, "operator", wall_now)
    operator.save(tmp_path, "operator")
    store = Store(db_url)
    store.create_schema()
    plan = PullPlan(store)
    signer = CommandSigner.from_files(
        str(tmp_path / "operator.pem"), str(tmp_path / "operator.key"), store.next_command_counter
    )
    lifecycle = HubLifecycle(store, ca, plan, signer)
    installer = ca.issue(Role.INSTALLER, "Ann Installer", wall_now)
    yield World(tmp_path, ca, store, plan, lifecycle, installer, wall_now)
    store.close()


@pytest.fixture
async def running(world: World) -> AsyncIterator[World]:
    yield world
    for r in world.running:
        await r.server.stop()
        r.management.close()
        r.history.close()


def _count(store: Store, table) -> int:  # type: ignore[no-untyped-def]
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


# --- commissioning --------------------------------------------------------------------------


def test_commissioning_refused_for_foreign_revoked_and_wrong_role_installers(world: World) -> None:
    now = datetime.now(UTC)
    foreign = CertificateAuthority.create("test GDSC CA", now).issue(Role.INSTALLER, "Mallory", now)
    revoked = world.ca.issue(Role.INSTALLER, "Former Installer", now)
    world.ca.revoke(revoked.certificate.serial_number, now)
    collector = world.ca.issue(Role.COLLECTOR, "a collector", now)
    serials_before = world.ca.revoked_serials
    cases = [(foreign, "foreign_ca"), (revoked, "installer_revoked"), (collector, "wrong_role")]
    for cert, code in cases:
        with pytest.raises(CommissioningRefused) as err:
            world.lifecycle.commission(world.request("HUB-X", installer=cert), now)
        assert err.value.code == code, err.value
    # Tampered after signing: the signature no longer covers it.
    tampered = world.request("HUB-X").replace(b"HUB-X", b"HUB-Y")
    with pytest.raises(CommissioningRefused, match="bad_signature"):
        world.lifecycle.commission(tampered, now)
    # Over mutual TLS, the request must be signed by the certificate the handshake verified.
    with pytest.raises(CommissioningRefused, match="bad_signature"):
        world.lifecycle.commission(world.request("HUB-X"), now, peer_certificate=collector.certificate)
    # An old request replayed: refused as stale.
    with pytest.raises(CommissioningRefused, match="stale"):
        world.lifecycle.commission(world.request("HUB-X"), now + timedelta(hours=2))
    # Nothing written, nothing issued-and-left-over.
    assert _count(world.store, hubs) == _count(world.store, meters) == 0
    assert _count(world.store, hub_commissioning) == 0
    assert world.ca.revoked_serials == serials_before
    assert not world.lifecycle.crl_path.exists()


def test_a_second_hub_on_an_occupied_premises_is_refused_unless_it_replaces(world: World) -> None:
    """Issue 13 item 7: before the fix a second hub was commissioned onto a premises that already
    had an active one (no ``replaces``), and commands and vouchers could then go to it."""
    now = datetime.now(UTC)
    world.lifecycle.commission(world.request("HUB-1"), now)
    serials_before = world.ca.revoked_serials
    with pytest.raises(CommissioningRefused) as err:
        world.lifecycle.commission(world.request("HUB-2"), now)
    assert err.value.code == "premises_has_hub" and "HUB-1" in err.value.reason, err.value
    assert [h.hub_id for h in world.store.active_hubs()] == ["HUB-1"]
    assert _count(world.store, hub_commissioning) == 1 and world.ca.revoked_serials == serials_before
    # A replacement names the hub it replaces: accepted, and the old hub leaves in the same step.
    world.lifecycle.commission(world.request("HUB-2", replaces="HUB-1"), now)
    assert [h.hub_id for h in world.store.active_hubs()] == ["HUB-2"]
    # Once the premises has no active hub, a new one needs no replacement.
    world.lifecycle.decommission_hub("HUB-2", now)
    world.lifecycle.commission(world.request("HUB-3"), now)
    assert [h.hub_id for h in world.store.active_hubs()] == ["HUB-3"]


async def test_commissioned_hub_is_pulled_and_revoked_hub_is_not(running: World) -> None:
    w = running
    done = w.lifecycle.commission(w.request("HUB-1"), datetime.now(UTC))
    rec = w.lifecycle.commissioning_record("HUB-1")
    assert rec is not None and rec["installer"] == "Ann Installer"
    assert rec["cert_serial"] == str(done.certificate.certificate.serial_number)
    assert rec["installer_lfdi"] == done.installer.lfdi
    hub = await w.start_hub("HUB-1", done.certificate, 0, STEPS_PER_DAY)
    # Commissioning queued a first read: claimed like any urgent work.
    jobs = w.plan.claim_urgent("test", datetime.now(UTC), 10)
    assert [(j.hub.hub_id, j.kind) for j in jobs] == [("HUB-1", "read")]
    collector = Collector(w.store, w.collector_ctx(), SystemClock())
    stale_ctx_collector = Collector(w.store, w.collector_ctx(), SystemClock())  # never sees the CRL
    try:
        first = await collector.pull(w.record("HUB-1"), DAY0)
        assert first.ok, first.error
        assert first.inserted == 48
        # A window is planned for the hub, then it is revoked: the row is dropped, never claimed.
        window = DAY0 + timedelta(days=1)
        w.plan.ensure_window("bulk", window, [(window, w.record("HUB-1"))], window + timedelta(minutes=30))
        # More data on the hub, and a pull of it caught in flight when the revocation commits.
        feed(hub.hub, STEPS_PER_DAY + 1, 2 * STEPS_PER_DAY)
        hub.server.gate = asyncio.Event()
        in_flight = asyncio.create_task(stale_ctx_collector.pull(w.record("HUB-1"), window))
        await asyncio.wait_for(hub.server.reached.wait(), 10)
        revoked_at = datetime.now(UTC)
        await asyncio.to_thread(w.lifecycle.revoke_hub, "HUB-1", revoked_at)
        hub.server.gate.set()
        late = await in_flight
        assert not late.ok and "HUB-1 is revoked" in (late.error or "")
        assert len(w.store.readings("HUB-1")) == 48  # nothing of it stored after the revocation
        assert w.record("HUB-1").status == "revoked"
        assert _count(w.store, pull_plan) == 0
        assert w.plan.claim_bulk("test", window + timedelta(minutes=1), 10) == []
        assert w.store.active_hubs() == []
        # The CA's CRL lists it, and a collector that took the CRL refuses the hub in the handshake.
        assert w.ca.is_revoked(done.certificate.certificate)
        await collector.apply_crl(w.lifecycle.crl_path)
        refused = await collector.pull(w.record("HUB-1"), window)
        assert not refused.ok and "certificate revoked" in (refused.error or ""), refused.error
        # A stale collector (no CRL, cached session) still reaches it: the store refuses the data.
        stale = await stale_ctx_collector.pull(w.record("HUB-1"), window)
        assert not stale.ok and "refused" in (stale.error or "")
        assert len(w.store.readings("HUB-1")) == 48
    finally:
        await collector.close()
        await stale_ctx_collector.close()


async def test_revoked_collector_is_refused_by_a_hub_once_a_pull_brought_the_crl(running: World) -> None:
    w = running
    done = w.lifecycle.commission(w.request("HUB-1"), datetime.now(UTC))
    hub = await w.start_hub("HUB-1", done.certificate, 0, STEPS_PER_DAY)
    rogue_cert = w.ca.issue(Role.COLLECTOR, "stolen laptop", datetime.now(UTC))
    rogue_cert.save(w.dir, "rogue")
    rogue = Collector(w.store, w.collector_ctx("rogue"), SystemClock())
    good = Collector(w.store, w.collector_ctx(), SystemClock())
    courier = CommandCourier(w.collector_ctx())
    try:
        assert (await rogue.pull(w.record("HUB-1"), DAY0)).ok  # valid until revoked
        w.plan.claim_urgent("test", datetime.now(UTC), 10)  # the first read, out of the way
        w.lifecycle.revoke_certificate(rogue_cert.certificate.serial_number, datetime.now(UTC))
        # No command per hub: the CRL rides along with the next bulk pull (wan.crl_sync).
        assert w.plan.claim_urgent("test", datetime.now(UTC), 10) == []
        await good.apply_crl(w.lifecycle.crl_path)  # as the GDSC's upkeep does for a new CRL
        pulled = await good.pull(w.record("HUB-1"), DAY0 + timedelta(hours=1))
        assert pulled.ok and good.crls_sent == 1, pulled
        assert hub.crls.crl is not None and hub.management.crl is hub.crls.crl
        assert (w.dir / "HUB-1" / "crl.pem").read_bytes() == w.lifecycle.crl_path.read_bytes()
        # Held now: the next pull does not send it again, and an old copy (a replayed pki.crl) is
        # refused as not newer.
        assert (await good.pull(w.record("HUB-1"), DAY0 + timedelta(hours=2))).ok and good.crls_sent == 1
        assert w.lifecycle.signer is not None
        again = await courier.deliver(
            w.record("HUB-1"),
            w.lifecycle.signer.command("HUB-1", "pki.crl", _crl_body(w), datetime.now(UTC)).envelope(),
        )
        assert again["status"] == "failed" and "not newer" in again["detail"], again
        # The rogue collector, on a fresh connection, is refused in the TLS handshake now.
        fresh_rogue = Collector(w.store, w.collector_ctx("rogue"), SystemClock())
        try:
            refused = await fresh_rogue.pull(w.record("HUB-1"), DAY0 + timedelta(days=1))
        finally:
            await fresh_rogue.close()
        assert not refused.ok and refused.requests == 0, refused
        ok = await good.pull(w.record("HUB-1"), DAY0 + timedelta(days=1))
        assert ok.ok, ok.error
    finally:
        await rogue.close()
        await good.close()
        await courier.close()


def _crl_body(w: World) -> dict[str, str]:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.x509 import load_pem_x509_crl

    crl = load_pem_x509_crl(w.lifecycle.crl_path.read_bytes())
    return {"crl": base64.b64encode(crl.public_bytes(serialization.Encoding.DER)).decode()}


async def test_replacement_keeps_the_meter_series_continuous(running: World) -> None:
    w = running
    old = w.lifecycle.commission(w.request("HUB-OLD"), datetime.now(UTC))
    old_hub = await w.start_hub("HUB-OLD", old.certificate, 0, 2 * STEPS_PER_DAY)
    collector = Collector(w.store, w.collector_ctx(), SystemClock())
    try:
        assert (await collector.pull(w.record("HUB-OLD"), DAY0)).ok
        # The installer swaps the hub: the new one reads the same meter from the same instant on.
        new = w.lifecycle.replace_hub("HUB-OLD", w.request("HUB-NEW", replaces="HUB-OLD"), datetime.now(UTC))
        assert new.replaced == "HUB-OLD"
        assert w.record("HUB-OLD").status == "decommissioned"
        assert w.store.hub_meters("HUB-OLD") == {} and w.store.hub_meters("HUB-NEW") == {"E1": "electricity"}
        assert [h.hub_id for h in w.store.active_hubs()] == ["HUB-NEW"]
        assert w.ca.is_revoked(old.certificate.certificate)
        rec = w.lifecycle.commissioning_record("HUB-OLD")
        assert rec is not None and rec["end_status"] == "decommissioned" and "HUB-NEW" in rec["end_reason"]
        await w.start_hub("HUB-NEW", new.certificate, 2 * STEPS_PER_DAY, 4 * STEPS_PER_DAY)
        assert (await collector.pull(w.record("HUB-NEW"), DAY0 + timedelta(days=4))).ok
        # The decommissioned hub's later data is refused; what it delivered stays readable.
        feed(old_hub.hub, 2 * STEPS_PER_DAY + 1, 3 * STEPS_PER_DAY)
        late = await collector.pull(w.record("HUB-OLD"), DAY0 + timedelta(days=4))
        assert not late.ok and "decommissioned" in (late.error or "")
        old_rows = w.store.readings_for("HUB-OLD", "E1", str(IMPORT))
        new_rows = w.store.readings_for("HUB-NEW", "E1", str(IMPORT))
        assert len(old_rows) == len(new_rows) == 2 * 48
        assert not {r.interval_start for r in old_rows} & {r.interval_start for r in new_rows}
        series = w.lifecycle.meter_series(PREMISES, "E1", str(IMPORT))
        starts = [r.interval_start for r in series]
        assert len(starts) == 4 * 48
        assert starts == list(range(int(DAY0.timestamp()), int(DAY0.timestamp()) + 4 * 86400, 1800))
        assert {r.hub_id for r in series[: 2 * 48]} == {"HUB-OLD"}
        assert {r.hub_id for r in series[2 * 48 :]} == {"HUB-NEW"}
    finally:
        await collector.close()
