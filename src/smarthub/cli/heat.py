"""``smarthub heat-bill``: a building's heating and water costs over its flats (HeizkostenV);
``smarthub gdsc building``: an apartment block recorded in the GDSC's registry."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer

from smarthub.cli.app import app, fail, first_line
from smarthub.cli.gdsc import Db, StateDir, gdsc_app, require_state


@app.command("heat-bill")
def heat_bill(
    building: Annotated[Path, typer.Argument(help="the building's period (TOML): [building] and [[flats]]")],
    out: Annotated[Path, typer.Option(help="directory for bills.csv and one PDF per bill")] = Path("."),
) -> None:
    """Share a building's fuel and water costs over its flats and tenants: hot water first by
    HeizkostenV §9(2), then area and consumption shares; bills.csv, a PDF per bill (flat and
    tenancy) with the figures that produce it, and a JSON summary line."""
    from smarthub.gdsc.readings.heat_bill_pdf import write_bill_pdfs
    from smarthub.gdsc.readings.heat_costs import HeatCostError, bills_csv, load_building, split_costs

    try:
        name, costs, flats = load_building(building.read_text())
        bills = split_costs(costs, flats)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bills.csv").write_text(bills_csv(bills))
        pdfs = write_bill_pdfs(name, costs, bills)
        for file_name, data in pdfs.items():
            (out / file_name).write_bytes(data)
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
        "pdf": sorted(str(out / f) for f in pdfs),
    }
    print(json.dumps(summary))


@gdsc_app.command("building")
def gdsc_building(
    building: Annotated[Path, typer.Argument(help="the building (TOML): [building], [[flats]], [[meters]]")],
    state: StateDir,
    db: Db = None,
) -> None:
    """Record an apartment block: its flats with their heated area, its meters, its housing
    providers (parties of role housing-provider, from `gdsc token --role`), and put its hubs on its
    one WAN uplink with the uplink's limit of pulls in flight. Prints a JSON summary."""
    from smarthub.gdsc.fleet.buildings import BuildingError, BuildingRegistry, load_building
    from smarthub.gdsc.governance.parties import UnknownParty
    from smarthub.gdsc.pull.plan import PullPlan
    from smarthub.gdsc.service import store_url
    from smarthub.gdsc.store import Store

    require_state(state, db)
    store = Store(store_url(state, db))
    try:
        b, providers = load_building(building.read_text())
        store.create_schema()
        reg = BuildingRegistry(store.engine)
        reg.define(b)
        for provider, start in providers:
            reg.manage(b.building_id, provider, start)
        link, attached = reg.attach_hubs(b.building_id)
        PullPlan(store).set_link_limit(link, b.uplink_max_in_flight)
    except (OSError, BuildingError, UnknownParty) as err:
        raise fail("smarthub gdsc building", first_line(err)) from None
    finally:
        store.close()
    summary = {
        "building": b.building_id,
        "flats": len(b.flats),
        "heated_area_m2": str(sum((f.heated_area_m2 for f in b.flats), Decimal(0))),
        "shared_meters": len(b.shared_meters),
        "submeters": len(b.meters) - len(b.shared_meters),
        "providers": [p for p, _ in providers],
        "uplink": link,
        "uplink_max_in_flight": b.uplink_max_in_flight,
        "hubs_on_uplink": list(attached),
    }
    print(json.dumps(summary))


@gdsc_app.command("heat-bill")
def gdsc_heat_bill(
    building: Annotated[str, typer.Argument(help="the building's id in the registry")],
    start: Annotated[str, typer.Option(help="the billing period's first day (YYYY-MM-DD, local)")],
    end: Annotated[str, typer.Option(help="its last day (YYYY-MM-DD, local, inclusive)")],
    fuel_cost: Annotated[str, typer.Option(help="the boiler's fuel for heating and hot water")],
    fuel_kwh: Annotated[str, typer.Option(help="the fuel's energy, kWh")],
    water_cost: Annotated[str, typer.Option(help="cold water and sewerage for the building")],
    state: StateDir,
    fixed_share: Annotated[str, typer.Option(help="the share by heated area, 0.30 to 0.50")] = "0.30",
    out: Annotated[Path, typer.Option(help="directory for bills.csv and one PDF per bill")] = Path("."),
    db: Db = None,
) -> None:
    """A building's heating and water bills from the GDSC's registry (flats, heated areas,
    sub-meters, tenancies) and the sub-meter readings its hubs served: bills.csv, a PDF per bill,
    and a JSON summary line (as ``heat-bill``, which takes the readings from a file)."""
    from datetime import date
    from decimal import InvalidOperation

    from smarthub.gdsc.fleet.buildings import BuildingRegistry, UnknownBuilding
    from smarthub.gdsc.readings.building_bills import building_bills
    from smarthub.gdsc.readings.heat_bill_pdf import write_bill_pdfs
    from smarthub.gdsc.readings.heat_costs import BuildingCosts, HeatCostError, bills_csv
    from smarthub.gdsc.readings.queries import LONDON
    from smarthub.gdsc.service import store_url
    from smarthub.gdsc.store import Store

    require_state(state, db)
    store = Store(store_url(state, db))
    try:
        b = BuildingRegistry(store.engine).building(building)
        costs = BuildingCosts(
            date.fromisoformat(start), date.fromisoformat(end), Decimal(fuel_cost), Decimal(fuel_kwh),
            Decimal(water_cost), Decimal(fixed_share),
        )  # fmt: skip
        bills, period = building_bills(store.engine, b, costs, LONDON)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bills.csv").write_text(bills_csv(bills))
        pdfs = write_bill_pdfs(b.name or b.building_id, costs, bills)
        for file_name, data in pdfs.items():
            (out / file_name).write_bytes(data)
    except (OSError, ValueError, InvalidOperation, HeatCostError, UnknownBuilding) as err:
        raise fail("smarthub gdsc heat-bill", first_line(err)) from None
    finally:
        store.close()
    summary = {
        "building": b.building_id,
        "flats": len(b.flats),
        "bills": len(bills),
        "bill_total": str(sum((x.total for x in bills), Decimal(0))),
        "building_cost": str((costs.fuel_cost + costs.water_cost).quantize(Decimal("0.01"))),
        "estimated_flats": period.estimated_flats,
        "failed_allocators": period.incomplete,
        "csv": str(out / "bills.csv"),
        "pdf": sorted(str(out / f) for f in pdfs),
    }
    print(json.dumps(summary))
