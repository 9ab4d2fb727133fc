"""``/v1/buildings/{building_id}/…``: an apartment block for its housing provider (issue 21).

* ``GET …/readings``: each flat's sub-meters (heat-cost allocators, hot and cold water) monthly,
  across whichever hub reads them (a hub in the flat or the basement's);
* ``GET …/heat-bill``: the heating and water cost bills of a billing period (HeizkostenV), computed
  from the registry (flats, heated areas, sub-meters, tenancies) and the stored readings, with the
  provider's cost figures (fuel invoice, water bill, the share by area) as the query.

Every flat and sub-meter medium is decided by the access policy (``read``, monthly, the period
asked) and recorded in the audit, as a single meter's readings are: the housing provider sees its
flats' sub-meters for the time it managed the building, nothing of a flat's electricity or gas.
A bill needs the whole period of every flat; a flat refused any of it refuses the bill.
"""

from datetime import date, timedelta
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from smarthub.gdsc.api import mappers
from smarthub.gdsc.api.deps import ApiServices, Caller, Id, Instant, Services, period
from smarthub.gdsc.api.schemas import (
    ERRORS,
    BuildingBillOut,
    BuildingHeatBill,
    BuildingReadings,
    FlatSubmeters,
    SubmeterReadings,
)
from smarthub.gdsc.fleet.buildings import Building, BuildingRegistry, UnknownBuilding
from smarthub.gdsc.governance.access import Action, Decision, TimeRange
from smarthub.gdsc.governance.guard import AccessDenied
from smarthub.gdsc.governance.parties import Granularity
from smarthub.gdsc.readings import queries
from smarthub.gdsc.readings.building_bills import SUBMETER_OBIS, building_bills, local_midnight, meter_hubs
from smarthub.gdsc.readings.heat_costs import CENT, BuildingCosts, FlatBill, HeatCostError
from smarthub.model.decimals import EUROS_BELOW_1E9, KWH_POSITIVE_3, SHARE_30_TO_50

router = APIRouter()
MAX_BILL_DAYS = 731  # a billing period is a year, or less (HeizkostenV §6(1)); two at the most


def _building(api: ApiServices, building_id: str) -> Building:
    try:
        return BuildingRegistry(api.engine).building(building_id)
    except UnknownBuilding as err:
        raise queries.NotFound(str(err)) from None


def _decisions(
    api: ApiServices, party: str, b: Building, asked: TimeRange, detail: dict[str, str]
) -> dict[tuple[str, str], Decision]:
    """The policy's decision for each flat and sub-meter medium of ``b`` (each recorded)."""
    out: dict[tuple[str, str], Decision] = {}
    for m in b.meters:
        if m.premises_id is None or (m.premises_id, m.medium) in out:
            continue
        out[(m.premises_id, m.medium)] = api.guard.authorize(
            party,
            Action.READ_READINGS,
            premises_id=m.premises_id,
            fuel=m.medium,
            granularity=Granularity.MONTHLY,
            period=asked,
            detail={"building": b.building_id, **detail},
        )
    return out


@router.get("/v1/buildings/{building_id}/readings", response_model=BuildingReadings, responses=ERRORS)
def get_building_readings(
    party: Caller, api: Services, building_id: Id, start: Instant, end: Instant
) -> BuildingReadings:
    """Each flat's sub-meters, monthly (whole local months inside what the policy allows), and
    the ranges allowed; the flats and media the caller may not see are left out. 403 if none."""
    asked = period(start, end)
    b = _building(api, building_id)
    decisions = _decisions(api, party, b, asked, {"op": "readings"})
    allowed = [d for d in decisions.values() if d.allow]
    if not allowed:
        refused = next(iter(decisions.values()), None)
        if refused is None:
            raise queries.NotFound(f"building {building_id!r} has no sub-meters in its flats")
        raise AccessDenied(refused)
    held = meter_hubs(api.engine, b)
    flats = []
    for f in b.flats:
        rows = []
        for m in b.meters:
            d = decisions.get((f.premises_id, m.medium))
            if m.premises_id != f.premises_id or d is None or not d.allow:
                continue
            obis = SUBMETER_OBIS[m.medium]
            hubs = held.get(m.meter_id, ())
            buckets = (
                queries.readings(
                    api.engine,
                    queries.Meter(hubs[0], m.meter_id, m.medium, hubs),
                    obis,
                    d.ranges,
                    Granularity.MONTHLY,
                )
                if hubs
                else []
            )
            rows.append(
                SubmeterReadings(
                    meter_id=m.meter_id,
                    medium=m.medium,
                    obis=obis,
                    allowed=[(r.start, r.end) for r in d.ranges],
                    readings=[mappers.reading_out(x, asked.start.tzinfo) for x in buckets],
                )
            )
        if rows:
            flats.append(
                FlatSubmeters(
                    premises_id=f.premises_id, flat=f.flat, heated_area_m2=f.heated_area_m2, submeters=rows
                )
            )
    return BuildingReadings(building_id=b.building_id, name=b.name, granularity="monthly", flats=flats)


