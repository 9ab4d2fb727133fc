"""Heating and water cost billing (issue 21 item 4) on hand-computed examples: the HeizkostenV
split (hot water first by §9(2), then area and consumption shares), a failed allocator
estimated from comparable flats, a tenant moving out mid-period, and the flats' bills adding up
to the building's cost to the cent.

The expected figures were worked out by hand (in the comments) before the code ran."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smarthub.gdsc.readings.heat_costs import (
    BuildingCosts,
    FlatReadings,
    HeatCostError,
    Tenancy,
    bills_csv,
    hot_water_heat_kwh,
    share_out,
    split_costs,
)

YEAR = BuildingCosts(
    date(2025, 1, 1),
    date(2025, 12, 31),
    fuel_cost=D("10000.00"),
    fuel_kwh=D("100000"),
    water_cost=D("1200.00"),
)
A = FlatReadings("A", D(50), D(400), D(20), D(40))
B = FlatReadings("B", D(70), D(600), D(30), D(60))
C_FAILED = FlatReadings("C", D(80), None, D(30), D(50))


def test_hot_water_heat_by_heizkostenv_9_2() -> None:
    assert hot_water_heat_kwh(D(80)) == D(10000)  # 2.5 × 80 m³ × (60 − 10) K
    assert hot_water_heat_kwh(D(1), D(55)) == D("112.5")


def test_the_split_by_hand_with_a_failed_allocator() -> None:
    """Hot water: Q = 2.5 × 80 × 50 = 10,000 kWh of 100,000: 1,000.00 of the fuel; heating 9,000.00.
    C's allocator failed: units per m² of A 8, of B 8.571…, median 8.2857…, × 80 m² = 662.9.
    Heating: 30 % = 2,700.00 by area 50:70:80 → 675.00, 945.00, 1,080.00; 70 % = 6,300.00 by units
    400:600:662.9 → 1,515.4248…, 2,273.1372…, 2,511.4378… → floors leave 2 cents, to C and B.
    Hot water: 300.00 by area → 75.00, 105.00, 120.00; 700.00 by m³ 20:30:30 → 175.00, 262.50, 262.50.
    Water (the building's bill, cold and hot metered water together): 1,200.00 by m³ (40+20):(60+30):(50+30)
    = 60:90:80 → 313.043…, 469.565…, 417.391… → floors leave a cent, to B."""
    bills = {b.flat: b for b in split_costs(YEAR, [A, B, C_FAILED])}
    figures = {
        k: (b.heating_area, b.heating_consumption, b.hot_water_area, b.hot_water_consumption, b.cold_water)
        for k, b in bills.items()
    }
    assert figures == {
        "A": (D("675.00"), D("1515.42"), D("75.00"), D("175.00"), D("313.04")),
        "B": (D("945.00"), D("2273.14"), D("105.00"), D("262.50"), D("469.57")),
        "C": (D("1080.00"), D("2511.44"), D("120.00"), D("262.50"), D("417.39")),
    }
    assert [bills[k].total for k in "ABC"] == [D("2753.46"), D("4055.21"), D("4391.33")]
    assert sum(b.total for b in bills.values()) == D("11200.00")  # the building's cost, to the cent
    assert bills["C"].estimated and bills["C"].units == D("662.9") and "estimated" in bills["C"].notes[0]
    assert not bills["A"].estimated


def test_a_tenant_moving_out_mid_year() -> None:
    """A's tenants: T1 1 Jan–30 Jun (181 days), interim reading 300 units, 12 m³ hot, 25 m³ cold;
    T2 1 Jul–31 Dec (184 days). Heating by area: A's 675.00 by days → 334.726… and 340.273…;
    the floors (334.72, 340.27) leave a cent, the larger remainder is T1's → 334.73."""
    a = FlatReadings(
        "A", D(50), D(400), D(20), D(40),
        (
            Tenancy("T1", date(2025, 1, 1), date(2025, 6, 30), D(300), D(12), D(25)),
            Tenancy("T2", date(2025, 7, 1), date(2025, 12, 31)),
        ),
    )  # fmt: skip
    bills = split_costs(YEAR, [a, B, C_FAILED])
    t1, t2 = (next(b for b in bills if b.tenant == t) for t in ("T1", "T2"))
    assert (t1.units, t1.hot_water_m3, t1.cold_water_m3) == (D(300), D(12), D(25))
    assert (t2.units, t2.hot_water_m3, t2.cold_water_m3) == (D(100), D(8), D(15))
    assert (t1.heating_area, t2.heating_area) == (D("334.73"), D("340.27"))
    assert t1.hot_water_consumption == D("105.00") and t2.hot_water_consumption == D(
        "70.00"
    )  # 700 × 12/80, × 8/80
    # Water by cold + hot m³: 1200 × (25+12)/230 = 193.043…, × (15+8)/230 = 120.00
    assert t1.cold_water == D("193.04") and t2.cold_water == D("120.00")
    assert sum(b.total for b in bills) == D("11200.00")
    csv_text = bills_csv(bills)
    assert (
        csv_text.splitlines()[0].startswith("flat,tenant,start,end")
        and "T2,2025-07-01,2025-12-31" in csv_text
    )


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (dict(fixed_share=D("0.60")), "0.30 to 0.50"),
        (dict(fuel_kwh=D("5000")), "more than the fuel"),
    ],
)
def test_building_figures_the_ordinance_refuses(change: dict, says: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(HeatCostError, match=says):
        costs = BuildingCosts(**{**YEAR.__dict__, **change})
        split_costs(costs, [A, B, C_FAILED])


def test_tenancies_must_meet_and_carry_an_interim_reading() -> None:
    gap = (
        Tenancy("T1", date(2025, 1, 1), date(2025, 6, 29), D(1), D(1), D(1)),
        Tenancy("T2", date(2025, 7, 1), date(2025, 12, 31)),
    )
    with pytest.raises(HeatCostError, match="do not meet"):
        split_costs(YEAR, [FlatReadings("A", D(50), D(400), D(20), D(40), gap), B])
    silent = (
        Tenancy("T1", date(2025, 1, 1), date(2025, 6, 30)),
        Tenancy("T2", date(2025, 7, 1), date(2025, 12, 31)),
    )
    with pytest.raises(HeatCostError, match="without an interim reading"):
        split_costs(YEAR, [FlatReadings("A", D(50), D(400), D(20), D(40), silent), B])
    with pytest.raises(HeatCostError, match="nothing to estimate from"):
        split_costs(YEAR, [C_FAILED])


@given(
    st.decimals(min_value=0, max_value=10**7, places=2),
    st.dictionaries(
        st.text(min_size=1, max_size=3),
        st.decimals(min_value="0.001", max_value=10**4, places=3),
        min_size=1,
        max_size=64,
    ),
)
def test_shares_add_up_to_the_cent(total: D, weights: dict[str, D]) -> None:
    parts = share_out(total, weights)
    assert sum(parts.values()) == total and set(parts) == set(weights)
    weight = sum(weights.values())
    assert all(abs(parts[k] - total * w / weight) < D("0.01") for k, w in weights.items())


def test_the_cli_bills_the_example_building_and_names_bad_input(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    from pathlib import Path

    from typer.testing import CliRunner

    from smarthub.cli import app

    example = Path(__file__).parents[2] / "examples" / "buildings" / "three-flats.toml"
    result = CliRunner().invoke(app, ["heat-bill", str(example), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["bill_total"] == summary["building_cost"] == "11200.00"
    assert (summary["flats"], summary["bills"], summary["estimated_flats"]) == (3, 4, ["C"])
    rows = (tmp_path / "bills.csv").read_text().splitlines()
    assert rows[1].startswith("A,T1,2025-01-01,2025-06-30,50,300,12,25,334.73,")
    bad = tmp_path / "bad.toml"
    bad.write_text("[building]\nstart = 2025-01-01\nend = 2025-12-31\nfuel_cost = 10.5\n")
    refused = CliRunner().invoke(app, ["heat-bill", str(bad), "--out", str(tmp_path)])
    assert refused.exit_code == 2 and "building.fuel_cost: write money" in refused.output


def test_each_bill_is_a_pdf_showing_its_figures_and_the_totals_add_up(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """One PDF per flat and tenancy; its text (uncompressed content stream) holds the figures of
    the CSV row, and the PDFs' totals add up to the building's cost to the cent."""
    import csv
    import re
    from decimal import Decimal
    from pathlib import Path

    from typer.testing import CliRunner

    from smarthub.cli import app

    example = Path(__file__).parents[2] / "examples" / "buildings" / "three-flats.toml"
    result = CliRunner().invoke(app, ["heat-bill", str(example), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "bills.csv").open()))
    pdfs = sorted(tmp_path.glob("*.pdf"))
    assert len(pdfs) == len(rows) == 4
    total = Decimal(0)
    for row in rows:
        data = (tmp_path / f"{row['flat']}-{row['tenant']}-{row['start']}.pdf").read_bytes()
        assert data.startswith(b"%PDF-1.") and data.rstrip().endswith(b"%%EOF")
        text = [s.decode("latin-1") for s in re.findall(rb"\((.*?)\) Tj", data)]
        money = [Decimal(t[4:].replace(",", "")) for t in text if t.startswith("EUR ")]
        parts = (
            "heating_area",
            "heating_consumption",
            "hot_water_area",
            "hot_water_consumption",
            "cold_water",
        )
        assert money[-6:] == [Decimal(row[p]) for p in parts] + [Decimal(row["total"])]
        assert f"{row['start']} to {row['end']}" in text
        assert any(t.startswith("Units estimated") for t in text) == (row["estimated"] == "yes")
        total += money[-1]
    assert total == Decimal("11200.00")
