"""Certificate renewal end to end: a real hub over mutual TLS takes a renewed certificate.

The GDSC CA renews the hub's certificate for the key the hub holds, a signed ``pki.certificate``
command carries it over the pull channel, the hub checks it and loads it into its live TLS
context, and once the GDSC sees the job applied it pins the new LFDI (IEEE 2030.5-2018 §6.3.4:
a new certificate is a new LFDI) and revokes the old certificate as superseded.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from typer.testing import CliRunner

from smarthub.cli import app
from smarthub.clock import ManualClock, SystemClock
from smarthub.gdsc.api.auth.clients import ClientRegistry
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.commissioning import CommissioningRequest, sign_request
from smarthub.gdsc.fleet.lifecycle import HubLifecycle, LifecycleRefused
from smarthub.gdsc.fleet.pki import INDEFINITE, CertificateAuthority, IssuedCertificate, Role, lfdi
from smarthub.gdsc.fleet.registry import HubRecord, hubs
from smarthub.gdsc.pull.collector import Collector
from smarthub.gdsc.pull.courier import CommandCourier
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import urgent_work
from smarthub.gdsc.service import Upkeep
from smarthub.gdsc.store import Store
from smarthub.hub.certificate import HubCertificate
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.hub.management import CrlStore, ManagementInterface
from smarthub.model import ObisCode, Reading, Unit
from smarthub.sim.fleet import provision
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import apply_crl, client_context, server_context

IMPORT = ObisCode.parse("1-0:1.8.0")
DAY0 = datetime(2026, 3, 2, tzinfo=UTC)
PREMISES = "P-0001"


def feed(hub: SmartHub, steps: int) -> None:
    for i in range(steps + 1):
        t = DAY0 + timedelta(minutes=5 * i)
        hub.ingest([Reading("E1", IMPORT, Decimal(1_000_000 + 25 * i) / 1000, Unit.KWH, t)])


@dataclass
class RunningHub:
    hub_id: str
    server: HubWanServer
    management: ManagementInterface
    certificate: HubCertificate
    history: HistoryStore
    port: int


@dataclass
class World:
    dir: Path
    ca: CertificateAuthority
    store: Store
    plan: PullPlan
    lifecycle: HubLifecycle
    signer: CommandSigner
    installer: IssuedCertificate
    running: list[RunningHub] = field(default_factory=list)

    def collector_ctx(self) -> ssl.SSLContext:
        return client_context(
            self.dir / "collector.pem", self.dir / "collector.key", self.dir / "ca" / "ca.pem"
        )

    def commission(self, hub_id: str, premises_id: str = PREMISES) -> IssuedCertificate:
        assert self.installer.private_key is not None
        req = CommissioningRequest(
            hub_id=hub_id,
            premises_id=premises_id,
            url="https://127.0.0.1:1",
            hosts=("127.0.0.1",),
            meters_by_fuel=(("E1", "electricity"),),
            issued=datetime.now(UTC),
            address="1 Test Street",
        )
        envelope = sign_request(req, self.installer.private_key, self.installer.cert_pem)
        return self.lifecycle.commission(envelope, datetime.now(UTC)).certificate

    async def start_hub(self, hub_id: str, issued: IssuedCertificate) -> RunningHub:
        d = self.dir / hub_id
        issued.save(d, "hub")
        history = HistoryStore(d / "history.sqlite")
        hub = SmartHub(hub_id, history)
        feed(hub, 2 * 24 * 12)
        clock = SystemClock()
        management = ManagementInterface(hub_id, self.ca.certificate, clock, d / "management.sqlite")
        ctx = server_context(d / "hub.pem", d / "hub.key", self.dir / "ca" / "ca.pem")
        crls = CrlStore(d / "crl.pem", self.ca.certificate, clock, [lambda _crl, path: apply_crl(ctx, path)])
        management.use_crl_store(crls)
        server = HubWanServer(hub_id, issued.lfdi, hub, lambda: int(DAY0.timestamp()), management=management)
        cert = HubCertificate(
            hub_id, d / "hub.pem", d / "hub.key", self.ca.certificate, clock, [ctx], crls,
            [lambda _cert, new_lfdi: setattr(server, "lfdi", new_lfdi)],
        )  # fmt: skip
        management.register("pki.certificate", cert.handle)
        port = await server.start("127.0.0.1", 0, ctx)
        with self.store.engine.begin() as conn:
            conn.execute(hubs.update().where(hubs.c.hub_id == hub_id).values(url=f"https://127.0.0.1:{port}"))
        running = RunningHub(hub_id, server, management, cert, history, port)
        self.running.append(running)
        return running

    def record(self, hub_id: str) -> HubRecord:
        with self.store.engine.connect() as conn:
            r = conn.execute(select(hubs).where(hubs.c.hub_id == hub_id)).one()
        return HubRecord(r.hub_id, r.premises_id, r.url, r.lfdi, r.status, r.wan_link)

    def renewal_jobs(self) -> list[tuple[str, str]]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                select(urgent_work.c.hub_id, urgent_work.c.state)
                .where(urgent_work.c.command_type == "pki.certificate")
                .order_by(urgent_work.c.id)
            ).all()
        return [(r.hub_id, r.state) for r in rows]

    async def deliver_urgent(self, courier: CommandCourier, command_type: str) -> dict:  # type: ignore[type-arg]
        """Claim the urgent work, deliver the commands of ``command_type``, finish them all."""
        now = datetime.now(UTC)
        verdict: dict = {}  # type: ignore[type-arg]
        for job in self.plan.claim_urgent("test", now, 50):
            if job.command_type == command_type:
                assert job.envelope is not None
                verdict = await courier.deliver(job.hub, job.envelope)
                self.plan.finish_urgent(job, True, now, result=verdict)
            else:
                self.plan.finish_urgent(job, True, now)
        return verdict


async def served_lfdi(port: int, ctx: ssl.SSLContext) -> str:
    """The LFDI of the certificate the hub presents in a fresh, real TLS handshake."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1")
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return lfdi(x509.load_der_x509_certificate(der))
    finally:
        writer.close()


