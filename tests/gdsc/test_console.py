"""The operator console shows the error log: open incidents by kind (chart) and work orders."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from smarthub.gdsc.incidents.console import Shared, console_app
from smarthub.gdsc.incidents.error_log import ErrorLog
from smarthub.gdsc.pull.scheduler import WindowProgress
from smarthub.gdsc.store import Store
from smarthub.hub.diagnostics import DiagnosisCode

from .test_error_log import LINKS, T0, detail


async def test_console_charts_incidents_and_lists_work_orders(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path / 'gdsc.sqlite'}")
    store.create_schema()
    log = ErrorLog(store, wan_link_of=LINKS.get)
    log.record_events("H1", [detail(1, DiagnosisCode.TAMPER, "E<1>")], T0)
    for hub in ("H1", "H2", "H3"):
        log.record_unreachable(hub, T0, "connect timeout")
    async with TestClient(TestServer(console_app(store, list, log))) as client:
        page = await (await client.get("/")).text()
        incidents = await (await client.get("/api/incidents")).json()
        orders = await (await client.get("/api/work-orders?status=open")).json()
    assert "open incidents by kind" in page and "tamper" in page and "hub unreachable" in page
    assert "wan_provider:cell-A" in page and "E<1>" not in page  # escaped
    assert sorted(len(i["hubs"]) for i in incidents) == [1, 3]
    assert sorted(o["party"] for o in orders) == ["supplier", "wan_provider"]
    store.close()


async def test_console_without_an_error_log_says_so() -> None:
    store = Store("sqlite://")
    store.create_schema()
    async with TestClient(TestServer(console_app(store, list))) as client:
        resp = await client.get("/api/incidents")
        assert resp.status == 404 and "no error log" in await resp.text()


async def test_fleet_is_paged_sorted_and_filtered_by_the_server(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path / 'gdsc.sqlite'}")
    store.create_schema()
    for i in range(120):
        store.register_hub(
            hub_id=f"HUB{i:04d}",
            premises_id=f"P{i % 7}-{i:04d}",
            url=f"https://h{i}",
            lfdi=f"{i:040x}",
            meters_by_fuel=[(f"E{i}", "electricity")],
        )
    async with TestClient(TestServer(console_app(store, list))) as client:
        first = await (await client.get("/api/hubs?limit=50")).json()
        last = await (await client.get("/api/hubs?offset=100&limit=50&sort=hub_id&order=desc")).json()
        found = await (await client.get("/api/hubs?q=p3-&limit=500")).json()
        bad = await client.get("/api/hubs?sort=secret")
        page = await (await client.get("/")).text()
    assert first["total"] == 120 and len(first["rows"]) == 50
    assert [h["hub_id"] for h in first["rows"]] == [f"HUB{i:04d}" for i in range(50)]
    assert [h["hub_id"] for h in last["rows"]] == [f"HUB{i:04d}" for i in range(19, -1, -1)]
    assert found["total"] == len([i for i in range(120) if i % 7 == 3])
    assert all(h["premises_id"].startswith("P3-") for h in found["rows"])
    assert bad.status == 400
    assert page.count("<tr><td>") == 50 and "1–50 of 120" in page  # the first page only
    store.close()


async def test_live_events_stream_the_status(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store, log = Store(f"sqlite:///{tmp_path / 'gdsc.sqlite'}"), None
    store.create_schema()
    log = ErrorLog(store, wan_link_of=LINKS.get)
    log.record_unreachable("H1", T0, "connect timeout")
    async with TestClient(TestServer(console_app(store, list, log, live_every=0.05))) as client:
        resp = await client.get("/api/live")
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = []
        while len(events) < 2:
            line = (await resp.content.readline()).decode()
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
        resp.close()
    assert all(e["incidents_open"] == 1 and "hubs" in e["summary"] for e in events)
    assert all("hub unreachable" in e["errors"] and "open work orders" in e["errors"] for e in events)
    store.close()


async def test_windows_incidents_and_work_orders_are_paged_sorted_and_filtered(db_url: str) -> None:
    store = Store(db_url)
    store.create_schema()
    log = ErrorLog(store, wan_link_of=LINKS.get)
    for i in range(30):
        log.record_unreachable(f"X{i:02d}", T0, "connect timeout")
    for hub in ("H1", "H2", "H3"):  # three on cell-A: one WAN incident, one work order
        log.record_unreachable(hub, T0, "connect timeout")
    log.record_events("H9", [detail(1, DiagnosisCode.TAMPER, "E9")], T0)
    log.record_reachable("X00", T0)  # its incident closes
    windows = [
        WindowProgress(T0 + timedelta(minutes=30 * k), planned=10, done=10 - k % 3, failed=k % 3)
        for k in range(20)
    ]
    async with TestClient(TestServer(console_app(store, lambda: windows, log))) as client:

        async def get(url: str) -> dict[str, Any]:
            resp = await client.get(url)
            assert resp.status == 200, await resp.text()
            return dict(await resp.json())

        open_ = await get("/api/tables/incidents")
        closed = await get("/api/tables/incidents?state=closed")
        every = await get("/api/tables/incidents?state=all&limit=100&sort=hub_count&order=desc")
        cell = await get("/api/tables/incidents?q=cell-A")
        tamper = await get("/api/tables/incidents?q=tamper+H9")
        orders = await get("/api/tables/work_orders?state=all")
        wins = await get("/api/tables/windows")
        failed = await get("/api/tables/windows?sort=failed&order=desc&limit=3&q=03:")
        bad = [
            (await client.get(u)).status
            for u in (
                "/api/tables/incidents?state=maybe",
                "/api/tables/incidents?sort=key",
                "/api/tables/windows?order=up",
                "/api/tables/windows?limit=x",
            )
        ]
        missing = await client.get("/api/tables/secrets")
    store.close()
    assert (open_["total"], len(open_["rows"]), open_["rows"][0]["incident_id"]) == (31, 20, 32)
    assert [r["hubs"] for r in closed["rows"]] == ["X00"]
    assert every["total"] == 32 and every["rows"][0]["hub_count"] == 3
    assert cell["total"] == 1 and cell["rows"][0]["hubs"] == "H1, H2, H3"
    assert (
        cell["rows"][0]["work_order"].startswith("#")
        and "wan_provider:cell-A" in cell["rows"][0]["work_order"]
    )
    assert tamper["total"] == 1 and tamper["rows"][0]["kind"] == "tamper flag"
    assert sorted(o["party"] for o in orders["rows"]) == ["supplier", "wan_provider"]
    assert (
        wins["total"] == 20
        and len(wins["rows"]) == 12
        and wins["rows"][0]["window_start"] == "2026-11-02 12:30"
    )
    assert failed["total"] == 2 and [r["failed"] for r in failed["rows"]] == [1, 0]  # 03:30, 03:00
    assert bad == [400, 400, 400, 400] and missing.status == 404


async def test_the_error_log_tables_need_an_error_log(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path / 'gdsc.sqlite'}")
    store.create_schema()
    async with TestClient(TestServer(console_app(store, list))) as client:
        resp = await client.get("/api/tables/incidents")
        windows = await client.get("/api/tables/windows")
        page = await (await client.get("/")).text()
    store.close()
    assert resp.status == 404 and windows.status == 200
    assert "No error log here." in page and 'id="incidents"' not in page


async def test_open_pages_share_one_read() -> None:
    reads = 0

    async def read() -> int:
        nonlocal reads
        reads += 1
        await asyncio.sleep(0)  # a reader in flight: the others wait for it, not read again
        return reads

    shared = Shared(read, max_age=3600.0)
    assert await asyncio.gather(*(shared.get() for _ in range(10))) == [1] * 10
    assert reads == shared.reads == 1
    always = Shared(read, max_age=0.0, busy=0.0)
    assert [await always.get() for _ in range(3)] == [2, 3, 4]


async def test_a_slow_read_is_kept_longer() -> None:
    now = [0.0]

    async def read() -> float:
        now[0] += 2.0  # the read takes two seconds (of this test's clock)
        return now[0]

    shared = Shared(read, max_age=1.0, monotonic=lambda: now[0])
    assert await shared.get() == 2.0
    now[0] += 7.0  # 7 s later: less than 4 x 2 s, the value stands
    assert await shared.get() == 2.0 and shared.reads == 1
    now[0] += 1.0  # 8 s after the read: read again
    assert await shared.get() == 12.0 and shared.reads == 2
