"""Change of supplier and consent changes, from the GDSC's records to the hub's privacy filter.

Real pieces: a Smart Hub serving IEEE 2030.5 and ``/mgmt`` over mutual TLS on loopback with its
history, consent store and management interface; the GDSC store (SQLite and PostgreSQL), party
tables, access guard and shared plan; commands signed with an operator certificate and carried
by the GDSC's command courier. The plan's urgent queue is worked the way a scheduler tick works
it (claim, deliver, finish) at chosen instants, so the test controls when the plan runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from smarthub.clock import ManualClock, SystemClock
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.pki import CertificateAuthority
from smarthub.gdsc.fleet.pki import Role as CertRole
from smarthub.gdsc.governance.access import Action, TimeRange
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.consent_sync import ConsentSync, SyncingPartyRepository, version_of
from smarthub.gdsc.governance.guard import AccessDenied, AccessGuard
from smarthub.gdsc.governance.parties import (
    Consent,
    DataKind,
    Fuel,
    Granularity,
    Party,
    PartyRepository,
    Role,
    SupplyPeriod,
    Tenancy,
)
from smarthub.gdsc.governance.supplier_change import OpeningReadPending, SupplierChanges
from smarthub.gdsc.pull.courier import CommandCourier
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import DONE
from smarthub.gdsc.store import Store
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.hub.intervals import IntervalRecord
from smarthub.hub.management import ManagementInterface
from smarthub.hub.privacy import ConsentStore, HubPrivacy, SupplierEntry, privacy_commands
from smarthub.hub.privacy import Granularity as HubGranularity
from smarthub.model import ObisCode, Quality
from smarthub.wan.client.hub_client import HubClient, PullError
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context

JAN = datetime(2026, 1, 1, tzinfo=UTC)
EFF = datetime(2026, 9, 1, tzinfo=UTC)  # 01:00 BST: a settlement-period boundary
IMPORT, EXPORT = ObisCode.parse("1-0:1.8.0"), ObisCode.parse("1-0:2.8.0")
ELEC = "electricity"


def register_at(obis: ObisCode, t: int) -> int:
    """The register the simulated meter shows at boundary ``t`` (Wh)."""
    base, rate = (4_321_000, 250) if obis == IMPORT else (98_000, 40)
    return base + rate * ((t - int(EFF.timestamp())) // 1800 + 100)


def intervals(obis: ObisCode, first: datetime, last: datetime) -> list[IntervalRecord]:
    out, t = [], int(first.timestamp())
    while t < int(last.timestamp()):
        end = t + 1800
        out.append(
            IntervalRecord(
                "E1",
                obis,
                t,
                1800,
                register_at(obis, end) - register_at(obis, t),
                register_at(obis, end),
                0,
                int(Quality.VALID),
            )
        )
        t = end
    return out


@dataclass
class World:
    dir: Path
    ca: CertificateAuthority
    hub_clock: ManualClock
    gdsc_clock: ManualClock
    history: HistoryStore
    consent: ConsentStore
    privacy: HubPrivacy
    management: ManagementInterface
    server: HubWanServer
    url: str
    hub_lfdi: str
    store: Store
    parties: PartyRepository
    guard: AccessGuard
    plan: PullPlan
    signer: CommandSigner
    courier: CommandCourier
    lfdis: dict[str, str]

    def party_client(self, name: str) -> HubClient:
        ctx = client_context(self.dir / f"{name}.pem", self.dir / f"{name}.key", self.dir / "ca" / "ca.pem")
        return HubClient(self.url, ctx, self.hub_lfdi)

    async def can_pull(self, name: str) -> bool:
        """Whether the hub serves ``name``'s own certificate any metering data now."""
        client = self.party_client(name)
        try:
            await client.pull_intervals({})
            return True
        except PullError as err:
            assert "403" in str(err), err
            return False
        finally:
            await client.close()

    async def run_plan(self) -> list[dict[str, Any]]:
        """Work the urgent queue as a scheduler tick does at the GDSC's now, until it is empty."""
        now, results = self.gdsc_clock.now(), []
        while claims := self.plan.claim_urgent("collector-1", now, 16):
            for claim in claims:
                assert claim.kind == "command" and claim.envelope is not None
                verdict = await self.courier.deliver(claim.hub, claim.envelope)
                assert self.plan.finish_urgent(claim, True, now, result=verdict).state == DONE
                results.append({"type": claim.command_type, **verdict})
        return results


