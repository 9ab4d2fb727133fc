"""A data service's message reaches a real hub's display as the service's, never the supplier's
(issue 25: the tariff advisor's advice, appliance health's findings on the IHD).

The whole path is real: the service applies and is approved through the data services API
(FastAPI), the occupant consents to its ``ihd-messages``, the service sends a message with its
OAuth2 access token; the access policy decides and audits it, the operator-signed ``ihd.message``
is queued in the shared plan, claimed as a collector claims it and carried by the command courier
over mutual TLS to a hub's WAN server, whose management interface keeps it in the display's store;
a paired screen (HTTP to the IHD) sees it under the service's name with the third-party mark and
acknowledges it. The supplier's message beside it carries no such mark. SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from hub.ihd_home import ELEC, GAS, make_home, paired_session, pki

from smarthub.clock import ManualClock
from smarthub.gdsc.api.app import create_app
from smarthub.gdsc.api.auth.tokens import TokenStore
from smarthub.gdsc.commands.desk import CommandDesk
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.commands.vouchers import VoucherIssuer
from smarthub.gdsc.fleet.pki import Role as CertRole
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.gdsc.governance.parties import Fuel, Party, PartyRepository, Role, SupplyPeriod, Tenancy
from smarthub.gdsc.pull.courier import CommandCourier
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.store import Store
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context

START = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
AT = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # the display's "now": an hour of readings is enough
ADVICE = "Tariff advice: over the last 12 months Agile would have cost £1,839.60, saving £868.07."
MARK = "a data service you share with, not your energy supplier"


def _message_items(page: str) -> dict[str, str]:
    """The display's messages section: each message's list item by its text."""
    return {
        m.group(2): m.group(1)
        for m in re.finditer(r'<li class="msg[^"]*"[^>]*>(.*?)<p>([^<]*)</p>', page, flags=re.S)
    }


async def test_a_consented_service_message_reaches_the_display_under_its_own_name(
    tmp_path: Path, db_url: str, wall_now: datetime
) -> None:
    ca, operator = pki(START)
    home = make_home(tmp_path / "hub", START, prepayment=False, plugs=(), ca=(ca, operator))
    hub_cert = ca.issue(CertRole.HUB, "HUB000001", wall_now, hosts=("127.0.0.1",))
    hub_cert.save(tmp_path, "hub")
    ca.issue(CertRole.COLLECTOR, "collector", wall_now).save(tmp_path, "collector")
    ca.save(tmp_path / "ca")
    server = HubWanServer("HUB000001", hub_cert.lfdi, home.hub, lambda: 0, management=home.management)
    port = await server.start(
        "127.0.0.1", 0, server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    )
    store = Store(db_url)
    store.create_schema()
    courier = CommandCourier(
        client_context(tmp_path / "collector.pem", tmp_path / "collector.key", tmp_path / "ca" / "ca.pem")
    )
    screen = None
    try:
        home.run(START, AT)
        home.clock.set(AT)
        url = await home.side.serve()

        # The GDSC: the home's hub and meters, its supplier and occupant, a would-be data service.
        store.register_hub(
            hub_id="HUB000001",
            premises_id="P1",
            url=f"https://127.0.0.1:{port}",
            lfdi=hub_cert.lfdi,
            meters_by_fuel=[(ELEC, "electricity"), (GAS, "gas")],
        )
        parties = PartyRepository(store.engine)
        for p in (
            Party("NP", Role.SUPPLIER),
            Party("C1", Role.CONSUMER),
            Party("ADV", Role.THIRD_PARTY),
            Party("OPS", Role.OPERATOR),
        ):
            parties.add_party(p)
        parties.add_supply_period(SupplyPeriod("P1", Fuel.ELECTRICITY, "NP", wall_now - timedelta(days=30)))
        parties.add_tenancy(Tenancy("T1", "P1", "C1", wall_now - timedelta(days=30)))
        clock = ManualClock(wall_now)  # the hub checks a command's time against its wall clock
        assert operator.private_key is not None
        signer = CommandSigner(operator.private_key, operator.cert_pem, store.next_command_counter)
        desk = CommandDesk(store, signer, VoucherIssuer(store, operator.private_key, operator.cert_pem))
        guard = AccessGuard(parties, AuditLog(store.engine), clock)
        tokens = TokenStore(store.engine)
        auth = {
            p: {"Authorization": f"Bearer {tokens.issue(p, wall_now)}"} for p in ("NP", "C1", "ADV", "OPS")
        }

        with TestClient(create_app(guard, tokens, desk)) as api:
            application = {
                "organisation": "Cheaper Tariffs Ltd",
                "purpose": "tariff advice, shown on the display",
                "data_kinds": ["readings", "ihd-messages"],
                "granularity": "half-hourly",
                "retention_days": 30,
            }
            assert api.post("/v1/services", json=application, headers=auth["ADV"]).status_code == 201
            r = api.post("/v1/services/ADV/decisions", json={"decision": "approve"}, headers=auth["OPS"])
            assert r.status_code == 200, r.text
            creds = r.json()["credentials"]
            basic = base64.b64encode(f"{creds['client_id']}:{creds['client_secret']}".encode()).decode()
            r = api.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                headers={"Authorization": f"Basic {basic}"},
            )
            assert r.status_code == 200, r.text
            service = {"Authorization": f"Bearer {r.json()['access_token']}"}
            message = {"meter_id": ELEC, "text": ADVICE}
            path = "/v1/premises/P1/commands/ihd-message"
            r = api.post(path, json=message, headers=service)
            assert r.status_code == 403, r.text  # the occupant has not consented yet

            grant = {
                "party_id": "ADV",
                "data_kinds": ["ihd-messages"],
                "granularity": "none",
                "purpose": "tariff advice on my display",
                "expires_at": (wall_now + timedelta(days=90)).isoformat(),
            }
            r = api.post("/v1/premises/P1/consents", json=grant, headers=auth["C1"])
            assert r.status_code == 201, r.text
            consent_id = r.json()["consent_id"]
            r = api.post(path, json=message, headers=service)
            assert r.status_code == 202, r.text
            job = r.json()["job_id"]
            r = api.post(
                path, json={"meter_id": ELEC, "text": "Meter exchange on Monday"}, headers=auth["NP"]
            )
            assert r.status_code == 202, r.text

            # A collector's ticks: each queued command carried over mutual TLS, its verdict kept.
            plan = PullPlan(store)
            while claims := plan.claim_urgent("c1", wall_now, 10):
                for claim in claims:
                    assert claim.envelope is not None
                    verdict = await courier.deliver(claim.hub, claim.envelope)
                    plan.finish_urgent(claim, True, wall_now, result=verdict)
                    assert verdict["status"] == "applied", verdict
            state = api.get(f"/v1/jobs/{job}", headers=service).json()
            assert state["state"] == "done" and state["result"]["result"]["new"] is True, state

            # The occupant's view lists the service with its approval and consent to the new kind.
            (offer,) = api.get("/v1/premises/P1/services", headers=auth["C1"]).json()
            assert offer["data_kinds"] == ["ihd-messages", "readings"] and offer["consents"] == [consent_id]

        screen = await paired_session(url, home.side.store.new_pairing_code(home.clock.now()))
        page = await (await screen.get(url + "/")).text()
        items = _message_items(page)
        assert set(items) == {ADVICE, "Meter exchange on Monday"}, page
        assert "<strong>Cheaper Tariffs Ltd</strong>" in items[ADVICE] and MARK in items[ADVICE]
        assert "<strong>NP</strong>" in items["Meter exchange on Monday"]
        assert MARK not in items["Meter exchange on Monday"]  # the supplier's, unmarked
        assert 'class="msg p1 third-party"' in page

        # The occupant opens it and acknowledges it ("OK, got it"): it is gone from the display.
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        r2 = await screen.post(
            url + "/messages/ack", data={"sender": "ADV", "id": _id_of(page, ADVICE), "csrf": csrf.group(1)}
        )
        assert r2.status == 200
        assert set(_message_items(await (await screen.get(url + "/")).text())) == {"Meter exchange on Monday"}
    finally:
        if screen is not None:
            await screen.close()
        await courier.close()
        await server.stop()
        store.close()
        await home.close()


def _id_of(page: str, text: str) -> str:
    m = re.search(r'data-id="([^"]+)">(?:(?!</li>).)*<p>' + re.escape(text), page, flags=re.S)
    assert m is not None, page
    return m.group(1)
