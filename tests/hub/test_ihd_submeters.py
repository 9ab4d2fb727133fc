"""A flat's monthly heating and water information on its IHD (issue 21 item 5): this month so far,
last month and the same month last year from the hub's own history, and the building's average
and the billing's prices from the GDSC's ``ihd.building``, in units and costs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from hub.ihd_home import IhdHome, make_home, paired_session
from smarthub.hub.intervals import IntervalRecord
from smarthub.model import ObisCode
from smarthub.model.obis import HCA_UNITS, HOT_WATER_VOLUME, WATER_VOLUME

NOW = datetime(2026, 2, 10, 12, tzinfo=UTC)  # London is on UTC in winter
HCA, HOT, COLD = "QDS71000001", "DME73000001", "DME72000001"
BUILDING = {
    "month": "2026-01-01",
    "flats": 12,
    "flat_area_m2": "60",
    "per_m2": {"heat_cost_allocator": "20", "warm_water": "0.05", "water": "0.1"},
    "prices": {"heat_cost_allocator": "0.25", "warm_water": "9.50", "water": "4.20"},
}


def _month(
    meter: str, obis: ObisCode, start: datetime, end: datetime, per_hh: int, p10: int
) -> list[IntervalRecord]:
    n = int((end - start).total_seconds()) // 1800
    t0 = int(start.timestamp())
    return [
        IntervalRecord(meter, obis, t0 + 1800 * i, 1800, per_hh, per_hh * (i + 1), p10, 1) for i in range(n)
    ]


@pytest.fixture
async def home(tmp_path: Path) -> AsyncIterator[IhdHome]:
    h = make_home(tmp_path, NOW, prepayment=False, plugs=())
    history = h.hub.history
    for meter, fuel in ((HCA, "heat_cost_allocator"), (HOT, "warm_water"), (COLD, "water")):
        history.add_meter(meter, fuel)
    jan25, feb25 = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC)
    dec25, jan26, feb26 = (datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC),
                           datetime(2026, 2, 1, tzinfo=UTC))  # fmt: skip
    records = []
    for start, end, hca in ((jan25, feb25, 2), (dec25, jan26, 3), (jan26, feb26, 1), (feb26, NOW, 1)):
        records += _month(HCA, HCA_UNITS, start, end, hca, 0)
        records += _month(HOT, HOT_WATER_VOLUME, start, end, 3, -3)
        records += _month(COLD, WATER_VOLUME, start, end, 5, -3)
    history.append(records)
    history.flush()
    await h.side.serve()
    yield h
    await h.close()


async def test_the_tenant_sees_the_month_against_last_month_last_year_and_the_building(home: IhdHome) -> None:
    before = {u["medium"]: u for u in home.side.ihd.figures()["heat_and_water"]}
    assert before["heat_cost_allocator"]["building_average"] is None  # nothing from the GDSC yet
    assert (await home.command("ihd.building", BUILDING)).status == "applied"
    uses = {u["medium"]: u for u in home.side.ihd.figures()["heat_and_water"]}
    heat, hot, cold = uses["heat_cost_allocator"], uses["warm_water"], uses["water"]
    days_so_far = 9.5
    assert Decimal(heat["this_month"]) == Decimal(int(days_so_far * 48))
    assert Decimal(heat["last_month"]) == 31 * 48 == 1488
    assert heat["last_month_is"] == "2026-01"
    assert Decimal(heat["month_before"]) == 3 * 1488  # December
    assert Decimal(heat["last_month_last_year"]) == 2 * 1488  # January 2025
    assert Decimal(heat["building_average"]) == Decimal(20 * 60)  # per m² × the flat's 60 m²
    assert Decimal(heat["cost_last_month"]) == Decimal("372.00")  # 1,488 units × 0.25
    assert Decimal(heat["cost_building_average"]) == Decimal("300.00")
    assert Decimal(hot["last_month"]) == Decimal("4.464") and Decimal(hot["cost_last_month"]) == Decimal(
        "42.41"
    )
    assert Decimal(cold["last_month"]) == Decimal("7.440") and cold["unit"] == "m³"
    s = await paired_session(home.side.url, home.side.store.new_pairing_code(home.clock.now()))
    try:
        page = await (await s.get(home.side.url + "/")).text()
    finally:
        await s.close()
    assert '<section id="heat-and-water">' in page and 'id="submeter-heat_cost_allocator"' in page
    assert "Building average, Jan 2026" in page and "1488 units (EUR 372.00)" in page
    assert "Jan 2026" in page and "The month before" in page and "Jan a year before" in page


async def test_an_older_months_figures_do_not_replace_a_newer_one(home: IhdHome) -> None:
    assert (await home.command("ihd.building", BUILDING)).status == "applied"
    late = {**BUILDING, "month": "2025-12-01", "flats": 9}
    result = await home.command("ihd.building", late)
    assert result.status == "applied" and result.result is not None and result.result["kept"] is False
    assert home.side.store.building().flats == 12  # type: ignore[union-attr]
    refused = await home.command("ihd.building", {**BUILDING, "flats": 4})  # k-anonymity: never < 5
    assert refused.status != "applied"
    assert home.side.store.building().flats == 12  # type: ignore[union-attr]
