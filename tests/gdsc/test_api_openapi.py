"""Issue 22: the data services API's OpenAPI document tells the truth, so clients generated from
it work. Each test here failed against the API before its fix: the document said one thing and
the server did another (or a 500)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gdsc.api_world import DAY1, World, build

SERVED = ["half-hourly", "daily", "monthly"]
PROFILE_ENDPOINTS = [
    ("/v1/premises/{premises_id}/readings", {"meter_id": "E1"}, "C1"),
    ("/v1/premises/{premises_id}/readings/export", {"meter_id": "E1"}, "C1"),
    ("/v1/aggregates/readings", {"group": "G"}, "DNO"),
    ("/v1/portfolio/consumption", {}, "C1"),
]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = build(f"sqlite:///{tmp_path / 'api.sqlite'}", tmp_path / "state")
    yield w
    w.store.close()


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    with world.client() as c:
        yield c


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = spec["components"]["schemas"][name]
    return node


def parameter(spec: dict[str, Any], path: str, name: str, method: str = "get") -> dict[str, Any]:
    (p,) = [p for p in spec["paths"][path][method]["parameters"] if p["name"] == name]
    return resolve(spec, p["schema"])


# -- item 3: each endpoint's granularity enum is what it serves ---------------------------------


@pytest.mark.parametrize(("path", "extra", "who"), PROFILE_ENDPOINTS)
def test_profile_endpoints_publish_the_granularities_they_serve(
    world: World, client: TestClient, path: str, extra: dict[str, str], who: str
) -> None:
    spec = client.get("/openapi.json").json()
    assert parameter(spec, path, "granularity")["enum"] == SERVED
    for level in ("tariff-register", "none"):  # outside the enum: refused as the schema says
        r = client.get(
            path.format(premises_id="P1"),
            params={
                **extra,
                "start": DAY1.isoformat(),
                "end": (DAY1 + timedelta(days=1)).isoformat(),
                "granularity": level,
            },
            headers=world.auth(who),
        )
        assert r.status_code == 422 and "query.granularity" in r.json()["detail"], r.text


def test_a_consent_may_still_grant_every_granularity(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    body = resolve(spec, spec["components"]["schemas"]["ConsentIn"]["properties"]["granularity"])
    assert body["enum"] == [*SERVED, "tariff-register", "none"]