@pytest.fixture
async def w(db_url: str, tmp_path: Path, wall_now: datetime) -> AsyncIterator[World]:
    ca = CertificateAuthority.create("test GDSC CA", wall_now)
    ca.save(tmp_path / "ca")
    hub_cert = ca.issue(CertRole.HUB, "HUB1", wall_now, hosts=("127.0.0.1",))
    hub_cert.save(tmp_path, "hub")
    ca.issue(CertRole.COLLECTOR, "collector", wall_now).save(tmp_path, "collector")
    operator = ca.issue(CertRole.OPERATOR, "operator", wall_now)
    lfdis = {}
    for name in ("S_OLD", "S_NEW", "TP"):
        cert = ca.issue(CertRole.PARTY, name, wall_now)
        cert.save(tmp_path, name)
        lfdis[name] = cert.lfdi

    # -- the hub -----------------------------------------------------------------------------
    hub_clock = ManualClock(EFF - timedelta(days=10))
    history = HistoryStore(tmp_path / "history.sqlite")
    history.add_meter("E1", ELEC)
    for obis in (IMPORT, EXPORT):
        history.append(intervals(obis, EFF - timedelta(hours=3), EFF + timedelta(hours=2)))
    hub = SmartHub("HUB1", history, clock=hub_clock)
    consent = ConsentStore(tmp_path / "consent.sqlite", clock=hub_clock)
    privacy = HubPrivacy(consent, history, mirror=hub.mirror)
    # Certificates are checked against wall time, as OpenSSL checks them.
    management = ManagementInterface("HUB1", ca.certificate, SystemClock(), tmp_path / "mgmt.sqlite")
    for ctype, handler in privacy_commands(privacy, hub_clock).items():
        management.register(ctype, handler)
    server = HubWanServer(
        "HUB1",
        hub_cert.lfdi,
        hub,
        lambda: int(hub_clock.now().timestamp()),
        management=management,
        privacy=privacy,
    )
    port = await server.start(
        "127.0.0.1", 0, server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    )
    url = f"https://127.0.0.1:{port}"

    # -- the GDSC ----------------------------------------------------------------------------
    gdsc_clock = ManualClock(EFF - timedelta(days=10))
    store = Store(db_url)
    store.create_schema()
    store.register_hub(
        hub_id="HUB1", premises_id="P1", url=url, lfdi=hub_cert.lfdi, meters_by_fuel=[("E1", ELEC)]
    )
    plan = PullPlan(store)
    assert isinstance(operator.private_key, ec.EllipticCurvePrivateKey)
    signer = CommandSigner(operator.private_key, operator.cert_pem, store.next_command_counter)
    parties = SyncingPartyRepository(
        store.engine, lambda repo: ConsentSync(repo, plan, signer, gdsc_clock.now)
    )
    for p in (
        Party("S_OLD", Role.SUPPLIER),
        Party("S_NEW", Role.SUPPLIER),
        Party("C1", Role.CONSUMER),
        Party("TP", Role.THIRD_PARTY),
    ):
        parties.add_party(p)
    parties.add_supply_period(SupplyPeriod("P1", Fuel.ELECTRICITY, "S_OLD", JAN))
    parties.add_tenancy(Tenancy("T1", "P1", "C1", JAN))
    guard = AccessGuard(parties, AuditLog(store.engine), gdsc_clock)
    courier = CommandCourier(
        client_context(tmp_path / "collector.pem", tmp_path / "collector.key", tmp_path / "ca" / "ca.pem")
    )
    w = World(
        tmp_path,
        ca,
        hub_clock,
        gdsc_clock,
        history,
        consent,
        privacy,
        management,
        server,
        url,
        hub_cert.lfdi,
        store,
        parties,
        guard,
        plan,
        signer,
        courier,
        lfdis,
    )
    # Commissioning installed the old supplier's keys on the hub.
    body = {"fuel": ELEC, "supplier_id": "S_OLD", "lfdi": lfdis["S_OLD"], "effective": JAN.isoformat()}
    plan.enqueue_command(signer.command("HUB1", "supplier.keys", body, gdsc_clock.now()), gdsc_clock.now())
    assert [r["status"] for r in await w.run_plan()] == ["applied"]
    yield w
    await courier.close()
    await server.stop()
    store.close()
    management.close()
    consent.close()
    history.close()


