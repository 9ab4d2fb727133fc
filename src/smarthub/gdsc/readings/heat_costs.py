"""Heating and water cost billing for an apartment block: the building's costs over its flats.

The rules are those of the German Heating Costs Ordinance (Heizkostenverordnung, HeizkostenV),
the model for the EU's sub-metering rules, which a housing provider applies once a year (or per
billing period) from the heat-cost allocators' and water meters' readings:

* **Hot water first** (HeizkostenV §9(2)): where one boiler heats the rooms and the water, the
  heat for hot water is ``Q = 2.5 kWh/(m³·K) × V × (t_w − 10 °C)`` from the hot water volume ``V``
  the building used (``t_w`` = 60 °C unless measured); its share of the fuel cost is ``Q`` over the
  fuel's energy, the rest is space heating.
* **Space heating** (§7(1)) and **hot water** (§8(1)): a part (30–50 %, ``fixed_share``) by heated
  area, the rest by consumption: heat-cost allocator units (EN 834) for heating, hot water meter
  volumes for hot water.
* **Water** (the building's water and sewerage bill) by each flat's metered volume, cold and hot
  together: the main meter counts the hot water's feed to the boiler too, so a flat's hot water is
  water it bought (BetrKV §2 no. 2 and §556a BGB: by recorded consumption); a difference to the
  main meter is spread in proportion, as common practice. (Splitting over the cold meters alone
  charged the cold water at ~1.5x the utility's price and left hot water's water unpaid.) The
  bill's field for it keeps its name, ``cold_water``.
* **A flat whose allocator failed or is missing** (§9a): its units are estimated from comparable
  flats — the median units per m² of the flats read in the same period, times its area — and the
  bill says so.
* **A change of tenant mid-period** (§9b): the interim reading at move-out splits the consumption
  part; the area part is split by days.

Money is Decimal throughout; each cost pool is shared out to the cent by the largest-remainder
method, so the bills of the flats add up to the building's cost exactly.

Own code, not a library: no maintained Python package implements these rules.
"""

from __future__ import annotations

import csv
import io
import statistics
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

__all__ = [
    "BuildingCosts",
    "FlatBill",
    "FlatReadings",
    "HeatCostError",
    "Tenancy",
    "bills_csv",
    "hot_water_heat_kwh",
    "load_building",
    "share_out",
    "split_costs",
]

CENT = Decimal("0.01")
_HOT_WATER_KWH_PER_M3_K = Decimal("2.5")  # HeizkostenV §9(2)


class HeatCostError(ValueError):
    """Input the split cannot use; the message names the flat and the figure."""


@dataclass(frozen=True)
class Tenancy:
    tenant: str
    start: date  # first day
    end: date  # last day (inclusive)
    units_at_end: Decimal | None = None  # the allocators' interim reading at move-out (None: last)
    hot_water_m3_at_end: Decimal | None = None
    cold_water_m3_at_end: Decimal | None = None


@dataclass(frozen=True)
class FlatReadings:
    """A flat's period: heated area, allocator units (None: failed or missing), water volumes."""

    flat: str
    heated_area_m2: Decimal
    units: Decimal | None
    hot_water_m3: Decimal
    cold_water_m3: Decimal
    tenancies: tuple[Tenancy, ...] = ()


@dataclass(frozen=True)
class BuildingCosts:
    period_start: date
    period_end: date  # inclusive
    fuel_cost: Decimal  # the boiler's fuel, space heating and hot water together
    fuel_kwh: Decimal  # the fuel's energy (gas m³ × calorific value, or the heat meter)
    water_cost: Decimal  # cold water and sewerage for the building
    fixed_share: Decimal = Decimal("0.30")  # by area: 0.30 to 0.50 (HeizkostenV §7, §8)
    hot_water_temperature_c: Decimal = Decimal("60")

    def __post_init__(self) -> None:
        if not Decimal("0.30") <= self.fixed_share <= Decimal("0.50"):
            raise HeatCostError(f"fixed_share {self.fixed_share}: HeizkostenV allows 0.30 to 0.50")
        if self.period_end < self.period_start:
            raise HeatCostError("the period ends before it starts")
        for name in ("fuel_cost", "fuel_kwh", "water_cost"):
            if getattr(self, name) < 0:
                raise HeatCostError(f"{name} is negative")

    @property
    def days(self) -> int:
        return (self.period_end - self.period_start).days + 1


