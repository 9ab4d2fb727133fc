"""Issue 25: appliance data over the WAN, end to end — a simulated home's smart plugs, the hub's
privacy filter, the GDSC's pull and store, the data services API.

Real pieces: a simulated home (its meters and four smart plugs on the HAN, its hub serving 2030.5
over mutual TLS on loopback), the GDSC service (`GdscService.from_state`: scheduler, collector,
upkeep) on an accelerated clock, the store on SQLite and PostgreSQL, the API app from the same
state through FastAPI's TestClient. Before the occupant consents nothing of the plugs reaches the
GDSC; after a consent to appliance data (through the API, delivered to the hub as ``consent.set``)
the plugs are pulled, recorded with their appliances' names and served to the consented service
— equal to what the hub itself holds — and the whole-home readings are still refused to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from smarthub.clock import AcceleratedClock
from smarthub.gdsc.api.app import app_from_state
from smarthub.gdsc.api.auth.tokens import TokenStore
from smarthub.gdsc.governance.parties import Party, PartyRepository, Role, Tenancy
from smarthub.gdsc.readings.appliances import ApplianceRegistry
from smarthub.gdsc.readings.tables import interval_channels
from smarthub.gdsc.service import GdscService
from smarthub.model.obis import IMPORT_ACTIVE_ENERGY
from smarthub.model.reading_type import APPLIANCE_RUN_SECONDS, APPLIANCE_STARTS
from smarthub.sim.fleet import Fleet, home_specs, provision

SIM_START = datetime(2026, 3, 2, tzinfo=UTC)
HOURS = 5


async def _until(check: Callable[[], bool], what: str, wall_seconds: float = 90.0) -> None:
    for _ in range(int(wall_seconds / 0.1)):
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


def _plug_channels(engine: Any, plugs: set[str]) -> set[str]:
    with engine.connect() as conn:
        return {r.meter_id for r in conn.execute(select(interval_channels.c.meter_id)) if r.meter_id in plugs}


async def test_plugs_reach_the_consented_service_only_after_the_occupant_consents(
    tmp_path: Path, db_url: str, wall_now: datetime
) -> None:
    specs = [s for s in home_specs(4, seed=3) if s.kind == "zigbee"][:1]  # the homes with plugs
    provision(tmp_path, specs, wall_now - timedelta(minutes=10))
    clock = AcceleratedClock(SIM_START, 600.0)  # 10 simulated minutes a wall second
    fleet = Fleet(tmp_path, specs, clock, SIM_START)
    (home,) = fleet.homes
    plugs = dict(home.appliances)  # EUI-64 -> appliance name
    assert len(plugs) == 4
    premises = home.spec.premises_id
    await fleet.start_servers(tmp_path / "ca" / "ca.pem")
    fleet.write_manifest()
    service = GdscService.from_state(
        tmp_path, clock, db_url, window=timedelta(minutes=10), upkeep_every=timedelta(minutes=1)
    )
    store = service.store
    repo = PartyRepository(store.engine)
    for p in (Party("C1", Role.CONSUMER), Party("AH", Role.THIRD_PARTY), Party("OP", Role.OPERATOR)):
        repo.add_party(p)
    repo.add_tenancy(Tenancy("T1", premises, "C1", SIM_START - timedelta(days=1)))
    tokens = TokenStore(store.engine)
    auth = {p: {"Authorization": f"Bearer {tokens.issue(p, SIM_START)}"} for p in ("C1", "AH", "OP")}
    end = SIM_START + timedelta(hours=HOURS)
    clock.rebase()
    await fleet.start_meters(until=end)
    run = asyncio.create_task(service.run(end, SIM_START))
    try:
        elec = next(m for m, f in home.meters if f == "electricity")
        # 1. Pulled for an hour and a half without the consent: the supply meters only.
        await _until(lambda: clock.now() >= SIM_START + timedelta(minutes=90), "90 simulated minutes")
        await _until(lambda: store.count_readings() > 0, "the first readings at the GDSC")
        assert _plug_channels(store.engine, set(plugs)) == set()
        assert ApplianceRegistry(store.engine).at_premises(premises) == []

        api = app_from_state(tmp_path, clock, db_url)
        with TestClient(api) as client:
            application = {
                "organisation": "Appliance Health Ltd",
                "purpose": "appliance health",
                "data_kinds": ["appliances"],
                "granularity": "half-hourly",
                "retention_days": 30,
            }
            assert client.post("/v1/services", json=application, headers=auth["AH"]).status_code == 201
            r = client.post("/v1/services/AH/decisions", json={"decision": "approve"}, headers=auth["OP"])
            assert r.status_code == 200, r.text
            assert set(r.json()["credentials"]["scope"].split()) == {
                "appliances:read",
                "services",
                "tariffs:read",
            }
            span = {"start": SIM_START.isoformat(), "end": end.isoformat(), "granularity": "half-hourly"}
            r = client.get(f"/v1/premises/{premises}/appliances", params=span, headers=auth["AH"])
            assert r.status_code == 403 and "no live consent" in r.json()["detail"]
            consent = {
                "party_id": "AH",
                "data_kinds": ["appliances"],
                "granularity": "half-hourly",
                "purpose": "appliance health",
                "expires_at": (SIM_START + timedelta(days=30)).isoformat(),
            }
            r = client.post(f"/v1/premises/{premises}/consents", json=consent, headers=auth["C1"])
            assert r.status_code == 201, r.text
            consent_id = r.json()["consent_id"]

        # 2. The consent reaches the hub; the next pulls bring the plugs, named.
        registry = ApplianceRegistry(store.engine)
        await _until(lambda: len(registry.at_premises(premises)) == len(plugs), "the plugs at the GDSC")
        assert {(a.meter_id, a.name) for a in registry.at_premises(premises)} == set(plugs.items())
        await _until(lambda: clock.now() >= end - timedelta(minutes=20), "the end of the run")
        await asyncio.sleep(1.0)  # the last pull lands

        with TestClient(api) as client:
            r = client.get(f"/v1/premises/{premises}/appliances", params=span, headers=auth["AH"])
            assert r.status_code == 200, r.text
            served = {a["meter_id"]: a for a in r.json()["appliances"]}
            assert {m: a["name"] for m, a in served.items()} == plugs
            for plug, a in served.items():
                # The energy, and the starts and seconds run the hub counted from the plug's demand.
                for key, obis in (
                    ("readings", IMPORT_ACTIVE_ENERGY),
                    ("starts", APPLIANCE_STARTS),
                    ("run_seconds", APPLIANCE_RUN_SECONDS),
                ):
                    at_hub = {
                        i.start: i.value
                        for i in home.hub.intervals(plug, obis, limit=1000)
                        if i.start < int(end.timestamp())
                    }
                    got = {int(datetime.fromisoformat(x["start"]).timestamp()): x["value"] for x in a[key]}
                    assert got and set(got) <= set(at_hub), key  # what the hub built, as pulled so far
                    assert all(got[t] == at_hub[t] for t in got), key
                    assert len(got) >= len(at_hub) - 2, key  # all but the half-hours still being pulled
            assert any(x["value"] > 0 for a in served.values() for x in a["readings"])
            # The fridge draws 55 W throughout (sim.appliance_profiles.APPLIANCES): running every
            # half-hour, never starting; nothing else runs between midnight and 05:00.
            fridge = next(a for a in served.values() if a["name"] == "Fridge freezer")
            # (less where polls were more than 10 minutes apart: the 600× clock on a loaded machine)
            seconds = [x["value"] for x in fridge["run_seconds"]]
            assert all(0 < x <= 1800 for x in seconds) and seconds.count(1800) >= len(seconds) // 2, seconds
            assert {x["value"] for a in served.values() for x in a["starts"]} == {0}
            # The consent covers appliances only: the whole-home readings stay refused.
            reads = {**span, "meter_id": elec}
            r = client.get(f"/v1/premises/{premises}/readings", params=reads, headers=auth["AH"])
            assert r.status_code == 403, r.text
            # The occupant sees its own appliances too.
            r = client.get(f"/v1/premises/{premises}/appliances", params=span, headers=auth["C1"])
            assert r.status_code == 200 and len(r.json()["appliances"]) == len(plugs)
            # Withdrawn: the service's next request is refused.
            r = client.delete(f"/v1/premises/{premises}/consents/{consent_id}", headers=auth["C1"])
            assert r.status_code == 204
            r = client.get(f"/v1/premises/{premises}/appliances", params=span, headers=auth["AH"])
            assert r.status_code == 403
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await fleet.stop()
