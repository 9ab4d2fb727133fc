"""A building's heating and water cost bills from what the GDSC holds (issue 21): the flats and
heated areas of the registry (:mod:`smarthub.gdsc.fleet.buildings`), the tenancies of each flat,
and the sub-meters' readings the hubs served over the WAN and the collector stored.

Each sub-meter's consumption over a span is the sum of its stored half-hourly advances in that
span (the hubs serve allocator units, hot and cold water volumes as interval channels:
:mod:`smarthub.model.reading_type`), read across every hub of the building that holds the meter
(a hub in the flat, or the basement hub). A span is whole local days (the billing period's and
the tenancies' days, HeizkostenV §6(1), §9b): the interim reading at a change of tenant is the
consumption from the period's start to the local midnight after the move-out.

A flat is **estimated** (HeizkostenV §9a: a failed or missing allocator) when one of its
allocators has stored half-hours missing from the period: its units are not read but estimated
from comparable flats by :func:`~smarthub.gdsc.readings.heat_costs.split_costs`. Its tenants'
split is then by days (§9b(2): without an interim reading, by time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from smarthub.gdsc.fleet.buildings import Building, BuildingMeter
from smarthub.gdsc.fleet.registry import hub_commissioning, hubs, meters
from smarthub.gdsc.governance.access import TimeRange
from smarthub.gdsc.governance.parties import Granularity, PartyRepository
from smarthub.gdsc.readings.heat_costs import BuildingCosts, FlatBill, FlatReadings, Tenancy, split_costs
from smarthub.gdsc.readings.queries import Meter, readings
from smarthub.gdsc.readings.vee.rules import ESTIMATED

# The OBIS register of each sub-meter medium whose half-hourly advances the hubs serve.
SUBMETER_OBIS = {
    "heat_cost_allocator": "4-0:1.0.0",
    "water": "8-0:1.0.0",
    "cold_water": "8-0:1.0.0",
    "warm_water": "9-0:1.0.0",
    "hot_water": "9-0:1.0.0",
    "heat": "6-0:1.0.0",
}
HOT = frozenset({"warm_water", "hot_water"})
COLD = frozenset({"water", "cold_water"})
HALF_HOUR = 1800
VACANT = "(vacant)"  # a part of the period with no tenant: the housing provider's own share


@dataclass(frozen=True, slots=True)
class SubmeterUse:
    """One sub-meter's consumption over a span: units (allocators) or m³ (water), Wh (heat)."""

    meter_id: str
    medium: str
    premises_id: str | None  # the flat; None: a shared meter of the building
    value: Decimal
    intervals: int  # stored half-hours summed
    expected: int  # half-hours in the span
    read_to_end: bool = False  # the span's last half-hour is a reading, not the GDSC's estimate

    @property
    def complete(self) -> bool:
        """Every half-hour stored, and the meter still read at the span's end. A gap the hub
        bridged between two readings of the register is exact in sum (flagged interpolated, as
        the GDSC's own estimate is); a meter that fell silent leaves the span's end to the
        GDSC's estimate (VEE), which is no reading to bill from (HeizkostenV §9a)."""
        return self.intervals >= self.expected and self.read_to_end