def can_command(w: World, supplier: str) -> bool:
    return w.guard.authorize(supplier, Action.TARIFF_UPDATE, premises_id="P1", fuel=ELEC).allow


async def test_change_of_supplier_switches_the_hub_at_the_date_and_shares_one_opening_read(w: World) -> None:
    changes = SupplierChanges(w.parties, w.plan, w.signer)
    change = changes.change("P1", Fuel.ELECTRICITY, "S_NEW", w.lfdis["S_NEW"], EFF, w.gdsc_clock.now())
    assert change.old_supplier_id == "S_OLD"
    # The keys go out at once, at urgent priority, ahead of the date.
    keys_job = changes.keys_job("P1", Fuel.ELECTRICITY, EFF)
    assert keys_job is not None and w.plan.urgent_job(keys_job)["priority"] == 0
    (delivered,) = await w.run_plan()
    assert delivered["status"] == "applied"
    assert delivered["result"]["changed"] is True and delivered["result"]["in_effect"] is False

    # Before the date nothing changes, at the GDSC or at the hub.
    w.gdsc_clock.set(EFF - timedelta(microseconds=1))
    w.hub_clock.set(EFF - timedelta(seconds=1))
    assert can_command(w, "S_OLD") and not can_command(w, "S_NEW")
    assert await w.can_pull("S_OLD") and not await w.can_pull("S_NEW")
    with pytest.raises(OpeningReadPending):
        changes.opening_read(w.guard, "S_NEW", "P1", Fuel.ELECTRICITY, EFF)
    assert changes.tick(w.gdsc_clock.now()) == 0  # nothing is due before the instant

    # From the date the hub refuses the old supplier's certificate and serves the new one's.
    w.gdsc_clock.set(EFF)
    w.hub_clock.set(EFF)
    assert not can_command(w, "S_OLD") and can_command(w, "S_NEW")
    assert not await w.can_pull("S_OLD") and await w.can_pull("S_NEW")
    assert w.consent.suppliers_at()[ELEC].supplier_id == "S_NEW"
    assert w.privacy.admits("S_NEW", w.lfdis["S_NEW"]) and not w.privacy.admits("S_NEW", w.lfdis["TP"])
    assert not w.privacy.admits("S_OLD", w.lfdis["S_OLD"])
    # The entries are persisted: a restarted hub knows the same supplier.
    reopened = ConsentStore(w.dir / "consent.sqlite", clock=w.hub_clock)
    try:
        assert reopened.suppliers_at()[ELEC] == SupplierEntry(ELEC, "S_NEW", w.lfdis["S_NEW"], EFF)
        assert reopened.granularity("S_OLD").value == "none"
    finally:
        reopened.close()

    # The opening read: asked for once the instant has passed, stored once.
    w.gdsc_clock.set(EFF + timedelta(hours=1))
    w.hub_clock.set(EFF + timedelta(hours=1))
    assert changes.tick(w.gdsc_clock.now()) == 1
    (read_cmd,) = await w.run_plan()
    assert read_cmd["result"]["changed"] is False  # installing the same keys again is idempotent
    assert changes.tick(w.gdsc_clock.now()) == 1
    assert changes.tick(w.gdsc_clock.now()) == 0
    old = changes.opening_read(w.guard, "S_OLD", "P1", Fuel.ELECTRICITY, EFF)
    new = changes.opening_read(w.guard, "S_NEW", "P1", Fuel.ELECTRICITY, EFF)
    assert old == new
    boundary = int(EFF.timestamp())
    assert {(r.meter, r.obis, r.value) for r in new.registers} == {
        ("E1", str(IMPORT), register_at(IMPORT, boundary)),
        ("E1", str(EXPORT), register_at(EXPORT, boundary)),
    }
    assert new.missing == () and (new.old_supplier_id, new.new_supplier_id) == ("S_OLD", "S_NEW")
    # A party that supplied neither side of the instant gets nothing, and that is audited.
    with pytest.raises(AccessDenied):
        changes.opening_read(w.guard, "TP", "P1", Fuel.ELECTRICITY, EFF)
    assert w.guard.audit.verify().ok
    # The old supplier keeps its own period's data at the GDSC (the hub no longer serves it).
    w.gdsc_clock.set(EFF + timedelta(days=3))
    assert changes.opening_read(w.guard, "S_OLD", "P1", Fuel.ELECTRICITY, EFF) == old


