"""Every refusal is an ErrorBody with a specific message, schema violations included; the access
log pages by sequence number."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from gdsc.api_world import DAY1, JUL, NOW, World, build


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = build(f"sqlite:///{tmp_path / 'gdsc.sqlite'}", tmp_path / "state")
    yield w
    w.store.close()


def test_schema_violations_name_the_fields(world: World) -> None:
    with world.client() as client:
        r = client.post(
            "/v1/premises/P1/commands/top-up",
            json={"meter_id": "E1", "amount": "-1"},
            headers=world.auth("S1"),
        )
        assert r.status_code == 422
        assert r.json() == {
            "detail": "body.amount: Value error, '-1' is not a decimal string of pounds and pence, "
            "0.01 to 500.00, exactly two places (e.g. '10.00')",
            "max_granularity": None,
        }
        r = client.post(
            "/v1/premises/P1/commands/supply",
            json={"meter_id": "E1", "state": "off"},
            headers=world.auth("S1"),
        )
        assert (
            r.status_code == 422
            and r.json()["detail"] == "body.state: Input should be 'connect' or 'disconnect'"
        )
        r = client.get("/v1/premises/P1/readings", params={"meter_id": "E1"}, headers=world.auth("C1"))
        assert r.json()["detail"] == (
            "query.start: Field required; query.end: Field required; query.granularity: Field required"
        )
        r = client.get("/v1/jobs/0", headers=world.auth("C1"))
        assert r.status_code == 422 and r.json()["detail"].startswith("path.job_id: Input should be greater")
        r = client.get("/v1/portfolio", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401 and r.json()["detail"] == "no or unknown bearer token"


def test_access_log_pages(world: World) -> None:
    span = {"meter_id": "E1", "start": DAY1.isoformat(), "end": (DAY1 + timedelta(days=1)).isoformat()}
    log_span = {"start": JUL.isoformat(), "end": (NOW + timedelta(days=1)).isoformat()}
    with world.client() as client:
        for who in ("S1", "TP", "S1"):
            client.get(
                "/v1/premises/P1/readings", params={**span, "granularity": "daily"}, headers=world.auth(who)
            )
        whole = client.get("/v1/premises/P1/access-log", params=log_span, headers=world.auth("C1")).json()
        assert [(e["actor"], e["allow"]) for e in whole] == [("S1", False), ("TP", False), ("S1", False)]
        first = client.get(
            "/v1/premises/P1/access-log", params={**log_span, "limit": 2}, headers=world.auth("C1")
        ).json()
        rest = client.get(
            "/v1/premises/P1/access-log",
            params={**log_span, "limit": 2, "after": first[-1]["seq"]},
            headers=world.auth("C1"),
        ).json()
        assert first + rest == whole and len(rest) == 1
