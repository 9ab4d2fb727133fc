"""The running GDSC does what its library code promises: the CRL kept current in the collectors'
TLS context, consent changes through the API queued for the hub, top-ups settled and re-sent by
the service loop, a meter's readings served across a hub replacement, meter replacements learnt.

Real pieces: simulated homes serving 2030.5 over mutual TLS on loopback, the GDSC service
(`GdscService.from_state`, its scheduler and upkeep), the store on SQLite and PostgreSQL, the
data services API app (`app_from_state`) through FastAPI's TestClient.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from sqlalchemy import select

from smarthub.clock import AcceleratedClock, ManualClock
from smarthub.gdsc.api.app import app_from_state
from smarthub.gdsc.api.auth.tokens import TokenStore
from smarthub.gdsc.commands.desk import CommandDesk
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.commands.vouchers import vouchers
from smarthub.gdsc.fleet.commissioning import CommissioningRequest, sign_request
from smarthub.gdsc.fleet.lifecycle import HubLifecycle
from smarthub.gdsc.fleet.pki import CertificateAuthority
from smarthub.gdsc.governance.changes import move_out
from smarthub.gdsc.governance.hub_revocations import HubRevocations
from smarthub.gdsc.governance.parties import Fuel, Party, PartyRepository, Role, SupplyPeriod, Tenancy
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import DONE, FAILED, urgent_work
from smarthub.gdsc.readings.queries import Meter, find_meter
from smarthub.gdsc.readings.tables import StoredReading
from smarthub.gdsc.service import GdscService
from smarthub.gdsc.store import Store
from smarthub.hub.management import ManagementInterface
from smarthub.hub.registry import MeterRegistry, registry_commands
from smarthub.sim.fleet import Fleet, home_specs, provision

SIM_START = datetime(2026, 3, 2, tzinfo=UTC)
JUL = datetime(2026, 7, 1, tzinfo=UTC)
NOW = datetime(2026, 8, 20, 12, tzinfo=UTC)


def _jobs(store: Store, ctype: str) -> list[Any]:
    with store.engine.connect() as conn:
        return conn.execute(
            select(urgent_work).where(urgent_work.c.command_type == ctype).order_by(urgent_work.c.id)
        ).all()


async def _until(check: Callable[[], bool], what: str, wall_seconds: float = 60.0) -> None:
    for _ in range(int(wall_seconds / 0.05)):
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


# --- 1. the CRL at the GDSC ---------------------------------------------------------------------


async def test_gdsc_keeps_the_crl_current_and_refuses_a_revoked_hub(
    tmp_path: Path, db_url: str, wall_now: datetime
) -> None:
    specs = home_specs(1, seed=3)
    provision(tmp_path, specs, wall_now - timedelta(minutes=10))
    ca = CertificateAuthority.load(tmp_path / "ca")
    # A CRL left from long ago: past its nextUpdate. Loaded as it is, it would stop every pull.
    stale = ca.crl(wall_now - timedelta(days=10), next_update=timedelta(days=7))
    (tmp_path / "ca" / "crl.pem").write_bytes(stale.public_bytes(serialization.Encoding.PEM))
    clock = ManualClock(SIM_START)
    fleet = Fleet(tmp_path, specs, clock, SIM_START)
    await fleet.start_servers(tmp_path / "ca" / "ca.pem")
    fleet.write_manifest()
    tls = ManualClock(wall_now - timedelta(minutes=5))
    service = GdscService.from_state(tmp_path, clock, db_url, tls_clock=tls)
    try:
        ctx = service.collector.ssl_context
        assert ctx.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF
        crl = x509.load_pem_x509_crl((tmp_path / "ca" / "crl.pem").read_bytes())
        assert crl.last_update_utc == tls.now().replace(microsecond=0)
        assert crl.next_update_utc == crl.last_update_utc + timedelta(days=7)
        assert _jobs(service.store, "pki.crl") == []  # no command per hub: CRLs ride the pull
        # Consent revocations asked at a display ride the pull too, decided by the governance.
        assert isinstance(service.collector.revocations, HubRevocations)
        (hub,) = service.store.active_hubs()
        assert (await service.collector.pull(hub, SIM_START)).ok
        home = fleet.homes[0]  # the hub had no CRL: it asked for it with that pull
        assert home.crls.number == int(
            crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        )
        assert service.upkeep is not None
        # A day later the CRL is re-published; the revoked set is unchanged, so hubs get nothing.
        tls.advance(timedelta(days=1, seconds=1))
        await service.upkeep.run_once()
        again = x509.load_pem_x509_crl((tmp_path / "ca" / "crl.pem").read_bytes())
        assert again.last_update_utc > crl.last_update_utc and len(again) == 0
        assert _jobs(service.store, "pki.crl") == []
        assert (await service.collector.pull(hub, SIM_START)).ok  # OpenSSL still has a current CRL
        # Another process (the operator's tool) revokes the hub's certificate: the running
        # collector takes the new CRL at its next upkeep and refuses the hub (the other hubs get it
        # with their pulls; nothing is queued per hub).
        hub_cert = x509.load_pem_x509_certificate((tmp_path / "hubs" / hub.hub_id / "hub.pem").read_bytes())
        operator = CommandSigner.from_files(
            str(tmp_path / "gdsc" / "operator.pem"),
            str(tmp_path / "gdsc" / "operator.key"),
            service.store.next_command_counter,
        )
        other = HubLifecycle(
            service.store, CertificateAuthority.load(tmp_path / "ca"), PullPlan(service.store), operator
        )
        other.revoke_certificate(hub_cert.serial_number, datetime.now(UTC))
        assert _jobs(service.store, "pki.crl") == []
        await service.upkeep.run_once()
        refused = await service.collector.pull(hub, SIM_START)
        assert not refused.ok and "revoked" in (refused.error or ""), refused
    finally:
        await service.collector.close()
        await service.scheduler.close()
        service.store.close()
        await fleet.stop()


# --- 2. consent changes through the API reach the hub ----------------------------------------


def _request(hub_id: str, replaces: str | None = None) -> CommissioningRequest:
    return CommissioningRequest(
        hub_id=hub_id,
        premises_id="P1",
        url=f"https://{hub_id.lower()}",
        hosts=("127.0.0.1",),
        meters_by_fuel=(("E1", "electricity"),),
        issued=datetime.now(UTC),
        address="1 Test Street",
        replaces=replaces,
    )


def _api_world(db_url: str, state: Path, installer: Any = None) -> tuple[Store, dict[str, str], ManualClock]:
    """P1 with hub H1 (meter E1), supplier S1, occupant C1, data service TP; GDSC credentials in
    ``state``. With ``installer`` (a function of the CA), H1 is commissioned by that installer."""
    store = Store(db_url)
    store.create_schema()
    provision(state, [], NOW - timedelta(days=1))
    if installer is None:
        store.register_hub(
            hub_id="H1",
            premises_id="P1",
            url="https://h",
            lfdi="A" * 40,
            meters_by_fuel=[("E1", "electricity")],
        )
    else:
        ca = CertificateAuthority.load(state / "ca")
        who = installer(ca)
        HubLifecycle(store, ca, PullPlan(store)).commission(
            sign_request(_request("H1"), who.private_key, who.cert_pem), datetime.now(UTC)
        )
    repo = PartyRepository(store.engine)
    for p in (Party("S1", Role.SUPPLIER), Party("C1", Role.CONSUMER), Party("TP", Role.THIRD_PARTY)):
        repo.add_party(p)
    repo.add_supply_period(SupplyPeriod("P1", Fuel.ELECTRICITY, "S1", JUL))
    repo.add_tenancy(Tenancy("T1", "P1", "C1", JUL))
    tokens = TokenStore(store.engine)
    return store, {p: tokens.issue(p, NOW) for p in ("S1", "C1", "TP")}, ManualClock(NOW)


def test_consent_revoked_through_the_api_queues_consent_set_for_the_hub(db_url: str, tmp_path: Path) -> None:
    store, tokens, clock = _api_world(db_url, tmp_path)
    try:
        auth = {"Authorization": f"Bearer {tokens['C1']}"}
        with TestClient(app_from_state(tmp_path, clock, db_url)) as client:
            r = client.post(
                "/v1/premises/P1/consents",
                json={
                    "party_id": "TP",
                    "data_kinds": ["readings"],
                    "granularity": "half-hourly",
                    "purpose": "energy advice",
                    "expires_at": (NOW + timedelta(days=90)).isoformat(),
                },
                headers=auth,
            )
            assert r.status_code == 201, r.text
            clock.advance(timedelta(hours=1))
            r = client.delete(f"/v1/premises/P1/consents/{r.json()['consent_id']}", headers=auth)
            assert r.status_code == 204, r.text
        granted, revoked = _jobs(store, "consent.set")
        assert granted.hub_id == revoked.hub_id == "H1" and revoked.state == "pending"
        body = json.loads(json.loads(revoked.envelope)["payload"])["body"]
        assert body == {
            "recipient": "TP",
            "granularity": "none",
            "version": int(clock.now().timestamp()) * 10**6,
            "meters": None,
            "data_from": None,
            "data_until": None,
            "events": False,
        }
        # The occupant moves out: the consents of the tenancy go, and the hub hears of it.
        with TestClient(app_from_state(tmp_path, clock, db_url)) as client:
            r = client.post(
                "/v1/premises/P1/consents",
                json={
                    "party_id": "TP",
                    "data_kinds": ["readings"],
                    "granularity": "daily",
                    "purpose": "energy advice",
                    "expires_at": (NOW + timedelta(days=90)).isoformat(),
                },
                headers=auth,
            )
            assert r.status_code == 201, r.text
        from smarthub.gdsc.governance.consent_sync import syncing_parties

        signer = CommandDesk.from_state(tmp_path, store).signer
        moved = clock.now() + timedelta(hours=2)
        move_out(syncing_parties(store, signer, clock), "P1", moved)
        last = _jobs(store, "consent.set")[-1]
        body = json.loads(json.loads(last.envelope)["payload"])["body"]
        assert (last.hub_id, body["recipient"], body["granularity"]) == ("H1", "TP", "none")
        assert body["version"] == int(moved.timestamp()) * 10**6
    finally:
        store.close()


def test_a_consent_that_expires_is_pushed_to_the_hub_by_the_upkeep(db_url: str, tmp_path: Path) -> None:
    """Nobody acts when a consent expires, so no API call pushes it: the upkeep does, once."""
    from smarthub.gdsc.service import Upkeep

    store, tokens, clock = _api_world(db_url, tmp_path)
    try:
        expires = NOW + timedelta(days=2)
        with TestClient(app_from_state(tmp_path, clock, db_url)) as client:
            r = client.post(
                "/v1/premises/P1/consents",
                json={
                    "party_id": "TP",
                    "data_kinds": ["readings"],
                    "granularity": "daily",
                    "purpose": "energy advice",
                    "expires_at": expires.isoformat(),
                },
                headers={"Authorization": f"Bearer {tokens['C1']}"},
            )
            assert r.status_code == 201, r.text
        assert len(_jobs(store, "consent.set")) == 1  # the grant
        signer = CommandDesk.from_state(tmp_path, store).signer
        upkeep = Upkeep(tmp_path, store, None, signer, clock, clock, tmp_path / "crl.pem")  # type: ignore[arg-type]
        upkeep._consent_expiries(NOW + timedelta(days=1))  # not expired yet: nothing
        assert len(_jobs(store, "consent.set")) == 1
        upkeep._consent_expiries(expires + timedelta(minutes=5))
        upkeep._consent_expiries(expires + timedelta(minutes=10))  # already pushed: not again
        jobs = _jobs(store, "consent.set")
        assert len(jobs) == 2
        body = json.loads(json.loads(jobs[-1].envelope)["payload"])["body"]
        assert body == {
            "recipient": "TP",
            "granularity": "none",
            "version": int(expires.timestamp()) * 10**6,
            "meters": None,
            "data_from": None,
            "data_until": None,
            "events": False,
        }
    finally:
        store.close()


# --- 4. a meter's readings across a hub replacement, through the API --------------------------


def test_readings_through_the_api_continue_across_a_hub_replacement(
    db_url: str, tmp_path: Path, wall_now: datetime
) -> None:
    issued: list[Any] = []

    def installer(ca: CertificateAuthority) -> Any:
        issued.append(ca.issue(Role.INSTALLER, "Ann Installer", wall_now))
        return issued[0]

    store, tokens, clock = _api_world(db_url, tmp_path, installer)
    try:
        ca = CertificateAuthority.load(tmp_path / "ca")
        lifecycle = HubLifecycle(store, ca, PullPlan(store))
        day = datetime(2026, 8, 9, 23, tzinfo=UTC)  # local midnight of 10 August
        t0 = int(day.timestamp())
        rows = [
            StoredReading("H1", "E1", "1-0:1.8.0", t0 + 1800 * i, 1800, 100 + i, 0, 72, 0) for i in range(48)
        ]
        store.ingest("H1", rows, {})
        who = issued[0]
        envelope = sign_request(_request("H2", replaces="H1"), who.private_key, who.cert_pem)
        lifecycle.replace_hub("H1", envelope, datetime.now(UTC))
        later = [
            StoredReading("H2", "E1", "1-0:1.8.0", t0 + 1800 * i, 1800, 100 + i, 0, 72, 0)
            for i in range(48, 96)
        ]
        store.ingest("H2", later, {})
        meter = find_meter(store.engine, "P1", "E1")
        assert (meter.hub_id, meter.hubs) == ("H2", ("H1", "H2"))
        auth = {"Authorization": f"Bearer {tokens['C1']}"}
        q = {"meter_id": "E1", "start": day.isoformat(), "end": (day + timedelta(days=2)).isoformat()}
        with TestClient(app_from_state(tmp_path, clock, db_url)) as client:
            r = client.get(
                "/v1/premises/P1/readings", params={**q, "granularity": "half-hourly"}, headers=auth
            )
            assert r.status_code == 200, r.text
            got = r.json()["readings"]
            assert [x["value"] for x in got] == list(range(100, 196))
            r = client.get("/v1/premises/P1/readings", params={**q, "granularity": "daily"}, headers=auth)
            assert [x["value"] for x in r.json()["readings"]] == [sum(range(100, 148)), sum(range(148, 196))]
            r = client.get(
                "/v1/premises/P1/readings/export", params={**q, "granularity": "half-hourly"}, headers=auth
            )
            assert r.status_code == 200 and len(r.text.strip().splitlines()) == 1 + 96
    finally:
        store.close()


# --- 5. the registry learns meter replacements ------------------------------------------------


async def test_an_applied_meter_replace_registers_the_new_meter_and_keeps_the_old(
    db_url: str, tmp_path: Path
) -> None:
    store, _tokens, _clock = _api_world(db_url, tmp_path)
    try:
        day = int(datetime(2026, 8, 9, 23, tzinfo=UTC).timestamp())
        store.ingest("H1", [StoredReading("H1", "E1", "1-0:1.8.0", day, 1800, 7, 0, 72, 0)], {})
        ca_cert = x509.load_pem_x509_certificate((tmp_path / "ca" / "ca.pem").read_bytes())
        hub = ManagementInterface("H1", ca_cert, ManualClock(NOW), tmp_path / "mgmt.sqlite")
        registry = MeterRegistry(tmp_path / "meters.sqlite", ManualClock(NOW))
        registry.add("E1", "dlms", "electricity")
        for ctype, handler in registry_commands(registry).items():
            hub.register(ctype, handler)
        signer = CommandDesk.from_state(tmp_path, store).signer
        plan = PullPlan(store)
        body = {"old": "E1", "new": "E2", "protocol": "dlms", "fuel": "electricity"}
        plan.queue_command(signer, "H1", "meter.replace", body, NOW)
        # Delivered as a collector does: the hub verifies and applies it, the verdict is recorded.
        (claim,) = plan.claim_urgent("A", NOW, 10)
        verdict = json.loads((await hub.handle(claim.envelope or b"")).to_json())
        plan.finish_urgent(claim, True, NOW, result=verdict)
        from smarthub.gdsc.fleet.meters import learn_meter_replacements

        mark = learn_meter_replacements(store)
        assert mark == claim.id and learn_meter_replacements(store, mark) == mark
        assert store.hub_meters("H1") == {"E1": "electricity", "E2": "electricity"}
        assert find_meter(store.engine, "P1", "E2") == Meter("H1", "E2", "electricity", ("H1",))
        assert len(store.readings_for("H1", "E1", "1-0:1.8.0")) == 1  # the old meter's history stays
        hub.close()
        registry.close()
    finally:
        store.close()


# --- 3. a top-up queued while the hub is away is delivered and settled once -------------------


async def test_top_up_queued_while_the_hub_is_away_is_credited_once_after_it_returns(
    tmp_path: Path, db_url: str, wall_now: datetime
) -> None:
    specs = home_specs(2, seed=5)[1:]  # a DLMS home: prepayment on its breaker meter
    provision(tmp_path, specs, wall_now - timedelta(minutes=10))
    clock = AcceleratedClock(SIM_START, 600.0)
    fleet = Fleet(tmp_path, specs, clock, SIM_START)
    (home,) = fleet.homes
    assert home.consumer.ledger is not None
    url = await home.start_server(tmp_path / "ca" / "ca.pem")
    port = int(url.rsplit(":", 1)[1])
    fleet.write_manifest()
    await home.server.stop()  # the hub is away (its WAN link down) when the top-up is made
    service = GdscService.from_state(
        tmp_path, clock, db_url, window=timedelta(minutes=10), upkeep_every=timedelta(minutes=1)
    )
    service.scheduler.max_tries = 3
    assert service.scheduler.plan is not None
    service.scheduler.plan.max_tries = 3
    store = service.store
    desk = CommandDesk.from_state(tmp_path, store)
    meter = next(m for m, f in home.meters if f == "electricity")
    clock.rebase()
    job, voucher = desk.top_up(
        "S1",
        home.spec.premises_id,
        Meter(home.spec.hub_id, meter, "electricity"),
        "top-up",
        Decimal("10.00"),
        clock.now(),
    )
    run = asyncio.create_task(service.run(SIM_START + timedelta(hours=3), SIM_START))
    try:
        await _until(
            lambda: PullPlan(store).urgent_job(job)["state"] == FAILED, "the first delivery to give up"
        )
        await home.start_server(tmp_path / "ca" / "ca.pem", port=port)  # back

        def credited() -> bool:
            with store.engine.connect() as conn:
                return (
                    conn.execute(select(vouchers.c.status).where(vouchers.c.voucher_id == voucher)).scalar()
                    == "credited"
                )

        await _until(credited, "the voucher to be credited and settled", 90)
        # Credited once on the hub; re-sent as the same voucher under a new command after the
        # first job gave up; nothing queued once it settled.
        assert [t["voucher_id"] for t in home.consumer.ledger.top_ups()].count(voucher) == 1
        sent = _jobs(store, "prepayment.topup")
        assert sent[0].id == job and sent[0].state == FAILED and sent[-1].state == DONE
        assert len({json.loads(json.loads(j.envelope)["payload"])["body"]["voucher"] for j in sent}) == 1
        assert service.upkeep is not None and service.upkeep.vouchers is not None
        assert await asyncio.to_thread(service.upkeep.vouchers.tick, clock.now()) == (0, 0)
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await fleet.stop()
