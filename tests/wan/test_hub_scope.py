"""Reading the hub directly gives no more than the GDSC would (issue 13 item 4).

A real hub serves IEEE 2030.5 over mutual TLS on loopback with its privacy filter; the consent
reaches it as the GDSC sends it: ``ConsentSync`` computes the ``consent.set`` body from the
GDSC's own records (store on SQLite and PostgreSQL), signs and queues it, and the hub's
management interface executes the queued envelope. Parties then read with their own
certificates, through the walk and through the bulk resource.

The home: an electricity meter E1 and a gas meter G1 with half-hours from 2 to 6 March 2026.
The previous occupant left on 4 March (MOVE_IN); the supplier's electricity supply began on
3 March (SUPPLY_START)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from smarthub.clock import ManualClock, SystemClock
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.pki import CertificateAuthority
from smarthub.gdsc.fleet.pki import Role as CertRole
from smarthub.gdsc.governance.consent_sync import ConsentSync
from smarthub.gdsc.governance.parties import (
    Consent,
    DataKind,
    Granularity,
    Party,
    PartyRepository,
    Role,
    Tenancy,
)
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import FAILED, urgent_work
from smarthub.gdsc.store import Store
from smarthub.hub.diagnostics import DiagnosisCode, DiagnosticsLog
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.hub.intervals import IntervalRecord
from smarthub.hub.management import ManagementInterface
from smarthub.hub.privacy import ConsentStore, HubPrivacy, SupplierEntry, privacy_commands
from smarthub.hub.privacy import Granularity as HubGranularity
from smarthub.model import ObisCode, Quality
from smarthub.wan.client.hub_client import HubClient, PullError
from smarthub.wan.client.pull import PullClient
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context

IMPORT = ObisCode.parse("1-0:1.8.0")
GAS = ObisCode.parse("7-0:3.0.0")
START = datetime(2026, 3, 2, tzinfo=UTC)
SUPPLY_START = datetime(2026, 3, 3, tzinfo=UTC)
MOVE_IN = datetime(2026, 3, 4, tzinfo=UTC)
END = datetime(2026, 3, 6, tzinfo=UTC)
NOW = END + timedelta(hours=1)


def half_hours(meter: str, obis: ObisCode) -> list[IntervalRecord]:
    out, t, register = [], START, 0
    while t < END:
        register += 100
        out.append(
            IntervalRecord(meter, obis, int(t.timestamp()), 1800, 100, register, 0, int(Quality.VALID))
        )
        t += timedelta(minutes=30)
    return out


@dataclass
class Rig:
    dir: Path
    url: str
    lfdi: str
    ca: CertificateAuthority
    consent: ConsentStore
    events: DiagnosticsLog
    management: ManagementInterface
    store: Store
    parties: PartyRepository
    sync: ConsentSync

    def client(self, role: CertRole, name: str, recipient: str | None = None) -> HubClient:
        wall = datetime.now(UTC) - timedelta(minutes=5)
        if not (self.dir / f"{name}.pem").exists():
            self.ca.issue(role, name, wall).save(self.dir, name)
        ctx = client_context(self.dir / f"{name}.pem", self.dir / f"{name}.key", self.dir / "ca" / "ca.pem")
        return HubClient(self.url, ctx, self.lfdi, recipient=recipient)

    async def deliver(self, party_id: str, at: datetime) -> dict:  # type: ignore[type-arg]
        """The GDSC computes the party's state, signs and queues consent.set; the hub executes it."""
        (pushed,) = self.sync.push("P1", party_id, at)
        with self.store.engine.connect() as conn:
            envelope = conn.execute(
                select(urgent_work.c.envelope).where(urgent_work.c.id == pushed.job_id)
            ).scalar_one()
        verdict = await self.management.handle(envelope.encode())
        assert verdict.status == "applied", verdict
        return pushed.body


