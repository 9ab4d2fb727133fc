"""The building's monthly figures for its tenants' displays (issue 21 item 5), on SQLite and
PostgreSQL: the area-weighted average per m² over the flats read all month, never over fewer than
five (k-anonymity), the billing's unit prices, and a signed ``ihd.building`` queued to each flat's
hub that a real hub management interface applies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cryptography import x509

from smarthub.clock import ManualClock
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.buildings import Building, BuildingMeter, Flat
from smarthub.gdsc.pull.tables import urgent_work
from smarthub.gdsc.readings.building_info import building_month, queue_building_month, unit_prices
from smarthub.gdsc.readings.heat_costs import BuildingCosts, FlatReadings, split_costs
from smarthub.gdsc.readings.tables import StoredReading
from smarthub.gdsc.store import Store
from smarthub.hub.ihd.commands import ihd_commands
from smarthub.hub.ihd.store import IhdStore
from smarthub.hub.management import ManagementInterface
from smarthub.sim.fleet import provision

LONDON = ZoneInfo("Europe/London")
JAN = datetime(2026, 1, 1, tzinfo=UTC)
N = 31 * 48
NOW = datetime(2026, 2, 2, tzinfo=UTC)
AREAS = [Decimal("50"), Decimal("60"), Decimal("70"), Decimal("80"), Decimal("90"), Decimal("100")]


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[tuple[Store, CommandSigner, Path]]:
    store = Store(db_url)
    store.create_schema()
    state = tmp_path / "state"
    provision(state, [], NOW - timedelta(days=1))
    signer = CommandSigner.from_files(
        str(state / "gdsc" / "operator.pem"), str(state / "gdsc" / "operator.key"), store.next_command_counter
    )
    yield store, signer, state
    store.close()


def _block(store: Store, flats: int, gap_in: int | None) -> Building:
    """``flats`` flats, a hub in each; flat i uses i+1 units and 2 l of hot, 4 l of cold water a
    half-hour all January, except flat ``gap_in``, whose cold water meter missed a day."""
    fs = tuple(Flat(f"F{i}", str(i), AREAS[i]) for i in range(flats))
    meters = []
    t0 = int(JAN.timestamp())
    for i, f in enumerate(fs):
        mine = [(f"HCA{i}", "heat_cost_allocator", "4-0:1.0.0", i + 1, 0, 0), (f"HW{i}", "warm_water", "9-0:1.0.0", 2, 42, -3),
                (f"CW{i}", "water", "8-0:1.0.0", 4, 42, -3)]  # fmt: skip
        store.register_hub(
            hub_id=f"H{i}", premises_id=f.premises_id, url="https://h", lfdi="A" * 40,
            meters_by_fuel=[(m, medium) for m, medium, *_ in mine],
        )  # fmt: skip
        rows = []
        for m, medium, obis, per_hh, uom, p10 in mine:
            meters.append(BuildingMeter(m, medium, f.premises_id))
            skip = range(100, 148) if (i == gap_in and medium == "water") else range(0)
            rows += [
                StoredReading(f"H{i}", m, obis, t0 + 1800 * k, 1800, per_hh, p10, uom, 1)
                for k in range(N)
                if k not in skip
            ]
        store.ingest(f"H{i}", rows, {})
    return Building("B6", "six flats", "uplink-B6", 2, fs, tuple(meters))


def test_the_average_is_over_the_flats_read_all_month_per_m2(world) -> None:  # type: ignore[no-untyped-def]
    store, _, _ = world
    b = _block(store, 6, gap_in=0)
    prices = {"heat_cost_allocator": Decimal("0.25")}
    bodies = building_month(store, b, date(2026, 1, 1), LONDON, prices)
    assert sorted(bodies) == [f"F{i}" for i in range(6)]  # flat 0 gets the figures too
    body = bodies["F3"]
    assert body.flats == 5 and body.flat_area_m2 == Decimal("80") and body.month == date(2026, 1, 1)
    area = sum(AREAS[1:])  # flat 0 (a day of cold water missing) is left out
    assert body.per_m2["heat_cost_allocator"] == (Decimal(N * (2 + 3 + 4 + 5 + 6)) / area).quantize(
        Decimal("0.0001")
    )
    assert body.per_m2["warm_water"] == (Decimal(5 * N * 2) / 1000 / area).quantize(Decimal("0.0001"))
    assert body.prices == prices


def test_fewer_than_five_flats_read_give_nothing(world) -> None:  # type: ignore[no-untyped-def]
    store, signer, _ = world
    b = _block(store, 5, gap_in=2)  # four flats read all month
    assert building_month(store, b, date(2026, 1, 1), LONDON, {}) == {}
    assert queue_building_month(store, signer, {}, NOW) == {}


def test_unit_prices_are_the_bills_consumption_costs_per_unit() -> None:
    costs = BuildingCosts(
        date(2026, 1, 1), date(2026, 1, 31), Decimal("1000.00"), Decimal("10000"), Decimal("100.00")
    )
    flats = [FlatReadings("A", Decimal("50"), Decimal("300"), Decimal("4"), Decimal("10")),
             FlatReadings("B", Decimal("70"), Decimal("500"), Decimal("6"), Decimal("15"))]  # fmt: skip
    bills = split_costs(costs, flats)
    prices = unit_prices(bills)
    heating = sum(x.heating_consumption for x in bills)
    assert prices["heat_cost_allocator"] == (heating / 800).quantize(Decimal("0.0001"))
    assert prices["water"] == Decimal("2.8571")  # 100.00 over 35 m³, cold and hot (heat_costs: water)
    # Hot water: Q = 2.5 × 10 m³ × 50 K = 1,250 kWh of 10,000: 125.00 of the fuel, 70 % by m³ = 87.50
    # over 10 m³ = 8.75, and the water itself 2.857…
    assert prices["warm_water"] == Decimal("11.6071")
    # A flat's consumption costs are its volumes and units times the prices (to rounding).
    a = next(x for x in bills if x.flat == "A")
    assert abs(
        a.cold_water + a.hot_water_consumption - (10 * prices["water"] + 4 * prices["warm_water"])
    ) < Decimal("0.01")


def test_the_figures_reach_each_flats_hub_signed(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, signer, state = world
    b = _block(store, 6, gap_in=None)
    bodies = building_month(store, b, date(2026, 1, 1), LONDON, {"water": Decimal("4.20")})
    jobs = queue_building_month(store, signer, bodies, NOW)
    assert sorted(jobs) == [f"H{i}" for i in range(6)]
    with store.engine.connect() as c:
        row = c.execute(urgent_work.select().where(urgent_work.c.id == jobs["H2"])).one()
    assert row.command_type == "ihd.building"
    # The hub at flat 2 checks the signature and shows its flat's figures.
    ca = x509.load_pem_x509_certificate((state / "ca" / "ca.pem").read_bytes())
    mgmt = ManagementInterface("H2", ca, ManualClock(NOW), tmp_path / "mgmt.sqlite")
    ihd = IhdStore(tmp_path / "ihd.sqlite")
    mgmt.register("ihd.building", ihd_commands(ihd, None, ManualClock(NOW))["ihd.building"])  # type: ignore[arg-type]
    result = asyncio.run(mgmt.handle(row.envelope.encode()))
    assert result.status == "applied", result.detail
    shown = ihd.building()
    assert shown is not None and shown.flats == 6 and shown.flat_area_m2 == Decimal("70")
    assert shown.prices == {"water": Decimal("4.20")}
    assert json.loads(row.envelope)  # a JSON envelope
    mgmt.close()
