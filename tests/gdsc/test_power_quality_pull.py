"""Power quality end to end: a DSMR meter's telegrams (voltage 1-0:32.7.0, sag and swell counters)
decoded at a hub that keeps 10-minute statistics, pulled by the GDSC over mutual TLS by bulk and by
walking the 2030.5 resources (same store either way), and summarised per feeder for the network
operator through the API; and a feeder outage that takes three homes' meters and hubs down shows
in the operator's summary as long failures of the outage's duration, from the meters' logs.
SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from smarthub.clock import ManualClock, SystemClock
from smarthub.gdsc.api.app import create_app
from smarthub.gdsc.api.auth.tokens import TokenStore
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.gdsc.fleet.registry import HubRecord
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.gdsc.governance.parties import Party, PartyRepository
from smarthub.gdsc.governance.parties import Role as PartyRole
from smarthub.gdsc.outages.topology import TopologyStore, parse_csv
from smarthub.gdsc.pull.collector import Collector
from smarthub.gdsc.store import Store
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.hub.power_quality import PowerQuality, from_history
from smarthub.meters.dsmr import decode_telegram, readings
from smarthub.sim.dsmr_meter import DsmrMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context

DAY0 = datetime(2026, 3, 2, tzinfo=UTC)
HOUR = 3600


async def _hub(tmp_path: Path, now: datetime) -> AsyncIterator[tuple[SmartHub, HubRecord, list[float]]]:
    ca = CertificateAuthority.create("test GDSC CA", now)
    ca.save(tmp_path / "ca")
    cert = ca.issue(Role.HUB, "HUB1", now, hosts=("127.0.0.1",))
    cert.save(tmp_path, "hub")
    ca.issue(Role.COLLECTOR, "collector", now).save(tmp_path, "collector")
    history = HistoryStore(tmp_path / "history.sqlite")
    hub = SmartHub("HUB1", history)
    hub.power_quality = PowerQuality()
    meter = DsmrMeterSimulator("E1", None, HouseholdProfile(5), DAY0)
    volts: list[float] = []
    for i in range(6 * 60 + 1):  # a telegram every 10 s for an hour (and the first of the next)
        t = DAY0 + timedelta(seconds=10 * i)
        if i in (100, 101, 250):  # sags counted by the meter: three at 12:16-12:17, one at 12:41
            meter.sags += 2 if i == 100 else 1
        rs = readings(decode_telegram(meter.telegram_at(t)))
        volts += [float(r.value) for r in rs if str(r.obis) == "1-0:32.7.0" and i < 360]  # type: ignore[arg-type]
        hub.ingest(rs)
    server = HubWanServer("HUB1", cert.lfdi, hub, lambda: int(DAY0.timestamp()))
    port = await server.start(
        "127.0.0.1", 0, server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    )
    yield hub, HubRecord("HUB1", "P1", f"https://127.0.0.1:{port}", cert.lfdi, "active"), volts
    await server.stop()
    history.close()


@pytest.fixture
async def rig(tmp_path: Path, wall_now: datetime) -> AsyncIterator[tuple[SmartHub, HubRecord, list[float]]]:
    async for r in _hub(tmp_path, wall_now):
        yield r


def _store(url: str) -> Store:
    store = Store(url)
    store.create_schema()
    store.register_hub(
        hub_id="HUB1",
        premises_id="P1",
        url="https://x",
        lfdi="00" * 20,
        meters_by_fuel=[("E1", "electricity")],
    )
    return store


async def test_voltage_statistics_reach_the_gdsc_and_the_feeder_summary(
    rig: tuple[SmartHub, HubRecord, list[float]], db_url: str, tmp_path: Path
) -> None:
    record, volts = rig[1:]
    bulk_store, walk_store = _store(db_url), _store(f"sqlite:///{tmp_path / 'walk.sqlite'}")
    ctx = client_context(tmp_path / "collector.pem", tmp_path / "collector.key", tmp_path / "ca" / "ca.pem")
    bulk, walk = (
        Collector(bulk_store, ctx, SystemClock(), bulk=True),
        Collector(walk_store, ctx, SystemClock(), bulk=False),
    )
    try:
        window = DAY0 + timedelta(hours=2)
        b, w = await bulk.pull(record, window), await walk.pull(record, window)
        assert b.ok and w.ok, (b.error, w.error)
        got = {r for r in bulk_store.readings() if r.obis.startswith("1-0:32.")}
        assert got == {r for r in walk_store.readings() if r.obis.startswith("1-0:32.")}
        by = {}
        for r in got:
            by.setdefault(r.obis, []).append(r)
        # Six 10-minute periods of L1: mean, minimum, maximum, sag and swell counts.
        assert {o: len(rs) for o, rs in by.items()} == {
            "1-0:32.5.0": 6, "1-0:32.3.0": 6, "1-0:32.6.0": 6, "1-0:32.32.0": 6, "1-0:32.36.0": 6,
        }  # fmt: skip
        sags = {r.interval_start - int(DAY0.timestamp()): r.value for r in by["1-0:32.32.0"] if r.value}
        assert sags == {600: 3, 2400: 1}  # 12:10-12:20 and 12:40-12:50
        assert {r.duration for r in by["1-0:32.5.0"]} == {600}
        first = min(by["1-0:32.5.0"], key=lambda r: r.interval_start)
        assert first.value * 10.0**first.power_of_ten == pytest.approx(sum(volts[:60]) / 60, abs=0.051)
        # The network operator's summary for the feeder.
        TopologyStore(bulk_store.engine).load(
            parse_csv("premises_id,phase,feeder,secondary_substation,primary_substation\nP1,L1,F1,S1,PR1\n")
        )
        repo = PartyRepository(bulk_store.engine)
        repo.add_party(Party("DNO", PartyRole.NETWORK_OPERATOR))
        TopologyStore(bulk_store.engine).assign_area("DNO", "S1", DAY0)
        clock = ManualClock(DAY0 + timedelta(days=1))
        token = TokenStore(bulk_store.engine).issue("DNO", clock.now())
        app = create_app(AccessGuard(repo, AuditLog(bulk_store.engine), clock), TokenStore(bulk_store.engine))
        with TestClient(app) as client:
            r = client.get(
                "/v1/network/nodes/F1/power-quality",
                params={"start": DAY0.isoformat(), "end": (DAY0 + timedelta(hours=2)).isoformat()},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert r.status_code == 200, r.text
        body = r.json()
        l1 = body["phases"][0]
        assert (l1["phase"], l1["periods"], l1["sags"], l1["swells"], l1["premises_reporting"]) == (
            "L1",
            6,
            4,
            0,
            1,
        )
        assert l1["min_v"] == pytest.approx(min(volts)) and l1["max_v"] == pytest.approx(max(volts))
        assert l1["mean_v"] == pytest.approx(sum(volts) / len(volts), abs=0.06)
        assert l1["share_within_10pct"] == 1.0 and body["en50160"] is True
        assert body["phases"][1]["periods"] == 0  # a single-phase meter: nothing on L2
    finally:
        await bulk.close()
        await walk.close()
        bulk_store.close()
        walk_store.close()


# ---- a feeder outage, end to end --------------------------------------------------------------

CUT, BACK = DAY0 + timedelta(minutes=47, seconds=20), DAY0 + timedelta(hours=1, minutes=58, seconds=50)
HUBS = {"HUB1": ("P1", "E1"), "HUB2": ("P2", "E2"), "HUB3": ("P3", "E3")}  # P1, P2 on F1; P3 on F2


async def _feeder(tmp_path: Path, now: datetime) -> AsyncIterator[list[HubRecord]]:
    """Three homes' hubs, each reading its DSMR meter every minute for four hours. Feeder F1
    (P1, P2) loses supply from 12:47:20 to 13:58:50: its meters and hubs go dark together (the
    hubs hear nothing), and HUB2 restarts on the return (a new summary over the same history,
    as the hub assembly builds it); P1 had a 50-second blip at 12:20 besides."""
    ca = CertificateAuthority.create("test GDSC CA", now)
    ca.save(tmp_path / "ca")
    ca.issue(Role.COLLECTOR, "collector", now).save(tmp_path, "collector")
    records, servers, stores = [], [], []
    for i, (hub_id, (premises, meter_id)) in enumerate(HUBS.items()):
        cert = ca.issue(Role.HUB, hub_id, now, hosts=("127.0.0.1",))
        cert.save(tmp_path, hub_id)
        path = tmp_path / f"{hub_id}.sqlite"
        history = HistoryStore(path)
        hub = SmartHub(hub_id, history)
        hub.power_quality = from_history(history)
        meter = DsmrMeterSimulator(meter_id, None, HouseholdProfile(i + 1), DAY0)
        for m in range(4 * 60 + 1):
            t = DAY0 + timedelta(minutes=m)
            if premises == "P1" and m == 20:
                meter.power_lost(t + timedelta(seconds=5))
                meter.power_restored(t + timedelta(seconds=55))
            if premises != "P3" and t == CUT - timedelta(seconds=20):
                meter.power_lost(CUT)
            if premises != "P3" and t == BACK + timedelta(seconds=10):
                meter.power_restored(BACK)
                if hub_id == "HUB2":  # the hub comes back up with a new summary, from its history
                    history.close()
                    history = HistoryStore(path)
                    hub = SmartHub(hub_id, history)
                    hub.power_quality = from_history(history)
            if premises != "P3" and CUT <= t < BACK:
                continue  # no supply: the meter sends nothing, the hub hears nothing
            hub.ingest(readings(decode_telegram(meter.telegram_at(t))))
        server = HubWanServer(hub_id, cert.lfdi, hub, lambda: int(DAY0.timestamp()))
        port = await server.start(
            "127.0.0.1",
            0,
            server_context(
                tmp_path / f"{hub_id}.pem", tmp_path / f"{hub_id}.key", tmp_path / "ca" / "ca.pem"
            ),
        )
        servers.append(server)
        stores.append(history)
        records.append(HubRecord(hub_id, premises, f"https://127.0.0.1:{port}", cert.lfdi, "active"))
    yield records
    for server in servers:
        await server.stop()
    for history in stores:
        history.close()


@pytest.fixture
async def feeder(tmp_path: Path, wall_now: datetime) -> AsyncIterator[list[HubRecord]]:
    async for r in _feeder(tmp_path, wall_now):
        yield r


async def test_a_feeder_outage_is_a_long_failure_of_its_duration_in_the_operators_summary(
    feeder: list[HubRecord], db_url: str, tmp_path: Path
) -> None:
    store = Store(db_url)
    store.create_schema()
    for hub_id, (premises, meter_id) in HUBS.items():
        store.register_hub(
            hub_id=hub_id, premises_id=premises, url="https://x", lfdi="00" * 20,
            meters_by_fuel=[(meter_id, "electricity")],
        )  # fmt: skip
    walk_store = _store(f"sqlite:///{tmp_path / 'walk.sqlite'}")
    ctx = client_context(tmp_path / "collector.pem", tmp_path / "collector.key", tmp_path / "ca" / "ca.pem")
    bulk = Collector(store, ctx, SystemClock(), bulk=True)
    walk = Collector(walk_store, ctx, SystemClock(), bulk=False)
    window = DAY0 + timedelta(hours=5)
    try:
        for record in feeder:
            got = await bulk.pull(record, window)
            assert got.ok, got.error
        w = await walk.pull(feeder[0], window)  # the same channels by walking HUB1's resources
        assert w.ok, w.error
        failures = ("0-0:96.7.21", "0-0:96.7.9", "0-0:96.7.19")
        by_bulk = {
            (r.obis, r.interval_start, r.value)
            for r in store.readings()
            if r.obis in failures and r.hub_id == "HUB1"
        }
        assert by_bulk == {
            (r.obis, r.interval_start, r.value) for r in walk_store.readings() if r.obis in failures
        }
        TopologyStore(store.engine).load(
            parse_csv(
                "premises_id,phase,feeder,secondary_substation,primary_substation\n"
                "P1,L1,F1,S1,PR1\nP2,L1,F1,S1,PR1\nP3,L1,F2,S1,PR1\nP9,L1,F9,S9,PR1\n"
            )
        )
        repo = PartyRepository(store.engine)
        repo.add_party(Party("DNO", PartyRole.NETWORK_OPERATOR))
        TopologyStore(store.engine).assign_area("DNO", "S1", DAY0)  # not S9: another operator's
        clock = ManualClock(DAY0 + timedelta(days=1))
        token = TokenStore(store.engine).issue("DNO", clock.now())
        app = create_app(AccessGuard(repo, AuditLog(store.engine), clock), TokenStore(store.engine))
        asked = {"start": DAY0.isoformat(), "end": (DAY0 + timedelta(hours=5)).isoformat()}
        auth = {"Authorization": f"Bearer {token}"}
        with TestClient(app) as client:
            summary = {
                node: client.get(f"/v1/network/nodes/{node}/power-quality", params=asked, headers=auth)
                for node in ("F1", "F2", "S1", "S9")
            }
            before = client.get(
                "/v1/network/nodes/F1/power-quality",
                params={"start": DAY0.isoformat(), "end": (DAY0 + timedelta(minutes=40)).isoformat()},
                headers=auth,
            )
        minutes = (BACK - CUT).total_seconds() / 60  # 71.5
        assert summary["F1"].status_code == 200, summary["F1"].text
        assert summary["F1"].json()["failures"] == {
            "short": 1,  # P1's blip
            "long": 2,
            "outage_minutes": 2 * minutes,
            "longest_outage_minutes": minutes,
            "premises_reporting": 2,
            "premises_with_long_failures": 2,
        }
        assert summary["F2"].json()["failures"] == {
            "short": 0, "long": 0, "outage_minutes": 0.0, "longest_outage_minutes": 0.0,
            "premises_reporting": 1, "premises_with_long_failures": 0,
        }  # fmt: skip
        assert summary["S1"].json()["failures"] == {
            **summary["F1"].json()["failures"],
            "premises_reporting": 3,
        }
        assert summary["S9"].status_code == 403  # outside the operator's area
        # Before the cut: only the blip.
        assert (before.json()["failures"]["short"], before.json()["failures"]["long"]) == (1, 0)
    finally:
        await bulk.close()
        await walk.close()
        store.close()
        walk_store.close()
