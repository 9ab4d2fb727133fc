"""OBIS code ↔ IEEE 2030.5 ReadingType (IEC 61968-9 enumerations, 2030.5-2018 §E Metering).

The hub publishes each channel as a MeterReading whose ReadingType says what the values
are; the GDSC maps the ReadingType back to the OBIS code. Keeping the table here, in the
model, means both ends use the same one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from smarthub.model.obis import (
    EXPORT_ACTIVE_ENERGY,
    EXPORT_ACTIVE_POWER,
    GAS_VOLUME,
    HCA_UNITS,
    HEAT_ENERGY,
    HOT_WATER_VOLUME,
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
UOM_V = 29
UOM_NONE = 0  # a count
ACCUMULATION_DELTA = 4
ACCUMULATION_CUMULATIVE = 3
ACCUMULATION_INSTANTANEOUS = 12
# 2030.5 AccumulationBehaviourType 9, IEC 61968-9 "summation": a register's cumulative value at
# an instant (the meter's summation register, as ZigBee SE's CurrentSummationDelivered).
ACCUMULATION_SUMMATION = 9
# A channel's daily register reads are published as a MeterReading of their own, named by the
# channel's OBIS code with value group F = 126, which IEC 62056-61 reserves for "an unspecified
# number of most recent values" of a register (its historical values; F 255 is the current one).
REGISTER_HISTORY_F = 126


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
    phase: int = 0  # ReadingType.phase (IEC 61968-9 PhaseCode); 0: not applicable
    data_qualifier: int = 0  # ReadingType.dataQualifier: 2 average, 8 maximum, 9 minimum
    accumulation: int = ACCUMULATION_DELTA  # ReadingType.accumulationBehaviour


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
    # A building's sub-meters (issue 21): the housing provider bills from them, so they travel
    # to the GDSC like any reading. 2030.5's CommodityType (§E, IEC 61968-9) has no heat-cost
    # allocator and no hot water: allocator units are the heating fluid's dimensionless count
    # (uom 0), and hot water (OBIS medium 9) the heating fluid's volume in m³, the volume of water
    # the building's boiler heated — kept apart from cold (potable, commodity 9) by the commodity.
    # Each ReadingType stays unique, so the GDSC maps it back to one OBIS code.
    HCA_UNITS: ReadingTypeSpec(
        COMMODITY_HEATING_FLUID, KIND_NOT_APPLICABLE, FLOW_FORWARD, UOM_NONE, 0, Unit.NONE, 5
    ),
    HOT_WATER_VOLUME: ReadingTypeSpec(
        COMMODITY_HEATING_FLUID, KIND_NOT_APPLICABLE, FLOW_FORWARD, UOM_M3, -3, Unit.M3, 2
    ),
}

_INSTANT: dict[ObisCode, ReadingTypeSpec] = {
    IMPORT_ACTIVE_POWER: ReadingTypeSpec(
        COMMODITY_ELECTRICITY, KIND_POWER, FLOW_FORWARD, UOM_W, 0, Unit.W, 0
    ),
    EXPORT_ACTIVE_POWER: ReadingTypeSpec(
        COMMODITY_ELECTRICITY, KIND_POWER, FLOW_REVERSE, UOM_W, 0, Unit.W, 0
    ),
}


# Power quality (issue 19): what a hub summarises from its meters' phase voltages over each
# 10-minute period (EN 50160's aggregation), and the meters' voltage sag and swell counters as
# counts per period. OBIS value group D as IEC 62056-61 numbers the processing: 3 minimum,
# 5 last average, 6 maximum (of the period just ended), 32 under-limit (sag) and 36 over-limit
# (swell) occurrence counters; C 32/52/72 is L1/L2/L3. 2030.5 allows ReadingType kinds 0, 3, 8,
# 12 and 37 and dataQualifiers 0, 2, 8, 9, 12, 29, 30 only, so these are kind 0 and told apart
# by uom (29 V, 0 a count), phase (PhaseCode AN 129, BN 65, CN 33) and dataQualifier: 2 average,
# 9 minimum, 8 maximum of the voltage; on a count, 9 the excursions below the minimum limit (sags)
# and 8 those above the maximum (swells).
QUALIFIER_AVERAGE, QUALIFIER_MAXIMUM, QUALIFIER_MINIMUM = 2, 8, 9
PHASES = {32: 129, 52: 65, 72: 33}  # OBIS C of a phase voltage -> PhaseCode
QUALITY_PERIOD = 600  # seconds: EN 50160's 10-minute values

_QUALITY: dict[ObisCode, ReadingTypeSpec] = {}
for _c, _phase in PHASES.items():
    for _d, _q in ((5, QUALIFIER_AVERAGE), (3, QUALIFIER_MINIMUM), (6, QUALIFIER_MAXIMUM)):
        _QUALITY[ObisCode(1, 0, _c, _d, 0)] = ReadingTypeSpec(
            COMMODITY_ELECTRICITY, KIND_NOT_APPLICABLE, 0, UOM_V, -1, Unit.V, 0, _phase, _q,
            ACCUMULATION_INSTANTANEOUS,
        )  # fmt: skip
    for _d, _q in ((32, QUALIFIER_MINIMUM), (36, QUALIFIER_MAXIMUM)):
        _QUALITY[ObisCode(1, 0, _c, _d, 0)] = ReadingTypeSpec(
            COMMODITY_ELECTRICITY, KIND_NOT_APPLICABLE, 0, UOM_NONE, 0, Unit.NONE, 0, _phase, _q
        )

# Power failures in any phase (issue 19): the meter's counters of short (0-0:96.7.21) and long
# (0-0:96.7.9, over 3 minutes, EN 50160 §3.12) failures as counts per period, and its failure
# log's long failures as their duration (0-0:96.7.19, the object the log captures) summed over
# the period in which each ended. Phase 0 (not applicable: "in any phase" names none), uom 0
# (2030.5's UomType, the ESPI list, has no unit of time, so the seconds are a dimensionless
# number as the counts are, said by the OBIS code and this table), told apart by dataQualifier
# as the sag and swell counts are: 9 the failures under the 3-minute threshold (short), 8 those
# over it (long), 0 (not applicable) the logged failures' seconds.
SHORT_FAILURES = ObisCode(0, 0, 96, 7, 21)
LONG_FAILURES = ObisCode(0, 0, 96, 7, 9)
FAILURE_SECONDS = ObisCode(0, 0, 96, 7, 19)
for _obis, _q, _unit in (
    (SHORT_FAILURES, QUALIFIER_MINIMUM, Unit.NONE),
    (LONG_FAILURES, QUALIFIER_MAXIMUM, Unit.NONE),
    (FAILURE_SECONDS, 0, Unit.S),
):
    _QUALITY[_obis] = ReadingTypeSpec(
        COMMODITY_ELECTRICITY, KIND_NOT_APPLICABLE, 0, UOM_NONE, 0, _unit, 0, 0, _q
    )


# Appliance runs (issue 25, heating short-cycling): per half-hour, the number of times a smart
# plug's appliance started (its demand rose above the run threshold, ``hub.appliance_runs``) and
# the seconds it ran, from the plug's InstantaneousDemand as the hub reads it. No standard OBIS
# object counts an appliance's starts, so the codes are in IEC 62056-61's manufacturer-specific
# range of value group C (128-199). Like the failure counts above they are dimensionless numbers
# in 2030.5 (uom 0: its UomType has no unit of time), on the appliance's own UsagePoint (flow
# forward: what the plug delivers to it), and told apart by dataQualifier: 0 (not applicable) the
# starts, 12 (nominal) the seconds run — a pairing this table fixes for both ends.
APPLIANCE_STARTS = ObisCode(1, 0, 128, 8, 0)
APPLIANCE_RUN_SECONDS = ObisCode(1, 0, 128, 9, 0)
QUALIFIER_NOMINAL = 12
_RUNS: dict[ObisCode, ReadingTypeSpec] = {
    APPLIANCE_STARTS: ReadingTypeSpec(
        COMMODITY_ELECTRICITY, KIND_NOT_APPLICABLE, FLOW_FORWARD, UOM_NONE, 0, Unit.NONE, 0
    ),
    APPLIANCE_RUN_SECONDS: ReadingTypeSpec(
        COMMODITY_ELECTRICITY, KIND_NOT_APPLICABLE, FLOW_FORWARD, UOM_NONE, 0, Unit.S, 0, 0, QUALIFIER_NOMINAL
    ),
}


def run_channels() -> frozenset[ObisCode]:
    """The appliance-run channels a hub keeps for its smart plugs (``hub.appliance_runs``): starts
    and seconds run per half-hour. Not consumption (no energy limits apply to them)."""
    return frozenset(_RUNS)


def quality_channels() -> frozenset[ObisCode]:
    """The power-quality channels a hub may keep (``hub.power_quality``): 10-minute voltage
    average/minimum/maximum and sag/swell counts, per phase; power failures, short and long, and
    the logged long failures' seconds, in any phase."""
    return frozenset(_QUALITY)


