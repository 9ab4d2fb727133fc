"""A non-domestic customer's portfolio: its sites (premises it holds tenancies at) and consumption
per site and in total, each site's data only from the customer's own tenancy there."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gdsc.api_world import DAY1, JUL, NOW, World, build, readings
from smarthub.gdsc.api.auth.tokens import TokenStore
from smarthub.gdsc.governance.parties import Party, Role, Tenancy

BIZ = "ACME"  # a retailer with three shops


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    w = build(db_url, tmp_path / "state")
    repo = w.guard.parties
    repo.add_party(Party(BIZ, Role.CONSUMER, "Acme Stores Ltd"))
    for n in (2, 3, 4):
        w.store.register_hub(
            hub_id=f"H{n}",
            premises_id=f"P{n}",
            url="https://h",
            lfdi="A" * 40,
            meters_by_fuel=[(f"E{n}a", "electricity"), (f"E{n}b", "electricity")],
        )
        for meter in (f"E{n}a", f"E{n}b"):
            w.store.ingest(f"H{n}", readings(f"H{n}", meter, DAY1, 96, base=n), {})
    repo.add_tenancy(Tenancy("A2", "P2", BIZ, JUL))
    repo.add_tenancy(Tenancy("A3", "P3", BIZ, JUL))
    # Acme left P4 at local midnight between the two days: only the first day is its data.
    repo.add_tenancy(Tenancy("A4", "P4", BIZ, JUL, DAY1 + timedelta(days=1)))
    w.tokens[BIZ] = TokenStore(w.store.engine).issue(BIZ, NOW)
    yield w
    w.store.close()


def day_sum(base: int, first: int) -> int:
    return sum(base + i for i in range(first, first + 48))


def test_sites_listed_with_meters_and_paged(world: World) -> None:
    with world.client() as client:
        page = client.get("/v1/portfolio", headers=world.auth(BIZ)).json()
        assert [(s["premises_id"], s["current"]) for s in page["sites"]] == [
            ("P2", True),
            ("P3", True),
            ("P4", False),
        ]
        assert page["sites"][0]["meters"] == [
            {"meter_id": "E2a", "fuel": "electricity"},
            {"meter_id": "E2b", "fuel": "electricity"},
        ]
        first = client.get("/v1/portfolio", params={"limit": 2}, headers=world.auth(BIZ)).json()
        assert [s["premises_id"] for s in first["sites"]] == ["P2", "P3"] and first["next_after"] == "P3"
        rest = client.get("/v1/portfolio", params={"after": "P3"}, headers=world.auth(BIZ)).json()
        assert [s["premises_id"] for s in rest["sites"]] == ["P4"] and rest["next_after"] is None
        # A household is a portfolio of one; a supplier has none.
        assert [
            s["premises_id"] for s in client.get("/v1/portfolio", headers=world.auth("C1")).json()["sites"]
        ] == ["P1"]
        r = client.get("/v1/portfolio", headers=world.auth("S1"))
        assert r.status_code == 403
        assert r.json()["detail"] == "a portfolio is the sites a customer occupies; S1 is a supplier"


def test_consumption_per_site_and_total_within_each_tenancy(world: World) -> None:
    params = {
        "start": DAY1.isoformat(),
        "end": (DAY1 + timedelta(days=2)).isoformat(),
        "granularity": "daily",
    }
    with world.client() as client:
        r = client.get("/v1/portfolio/consumption", params=params, headers=world.auth(BIZ))
        assert r.status_code == 200, r.text
        body = r.json()
        sites = {s["premises_id"]: s for s in body["sites"]}
        # Two meters per site, summed; P4 only for the day Acme still occupied it.
        assert [(x["value"], x["meters"]) for x in sites["P2"]["readings"]] == [
            (2 * day_sum(2, 0), 2),
            (2 * day_sum(2, 48), 2),
        ]
        assert [x["value"] for x in sites["P4"]["readings"]] == [2 * day_sum(4, 0)]
        assert sites["P4"]["allowed"] == [[DAY1.isoformat().replace("+00:00", "Z"), "2026-08-10T23:00:00Z"]]
        assert [(x["value"], x["meters"]) for x in body["total"]] == [
            (2 * (day_sum(2, 0) + day_sum(3, 0) + day_sum(4, 0)), 6),
            (2 * (day_sum(2, 48) + day_sum(3, 48)), 4),
        ]
        # Paged by site; the total is always over every site.
        page = client.get(
            "/v1/portfolio/consumption", params={**params, "limit": 1, "after": "P2"}, headers=world.auth(BIZ)
        ).json()
        assert [s["premises_id"] for s in page["sites"]] == ["P3"] and page["next_after"] == "P3"
        assert page["total"] == body["total"]
        # Out of every tenancy: refused, saying why.
        old = {**params, "start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"}
        r = client.get("/v1/portfolio/consumption", params=old, headers=world.auth(BIZ))
        assert (
            r.status_code == 403
            and r.json()["detail"] == "ACME occupied none of its sites in the period asked for"
        )
        r = client.get(
            "/v1/portfolio/consumption", params={**params, "granularity": "none"}, headers=world.auth(BIZ)
        )
        assert r.status_code == 422 and "query.granularity" in r.json()["detail"]  # not in its enum
        r = client.get("/v1/portfolio/consumption", params=params, headers=world.auth("TP"))
        assert r.status_code == 403 and "TP is a third-party" in r.json()["detail"]
    entries = [e for e in world.guard.audit.entries() if e.action == "portfolio"]
    assert [(e.actor, e.allow, e.premises_id, e.detail["group_size"]) for e in entries] == [
        ("ACME", True, None, 3),
        ("ACME", True, None, 3),
        ("ACME", False, None, 3),
        ("TP", False, None, 0),
    ]


def test_sites_are_the_customers_own(world: World) -> None:
    """The occupant of P1 (C1) sees only P1 in its portfolio total, never Acme's sites."""
    params = {
        "start": DAY1.isoformat(),
        "end": (DAY1 + timedelta(days=1)).isoformat(),
        "granularity": "daily",
        "fuel": "electricity",
    }
    with world.client() as client:
        body = client.get("/v1/portfolio/consumption", params=params, headers=world.auth("C1")).json()
    assert [s["premises_id"] for s in body["sites"]] == ["P1"]
    assert [x["value"] for x in body["total"]] == [day_sum(100, 0)]
    assert datetime.fromisoformat(body["total"][0]["start"]) == DAY1.astimezone(UTC)
