"""Third-party data services (issue 25 item 1): a third party applies, the GDSC operator approves
or refuses with a reason, the approved service gets an OAuth2 client limited to what was approved,
and suspension and revocation take effect at its next request; all of it in the audit log. Over
HTTP against a real store, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gdsc.api_world import DAY1, NOW, World, build
from smarthub.gdsc.api.auth.tokens import TokenStore
from smarthub.gdsc.governance.parties import (
    Consent,
    DataKind,
    Granularity,
    Party,
    PartyRepository,
    Role,
    Tenancy,
)
from smarthub.gdsc.governance.services import Application, DataServices

READINGS = "/v1/premises/P1/readings"
DAY = {"meter_id": "E1", "start": DAY1.isoformat(), "end": (DAY1 + timedelta(days=1)).isoformat()}
APPLICATION = {
    "organisation": "Cheaper Tariffs Ltd",
    "purpose": "tariff comparison",
    "data_kinds": ["readings"],
    "granularity": "daily",
    "retention_days": 365,
}


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[tuple[World, TestClient]]:
    w = build(db_url, tmp_path / "state")
    # The occupant consented to TP's half-hourly readings: finer than TP will be approved for.
    PartyRepository(w.store.engine).grant_consent(
        Consent(
            "K1",
            "TP",
            "P1",
            "T1",
            frozenset({DataKind.READINGS}),
            Granularity.HALF_HOURLY,
            "tariff comparison",
            w.clock.now() - timedelta(days=1),
            w.clock.now() + timedelta(days=365),
        )
    )
    with w.client() as client:
        yield w, client
    w.store.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def oauth(client: TestClient, creds: dict[str, Any], **form: str) -> Any:
    basic = base64.b64encode(f"{creds['client_id']}:{creds['client_secret']}".encode()).decode()
    return client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", **form},
        headers={"Authorization": f"Basic {basic}"},
    )


def decide(
    w: World, client: TestClient, service: str, decision: str, reason: str = "", by: str = "OP"
) -> Any:
    return client.post(
        f"/v1/services/{service}/decisions",
        json={"decision": decision, "reason": reason},
        headers=w.auth(by),
    )


def read(client: TestClient, headers: dict[str, str], granularity: str = "daily") -> Any:
    return client.get(READINGS, params={**DAY, "granularity": granularity}, headers=headers)


def test_apply_approve_read_within_scope_suspend_resume_revoke(world: tuple[World, TestClient]) -> None:
    w, client = world
    r = client.post("/v1/services", json=APPLICATION, headers=w.auth("TP"))
    assert r.status_code == 201, r.text
    assert (r.json()["service_id"], r.json()["status"]) == ("TP", "applied")
    # Pending: the consent alone is not enough, the GDSC has not approved TP yet.
    r = read(client, w.auth("TP"))
    assert r.status_code == 403 and r.json()["detail"] == "data service TP is applied", r.text
    assert client.post("/v1/services", json=APPLICATION, headers=w.auth("TP")).status_code == 409
    assert [s["status"] for s in client.get("/v1/services/mine", headers=w.auth("TP")).json()] == ["applied"]

    # Only the operator decides, and not on its own say-so for other roles.
    for who in ("TP", "S1", "C1", "DNO", "INST"):
        r = decide(w, client, "TP", "approve", by=who)
        assert r.status_code == 403, (who, r.text)
    r = decide(w, client, "TP", "approve", "meets the data-minimisation rules")
    assert r.status_code == 200, r.text
    creds = r.json()["credentials"]
    assert creds["scope"] == "readings:read services tariffs:read"
    assert r.json()["service"]["client_id"] == creds["client_id"]
    assert decide(w, client, "TP", "approve").status_code == 409  # approved already

    # The occupant sees the approved service, what it asks for and their consent to it; a new
    # consent beyond the approval is refused with the reason.
    offers = client.get("/v1/premises/P1/services", headers=w.auth("C1")).json()
    assert [(o["service_id"], o["granularity"], o["consents"]) for o in offers] == [("TP", "daily", ["K1"])]
    assert client.get("/v1/premises/P1/services", headers=w.auth("TP")).status_code == 403
    consent = {
        "party_id": "TP",
        "data_kinds": ["readings"],
        "granularity": "half-hourly",
        "purpose": "tariff comparison",
        "expires_at": (w.clock.now() + timedelta(days=30)).isoformat(),
    }
    r = client.post("/v1/premises/P1/consents", json=consent, headers=w.auth("C1"))
    assert r.status_code == 400, r.text
    assert r.json()["detail"] == "data service TP is approved for daily data at most, not half-hourly"
    r = client.post(
        "/v1/premises/P1/consents", json={**consent, "data_kinds": ["events"]}, headers=w.auth("C1")
    )
    assert r.status_code == 400 and r.json()["detail"] == "data service TP is not approved for events"
    r = client.post(
        "/v1/premises/P1/consents", json={**consent, "granularity": "daily"}, headers=w.auth("C1")
    )
    assert r.status_code == 201, r.text

    # Credentials limited to what was approved.
    r = oauth(client, creds, scope="commands:write")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope", r.text
    token = oauth(client, creds).json()["access_token"]
    ok = read(client, bearer(token))
    assert ok.status_code == 200, ok.text
    assert ok.json()["readings"]  # a day of data, in daily buckets
    finer = read(client, bearer(token), "half-hourly")  # consented, but not approved
    assert finer.status_code == 403, finer.text
    assert finer.json()["detail"] == "data service TP is approved for daily data at most, not half-hourly"
    r = client.post(
        "/v1/premises/P1/commands/ihd-message", json={"meter_id": "E1", "text": "hi"}, headers=bearer(token)
    )
    assert r.status_code == 403 and "insufficient_scope" in r.headers["www-authenticate"]
    assert client.get("/v1/services", headers=bearer(token)).status_code == 403  # not the operator's view

    # Suspension: the very next request is refused, and no new token is issued.
    assert decide(w, client, "TP", "suspend").status_code == 422  # a reason is required (the schema says so)
    assert decide(w, client, "TP", "suspend", "complaint under investigation").status_code == 200
    r = read(client, bearer(token))
    assert r.status_code == 403
    assert r.json()["detail"] == "data service TP is suspended: complaint under investigation"
    r = oauth(client, creds)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
    assert decide(w, client, "TP", "resume", "investigation closed").status_code == 200
    assert read(client, bearer(token)).status_code == 200

    # Revocation: the client's tokens die (401 invalid_token), any other credential gets 403.
    r = decide(w, client, "TP", "revoke", "breach of the retention terms")
    assert r.status_code == 200 and r.json()["service"]["status"] == "revoked", r.text
    r = read(client, bearer(token))
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    assert oauth(client, creds).status_code == 401
    r = read(client, w.auth("TP"))  # its `smarthub gdsc token` bearer token
    assert r.status_code == 403
    assert r.json()["detail"] == "data service TP is revoked: breach of the retention terms"
    assert decide(w, client, "TP", "resume", "please").status_code == 409  # revocation is final

    # Everything in the audit log: the application, each decision with its reason, the refusals.
    entries = w.guard.audit.entries()
    decisions = [(e.actor, e.action, e.reason) for e in entries if e.action.startswith("service-")]
    assert [d for d in decisions if d[1] != "service-application" and d[1] != "service-admin"] == [
        ("TP", "service-apply", "application received"),
        ("OP", "service-approve", "meets the data-minimisation rules"),
        ("OP", "service-suspend", "complaint under investigation"),
        ("OP", "service-resume", "investigation closed"),
        ("OP", "service-revoke", "breach of the retention terms"),
    ]
    approve = next(e for e in entries if e.action == "service-approve")
    assert approve.detail["client_id"] == creds["client_id"] and approve.detail["granularity"] == "daily"
    refused = [(e.action, e.reason) for e in entries if e.actor == "TP" and not e.allow]
    assert ("read-readings", "data service TP is approved for daily data at most, not half-hourly") in refused
    assert ("read-readings", "data service TP is suspended: complaint under investigation") in refused
    assert ("read-readings", "data service TP is revoked: breach of the retention terms") in refused
    denied_deciders = {e.actor for e in entries if e.action == "service-admin" and not e.allow}
    assert denied_deciders == {"TP", "S1", "C1", "DNO", "INST"}


def test_refusal_carries_the_reason_and_the_party_may_apply_again(world: tuple[World, TestClient]) -> None:
    w, client = world
    services = DataServices(w.store.engine)
    # Onboarding without credentials yet (`smarthub gdsc service apply`): the party is created.
    services.apply(
        "NEWCO",
        Application("NewCo", "appliance health", frozenset({DataKind.READINGS}), Granularity.HALF_HOURLY, 30),
        w.clock.now(),
    )
    party = PartyRepository(w.store.engine).party("NEWCO")
    assert (party.role, party.approved) == (Role.THIRD_PARTY, False)
    assert decide(w, client, "NEWCO", "refuse").status_code == 422  # no reason, no refusal (schema)
    r = decide(w, client, "NEWCO", "refuse", "half-hourly data is not needed for the stated purpose")
    assert r.status_code == 200 and r.json()["credentials"] is None, r.text
    token = TokenStore(w.store.engine).issue("NEWCO", w.clock.now())
    mine = client.get("/v1/services/mine", headers=bearer(token)).json()
    assert [(s["status"], s["reason"]) for s in mine] == [
        ("refused", "half-hourly data is not needed for the stated purpose")
    ]
    assert decide(w, client, "NEWCO", "approve").status_code == 409  # refused is decided
    assert decide(w, client, "NOBODY", "approve").status_code == 404
    listed = client.get("/v1/services", params={"status": "refused"}, headers=w.auth("OP")).json()
    assert [s["service_id"] for s in listed] == ["NEWCO"]
    r = client.post("/v1/services", json=APPLICATION, headers=bearer(token))  # narrower, again
    assert r.status_code == 201 and (r.json()["status"], r.json()["granularity"]) == ("applied", "daily")
    # Only third parties apply; a malformed application says what is wrong.
    assert client.post("/v1/services", json=APPLICATION, headers=w.auth("S1")).status_code == 403
    bad = client.post("/v1/services", json={**APPLICATION, "retention_days": 0}, headers=bearer(token))
    assert bad.status_code == 422 and "retention_days" in bad.text


def test_an_application_must_say_what_it_asks_for() -> None:
    with pytest.raises(ValueError, match="purpose"):
        Application("X", " ", frozenset({DataKind.READINGS}), Granularity.DAILY, 30)
    with pytest.raises(ValueError, match="granularity"):
        Application("X", "p", frozenset({DataKind.READINGS}), Granularity.NONE, 30)
    with pytest.raises(ValueError, match="retention"):
        Application("X", "p", frozenset({DataKind.READINGS}), Granularity.DAILY, 0)


def test_the_occupant_sees_which_services_hold_consent_and_what_each_read(
    world: tuple[World, TestClient],
) -> None:
    """Issue 25 item 3: per service, the occupant's live consents and its reads of their data
    (data kind, meter, granularity, the periods served, when), from the audit log; refused
    attempts counted; a third party without an application listed by its consents; the next
    occupant sees none of it."""
    w, client = world
    assert client.post("/v1/services", json=APPLICATION, headers=w.auth("TP")).status_code == 201
    creds = decide(w, client, "TP", "approve").json()["credentials"]
    token = oauth(client, creds).json()["access_token"]
    repo = PartyRepository(w.store.engine)
    repo.add_party(Party("OLD", Role.THIRD_PARTY, "Old Advice Co"))  # registered before applications
    repo.grant_consent(
        Consent(
            "K2",
            "OLD",
            "P1",
            "T1",
            frozenset({DataKind.READINGS}),
            Granularity.MONTHLY,
            "bill check",
            w.clock.now() - timedelta(days=1),
            w.clock.now() + timedelta(days=30),
        )
    )
    old_token = TokenStore(w.store.engine).issue("OLD", w.clock.now())
    offers = {o["service_id"]: o for o in client.get("/v1/premises/P1/services", headers=w.auth("C1")).json()}
    assert (
        offers["TP"]["reads"] == []
        and offers["TP"]["reads_total"] == 0
        and offers["TP"]["consents"] == ["K1"]
    )

    w.clock.advance(timedelta(minutes=2))
    first_at = w.clock.now()
    assert read(client, bearer(token)).status_code == 200
    w.clock.advance(timedelta(minutes=2))
    assert read(client, bearer(token), "half-hourly").status_code == 403  # beyond the approval
    w.clock.advance(timedelta(minutes=2))
    r = client.get(
        f"{READINGS}/export", params={**DAY, "granularity": "daily", "format": "csv"}, headers=bearer(token)
    )
    assert r.status_code == 200, r.text
    export_at = w.clock.now()
    assert (
        client.get(READINGS, params={**DAY, "granularity": "monthly"}, headers=bearer(old_token)).status_code
        == 200
    )

    offers = {o["service_id"]: o for o in client.get("/v1/premises/P1/services", headers=w.auth("C1")).json()}
    assert sorted(offers) == ["OLD", "TP"]
    tp = offers["TP"]
    assert (tp["status"], tp["consents"], tp["reads_total"], tp["refused_total"]) == (
        "approved",
        ["K1"],
        2,
        1,
    )
    day = [[DAY["start"].replace("+00:00", "Z"), DAY["end"].replace("+00:00", "Z")]]
    assert [
        (x["action"], x["data_kind"], x["meter_id"], x["granularity"], x["periods"]) for x in tp["reads"]
    ] == [
        ("export", "readings", "E1", "daily", day),
        ("read-readings", "readings", "E1", "daily", day),
    ]
    assert [datetime.fromisoformat(x["at"]) for x in tp["reads"]] == [export_at, first_at]
    assert datetime.fromisoformat(tp["last_read_at"]) == export_at
    # The same entries as the premises' access log (the consumer can follow one there).
    log = client.get(
        "/v1/premises/P1/access-log",
        params={
            "start": (NOW - timedelta(days=1)).isoformat(),
            "end": (w.clock.now() + timedelta(minutes=1)).isoformat(),
        },
        headers=w.auth("C1"),
    ).json()
    assert {x["seq"] for x in tp["reads"]} <= {e["seq"] for e in log if e["actor"] == "TP" and e["allow"]}
    old = offers["OLD"]
    assert (
        old["status"],
        old["organisation"],
        old["purpose"],
        old["granularity"],
        old["retention_days"],
    ) == (
        "registered",
        "Old Advice Co",
        "bill check",
        "monthly",
        None,
    )
    assert (old["consents"], old["reads_total"], old["reads"][0]["granularity"]) == (["K2"], 1, "monthly")

    # Revoking: the consent leaves the list, the reads stay (they happened); a suspended service
    # shows its status.
    assert client.delete("/v1/premises/P1/consents/K1", headers=w.auth("C1")).status_code == 204
    assert decide(w, client, "TP", "suspend", "under review").status_code == 200
    offers = {o["service_id"]: o for o in client.get("/v1/premises/P1/services", headers=w.auth("C1")).json()}
    assert (offers["TP"]["status"], offers["TP"]["consents"], offers["TP"]["reads_total"]) == (
        "suspended",
        [],
        2,
    )

    # The next occupant: none of the previous tenancy's services or reads.
    w.clock.advance(timedelta(minutes=1))
    with w.store.engine.begin() as conn:
        repo.end_tenancy("T1", w.clock.now(), conn)
    repo.add_party(Party("C2", Role.CONSUMER))
    repo.add_tenancy(Tenancy("T2", "P1", "C2", w.clock.now()))
    w.clock.advance(timedelta(minutes=1))
    c2 = TokenStore(w.store.engine).issue("C2", w.clock.now())
    assert client.get("/v1/premises/P1/services", headers=bearer(c2)).json() == []
    assert decide(w, client, "TP", "resume", "cleared").status_code == 200
    offers = client.get("/v1/premises/P1/services", headers=bearer(c2)).json()
    assert [(o["service_id"], o["consents"], o["reads_total"], o["reads"]) for o in offers] == [
        ("TP", [], 0, [])
    ]
