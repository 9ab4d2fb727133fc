"""The home's consumption in the consumer's terms: each fuel's intervals priced, and each appliance's.

The hub's interval builder closes half-hours of the meters' registers; this module turns the
closed intervals of the home's *supply* meters (one per fuel: the electricity import register
and the gas volume register) into :class:`~smarthub.model.tariff_calc.IntervalConsumption`,
feeds each fuel's :class:`~smarthub.hub.tariffs.CostAccumulator` (its own tariff and supplier:
electricity and gas may come from different suppliers), and tells observers (the prepayment
bridge) each interval's **unrounded** cost inc. VAT from the shared calculation
(`tariff_calc.classify`). Intervals of *sub-meters* (smart plugs, appliance meters on the HAN)
are priced at the electricity tariff's unit rate the same way, for the IHD's cost per appliance;
they are never billed (the supply meter already measured that energy).

Gas: the meter measures volume; GB suppliers bill kWh = m3 x 1.02264 (volume correction to
standard temperature and pressure) x calorific value (MJ/m3) / 3.6 (Gas (Calculation of
Thermal Energy) Regulations 1996), kept to the 6 decimal places IntervalConsumption allows.

After a restart `load` replays the stored intervals from the history, so the figures and the
prepayment charges (keyed, so harmless to repeat) continue where they were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from typing import Protocol

from smarthub.hub.intervals import IntervalRecord
from smarthub.hub.tariffs import CostAccumulator
from smarthub.model import ObisCode
from smarthub.model.obis import GAS_VOLUME, IMPORT_ACTIVE_ENERGY
from smarthub.model.tariff import SETTLEMENT_PERIOD, TariffError
from smarthub.model.tariff_calc import EXACT, IntervalConsumption, classify, day_start, local_day

GAS_VOLUME_CORRECTION = Decimal("1.02264")
DEFAULT_CALORIFIC_VALUE = Decimal("39.5")  # MJ/m3, a typical GB declared CV
_KWH_PLACES = Decimal("0.000001")
_HUNDRED = Decimal(100)
_ROUNDING = Context(prec=80, rounding=ROUND_HALF_UP)


def gas_kwh(m3: Decimal, calorific_value: Decimal = DEFAULT_CALORIFIC_VALUE) -> Decimal:
    """Billed kWh of a gas volume (see the module docstring), to 6 places, half up."""
    with localcontext(_ROUNDING):  # /3.6 is not exact: round once, to the register's places
        return (m3 * GAS_VOLUME_CORRECTION * calorific_value / Decimal("3.6")).quantize(_KWH_PLACES)


@dataclass
class Supply:
    """One fuel as the consumer buys it: the meter and register billed, the supplier, the tariff."""

    fuel: str  # "electricity" or "gas"
    meter: str
    supplier: str
    accumulator: CostAccumulator
    obis: ObisCode | None = None  # default: import energy for electricity, volume for gas

    def __post_init__(self) -> None:
        if self.fuel not in ("electricity", "gas"):
            raise ValueError(f"a supply is electricity or gas, not {self.fuel!r}")
        if self.obis is None:
            self.obis = IMPORT_ACTIVE_ENERGY if self.fuel == "electricity" else GAS_VOLUME


@dataclass(frozen=True, slots=True)
class PricedInterval:
    start: datetime
    kwh: Decimal
    cost: Decimal  # £ inc. VAT, unrounded (None-priced intervals are not kept here)


@dataclass(frozen=True, slots=True)
class ApplianceCost:
    name: str
    meter: str
    kwh: Decimal
    cost: Decimal  # £ inc. VAT, to the penny for display


IntervalObserver = Callable[[Supply, IntervalConsumption, Decimal], None]


class HomeConsumption:
    def __init__(
        self,
        supplies: Iterable[Supply],
        appliances: Mapping[str, str] | None = None,
        calorific_value: Decimal = DEFAULT_CALORIFIC_VALUE,
    ) -> None:
        self.supplies: dict[str, Supply] = {}
        for s in supplies:
            if s.fuel in self.supplies:
                raise ValueError(f"two {s.fuel} supplies")
            self.supplies[s.fuel] = s
        self.appliances: dict[str, str] = dict(appliances or {})  # sub-meter → appliance name
        self.calorific_value = calorific_value
        self.observers: list[IntervalObserver] = []
        self._priced: dict[str, dict[datetime, PricedInterval]] = {f: {} for f in self.supplies}
        self._appliance: dict[str, dict[datetime, PricedInterval]] = {}
        self._by_channel = {(s.meter, s.obis): s for s in self.supplies.values()}

    def set_appliance(self, meter: str, name: str) -> None:
        """Mark ``meter`` as the sub-meter (smart plug) of appliance ``name``."""
        if any(meter == s.meter for s in self.supplies.values()):
            raise ValueError(f"{meter!r} is a supply meter, not an appliance's sub-meter")
        self.appliances[meter] = name

    # -- intake -----------------------------------------------------------------------------
    def consumption(self, supply: Supply, record: IntervalRecord) -> IntervalConsumption:
        quantity = Decimal(record.value).scaleb(record.power_of_ten)
        start = datetime.fromtimestamp(record.start, UTC)
        kwh = quantity / 1000 if supply.fuel == "electricity" else gas_kwh(quantity, self.calorific_value)
        return IntervalConsumption(start, timedelta(seconds=record.duration), kwh.normalize() + 0)

    def observe(self, records: Iterable[IntervalRecord]) -> None:
        """Closed intervals from the hub (a `SmartHub.interval_observers` entry)."""
        for r in records:
            supply = self._by_channel.get((r.meter, r.obis))
            if supply is not None:
                self._add_supply(supply, r)
            elif r.meter in self.appliances and r.obis == IMPORT_ACTIVE_ENERGY:
                self._add_appliance(r)

    def _add_supply(self, supply: Supply, r: IntervalRecord) -> None:
        if r.value < 0:
            return  # a register going backwards (a meter exchange) is not consumption
        c = self.consumption(supply, r)
        supply.accumulator.add(c)
        cost = self.cost(supply, c)
        if cost is None:
            return  # not priceable yet (a dynamic price not published): the accumulator keeps it
        self._priced[supply.fuel][c.start] = PricedInterval(c.start, c.kwh, cost)
        for observe in self.observers:
            observe(supply, c, cost)

    def _add_appliance(self, r: IntervalRecord) -> None:
        elec = self.supplies.get("electricity")
        if elec is None or r.value < 0:
            return
        c = self.consumption(elec, r)
        cost = self.cost(elec, c)
        if cost is not None:
            self._appliance.setdefault(r.meter, {})[c.start] = PricedInterval(c.start, c.kwh, cost)

    def reprice(self, fuel: str, since: datetime) -> int:
        """After a tariff update: re-price the fuel's intervals (and, for electricity, the
        appliances') from ``since`` with the supply's new schedule; how many were re-priced. Observers are
        not told again (a prepayment charge already taken stands, as a meter's would)."""
        supply = self.supplies[fuel]
        changed = 0
        for c in supply.accumulator.intervals():
            old = self._priced[fuel].get(c.start)
            if c.start < since or old is None:
                continue
            cost = self.cost(supply, c)
            if cost is None:
                del self._priced[fuel][c.start]
            elif cost != old.cost:
                self._priced[fuel][c.start] = PricedInterval(c.start, c.kwh, cost)
            changed += 1
        if fuel == "electricity":
            for rows in self._appliance.values():
                for t, p in list(rows.items()):
                    if t < since:
                        continue
                    offset = timedelta(seconds=t.timestamp() % SETTLEMENT_PERIOD.total_seconds())
                    cost = self.cost(supply, IntervalConsumption(t, SETTLEMENT_PERIOD - offset, p.kwh))
                    if cost is None:
                        del rows[t]
                    elif cost != p.cost:
                        rows[t] = PricedInterval(t, p.kwh, cost)
                    changed += 1
        return changed

    @staticmethod
    def cost(supply: Supply, c: IntervalConsumption) -> Decimal | None:
        """The interval's energy cost in £ inc. VAT, exact (zero for a tiered tariff, whose
        energy is priced per block when the day is billed)."""
        schedule = supply.accumulator.schedule
        try:
            _key, pence = classify(schedule, c)
            vat = schedule.in_force(c.day).vat_rate
        except TariffError:
            return None
        with localcontext(EXACT):
            return pence * (1 + vat) / _HUNDRED

    def load(self, history: HistoryLike, since: datetime) -> int:
        """Replay the stored intervals from ``since`` (after a restart); returns how many."""
        n = 0
        channels = [(s.meter, s.obis) for s in self.supplies.values()]
        channels += [(m, IMPORT_ACTIVE_ENERGY) for m in self.appliances]
        for meter, obis in channels:
            assert obis is not None
            offset = 0
            while True:
                page = history.query(meter, obis, start=int(since.timestamp()), offset=offset, limit=5000)
                self.observe(page)
                n += len(page)
                if len(page) < 5000:
                    break
                offset += len(page)
        return n

    # -- views for the IHD ------------------------------------------------------------------
    def half_hours(self, fuel: str, day: date) -> list[PricedInterval]:
        lo, hi = day_start(day), day_start(day + timedelta(days=1))
        return sorted(
            (p for t, p in self._priced.get(fuel, {}).items() if lo <= t < hi), key=lambda p: p.start
        )

    def appliance_costs(self, start: date, end: date) -> list[ApplianceCost]:
        """Each appliance's kWh and cost over local days ``start``..``end``, dearest first."""
        out = []
        for meter, name in self.appliances.items():
            rows = [p for p in self._appliance.get(meter, {}).values() if start <= local_day(p.start) < end]
            kwh = sum((p.kwh for p in rows), Decimal(0))
            cost = sum((p.cost for p in rows), Decimal(0)).quantize(Decimal("0.01"), ROUND_HALF_UP)
            out.append(ApplianceCost(name, meter, kwh, cost))
        return sorted(out, key=lambda a: (-a.cost, a.name))


class HistoryLike(Protocol):  # what `load` reads of a HistoryStore
    def query(
        self, meter: str, obis: ObisCode, *, start: int | None = None, offset: int = 0, limit: int = 1000
    ) -> list[IntervalRecord]: ...
