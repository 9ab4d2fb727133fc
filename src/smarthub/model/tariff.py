"""Tariffs as versioned value types, validated on construction and carried as JSON.

A tariff version says how one supply is charged from a local date onwards: a pricing
structure (flat, time-of-use, tiered/block or dynamic half-hourly), a standing charge per day
and the VAT rate. Prices are in pence per kWh and pence per day *excluding* VAT, as on a GB
tariff sheet; VAT is added on the bill (see `tariff_calc`).

Time: everything a consumer reads on a tariff sheet is in GB local time (Europe/London,
zoneinfo), so ToU periods are wall-clock times and tariff versions take effect at local
midnight. Settlement periods are half-hourly, 48 a day, 46 on the spring clock change and 50
on the autumn one (BSC settlement); UTC and local half-hour boundaries coincide because the GB
offset is a whole hour, which is why ToU boundaries must fall on the half-hour.

The JSON form is what the GDSC distributes through the pull channel: decimals as strings
(never floats), unknown fields refused, and an `InvalidTariff` naming the field (its path, as
``pricing.time_of_use.rates.night``) for anything invalid.

The classes are plain frozen dataclasses that check every field in ``__post_init__``, so the
hub, which prices with them, does not load pydantic (issue 17: the pydantic model cost a hub
~9 MB of its 64). The GDSC's API still publishes and validates tariffs with pydantic, from
these same classes: each field's annotation carries a :class:`_Schema` marker that pydantic
expands, only when it builds a schema, into the constraints of :mod:`smarthub.model.tariff_schema`
(the published decimal patterns are :mod:`smarthub.model.decimals`' and are checked here too);
pydantic then calls ``__post_init__``, so both sides refuse the same documents (a test checks
that they agree).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, NamedTuple
from zoneinfo import ZoneInfo

from smarthub.model.decimals import (
    FRACTION_4,
    NON_NEGATIVE_PRICE,
    POSITIVE_QUANTITY,
    PRICE,
    DecimalText,
    fixed_point,
)

LONDON = ZoneInfo("Europe/London")
SETTLEMENT_PERIOD = timedelta(minutes=30)
_SLOTS_PER_DAY = 48
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class TariffError(ValueError):
    """A tariff cannot price what it was asked to price."""


class InvalidTariff(TariffError):
    """A tariff (or its JSON) is not a valid tariff. ``loc`` is the path to the offending
    field and ``reason`` what is wrong with it, when one field is to blame."""

    def __init__(self, message: str, *, loc: tuple[str | int, ...] = (), reason: str | None = None) -> None:
        super().__init__(message)
        self.loc = loc
        self.reason = reason


class MissingPrice(TariffError):
    """A half-hourly series has no value for the settlement period asked for."""


class NoTariffInForce(TariffError):
    """No version of the tariff is in force on the day asked for."""


class TariffRef(NamedTuple):
    tariff_id: str
    version: int


# -- checking fields ---------------------------------------------------------------------------


class _Reason(Exception):
    """What is wrong with one value (its field is named by the caller)."""


def _bad(loc: tuple[str | int, ...], reason: str, what: str = "tariff") -> InvalidTariff:
    where = ".".join(str(x) for x in loc)
    return InvalidTariff(f"invalid {what}: {where}: {reason}" if where else f"invalid {what}: {reason}",
                         loc=loc, reason=reason)  # fmt: skip


def _within(err: InvalidTariff, *outer: str | int) -> InvalidTariff:
    """``err`` (a nested value's) located under ``outer``."""
    reason = err.reason if err.reason is not None else str(err).removeprefix("invalid tariff: ")
    return _bad((*outer, *err.loc), reason)


Check = Callable[[Any], Any]


def _checked(obj: object, **checks: Check) -> None:
    """Check (and normalise) each named field of a frozen dataclass, in order."""
    for name, check in checks.items():
        try:
            value = check(getattr(obj, name))
        except InvalidTariff as err:
            raise _within(err, name) from None
        except _Reason as why:
            raise _bad((name,), str(why)) from None
        object.__setattr__(obj, name, value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Reason("Input should be a valid string")
    return value


def _name(value: Any) -> str:
    text = _text(value)
    if not text:
        raise _Reason("String should have at least 1 character")
    if len(text) > 64:
        raise _Reason("String should have at most 64 characters")
    return text


def _decimal(
    rule: DecimalText,
    *,
    ge: int | None = None,
    gt: int | None = None,
    lt: int | None = None,
    places: int = 6,
    digits: int | None = 18,
) -> Check:
    """A decimal: a ``Decimal`` from Python, or a string the published pattern matches whole;
    then the bounds, places and digits the schema states (pydantic's ``Field`` constraints)."""

    def check(value: Any) -> Decimal:
        try:
            rule.check(value)  # a Decimal, or a string of the pattern; never a JSON number
        except ValueError as err:
            raise _Reason(str(err)) from None
        d = value if isinstance(value, Decimal) else Decimal(value)
        if not d.is_finite():
            raise _Reason("Input should be a finite number")
        _sign, ds, exponent = d.normalize().as_tuple()
        assert isinstance(exponent, int)  # finite
        decimals = max(0, -exponent)
        if decimals > places:
            raise _Reason(f"Decimal input should have no more than {places} decimal places")
        total = len(ds) + exponent if exponent >= 0 else max(len(ds), decimals)
        if digits is not None and total > digits:
            raise _Reason(f"Decimal input should have no more than {digits} digits in total")
        if ge is not None and d < ge:
            raise _Reason(f"Input should be greater than or equal to {ge}")
        if gt is not None and d <= gt:
            raise _Reason(f"Input should be greater than {gt}")
        if lt is not None and d >= lt:
            raise _Reason(f"Input should be less than {lt}")
        return d

    return check


_price = _decimal(PRICE)
_non_negative_price = _decimal(NON_NEGATIVE_PRICE, ge=0)
_positive_quantity = _decimal(POSITIVE_QUANTITY, gt=0, digits=None)
_vat = _decimal(FRACTION_4, ge=0, lt=1, places=4, digits=None)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_INSTANT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _version(value: Any) -> int:
    """A JSON Schema integer (``2.0`` is one; ``"2"`` and ``true`` are not), at least 1."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str | bool):
        raise _Reason(f"{value!r} is not an integer (a JSON number)")
    if not isinstance(value, int):
        raise _Reason("Input should be a valid integer")
    if value < 1:
        raise _Reason("Input should be greater than or equal to 1")
    return value


def _date(value: Any) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError as err:
            raise _Reason(f"Input should be a valid date: {err}") from None
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise _Reason(f"the JSON number {value!r} is not an RFC 3339 full-date (YYYY-MM-DD) (a string)")
    raise _Reason(f"{str(value)[:40]!r} is not an RFC 3339 full-date (YYYY-MM-DD)")


def _instant(value: Any) -> datetime:
    if isinstance(value, str) and _INSTANT.fullmatch(value):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as err:
            raise _Reason(f"Input should be a valid datetime: {err}") from None
    elif isinstance(value, str) or (isinstance(value, int | float) and not isinstance(value, bool)):
        raise _Reason(
            f"{str(value)[:40]!r} is not an RFC 3339 date-time with its offset (e.g. 2026-08-10T00:00:00Z)"
        )
    if not isinstance(value, datetime):
        raise _Reason("Input should be a valid datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise _Reason("Input should have timezone info")
    return value


def _optional(check: Check) -> Check:
    return lambda value: None if value is None else check(value)


def _one_of(*choices: str) -> Check:
    def check(value: Any) -> str:
        if value not in choices or not isinstance(value, str):
            raise _Reason("Input should be " + " or ".join(repr(c) for c in choices))
        return value

    return check


def _each(check: Check, *, min_length: int = 0) -> Check:
    """A tuple of checked items (from a tuple or list)."""

    def each(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise _Reason("Input should be a valid array")
        if len(value) < min_length:
            raise _Reason(f"should have at least {min_length} item after validation, not {len(value)}")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(check(item))
            except InvalidTariff as err:
                raise _within(err, i) from None
            except _Reason as why:
                raise _bad((i,), str(why)) from None
        return tuple(out)

    return each


def _mapping(key: Check, check: Check, *, min_length: int = 0) -> Check:
    def mapping(value: Any) -> dict[Any, Any]:
        if not isinstance(value, Mapping):
            raise _Reason("Input should be a valid dictionary")
        if len(value) < min_length:
            raise _Reason(f"should have at least {min_length} item after validation, not {len(value)}")
        out = {}
        for k, v in value.items():
            try:
                out[key(k)] = check(v)
            except InvalidTariff as err:
                raise _within(err, k) from None
            except _Reason as why:
                raise _bad((k,), str(why)) from None
        return out

    return mapping


def _build(cls: type[Any], value: Any) -> Any:
    """An instance of the dataclass ``cls`` from a JSON object (or the instance itself)."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise _Reason(f"Input should be an object ({cls.__name__})")
    names = {f.name: f for f in fields(cls) if f.init}
    for k in value:
        if k not in names:
            raise _bad((str(k),), "Extra inputs are not permitted")
    for name, f in names.items():
        if name not in value and f.default is f.default_factory:  # both MISSING: required
            raise _bad((name,), "Field required")
    return cls(**value)


def _model(cls: type[Any]) -> Check:
    return lambda value: _build(cls, value)


def _tagged(*classes: type[Any]) -> Check:
    """One of ``classes``, chosen by the ``type`` tag (the JSON's discriminator)."""
    by_tag = {c.TAG: c for c in classes}

    def check(value: Any) -> Any:
        if isinstance(value, classes):
            return value
        if not isinstance(value, Mapping):
            raise _Reason("Input should be an object")
        tag = value.get("type")
        if tag is None:
            raise _Reason("Unable to extract tag using discriminator 'type'")
        if not isinstance(tag, str) or tag not in by_tag:
            expected = ", ".join(repr(t) for t in by_tag)
            raise _Reason(
                f"Input tag {tag!r} found using 'type' does not match any of the expected tags: {expected}"
            )
        try:
            return _build(by_tag[tag], value)
        except InvalidTariff as err:
            raise _within(err, tag) from None

    return check


def _tag(tag: str) -> Check:
    def check(value: Any) -> str:
        if value != tag:
            raise _Reason(f"Input should be {tag!r}")
        return tag

    return check


class _Schema:
    """``Annotated[T, _Schema(rule)]``: the pydantic constraints of ``rule``
    (:data:`smarthub.model.tariff_schema.RULES`), applied only when pydantic builds a schema
    from these classes (the GDSC's API); plain Python never looks at it."""

    def __init__(self, rule: str) -> None:
        self.rule = rule

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from smarthub.model.tariff_schema import RULES

        return handler.generate_schema(RULES[self.rule](source))

    def __repr__(self) -> str:
        return f"_Schema({self.rule!r})"


def _tag_required(schema: dict[str, Any]) -> None:
    """A pricing structure's ``type`` is its tag: a JSON document must carry it (the union is
    discriminated by it), so the schema says required, with no default (issue 22 item 1); only
    Python code constructing ``Flat(...)`` may leave it out."""
    props = schema.get("properties")
    tag = props.get("type") if isinstance(props, dict) else None
    if isinstance(tag, dict):
        tag.pop("default", None)
    required = schema.get("required")
    rest = [r for r in required if r != "type"] if isinstance(required, list) else []
    schema["required"] = ["type", *rest]


# pydantic's configuration of these classes, read only when it builds a schema from them
# (a ConfigDict is a plain dict).
_VALUE: dict[str, Any] = {"extra": "forbid"}
_PRICED: dict[str, Any] = {"extra": "forbid", "json_schema_extra": _tag_required}

# Up to 6 decimal places: p/kWh is quoted to 2-4 places; the cap keeps products exact. In JSON
# each is a decimal string whose pattern is the rule (`smarthub.model.decimals`).
Price = Annotated[Decimal, _Schema("price")]
NonNegativePrice = Annotated[Decimal, _Schema("non_negative_price")]
Name = Annotated[str, _Schema("name")]


def _json_value(value: Any) -> Any:
    """A field's JSON form: decimals as fixed-point strings, dates and UTC instants in RFC 3339."""
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _json_value(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Decimal):
        return fixed_point(value)
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value


def _aligned(t: datetime) -> bool:
    return t.timestamp() % SETTLEMENT_PERIOD.total_seconds() == 0


def _start_on_boundary(value: Any) -> datetime:
    v = _instant(value)
    if not _aligned(v):
        raise _Reason(f"series start {v.isoformat()} is not on a half-hour boundary")
    return v.astimezone(UTC)


@dataclass(frozen=True, kw_only=True)
class HalfHourlySeries:
    """One value per settlement period, contiguous from ``start`` (a UTC half-hour boundary)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _VALUE
    start: Annotated[datetime, _Schema("instant")]
    values: Annotated[tuple[Price, ...], _Schema("nonempty")]

    def __post_init__(self) -> None:
        _checked(self, start=_start_on_boundary, values=_each(_price, min_length=1))

    @property
    def end(self) -> datetime:
        return self.start + SETTLEMENT_PERIOD * len(self.values)

    def at(self, t: datetime) -> Decimal:
        """The value for the settlement period containing ``t``."""
        i = int((t - self.start) // SETTLEMENT_PERIOD)
        if t < self.start or i >= len(self.values):
            raise MissingPrice(
                f"no value for the settlement period at {t.astimezone(UTC).isoformat()}: "
                f"series covers {self.start.isoformat()} to {self.end.isoformat()}"
            )
        return self.values[i]


@dataclass(frozen=True, kw_only=True)
class Flat:
    """One unit rate at all times."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _PRICED
    TAG: ClassVar[str] = "flat"
    type: Literal["flat"] = "flat"
    unit_rate_p_per_kwh: NonNegativePrice

    def __post_init__(self) -> None:
        _checked(self, type=_tag(self.TAG), unit_rate_p_per_kwh=_non_negative_price)

    def rate_names(self) -> tuple[str, ...]:
        return ("unit rate",)


def _minutes(text: str) -> int:
    """``"HH:MM"`` local wall time to minutes after midnight; ``"24:00"`` is the day's end."""
    try:
        hh, mm = text.split(":")
        h, m = int(hh), int(mm)
    except ValueError:
        raise _Reason(f"{text!r} is not a time of day HH:MM") from None
    if len(hh) != 2 or len(mm) != 2 or not (0 <= h <= 24 and 0 <= m < 60) or (h == 24 and m):
        raise _Reason(f"{text!r} is not a time of day HH:MM")
    if m % 30:
        raise _Reason(f"{text!r} is not on a settlement-period boundary (HH:00 or HH:30)")
    return h * 60 + m


def _hhmm_on_half_hour(value: Any) -> str:
    _minutes(_text(value))
    return str(value)


def _hhmm(slot: int) -> str:
    return f"{slot // 2:02d}:{30 * (slot % 2):02d}"


@dataclass(frozen=True, kw_only=True)
class RatePeriod:
    """``rate`` applies from ``start`` to ``end`` (local wall time, end exclusive). An ``end`` at
    or before ``start`` runs past midnight (``"23:00"``-``"07:00"``); ``"24:00"`` is midnight."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _VALUE
    start: str
    end: str
    rate: Name

    def __post_init__(self) -> None:
        _checked(self, start=_hhmm_on_half_hour, end=_hhmm_on_half_hour, rate=_name)

    def slots(self) -> list[int]:
        s, e = _minutes(self.start) // 30, _minutes(self.end) // 30
        if e <= s:
            e += _SLOTS_PER_DAY
        return [i % _SLOTS_PER_DAY for i in range(s, e)]


def _cross(obj: object, reason: str) -> InvalidTariff:
    """A rule across fields, located at the object."""
    return _bad((), reason)


@dataclass(frozen=True, kw_only=True)
class TimeOfUse:
    """Rates by local time of day, with a schedule per day type (weekday, weekend, ...).

    ``week`` names the day type of each day of the week; bank holidays listed in
    ``bank_holidays`` take ``bank_holiday_day_type`` instead. Each day type's periods must
    cover the whole day exactly once.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = _PRICED
    TAG: ClassVar[str] = "time_of_use"
    type: Literal["time_of_use"] = "time_of_use"
    rates: Annotated[dict[Name, NonNegativePrice], _Schema("nonempty")]
    day_types: Annotated[dict[Name, tuple[RatePeriod, ...]], _Schema("nonempty")]
    week: dict[Weekday, Name]
    bank_holiday_day_type: Name | None = None
    bank_holidays: tuple[Annotated[date, _Schema("date")], ...] = ()
    # Derived in __post_init__ (not fields): each day type's rate per settlement period.
    _slots: ClassVar[dict[str, tuple[str, ...]]]
    _holidays: ClassVar[frozenset[date]]

    def __post_init__(self) -> None:
        _checked(
            self,
            type=_tag(self.TAG),
            rates=_mapping(_name, _non_negative_price, min_length=1),
            day_types=_mapping(_name, _each(_model(RatePeriod)), min_length=1),
            week=_mapping(_one_of(*WEEKDAYS), _name),
            bank_holiday_day_type=_optional(_name),
            bank_holidays=_each(_date),
        )
        missing = [d for d in WEEKDAYS if d not in self.week]
        if missing:
            raise _cross(self, f"week: no day type for {', '.join(missing)}")
        used = set(self.week.values())
        if self.bank_holiday_day_type is not None:
            used.add(self.bank_holiday_day_type)
        elif self.bank_holidays:
            raise _cross(self, "bank_holidays listed but no bank_holiday_day_type given")
        for name in sorted(used - set(self.day_types)):
            raise _cross(self, f"day type {name!r} is used but not defined in day_types")
        slots = {}
        for day_type, periods in self.day_types.items():
            owner: list[str | None] = [None] * _SLOTS_PER_DAY
            for p in periods:
                if p.rate not in self.rates:
                    raise _cross(self, f"day type {day_type!r}: rate {p.rate!r} is not in rates")
                for s in p.slots():
                    if owner[s] is not None:
                        raise _cross(
                            self,
                            f"day type {day_type!r}: periods overlap at {_hhmm(s)}-{_hhmm(s + 1)} "
                            f"({owner[s]!r} and {p.rate!r})",
                        )
                    owner[s] = p.rate
            gaps = [s for s, r in enumerate(owner) if r is None]
            if gaps:
                raise _cross(
                    self,
                    f"day type {day_type!r}: periods do not cover "
                    + ", ".join(f"{_hhmm(s)}-{_hhmm(s + 1)}" for s in gaps),
                )
            slots[day_type] = tuple(r for r in owner if r is not None)
        object.__setattr__(self, "_slots", slots)
        object.__setattr__(self, "_holidays", frozenset(self.bank_holidays))

    def day_type(self, day: date) -> str:
        if day in self._holidays and self.bank_holiday_day_type is not None:
            return self.bank_holiday_day_type
        return self.week[WEEKDAYS[day.weekday()]]

    def rate_at(self, t: datetime) -> str:
        """The rate name at instant ``t``, read from the local wall clock (so the repeated
        hour of the autumn change is charged by its wall time, twice)."""
        local = t.astimezone(LONDON)
        return self._slots[self.day_type(local.date())][local.hour * 2 + local.minute // 30]

    def rate_names(self) -> tuple[str, ...]:
        return tuple(self.rates)


@dataclass(frozen=True, kw_only=True)
class Tier:
    __pydantic_config__: ClassVar[dict[str, Any]] = _VALUE
    name: Name
    up_to_kwh: Annotated[Decimal, _Schema("positive_quantity")] | None
    unit_rate_p_per_kwh: NonNegativePrice

    def __post_init__(self) -> None:
        _checked(
            self,
            name=_name,
            up_to_kwh=_optional(_positive_quantity),
            unit_rate_p_per_kwh=_non_negative_price,
        )


@dataclass(frozen=True, kw_only=True)
class Tiered:
    """Block pricing: the first ``up_to_kwh`` of each block period at the first tier's rate, and
    so on; the last tier is unbounded (``up_to_kwh: null``). ``block`` is the period whose
    consumption is tiered: each local ``day``, or the whole ``billing_period`` being billed (so a
    bill for a week has one block, a bill for a month another)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _PRICED
    TAG: ClassVar[str] = "tiered"
    type: Literal["tiered"] = "tiered"
    block: Literal["day", "billing_period"]
    tiers: Annotated[tuple[Tier, ...], _Schema("nonempty")]

    def __post_init__(self) -> None:
        _checked(
            self,
            type=_tag(self.TAG),
            block=_one_of("day", "billing_period"),
            tiers=_each(_model(Tier), min_length=1),
        )
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise _cross(self, f"tier names repeat: {names}")
        *bounded, last = self.tiers
        if last.up_to_kwh is not None:
            raise _cross(self, f"the last tier ({last.name!r}) must be unbounded (up_to_kwh null)")
        bounds = [t.up_to_kwh for t in bounded]
        if any(b is None for b in bounds):
            raise _cross(self, "only the last tier may be unbounded")
        if any(a >= b for a, b in itertools.pairwise(bounds)):  # type: ignore[operator]
            raise _cross(self, f"tier bounds must increase: {[str(b) for b in bounds]}")

    def split(self, kwh: Decimal) -> list[tuple[Tier, Decimal]]:
        """``kwh`` consumed in one block, shared out over the tiers (exact)."""
        out, floor = [], Decimal(0)
        for tier in self.tiers:
            top = tier.up_to_kwh
            part = kwh - floor if top is None else min(max(kwh - floor, Decimal(0)), top - floor)
            out.append((tier, max(part, Decimal(0))))
            if top is not None:
                floor = top
        return out

    def rate_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tiers)


@dataclass(frozen=True, kw_only=True)
class Dynamic:
    """A price per settlement period (e.g. day-ahead wholesale-linked), published as a series;
    prices may be negative. A period outside the series cannot be priced (`MissingPrice`)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _PRICED
    TAG: ClassVar[str] = "dynamic"
    type: Literal["dynamic"] = "dynamic"
    unit_rates_p_per_kwh: HalfHourlySeries

    def __post_init__(self) -> None:
        _checked(self, type=_tag(self.TAG), unit_rates_p_per_kwh=_model(HalfHourlySeries))

    def rate_names(self) -> tuple[str, ...]:
        return ("half-hourly",)


Pricing = Annotated[Flat | TimeOfUse | Tiered | Dynamic, _Schema("tagged")]
_pricing = _tagged(Flat, TimeOfUse, Tiered, Dynamic)


@dataclass(frozen=True, kw_only=True)
class Tariff:
    """One version of a tariff, in force from local midnight of ``effective_from``."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _VALUE
    tariff_id: Name
    version: Annotated[int, _Schema("version")]
    effective_from: Annotated[date, _Schema("date")]
    name: str = ""
    standing_charge_p_per_day: NonNegativePrice
    vat_rate: Annotated[Decimal, _Schema("vat_rate")] = Decimal("0.05")
    pricing: Pricing

    def __post_init__(self) -> None:
        _checked(
            self,
            tariff_id=_name,
            version=_version,
            effective_from=_date,
            name=_text,
            standing_charge_p_per_day=_non_negative_price,
            vat_rate=_vat,
            pricing=_pricing,
        )

    @property
    def ref(self) -> TariffRef:
        return TariffRef(self.tariff_id, self.version)

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON form as Python values (decimals as strings)."""
        out: dict[str, Any] = _json_value(self)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_json_dict(), separators=(",", ":"), ensure_ascii=False)


class TariffSchedule:
    """The versions of one tariff; the version in force on a day is the highest-numbered one
    that has taken effect by then.

    Versions share one ``tariff_id`` and a later version never takes effect before an earlier
    one. A later version with the *same* effective date re-issues it (a correction, or a dynamic
    tariff's series extended with newly published prices) and supersedes it from that day.
    """

    def __init__(self, versions: Iterable[Tariff]) -> None:
        vs = sorted(versions, key=lambda t: t.version)
        if not vs:
            raise InvalidTariff("a tariff schedule needs at least one version")
        ids = {t.tariff_id for t in vs}
        if len(ids) != 1:
            raise InvalidTariff(f"a schedule is one tariff; got ids {sorted(ids)}")
        for a, b in itertools.pairwise(vs):
            if a.version == b.version:
                raise InvalidTariff(f"version {a.version} of {a.tariff_id!r} given twice")
            if b.effective_from < a.effective_from:
                raise InvalidTariff(
                    f"version {b.version} takes effect {b.effective_from}, before version "
                    f"{a.version} ({a.effective_from})"
                )
        self.versions: tuple[Tariff, ...] = tuple(vs)
        self._by_ref = {t.ref: t for t in vs}

    @property
    def tariff_id(self) -> str:
        return self.versions[0].tariff_id

    def in_force(self, day: date) -> Tariff:
        for t in reversed(self.versions):
            if t.effective_from <= day:
                return t
        raise NoTariffInForce(
            f"tariff {self.tariff_id!r} has no version in force on {day} "
            f"(first takes effect {self.versions[0].effective_from})"
        )

    def version(self, ref: TariffRef) -> Tariff:
        return self._by_ref[ref]

    def with_version(self, tariff: Tariff) -> TariffSchedule:
        """This schedule plus a newly distributed version (a re-sent identical one is a no-op)."""
        known = self._by_ref.get(tariff.ref)
        if known is not None:
            if known != tariff:
                raise InvalidTariff(f"version {tariff.version} of {tariff.tariff_id!r} already differs")
            return self
        return TariffSchedule([*self.versions, tariff])

    def to_json(self) -> str:
        return json.dumps(
            [t.to_json_dict() for t in self.versions], separators=(",", ":"), ensure_ascii=False
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TariffSchedule) and self.versions == other.versions

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TariffSchedule({self.tariff_id!r}, versions={[t.version for t in self.versions]})"


def _json(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError) as err:  # JSONDecodeError, or bytes that are not UTF-8
        raise _bad((), f"Invalid JSON: {err}") from None


def tariff_from_json(text: str | bytes) -> Tariff:
    try:
        return _build(Tariff, _json(text))  # type: ignore[no-any-return]
    except _Reason as why:
        raise _bad((), str(why)) from None


def schedule_from_json(text: str | bytes) -> TariffSchedule:
    try:
        versions = _each(_model(Tariff))(_json(text))
    except _Reason as why:
        raise _bad((), str(why)) from None
    return TariffSchedule(versions)


def make_tariff(**fields: object) -> Tariff:
    """Construct a `Tariff` from Python (or JSON) values; an `InvalidTariff` names the field."""
    try:
        return _build(Tariff, fields)  # type: ignore[no-any-return]
    except _Reason as why:
        raise _bad((), str(why)) from None


__all__: Sequence[str] = (
    "LONDON",
    "SETTLEMENT_PERIOD",
    "Dynamic",
    "Flat",
    "HalfHourlySeries",
    "InvalidTariff",
    "MissingPrice",
    "NoTariffInForce",
    "RatePeriod",
    "Tariff",
    "TariffError",
    "TariffRef",
    "TariffSchedule",
    "Tier",
    "Tiered",
    "TimeOfUse",
    "schedule_from_json",
    "tariff_from_json",
)
