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

The JSON form is what the GDSC distributes through the pull channel. It is the pydantic
model's own serialisation: decimals as strings (never floats), unknown fields refused, and a
`ValidationError` naming the field for anything invalid (a `ValueError`; `tariff_from_json`
re-raises it as `InvalidTariff`). pydantic is used rather than a hand-written validator
because it gives located error messages and strict field checking for free.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Literal, NamedTuple
from zoneinfo import ZoneInfo

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict

from smarthub.model.decimals import (
    DATE_TEXT,
    FRACTION_4,
    INSTANT_TEXT,
    JSON_INTEGER,
    NON_NEGATIVE_PRICE,
    POSITIVE_QUANTITY,
    PRICE,
)

LONDON = ZoneInfo("Europe/London")
SETTLEMENT_PERIOD = timedelta(minutes=30)
_SLOTS_PER_DAY = 48
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class TariffError(ValueError):
    """A tariff cannot price what it was asked to price."""


class InvalidTariff(TariffError):
    """A tariff (or its JSON) is not a valid tariff."""


class MissingPrice(TariffError):
    """A half-hourly series has no value for the settlement period asked for."""


class NoTariffInForce(TariffError):
    """No version of the tariff is in force on the day asked for."""


class TariffRef(NamedTuple):
    tariff_id: str
    version: int


# Up to 6 decimal places: p/kWh is quoted to 2-4 places; the cap keeps products exact. In JSON
# each is a decimal string whose pattern is the rule (`smarthub.model.decimals`).
Price = Annotated[Decimal, Field(allow_inf_nan=False, decimal_places=6, max_digits=18), PRICE]
NonNegativePrice = Annotated[
    Decimal, Field(ge=0, allow_inf_nan=False, decimal_places=6, max_digits=18), NON_NEGATIVE_PRICE
]
Name = Annotated[str, Field(min_length=1, max_length=64)]


