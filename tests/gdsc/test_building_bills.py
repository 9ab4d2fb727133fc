"""A building's bills from the registry and the stored sub-meter readings (issue 21), on SQLite and
PostgreSQL: a basement hub reading three flats' allocators and water meters, a change of tenant
mid-period (the interim reading at the move-out's midnight), a failed allocator (silent from
half-way, the GDSC's estimates after it are no reading), and the bills checked against the hand-
computed figures of ``split_costs`` on the same readings."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from smarthub.cli import app
from smarthub.gdsc.fleet.buildings import Building, BuildingMeter, BuildingRegistry, Flat
from smarthub.gdsc.governance.parties import Party, PartyRepository, Role, Tenancy
from smarthub.gdsc.readings.building_bills import VACANT, building_bills, flat_tenancies
from smarthub.gdsc.readings.heat_costs import BuildingCosts, FlatReadings, split_costs
from smarthub.gdsc.readings.heat_costs import Tenancy as BillTenancy
from smarthub.gdsc.readings.tables import StoredReading
from smarthub.gdsc.store import Store

LONDON = ZoneInfo("Europe/London")
START = datetime(2026, 1, 1, tzinfo=UTC)  # London is on UTC in January
DAYS = 10
HH = 1800
MOVE = START + timedelta(days=4, hours=11)  # A's tenant leaves at 11:00 on 5 January


@pytest.fixture
def store(db_url: str):  # type: ignore[no-untyped-def]
    s = Store(db_url)
    s.create_schema()
    yield s
    s.close()


def _series(
    meter: str, obis: str, per_hh: int, uom: int, p10: int, n: int = DAYS * 48
) -> list[StoredReading]:
    t0 = int(START.timestamp())
    return [StoredReading("BH1", meter, obis, t0 + HH * i, HH, per_hh, p10, uom, 1) for i in range(n)]


def _building() -> Building:
    flats = (
        Flat("F-A", "A", Decimal("50")),
        Flat("F-B", "B", Decimal("70")),
        Flat("F-C", "C", Decimal("80")),
    )
    meters = [BuildingMeter("HEAT-1", "heat")]
    for f in flats:
        p = f.premises_id
        meters += [
            BuildingMeter(f"HCA-{f.flat}1", "heat_cost_allocator", p),
            BuildingMeter(f"HCA-{f.flat}2", "heat_cost_allocator", p),
            BuildingMeter(f"CW-{f.flat}", "water", p),
            BuildingMeter(f"HW-{f.flat}", "warm_water", p),
        ]
    return Building("B1", "three flats", "uplink-B1", 2, flats, tuple(meters), "B1-BASEMENT")


def _load(store: Store) -> Building:
    b = _building()
    store.register_hub(
        hub_id="BH1",
        premises_id="B1-BASEMENT",
        url="https://h",
        lfdi="A" * 40,
        meters_by_fuel=[(m.meter_id, m.medium) for m in b.meters],
    )
    rows: list[StoredReading] = []
    # A: 1 unit per half-hour on each allocator, 2 l hot and 5 l cold; B: 2 units, C: allocator 1
    # fails after half the period (the GDSC's estimates of zero follow), allocator 2 reads 1.
    for flat, units in (("A", 1), ("B", 2)):
        rows += _series(f"HCA-{flat}1", "4-0:1.0.0", units, 0, 0) + _series(
            f"HCA-{flat}2", "4-0:1.0.0", units, 0, 0
        )
    half = DAYS * 24
    rows += _series("HCA-C1", "4-0:1.0.0", 3, 0, 0, half)
    t_half = int(START.timestamp()) + HH * half
    rows += [
        StoredReading("BH1", "HCA-C1", "4-0:1.0.0", t_half + HH * i, HH, 0, 0, 0, 8)
        for i in range(DAYS * 48 - half)
    ]
    rows += _series("HCA-C2", "4-0:1.0.0", 1, 0, 0)
    for flat in "ABC":
        rows += _series(f"HW-{flat}", "9-0:1.0.0", 2, 42, -3) + _series(f"CW-{flat}", "8-0:1.0.0", 5, 42, -3)
    store.ingest("BH1", rows, {})
    reg = BuildingRegistry(store.engine)
    reg.define(b)
    parties = PartyRepository(store.engine)
    parties.add_party(Party("HP", Role.HOUSING_PROVIDER))
    reg.manage("B1", "HP", START - timedelta(days=30))
    with store.engine.begin() as c:
        from smarthub.gdsc.fleet.registry import premises

        c.execute(premises.insert(), [{"premises_id": f.premises_id, "address": ""} for f in b.flats])
    for tenant in ("T-A1", "T-A2", "T-B", "T-C"):
        parties.add_party(Party(tenant, Role.CONSUMER))
    parties.add_tenancy(Tenancy("A1", "F-A", "T-A1", START - timedelta(days=90), MOVE))
    parties.add_tenancy(Tenancy("A2", "F-A", "T-A2", MOVE))
    parties.add_tenancy(Tenancy("B", "F-B", "T-B", START - timedelta(days=90)))
    parties.add_tenancy(Tenancy("C", "F-C", "T-C", START + timedelta(days=2)))  # C was empty 2 days
    return b


def test_bills_from_the_store_are_the_split_of_the_stored_consumption(store: Store) -> None:
    b = _load(store)
    costs = BuildingCosts(
        date(2026, 1, 1), date(2026, 1, 10), Decimal("2000.00"), Decimal("20000"), Decimal("300.00")
    )
    bills, period = building_bills(store.engine, b, costs, LONDON)
    n = DAYS * 48
    # A's tenant left during 5 January: the day is theirs, the interim reading at 6 January 00:00.
    a_interim = 5 * 48
    expected = [
        FlatReadings(
            "A",
            Decimal("50"),
            Decimal(2 * n),
            Decimal("0.960"),
            Decimal("2.400"),
            (
                BillTenancy(
                    "T-A1",
                    date(2026, 1, 1),
                    date(2026, 1, 5),
                    Decimal(2 * a_interim),
                    Decimal("0.480"),
                    Decimal("1.200"),
                ),
                BillTenancy("T-A2", date(2026, 1, 6), date(2026, 1, 10)),
            ),
        ),
        FlatReadings(
            "B",
            Decimal("70"),
            Decimal(4 * n),
            Decimal("0.960"),
            Decimal("2.400"),
            (BillTenancy("T-B", date(2026, 1, 1), date(2026, 1, 10)),),
        ),
        FlatReadings(
            "C",
            Decimal("80"),
            None,
            Decimal("0.960"),
            Decimal("2.400"),
            (
                BillTenancy(
                    VACANT, date(2026, 1, 1), date(2026, 1, 2), None, Decimal("0.192"), Decimal("0.480")
                ),
                BillTenancy("T-C", date(2026, 1, 3), date(2026, 1, 10)),
            ),
        ),
    ]
    assert period.flats == expected
    assert period.estimated_flats == ["C"] and period.incomplete == ["HCA-C1"]
    assert [(x.flat, x.tenant) for x in bills] == [
        ("A", "T-A1"), ("A", "T-A2"), ("B", "T-B"), ("C", VACANT), ("C", "T-C"),
    ]  # fmt: skip
    assert bills == split_costs(costs, expected)
    assert sum(x.total for x in bills) == Decimal("2300.00")
    c_vacant, c_tenant = bills[3], bills[4]
    assert c_vacant.estimated and c_tenant.estimated
    # C's estimate (the median units per m² of A and B, times 80 m²) split by days (§9b(2)).
    median = (Decimal(2 * n) / 50 + Decimal(4 * n) / 70) / 2
    estimate = (median * 80).quantize(Decimal("0.1"))
    assert c_vacant.units + c_tenant.units == estimate
    assert c_vacant.units == (estimate * 2 / 10).quantize(Decimal("0.1"))


def test_a_flat_whose_allocators_all_read_to_the_end_is_not_estimated(store: Store) -> None:
    b = _load(store)
    costs = BuildingCosts(
        date(2026, 1, 1), date(2026, 1, 5), Decimal("1000.00"), Decimal("10000"), Decimal("0")
    )
    _, period = building_bills(store.engine, b, costs, LONDON)  # C's allocator failed on 6 January
    assert period.estimated_flats == [] and period.incomplete == []
    assert [f.units for f in period.flats] == [Decimal(2 * 5 * 48), Decimal(4 * 5 * 48), Decimal(4 * 5 * 48)]


def test_tenancies_are_whole_days_and_a_gap_is_vacant(store: Store) -> None:
    _load(store)
    assert flat_tenancies(store.engine, "F-A", date(2026, 1, 1), date(2026, 1, 10), LONDON) == [
        ("T-A1", date(2026, 1, 1), date(2026, 1, 5)),
        ("T-A2", date(2026, 1, 6), date(2026, 1, 10)),
    ]
    assert flat_tenancies(store.engine, "F-B", date(2026, 1, 1), date(2026, 1, 10), LONDON) == [
        ("T-B", date(2026, 1, 1), date(2026, 1, 10))
    ]
    assert flat_tenancies(store.engine, "F-C", date(2026, 1, 1), date(2026, 1, 10), LONDON) == [
        (VACANT, date(2026, 1, 1), date(2026, 1, 2)),
        ("T-C", date(2026, 1, 3), date(2026, 1, 10)),
    ]


def test_the_gdsc_heat_bill_command_bills_from_the_store(store: Store, db_url: str, tmp_path: Path) -> None:
    _load(store)
    args = ["gdsc", "heat-bill", "B1", "--start", "2026-01-01", "--end", "2026-01-10", "--fuel-cost", "2000.00",
            "--fuel-kwh", "20000", "--water-cost", "300.00", "--state", str(tmp_path), "--db", db_url,
            "--out", str(tmp_path / "bills")]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["bill_total"] == summary["building_cost"] == "2300.00"
    assert summary["estimated_flats"] == ["C"] and summary["failed_allocators"] == ["HCA-C1"]
    assert len(summary["pdf"]) == summary["bills"] == 5
    assert (tmp_path / "bills" / "bills.csv").read_text().count("\n") == 6
    bad = CliRunner().invoke(app, [*args[:2], "NOPE", *args[3:]])
    assert bad.exit_code != 0 and "no building 'NOPE'" in bad.output