@pytest.fixture
def world(tmp_path: Path, db_url: str, wall_now: datetime) -> Iterator[World]:
    ca = CertificateAuthority.create("test GDSC CA", wall_now)
    ca.save(tmp_path / "ca")
    ca.issue(Role.COLLECTOR, "collector", wall_now).save(tmp_path, "collector")
    ca.issue(Role.OPERATOR, "operator", wall_now).save(tmp_path, "operator")
    store = Store(db_url)
    store.create_schema()
    plan = PullPlan(store)
    signer = CommandSigner.from_files(
        str(tmp_path / "operator.pem"), str(tmp_path / "operator.key"), store.next_command_counter
    )
    lifecycle = HubLifecycle(store, ca, plan, signer)
    installer = ca.issue(Role.INSTALLER, "Ann Installer", wall_now)
    yield World(tmp_path, ca, store, plan, lifecycle, signer, installer)
    store.close()


@pytest.fixture
async def running(world: World) -> AsyncIterator[World]:
    yield world
    for r in world.running:
        await r.server.stop()
        r.management.close()
        r.history.close()


def test_renew_keeps_key_subject_role_and_sans_with_a_new_serial_and_lfdi(wall_now: datetime) -> None:
    ca = CertificateAuthority.create("test GDSC CA", wall_now)
    old = ca.issue(Role.HUB, "HUB-1", wall_now, hosts=("127.0.0.1", "hub-1.local"), days=30)
    new = ca.renew(old.certificate, wall_now + timedelta(days=20))
    assert new.private_key is None and new.key_pem is None
    assert new.certificate.public_key() == old.certificate.public_key()
    assert new.certificate.subject == old.certificate.subject and new.role is Role.HUB
    san = x509.SubjectAlternativeName
    assert (
        new.certificate.extensions.get_extension_for_class(san).value
        == old.certificate.extensions.get_extension_for_class(san).value
    )
    assert new.certificate.serial_number != old.certificate.serial_number
    assert new.lfdi != old.lfdi  # IEEE 2030.5 §6.3.4: the LFDI hashes the whole certificate
    assert new.certificate.not_valid_after_utc > old.certificate.not_valid_after_utc
    foreign = CertificateAuthority.create("test GDSC CA", wall_now).issue(Role.HUB, "HUB-1", wall_now)
    with pytest.raises(ValueError, match="does not verify"):
        ca.renew(foreign.certificate, wall_now)
    ca.revoke(old.certificate.serial_number, wall_now)
    with pytest.raises(ValueError, match="revoked"):
        ca.renew(old.certificate, wall_now)


