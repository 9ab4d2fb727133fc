"""``smarthub heat-bill``: a building's heating and water costs over its flats (HeizkostenV)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer

from smarthub.cli.app import app, fail, first_line


@app.command("heat-bill")
def heat_bill(
    building: Annotated[Path, typer.Argument(help="the building's period (TOML): [building] and [[flats]]")],
    out: Annotated[Path, typer.Option(help="directory for bills.csv")] = Path("."),
) -> None:
    """Share a building's fuel and water costs over its flats and tenants: hot water first by
    HeizkostenV §9(2), then area and consumption shares; bills.csv, and a JSON summary line."""
    from smarthub.gdsc.readings.heat_costs import HeatCostError, bills_csv, load_building, split_costs

    try:
        name, costs, flats = load_building(building.read_text())
        bills = split_costs(costs, flats)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bills.csv").write_text(bills_csv(bills))
    except (OSError, HeatCostError) as err:
        raise fail("smarthub heat-bill", first_line(err)) from None
    total = sum((b.total for b in bills), Decimal(0))
    summary = {
        "building": name,
        "flats": len(flats),
        "bills": len(bills),
        "bill_total": str(total),
        "building_cost": str((costs.fuel_cost + costs.water_cost).quantize(Decimal("0.01"))),
        "estimated_flats": sorted({b.flat for b in bills if b.estimated}),
        "csv": str(out / "bills.csv"),
    }
    print(json.dumps(summary))
