"""A building's monthly figures for its tenants' displays (issue 21 item 5): what a flat of the
building used per m² of heated area in a month, and the billing's prices, sent to every flat's
hub as a signed ``ihd.building`` (the flat's own month, against last month and last year, the hub
works out itself: :mod:`smarthub.hub.ihd.submeter_info`).

**Who contributes.** A flat whose sub-meters of every medium it has were read over the whole
month (:class:`~smarthub.gdsc.readings.building_bills.SubmeterUse.complete`): a flat with a failed
allocator or a gap is left out of the average (it still gets it).

**k-anonymity.** An average over fewer than ``k`` flats (default 5, as the similar-homes
comparison and the data services' aggregates) is not sent at all: the body itself refuses fewer
(:data:`~smarthub.wan.contract.bodies.home.BUILDING_MIN_FLATS`), so no hub shows one. The average
is area-weighted: the media's totals of the contributing flats over their heated area.

**Prices** are the consumption parts of the building's last bills per unit billed
(:func:`unit_prices`): heating consumption cost per allocator unit, hot water consumption cost per
m³, cold water per m³ — the tenant's costs in the billing's terms (EED Annex VIIa).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select

from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.buildings import Building
from smarthub.gdsc.fleet.registry import hubs
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import Priority
from smarthub.gdsc.readings.building_bills import local_midnight, meter_hubs, submeter_use
from smarthub.gdsc.readings.heat_costs import FlatBill
from smarthub.gdsc.store import Store
from smarthub.wan.contract.bodies import IhdBuilding
from smarthub.wan.contract.bodies.home import BUILDING_MEDIA, BUILDING_MIN_FLATS

_PER_M2 = Decimal("0.0001")
_PRICE = Decimal("0.0001")


def unit_prices(bills: Sequence[FlatBill]) -> dict[str, Decimal]:
    """The billing's price per unit of each medium, so that a flat's units and m³ times them give
    its consumption costs: allocator units the heating's consumption part; a m³ of cold water the
    water bill over all water metered (cold and hot, :mod:`.heat_costs`); a m³ of hot water its
    heat (the hot water's consumption part) and the water itself."""
    units = sum((b.units for b in bills), Decimal(0))
    hot = sum((b.hot_water_m3 for b in bills), Decimal(0))
    cold = sum((b.cold_water_m3 for b in bills), Decimal(0))
    water = sum((b.cold_water for b in bills), Decimal(0))
    out = {}
    if units > 0:
        heating = sum((b.heating_consumption for b in bills), Decimal(0))
        out["heat_cost_allocator"] = (heating / units).quantize(_PRICE)
    per_m3 = water / (hot + cold) if hot + cold > 0 else Decimal(0)
    if cold > 0:
        out["water"] = per_m3.quantize(_PRICE)
    if hot > 0:
        heat = sum((b.hot_water_consumption for b in bills), Decimal(0))
        out["warm_water"] = (heat / hot + per_m3).quantize(_PRICE)
    return out


def building_month(
    store: Store,
    building: Building,
    month: date,
    tz: ZoneInfo,
    prices: Mapping[str, Decimal],
    *,
    k: int = BUILDING_MIN_FLATS,
) -> dict[str, IhdBuilding]:
    """Each flat's ``ihd.building`` body for ``month`` (a first of the month, local), by premises;
    empty when fewer than ``k`` flats (never fewer than the body allows) were read all month."""
    if month.day != 1:
        raise ValueError("a month starts on its first day")
    k = max(k, BUILDING_MIN_FLATS)
    nxt = (month + timedelta(days=32)).replace(day=1)
    start, end = local_midnight(month, tz), local_midnight(nxt, tz)
    held = meter_hubs(store.engine, building)
    totals: dict[str, dict[str, Decimal]] = {}
    for f in building.flats:
        mine = [m for m in building.meters if m.premises_id == f.premises_id and m.medium in BUILDING_MEDIA]
        uses = [submeter_use(store.engine, m, held.get(m.meter_id, ()), start, end) for m in mine]
        if not uses or not all(u.complete for u in uses):
            continue
        flat: dict[str, Decimal] = {}
        for u in uses:
            flat[u.medium] = flat.get(u.medium, Decimal(0)) + u.value
        totals[f.premises_id] = flat
    if len(totals) < k:
        return {}
    area = {f.premises_id: f.heated_area_m2 for f in building.flats}
    per_m2 = {}
    for medium in BUILDING_MEDIA:
        having = [p for p, t in totals.items() if medium in t]
        if len(having) >= k:
            used = sum((totals[p][medium] for p in having), Decimal(0))
            per_m2[medium] = (used / sum((area[p] for p in having), Decimal(0))).quantize(_PER_M2)
    if not per_m2:
        return {}
    return {
        f.premises_id: IhdBuilding(month, len(totals), f.heated_area_m2, per_m2, dict(prices))
        for f in building.flats
    }


def queue_building_month(
    store: Store,
    signer: CommandSigner,
    bodies: Mapping[str, IhdBuilding],
    now: datetime,
    priority: Priority = Priority.BULK,
) -> dict[str, int]:
    """Queue each flat's body to the active hubs at the flat (a basement hub has no tenant's
    display); the job per hub."""
    if not bodies:
        return {}
    with store.engine.connect() as c:
        rows = c.execute(
            select(hubs.c.hub_id, hubs.c.premises_id).where(
                hubs.c.premises_id.in_(list(bodies)), hubs.c.status == "active"
            )
        ).all()
    plan = PullPlan(store)
    return {
        r.hub_id: plan.queue_command(signer, r.hub_id, "ihd.building", bodies[r.premises_id], now, priority)
        for r in rows
    }


__all__ = ["building_month", "queue_building_month", "unit_prices"]