@pytest.fixture
async def rig(tmp_path: Path, db_url: str, wall_now: datetime) -> AsyncIterator[Rig]:
    ca = CertificateAuthority.create("test GDSC CA", wall_now - timedelta(minutes=10))
    ca.save(tmp_path / "ca")
    hub_cert = ca.issue(CertRole.HUB, "HUB1", wall_now - timedelta(minutes=10), hosts=("127.0.0.1",))
    hub_cert.save(tmp_path, "hub")
    operator = ca.issue(CertRole.OPERATOR, "operator", wall_now - timedelta(minutes=10))
    history = HistoryStore(tmp_path / "history.sqlite")
    history.add_meter("E1", "electricity")
    history.add_meter("G1", "gas")
    history.append(half_hours("E1", IMPORT) + half_hours("G1", GAS))
    hub = SmartHub("HUB1", history, clock=ManualClock(NOW))
    consent = ConsentStore(tmp_path / "consent.sqlite", clock=ManualClock(NOW))
    privacy = HubPrivacy(consent, history)
    events = DiagnosticsLog.beside(history.path)
    events.record(DiagnosisCode.STALE_METER, "E1", "meter", START + timedelta(hours=3), "old tenancy", {})
    events.record(DiagnosisCode.STALE_METER, "G1", "meter", MOVE_IN + timedelta(hours=3), "gas", {})
    events.record(DiagnosisCode.HAN_DECODE_ERRORS, "E1", "meter", MOVE_IN + timedelta(hours=5), "new", {})
    management = ManagementInterface("HUB1", ca.certificate, SystemClock(), tmp_path / "management.sqlite")
    for ctype, handler in privacy_commands(privacy, ManualClock(NOW)).items():
        management.register(ctype, handler)
    server = HubWanServer("HUB1", hub_cert.lfdi, hub, lambda: 0, management, privacy, events)
    ctx = server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    url = f"https://127.0.0.1:{await server.start('127.0.0.1', 0, ctx)}"
    # The GDSC: its registry, parties and consents; its operator signs the commands.
    store = Store(db_url)
    store.create_schema()
    store.register_hub(
        hub_id="HUB1",
        premises_id="P1",
        url=url,
        lfdi=hub_cert.lfdi,
        meters_by_fuel=[("E1", "electricity"), ("G1", "gas")],
    )
    parties = PartyRepository(store.engine)
    for p in (Party("C0", Role.CONSUMER), Party("C1", Role.CONSUMER), Party("TP", Role.THIRD_PARTY)):
        parties.add_party(p)
    parties.add_tenancy(Tenancy("T0", "P1", "C0", START - timedelta(days=400), MOVE_IN))
    parties.add_tenancy(Tenancy("T1", "P1", "C1", MOVE_IN))
    assert isinstance(operator.private_key, ec.EllipticCurvePrivateKey)
    signer = CommandSigner(operator.private_key, operator.cert_pem, store.next_command_counter)
    sync = ConsentSync(parties, PullPlan(store), signer, lambda: NOW)
    yield Rig(tmp_path, url, hub_cert.lfdi, ca, consent, events, management, store, parties, sync)
    await server.stop()
    store.close()
    management.close()
    consent.close()
    events.disconnect()
    history.close()


def _consent(meters: frozenset[str] | None, kinds: frozenset[DataKind], g: Granularity) -> Consent:
    return Consent(
        "K1", "TP", "P1", "T1", kinds, g, "energy advice", MOVE_IN, MOVE_IN + timedelta(days=365), meters
    )


