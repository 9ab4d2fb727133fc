"""A consent revocation asked at a home's display, applied at the GDSC (issue 25 item 3): through
the governance the API's revocation uses (the occupant as the actor, audited; ``consent.set``
queued for the hub), only for a consent of the asking hub's premises' current tenancy (anything
else refused, audited with the hub as the actor), idempotent when the hub asks again. SQLite and
PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from gdsc.api_world import DAY1, World, build, readings
from smarthub.gdsc.api.auth.tokens import TokenStore
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.registry import hubs
from smarthub.gdsc.governance.access import Action
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.consent_sync import syncing_parties
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.gdsc.governance.hub_revocations import HUB_ROLE, HubRevocations
from smarthub.gdsc.governance.parties import Party, PartyRepository, Role, Tenancy
from smarthub.gdsc.pull.tables import urgent_work
from smarthub.wan.contract.revocations import APPLIED, REFUSED, RevocationRequest

DAY = {
    "meter_id": "E1",
    "start": DAY1.isoformat(),
    "end": (DAY1 + timedelta(days=1)).isoformat(),
    "granularity": "daily",
}


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[tuple[World, TestClient]]:
    w = build(db_url, tmp_path / "state")
    # A second home: P2 (hub H2), its occupant C2.
    w.store.register_hub(
        hub_id="H2", premises_id="P2", url="https://h2", lfdi="B" * 40, meters_by_fuel=[("E2", "electricity")]
    )
    w.store.ingest("H2", readings("H2", "E2", DAY1, 48), {})
    repo = PartyRepository(w.store.engine)
    repo.add_party(Party("C2", Role.CONSUMER))
    repo.add_tenancy(Tenancy("T2", "P2", "C2", DAY1 - timedelta(days=30)))
    w.tokens["C2"] = TokenStore(w.store.engine).issue("C2", w.clock.now())
    with w.client() as client:
        yield w, client
    w.store.close()


def consent(w: World, client: TestClient, premises: str, occupant: str) -> str:
    body = {
        "party_id": "TP",
        "data_kinds": ["readings"],
        "granularity": "daily",
        "purpose": "tariff comparison",
        "expires_at": (w.clock.now() + timedelta(days=90)).isoformat(),
    }
    r = client.post(f"/v1/premises/{premises}/consents", json=body, headers=w.auth(occupant))
    assert r.status_code == 201, r.text
    return str(r.json()["consent_id"])


def ask(consent_id: str, n: int, w: World) -> RevocationRequest:
    return RevocationRequest(f"r{n}", consent_id, "TP", w.clock.now() - timedelta(minutes=3), "Kitchen #1")


def entries(w: World, since: int) -> list[Any]:
    return [
        e
        for e in AuditLog(w.store.engine).entries()
        if e.seq > since and e.action == Action.MANAGE_CONSENT.value
    ]


def test_the_hubs_request_is_applied_as_the_occupants_and_audited(
    world: tuple[World, TestClient], tmp_path: Path
) -> None:
    w, client = world
    signer = CommandSigner.from_files(
        str(w.state / "gdsc" / "operator.pem"),
        str(w.state / "gdsc" / "operator.key"),
        w.store.next_command_counter,
    )
    revocations = HubRevocations(
        AccessGuard(syncing_parties(w.store, signer, w.clock), AuditLog(w.store.engine), w.clock)
    )
    k1 = consent(w, client, "P1", "C1")
    k2 = consent(w, client, "P2", "C2")
    params = {**DAY, "meter_id": "E2"}
    assert client.get("/v1/premises/P1/readings", params=DAY, headers=w.auth("TP")).status_code == 200
    assert client.get("/v1/premises/P2/readings", params=params, headers=w.auth("TP")).status_code == 200
    w.clock.advance(timedelta(minutes=5))
    seq = AuditLog(w.store.engine).head()[0]

    # H1 asks to end its occupant's consent, and (a hub compromised, or confused) P2's.
    applied, foreign, unknown = revocations("H1", [ask(k1, 1, w), ask(k2, 2, w), ask("nope", 3, w)])
    now = w.clock.now()
    assert (applied.request_id, applied.state, applied.at) == ("r1", APPLIED, now)
    assert (foreign.state, unknown.state) == (REFUSED, REFUSED)
    assert (
        f"consent {k2!r} is not one of the current tenancy's at P1, the premises of hub H1" in foreign.reason
    )
    assert (revocations.applied, revocations.refused) == (1, 2)

    # Audited: the occupant revoked through the hub's display; the hub's foreign requests refused.
    ok, bad, bad2 = entries(w, seq)
    assert (ok.actor, ok.role, ok.premises_id, ok.allow) == ("C1", "consumer", "P1", True)
    assert ok.detail["detail"]["consent_id"] == k1
    assert ok.detail["detail"]["via"] == {
        "hub_id": "H1",
        "request_id": "r1",
        "screen": "Kitchen #1",
        "requested_at": (now - timedelta(minutes=3)).isoformat(),
    }
    assert (bad.actor, bad.role, bad.premises_id, bad.allow) == ("H1", HUB_ROLE, "P1", False)
    assert bad.detail["consent_id"] == k2 and bad.reason == foreign.reason
    assert (bad2.actor, bad2.allow, bad2.detail["consent_id"]) == ("H1", False, "nope")

    # The third party's next request is refused; P2's consent is untouched.
    r = client.get("/v1/premises/P1/readings", params=DAY, headers=w.auth("TP"))
    assert r.status_code == 403, r.text
    assert client.get("/v1/premises/P2/readings", params=params, headers=w.auth("TP")).status_code == 200
    listed = client.get("/v1/premises/P1/consents", headers=w.auth("C1")).json()
    assert [(c["consent_id"], c["revoked_at"] is not None) for c in listed] == [(k1, True)]

    # The hub gets the new state of its privacy filter: consent.set (nothing for TP) to H1.
    with w.store.engine.connect() as c:
        jobs = c.execute(
            select(urgent_work.c.hub_id, urgent_work.c.command_type, urgent_work.c.envelope).where(
                urgent_work.c.command_type == "consent.set"
            )
        ).all()
    last = [json.loads(json.loads(j.envelope)["payload"])["body"] for j in jobs if j.hub_id == "H1"][-1]
    assert (last["recipient"], last["granularity"]) == ("TP", "none")

    # The answer was lost: the hub asks again at the next pull. Same answer, nothing new done.
    w.clock.advance(timedelta(minutes=30))
    seq = AuditLog(w.store.engine).head()[0]
    (again,) = revocations("H1", [ask(k1, 1, w)])
    assert (again.state, again.at) == (APPLIED, now)
    assert entries(w, seq) == [] and revocations.applied == 1

    # A hub no longer active may not revoke anything; P2's own hub may end P2's consent.
    with w.store.engine.begin() as c:
        c.execute(update(hubs).where(hubs.c.hub_id == "H2").values(status="decommissioned"))
    (gone,) = revocations("H2", [ask(k2, 4, w)])
    assert (gone.state, gone.reason) == (REFUSED, "hub H2 is not an active hub")
    assert client.get("/v1/premises/P2/readings", params=params, headers=w.auth("TP")).status_code == 200
    with w.store.engine.begin() as c:
        c.execute(update(hubs).where(hubs.c.hub_id == "H2").values(status="active"))
    (h2,) = revocations("H2", [ask(k2, 5, w)])
    assert h2.state == APPLIED
    assert client.get("/v1/premises/P2/readings", params=params, headers=w.auth("TP")).status_code == 403
