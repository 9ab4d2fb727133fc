"""The GDSC operator console in Chromium with 2,000 hubs: the tables (windows, incidents, work
orders, hubs) paged, sorted and filtered by the server and updating by themselves (Server-Sent
Events), the hub detail page, and the outage map and timeline. Screenshots go to
test-artifacts/browser/operator-*.png."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp.test_utils import TestServer
from playwright.async_api import Browser

from smarthub.clock import ManualClock
from smarthub.gdsc.incidents.console import console_app
from smarthub.gdsc.incidents.error_log import ErrorLog
from smarthub.gdsc.outages.service import OutageService
from smarthub.gdsc.outages.store import StoredAlert
from smarthub.gdsc.outages.topology import TopologyStore
from smarthub.gdsc.pull.scheduler import WindowProgress
from smarthub.gdsc.store import Store
from smarthub.sim.fleet import home_specs
from smarthub.sim.topology import fleet_topology
from smarthub.wan.contract.alerts import Alert, AlertKind

from .conftest import ARTIFACTS, DESKTOP

HUBS = 2000


async def test_console_pages_sorts_filters_and_updates_live(browser: Browser, tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'gdsc.sqlite'}")
    store.create_schema()
    for i in range(HUBS):
        store.register_hub(
            hub_id=f"HUB{i:04d}",
            premises_id=f"P-{i:04d}",
            url=f"https://h{i}",
            lfdi=f"{i:040x}",
            meters_by_fuel=[(f"E{i}", "electricity")],
        )
    t0 = datetime(2026, 3, 2, tzinfo=UTC)
    cell = {"HUB1001", "HUB1002", "HUB1003"}
    log = ErrorLog(store, wan_link_of=lambda hub: "cell-9" if hub in cell else None)
    for i in range(60):  # 60 dead hubs and a WAN outage: 61 incidents, more than one page
        log.record_unreachable(f"HUB{i * 7:04d}", t0, "connect timeout")
    for hub in sorted(cell):
        log.record_unreachable(hub, t0, "connect timeout")
    windows: list[WindowProgress] = [
        WindowProgress(t0 - timedelta(minutes=30 * (3 - k)), planned=HUBS, done=HUBS, failed=k)
        for k in range(3)
    ]
    server = TestServer(console_app(store, lambda: windows, log, live_every=1.0))
    await server.start_server()
    page = await browser.new_page(viewport=DESKTOP)
    try:
        await page.goto(str(server.make_url("/")))
        rows = page.locator("#hubs tbody tr")
        n = await rows.count()
        assert n == 50, (n, (await page.content())[:3000])
        await page.wait_for_function("document.getElementById('hubs-page').textContent.includes('of 2000')")
        await page.click("#hubs-next")
        await page.wait_for_function("document.getElementById('hubs-page').textContent.startsWith('51')")
        assert await rows.first.locator("td").first.inner_text() == "HUB0050"
        await page.click("#hubs th[data-key=hub_id]")  # the same column again: descending
        await page.wait_for_function(
            "document.querySelector('#hubs tbody td') && "
            "document.querySelector('#hubs tbody td').textContent === 'HUB1999'"
        )
        await page.fill("#hubs-q", "HUB00")
        await page.wait_for_function("document.getElementById('hubs-page').textContent.includes('of 100')")
        await page.fill("#hubs-q", "HUB000")
        await page.wait_for_function("document.getElementById('hubs-page').textContent === '1–10 of 10'")

        # The error log: 60 open incidents, paged by the server, newest first, filtered.
        assert await page.inner_text("#incidents-page") == "1–20 of 61"
        await page.click("#incidents-next")
        await page.wait_for_function(
            "document.getElementById('incidents-page').textContent === '21–40 of 61'"
        )
        await page.fill("#incidents-q", "HUB0007")
        await page.wait_for_function("document.getElementById('incidents-page').textContent === '1–1 of 1'")
        assert "hub unreachable" in await page.inner_text("#incidents tbody")
        await page.fill("#incidents-q", "")
        assert await page.inner_text("#work_orders-page") == "1–1 of 1"
        assert "wan_provider:cell-9" in await page.inner_text("#work_orders tbody")
        # The windows: newest first; sorted by failed pulls on a click.
        assert (await page.locator("#windows tbody td").first.inner_text()) == "2026-03-01 23:30"
        await page.click("#windows th[data-key=failed]")
        await page.wait_for_function(
            "document.querySelector('#windows tbody td').textContent === '2026-03-01 22:30'"
        )

        # The fleet moves on: a window runs, a hub is pulled, a hub is found dead. Every table
        # shows it without the page being reloaded.
        windows.append(WindowProgress(t0 + timedelta(minutes=30), planned=HUBS, done=1500, failed=12))
        store.log_pull(
            hub_id="HUB0001",
            window_start=t0,
            started=t0,
            finished=t0,
            ok=True,
            readings=6,
            inserted=6,
            error=None,
        )
        log.record_unreachable("HUB1999", t0 + timedelta(minutes=30), "connect timeout")
        await page.wait_for_function("document.getElementById('live').textContent.includes('pulls 7500')")
        assert "failed 15" in await page.inner_text("#live")
        assert await page.locator("#chart svg rect").count() >= 1
        await page.wait_for_function("document.getElementById('incidents-page').textContent === '1–20 of 62'")
        await page.wait_for_function("document.getElementById('windows-page').textContent === '1–4 of 4'")
        await page.wait_for_function(
            "[...document.querySelectorAll('#hubs tbody tr')].some(r => r.cells[0].textContent === 'HUB0001'"
            " && r.cells[4].textContent === '1')"
        )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "operator-console.png"), full_page=False)
        await page.screenshot(path=str(ARTIFACTS / "operator-console-full.png"), full_page=True)
    finally:
        await page.close()
        await server.close()
        store.close()


async def test_hub_detail_page_opens_from_the_fleet_and_updates_live(
    browser: Browser, tmp_path: Path
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'gdsc.sqlite'}")
    store.create_schema()
    for i in range(3):
        store.register_hub(
            hub_id=f"HUB{i}",
            premises_id=f"P-{i}",
            url=f"https://h{i}",
            lfdi=f"{i:040x}",
            meters_by_fuel=[(f"E{i}", "electricity")],
        )
    t = datetime(2026, 3, 2, tzinfo=UTC)
    store.log_pull(
        hub_id="HUB1", window_start=t, started=t, finished=t, ok=True, readings=6, inserted=6, error=None
    )
    server = TestServer(console_app(store, list, ErrorLog(store), live_every=0.5))
    await server.start_server()
    page = await browser.new_page(viewport=DESKTOP)
    try:
        await page.goto(str(server.make_url("/")))
        await page.click("#hubs tbody a:text('HUB1')")
        await page.wait_for_url("**/hubs/HUB1")
        assert await page.inner_text("h1") == "Hub HUB1"
        assert "1 pulls, 1 ok, 0 failed" in await page.inner_text("#pulls-summary")
        assert "E1" in await page.inner_text("#meters")
        await page.wait_for_function("document.getElementById('live').textContent.startsWith('live')")
        # A failed pull is logged: the page shows it without being reloaded.
        later = t + timedelta(minutes=30)
        store.log_pull(
            hub_id="HUB1",
            window_start=later,
            started=later,
            finished=later,
            ok=False,
            readings=0,
            inserted=0,
            error="TLS handshake timed out",
        )
        await page.wait_for_function(
            "document.getElementById('pulls-summary').textContent.includes('2 pulls, 1 ok, 1 failed')"
        )
        assert "TLS handshake timed out" in await page.inner_text("#pulls")
        await page.screenshot(path=str(ARTIFACTS / "operator-hub-detail.png"), full_page=True)
    finally:
        await page.close()
        await server.close()
        store.close()


async def test_outage_map_and_timeline_of_2000_homes_update_live(browser: Browser, tmp_path: Path) -> None:
    """The simulator's network for 2,000 homes; a substation loses supply (two feeders' homes
    send their last gasps), then a single home; the map and the timeline follow without a reload."""
    specs = home_specs(HUBS, seed=1)
    topo = fleet_topology(specs)
    store = Store(f"sqlite:///{tmp_path / 'gdsc.sqlite'}")
    store.create_schema()
    for s in specs:
        store.register_hub(
            hub_id=s.hub_id, premises_id=s.premises_id, url="https://h", lfdi="0" * 40, meters_by_fuel=[]
        )
    TopologyStore(store.engine).load(topo)
    t0 = datetime(2026, 11, 2, 18, 0, tzinfo=UTC)
    clock = ManualClock(t0)
    outages = OutageService(store.engine, clock)
    hub_of = {s.premises_id: s.hub_id for s in specs}
    feeders = sorted(n.node_id for n in topo.nodes.values() if n.parent_id == "SS-003")
    cut = [hub_of[p.premises_id] for p in topo.places.values() if p.feeder_id in feeders]

    def alerts(kind: AlertKind, hubs: list[str], seq: int, lost: datetime, duration_s: int = 0) -> None:
        sent = lost + timedelta(seconds=duration_s)
        outages.handle([StoredAlert(Alert(kind, h, seq, sent, lost, duration_s), sent) for h in hubs])

    alerts(AlertKind.LAST_GASP, cut, 1, t0)
    clock.advance(timedelta(minutes=30))
    alerts(AlertKind.RESTORATION, cut, 2, t0, 1800)  # an earlier outage, over: on the timeline
    clock.advance(timedelta(minutes=30))
    second = clock.now()
    alerts(AlertKind.LAST_GASP, cut, 3, second)
    clock.advance(timedelta(minutes=1))
    # Ten hubs elsewhere stop answering with no last gasp (a WAN cell down, the meters on supply).
    log = ErrorLog(store, power_out=outages.power_out)
    silent = [s.hub_id for s in specs if s.hub_id not in cut][100:110]
    for hub in silent:
        log.record_unreachable(hub, clock.now(), "connect timeout")
    server = TestServer(console_app(store, list, log, live_every=0.5, clock=clock))
    await server.start_server()
    page = await browser.new_page(viewport=DESKTOP)
    try:
        await page.goto(str(server.make_url("/outages")))
        assert await page.locator("#map circle.premises").count() == HUBS
        assert await page.locator("#map circle.no-supply").count() == len(cut)
        assert await page.locator("#map rect.secondary[fill='#b00020']").count() == 1
        assert await page.locator("#map circle.hub-silent").count() == len(silent)
        assert "SS-003" in await page.inner_text("#live-outages")
        assert await page.locator("#timeline rect.outage.closed").count() == 1
        assert await page.locator("#timeline rect.outage.live").count() == 1
        await page.wait_for_function("document.getElementById('live').textContent.startsWith('live')")
        # Half the homes come back, and one home elsewhere loses supply: the page follows.
        clock.advance(timedelta(minutes=10))
        alerts(AlertKind.RESTORATION, cut[: len(cut) // 2], 4, second, 600)
        alerts(AlertKind.LAST_GASP, ["HUB000000"], 1, clock.now())
        await page.wait_for_function(
            f"document.querySelectorAll('#map circle.no-supply').length === {len(cut) - len(cut) // 2 + 1}"
        )
        assert await page.locator("#map circle.restored").count() == len(cut) // 2
        assert await page.locator("#timeline rect.outage.live").count() == 2
        await page.locator("#map-box").scroll_into_view_if_needed()
        await page.screenshot(path=str(ARTIFACTS / "operator-outages.png"), full_page=False)
        await page.screenshot(path=str(ARTIFACTS / "operator-outages-full.png"), full_page=True)
        # A premises on the map leads to its hub's page.
        dark = page.locator("#map circle.no-supply").first
        premises_id = await dark.get_attribute("data-id")
        await dark.click()
        await page.wait_for_url("**/hubs/HUB*")
        assert premises_id is not None and premises_id in await page.inner_text("#facts")
    finally:
        await page.close()
        await server.close()
        store.close()
