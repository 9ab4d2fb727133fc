"""The operator console shows the error log: open incidents by kind (chart) and work orders."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from smarthub.gdsc.incidents.console import console_app
from smarthub.gdsc.incidents.error_log import ErrorLog
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
