"""COSEM interface classes the hub reads, turned into :class:`~smarthub.model.datapoint.DataPoint`
(IEC 62056-6-2, "COSEM interface classes"; DLMS Blue Book):

* class 3 Register: attribute 2 value, attribute 3 scaler_unit = structure(integer scaler,
  enum unit); the physical value is value × 10^scaler in the unit;
* class 4 Extended Register: as Register, plus attribute 5 capture_time (date-time);
* class 7 Profile Generic: attribute 2 buffer = array of structures, one per captured row;
  attribute 3 capture_objects = array of structure(long-unsigned class_id, octet-string(6)
  logical_name, integer attribute_index, long-unsigned data_index) naming each column. The
  Clock column (class 8, 0-0:1.0.0, attribute 2) gives each row's time; the other columns are
  scaled with the scaler_unit of the register they capture (which the caller reads first);
* class 8 Clock: attribute 2 time (octet-string(12) date-time);
* pushed DataNotifications (class 40 Push setup sends the push_object_list's values).

Values are scaled exactly: ``Decimal(value).scaleb(scaler)``, never through a float.
Data point keys follow :mod:`smarthub.model.datapoint`: the OBIS code, ``A-B:C.D.E``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from smarthub.meters.dlms.axdr import DateTime
from smarthub.meters.dlms.errors import PROTOCOL, MalformedFrame
from smarthub.model.datapoint import DataPoint
from smarthub.model.obis import ObisCode

__all__ = [
    "CLOCK",
    "UNITS",
    "CaptureObject",
    "ScalerUnit",
    "capture_objects",
    "clock_time",
    "notification_data_points",
    "profile_data_points",
    "register_data_point",
    "scale",
    "scaler_unit",
]

CLOCK = ObisCode(0, 0, 1, 0, 0)
CLASS_DATA = 1
CLASS_REGISTER = 3
CLASS_EXTENDED_REGISTER = 4
CLASS_PROFILE_GENERIC = 7
CLASS_CLOCK = 8

# DLMS unit enumeration (Blue Book, Register "scaler_unit", table of units) -> our unit strings.
UNITS: dict[int, str | None] = {
    1: "a",
    2: "mo",
    3: "wk",
    4: "d",
    5: "h",
    6: "min",
    7: "s",
    8: "°",
    9: "°C",
    10: "currency",
    11: "m",
    12: "m/s",
    13: "m3",
    14: "m3",  # corrected volume
    15: "m3/h",
    16: "m3/h",  # corrected volume flow
    17: "m3/d",
    18: "m3/d",
    19: "l",
    20: "kg",
    21: "N",
    22: "Nm",
    23: "Pa",
    24: "bar",
    25: "J",
    26: "J/h",
    27: "W",
    28: "VA",
    29: "var",
    30: "Wh",
    31: "VAh",
    32: "varh",
    33: "A",
    34: "C",
    35: "V",
    36: "V/m",
    37: "F",
    38: "Ω",
    39: "Ωm2/m",
    40: "Wb",
    41: "T",
    42: "A/m",
    43: "H",
    44: "Hz",
    45: "1/(Wh)",
    46: "1/(varh)",
    47: "1/(VAh)",
    48: "V2h",
    49: "A2h",
    50: "kg/s",
    51: "S",
    52: "K",
    53: "1/(V2h)",
    54: "1/(A2h)",
    55: "1/m3",
    56: "%",
    57: "Ah",
    60: "Wh/m3",
    61: "J/m3",
    62: "Mol %",
    63: "g/m3",
    64: "Pa s",
    65: "J/kg",
    66: "g/cm2",
    67: "atm",
    70: "dBm",
    71: "dBµV",
    72: "dB",
    254: None,  # other unit
    255: None,  # count / no unit
}
UNIT_CODES = {"Wh": 30, "W": 27, "V": 35, "A": 33, "m3": 13, "var": 29, "varh": 32, "VA": 28, "VAh": 31}


@dataclass(frozen=True, slots=True)
class ScalerUnit:
    scaler: int
    unit: int

    @property
    def unit_name(self) -> str | None:
        return UNITS.get(self.unit)


NO_SCALER = ScalerUnit(0, 255)


@dataclass(frozen=True, slots=True)
class CaptureObject:
    class_id: int
    logical_name: ObisCode
    attribute_index: int
    data_index: int = 0


def scale(value: int, scaler: int) -> Decimal:
    """value × 10^scaler, exactly."""
    return Decimal(value).scaleb(scaler)


# Decoded scaler_unit structures and logical names -> their objects (and a name's data point
# key). A meter sends the same few dozen again and again; building an ObisCode and formatting
# it was a third of a pushed frame's cost (issue 17). Bounded: fuzzed input cannot grow them.
_CACHE_MAX = 4096
_SCALER_UNITS: dict[tuple[int, int], ScalerUnit] = {}
_NAMES: dict[bytes, tuple[ObisCode, str]] = {}


def scaler_unit(value: Any) -> ScalerUnit:
    """Attribute 3 of a Register: structure(integer, enum)."""
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        hit = _SCALER_UNITS.get(value)
        if hit is not None:
            return hit
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise MalformedFrame(PROTOCOL, f"scaler_unit is not structure(integer, enum): {value!r}")
    if not -128 <= value[0] <= 127:
        raise MalformedFrame(PROTOCOL, f"scaler {value[0]} outside int8")
    su = ScalerUnit(value[0], value[1])
    if type(value[0]) is int and type(value[1]) is int and len(_SCALER_UNITS) < _CACHE_MAX:
        _SCALER_UNITS[value] = su
    return su


def _named(raw: Any) -> tuple[ObisCode, str]:
    """A logical name (octet-string(6)) as its OBIS code and data point key."""
    if type(raw) is bytes:
        hit = _NAMES.get(raw)
        if hit is not None:
            return hit
    if not isinstance(raw, bytes) or len(raw) != 6:
        raise MalformedFrame(PROTOCOL, f"logical name is not a 6-byte octet-string: {raw!r}")
    obis = ObisCode(*raw)
    named = (obis, str(obis))
    if type(raw) is bytes and len(_NAMES) < _CACHE_MAX:
        _NAMES[raw] = named
    return named


def _logical_name(raw: Any) -> ObisCode:
    return _named(raw)[0]


def capture_objects(value: Any) -> list[CaptureObject]:
    """Attribute 3 of a Profile Generic."""
    if not isinstance(value, list):
        raise MalformedFrame(PROTOCOL, "capture_objects is not an array")
    out = []
    for item in value:
        if not isinstance(item, tuple) or len(item) != 4 or not isinstance(item[0], int):
            raise MalformedFrame(
                PROTOCOL, f"capture object is not structure(class, name, attribute, index): {item!r}"
            )
        if not isinstance(item[2], int) or not isinstance(item[3], int):
            raise MalformedFrame(PROTOCOL, "capture object attribute/data index not integers")
        out.append(CaptureObject(item[0], _logical_name(item[1]), item[2], item[3]))
    return out


_DEVIATIONS: dict[int, timedelta] = {}


def clock_time(value: Any, assume: tzinfo = UTC) -> datetime | None:
    """A Clock time attribute (octet-string(12) or date-time) as an aware UTC datetime."""
    if type(value) is bytes and len(value) == 12:
        # Fast path, the same result as DateTime.from_bytes(value).to_datetime(assume) for a
        # fully specified date-time with a deviation (what meters push); the rest below.
        dev = (value[9] << 8) | value[10]
        if dev & 0x8000:
            dev -= 0x10000
        month, day, hour, minute = value[2], value[3], value[5], value[6]
        if -720 <= dev <= 720 and value[0:2] != b"\xff\xff" and 0xFF not in (month, day, hour, minute):
            sec, hund = value[7], value[8]
            try:
                utc = datetime(
                    (value[0] << 8) | value[1],
                    month,
                    day,
                    hour,
                    minute,
                    0 if sec == 0xFF else sec,
                    hund * 10000 if hund < 100 else 0,
                    tzinfo=UTC,
                )
                delta = _DEVIATIONS.get(dev)
                if delta is None:
                    delta = _DEVIATIONS[dev] = timedelta(minutes=dev)  # UTC = local + deviation
                return utc + delta
            except (ValueError, OverflowError):
                pass  # the general path raises the specific error
    if isinstance(value, bytes):
        if len(value) != 12:
            raise MalformedFrame(PROTOCOL, f"clock value of {len(value)} bytes (must be 12)")
        value = DateTime.from_bytes(value)
    if isinstance(value, DateTime):
        return value.to_datetime(assume)
    if value is None:
        return None
    raise MalformedFrame(PROTOCOL, f"clock value is not a date-time: {value!r}")


def _point(
    meter: str,
    obis: ObisCode,
    value: Any,
    su: ScalerUnit | None,
    time: datetime | None,
    key: str | None = None,
) -> DataPoint | None:
    if value is None:
        return None
    su = su or NO_SCALER
    if type(value) is int:  # the common case first
        return DataPoint(
            meter,
            PROTOCOL,
            key or str(obis),
            Decimal(value).scaleb(su.scaler) if su.scaler else Decimal(value),
            UNITS.get(su.unit),
            time,
        )
    if isinstance(value, bool):
        return DataPoint(meter, PROTOCOL, str(obis), str(value).lower(), None, time)
    if isinstance(value, int):
        return DataPoint(meter, PROTOCOL, str(obis), scale(value, su.scaler), su.unit_name, time)
    if isinstance(value, float):
        return DataPoint(
            meter, PROTOCOL, str(obis), Decimal(repr(value)).scaleb(su.scaler), su.unit_name, time
        )
    if isinstance(value, bytes):
        if len(value) == 12 and obis == CLOCK:
            t = clock_time(value)
            return DataPoint(meter, PROTOCOL, str(obis), t.isoformat() if t else value.hex(), None, time)
        return DataPoint(meter, PROTOCOL, str(obis), value.hex(), None, time)
    if isinstance(value, str):
        return DataPoint(meter, PROTOCOL, str(obis), value, None, time)
    if isinstance(value, DateTime):
        t = value.to_datetime()
        return DataPoint(
            meter, PROTOCOL, str(obis), t.isoformat() if t else value.to_bytes().hex(), None, time
        )
    return DataPoint(meter, PROTOCOL, str(obis), repr(value), None, time, frozenset({"unparsed"}))


def register_data_point(
    meter: str,
    obis: ObisCode,
    value: Any,
    su: ScalerUnit | Any | None,
    capture_time: Any = None,
    *,
    time: datetime | None = None,
) -> DataPoint | None:
    """A Register / Extended Register reading: attribute 2 ``value`` scaled by attribute 3
    ``su`` (a :class:`ScalerUnit` or the decoded structure); the Extended Register's
    ``capture_time`` (attribute 5) wins over ``time`` (e.g. when the hub read it)."""
    if su is not None and not isinstance(su, ScalerUnit):
        su = scaler_unit(su)
    t = clock_time(capture_time) if capture_time is not None else time
    return _point(meter, obis, value, su, t)


def profile_data_points(
    meter: str,
    buffer: Any,
    columns: Sequence[CaptureObject],
    scalers: Mapping[ObisCode, ScalerUnit],
    *,
    assume: tzinfo = UTC,
) -> list[DataPoint]:
    """Rows of a Profile Generic buffer as data points: one per captured value, timed by the
    row's Clock column. Columns without a known scaler are taken unscaled without unit."""
    if not isinstance(buffer, list):
        raise MalformedFrame(PROTOCOL, "profile buffer is not an array")
    clock_col = next(
        (i for i, c in enumerate(columns) if c.class_id == CLASS_CLOCK and c.attribute_index == 2), None
    )
    out: list[DataPoint] = []
    for row in buffer:
        if not isinstance(row, tuple) or len(row) != len(columns):
            raise MalformedFrame(PROTOCOL, f"profile row does not have {len(columns)} columns: {row!r}")
        t = clock_time(row[clock_col], assume) if clock_col is not None else None
        for i, (col, value) in enumerate(zip(columns, row, strict=True)):
            if i == clock_col:
                continue
            p = _point(meter, col.logical_name, value, scalers.get(col.logical_name), t)
            if p is not None:
                out.append(p)
    return out