async def test_a_hub_renewed_over_mutual_tls_is_pulled_with_its_new_certificate(running: World) -> None:
    w = running
    issued = w.commission("HUB-1")
    hub = await w.start_hub("HUB-1", issued)
    courier = CommandCourier(w.collector_ctx())
    before = Collector(w.store, w.collector_ctx(), SystemClock())
    try:
        assert (await before.pull(w.record("HUB-1"), DAY0)).ok
        w.lifecycle.renew_hub("HUB-1", datetime.now(UTC))
        with pytest.raises(LifecycleRefused, match="under way"):
            w.lifecycle.renew_hub("HUB-1", datetime.now(UTC))
        verdict = await w.deliver_urgent(courier, "pki.certificate")
        assert verdict["status"] == "applied", verdict
        new_lfdi = verdict["result"]["lfdi"]
        assert new_lfdi != issued.lfdi
        # The live server context presents the new certificate from the next handshake on.
        assert await served_lfdi(hub.port, w.collector_ctx()) == new_lfdi
        assert lfdi(x509.load_pem_x509_certificate((w.dir / "HUB-1" / "hub.pem").read_bytes())) == new_lfdi
        # The renewed file keeps the intermediate CAs after the new leaf (what the hub sends).
        _, *chain = x509.load_pem_x509_certificates((w.dir / "HUB-1" / "hub.pem").read_bytes())
        assert [c.subject for c in chain] == [w.ca.certificate.subject, w.ca.chain[0].subject]
        assert hub.server.lfdi == new_lfdi
        assert w.record("HUB-1").lfdi == issued.lfdi  # the GDSC moves only once it sees the job
        w.lifecycle.apply_renewals(datetime.now(UTC))
        assert w.record("HUB-1").lfdi == new_lfdi
        rec = w.lifecycle.commissioning_record("HUB-1")
        assert rec is not None and rec["cert_lfdi"] == new_lfdi
        assert rec["cert_serial"] == verdict["result"]["serial"]
        assert lfdi(x509.load_pem_x509_certificate(rec["cert_pem"].encode())) == new_lfdi
        # The old certificate is on the published CRL (superseded); nothing was pushed to hubs.
        crl = x509.load_pem_x509_crl(w.lifecycle.crl_path.read_bytes())
        entry = crl.get_revoked_certificate_by_serial_number(issued.certificate.serial_number)
        assert entry is not None
        assert (
            entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
            is x509.ReasonFlags.superseded
        )
        assert w.plan.claim_urgent("test", datetime.now(UTC), 10) == []
        # Applying again changes nothing (idempotent).
        w.lifecycle.apply_renewals(datetime.now(UTC))
        assert w.record("HUB-1").lfdi == new_lfdi
        # A collector pinning the LFDI from the store, with the CRL, pulls the renewed hub.
        after = Collector(w.store, w.collector_ctx(), SystemClock())
        try:
            await after.apply_crl(w.lifecycle.crl_path)
            pulled = await after.pull(w.record("HUB-1"), DAY0 + timedelta(days=1))
            assert pulled.ok and pulled.requests > 0, pulled.error
            # Pinned to the old LFDI (a collector with a stale hub record), the hub is refused.
            r = w.record("HUB-1")
            stale = HubRecord(r.hub_id, r.premises_id, r.url, issued.lfdi, r.status, r.wan_link)
            refused = await after.pull(stale, DAY0 + timedelta(days=1))
            assert not refused.ok and issued.lfdi in (refused.error or ""), refused.error
        finally:
            await after.close()
    finally:
        await before.close()
        await courier.close()