@dataclass
class FlatBill:
    """One tenant's bill for one flat (one per tenancy; the whole period if no tenancy is given)."""

    flat: str
    tenant: str
    start: date
    end: date
    heated_area_m2: Decimal
    units: Decimal
    hot_water_m3: Decimal
    cold_water_m3: Decimal
    heating_area: Decimal = CENT * 0
    heating_consumption: Decimal = CENT * 0
    hot_water_area: Decimal = CENT * 0
    hot_water_consumption: Decimal = CENT * 0
    cold_water: Decimal = CENT * 0
    estimated: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return (
            self.heating_area + self.heating_consumption + self.hot_water_area
            + self.hot_water_consumption + self.cold_water
        )  # fmt: skip


def hot_water_heat_kwh(volume_m3: Decimal, temperature_c: Decimal = Decimal("60")) -> Decimal:
    """HeizkostenV §9(2): Q = 2.5 kWh/(m³·K) × V × (t_w − 10 °C)."""
    return _HOT_WATER_KWH_PER_M3_K * volume_m3 * (temperature_c - 10)


def share_out(total: Decimal, weights: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """``total`` (to the cent) in proportion to ``weights``, the cents left by rounding down
    given to the largest remainders (ties by key): the parts add up to ``total`` exactly."""
    total = total.quantize(CENT)
    weight = sum(weights.values(), Decimal(0))
    if not weights:
        return {}
    if weight <= 0:
        raise HeatCostError(f"no weight to share {total} over")
    exact = {k: total * w / weight for k, w in weights.items()}
    floors = {k: v.quantize(CENT, rounding=ROUND_FLOOR) for k, v in exact.items()}
    left = int((total - sum(floors.values(), Decimal(0))) / CENT)
    for k in sorted(exact, key=lambda k: (-(exact[k] - floors[k]), k))[:left]:
        floors[k] += CENT
    return floors


def _estimate_units(flats: Sequence[FlatReadings]) -> dict[str, tuple[Decimal, bool]]:
    """Each flat's units; a failed allocator estimated from the median units per m² of the others."""
    read = [f for f in flats if f.units is not None]
    if not read:
        raise HeatCostError("no flat has allocator readings: nothing to estimate from")
    per_m2 = statistics.median(f.units / f.heated_area_m2 for f in read if f.units is not None)
    out: dict[str, tuple[Decimal, bool]] = {}
    for f in flats:
        if f.units is None:
            out[f.flat] = ((per_m2 * f.heated_area_m2).quantize(Decimal("0.1")), True)
        else:
            out[f.flat] = (f.units, False)
    return out


def _parts(
    flat: FlatReadings, units: Decimal, costs: BuildingCosts
) -> list[tuple[str, date, date, Decimal, Decimal, Decimal, Decimal]]:
    """The flat's billing parts: (tenant, start, end, day weight, units, hot m³, cold m³)."""
    if not flat.tenancies:
        return [("", costs.period_start, costs.period_end, Decimal(costs.days), units,
                 flat.hot_water_m3, flat.cold_water_m3)]  # fmt: skip
    ordered = sorted(flat.tenancies, key=lambda t: t.start)
    if ordered[0].start != costs.period_start or ordered[-1].end != costs.period_end:
        raise HeatCostError(f"flat {flat.flat}: tenancies must cover the period from start to end")
    parts = []
    before = (Decimal(0), Decimal(0), Decimal(0))
    for i, t in enumerate(ordered):
        if i and (t.start - ordered[i - 1].end).days != 1:
            previous = ordered[i - 1].tenant
            raise HeatCostError(f"flat {flat.flat}: tenancies of {previous} and {t.tenant} do not meet")
        last = i == len(ordered) - 1
        units_at_end = t.units_at_end
        if not last and units_at_end is None and flat.units is None:
            # An estimated flat has no interim allocator reading: its units are split by days
            # (HeizkostenV §9b(2): where no interim reading can be taken, by time).
            days_in = Decimal((t.end - costs.period_start).days + 1)
            units_at_end = (units * days_in / costs.days).quantize(Decimal("0.1"))
        interim = (units_at_end, t.hot_water_m3_at_end, t.cold_water_m3_at_end)
        if not last and any(v is None for v in interim):
            raise HeatCostError(f"flat {flat.flat}: {t.tenant} moved out without an interim reading")
        if last:
            at_end = (units, flat.hot_water_m3, flat.cold_water_m3)
        else:
            assert units_at_end is not None and t.hot_water_m3_at_end is not None
            assert t.cold_water_m3_at_end is not None
            at_end = (units_at_end, t.hot_water_m3_at_end, t.cold_water_m3_at_end)
        u, hot, cold = (at_end[0] - before[0], at_end[1] - before[1], at_end[2] - before[2])
        if u < 0 or hot < 0 or cold < 0:
            raise HeatCostError(f"flat {flat.flat}: {t.tenant}'s interim reading is above the period's")
        parts.append((t.tenant, t.start, t.end, Decimal((t.end - t.start).days + 1), u, hot, cold))
        before = at_end
    return parts


def split_costs(costs: BuildingCosts, flats: Sequence[FlatReadings]) -> list[FlatBill]:
    """The bills (one per flat and tenancy) whose totals add up to fuel cost + water cost."""
    if not flats:
        raise HeatCostError("a building with no flats")
    names = [f.flat for f in flats]
    if len(set(names)) != len(names):
        raise HeatCostError("a flat is listed twice")
    for f in flats:
        if f.heated_area_m2 <= 0:
            raise HeatCostError(f"flat {f.flat}: heated area must be positive")
        if (f.units is not None and f.units < 0) or f.hot_water_m3 < 0 or f.cold_water_m3 < 0:
            raise HeatCostError(f"flat {f.flat}: a reading is negative")
    units = _estimate_units(flats)

    # HeizkostenV §9(2): the hot water's share of the fuel.
    hot_total = sum((f.hot_water_m3 for f in flats), Decimal(0))
    q_hot = hot_water_heat_kwh(hot_total, costs.hot_water_temperature_c)
    if costs.fuel_kwh > 0 and q_hot > costs.fuel_kwh:
        raise HeatCostError(f"hot water needs {q_hot} kWh, more than the fuel's {costs.fuel_kwh} kWh")
    hot_cost = (costs.fuel_cost * q_hot / costs.fuel_kwh).quantize(CENT) if costs.fuel_kwh > 0 else CENT * 0
    heat_cost = costs.fuel_cost.quantize(CENT) - hot_cost

    bills: list[FlatBill] = []
    keyed: dict[str, FlatBill] = {}
    area_w: dict[str, Decimal] = {}
    units_w: dict[str, Decimal] = {}
    hot_w: dict[str, Decimal] = {}
    water_w: dict[str, Decimal] = {}  # cold and hot: the water bill's consumption (module docstring)
    for f in flats:
        flat_units, estimated = units[f.flat]
        for tenant, start, end, days, u, hot, cold in _parts(f, flat_units, costs):
            key = f"{f.flat}\x00{start.isoformat()}"
            bill = FlatBill(f.flat, tenant, start, end, f.heated_area_m2, u, hot, cold, estimated=estimated)
            if estimated:
                bill.notes.append("heating units estimated from comparable flats (allocator failed, missing)")
            bills.append(bill)
            keyed[key] = bill
            area_w[key] = f.heated_area_m2 * days / costs.days
            units_w[key] = u
            hot_w[key] = hot
            water_w[key] = cold + hot

    fixed = costs.fixed_share
    heat_area = (heat_cost * fixed).quantize(CENT)
    hot_area = (hot_cost * fixed).quantize(CENT)
    pools: list[tuple[str, Decimal, dict[str, Decimal]]] = [
        ("heating_area", heat_area, area_w),
        ("heating_consumption", heat_cost - heat_area, units_w),
        ("hot_water_area", hot_area, area_w),
        ("hot_water_consumption", hot_cost - hot_area, hot_w if sum(hot_w.values()) > 0 else area_w),
        ("cold_water", costs.water_cost.quantize(CENT), water_w if sum(water_w.values()) > 0 else area_w),
    ]
    for attribute, amount, weights in pools:
        if amount == 0:
            continue
        if sum(weights.values(), Decimal(0)) <= 0:  # no units read anywhere: by area (and say so)
            weights = area_w
            for bill in bills:
                bill.notes.append(f"{attribute.replace('_', ' ')} shared by area: no consumption measured")
        for key, part in share_out(amount, weights).items():
            setattr(keyed[key], attribute, part)
    return bills


def bills_csv(bills: Iterable[FlatBill]) -> str:
    """One row per bill with the figures that produce it."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow([
        "flat", "tenant", "start", "end", "heated_area_m2", "units", "hot_water_m3", "cold_water_m3",
        "heating_area", "heating_consumption", "hot_water_area", "hot_water_consumption", "cold_water",
        "total", "estimated", "notes",
    ])  # fmt: skip
    for b in bills:
        w.writerow([
            b.flat, b.tenant, b.start.isoformat(), b.end.isoformat(), b.heated_area_m2, b.units,
            b.hot_water_m3, b.cold_water_m3, b.heating_area, b.heating_consumption, b.hot_water_area,
            b.hot_water_consumption, b.cold_water, b.total, "yes" if b.estimated else "no",
            "; ".join(b.notes),
        ])  # fmt: skip
    return out.getvalue()


def _dec(table: Mapping[str, Any], key: str, where: str, default: str | None = None) -> Decimal:
    raw = table.get(key, default)
    if raw is None:
        raise HeatCostError(f"{where}.{key}: missing")
    if isinstance(raw, float):
        raise HeatCostError(f'{where}.{key}: write money and volumes as strings ("12.50"), not floats')
    try:
        return Decimal(str(raw))
    except InvalidOperation:
        raise HeatCostError(f"{where}.{key}: {raw!r} is not a number") from None


def _day(table: Mapping[str, Any], key: str, where: str) -> date:
    raw = table.get(key)
    if isinstance(raw, date):
        return raw
    try:
        return date.fromisoformat(str(raw))
    except ValueError:
        raise HeatCostError(f"{where}.{key}: {raw!r} is not a date (YYYY-MM-DD)") from None


def load_building(text: str) -> tuple[str, BuildingCosts, list[FlatReadings]]:
    """A building's period from TOML (``[building]`` and ``[[flats]]``, see the README's
    "Apartment blocks"): its name, costs and flats."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise HeatCostError(f"not valid TOML: {err}") from None
    b = data.get("building")
    if not isinstance(b, dict):
        raise HeatCostError("[building]: missing")
    costs = BuildingCosts(
        _day(b, "start", "building"),
        _day(b, "end", "building"),
        _dec(b, "fuel_cost", "building"),
        _dec(b, "fuel_kwh", "building"),
        _dec(b, "water_cost", "building"),
        _dec(b, "fixed_share", "building", "0.30"),
        _dec(b, "hot_water_temperature_c", "building", "60"),
    )
    flats = []
    for i, f in enumerate(data.get("flats") or []):
        where = f"flats[{i}]"
        tenancies = tuple(
            Tenancy(
                str(t.get("tenant", "")),
                _day(t, "start", f"{where}.tenancies[{j}]"),
                _day(t, "end", f"{where}.tenancies[{j}]"),
                *(
                    None if t.get(k) is None else _dec(t, k, f"{where}.tenancies[{j}]")
                    for k in ("units_at_end", "hot_water_m3_at_end", "cold_water_m3_at_end")
                ),
            )
            for j, t in enumerate(f.get("tenancies") or [])
        )
        flats.append(
            FlatReadings(
                str(f.get("flat") or f"#{i + 1}"),
                _dec(f, "heated_area_m2", where),
                None if f.get("units") is None else _dec(f, "units", where),
                _dec(f, "hot_water_m3", where, "0"),
                _dec(f, "cold_water_m3", where, "0"),
                tenancies,
            )
        )
    return str(b.get("name", "building")), costs, flats
