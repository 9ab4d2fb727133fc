"""What a network operator gets through the data services API (issue 19): its outages (list,
detail with restoration times, the Server-Sent Events stream resumed with Last-Event-ID), its
topology (read, edited, loaded from a file; nothing outside its area), its DUoS data set (every
MPAN of its area, half-hourly, only for the time it operated it; in each premises' access log)
and planning aggregates per feeder and substation (feeders below k withheld). Real store (SQLite
and PostgreSQL), real correlator output, FastAPI's TestClient."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from smarthub.clock import ManualClock
from smarthub.gdsc.api.app import create_app
from smarthub.gdsc.api.auth.tokens import TokenStore
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.gdsc.governance.parties import Party, PartyRepository, Role
from smarthub.gdsc.outages.correlate import Correlator
from smarthub.gdsc.outages.store import OutageStore
from smarthub.gdsc.outages.topology import TopologyStore, parse_csv
from smarthub.gdsc.readings.tables import StoredReading
from smarthub.gdsc.store import Store
from smarthub.model.identifiers import make_mpan

JAN = datetime(2026, 1, 1, tzinfo=UTC)
AUG1 = datetime(2026, 8, 1, tzinfo=UTC)
DAY = datetime(2026, 8, 10, tzinfo=UTC)
NOW = datetime(2026, 8, 20, 12, tzinfo=UTC)
HEADER = "premises_id,phase,feeder,secondary_substation,primary_substation\n"
# Feeder F1 (6 homes) and F2 (2 homes) under S1; F3 (4 homes) under S2; both under PR1.
FEEDERS = {**{i: ("F1", "S1") for i in range(6)}, 6: ("F2", "S1"), 7: ("F2", "S1")}
FEEDERS |= {i: ("F3", "S2") for i in range(8, 12)}


@dataclass
class World:
    store: Store
    client: TestClient
    tokens: dict[str, str]
    clock: ManualClock

    def get(self, party: str, path: str, **params: object) -> object:
        r = self.client.get(path, params=params, headers={"Authorization": f"Bearer {self.tokens[party]}"})
        return r

    def auth(self, party: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[party]}"}


def _readings(hub: str, meter: str, obis: str, start: datetime, n: int, value: int) -> list[StoredReading]:
    t0 = int(start.timestamp())
    return [StoredReading(hub, meter, obis, t0 + 1800 * i, 1800, value, 0, 72, 0) for i in range(n)]


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    store = Store(db_url)
    store.create_schema()
    for i in range(12):
        store.register_hub(
            hub_id=f"H{i}",
            premises_id=f"P{i}",
            url="https://h",
            lfdi="A" * 40,
            meters_by_fuel=[(f"E{i}", "electricity"), (f"G{i}", "gas")],
            mpan=make_mpan(12, 1000 + i),
        )
        store.ingest(f"H{i}", _readings(f"H{i}", f"E{i}", "1-0:1.8.0", DAY, 4, 100 + i), {})
        store.ingest(f"H{i}", _readings(f"H{i}", f"E{i}", "1-0:2.8.0", DAY, 4, 10), {})
    repo = PartyRepository(store.engine)
    for p in (
        Party("DNO_A", Role.NETWORK_OPERATOR),
        Party("DNO_B", Role.NETWORK_OPERATOR),
        Party("S1", Role.SUPPLIER),
        Party("OP", Role.OPERATOR),
    ):
        repo.add_party(p)
    topo = TopologyStore(store.engine)
    topo.load(parse_csv(HEADER + "".join(f"P{i},L1,{f},{s},PR1\n" for i, (f, s) in FEEDERS.items())))
    from smarthub.gdsc.governance.aggregates import AggregationGroups

    topo.feeder_groups(AggregationGroups(store.engine), NOW, since=JAN)
    topo.assign_area("DNO_A", "S1", JAN)  # S1's operator all year
    topo.assign_area("DNO_B", "S2", DAY + timedelta(hours=1))  # S2's from 01:00 on 10 August
    # Outages from the correlator: a feeder outage on F1 (restored), a single premises on F3.
    c = Correlator(topo.snapshot())
    t = NOW - timedelta(hours=2)
    changes = []
    for i in range(3):
        changes += c.last_gasp(f"H{i}", t, t + timedelta(seconds=i))
    changes += c.last_gasp("H9", t, t)
    for i in range(3):
        changes += c.restoration(f"H{i}", t, 600 + i, t + timedelta(minutes=11))
    OutageStore(store.engine).save(changes)
    clock = ManualClock(NOW)
    tokens = TokenStore(store.engine)
    issued = {p: tokens.issue(p, NOW) for p in ("DNO_A", "DNO_B", "S1", "OP")}
    guard = AccessGuard(repo, AuditLog(store.engine), clock)
    with TestClient(create_app(guard, tokens)) as client:
        yield World(store, client, issued, clock)
    store.close()


def test_outages_of_the_operators_own_area_with_restoration_times(world: World) -> None:
    a = world.get("DNO_A", "/v1/outages").json()["outages"]
    assert [(o["level"], o["location"], o["customers"], o["restored"]) for o in a] == [("feeder", "F1", 6, 3)]
    assert a[0]["closed"] is not None and a[0]["duration_s"] == 602
    b = world.get("DNO_B", "/v1/outages", live=True).json()["outages"]
    assert [(o["level"], o["location"]) for o in b] == [("premises", "P9")]
    everything = world.get("OP", "/v1/outages").json()["outages"]
    assert {o["location"] for o in everything} == {"F1", "P9"}
    detail = world.get("DNO_A", f"/v1/outages/{a[0]['outage_id']}").json()
    assert detail["path"] == ["F1", "S1", "PR1"]
    assert sorted(p["premises_id"] for p in detail["premises"]) == ["P0", "P1", "P2"]
    assert detail["restored_by"] is not None and all(p["duration_s"] for p in detail["premises"])
    # Another operator's outage: refused, and the reason says whose it is not.
    r = world.get("DNO_B", f"/v1/outages/{a[0]['outage_id']}")
    assert r.status_code == 403 and "does not operate F1" in r.json()["detail"]
    assert world.get("DNO_A", "/v1/outages/999").status_code == 404
    assert world.get("S1", "/v1/outages").status_code == 403


def test_the_event_stream_sends_only_the_area_and_resumes_after_last_event_id(world: World) -> None:
    def events(party: str, **headers: str) -> list[tuple[int, str, str]]:
        r = world.client.get(
            "/v1/outages/events", params={"follow": "false"}, headers={**world.auth(party), **headers}
        )
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        out = []
        for block in r.text.split("\n\n"):
            fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
            if "id" in fields:
                import json

                out.append((int(fields["id"]), fields["event"], json.loads(fields["data"])["location"]))
        return out

    a = events("DNO_A")
    assert {loc for _, _, loc in a} <= {"F1", "P0", "P1", "P2"}
    assert [k for _, k, loc in a if loc == "F1"][:1] == ["opened"] and a[-1][1] == "closed"
    assert [e for e in events("DNO_B")] and {loc for _, _, loc in events("DNO_B")} == {"P9"}
    resumed = events("DNO_A", **{"Last-Event-ID": str(a[1][0])})
    assert resumed == a[2:]
    bad = world.client.get("/v1/outages/events", headers={**world.auth("DNO_A"), "Last-Event-ID": "x"})
    assert bad.status_code == 422 and "header.last-event-id" in bad.json()["detail"]  # its published pattern


def test_topology_is_read_and_edited_within_the_area_only(world: World) -> None:
    doc = world.get("DNO_B", "/v1/network/topology").json()
    ids = {f["properties"].get("premises_id") for f in doc["features"]} - {None}
    assert ids == {"P8", "P9", "P10", "P11"}
    ok = world.client.put(
        "/v1/network/premises/P12", json={"feeder_id": "F3", "phase": "L2"}, headers=world.auth("DNO_B")
    )
    assert ok.status_code == 200, ok.text
    moved = world.client.put(  # moving P0 (S1, DNO_A's) onto F3: DNO_B does not operate its feeder
        "/v1/network/premises/P0", json={"feeder_id": "F3", "phase": "L1"}, headers=world.auth("DNO_B")
    )
    assert moved.status_code == 403 and "F1" in moved.json()["detail"]
    unknown = world.client.put(
        "/v1/network/premises/P13", json={"feeder_id": "F9", "phase": "L1"}, headers=world.auth("OP")
    )
    assert unknown.status_code == 400 and "F9" in unknown.json()["detail"]
    loaded = world.client.post(
        "/v1/network/topology",
        content=HEADER + "P20,L3,F4,S2,PR1\nP21,L1,F4,S2,PR1\n",
        headers={**world.auth("DNO_B"), "Content-Type": "text/csv"},
    )
    assert loaded.status_code == 200 and loaded.json() == {"nodes": 3, "premises": 2}
    foreign = world.client.post(
        "/v1/network/topology",
        content=HEADER + "P22,L3,F5,S1,PR1\n",
        headers={**world.auth("DNO_B"), "Content-Type": "text/csv"},
    )
    assert foreign.status_code == 403
    broken = world.client.post(
        "/v1/network/topology", content=HEADER + "P23,L9,F4,S2,PR1\n", headers=world.auth("DNO_B")
    )
    assert broken.status_code == 400 and "line 2" in broken.json()["detail"]
    places = TopologyStore(world.store.engine).snapshot().places
    assert places["P0"].feeder_id == "F1" and "P22" not in places and "P23" not in places
    assert places["P12"].feeder_id == "F3" and places["P20"].feeder_id == "F4"


def test_duos_data_set_is_the_area_and_the_period_operated(world: World) -> None:
    span = {"start": DAY.isoformat(), "end": (DAY + timedelta(days=1)).isoformat()}
    r = world.get("DNO_B", "/v1/network/duos", **span)
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.text)))
    # S2's premises only, electricity only, and only from 01:00 when DNO_B took S2 over.
    assert {x["premises_id"] for x in rows} == {"P8", "P9", "P10", "P11"}
    assert {x["meter_id"][0] for x in rows} == {"E"}
    assert {x["start"] for x in rows} == {"2026-08-10T01:00:00Z", "2026-08-10T01:30:00Z"}
    assert {x["mpan"] for x in rows} == {make_mpan(12, 1000 + i) for i in range(8, 12)}
    assert {x["value"] for x in rows if x["premises_id"] == "P8"} == {"108"}
    # The premises' access log names the operator's read.
    log = AuditLog(world.store.engine).entries()
    assert any(e.actor == "DNO_B" and e.action == "export" and e.premises_id == "P8" and e.allow for e in log)
    assert not any(e.actor == "DNO_B" and e.premises_id == "P0" for e in log)
    # Per premises through the readings endpoint: the same rule.
    own = world.get("DNO_B", "/v1/premises/P8/readings", meter_id="E8", granularity="half-hourly", **span)
    assert own.status_code == 200 and len(own.json()["readings"]) == 2
    other = world.get("DNO_B", "/v1/premises/P0/readings", meter_id="E0", granularity="half-hourly", **span)
    assert other.status_code == 403
    gas = world.get("DNO_B", "/v1/premises/P8/readings", meter_id="G8", granularity="half-hourly", **span)
    assert gas.status_code == 403 and "electricity only" in gas.json()["detail"]
    assert world.get("S1", "/v1/network/duos", **span).status_code == 403
    assert world.get("OP", "/v1/network/duos", **span).status_code == 403


def test_planning_aggregates_sum_the_feeders_released_over_k(world: World) -> None:
    span = {"start": DAY.isoformat(), "end": (DAY + timedelta(days=1)).isoformat()}
    r = world.get("DNO_A", "/v1/network/nodes/S1/planning", **span)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["feeders"] == ["F1"] and body["withheld"] == ["F2"]  # F2: 2 homes < k = 5
    assert body["premises"] == 6
    assert [b["import_wh"] for b in body["profile"]] == [sum(100 + i for i in range(6))] * 4
    assert [b["export_wh"] for b in body["profile"]] == [60] * 4
    assert body["peak_import_w"] == 615 * 2 and body["import_kwh"] == pytest.approx(4 * 0.615)
    assert world.get("DNO_B", "/v1/network/nodes/S1/planning", **span).status_code == 403
    assert world.get("DNO_A", "/v1/network/nodes/NOPE/planning", **span).status_code == 403
    assert world.get("OP", "/v1/network/nodes/NOPE/planning", **span).status_code == 404
