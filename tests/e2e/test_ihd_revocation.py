"""One tap on the home's display ends a third party's access at the GDSC (issue 25 item 3).

The whole path is real: the occupant consents to a data service through the data services API
(FastAPI), the GDSC's upkeep step sends the display its ``ihd.services`` view, carried by the
command courier over mutual TLS to a hub's WAN server and applied by its management interface;
a paired screen presses "Stop sharing" on the display's "Data services" page (HTTP to the IHD);
the GDSC's collector pulls the hub over mutual TLS, reads the request the answer announced
(``Smarthub-Revocations``, ``GET /crv``), has it applied by the governance the API's revocation
uses and answers it (``PUT /crv``); the service's next API request is 403. SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from fastapi.testclient import TestClient
from hub.ihd_home import ELEC, GAS, make_home, paired_session, pki

from smarthub.clock import ManualClock
from smarthub.gdsc.api.app import create_app
from smarthub.gdsc.api.auth.tokens import TokenStore
from smarthub.gdsc.commands.desk import CommandDesk
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.commands.vouchers import VoucherIssuer
from smarthub.gdsc.fleet.pki import Role as CertRole
from smarthub.gdsc.governance.access import Action
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.consent_sync import syncing_parties
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.gdsc.governance.hub_revocations import HubRevocations
from smarthub.gdsc.governance.parties import Party, PartyRepository, Role, Tenancy
from smarthub.gdsc.governance.service_view import ServiceViews
from smarthub.gdsc.pull.collector import Collector
from smarthub.gdsc.pull.courier import CommandCourier
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.store import Store
from smarthub.hub.privacy import Granularity, consent_command
from smarthub.wan.contract.revocations import RevocationAnswer, RevocationRequest
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context

START = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # the hub's readings: 23 November (GMT)


async def deliver(plan: PullPlan, courier: CommandCourier, now: datetime) -> list[str]:
    """A collector's tick of urgent work: every queued command carried to the hub; their types."""
    done: list[str] = []
    while claims := plan.claim_urgent("c1", now, 100):  # a hub's commands go one at a time, in order
        for claim in claims:
            assert claim.envelope is not None
            verdict = await courier.deliver(claim.hub, claim.envelope)
            plan.finish_urgent(claim, verdict.get("status") == "applied", now, result=verdict)
            assert verdict["status"] == "applied", verdict
            done.append(str(claim.command_type))
    return done


