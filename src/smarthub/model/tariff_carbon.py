"""Carbon intensity of supplied electricity, in grams of CO2 per kWh.

Either a fixed factor (a supplier's fuel-mix disclosure, or a national average) or a
half-hourly series (e.g. the GB grid's regional forecast per settlement period).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from smarthub.model.tariff import HalfHourlySeries, InvalidTariff, MissingPrice, NonNegativePrice


class FixedIntensity(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["fixed"] = "fixed"
    g_per_kwh: NonNegativePrice

    def at(self, t: datetime) -> Decimal:
        return self.g_per_kwh


class SeriesIntensity(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["series"] = "series"
    g_per_kwh: HalfHourlySeries

    @field_validator("g_per_kwh")
    @classmethod
    def _not_negative(cls, v: HalfHourlySeries) -> HalfHourlySeries:
        for i, g in enumerate(v.values):
            if g < 0:
                raise ValueError(f"carbon intensity {g} g/kWh at period {i} is negative")
        return v

    def at(self, t: datetime) -> Decimal:
        try:
            return self.g_per_kwh.at(t)
        except MissingPrice as e:
            raise MissingPrice(f"carbon intensity: {e}") from None


CarbonIntensity = Annotated[FixedIntensity | SeriesIntensity, Field(discriminator="type")]
_ADAPTER: TypeAdapter[FixedIntensity | SeriesIntensity] = TypeAdapter(CarbonIntensity)


def carbon_from_json(text: str | bytes) -> FixedIntensity | SeriesIntensity:
    try:
        return _ADAPTER.validate_json(text)
    except ValidationError as e:
        raise InvalidTariff(f"invalid carbon intensity: {e}") from None


def carbon_to_json(carbon: FixedIntensity | SeriesIntensity) -> str:
    return carbon.model_dump_json()
