"""A data service's message on the home's display (issue 25): the tariff advisor's advice and
appliance health's findings reach the IHD through ``POST …/commands/ihd-message`` only with the
GDSC's approval for ``ihd-messages`` and the current occupant's live consent to it; they are shown
as the service's (its name, marked as a third party), never the supplier's; at normal priority at
most and three a day. Over HTTP against a real store, the job handed to a real hub management
interface with the display's store; SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from gdsc.api_world import NOW, World, build
from smarthub.clock import ManualClock
from smarthub.gdsc.commands.service_messages import DAILY_LIMIT
from smarthub.gdsc.governance.parties import PartyRepository, Tenancy
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.hub.ihd.commands import ihd_commands
from smarthub.hub.ihd.store import IhdStore
from smarthub.hub.management import ManagementInterface

MESSAGE = "/v1/premises/P1/commands/ihd-message"
APPLICATION = {
    "organisation": "Cheaper Tariffs Ltd",
    "purpose": "tariff advice, shown on the display",
    "data_kinds": ["readings", "ihd-messages"],
    "granularity": "half-hourly",
    "retention_days": 30,
}


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[tuple[World, TestClient]]:
    w = build(db_url, tmp_path / "state")
    with w.client() as client:
        yield w, client
    w.store.close()


def onboard(w: World, client: TestClient, kinds: list[str]) -> str:
    """TP applies for ``kinds`` and is approved; an access token of its OAuth2 client."""
    r = client.post("/v1/services", json={**APPLICATION, "data_kinds": kinds}, headers=w.auth("TP"))
    assert r.status_code == 201, r.text
    r = client.post("/v1/services/TP/decisions", json={"decision": "approve"}, headers=w.auth("OP"))
    assert r.status_code == 200, r.text
    creds = r.json()["credentials"]
    basic = base64.b64encode(f"{creds['client_id']}:{creds['client_secret']}".encode()).decode()
    r = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def consent(w: World, client: TestClient, kinds: list[str]) -> str:
    body = {
        "party_id": "TP",
        "data_kinds": kinds,
        "granularity": "half-hourly",
        "purpose": "tariff advice",
        "expires_at": (w.clock.now() + timedelta(days=90)).isoformat(),
    }
    r = client.post("/v1/premises/P1/consents", json=body, headers=w.auth("C1"))
    assert r.status_code == 201, r.text
    return str(r.json()["consent_id"])


def send(
    client: TestClient, token: str, text: str = "Tariff advice: Agile would save £868.07.", **more: Any
) -> Any:
    body = {"meter_id": "E1", "text": text, **more}
    return client.post(MESSAGE, json=body, headers={"Authorization": f"Bearer {token}"})


def deliver(w: World, tmp_path: Path) -> IhdStore:
    """Every queued job carried to a real hub's management interface, as a collector would."""
    hub = ManagementInterface("H1", w.ca_cert, ManualClock(NOW), tmp_path / "mgmt.sqlite")
    ihd = IhdStore(tmp_path / "ihd.sqlite")
    hub.register("ihd.message", ihd_commands(ihd, None, ManualClock(NOW))["ihd.message"])  # type: ignore[arg-type]
    plan = PullPlan(w.store)
    while claims := plan.claim_urgent("A", w.clock.now(), 100):  # a hub's commands one at a time
        for claim in claims:
            assert claim.envelope is not None
            verdict = json.loads(asyncio.run(hub.handle(claim.envelope)).to_json())
            assert verdict["status"] == "applied", verdict
            plan.finish_urgent(claim, True, w.clock.now(), result=verdict)
    return ihd