async def test_a_consent_for_one_meter_of_one_tenancy_reads_that_meter_of_that_tenancy_only(rig: Rig) -> None:
    rig.parties.grant_consent(
        _consent(frozenset({"E1"}), frozenset({DataKind.READINGS}), Granularity.HALF_HOURLY)
    )
    body = await rig.deliver("TP", NOW)
    assert body["meters"] == {"E1": "half-hourly"} and body["data_from"] == int(MOVE_IN.timestamp())
    held = rig.consent.scope("TP")  # the hub keeps the list and the period
    assert held.meters == {"E1": HubGranularity.HALF_HOURLY} and held.data_from == int(MOVE_IN.timestamp())
    tp = rig.client(CertRole.PARTY, "TP")
    try:
        got = await tp.pull_intervals({})  # the walk
        assert {i.meter for i in got.intervals} == {"E1"}
        assert min(i.start for i in got.intervals) == int(MOVE_IN.timestamp())  # not the previous occupant's
        assert len([i for i in got.intervals if i.duration]) == 2 * 48
        # the register at the move-in midnight (the opening read) and at the two that follow
        moved = int(MOVE_IN.timestamp())
        assert [i.start for i in got.intervals if not i.duration] == [moved, moved + 86400, moved + 2 * 86400]
        with pytest.raises(PullError, match="404"):
            await tp.get("/upt/G1", object)  # type: ignore[arg-type]
        day0 = int(START.timestamp())  # a day of the previous tenancy, named directly
        with pytest.raises(PullError, match="404"):
            await tp.get(f"/upt/E1/mr/{_channel(got)}/rs/{day0}", object)  # type: ignore[arg-type]
    finally:
        await tp.close()
    # The bulk resource gives the same.
    puller = PullClient(_ctx(rig, "TP"))
    conn = await puller.connect(rig.url, rig.lfdi)
    try:
        bulk = [i for page, _ in [p async for p in puller.pages(conn, "/mup", {})] for i in page]
    finally:
        conn.close()
    assert {i.meter for i in bulk} == {"E1"} and min(i.start for i in bulk) == int(MOVE_IN.timestamp())
    assert sorted(bulk) == sorted(got.intervals)
    # A change at the IHD (daily instead) keeps the consent's meter list and period.
    rig.consent.set("TP", HubGranularity.DAILY, NOW)
    tp = rig.client(CertRole.PARTY, "TP")
    try:
        got = await tp.pull_intervals({})
        assert {(i.meter, i.duration) for i in got.intervals} == {("E1", 86400), ("E1", 0)}  # days, registers
        assert min(i.start for i in got.intervals) >= int(MOVE_IN.timestamp())
    finally:
        await tp.close()


async def test_a_supplier_reads_only_its_fuel_from_its_supply_period(rig: Rig) -> None:
    sup = rig.client(CertRole.PARTY, "SUP")
    lfdi = _lfdi(rig, "SUP")
    rig.consent.install_supplier(SupplierEntry("electricity", "SUP", lfdi, SUPPLY_START))
    rig.consent.set("SUP", HubGranularity.HALF_HOURLY, NOW)  # the occupant opted in (no scope sent)
    try:
        got = await sup.pull_intervals({})
        assert {i.meter for i in got.intervals} == {"E1"}
        assert min(i.start for i in got.intervals) == int(SUPPLY_START.timestamp())
    finally:
        await sup.close()


async def test_diagnosed_events_need_a_role_and_a_consent_and_are_scoped(rig: Rig) -> None:
    for role, name in ((CertRole.INSTALLER, "Ann Installer"), (CertRole.IHD, "HUB1"), (CertRole.PARTY, "TP")):
        c = rig.client(role, name)
        try:
            with pytest.raises(PullError, match="403"):
                await c.pull_log_events()
        finally:
            await c.close()
    # Readings only: still no events.
    rig.parties.grant_consent(_consent(frozenset({"E1"}), frozenset({DataKind.READINGS}), Granularity.DAILY))
    await rig.deliver("TP", NOW)
    tp = rig.client(CertRole.PARTY, "TP")
    try:
        with pytest.raises(PullError, match="403"):
            await tp.pull_log_events()
    finally:
        await tp.close()
    # Events too: its meter's, of its tenancy, and no other.
    rig.parties.revoke_consent("K1", NOW)
    granted = NOW + timedelta(seconds=1)
    rig.parties.grant_consent(
        Consent(
            "K2", "TP", "P1", "T1", frozenset({DataKind.READINGS, DataKind.EVENTS}), Granularity.DAILY,
            "diagnosis", granted, granted + timedelta(days=30), frozenset({"E1"}),
        )
    )  # fmt: skip
    assert (await rig.deliver("TP", granted))["events"] is True
    tp = rig.client(CertRole.PARTY, "TP")
    collector = rig.client(CertRole.COLLECTOR, "collector")
    try:
        seen = await tp.pull_log_events()
        assert [(d["device"], d["evidence"]) for _, d in seen] == [("E1", "new")]
        assert len(await collector.pull_log_events()) == 3  # the GDSC's error log: everything
        hidden = rig.events.events()[0].id  # the previous tenancy's event
        with pytest.raises(PullError, match="404"):
            await tp.event_detail(hidden)
    finally:
        await tp.close()
        await collector.close()