def notification_data_points(
    meter: str,
    body: Any,
    *,
    date_time: DateTime | None = None,
    columns: Sequence[CaptureObject] | None = None,
    scalers: Mapping[ObisCode, ScalerUnit] | None = None,
    assume: tzinfo = UTC,
) -> list[DataPoint]:
    """Data points from a pushed DataNotification body (its decoded ``value``).

    Layouts understood (push setup objects differ by companion standard):

    * with ``columns`` (the push_object_list, known to the caller): a structure of the values
      in that order, optionally preceded by one date-time (octet-string(12)) not listed;
    * self-describing: a structure of an optional leading date-time, then either flat pairs
      ``logical_name, value`` or sub-structures ``(logical_name, value[, (scaler, unit)])``.

    The time is the Clock column's or the leading date-time, else the APDU's ``date_time``.
    """
    scalers = scalers or {}
    if not isinstance(body, tuple):
        raise MalformedFrame(PROTOCOL, "DataNotification body is not a structure")
    items = list(body)
    t = clock_time(date_time, assume) if date_time is not None else None
    if columns is not None:
        if len(items) == len(columns) + 1 and _is_datetime(items[0]):
            t = clock_time(items.pop(0), assume)
        if len(items) != len(columns):
            raise MalformedFrame(
                PROTOCOL, f"push body has {len(items)} values for {len(columns)} capture objects"
            )
        for col, v in zip(columns, items, strict=True):
            if col.class_id == CLASS_CLOCK and col.attribute_index == 2:
                t = clock_time(v, assume)
        points = []
        for col, v in zip(columns, items, strict=True):
            if col.class_id == CLASS_CLOCK and col.attribute_index == 2:
                continue
            p = _point(meter, col.logical_name, v, scalers.get(col.logical_name), t)
            if p is not None:
                points.append(p)
        return points
    if items and _is_datetime(items[0]):
        t = clock_time(items.pop(0), assume)
    points = []
    if items and all(isinstance(i, tuple) for i in items):
        for entry in items:
            if len(entry) not in (2, 3):
                raise MalformedFrame(
                    PROTOCOL, f"push entry is not (logical name, value[, scaler_unit]): {entry!r}"
                )
            obis, key = _named(entry[0])
            su = scaler_unit(entry[2]) if len(entry) == 3 else scalers.get(obis)
            p = _point(meter, obis, entry[1], su, t, key)
            if p is not None:
                points.append(p)
        return points
    if len(items) % 2:
        raise MalformedFrame(PROTOCOL, "push body is neither (name, value) pairs nor entries")
    for k in range(0, len(items), 2):
        obis, key = _named(items[k])
        p = _point(meter, obis, items[k + 1], scalers.get(obis), t, key)
        if p is not None:
            points.append(p)
    return points


def _is_datetime(v: Any) -> bool:
    return isinstance(v, DateTime) or (isinstance(v, bytes) and len(v) == 12)