class _Value(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _tag_required(schema: JsonDict) -> None:
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


class _Priced(_Value):
    """A pricing structure: one member of the ``Pricing`` union, tagged by ``type``."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_tag_required)


def _aligned(t: datetime) -> bool:
    return t.timestamp() % SETTLEMENT_PERIOD.total_seconds() == 0


class HalfHourlySeries(_Value):
    """One value per settlement period, contiguous from ``start`` (a UTC half-hour boundary)."""

    start: Annotated[AwareDatetime, INSTANT_TEXT]
    values: tuple[Price, ...] = Field(min_length=1)

    @field_validator("start")
    @classmethod
    def _start_on_boundary(cls, v: datetime) -> datetime:
        if not _aligned(v):
            raise ValueError(f"series start {v.isoformat()} is not on a half-hour boundary")
        return v.astimezone(UTC)

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


class Flat(_Priced):
    """One unit rate at all times."""

    type: Literal["flat"] = "flat"
    unit_rate_p_per_kwh: NonNegativePrice

    def rate_names(self) -> tuple[str, ...]:
        return ("unit rate",)


def _minutes(text: str) -> int:
    """``"HH:MM"`` local wall time to minutes after midnight; ``"24:00"`` is the day's end."""
    try:
        hh, mm = text.split(":")
        h, m = int(hh), int(mm)
    except ValueError:
        raise ValueError(f"{text!r} is not a time of day HH:MM") from None
    if len(hh) != 2 or len(mm) != 2 or not (0 <= h <= 24 and 0 <= m < 60) or (h == 24 and m):
        raise ValueError(f"{text!r} is not a time of day HH:MM")
    if m % 30:
        raise ValueError(f"{text!r} is not on a settlement-period boundary (HH:00 or HH:30)")
    return h * 60 + m


def _hhmm(slot: int) -> str:
    return f"{slot // 2:02d}:{30 * (slot % 2):02d}"


class RatePeriod(_Value):
    """``rate`` applies from ``start`` to ``end`` (local wall time, end exclusive). An ``end`` at
    or before ``start`` runs past midnight (``"23:00"``-``"07:00"``); ``"24:00"`` is midnight."""

    start: str
    end: str
    rate: Name

    @field_validator("start", "end")
    @classmethod
    def _hhmm_on_half_hour(cls, v: str) -> str:
        _minutes(v)
        return v

    def slots(self) -> list[int]:
        s, e = _minutes(self.start) // 30, _minutes(self.end) // 30
        if e <= s:
            e += _SLOTS_PER_DAY
        return [i % _SLOTS_PER_DAY for i in range(s, e)]


class TimeOfUse(_Priced):
    """Rates by local time of day, with a schedule per day type (weekday, weekend, ...).

    ``week`` names the day type of each day of the week; bank holidays listed in
    ``bank_holidays`` take ``bank_holiday_day_type`` instead. Each day type's periods must
    cover the whole day exactly once.
    """

    type: Literal["time_of_use"] = "time_of_use"
    rates: dict[Name, NonNegativePrice] = Field(min_length=1)
    day_types: dict[Name, tuple[RatePeriod, ...]] = Field(min_length=1)
    week: dict[Weekday, Name]
    bank_holiday_day_type: Name | None = None
    bank_holidays: tuple[Annotated[date, DATE_TEXT], ...] = ()
    _slots: dict[str, tuple[str, ...]] = PrivateAttr(default_factory=dict)
    _holidays: frozenset[date] = PrivateAttr(default=frozenset())

    @model_validator(mode="after")
    def _check(self) -> TimeOfUse:
        missing = [d for d in WEEKDAYS if d not in self.week]
        if missing:
            raise ValueError(f"week: no day type for {', '.join(missing)}")
        used = set(self.week.values())
        if self.bank_holiday_day_type is not None:
            used.add(self.bank_holiday_day_type)
        elif self.bank_holidays:
            raise ValueError("bank_holidays listed but no bank_holiday_day_type given")
        for name in sorted(used - set(self.day_types)):
            raise ValueError(f"day type {name!r} is used but not defined in day_types")
        for day_type, periods in self.day_types.items():
            owner: list[str | None] = [None] * _SLOTS_PER_DAY
            for p in periods:
                if p.rate not in self.rates:
                    raise ValueError(f"day type {day_type!r}: rate {p.rate!r} is not in rates")
                for s in p.slots():
                    if owner[s] is not None:
                        raise ValueError(
                            f"day type {day_type!r}: periods overlap at {_hhmm(s)}-{_hhmm(s + 1)} "
                            f"({owner[s]!r} and {p.rate!r})"
                        )
                    owner[s] = p.rate
            gaps = [s for s, r in enumerate(owner) if r is None]
            if gaps:
                raise ValueError(
                    f"day type {day_type!r}: periods do not cover "
                    + ", ".join(f"{_hhmm(s)}-{_hhmm(s + 1)}" for s in gaps)
                )
            self._slots[day_type] = tuple(r for r in owner if r is not None)
        self._holidays = frozenset(self.bank_holidays)
        return self

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


class Tier(_Value):
    name: Name
    up_to_kwh: (
        Annotated[Decimal, Field(gt=0, allow_inf_nan=False, decimal_places=6), POSITIVE_QUANTITY] | None
    )
    unit_rate_p_per_kwh: NonNegativePrice


class Tiered(_Priced):
    """Block pricing: the first ``up_to_kwh`` of each block period at the first tier's rate, and
    so on; the last tier is unbounded (``up_to_kwh: null``). ``block`` is the period whose
    consumption is tiered: each local ``day``, or the whole ``billing_period`` being billed (so a
    bill for a week has one block, a bill for a month another)."""

    type: Literal["tiered"] = "tiered"
    block: Literal["day", "billing_period"]
    tiers: tuple[Tier, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Tiered:
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"tier names repeat: {names}")
        *bounded, last = self.tiers
        if last.up_to_kwh is not None:
            raise ValueError(f"the last tier ({last.name!r}) must be unbounded (up_to_kwh null)")
        bounds = [t.up_to_kwh for t in bounded]
        if any(b is None for b in bounds):
            raise ValueError("only the last tier may be unbounded")
        if any(a >= b for a, b in itertools.pairwise(bounds)):  # type: ignore[operator]
            raise ValueError(f"tier bounds must increase: {[str(b) for b in bounds]}")
        return self

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


class Dynamic(_Priced):
    """A price per settlement period (e.g. day-ahead wholesale-linked), published as a series;
    prices may be negative. A period outside the series cannot be priced (`MissingPrice`)."""

    type: Literal["dynamic"] = "dynamic"
    unit_rates_p_per_kwh: HalfHourlySeries

    def rate_names(self) -> tuple[str, ...]:
        return ("half-hourly",)


Pricing = Annotated[Flat | TimeOfUse | Tiered | Dynamic, Field(discriminator="type")]


class Tariff(_Value):
    """One version of a tariff, in force from local midnight of ``effective_from``."""

    tariff_id: Name
    version: Annotated[int, JSON_INTEGER] = Field(ge=1)
    effective_from: Annotated[date, DATE_TEXT]
    name: str = ""
    standing_charge_p_per_day: NonNegativePrice
    vat_rate: Annotated[Decimal, Field(ge=0, lt=1, decimal_places=4), FRACTION_4] = Decimal("0.05")
    pricing: Pricing

    @property
    def ref(self) -> TariffRef:
        return TariffRef(self.tariff_id, self.version)

    def to_json(self) -> str:
        return self.model_dump_json()


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
        return _SCHEDULE.dump_json(list(self.versions)).decode()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TariffSchedule) and self.versions == other.versions

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TariffSchedule({self.tariff_id!r}, versions={[t.version for t in self.versions]})"


_SCHEDULE = TypeAdapter(list[Tariff])


def _invalid(e: ValidationError) -> InvalidTariff:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return InvalidTariff("invalid tariff: " + "; ".join(parts))


def tariff_from_json(text: str | bytes) -> Tariff:
    try:
        return Tariff.model_validate_json(text)
    except ValidationError as e:
        raise _invalid(e) from None


def schedule_from_json(text: str | bytes) -> TariffSchedule:
    try:
        return TariffSchedule(_SCHEDULE.validate_json(text))
    except ValidationError as e:
        raise _invalid(e) from None


def make_tariff(**fields: object) -> Tariff:
    """Construct a `Tariff` from Python values, raising `InvalidTariff` rather than pydantic's error."""
    try:
        return Tariff.model_validate(fields)
    except ValidationError as e:
        raise _invalid(e) from None


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
