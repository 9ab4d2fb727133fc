"""The catalogue of tariffs the GDSC distributes (``GET /v1/tariffs``, issue 25: the tariff
advisor reads it instead of a file): every version sent to a hub is recorded once, the latest of
each tariff is listed, by fuel; open to the occupant, suppliers, approved data services and the
operator, not to a suspended service nor to roles with no use for it. SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gdsc.api_world import World, build, tariff_json
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.commands.tariff_catalogue import TariffCatalogue
from smarthub.gdsc.commands.tariffs import distribute_tariff
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.model.tariff import tariff_from_json


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[tuple[World, TestClient]]:
    w = build(db_url, tmp_path / "state")
    with w.client() as client:
        yield w, client
    w.store.close()


def send(w: World, client: TestClient, tariff: dict[str, object], meter: str = "E1", by: str = "S1") -> int:
    r = client.post(
        "/v1/premises/P1/commands/tariff-update",
        json={"meter_id": meter, "tariff": tariff},
        headers=w.auth(by),
    )
    return r.status_code


def test_the_catalogue_lists_the_latest_version_of_each_tariff_distributed(
    world: tuple[World, TestClient],
) -> None:
    w, client = world
    assert client.get("/v1/tariffs", headers=w.auth("C1")).json() == []
    assert send(w, client, tariff_json(1)) == 202
    w.clock.advance(timedelta(hours=1))
    v2_at = w.clock.now()
    assert send(w, client, tariff_json(2)) == 202
    assert send(w, client, tariff_json(2)) == 202  # sent again: recorded once
    assert send(w, client, tariff_json(3), by="SG") == 403  # not the electricity supplier: never sent
    gas = {**tariff_json(1), "tariff_id": "GAS-FIX", "name": "Fixed gas"}
    assert send(w, client, gas, meter="G1", by="SG") == 202

    listed = client.get("/v1/tariffs", headers=w.auth("C1")).json()
    assert [
        (e["tariff"]["tariff_id"], e["tariff"]["version"], e["fuel"], e["supplier_id"]) for e in listed
    ] == [
        ("FLAT-1", 2, "electricity", "S1"),
        ("GAS-FIX", 1, "gas", "SG"),
    ]
    # The document is the one the hubs got (it reads back as the same tariff), and first sent then.
    assert listed[0]["tariff"] == tariff_from_json(json.dumps(tariff_json(2))).to_json_dict()
    assert listed[0]["first_sent"].replace("Z", "+00:00") == v2_at.isoformat()
    only_gas = client.get("/v1/tariffs", params={"fuel": "gas"}, headers=w.auth("S1")).json()
    assert [e["tariff"]["tariff_id"] for e in only_gas] == ["GAS-FIX"]
    assert client.get("/v1/tariffs", params={"fuel": "water"}, headers=w.auth("C1")).status_code == 422

    # Who may read it.
    for party, status in (("C1", 200), ("S1", 200), ("OP", 200), ("TP", 200), ("DNO", 403), ("INST", 403)):
        r = client.get("/v1/tariffs", headers=w.auth(party))
        assert r.status_code == status, (party, r.text)
    assert client.get("/v1/tariffs", headers=w.auth("DNO")).json()["detail"] == (
        "the tariff catalogue is not open to a network-operator"
    )
    assert client.get("/v1/tariffs").status_code == 401
    audit = [e for e in w.guard.audit.entries() if e.action == "tariff-catalogue"]
    assert {(e.actor, e.allow) for e in audit} >= {("C1", True), ("DNO", False)}


def test_a_service_reads_it_with_its_approved_client_until_suspended(world: tuple[World, TestClient]) -> None:
    w, client = world
    assert send(w, client, tariff_json(1)) == 202
    application = {
        "organisation": "Cheaper Tariffs Ltd",
        "purpose": "tariff comparison",
        "data_kinds": ["readings"],
        "granularity": "half-hourly",
        "retention_days": 30,
    }
    assert client.post("/v1/services", json=application, headers=w.auth("TP")).status_code == 201
    r = client.post("/v1/services/TP/decisions", json={"decision": "approve"}, headers=w.auth("OP"))
    creds = r.json()["credentials"]
    assert "tariffs:read" in creds["scope"].split()
    basic = base64.b64encode(f"{creds['client_id']}:{creds['client_secret']}".encode()).decode()
    token = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    ).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert [e["tariff"]["tariff_id"] for e in client.get("/v1/tariffs", headers=bearer).json()] == ["FLAT-1"]
    r = client.post(
        "/v1/services/TP/decisions", json={"decision": "suspend", "reason": "audit"}, headers=w.auth("OP")
    )
    assert r.status_code == 200
    r = client.get("/v1/tariffs", headers=bearer)
    assert (r.status_code, r.json()["detail"]) == (403, "data service TP is suspended: audit")


def test_a_tariff_the_gdsc_distributes_itself_is_in_the_catalogue(world: tuple[World, TestClient]) -> None:
    w, _ = world
    state = w.state
    signer = CommandSigner.from_files(
        str(state / "gdsc" / "operator.pem"),
        str(state / "gdsc" / "operator.key"),
        w.store.next_command_counter,
    )
    tariff = tariff_from_json(json.dumps(tariff_json(4)))
    queued = distribute_tariff(
        w.store, PullPlan(w.store), signer, tariff, "electricity", w.clock.now(), premises=["P1"]
    )
    assert [q.hub_id for q in queued] == ["H1"]
    (entry,) = TariffCatalogue(w.store.engine).latest()
    assert (entry.tariff, entry.fuel, entry.supplier_id) == (tariff, "electricity", None)