def test_a_consented_service_message_reaches_the_display_as_the_services(
    world: tuple[World, TestClient], tmp_path: Path
) -> None:
    w, client = world
    token = onboard(w, client, ["readings", "ihd-messages"])
    # Approved for it, but the occupant has not consented: refused with the reason, audited.
    r = send(client, token)
    assert r.status_code == 403, r.text
    assert r.json()["detail"] == "no live consent for TP at P1 covering ihd-messages"
    # The advisor's readings consent alone does not open the display.
    readings_only = consent(w, client, ["readings"])
    assert send(client, token).status_code == 403

    consent_id = consent(w, client, ["readings", "ihd-messages"])
    r = send(client, token)
    assert r.status_code == 202, r.text
    job = r.json()["job_id"]
    # It follows its own job like any caller.
    assert client.get(f"/v1/jobs/{job}", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    # The supplier's own message, as before.
    r = client.post(MESSAGE, json={"meter_id": "E1", "text": "Meter exchange Monday"}, headers=w.auth("S1"))
    assert r.status_code == 202, r.text

    ihd = deliver(w, tmp_path)
    shown = {m.sender: m for m in ihd.messages(NOW)}
    service, supplier = shown["TP"], shown["S1"]
    # The display's record says whose it is: the service's approved name, a third party.
    assert (service.origin, service.sender_name, service.third_party) == (
        "third-party",
        "Cheaper Tariffs Ltd",
        True,
    )
    assert service.text == "Tariff advice: Agile would save £868.07." and service.priority == 1
    assert (supplier.origin, supplier.sender_name, supplier.third_party) == ("supplier", None, False)
    sent = [e for e in w.guard.audit.entries() if e.action == "command:ihd-message" and e.actor == "TP"]
    assert [e.allow for e in sent] == [False, False, True]
    assert sent[-1].reason == f"consent {consent_id}: messages on the occupant's display"
    assert sent[-1].detail["detail"]["origin"] == "third-party"

    # The occupant's view of its services counts what TP put on the display (not as a read).
    (offer,) = client.get("/v1/premises/P1/services", headers=w.auth("C1")).json()
    assert offer["data_kinds"] == ["ihd-messages", "readings"]
    assert sorted(offer["consents"]) == sorted([readings_only, consent_id])
    assert (offer["messages_total"], offer["reads_total"]) == (1, 0)
    assert offer["last_message_at"] == sent[-1].at.isoformat().replace("+00:00", "Z")
    # Withdrawn: the next message is refused.
    r = client.delete(f"/v1/premises/P1/consents/{consent_id}", headers=w.auth("C1"))
    assert r.status_code == 204
    r = send(client, token)
    assert r.status_code == 403 and "covering ihd-messages" in r.json()["detail"]
    assert client.delete(f"/v1/premises/P1/consents/{readings_only}", headers=w.auth("C1")).status_code == 204


def test_a_service_cannot_pose_as_the_supplier_nor_flood_the_display(world: tuple[World, TestClient]) -> None:
    w, client = world
    token = onboard(w, client, ["ihd-messages"])
    consent(w, client, ["ihd-messages"])
    # High and very high priority are the supplier's.
    r = send(client, token, priority=2)
    assert r.status_code == 400 and "priority 1 (normal) at most" in r.json()["detail"]
    # Its token carries ihd-messages, not the commands' scope: no top-up, no supply switch.
    r = client.post(
        "/v1/premises/P1/commands/top-up",
        json={"meter_id": "E1", "amount": "5.00"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 403 and "insufficient_scope" in r.headers["www-authenticate"]
    # With a credential of every scope the policy still refuses it any other command.
    r = client.post(
        "/v1/premises/P1/commands/top-up", json={"meter_id": "E1", "amount": "5.00"}, headers=w.auth("TP")
    )
    assert (
        r.status_code == 403
        and r.json()["detail"] == "command:top-up is not open to third-party data services"
    )

    token = w.tokens["TP"]  # a credential that outlives the OAuth2 token's 15 minutes
    for i in range(DAILY_LIMIT):
        assert send(client, token, text=f"finding {i}").status_code == 202
        w.clock.advance(timedelta(hours=1))
    r = send(client, token, text="one too many")
    assert r.status_code == 429, r.text
    assert "3 messages to P1's display in the last 24 hours" in r.json()["detail"]
    assert int(r.headers["retry-after"]) == 21 * 3600  # the first leaves the day 21 hours from now
    # The supplier is not limited by the services' count.
    r = client.post(MESSAGE, json={"meter_id": "E1", "text": "Meter exchange Monday"}, headers=w.auth("S1"))
    assert r.status_code == 202, r.text
    w.clock.advance(timedelta(hours=21))
    assert send(client, token, text="a day later").status_code == 202


def test_suspension_revocation_approval_and_tenancy_each_refuse(world: tuple[World, TestClient]) -> None:
    w, client = world
    token = onboard(w, client, ["readings", "ihd-messages"])
    consent(w, client, ["ihd-messages"])
    assert send(client, token).status_code == 202
    decide = "/v1/services/TP/decisions"
    r = client.post(decide, json={"decision": "suspend", "reason": "complaint"}, headers=w.auth("OP"))
    assert r.status_code == 200, r.text
    r = send(client, token)
    assert (r.status_code, r.json()["detail"]) == (403, "data service TP is suspended: complaint")
    assert (
        client.post(decide, json={"decision": "resume", "reason": "closed"}, headers=w.auth("OP")).status_code
        == 200
    )
    assert send(client, token).status_code == 202

    # A new occupant: the previous one's consent does not carry over.
    repo = PartyRepository(w.store.engine)
    w.clock.advance(timedelta(minutes=1))
    with w.store.engine.begin() as conn:
        repo.end_tenancy("T1", w.clock.now(), conn)
        repo.add_tenancy(Tenancy("T2", "P1", "C1", w.clock.now()), conn)
    r = send(client, token)
    assert r.status_code == 403 and "no live consent" in r.json()["detail"]

    r = client.post(decide, json={"decision": "revoke", "reason": "struck off"}, headers=w.auth("OP"))
    assert r.status_code == 200, r.text
    assert send(client, token).status_code == 401  # its client is gone
    r = client.post(MESSAGE, json={"meter_id": "E1", "text": "hi"}, headers=w.auth("TP"))
    assert (r.status_code, r.json()["detail"]) == (403, "data service TP is revoked: struck off")


def test_a_service_approved_for_readings_only_cannot_message(world: tuple[World, TestClient]) -> None:
    w, client = world
    token = onboard(w, client, ["readings"])
    body = {
        "party_id": "TP",
        "data_kinds": ["ihd-messages"],
        "granularity": "none",
        "purpose": "advice on the display",
        "expires_at": (w.clock.now() + timedelta(days=90)).isoformat(),
    }
    r = client.post("/v1/premises/P1/consents", json=body, headers=w.auth("C1"))
    assert (r.status_code, r.json()["detail"]) == (400, "data service TP is not approved for ihd-messages")
    r = send(client, token)
    assert r.status_code == 403 and "insufficient_scope" in r.headers["www-authenticate"]
    r = client.post(MESSAGE, json={"meter_id": "E1", "text": "hi"}, headers=w.auth("TP"))
    assert r.status_code == 403
    assert r.json()["detail"] == "data service TP is approved for readings only, not ihd-messages"


def test_requests_at_the_same_instant_never_pass_the_limit_together(world: tuple[World, TestClient]) -> None:
    """Six messages of one service sent at once (the API under uvicorn, each request on its own
    thread): the count in the queuing transaction lets exactly the day's three through."""
    w, client = world
    onboard(w, client, ["ihd-messages"])
    consent(w, client, ["ihd-messages"])
    n = 2 * DAILY_LIMIT
    start = threading.Barrier(n)

    def one(i: int) -> int:
        start.wait()
        body = {"meter_id": "E1", "text": f"finding {i}"}
        return httpx.post(base + MESSAGE, json=body, headers=w.auth("TP"), timeout=120).status_code

    with w.served() as base, ThreadPoolExecutor(n) as pool:
        codes = sorted(pool.map(one, range(n)))
    assert codes == [202] * DAILY_LIMIT + [429] * DAILY_LIMIT
    mine = client.get("/v1/jobs", headers=w.auth("TP")).json()
    assert len(mine["jobs"]) == DAILY_LIMIT  # only three were queued for the display