async def test_opening_read_waits_until_the_hub_holds_the_boundary(w: World) -> None:
    changes = SupplierChanges(w.parties, w.plan, w.signer, retry=timedelta(minutes=30))
    later = EFF + timedelta(hours=2)  # the hub's history ends exactly here: no half-hour ends after it yet
    eff = later + timedelta(hours=1)
    changes.change("P1", Fuel.ELECTRICITY, "S_NEW", w.lfdis["S_NEW"], eff, w.gdsc_clock.now())
    await w.run_plan()
    w.gdsc_clock.set(eff)
    w.hub_clock.set(eff)
    assert changes.tick(eff) == 1
    (first,) = await w.run_plan()
    assert first["result"]["opening_read"] == [] and len(first["result"]["missing"]) == 2
    assert changes.tick(eff) == 0  # incomplete: asked again after the retry delay
    # The half-hour ending at the instant completes on the hub.
    for obis in (IMPORT, EXPORT):
        w.history.append(intervals(obis, later, eff + timedelta(minutes=30)))
    w.gdsc_clock.set(eff + timedelta(minutes=30))
    w.hub_clock.set(eff + timedelta(minutes=30))
    assert changes.tick(w.gdsc_clock.now()) == 1
    await w.run_plan()
    assert changes.tick(w.gdsc_clock.now()) == 1
    read = changes.opening_read(w.guard, "S_NEW", "P1", Fuel.ELECTRICITY, eff)
    assert {r.value for r in read.registers} == {
        register_at(IMPORT, int(eff.timestamp())),
        register_at(EXPORT, int(eff.timestamp())),
    }


def _consent(cid: str, party: str, granted: datetime, g: Granularity) -> Consent:
    return Consent(
        cid,
        party,
        "P1",
        "T1",
        frozenset({DataKind.READINGS}),
        g,
        "advice",
        granted,
        granted + timedelta(days=365),
    )


async def test_consent_revoked_at_the_gdsc_is_refused_at_the_hub_after_the_plan_runs(w: World) -> None:
    assert not await w.can_pull("TP")  # no consent: the hub gives a third party nothing
    granted = w.gdsc_clock.now()
    w.parties.grant_consent(_consent("K1", "TP", granted, Granularity.HALF_HOURLY))
    (pushed,) = w.parties.pushed
    assert pushed.body == {
        "recipient": "TP",
        "granularity": "half-hourly",
        "version": version_of(granted),
        "meters": None,  # the consent covers every meter,
        "data_from": int(JAN.timestamp()),  # from the consenting occupant's move-in on
        "data_until": None,
        "events": False,
    }
    assert not await w.can_pull("TP")  # not before the plan has delivered it
    (applied,) = await w.run_plan()
    assert applied["type"] == "consent.set" and applied["result"]["applied"] is True
    assert await w.can_pull("TP")

    w.gdsc_clock.advance(timedelta(hours=2))
    assert w.parties.revoke_consent("K1", w.gdsc_clock.now())
    assert w.parties.pushed[-1].body["granularity"] == "none"
    assert await w.can_pull("TP")  # the hub has not heard yet
    await w.run_plan()
    assert not await w.can_pull("TP")
    refused = w.guard.authorize(
        "TP",
        Action.READ_READINGS,
        premises_id="P1",
        fuel=ELEC,
        granularity=Granularity.HALF_HOURLY,
        period=TimeRange(JAN, EFF),
    )
    assert not refused.allow  # and the GDSC refuses it too, from the same instant


