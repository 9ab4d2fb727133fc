"""OBIS code ↔ IEEE 2030.5 ReadingType (IEC 61968-9 enumerations, 2030.5-2018 §E Metering).

The hub publishes each channel as a MeterReading whose ReadingType says what the values
are; the GDSC maps the ReadingType back to the OBIS code. Keeping the table here, in the
model, means both ends use the same one.
"""

from __future__ import annotations

from dataclasses import dataclass

from smarthub.model.obis import (
    EXPORT_ACTIVE_ENERGY,
    EXPORT_ACTIVE_POWER,
    GAS_VOLUME,
    HEAT_ENERGY,
    IMPORT_ACTIVE_ENERGY,
    IMPORT_ACTIVE_POWER,
    WATER_VOLUME,
    ObisCode,
)
from smarthub.model.reading import Unit

# IEC 61968-9 / 2030.5 enumeration values used below.
COMMODITY_ELECTRICITY = 1  # electricity secondary metered value
COMMODITY_NATURAL_GAS = 7
COMMODITY_POTABLE_WATER = 9
COMMODITY_HEATING_FLUID = 12
KIND_ENERGY = 12
KIND_POWER = 37
KIND_NOT_APPLICABLE = 0
FLOW_FORWARD = 1  # delivered to the customer
FLOW_REVERSE = 19  # received from the customer
UOM_WH = 72
UOM_W = 38
UOM_M3 = 42
ACCUMULATION_DELTA = 4
ACCUMULATION_CUMULATIVE = 3
ACCUMULATION_INSTANTANEOUS = 12


@dataclass(frozen=True, slots=True)
class ReadingTypeSpec:
    """What a 2030.5 ReadingType carries for one channel."""

    commodity: int
    kind: int
    flow_direction: int
    uom: int
    power_of_ten: int
    base_unit: Unit
    service_kind: int  # UsagePoint.serviceCategoryKind: 0 electricity, 1 gas, 2 water


# Interval (delta) channels: the register's advance over each interval.
_INTERVAL: dict[ObisCode, ReadingTypeSpec] = {
    IMPORT_ACTIVE_ENERGY: ReadingTypeSpec(
        COMMODITY_ELECTRICITY, KIND_ENERGY, FLOW_FORWARD, UOM_WH, 0, Unit.WH, 0
    ),
    EXPORT_ACTIVE_ENERGY: ReadingTypeSpec(
        COMMODITY_ELECTRICITY, KIND_ENERGY, FLOW_REVERSE, UOM_WH, 0, Unit.WH, 0
    ),
    # Gas and water volumes in litres (m3 × 10^-3): the register resolution of DSMR and M-Bus meters.
    GAS_VOLUME: ReadingTypeSpec(
        COMMODITY_NATURAL_GAS, KIND_NOT_APPLICABLE, FLOW_FORWARD, UOM_M3, -3, Unit.M3, 1
    ),
    WATER_VOLUME: ReadingTypeSpec(
        COMMODITY_POTABLE_WATER, KIND_NOT_APPLICABLE, FLOW_FORWARD, UOM_M3, -3, Unit.M3, 2
    ),
    HEAT_ENERGY: ReadingTypeSpec(COMMODITY_HEATING_FLUID, KIND_ENERGY, FLOW_FORWARD, UOM_WH, 0, Unit.WH, 5),
}

_INSTANT: dict[ObisCode, ReadingTypeSpec] = {
    IMPORT_ACTIVE_POWER: ReadingTypeSpec(
        COMMODITY_ELECTRICITY, KIND_POWER, FLOW_FORWARD, UOM_W, 0, Unit.W, 0
    ),
    EXPORT_ACTIVE_POWER: ReadingTypeSpec(
        COMMODITY_ELECTRICITY, KIND_POWER, FLOW_REVERSE, UOM_W, 0, Unit.W, 0
    ),
}


def interval_channels() -> frozenset[ObisCode]:
    """The registers a hub turns into half-hourly interval readings."""
    return frozenset(_INTERVAL)


def interval_spec(obis: ObisCode) -> ReadingTypeSpec:
    try:
        return _INTERVAL[obis]
    except KeyError:
        raise KeyError(f"no interval ReadingType for OBIS {obis}") from None


def instant_spec(obis: ObisCode) -> ReadingTypeSpec:
    try:
        return _INSTANT[obis]
    except KeyError:
        raise KeyError(f"no instantaneous ReadingType for OBIS {obis}") from None


def obis_for_interval(commodity: int, flow_direction: int, uom: int) -> ObisCode:
    """Inverse of :func:`interval_spec`, for the GDSC reading a hub's ReadingType."""
    for obis, spec in _INTERVAL.items():
        if (spec.commodity, spec.flow_direction, spec.uom) == (commodity, flow_direction, uom):
            return obis
    raise KeyError(f"no OBIS code for ReadingType commodity={commodity} flow={flow_direction} uom={uom}")
