"""A tariff sent through the data services API changes the price on a real hub's display.

Issue 13 item 10: the API's ``tariff-update`` command carried neither ``fuel`` nor ``version``, so
every hub refused it. Here the whole path is real: a supplier's request to the API (FastAPI), the
access policy and audit, the operator-signed command queued in the shared plan, claimed as a
collector claims it and carried by the command courier over mutual TLS to a hub's WAN server, the
hub's management interface applying it, and the in-home display's page showing the new rate.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
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
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.gdsc.governance.parties import Fuel, Party, PartyRepository, Role, SupplyPeriod
from smarthub.gdsc.pull.courier import CommandCourier
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.store import Store
from smarthub.model.tariff import Flat
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context

START = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # a Monday; London is on GMT
DAY2 = date(2026, 11, 24)
AT = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # the display's "now": a day-rate hour of day 2


async def display_rate(s: aiohttp.ClientSession, url: str) -> str:
    """The "Now: …" rate line of the display's home page, as a paired screen sees it."""
    page = await (await s.get(url + "/")).text()
    m = re.search(r'<p class="rate">Now: <strong>([^<]+)</strong>', page)
    assert m is not None, page
    return m.group(1)


async def test_a_tariff_sent_through_the_api_changes_the_price_on_the_display(
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
    try:
        home.run(START, AT)
        home.clock.set(AT)
        url = await home.side.serve()
        screen = await paired_session(url, home.side.store.new_pairing_code(home.clock.now()))
        before = await display_rate(screen, url)
        v1 = home.side.consumption.supplies["electricity"].accumulator.schedule.versions[-1]
        assert before == "28.38p/kWh"  # 27.03p day rate + 5 % VAT

        # The GDSC: the home's hub and meters, the supplier, the API with the operator's signer.
        store.register_hub(
            hub_id="HUB000001",
            premises_id="P1",
            url=f"https://127.0.0.1:{port}",
            lfdi=hub_cert.lfdi,
            meters_by_fuel=[(ELEC, "electricity"), (GAS, "gas")],
        )
        parties = PartyRepository(store.engine)
        parties.add_party(Party("NP", Role.SUPPLIER))
        parties.add_supply_period(SupplyPeriod("P1", Fuel.ELECTRICITY, "NP", wall_now - timedelta(days=30)))
        clock = ManualClock(wall_now)  # the hub checks a command's time against its wall clock
        assert operator.private_key is not None
        signer = CommandSigner(operator.private_key, operator.cert_pem, store.next_command_counter)
        desk = CommandDesk(store, signer, VoucherIssuer(store, operator.private_key, operator.cert_pem))
        guard = AccessGuard(parties, AuditLog(store.engine), clock)
        tokens = TokenStore(store.engine)
        token = tokens.issue("NP", wall_now)

        v2 = replace(
            v1,
            version=v1.version + 1,
            effective_from=DAY2,
            pricing=Flat(unit_rate_p_per_kwh=Decimal("31.50")),
        )
        with TestClient(create_app(guard, tokens, desk)) as api:
            r = api.post(
                "/v1/premises/P1/commands/tariff-update",
                # The caller names the meter, never the fuel: a stray "fuel" is not taken.
                json={
                    "meter_id": ELEC,
                    "tariff": v2.to_json_dict(),
                    "effective": "2026-11-24T00:00:00+00:00",  # local midnight of effective_from
                    "fuel": "gas",
                },
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 202, r.text
            job = r.json()["job_id"]

            # A collector's tick: claim the urgent work, carry it over mutual TLS, record the verdict.
            plan = PullPlan(store)
            (claim,) = plan.claim_urgent("c1", wall_now, 10)
            assert claim.id == job and claim.envelope is not None
            verdict = await courier.deliver(claim.hub, claim.envelope)
            plan.finish_urgent(claim, True, wall_now, result=verdict)
            assert verdict["status"] == "applied", verdict
            assert verdict["result"]["fuel"] == "electricity" and verdict["result"]["version"] == 2

            state = api.get(f"/v1/jobs/{job}", headers={"Authorization": f"Bearer {token}"}).json()
            assert state["state"] == "done" and state["result"]["status"] == "applied", state

        after = await display_rate(screen, url)
        await screen.close()
        assert after == "33.08p/kWh"  # 31.50p + 5 % VAT, from the version the API sent
        acc = home.side.consumption.supplies["electricity"].accumulator
        assert acc.schedule.versions[-1] == v2
        gas = home.side.consumption.supplies["gas"].accumulator
        assert [t.version for t in gas.schedule.versions] == [1]  # not the caller's "gas"
    finally:
        await courier.close()
        await server.stop()
        store.close()
        await home.close()