async def test_hub_refuses_a_certificate_for_another_key_or_hub_and_changes_nothing(running: World) -> None:
    w = running
    issued = w.commission("HUB-1")
    hub = await w.start_hub("HUB-1", issued)
    pem_before = (w.dir / "HUB-1" / "hub.pem").read_bytes()
    now = datetime.now(UTC)
    other_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    hub_key = issued.certificate.public_key()
    assert isinstance(hub_key, ec.EllipticCurvePublicKey)
    foreign_ca = CertificateAuthority.create("test GDSC CA", now)
    cases = [
        (w.ca.issue(Role.HUB, "HUB-1", now, hosts=("127.0.0.1",), public_key=other_key), "key_mismatch"),
        (w.ca.issue(Role.HUB, "HUB-2", now, hosts=("127.0.0.1",), public_key=hub_key), "wrong_hub"),
        (w.ca.issue(Role.COLLECTOR, "HUB-1", now, public_key=hub_key), "untrusted"),
        (foreign_ca.issue(Role.HUB, "HUB-1", now, hosts=("127.0.0.1",), public_key=hub_key), "untrusted"),
    ]
    courier = CommandCourier(w.collector_ctx())
    try:
        for cert, code in cases:
            body = {"certificate": cert.cert_pem.decode(), "replaces_serial": "0"}
            envelope = w.signer.command("HUB-1", "pki.certificate", body, now).envelope()
            verdict = await courier.deliver(w.record("HUB-1"), envelope)
            assert verdict["status"] == "failed" and f"CertificateRefused: {code}:" in verdict["detail"], (
                verdict
            )
        assert (w.dir / "HUB-1" / "hub.pem").read_bytes() == pem_before
        assert await served_lfdi(hub.port, w.collector_ctx()) == issued.lfdi
        assert hub.server.lfdi == issued.lfdi
    finally:
        await courier.close()


def test_a_manifest_registered_hub_cannot_be_renewed(world: World) -> None:
    w = world
    cert = w.ca.issue(Role.HUB, "HUB-M", datetime.now(UTC), hosts=("127.0.0.1",))
    w.store.register_hub(
        hub_id="HUB-M",
        premises_id="P-M",
        url="https://127.0.0.1:1",
        lfdi=cert.lfdi,
        meters_by_fuel=[("E1", "electricity")],
    )
    with pytest.raises(LifecycleRefused, match="registered from the manifest"):
        w.lifecycle.renew_hub("HUB-M", datetime.now(UTC))
    with pytest.raises(LifecycleRefused, match="not an active hub"):
        w.lifecycle.renew_hub("HUB-NONE", datetime.now(UTC))
    assert w.renewal_jobs() == []
    assert w.lifecycle.renew_due(datetime.now(UTC) + timedelta(days=400)) == []


async def test_a_2030_5_hub_certificate_is_never_due_for_renewal(running: World) -> None:
    """The 2030.5 profile's device certificates never expire (notAfter 99991231235959Z):
    revocation is the control, and renewal by date finds nothing to do, ever."""
    w = running
    issued = w.commission("HUB-1")
    assert issued.certificate.not_valid_after_utc == INDEFINITE
    assert w.lifecycle.renew_due(datetime.now(UTC) + timedelta(days=365 * 7000)) == []
    assert w.renewal_jobs() == []
    w.lifecycle.renew_hub("HUB-1", datetime.now(UTC))  # on demand it still renews, indefinitely
    assert w.renewal_jobs() == [("HUB-1", "pending")]


async def test_upkeep_renews_a_hub_near_expiry_exactly_once(running: World) -> None:
    w = running
    w.lifecycle.certificate_days = 365  # an operator's finite validity: renewal by date applies
    issued = w.commission("HUB-1")
    hub = await w.start_hub("HUB-1", issued)
    (w.dir / "gdsc").mkdir(exist_ok=True)
    collector = Collector(w.store, w.collector_ctx(), SystemClock())
    courier = CommandCourier(w.collector_ctx())
    clock = ManualClock(datetime.now(UTC))
    upkeep = Upkeep(w.dir, w.store, collector, w.signer, clock, clock, w.lifecycle.crl_path)
    try:
        # Nothing due with the default 30 days: the certificate has a year left.
        await upkeep.run_once()
        assert w.renewal_jobs() == []
        # Renew within 400 days (configurable): the hub is due, renewed once however often upkeep runs.
        upkeep.renew_before = timedelta(days=400)
        await upkeep.run_once()
        await upkeep.run_once()
        assert w.renewal_jobs() == [("HUB-1", "pending")]
        verdict = await w.deliver_urgent(courier, "pki.certificate")
        assert verdict["status"] == "applied", verdict
        upkeep.renew_before = timedelta(days=30)
        await upkeep.run_once()  # settles the applied renewal: new LFDI pinned, old revoked
        assert w.record("HUB-1").lfdi == verdict["result"]["lfdi"] == hub.server.lfdi
        assert issued.certificate.serial_number in CertificateAuthority.load(w.dir / "ca").revoked_serials
        await upkeep.run_once()
        assert w.renewal_jobs() == [("HUB-1", "done")]
        # The upkeep's collector took the CRL and pulls the hub with its new certificate.
        pulled = await collector.pull(w.record("HUB-1"), DAY0)
        assert pulled.ok, pulled.error
        assert upkeep.errors == 0
    finally:
        await collector.close()
        await courier.close()


