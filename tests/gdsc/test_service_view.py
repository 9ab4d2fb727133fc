"""The household's data services reach its display (issue 25 item 3): the GDSC's upkeep step
sends each home whose services changed (a third party read its data, the occupant revoked a
consent, the operator suspended a service, a new occupant) its occupant's view as a signed
``ihd.services`` built from the audit log; a real hub verifies it and its IHD keeps it. SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from fastapi.testclient import TestClient

from gdsc.api_world import DAY1, World, build
from smarthub.clock import ManualClock
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.parties import Party, PartyRepository, Role, Tenancy
from smarthub.gdsc.governance.service_view import READ_RESEND, ServiceViews
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.hub.ihd.commands import ihd_commands
from smarthub.hub.ihd.store import IhdStore
from smarthub.hub.management import ManagementInterface

DAY = {
    "meter_id": "E1",
    "start": DAY1.isoformat(),
    "end": (DAY1 + timedelta(days=1)).isoformat(),
    "granularity": "daily",
}


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[tuple[World, TestClient]]:
    w = build(db_url, tmp_path / "state")
    with w.client() as client:
        yield w, client
    w.store.close()


def deliver(w: World, hub: ManagementInterface, plan: PullPlan) -> list[dict[str, Any]]:
    """Claim the plan's work for H1 as the collector does and hand each envelope to the hub; the
    bodies of the ihd.services commands delivered."""
    bodies = []
    for claim in plan.claim_urgent("A", w.clock.now(), 100):
        assert claim.envelope is not None
        verdict = json.loads(asyncio.run(hub.handle(claim.envelope)).to_json())
        assert verdict["status"] == "applied", verdict
        plan.finish_urgent(claim, True, w.clock.now(), result=verdict)
        payload = json.loads(json.loads(claim.envelope)["payload"])
        if payload["type"] == "ihd.services":
            bodies.append(payload["body"])
    return bodies


def test_the_display_gets_the_households_services_when_they_change(
    world: tuple[World, TestClient], tmp_path: Path
) -> None:
    w, client = world
    state = w.state
    signer = CommandSigner.from_files(
        str(state / "gdsc" / "operator.pem"),
        str(state / "gdsc" / "operator.key"),
        w.store.next_command_counter,
    )
    ca = x509.load_pem_x509_certificate((state / "ca" / "ca.pem").read_bytes())
    hub = ManagementInterface("H1", ca, ManualClock(w.clock.now()), tmp_path / "H1-mgmt.sqlite")
    ihd = IhdStore(tmp_path / "H1-ihd.sqlite")
    hub.register("ihd.services", ihd_commands(ihd, None, w.clock)["ihd.services"])  # type: ignore[arg-type]
    plan = PullPlan(w.store)
    views = ServiceViews(w.store.engine, AuditLog(w.store.engine), plan, signer)

    # TP applies and is approved; the occupant consents through the API.
    app = {
        "organisation": "Cheaper Tariffs Ltd",
        "purpose": "tariff comparison",
        "data_kinds": ["readings"],
        "granularity": "daily",
        "retention_days": 30,
    }
    assert client.post("/v1/services", json=app, headers=w.auth("TP")).status_code == 201
    r = client.post("/v1/services/TP/decisions", json={"decision": "approve"}, headers=w.auth("OP"))
    assert r.status_code == 200, r.text
    consent = {
        "party_id": "TP",
        "data_kinds": ["readings"],
        "granularity": "daily",
        "purpose": "tariff comparison",
        "expires_at": (w.clock.now() + timedelta(days=90)).isoformat(),
    }
    r = client.post("/v1/premises/P1/consents", json=consent, headers=w.auth("C1"))
    assert r.status_code == 201, r.text
    consent_id = r.json()["consent_id"]
    w.clock.advance(timedelta(minutes=1))
    assert sorted(views.tick(w.clock.now())) == ["P1"]  # the grant
    (first,) = deliver(w, hub, plan)
    assert [
        (s["id"], s["status"], [c["id"] for c in s["consents"]], s["reads_total"]) for s in first["services"]
    ] == [("TP", "approved", [consent_id], 0)]

    # Nothing changed: nothing sent.
    w.clock.advance(timedelta(minutes=1))
    assert views.tick(w.clock.now()) == {}

    # TP reads a day (and is refused half-hourly): the display learns what it read and when.
    w.clock.advance(timedelta(minutes=1))
    read_at = w.clock.now()
    assert client.get("/v1/premises/P1/readings", params=DAY, headers=w.auth("TP")).status_code == 200
    finer = {**DAY, "granularity": "half-hourly"}
    assert client.get("/v1/premises/P1/readings", params=finer, headers=w.auth("TP")).status_code == 403
    # Reads alone: held while the last view is less than an hour old, then sent (a service reading
    # a home every few minutes must not cost it a command at every run).
    w.clock.advance(timedelta(minutes=1))
    assert views.tick(w.clock.now()) == {} and views.held == {"P1"}
    w.clock.advance(READ_RESEND)
    assert sorted(views.tick(w.clock.now())) == ["P1"] and views.held == set()
    (second,) = deliver(w, hub, plan)
    kept = ihd.services()
    assert kept is not None and kept.to_json() == second
    (tp,) = kept.services
    assert (tp.reads_total, tp.refused_total, tp.last_read) == (1, 1, read_at)
    (read,) = tp.reads
    assert (read.at, read.data_kind, read.meter, read.granularity) == (read_at, "readings", "E1", "daily")
    assert read.periods == ((DAY1, DAY1 + timedelta(days=1)),)

    # The occupant revokes, the operator suspends: each sends the view again.
    w.clock.advance(timedelta(minutes=1))
    assert client.delete(f"/v1/premises/P1/consents/{consent_id}", headers=w.auth("C1")).status_code == 204
    w.clock.advance(timedelta(minutes=1))
    assert sorted(views.tick(w.clock.now())) == ["P1"]
    deliver(w, hub, plan)
    kept = ihd.services()
    assert kept is not None and [(s.status, s.consents, s.reads_total) for s in kept.services] == [
        ("approved", (), 1)
    ]
    w.clock.advance(timedelta(minutes=1))
    r = client.post(
        "/v1/services/TP/decisions", json={"decision": "suspend", "reason": "audit"}, headers=w.auth("OP")
    )
    assert r.status_code == 200, r.text
    w.clock.advance(timedelta(minutes=1))
    assert sorted(views.tick(w.clock.now())) == ["P1"]  # P1 held a consent to TP
    deliver(w, hub, plan)
    kept = ihd.services()
    assert kept is not None and [s.status for s in kept.services] == ["suspended"]

    # A new occupant: the display is cleared of the previous one's services.
    repo = PartyRepository(w.store.engine)
    with w.store.engine.begin() as conn:
        repo.end_tenancy("T1", w.clock.now(), conn)
    repo.add_party(Party("C2", Role.CONSUMER))
    repo.add_tenancy(Tenancy("T2", "P1", "C2", w.clock.now()))
    w.clock.advance(timedelta(minutes=1))
    assert sorted(views.tick(w.clock.now())) == ["P1"]
    (cleared,) = deliver(w, hub, plan)
    assert cleared["services"] == []
    kept = ihd.services()
    assert kept is not None and kept.services == ()

    # An older view delivered late does not overwrite the newer one.
    from smarthub.wan.contract.bodies import IhdServices

    assert ihd.set_services(IhdServices.parse(second)) is False
    assert ihd.services() == kept
    ihd.close()
    hub.close()
