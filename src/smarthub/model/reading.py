"""`Reading`: one measured value, named by OBIS code, from one meter.

A reading is either an *instant* register value (``start is None``: the register stood at
``value`` at ``time``) or an *interval* value (``start`` set: the register advanced by
``value`` between ``start`` and ``time``), which is how half-hourly consumption is carried
(2030.5 ReadingType accumulationBehaviour = deltaData).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from smarthub.model.obis import ObisCode


class Unit(enum.StrEnum):
    WH = "Wh"
    KWH = "kWh"
    W = "W"
    KW = "kW"
    M3 = "m3"
    L = "l"
    M3_PER_H = "m3/h"
    V = "V"
    A = "A"
    VAR = "var"
    VARH = "varh"
    KVARH = "kvarh"
    DEG_C = "°C"
    K = "K"
    S = "s"
    NONE = ""

    @classmethod
    def parse(cls, text: str) -> Unit:
        u = _BY_TEXT.get(text)  # hot path: the exact spelling codecs emit
        if u is None:
            t = text.strip().lower()
            u = _BY_TEXT.get(_ALIASES.get(t, t))
            if u is None:
                raise ValueError(f"unknown unit {text!r}")
        return u


_ALIASES = {"m³": "m3", "degc": "°c", "c": "°c", "litre": "l", "liter": "l", "m3h": "m3/h", "m³/h": "m3/h"}

_BY_TEXT: dict[str, Unit] = {**{u.value.lower(): u for u in Unit}, **{u.value: u for u in Unit}}

# Base unit and power of ten for each unit: values are carried scaled to the base unit.
BASE_UNIT: dict[Unit, tuple[Unit, int]] = {
    Unit.WH: (Unit.WH, 0),
    Unit.KWH: (Unit.WH, 3),
    Unit.W: (Unit.W, 0),
    Unit.KW: (Unit.W, 3),
    Unit.M3: (Unit.M3, 0),
    Unit.L: (Unit.M3, -3),
    Unit.M3_PER_H: (Unit.M3_PER_H, 0),
    Unit.V: (Unit.V, 0),
    Unit.A: (Unit.A, 0),
    Unit.VAR: (Unit.VAR, 0),
    Unit.VARH: (Unit.VARH, 0),
    Unit.KVARH: (Unit.VARH, 3),
    Unit.DEG_C: (Unit.DEG_C, 0),
    Unit.K: (Unit.K, 0),
    Unit.S: (Unit.S, 0),
    Unit.NONE: (Unit.NONE, 0),
}


class Quality(enum.IntFlag):
    """IEEE 2030.5 QualityFlags (bit meanings from the standard's Reading.qualityFlags)."""

    NONE = 0
    VALID = 1 << 0
    MANUALLY_EDITED = 1 << 1
    ESTIMATED_REFERENCE_DAY = 1 << 2
    ESTIMATED_LINEAR_INTERPOLATION = 1 << 3
    QUESTIONABLE = 1 << 4
    DERIVED = 1 << 5
    PROJECTED = 1 << 6


@dataclass(frozen=True, slots=True)
class Reading:
    meter: str
    obis: ObisCode
    value: Decimal
    unit: Unit
    time: datetime
    start: datetime | None = None
    quality: Quality = field(default=Quality.VALID)

    def __post_init__(self) -> None:
        if self.time.tzinfo is None:
            raise ValueError("Reading.time must be timezone-aware")
        if self.start is not None:
            if self.start.tzinfo is None:
                raise ValueError("Reading.start must be timezone-aware")
            if self.start >= self.time:
                raise ValueError("an interval reading must end after it starts")

    @property
    def is_interval(self) -> bool:
        return self.start is not None

    @property
    def duration(self) -> timedelta | None:
        return None if self.start is None else self.time - self.start

    def in_base_unit(self) -> tuple[Decimal, Unit]:
        """The value converted to the base unit (kWh -> Wh, kW -> W)."""
        base, power = BASE_UNIT[self.unit]
        return self.value.scaleb(power), base
