"""``smarthub demo --building`` end to end (issue 21): real OMS frames of heat-cost allocators and
water meters → the flats' hubs (or the basement's) → 2030.5 over mutual TLS behind the building's
one uplink → the GDSC's store → bills computed from the registry and the stored readings only."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from smarthub.cli import app
from smarthub.clock import ManualClock
from smarthub.gdsc.api.app import create_app
from smarthub.gdsc.api.auth.tokens import TokenStore
from smarthub.gdsc.fleet.registry import hubs, meters
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.gdsc.governance.parties import PartyRepository
from smarthub.sim.building import (
    PROVIDER,
    BuildingDemoConfig,
    BuildingResult,
    BuildingRun,
    run_building,
    setup_building,
    teardown_building,
)

MEDIUM_OBIS = {"heat_cost_allocator": "4-0:1.0.0", "water": "8-0:1.0.0", "warm_water": "9-0:1.0.0"}


@pytest.mark.parametrize(
    ("layout", "backend"),
    [
        ("flats", "sqlite"),
        ("basement", "sqlite"),
        pytest.param("basement", "postgresql", marks=pytest.mark.postgres),
    ],
)
async def test_a_block_is_collected_whole_and_billed_to_the_cent(
    tmp_path: Path, layout: str, backend: str, request: pytest.FixtureRequest
) -> None:
    db = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    cfg = BuildingDemoConfig(
        flats=3, days=2, seconds_per_day=2, seed=5, state=tmp_path, db_url=db, layout=layout
    )
    b = await setup_building(cfg)
    try:
        result = await run_building(b, tmp_path / "bills")
        engine = b.run.store.engine
        with engine.connect() as c:
            fuels = dict(c.execute(select(meters.c.meter_id, meters.c.fuel)).all())
            links = set(c.execute(select(hubs.c.wan_link)).scalars())
        stored = b.run.store.channel_starts(int(cfg.sim_start.timestamp()), int(cfg.end.timestamp()))
        served = _provider_bill(b, result)
    finally:
        await teardown_building(b)
    assert result.hubs == (3 if layout == "flats" else 1)
    assert result.submeters == sum(len(f.submeters) for f in b.flats) == 2 + 3 + 2 + 3 * 2
    # Every sub-meter registered under its medium and stored under its medium's OBIS code.
    for f in b.flats:
        for meter, medium in f.submeters:
            assert fuels[meter] == medium
            assert any(m == meter and obis == MEDIUM_OBIS[medium] for (_, m, obis) in stored), meter
    assert links == {"uplink-BLOCK64"}  # every hub of the building behind its one uplink
    assert result.missing == 0 and result.duplicates == 0 and result.pull_errors == 0
    assert result.readings_expected > 0
    # The allocator that fell silent half-way: its flat estimated from the others.
    failing = b.flats[1]
    assert result.failed_allocators == [failing.allocators[0]]
    assert result.estimated_flats == [failing.flat]
    # The tenant who moved out: two bills for the flat, split at the interim reading.
    mover = [row for row in result.per_flat if row["flat"] == b.mover.flat]
    assert [row["tenant"] for row in mover] == [f"TENANT-{b.mover.flat}", f"TENANT-{b.mover.flat}-NEW"]
    assert all(Decimal(row["units"]) > 0 for row in mover)
    assert result.bills == 4
    assert result.bill_total == result.building_cost
    assert Decimal(result.building_cost) > 0
    assert (tmp_path / "bills" / "bills.csv").read_text().count("\n") == 1 + 4
    # The housing provider's API gives the same bills from the same store.
    assert served["bill_total"] == result.bill_total and served["estimated_flats"] == result.estimated_flats
    assert [(x["flat"], x["tenant"], x["total"]) for x in served["bills"]] == [
        (x["flat"], x["tenant"], x["total"]) for x in result.per_flat
    ]


def _provider_bill(b: BuildingRun, result: BuildingResult) -> dict[str, Any]:
    engine = b.run.store.engine
    now = b.cfg.end + timedelta(days=1)
    token = TokenStore(engine).issue(PROVIDER, now)
    guard = AccessGuard(PartyRepository(engine), AuditLog(engine), ManualClock(now))
    last = b.cfg.end - timedelta(days=1)
    with TestClient(create_app(guard, TokenStore(engine))) as client:
        r = client.get(
            f"/v1/buildings/{b.building.building_id}/heat-bill",
            params={"start": b.cfg.sim_start.date().isoformat(), "end": last.date().isoformat(),
                    "fuel_cost": result.fuel_cost, "fuel_kwh": result.fuel_kwh, "water_cost": result.water_cost},
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_the_demo_command_prints_the_must_show_figures(tmp_path: Path) -> None:
    """``smarthub demo --building``: the JSON last line has what issue 21 asks to see."""
    result = CliRunner().invoke(
        app,
        ["demo", "--building", "--flats", "3", "--days", "2", "--seconds-per-day", "2", "--layout", "basement",
         "--state", str(tmp_path / "state"), "--bills", str(tmp_path / "bills")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("flats", "submeters", "readings_expected", "readings_stored", "missing", "bills", "bill_total",
                "building_cost", "estimated_flats"):  # fmt: skip
        assert key in summary, key
    assert summary["flats"] == 3 and summary["submeters"] == 13 and summary["missing"] == 0
    assert summary["bill_total"] == summary["building_cost"]
    assert (tmp_path / "bills" / "bills.csv").exists()


@pytest.mark.slow
async def test_a_whole_month_ends_with_the_buildings_figures_on_every_flats_display(tmp_path: Path) -> None:
    """Issue 21 item 5 end to end (slow: a month; the representative variants are
    tests/gdsc/test_building_info.py and tests/hub/test_ihd_submeters.py): after the month the
    GDSC sends each flat's hub the building's average (over the five flats read all month: the
    sixth lost an allocator) and the billing's prices, and each display shows the month's heating
    and water against the building, in units and euros."""
    cfg = BuildingDemoConfig(
        flats=6,
        days=28,
        seconds_per_day=1,
        seed=3,
        state=tmp_path,
        sim_start=datetime(2026, 2, 1, tzinfo=UTC),
    )
    b = await setup_building(cfg)
    try:
        result = await run_building(b)
    finally:
        await teardown_building(b)
    assert result.missing == 0 and result.bill_total == result.building_cost
    assert result.tenant_info_hubs == 6
    heat = next(
        u for u in result.tenant_info_sample["heat_and_water"] if u["medium"] == "heat_cost_allocator"
    )
    assert heat["average_month"] == "2026-02-01" and heat["last_month_is"] == "2026-02"
    assert Decimal(heat["last_month"]) > 0 and Decimal(heat["building_average"]) > 0
    assert heat["cost_last_month"] is not None  # priced as billed
