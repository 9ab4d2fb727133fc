"""The operator console's outage map and timeline, from a real topology and outages the GDSC's
correlator opened and closed from last gasps and restorations (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from smarthub.clock import ManualClock
from smarthub.gdsc.incidents.console import console_app
from smarthub.gdsc.incidents.error_log import ErrorLog
from smarthub.gdsc.outages.map import OutageState, map_svg, timeline_svg
from smarthub.gdsc.outages.service import OutageService
from smarthub.gdsc.outages.store import StoredAlert
from smarthub.gdsc.outages.topology import Topology, TopologyStore, parse_csv
from smarthub.gdsc.store import Store
from smarthub.wan.contract.alerts import Alert, AlertKind

T = datetime(2026, 11, 2, 18, 0, tzinfo=UTC)
# Two feeders of four homes on one secondary substation, positions in metres.
TOPOLOGY = "premises_id,phase,feeder,secondary_substation,primary_substation,x,y\n" + "".join(
    f"P{i},L{i % 3 + 1},F{i // 4 + 1},S1,PR1,{40 + 12 * (i % 4)},{60 * (i // 4)}\n" for i in range(8)
)


def _world(db_url: str) -> tuple[Store, OutageService, ManualClock]:
    store = Store(db_url)
    store.create_schema()
    for i in range(8):
        store.register_hub(
            hub_id=f"H{i}", premises_id=f"P{i}", url="https://x", lfdi=f"{i:040x}", meters_by_fuel=[]
        )
    TopologyStore(store.engine).load(parse_csv(TOPOLOGY))
    clock = ManualClock(T)
    return store, OutageService(store.engine, clock), clock


def _alert(kind: AlertKind, hub: str, seq: int, lost: datetime, duration_s: int = 0) -> StoredAlert:
    sent = lost + timedelta(seconds=duration_s)
    return StoredAlert(Alert(kind, hub, seq, sent, lost, duration_s), sent)


def _premises_state(page: str) -> dict[str, str]:
    return dict(
        (m.group(2), m.group(1))
        for m in re.finditer(r'<circle class="premises ([a-z-]+)" data-id="([^"]+)"', page)
    )


async def test_the_map_shows_a_feeder_outage_and_the_timeline_its_course(db_url: str) -> None:
    store, outages, clock = _world(db_url)
    lost = T - timedelta(minutes=3)
    try:
        async with TestClient(TestServer(console_app(store, list, clock=clock))) as client:
            before = await (await client.get("/outages")).text()
            for seq, hub in enumerate(("H0", "H1", "H2"), 1):  # three of F1's four homes
                outages.handle([_alert(AlertKind.LAST_GASP, hub, seq, lost)])
            outages.handle([_alert(AlertKind.RESTORATION, "H0", 9, lost, 600)])
            # H6 stops answering without a last gasp: a dead hub or its WAN, not a power cut.
            ErrorLog(store, power_out=outages.power_out).record_unreachable("H6", T, "connect timeout")
            during = await (await client.get("/outages")).text()
            part = await (await client.get("/outages?part=body")).text()
            live = await client.get("/api/live")
            event = (await live.content.readuntil(b"\n\n")).decode()
            live.close()
            for seq, hub in enumerate(("H1", "H2"), 10):
                clock.advance(timedelta(minutes=20))
                outages.handle([_alert(AlertKind.RESTORATION, hub, seq, lost, 1500)])
            after = await (await client.get("/outages")).text()
            that_day = await (await client.get("/outages?since=2026-11-02&until=2026-11-03")).text()
            next_day = await (await client.get("/outages?since=2026-11-03")).text()
            bad = await client.get("/outages?since=yesterday")
            bad_text = await bad.text()
            fleet = await (await client.get("/")).text()
    finally:
        store.close()
    assert "No live outage." in before and set(_premises_state(before).values()) == {"supplied"}
    assert "No outage yet." in before
    states = _premises_state(during)
    assert len(states) == 8
    assert '<a href="/hubs/H1"><circle class="premises no-supply" data-id="P1"' in during  # to the hub's page
    assert states["P0"] == "restored" and states["P1"] == states["P2"] == "no-supply"
    assert {states[f"P{i}"] for i in (3, 4, 5, 7)} == {"supplied"} and states["P6"] == "hub-silent"
    assert "1 hubs not answering without a last gasp" in during
    # The feeder is drawn red and thick, its neighbour not; the outage is labelled on the map.
    assert re.search(r'class="feeder" data-id="F1"[^>]*stroke="#b00020" stroke-width="3"', during)
    assert re.search(r'class="feeder" data-id="F2"[^>]*stroke="#8a94a6"', during)
    assert re.search(r"feeder F1: 4 customers</text>", during)
    assert re.search(
        r"<td>feeder</td><td>F1</td><td class='n'>4</td><td class='n'>3</td><td class='n'>1</td>", during
    )
    assert '<rect class="outage live"' in during and "3 premises without supply" not in during
    assert "2 premises without supply" in during
    assert part.startswith("<p id='outage-summary'>") and "<html" not in part
    assert '"outage_event": ' in event
    # Every premises restored: the outage closes, the map is green again, the timeline keeps it.
    assert "No live outage." in after
    assert set(_premises_state(after).values()) == {"supplied", "hub-silent"}  # H6 is still silent
    assert '<rect class="outage closed"' in after and "25 min" in after
    assert '<a href="/outages">' in fleet
    assert '<rect class="outage closed"' in that_day and "value='2026-11-02'" in that_day
    assert "No outage opened in this period." in next_day and '<rect class="outage' not in next_day
    assert bad.status == 400 and "since is a date" in bad_text


async def test_without_positions_the_network_is_drawn_as_a_schematic(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'gdsc.sqlite'}")
    store.create_schema()
    csv = "premises_id,phase,feeder,secondary_substation,primary_substation\n" + "".join(
        f"P<{i}>,L1,F{i % 3},S{i % 3 // 2},PR1\n" for i in range(9)
    )
    TopologyStore(store.engine).load(parse_csv(csv))
    try:
        async with TestClient(TestServer(console_app(store, list, clock=ManualClock(T)))) as client:
            page = await (await client.get("/outages")).text()
    finally:
        store.close()
    assert len(_premises_state(page)) == 9 and "P&lt;3&gt;" in page and "P<3>" not in page
    assert page.count('class="feeder"') == 3 and page.count('class="secondary"') == 2
    assert page.count('class="primary"') == 1


async def test_no_topology_says_how_to_load_one(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'gdsc.sqlite'}")
    store.create_schema()
    try:
        async with TestClient(TestServer(console_app(store, list, clock=ManualClock(T)))) as client:
            page = await (await client.get("/outages")).text()
    finally:
        store.close()
    assert "No network topology is loaded (smarthub gdsc --topology FILE)." in page


def test_the_timeline_runs_open_outages_to_now_and_keeps_the_newest() -> None:
    rows = [
        {
            "outage_id": i,
            "level": "premises",
            "location": f"P{i}",
            "customers": 1,
            "premises_heard": 1,
            "restored": 0 if i == 59 else 1,
            "opened": (T + timedelta(minutes=i)).isoformat(),
            "started": (T + timedelta(minutes=i)).isoformat(),
            "closed": None if i == 59 else (T + timedelta(minutes=i + 5)).isoformat(),
            "duration_s": None if i == 59 else 300,
        }
        for i in range(59, -1, -1)  # newest first, as OutageStore.find gives them
    ]
    svg = timeline_svg(rows, T + timedelta(hours=2))
    bars = re.findall(
        r'<rect class="outage (live|closed)" data-id="(\d+)" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', svg
    )
    assert len(bars) == 40 and [int(b[1]) for b in bars] == list(range(20, 60))  # oldest at the top
    live = [b for b in bars if b[0] == "live"]
    assert [int(b[1]) for b in live] == [59]
    x, w = float(live[0][2]), float(live[0][3])
    assert abs(x + w - 920.0) < 0.5  # it runs to the right end of the axis: now
    assert map_svg(Topology(), OutageState()).startswith("<p id='map'")