Money = Annotated[Decimal, EUROS_BELOW_1E9]


@router.get("/v1/buildings/{building_id}/heat-bill", response_model=BuildingHeatBill, responses=ERRORS)
def get_heat_bill(
    party: Caller,
    api: Services,
    building_id: Id,
    start: Annotated[date, Query(description="the billing period's first day (local)")],
    end: Annotated[date, Query(description="its last day (local, inclusive)")],
    fuel_cost: Annotated[Money, Query(description="the boiler's fuel for heating and hot water, €")],
    fuel_kwh: Annotated[Decimal, KWH_POSITIVE_3, Query(description="its energy, kWh")],
    water_cost: Annotated[Money, Query(description="cold water and sewerage for the building, €")],
    fixed_share: Annotated[Decimal, SHARE_30_TO_50, Query(description="by area")] = Decimal("0.30"),
) -> BuildingHeatBill:
    """The period's bills, one per flat and tenancy, from the registry and the stored readings
    (HeizkostenV §§6–9b); they add up to the building's cost to the cent. A flat whose allocator
    failed is estimated from comparable flats and says so."""
    if end < start:
        raise HTTPException(400, "the billing period ends before it starts")
    if (end - start).days + 1 > MAX_BILL_DAYS:
        raise HTTPException(400, f"a billing period of at most {MAX_BILL_DAYS} days")
    tz = queries.LONDON
    try:
        asked = TimeRange(local_midnight(start, tz), local_midnight(end + timedelta(days=1), tz))
    except (ValueError, OverflowError) as err:
        raise HTTPException(400, str(err)) from None
    b = _building(api, building_id)
    decisions = _decisions(api, party, b, asked, {"op": "heat-bill"})
    for d in decisions.values():
        if not d.allow:
            raise AccessDenied(d)
        if not _covers(d, asked):
            raise AccessDenied(
                Decision(
                    False,
                    f"the bill needs the whole period; {d.reason} for part of it only",
                    d.max_granularity,
                )
            )
    try:
        costs = BuildingCosts(start, end, fuel_cost, fuel_kwh, water_cost, fixed_share)
        bills, found = building_bills(api.engine, b, costs, tz)
    except HeatCostError as err:
        raise HTTPException(400, str(err)) from None
    return BuildingHeatBill(
        building_id=b.building_id,
        start=start,
        end=end,
        building_cost=(costs.fuel_cost + costs.water_cost).quantize(CENT),
        bill_total=sum((x.total for x in bills), Decimal(0)),
        estimated_flats=found.estimated_flats,
        failed_allocators=found.incomplete,
        bills=[_bill_out(x) for x in bills],
    )


def _bill_out(x: FlatBill) -> BuildingBillOut:
    return BuildingBillOut(
        flat=x.flat, tenant=x.tenant, start=x.start, end=x.end, heated_area_m2=x.heated_area_m2,
        units=x.units, hot_water_m3=x.hot_water_m3, cold_water_m3=x.cold_water_m3,
        heating_area=x.heating_area, heating_consumption=x.heating_consumption,
        hot_water_area=x.hot_water_area, hot_water_consumption=x.hot_water_consumption,
        cold_water=x.cold_water, total=x.total, estimated=x.estimated, notes=list(x.notes),
    )  # fmt: skip


def _covers(d: Decision, asked: TimeRange) -> bool:
    """Whether the allowed ranges cover ``asked`` without a gap."""
    at = asked.start
    for r in sorted(d.ranges, key=lambda r: r.start):
        if r.start > at:
            return False
        at = max(at, r.end)
    return at >= asked.end