async def test_out_of_order_consent_commands_resolve_to_the_latest(w: World) -> None:
    t1 = w.gdsc_clock.now()
    w.parties.grant_consent(_consent("K1", "TP", t1, Granularity.DAILY))
    t2 = t1 + timedelta(minutes=5)
    w.gdsc_clock.set(t2)
    w.parties.revoke_consent("K1", t2)
    # A stale re-send of the state at t1 is queued after the revocation (a resync that read old
    # data, or a retry): it reaches the hub last, with a higher counter, and must not win.
    sync = w.parties.sync
    stale = sync.push("P1", "TP", t1)
    assert stale[0].body["granularity"] == "daily" and stale[0].body["version"] == version_of(t1)
    results = await w.run_plan()
    assert [r["result"]["applied"] for r in results] == [True, True, False]
    assert results[-1]["result"]["granularity"] == "none"
    assert w.consent.version("TP") == version_of(t2)
    assert not await w.can_pull("TP")
    # The same state twice is harmless (idempotent), and the hub answers with what it holds.
    sync.push("P1", "TP", t2)
    (again,) = await w.run_plan()
    assert again["result"] == {
        "recipient": "TP",
        "granularity": "none",
        "applied": True,
        "version": version_of(t2),
        "scope": {"meters": None, "data_from": None, "data_until": None, "events": False},
    }


async def test_supplier_keys_commands_that_make_no_sense_fail_with_the_reason(w: World) -> None:
    bad = [
        (
            {"fuel": "coal", "supplier_id": "S", "lfdi": "A" * 40, "effective": EFF.isoformat()},
            "'fuel' must be one of",
        ),
        (
            {"fuel": ELEC, "supplier_id": "S", "lfdi": "XYZ", "effective": EFF.isoformat()},
            "'lfdi' must be 40 hex",
        ),
        (
            {"fuel": ELEC, "supplier_id": "S", "lfdi": "A" * 40, "effective": "2026-09-01T00:00:00"},
            "'effective' needs a UTC offset",
        ),
        (
            {"fuel": ELEC, "supplier_id": "S", "lfdi": "A" * 40, "effective": "2026-09-01T00:10:00+00:00"},
            "'effective' 2026-09-01T00:10:00+00:00 is not on a half-hour",
        ),
        ({"fuel": ELEC, "lfdi": "A" * 40, "effective": EFF.isoformat()}, "'supplier_id' is missing"),
    ]
    for body, _reason in bad:
        w.plan.enqueue_command(
            w.signer.command("HUB1", "supplier.keys", body, w.gdsc_clock.now()), w.gdsc_clock.now()
        )
    results = await w.run_plan()
    for (_, reason), r in zip(bad, results, strict=True):
        # Refused before the counter is taken, naming the field (the contract's SupplierKeys).
        assert r["status"] == "refused" and r["code"] == "malformed" and reason in r["detail"], r
    assert w.consent.suppliers_at(EFF + timedelta(days=1))[ELEC].supplier_id == "S_OLD"  # unchanged
    with pytest.raises(Exception, match="settlement-period"):
        SupplierChanges(w.parties, w.plan, w.signer).change(
            "P1", Fuel.ELECTRICITY, "S_NEW", w.lfdis["S_NEW"], EFF + timedelta(minutes=10), w.gdsc_clock.now()
        )


def test_consent_store_versions_survive_restart_and_the_consumer_at_the_hub_always_decides(
    tmp_path: Path,
) -> None:
    # A store written before consent versions is upgraded in place, its decisions kept.
    import sqlite3

    old = sqlite3.connect(tmp_path / "consent.sqlite")
    old.execute(
        "CREATE TABLE consent (recipient TEXT PRIMARY KEY, granularity TEXT NOT NULL, changed INTEGER NOT NULL)"
    )
    old.execute("INSERT INTO consent VALUES ('TP', 'daily', 0)")
    old.commit()
    old.close()
    clock = ManualClock(EFF)
    store = ConsentStore(tmp_path / "consent.sqlite", clock=clock)
    assert store.granularity("TP").value == "daily" and store.version("TP") == 0
    future = version_of(EFF + timedelta(days=1))  # a GDSC decision stamped by a clock ahead of the hub's
    assert store.set("TP", HubGranularity.HALF_HOURLY, EFF, future)
    assert not store.set("TP", HubGranularity.MONTHLY, EFF, future - 1)
    # The consumer revoking at the IHD is never ignored, and a later GDSC decision still wins.
    assert store.set("TP", HubGranularity.NONE, EFF)
    assert store.granularity("TP").value == "none" and store.version("TP") == future + 1
    store.close()
    reopened = ConsentStore(tmp_path / "consent.sqlite", clock=clock)
    assert reopened.version("TP") == future + 1
    assert reopened.set("TP", HubGranularity.DAILY, EFF, future + 2)
    assert reopened.granularity("TP").value == "daily"
    reopened.close()