async def test_stop_sharing_on_the_display_ends_the_services_api_access(
    tmp_path: Path, db_url: str, wall_now: datetime
) -> None:
    ca, operator = pki(START)
    home = make_home(tmp_path / "hub", START, prepayment=False, plugs=(), ca=(ca, operator))
    home.management.register("consent.set", consent_command(home.consent, home.clock))
    hub_cert = ca.issue(CertRole.HUB, "HUB000001", wall_now, hosts=("127.0.0.1",))
    hub_cert.save(tmp_path, "hub")
    ca.issue(CertRole.COLLECTOR, "collector", wall_now).save(tmp_path, "collector")
    ca.save(tmp_path / "ca")
    server = HubWanServer(
        "HUB000001",
        hub_cert.lfdi,
        home.hub,
        lambda: int(home.clock.now().timestamp()),
        management=home.management,
        privacy=home.privacy,
    )
    server.revocations = home.side.revocations  # as the hub's assembly wires it
    port = await server.start(
        "127.0.0.1", 0, server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    )
    collector_tls = client_context(
        tmp_path / "collector.pem", tmp_path / "collector.key", tmp_path / "ca" / "ca.pem"
    )
    store = Store(db_url)
    store.create_schema()
    courier = CommandCourier(collector_tls)
    clock = ManualClock(wall_now)  # the hub checks a command's time against its wall clock
    collector = Collector(store, collector_tls, clock)
    screen: aiohttp.ClientSession | None = None
    try:
        home.run(START, START + timedelta(days=1))
        home.consent.set("gdsc", Granularity.HALF_HOURLY, START)  # the supplier's billing consent
        url = await home.side.serve()

        # The GDSC: the home's hub, its occupant, a data service; the API and the upkeep's views.
        store.register_hub(
            hub_id="HUB000001",
            premises_id="P1",
            url=f"https://127.0.0.1:{port}",
            lfdi=hub_cert.lfdi,
            meters_by_fuel=[(ELEC, "electricity"), (GAS, "gas")],
        )
        parties = PartyRepository(store.engine)
        for p in (Party("C1", Role.CONSUMER), Party("ADV", Role.THIRD_PARTY)):
            parties.add_party(p)
        parties.add_tenancy(Tenancy("T1", "P1", "C1", START - timedelta(days=30)))
        assert operator.private_key is not None
        signer = CommandSigner(operator.private_key, operator.cert_pem, store.next_command_counter)
        desk = CommandDesk(store, signer, VoucherIssuer(store, operator.private_key, operator.cert_pem))
        audit = AuditLog(store.engine)
        guard = AccessGuard(syncing_parties(store, signer, clock), audit, clock)
        collector.revocations = HubRevocations(guard)  # as GdscService.build wires it
        plan = PullPlan(store)
        views = ServiceViews(store.engine, audit, plan, signer)
        tokens = TokenStore(store.engine)
        occupant = {"Authorization": f"Bearer {tokens.issue('C1', wall_now)}"}
        service = {"Authorization": f"Bearer {tokens.issue('ADV', wall_now)}"}
        (hub,) = store.active_hubs()

        first = await collector.pull(hub, wall_now)  # the readings reach the GDSC
        assert first.ok and first.readings > 0, first
        day = {
            "meter_id": ELEC,
            "start": START.isoformat(),
            "end": (START + timedelta(days=1)).isoformat(),
            "granularity": "daily",
        }
        with TestClient(create_app(guard, tokens, desk)) as api:
            grant = {
                "party_id": "ADV",
                "data_kinds": ["readings"],
                "granularity": "daily",
                "purpose": "tariff advice",
                "expires_at": (wall_now + timedelta(days=90)).isoformat(),
            }
            r = api.post("/v1/premises/P1/consents", json=grant, headers=occupant)
            assert r.status_code == 201, r.text
            consent_id = r.json()["consent_id"]
            assert api.get("/v1/premises/P1/readings", params=day, headers=service).status_code == 200

            # The upkeep sends the display its view; the courier carries it (and the consent.set).
            clock.advance(timedelta(minutes=1))
            assert "P1" in views.tick(clock.now())
            assert sorted(await deliver(plan, courier, clock.now())) == ["consent.set", "ihd.services"]
            assert home.consent.granularity("ADV") is Granularity.DAILY

            # The occupant taps "Stop sharing" on a paired screen.
            screen = await paired_session(url, home.side.store.new_pairing_code(home.clock.now()), "Hall")
            page = await (await screen.get(url + "/services")).text()
            assert f'id="stop-{consent_id}"' in page
            token = re.search(r'name="csrf" value="([^"]+)"', page)
            assert token is not None
            r2 = await screen.post(
                url + "/services/stop", data={"consent_id": consent_id, "csrf": token.group(1)}
            )
            assert r2.status == 200 and "You asked to stop this at" in await r2.text()
            assert home.consent.granularity("ADV") is Granularity.NONE  # the hub, at once
            # The GDSC has not pulled yet: the service still reads the GDSC's copy.
            assert api.get("/v1/premises/P1/readings", params=day, headers=service).status_code == 200

            # A pull whose deciding fails (a bug, the database away) leaves the request waiting.
            revocations = home.side.revocations
            assert revocations is not None
            decide = collector.revocations

            def broken(hub_id: str, requests: list[RevocationRequest]) -> list[RevocationAnswer]:
                raise RuntimeError("the database is away")

            collector.revocations = broken
            clock.advance(timedelta(minutes=30))
            assert (await collector.pull(hub, clock.now())).ok
            assert [r.consent_id for r in revocations.pending()] == [consent_id]
            collector.revocations = decide

            # The next pull carries the request; the GDSC applies it and answers.
            clock.advance(timedelta(minutes=30))
            pulled = await collector.pull(hub, clock.now())
            assert pulled.ok and collector.revocations_answered == 1, pulled
            revoked = api.get("/v1/premises/P1/readings", params=day, headers=service)
            assert revoked.status_code == 403, revoked.text
            assert "consent" in revoked.json()["detail"]
            assert revocations.pending() == []
            assert revocations.latest()[consent_id].state == "applied"
            (entry,) = [
                e for e in audit.entries() if e.action == Action.MANAGE_CONSENT.value and e.actor == "C1"
                and e.detail.get("detail", {}).get("via")
            ]  # fmt: skip
            assert entry.allow and entry.detail["detail"]["via"]["hub_id"] == "HUB000001"
            assert entry.detail["detail"]["via"]["screen"].startswith("Hall #")

            # Another pull: nothing waits, nothing is asked again.
            clock.advance(timedelta(minutes=30))
            assert (await collector.pull(hub, clock.now())).ok and collector.revocations_answered == 1

            # The next view from the GDSC shows the consent ended.
            clock.advance(timedelta(minutes=1))
            assert "P1" in views.tick(clock.now())
            assert "ihd.services" in await deliver(plan, courier, clock.now())
        page = await (await screen.get(url + "/services")).text()
        adv = page[page.index('data-service="ADV"') :]
        assert "No consent now." in adv and "Sharing stopped at your request" in adv
        assert f'id="stop-{consent_id}"' not in page
    finally:
        if screen is not None:
            await screen.close()
        await collector.close()
        await courier.close()
        await server.stop()
        store.close()
        await home.close()
