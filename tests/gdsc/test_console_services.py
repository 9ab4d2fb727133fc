"""The operator console's data services page (issue 25): every application with the GDSC's
decision, the occupants' live consents to each service and its traffic over the last day and
week from the audit log, produced by real API requests (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient as ConsoleClient
from aiohttp.test_utils import TestServer
from fastapi.testclient import TestClient

from gdsc.api_world import DAY1, World, build
from smarthub.gdsc.governance.parties import DataKind, Granularity
from smarthub.gdsc.governance.services import Application, DataServices
from smarthub.gdsc.incidents.console import console_app

APPLICATION = {
    "organisation": "Cheaper Tariffs Ltd",
    "purpose": "tariff comparison",
    "data_kinds": ["readings"],
    "granularity": "daily",
    "retention_days": 365,
}
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


async def test_the_page_lists_each_service_with_its_decision_consents_and_traffic(
    world: tuple[World, TestClient],
) -> None:
    w, api = world
    assert api.post("/v1/services", json=APPLICATION, headers=w.auth("TP")).status_code == 201
    r = api.post("/v1/services/TP/decisions", json={"decision": "approve"}, headers=w.auth("OP"))
    client_id = r.json()["credentials"]["client_id"]
    DataServices(w.store.engine).apply(
        "NEWCO",
        Application("NewCo", "appliance health", frozenset({DataKind.READINGS}), Granularity.HALF_HOURLY, 30),
        w.clock.now(),
    )
    r = api.post(
        "/v1/services/NEWCO/decisions",
        json={"decision": "refuse", "reason": "half-hourly is not needed"},
        headers=w.auth("OP"),
    )
    assert r.status_code == 200
    consent = {
        "party_id": "TP",
        "data_kinds": ["readings"],
        "granularity": "daily",
        "purpose": "tariff comparison",
        "expires_at": (w.clock.now() + timedelta(days=90)).isoformat(),
    }
    assert api.post("/v1/premises/P1/consents", json=consent, headers=w.auth("C1")).status_code == 201

    def reads(n: int) -> None:
        for _ in range(n):
            assert api.get("/v1/premises/P1/readings", params=DAY, headers=w.auth("TP")).status_code == 200

    finer = {**DAY, "granularity": "half-hourly"}
    reads(2)  # 9 days before the page: outside the week
    w.clock.advance(timedelta(days=6))
    reads(3)  # 3 days before: in the week, not the day
    assert api.get("/v1/premises/P1/readings", params=finer, headers=w.auth("TP")).status_code == 403
    w.clock.advance(timedelta(days=2, hours=12))
    reads(1)
    last = w.clock.now()
    w.clock.advance(timedelta(hours=12))

    async with ConsoleClient(TestServer(console_app(w.store, list, clock=w.clock))) as console:
        rows = {r["service_id"]: r for r in await (await console.get("/api/services")).json()}
        page = await (await console.get("/services")).text()
        fleet = await (await console.get("/")).text()
    tp, newco = rows["TP"], rows["NEWCO"]
    assert (tp["status"], tp["client_id"], tp["decided_by"]) == ("approved", client_id, "OP")
    assert (tp["live_consents"], tp["premises"]) == (1, 1)
    assert (tp["reads_day"], tp["reads_week"], tp["refused_day"], tp["refused_week"]) == (1, 4, 0, 1)
    assert datetime.fromisoformat(tp["last_read"]) == last
    assert (newco["status"], newco["reason"], newco["live_consents"], newco["reads_week"]) == (
        "refused",
        "half-hourly is not needed",
        0,
        0,
    )
    tp_row = page[page.index('data-service="TP"') : page.index("</tr>", page.index('data-service="TP"'))]
    assert "Cheaper Tariffs Ltd" in tp_row and '<span class="ok">approved</span>' in tp_row
    assert "readings, daily at most, kept 365 days" in tp_row
    assert '<td class="n">4</td>' in tp_row and '<span class="err">1</span>' in tp_row
    assert "refused" in page[page.index('data-service="NEWCO"') :] and "half-hourly is not needed" in page
    assert '<a href="/services">data services</a>' in fleet