def test_a_hub_whose_renewal_never_reached_it_is_renewed_again_only_once_it_is_back(world: World) -> None:
    """A renewal given up undelivered (the hub in a power cut: every try failed on the
    transport) is not followed by a new certificate at every upkeep run while the hub is away
    (the 30-day chaos run issued one every few minutes of a cut, each job holding the hub's
    queue); once the hub has answered a pull, it is renewed again."""
    w = world
    w.lifecycle.certificate_days = 365
    w.lifecycle.renew_before = timedelta(days=400)
    w.commission("HUB-1")
    w.commission("HUB-2", "P-0002")
    now = datetime.now(UTC)
    assert w.lifecycle.renew_due(now) == ["HUB-1", "HUB-2"]
    jobs = {j.hub.hub_id: j for j in w.plan.claim_urgent("test", now, 10) if j.kind == "command"}
    w.plan.finish_urgent(jobs["HUB-2"], True, now, result={"status": "refused", "code": "untrusted"})
    for tries in range(w.plan.max_tries):  # HUB-1 away: every try fails (HUB-2 refused it)
        t = now + timedelta(minutes=tries)
        w.plan.finish_urgent(jobs["HUB-1"], False, t, error="Connection reset by peer")
        if tries + 1 < w.plan.max_tries:
            with w.store.engine.begin() as conn:  # claimable again at once
                conn.execute(urgent_work.update().values(next_try=t))
            (jobs["HUB-1"],) = [j for j in w.plan.claim_urgent("test", t, 10) if j.kind == "command"]
    assert w.renewal_jobs() == [("HUB-1", "failed"), ("HUB-2", "done")]
    later = now + timedelta(minutes=30)
    # HUB-1 has not answered since: no new certificate. HUB-2 answered (refused): renewed again.
    assert w.lifecycle.renew_due(later) == ["HUB-2"]
    assert w.lifecycle.renew_due(later + timedelta(minutes=5)) == []
    w.store.log_pull(  # a pull that failed says nothing of the hub being back
        hub_id="HUB-1", window_start=later, started=later, finished=later + timedelta(minutes=1),
        ok=False, readings=0, inserted=0, error="Connection reset by peer",
    )  # fmt: skip
    assert w.lifecycle.renew_due(later + timedelta(minutes=10)) == []
    back = later + timedelta(hours=2)
    w.store.log_pull(
        hub_id="HUB-1", window_start=back, started=back, finished=back + timedelta(seconds=2),
        ok=True, readings=0, inserted=0, error=None,
    )  # fmt: skip
    assert w.lifecycle.renew_due(back + timedelta(minutes=5)) == ["HUB-1"]
    assert [s for h, s in w.renewal_jobs() if h == "HUB-1"] == ["failed", "pending"]


