"""Carbon intensity of supplied electricity, in grams of CO2 per kWh.

Either a fixed factor (a supplier's fuel-mix disclosure, or a national average) or a
half-hourly series (e.g. the GB grid's regional forecast per settlement period). Plain
dataclasses checked on construction, as the tariff model (:mod:`smarthub.model.tariff`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from smarthub.model.tariff import (
    _VALUE,
    HalfHourlySeries,
    InvalidTariff,
    MissingPrice,
    NonNegativePrice,
    _checked,
    _json,
    _json_value,
    _model,
    _non_negative_price,
    _Reason,
    _Schema,
    _tag,
    _tagged,
)


@dataclass(frozen=True, kw_only=True)
class FixedIntensity:
    __pydantic_config__: ClassVar[dict[str, Any]] = _VALUE
    TAG: ClassVar[str] = "fixed"
    type: Literal["fixed"] = "fixed"
    g_per_kwh: NonNegativePrice

    def __post_init__(self) -> None:
        _checked(self, type=_tag(self.TAG), g_per_kwh=_non_negative_price)

    def at(self, t: datetime) -> Decimal:
        return self.g_per_kwh


def _not_negative(value: Any) -> HalfHourlySeries:
    series: HalfHourlySeries = _model(HalfHourlySeries)(value)
    for i, g in enumerate(series.values):
        if g < 0:
            raise _Reason(f"carbon intensity {g} g/kWh at period {i} is negative")
    return series


@dataclass(frozen=True, kw_only=True)
class SeriesIntensity:
    __pydantic_config__: ClassVar[dict[str, Any]] = _VALUE
    TAG: ClassVar[str] = "series"
    type: Literal["series"] = "series"
    g_per_kwh: HalfHourlySeries

    def __post_init__(self) -> None:
        _checked(self, type=_tag(self.TAG), g_per_kwh=_not_negative)

    def at(self, t: datetime) -> Decimal:
        try:
            return self.g_per_kwh.at(t)
        except MissingPrice as e:
            raise MissingPrice(f"carbon intensity: {e}") from None


CarbonIntensity = Annotated[FixedIntensity | SeriesIntensity, _Schema("tagged")]
_carbon = _tagged(FixedIntensity, SeriesIntensity)


def carbon_from_json(text: str | bytes) -> FixedIntensity | SeriesIntensity:
    try:
        carbon: FixedIntensity | SeriesIntensity = _carbon(_json(text))
    except InvalidTariff as e:
        raise InvalidTariff(
            f"invalid carbon intensity: {str(e).removeprefix('invalid tariff: ')}", loc=e.loc, reason=e.reason
        ) from None
    except _Reason as why:
        raise InvalidTariff(f"invalid carbon intensity: {why}", reason=str(why)) from None
    return carbon


def carbon_to_json(carbon: FixedIntensity | SeriesIntensity) -> str:
    import json

    return json.dumps(_json_value(carbon), separators=(",", ":"))
