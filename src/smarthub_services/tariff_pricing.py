"""Pricing a year of half-hourly consumption under a tariff, from the tariff's published JSON.

The tariff JSON is the document the GDSC distributes to hubs (``tariff.update``; the API's
``Tariff`` schema in ``/openapi.json``): ``pricing`` is ``flat``, ``time_of_use``, ``tiered`` or
``dynamic``, prices in pence per kWh and per day excluding VAT, decimals as strings. This module
re-implements, from that published form alone, the rules the hub's and the GDSC's bills follow,
so a comparison here agrees to the penny with what the consumer would be billed:

1. each energy line (one rate: kWh × p/kWh summed exactly; a tiered tariff's kWh shared out over
   its tiers per block first) is rounded to a whole penny, half up;
2. the standing charge (days × p/day) is rounded the same way;
3. VAT is charged on the sum of the rounded lines and rounded the same way;
4. time-of-use periods and days are read on the GB wall clock (Europe/London), so the repeated
   hour of the autumn clock change is charged at its wall time twice;
5. a dynamic tariff prices each settlement period from its series; a period outside the series
   cannot be priced (the tariff is then left out of a comparison, with the reason).

Only one version of each tariff is priced (the one the catalogue publishes now): the question a
tariff advisor answers is what the last year would have cost had this tariff applied throughout.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, Inexact, InvalidOperation, localcontext
from typing import Any
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")
HALF_HOUR = timedelta(minutes=30)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EXACT = Context(prec=80, rounding=ROUND_HALF_UP, traps=[Inexact, InvalidOperation])
ROUNDING = Context(prec=80, rounding=ROUND_HALF_UP, traps=[InvalidOperation])
ZERO = Decimal(0)


class BadTariff(ValueError):
    """A catalogue entry this advisor cannot read (the message names the tariff and field)."""


class Unpriceable(ValueError):
    """The tariff cannot price the period (a dynamic series that does not cover it)."""


@dataclass(frozen=True, slots=True)
class HalfHour:
    """``kwh`` imported in the settlement period starting at ``start`` (UTC)."""

    start: datetime
    kwh: Decimal


@dataclass(frozen=True, slots=True)
class Cost:
    tariff_id: str
    name: str
    energy: dict[str, tuple[Decimal, int]]  # rate -> (kWh, whole pence)
    standing_p: int
    vat_p: int

    @property
    def total_p(self) -> int:
        return sum(p for _, p in self.energy.values()) + self.standing_p + self.vat_p

    @property
    def total(self) -> Decimal:
        """Pounds, two places."""
        return Decimal(self.total_p).scaleb(-2)


def round_pence(amount: Decimal) -> int:
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP, context=ROUNDING))


def day_start(day: date) -> datetime:
    """The UTC instant of local midnight."""
    return datetime.combine(day, time(0), tzinfo=LONDON).astimezone(UTC)


def local_day(t: datetime) -> date:
    return t.astimezone(LONDON).date()


def _decimal(doc: Mapping[str, Any], key: str, where: str) -> Decimal:
    value = doc.get(key)
    if not isinstance(value, str):
        raise BadTariff(f"{where}.{key}: a decimal string is required, not {value!r}")
    try:
        d = Decimal(value)
    except InvalidOperation:
        raise BadTariff(f"{where}.{key}: {value!r} is not a decimal") from None
    if not d.is_finite():
        raise BadTariff(f"{where}.{key}: {value!r} is not finite")
    return d


def _slot(text: Any, where: str) -> int:
    """``"HH:MM"`` on a half-hour to the settlement period of the day it starts (0..48)."""
    try:
        hh, mm = str(text).split(":")
        minutes = int(hh) * 60 + int(mm)
    except ValueError:
        raise BadTariff(f"{where}: {text!r} is not a time of day HH:MM") from None
    if minutes % 30 or not 0 <= minutes <= 24 * 60:
        raise BadTariff(f"{where}: {text!r} is not on a half-hour of the day")
    return minutes // 30


class Pricing:
    """One tariff document, read for pricing."""

    def __init__(self, doc: Any) -> None:
        if not isinstance(doc, dict) or not isinstance(doc.get("tariff_id"), str):
            raise BadTariff("a tariff is an object with a tariff_id")
        self.tariff_id: str = doc["tariff_id"]
        where = self.tariff_id
        self.name = str(doc.get("name") or self.tariff_id)
        self.standing = _decimal(doc, "standing_charge_p_per_day", where)
        self.vat = _decimal(doc, "vat_rate", where) if "vat_rate" in doc else Decimal("0.05")
        pricing = doc.get("pricing")
        if not isinstance(pricing, dict):
            raise BadTariff(f"{where}.pricing: an object is required")
        self.kind = pricing.get("type")
        where = f"{where}.pricing"
        if self.kind == "flat":
            self.flat = _decimal(pricing, "unit_rate_p_per_kwh", where)
        elif self.kind == "time_of_use":
            self._time_of_use(pricing, where)
        elif self.kind == "tiered":
            self._tiered(pricing, where)
        elif self.kind == "dynamic":
            series = pricing.get("unit_rates_p_per_kwh")
            if not isinstance(series, dict) or not isinstance(series.get("values"), list):
                raise BadTariff(f"{where}.unit_rates_p_per_kwh: a series (start, values) is required")
            try:
                self.series_start = datetime.fromisoformat(str(series["start"]).replace("Z", "+00:00"))
            except (KeyError, ValueError):
                raise BadTariff(
                    f"{where}.unit_rates_p_per_kwh.start: an RFC 3339 instant is required"
                ) from None
            self.series = [
                _decimal({"v": v}, "v", f"{where}.unit_rates_p_per_kwh.values[{i}]")
                for i, v in enumerate(series["values"])
            ]
        else:
            raise BadTariff(f"{where}.type: {self.kind!r} is not flat, time_of_use, tiered or dynamic")

    def _time_of_use(self, pricing: dict[str, Any], where: str) -> None:
        rates = pricing.get("rates")
        day_types = pricing.get("day_types")
        week = pricing.get("week")
        if not isinstance(rates, dict) or not isinstance(day_types, dict) or not isinstance(week, dict):
            raise BadTariff(f"{where}: rates, day_types and week are required")
        self.rates = {name: _decimal(rates, name, f"{where}.rates") for name in rates}
        self.slots: dict[str, list[str]] = {}
        for day_type, periods in day_types.items():
            owner: list[str | None] = [None] * 48
            for i, p in enumerate(periods):
                at = f"{where}.day_types.{day_type}[{i}]"
                start, end = _slot(p.get("start"), at), _slot(p.get("end"), at)
                if p.get("rate") not in self.rates:
                    raise BadTariff(f"{at}.rate: {p.get('rate')!r} is not in rates")
                for s in range(start, end if end > start else end + 48):
                    owner[s % 48] = p["rate"]
            if None in owner:
                raise BadTariff(f"{where}.day_types.{day_type}: the periods do not cover the day")
            self.slots[day_type] = [r for r in owner if r is not None]
        self.week = {d: week.get(d) for d in WEEKDAYS}
        self.holiday_type = pricing.get("bank_holiday_day_type")
        self.holidays = {date.fromisoformat(d) for d in pricing.get("bank_holidays", [])}
        for d, t in self.week.items():
            if t not in self.slots:
                raise BadTariff(f"{where}.week.{d}: day type {t!r} is not defined")

    def _tiered(self, pricing: dict[str, Any], where: str) -> None:
        self.block = pricing.get("block")
        if self.block not in ("day", "billing_period"):
            raise BadTariff(f"{where}.block: 'day' or 'billing_period' is required")
        self.tiers: list[tuple[str, Decimal | None, Decimal]] = []
        for i, t in enumerate(pricing.get("tiers") or []):
            at = f"{where}.tiers[{i}]"
            top = None if t.get("up_to_kwh") is None else _decimal(t, "up_to_kwh", at)
            self.tiers.append((str(t.get("name")), top, _decimal(t, "unit_rate_p_per_kwh", at)))
        if not self.tiers or self.tiers[-1][1] is not None:
            raise BadTariff(f"{where}.tiers: tiers are required, the last one unbounded")

    def rate_at(self, t: datetime) -> tuple[str, Decimal]:
        """The rate name and p/kWh of the settlement period at ``t`` (not for a tiered tariff)."""
        if self.kind == "flat":
            return "unit rate", self.flat
        if self.kind == "time_of_use":
            local = t.astimezone(LONDON)
            day = local.date()
            day_type = self.week[WEEKDAYS[day.weekday()]]
            if day in self.holidays and self.holiday_type is not None:
                day_type = self.holiday_type
            rate = self.slots[str(day_type)][local.hour * 2 + local.minute // 30]
            return rate, self.rates[rate]
        i = int((t - self.series_start) // HALF_HOUR)
        if t < self.series_start or i >= len(self.series):
            raise Unpriceable(
                f"tariff {self.tariff_id!r} publishes no price for the settlement period at {t.isoformat()}"
            )
        return "half-hourly", self.series[i]

    def price(self, consumption: Iterable[HalfHour], first: date, end: date) -> Cost:
        """The bill for local days ``first`` .. ``end`` (exclusive), with the rounding rule above."""
        energy: dict[str, tuple[Decimal, Decimal]] = {}  # rate -> exact (kWh, pence)
        blocks: dict[date | None, Decimal] = {}
        with localcontext(EXACT):
            for h in consumption:
                if self.kind == "tiered":
                    key = local_day(h.start) if self.block == "day" else None
                    blocks[key] = blocks.get(key, ZERO) + h.kwh
                    continue
                rate, price = self.rate_at(h.start)
                kwh, pence = energy.get(rate, (ZERO, ZERO))
                energy[rate] = (kwh + h.kwh, pence + h.kwh * price)
            for block_kwh in blocks.values():
                floor = ZERO
                for name, top, price in self.tiers:
                    part = (
                        block_kwh - floor if top is None else min(max(block_kwh - floor, ZERO), top - floor)
                    )
                    part = max(part, ZERO)
                    kwh, pence = energy.get(name, (ZERO, ZERO))
                    energy[name] = (kwh + part, pence + part * price)
                    if top is not None:
                        floor = top
            standing_exact = (end - first).days * self.standing
        rounded = {rate: (kwh, round_pence(p)) for rate, (kwh, p) in energy.items() if kwh or p}
        standing = round_pence(standing_exact)
        net = sum(p for _, p in rounded.values()) + standing
        with localcontext(EXACT):
            vat_exact = net * self.vat
        vat = round_pence(vat_exact)
        return Cost(self.tariff_id, self.name, rounded, standing, vat)


def catalogue(text: str | bytes) -> list[Pricing]:
    """A published catalogue: a JSON array of tariff documents (one version of each tariff)."""
    try:
        docs = json.loads(text)
    except ValueError as err:
        raise BadTariff(f"the catalogue is not JSON: {err}") from None
    if not isinstance(docs, list) or not docs:
        raise BadTariff("the catalogue is a non-empty JSON array of tariffs")
    tariffs = [Pricing(d) for d in docs]
    ids = [t.tariff_id for t in tariffs]
    if len(set(ids)) != len(ids):
        raise BadTariff(f"the catalogue names a tariff twice: {sorted(ids)}")
    return tariffs