async def test_a_second_renewal_the_hub_installed_after_the_first_was_adopted_is_moved_to(
    running: World,
) -> None:
    """The first renewal's answer was lost (its job failed) and the GDSC queued a second one of
    the same certificate, then adopted the first from the hub's handshake: the hub installs the
    second as well, and the GDSC must follow it, or it pins a certificate the hub no longer
    presents and never reaches the hub again (seen in the 30-day chaos run, issue 24)."""
    w = running
    w.lifecycle.certificate_days = 365
    issued = w.commission("HUB-1")
    hub = await w.start_hub("HUB-1", issued)
    courier = CommandCourier(w.collector_ctx())
    try:
        now = datetime.now(UTC) - timedelta(minutes=10)
        first = w.lifecycle.renew_hub("HUB-1", now)
        verdict = await w.deliver_urgent(courier, "pki.certificate")
        assert verdict["status"] == "applied"
        first_lfdi = verdict["result"]["lfdi"]
        with w.store.engine.begin() as conn:  # the answer lost: the plan gave the job up
            conn.execute(
                urgent_work.update().where(urgent_work.c.id == first).values(state="failed", result=None)
            )
        w.lifecycle.renew_hub("HUB-1", now + timedelta(minutes=5))  # not under way: renewed again
        assert w.lifecycle.adopt_renewed({"HUB-1": first_lfdi}, now) == ["HUB-1"]
        assert w.record("HUB-1").lfdi == first_lfdi
        second = await w.deliver_urgent(courier, "pki.certificate")
        assert second["status"] == "applied" and hub.server.lfdi == second["result"]["lfdi"] != first_lfdi
        w.lifecycle.apply_renewals(now + timedelta(minutes=6))
        assert w.record("HUB-1").lfdi == second["result"]["lfdi"]  # the one the hub presents
        revoked = CertificateAuthority.load(w.dir / "ca").revoked_serials
        assert issued.certificate.serial_number in revoked
        assert int(verdict["result"]["serial"]) in revoked  # the first renewal, superseded
        # The first renewal's late answer changes nothing now.
        w.lifecycle.apply_renewals(now + timedelta(minutes=7))
        assert w.record("HUB-1").lfdi == second["result"]["lfdi"]
    finally:
        await courier.close()


def _cli(*args: str) -> dict[str, str]:
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return dict(line.split(": ", 1) for line in r.output.strip().splitlines())


def test_cli_renews_a_party_certificate_and_moves_its_binding(tmp_path: Path) -> None:
    state = tmp_path / "state"
    provision(state, [], datetime.now(UTC) - timedelta(minutes=5))
    s = str(state)
    CliRunner().invoke(app, ["gdsc", "token", "--state", s, "--party", "ACME", "--role", "consumer"])
    issued = _cli("gdsc", "client", "--state", s, "--party", "ACME", "--certificate", str(tmp_path / "p"))
    out = _cli("gdsc", "renew", "--state", s, "--cert", issued["certificate"], "--out", str(tmp_path / "new"))
    assert out["certificate"] == str(tmp_path / "new" / "ACME.pem")
    assert out["lfdi"] != issued["lfdi"] and out["revoked"] == issued["lfdi"]
    assert out["bound to party"] == "ACME"
    new = x509.load_pem_x509_certificate(Path(out["certificate"]).read_bytes())
    old = x509.load_pem_x509_certificate(Path(issued["certificate"]).read_bytes())
    assert lfdi(new) == out["lfdi"] and new.public_key() == old.public_key()
    store = Store(f"sqlite:///{state / 'gdsc' / 'gdsc.sqlite'}")
    try:
        registry = ClientRegistry(store.engine)
        binding = registry.certificate(out["lfdi"])
        assert binding is not None and binding.party_id == "ACME" and binding.revoked is None
        gone = registry.certificate(issued["lfdi"])
        assert gone is not None and gone.revoked is not None
    finally:
        store.close()
    assert old.serial_number in CertificateAuthority.load(state / "ca").revoked_serials
    # A collector's certificate renews without any binding; a hub's is refused (the GDSC renews hubs).
    col = _cli(
        "gdsc", "renew", "--state", s, "--cert", str(state / "gdsc" / "collector.pem"), "--out", str(tmp_path)
    )
    assert set(col) == {"certificate", "lfdi"}
    CertificateAuthority.load(state / "ca").issue(Role.HUB, "H1", datetime.now(UTC)).save(tmp_path, "hub")
    r = CliRunner().invoke(
        app, ["gdsc", "renew", "--state", s, "--cert", str(tmp_path / "hub.pem"), "--out", s]
    )
    assert r.exit_code == 2 and "renewed by the GDSC" in r.output