def interval_channels() -> frozenset[ObisCode]:
    """The registers a hub turns into half-hourly interval readings."""
    return frozenset(_INTERVAL)


def interval_spec(obis: ObisCode) -> ReadingTypeSpec:
    """The ReadingType of a channel the hub publishes: an interval (delta) channel, a
    power-quality channel, or a register channel (:func:`register_channel`: the interval
    channel's ReadingType with accumulationBehaviour summation, no intervalLength)."""
    spec = _INTERVAL.get(obis) or _QUALITY.get(obis) or _RUNS.get(obis)
    if spec is None:
        base = interval_of_register(obis)
        if base is None:
            raise KeyError(f"no interval ReadingType for OBIS {obis}")
        return replace(_INTERVAL[base], accumulation=ACCUMULATION_SUMMATION)
    return spec


def register_channel(obis: ObisCode) -> ObisCode | None:
    """The register channel of an interval channel built from a cumulative register (energy,
    volume, heat, allocator units; not the power-quality statistics), else None."""
    if obis not in _INTERVAL:
        return None
    return ObisCode(obis.a, obis.b, obis.c, obis.d, obis.e, REGISTER_HISTORY_F)


def interval_of_register(obis: ObisCode) -> ObisCode | None:
    """The interval channel whose register ``obis`` names (inverse of :func:`register_channel`)."""
    if obis.f != REGISTER_HISTORY_F:
        return None
    base = ObisCode(obis.a, obis.b, obis.c, obis.d, obis.e)
    return base if base in _INTERVAL else None


def instant_spec(obis: ObisCode) -> ReadingTypeSpec:
    try:
        return _INSTANT[obis]
    except KeyError:
        raise KeyError(f"no instantaneous ReadingType for OBIS {obis}") from None


def obis_for_interval(
    commodity: int,
    flow_direction: int,
    uom: int,
    *,
    kind: int | None = None,
    phase: int = 0,
    qualifier: int = 0,
) -> ObisCode:
    """Inverse of :func:`interval_spec`, for the GDSC reading a hub's ReadingType (``kind`` None:
    not compared, as a ReadingType without one)."""
    for obis, spec in (*_INTERVAL.items(), *_QUALITY.items(), *_RUNS.items()):
        if (spec.commodity, spec.flow_direction, spec.uom, spec.phase, spec.data_qualifier) == (
            commodity,
            flow_direction,
            uom,
            phase,
            qualifier,
        ) and (kind is None or kind == spec.kind):
            return obis
    raise KeyError(f"no OBIS code for ReadingType commodity={commodity} flow={flow_direction} uom={uom}")