def local_midnight(d: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(d, time(), tz).astimezone(UTC)


def meter_hubs(engine: Engine, building: Building) -> dict[str, tuple[str, ...]]:
    """Every hub of the building's premises that reads each meter, earliest commissioned first."""
    hc = hub_commissioning
    q = (
        select(meters.c.meter_id, hubs.c.hub_id)
        .join(hubs, hubs.c.hub_id == meters.c.hub_id)
        .outerjoin(hc, hc.c.hub_id == hubs.c.hub_id)
        .where(hubs.c.premises_id.in_(building.premises))
        .order_by(
            meters.c.meter_id, hc.c.commissioned_at.is_(None).desc(), hc.c.commissioned_at, hubs.c.hub_id
        )
    )
    out: dict[str, list[str]] = {}
    with engine.connect() as c:
        for r in c.execute(q):
            out.setdefault(str(r.meter_id), []).append(str(r.hub_id))
    return {m: tuple(h) for m, h in out.items()}


def submeter_use(
    engine: Engine,
    meter: BuildingMeter,
    held_by: Sequence[str],
    start: datetime,
    end: datetime,
) -> SubmeterUse:
    """``meter``'s consumption over ``[start, end)`` from its stored half-hours (none stored, or no
    hub reads it: zero of zero expected half-hours, so not complete)."""
    expected = max(0, int(end.timestamp()) - int(start.timestamp())) // HALF_HOUR
    obis = SUBMETER_OBIS.get(meter.medium)
    if not held_by or obis is None or end <= start:
        return SubmeterUse(meter.meter_id, meter.medium, meter.premises_id, Decimal(0), 0, expected)
    buckets = readings(
        engine,
        Meter(held_by[0], meter.meter_id, meter.medium, tuple(held_by)),
        obis,
        [TimeRange(start, end)],
        Granularity.HALF_HOURLY,
    )
    total = sum((Decimal(b.value).scaleb(b.power_of_ten) for b in buckets), Decimal(0))
    last = buckets[-1] if buckets else None
    read_to_end = (
        last is not None
        and last.start + last.duration >= int(end.timestamp())
        and not last.quality & ESTIMATED
    )
    return SubmeterUse(
        meter.meter_id, meter.medium, meter.premises_id, total, sum(b.intervals for b in buckets), expected,
        read_to_end,
    )  # fmt: skip


def _day_of(t: datetime, tz: ZoneInfo) -> date:
    """The local day a tenancy boundary falls on, rounded up to the next local midnight (a move
    at noon: the day of the move is the leaving tenant's)."""
    local = t.astimezone(tz)
    d = local.date()
    return d if local.time() == time() else d + timedelta(days=1)


def flat_tenancies(
    engine: Engine, premises_id: str, first: date, last: date, tz: ZoneInfo
) -> list[tuple[str, date, date]]:
    """The flat's tenants over the days ``first``..``last``: (consumer, first day, last day), whole
    days in order, the days of no tenancy as :data:`VACANT`."""
    parts: list[tuple[str, date, date]] = []
    cursor = first
    for t in PartyRepository(engine).tenancies([premises_id]):
        s = max(_day_of(t.start, tz), first)
        e = min(
            last + timedelta(days=1), _day_of(t.end, tz) if t.end is not None else last + timedelta(days=1)
        )
        if e <= s or e <= cursor:
            continue
        s = max(s, cursor)
        if s > cursor:
            parts.append((VACANT, cursor, s - timedelta(days=1)))
        parts.append((t.consumer_id, s, e - timedelta(days=1)))
        cursor = e
    if cursor <= last:
        parts.append((VACANT, cursor, last))
    return parts


@dataclass
class BuildingPeriod:
    """What the bills of one period were produced from."""

    flats: list[FlatReadings]
    submeters: list[SubmeterUse]
    incomplete: list[str]  # allocators with half-hours missing: their flats estimated

    @property
    def estimated_flats(self) -> list[str]:
        return [f.flat for f in self.flats if f.units is None]


def building_period(engine: Engine, building: Building, costs: BuildingCosts, tz: ZoneInfo) -> BuildingPeriod:
    """Each flat's readings of the period (``costs``' days, local to ``tz``) from the store."""
    start = local_midnight(costs.period_start, tz)
    end = local_midnight(costs.period_end + timedelta(days=1), tz)
    held = meter_hubs(engine, building)
    by_flat: dict[str, list[BuildingMeter]] = {}
    for m in building.meters:
        if m.premises_id is not None:
            by_flat.setdefault(m.premises_id, []).append(m)
    flats: list[FlatReadings] = []
    used: list[SubmeterUse] = []
    incomplete: list[str] = []

    def totals(
        ms: Sequence[BuildingMeter], a: datetime, b: datetime
    ) -> tuple[Decimal, Decimal, Decimal, bool]:
        units = hot = cold = Decimal(0)
        whole = True
        for m in ms:
            u = submeter_use(engine, m, held.get(m.meter_id, ()), a, b)
            if m.medium == "heat_cost_allocator":
                units += u.value
                whole = whole and u.complete
            elif m.medium in HOT:
                hot += u.value
            elif m.medium in COLD:
                cold += u.value
        return units, hot, cold, whole

    for f in building.flats:
        ms = by_flat.get(f.premises_id, [])
        for m in ms:
            u = submeter_use(engine, m, held.get(m.meter_id, ()), start, end)
            used.append(u)
            if m.medium == "heat_cost_allocator" and not u.complete:
                incomplete.append(m.meter_id)
        units, hot, cold, whole = totals(ms, start, end)
        has_allocator = any(m.medium == "heat_cost_allocator" for m in ms)
        read = whole and has_allocator
        tenancies: list[Tenancy] = []
        parts = flat_tenancies(engine, f.premises_id, costs.period_start, costs.period_end, tz)
        for i, (tenant, first, last) in enumerate(parts):
            if i == len(parts) - 1:  # the last tenant's part ends at the period's reading
                tenancies.append(Tenancy(tenant, first, last))
                continue
            u_at, hot_at, cold_at, _ = totals(ms, start, local_midnight(last + timedelta(days=1), tz))
            # No allocator reading to split at: the units are split by days (§9b(2)).
            tenancies.append(
                Tenancy(
                    tenant, first, last, u_at if read else None,
                    hot_at.quantize(Decimal("0.001")), cold_at.quantize(Decimal("0.001")),
                )
            )  # fmt: skip
        flats.append(
            FlatReadings(
                f.flat,
                f.heated_area_m2,
                units if read else None,
                hot.quantize(Decimal("0.001")),
                cold.quantize(Decimal("0.001")),
                tuple(tenancies),
            )
        )
    return BuildingPeriod(flats, used, incomplete)


def building_bills(
    engine: Engine, building: Building, costs: BuildingCosts, tz: ZoneInfo
) -> tuple[list[FlatBill], BuildingPeriod]:
    """The bills of ``building`` for ``costs``' period, from the registry and the stored readings."""
    period = building_period(engine, building, costs, tz)
    return split_costs(costs, period.flats), period


__all__ = [
    "SUBMETER_OBIS",
    "VACANT",
    "BuildingPeriod",
    "SubmeterUse",
    "building_bills",
    "building_period",
    "flat_tenancies",
    "local_midnight",
    "meter_hubs",
    "submeter_use",
]
