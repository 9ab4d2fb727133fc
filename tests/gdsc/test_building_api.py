"""The housing provider's building endpoints (issue 21) over HTTP, on SQLite and PostgreSQL: the
flats' sub-meters monthly, and the heat bill computed from the registry and the stored readings,
each flat and medium decided by the access policy and audited."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gdsc.test_building_bills import LONDON, START, _load
from smarthub.clock import ManualClock
from smarthub.gdsc.api.app import create_app
from smarthub.gdsc.api.auth.tokens import TokenStore
from smarthub.gdsc.fleet.buildings import BuildingRegistry
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.gdsc.governance.parties import Party, PartyRepository, Role
from smarthub.gdsc.readings.building_bills import building_bills
from smarthub.gdsc.readings.heat_costs import BuildingCosts
from smarthub.gdsc.store import Store

NOW = datetime(2026, 2, 10, tzinfo=UTC)
BILL = {"start": "2026-01-01", "end": "2026-01-10", "fuel_cost": "2000.00", "fuel_kwh": "20000",
        "water_cost": "300.00"}  # fmt: skip


@pytest.fixture
def api(db_url: str):  # type: ignore[no-untyped-def]
    store = Store(db_url)
    store.create_schema()
    b = _load(store)
    repo = PartyRepository(store.engine)
    for p in (Party("HP2", Role.HOUSING_PROVIDER), Party("S1", Role.SUPPLIER)):
        repo.add_party(p)
    tokens = TokenStore(store.engine)
    issued = {p: tokens.issue(p, NOW) for p in ("HP", "HP2", "T-B", "T-A1", "S1")}
    guard = AccessGuard(repo, AuditLog(store.engine), ManualClock(NOW))
    with TestClient(create_app(guard, tokens)) as client:

        def get(party: str, path: str, **params: Any) -> Any:
            return client.get(path, params=params, headers={"Authorization": f"Bearer {issued[party]}"})

        yield store, b, guard, get
    store.close()


def test_the_provider_gets_the_bills_the_store_gives(api) -> None:  # type: ignore[no-untyped-def]
    store, b, guard, get = api
    before = len(guard.audit.entries())
    r = get("HP", "/v1/buildings/B1/heat-bill", **BILL)
    assert r.status_code == 200, r.text
    body = r.json()
    costs = BuildingCosts(
        date(2026, 1, 1), date(2026, 1, 10), Decimal("2000.00"), Decimal("20000"), Decimal("300.00")
    )
    bills, _ = building_bills(store.engine, b, costs, LONDON)
    assert [(x["flat"], x["tenant"], Decimal(x["total"]), x["estimated"]) for x in body["bills"]] == [
        (x.flat, x.tenant, x.total, x.estimated) for x in bills
    ]
    assert Decimal(body["bill_total"]) == Decimal(body["building_cost"]) == Decimal("2300.00")
    assert body["estimated_flats"] == ["C"] and body["failed_allocators"] == ["HCA-C1"]
    # Each flat × medium decided and recorded (3 flats × allocators, hot, cold water).
    entries = guard.audit.entries()[before:]
    assert len(entries) == 9 and all(e.allow and e.actor == "HP" for e in entries)


def test_the_provider_reads_its_flats_submeters_monthly(api) -> None:  # type: ignore[no-untyped-def]
    _, _, _, get = api
    r = get(
        "HP",
        "/v1/buildings/B1/readings",
        start=START.isoformat(),
        end=(START + timedelta(days=31)).isoformat(),
    )
    assert r.status_code == 200, r.text
    flats = {f["flat"]: f for f in r.json()["flats"]}
    assert sorted(flats) == ["A", "B", "C"]
    a = {m["meter_id"]: m for m in flats["A"]["submeters"]}
    assert sorted(a) == ["CW-A", "HCA-A1", "HCA-A2", "HW-A"]
    (january,) = a["HCA-A1"]["readings"]  # one whole local month: January's units
    assert (january["value"], january["intervals"], a["HCA-A1"]["obis"]) == (480, 480, "4-0:1.0.0")
    (hot,) = a["HW-A"]["readings"]
    assert (hot["value"], hot["power_of_ten"], hot["uom"]) == (960, -3, 42)  # 0.96 m³
    # A half-month asked: no whole month inside it, nothing finer is served.
    r = get(
        "HP",
        "/v1/buildings/B1/readings",
        start=START.isoformat(),
        end=(START + timedelta(days=15)).isoformat(),
    )
    assert all(not m["readings"] for f in r.json()["flats"] for m in f["submeters"])


def test_a_tenant_sees_only_their_flat_and_no_bill(api) -> None:  # type: ignore[no-untyped-def]
    _, _, _, get = api
    r = get(
        "T-B",
        "/v1/buildings/B1/readings",
        start=START.isoformat(),
        end=(START + timedelta(days=31)).isoformat(),
    )
    assert r.status_code == 200, r.text
    assert [f["flat"] for f in r.json()["flats"]] == ["B"]
    r = get("T-B", "/v1/buildings/B1/heat-bill", **BILL)
    assert r.status_code == 403 and r.json()["detail"]
    # A's old tenant, moved out on 5 January: their own days only.
    r = get(
        "T-A1",
        "/v1/buildings/B1/readings",
        start=START.isoformat(),
        end=(START + timedelta(days=31)).isoformat(),
    )
    (a,) = r.json()["flats"]
    (allowed,) = a["submeters"][0]["allowed"]
    assert datetime.fromisoformat(allowed[1]) == START + timedelta(days=4, hours=11)


def test_others_are_refused_and_a_new_landlord_cannot_bill_the_old_ones_months(api) -> None:  # type: ignore[no-untyped-def]
    store, _, _, get = api
    for party in ("S1", "HP2"):
        assert get(party, "/v1/buildings/B1/heat-bill", **BILL).status_code == 403
        r = get(party, "/v1/buildings/B1/readings", start=START.isoformat(), end=NOW.isoformat())
        assert r.status_code == 403 and r.json()["detail"]
    BuildingRegistry(store.engine).manage("B1", "HP2", START + timedelta(days=5))  # sold on 6 January
    r = get("HP2", "/v1/buildings/B1/heat-bill", **BILL)
    assert r.status_code == 403 and "whole period" in r.json()["detail"]
    assert get("HP2", "/v1/buildings/B1/heat-bill", **{**BILL, "start": "2026-01-06"}).status_code == 200
    assert get("HP", "/v1/buildings/B1/heat-bill", **BILL).status_code == 403  # its time ended mid-period
    assert get("HP", "/v1/buildings/B1/heat-bill", **{**BILL, "end": "2026-01-05"}).status_code == 200


def test_bad_requests_say_why(api) -> None:  # type: ignore[no-untyped-def]
    _, _, _, get = api
    assert get("HP", "/v1/buildings/NOPE/heat-bill", **BILL).status_code == 404
    r = get("HP", "/v1/buildings/B1/heat-bill", **{**BILL, "end": "2025-12-01"})
    assert r.status_code == 400 and "ends before" in r.json()["detail"]
    r = get("HP", "/v1/buildings/B1/heat-bill", **{**BILL, "fixed_share": "0.60"})
    assert r.status_code == 422
    r = get("HP", "/v1/buildings/B1/heat-bill", **{**BILL, "fuel_kwh": "1"})  # less than the hot water needs
    assert r.status_code == 400 and "hot water needs" in r.json()["detail"]