def _ctx(rig: Rig, name: str):  # type: ignore[no-untyped-def]
    return client_context(rig.dir / f"{name}.pem", rig.dir / f"{name}.key", rig.dir / "ca" / "ca.pem")


def _lfdi(rig: Rig, name: str) -> str:
    from cryptography import x509

    from smarthub.security.certificates import lfdi

    return lfdi(x509.load_pem_x509_certificate((rig.dir / f"{name}.pem").read_bytes()))


def _channel(got) -> str:  # type: ignore[no-untyped-def]
    href = next(h for h in got.cursors if not h.endswith(".126"))  # an interval channel
    return str(href.split("/mr/")[1])


def test_scope_json_round_trips_and_refuses_nonsense() -> None:
    from smarthub.hub.privacy import ConsentScope

    s = ConsentScope({"E1": HubGranularity.DAILY}, 10, 20, True)
    assert ConsentScope.from_json(json.loads(json.dumps(s.to_json()))) == s
    for bad in ({"meters": 5}, {"data_from": -1}, {"data_from": 20, "data_until": 10}, {"events": "yes"}):
        with pytest.raises(ValueError):
            ConsentScope.from_json(bad)


async def test_a_revocation_the_hub_missed_is_sent_again_once_it_answers(rig: Rig) -> None:
    """A WAN outage longer than the plan's tries leaves the revocation's consent.set failed;
    the GDSC queues it again once the hub has answered a pull, and the hub stops the party."""
    rig.parties.grant_consent(_consent(None, frozenset({DataKind.READINGS}), Granularity.HALF_HOURLY))
    await rig.deliver("TP", MOVE_IN)
    assert rig.consent.granularity("TP") is HubGranularity.HALF_HOURLY
    plan, t = rig.sync.plan, NOW
    (grant,) = plan.claim_urgent("collector", t, 10)  # the grant's job: delivered above
    plan.finish_urgent(grant, True, t, result={"status": "applied"})
    assert rig.parties.revoke_consent("K1", NOW)
    (pushed,) = rig.sync.push("P1", "TP", NOW)
    for _ in range(plan.max_tries):  # the hub is cut off: every try fails, then the plan gives up
        t += timedelta(hours=1)
        (claim,) = plan.claim_urgent("collector", t, 10)
        plan.finish_urgent(claim, False, t, error="connection refused")
    assert plan.urgent_job(pushed.job_id)["state"] == FAILED
    assert rig.sync.redeliver(t) == []  # the hub has not answered since: nothing to deliver to
    back = t + timedelta(hours=2)
    rig.store.log_pull(
        hub_id="HUB1",
        window_start=back,
        started=back,
        finished=back,
        ok=True,
        readings=0,
        inserted=0,
        error=None,
    )
    (again,) = rig.sync.redeliver(back + timedelta(minutes=1))
    assert again.hub_id == "HUB1" and again.job_id != pushed.job_id and again.body == pushed.body
    assert rig.sync.redeliver(back + timedelta(minutes=2)) == []  # queued: on its way
    envelope = plan.urgent_job(again.job_id)["envelope"]
    verdict = await rig.management.handle(envelope.encode())
    assert verdict.status == "applied", verdict
    assert rig.consent.granularity("TP") is HubGranularity.NONE
    # Delivered: the latest job for the party is not a failed one, nothing more is sent.
    (claim,) = plan.claim_urgent("collector", back + timedelta(minutes=3), 10)
    plan.finish_urgent(claim, True, back + timedelta(minutes=3), result={"status": "applied"})
    assert rig.sync.redeliver(back + timedelta(hours=1)) == []
