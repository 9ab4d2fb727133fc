"""`DataPoint`: a value as a meter protocol names it, before translation to OBIS.

Codecs in `meters/` produce data points; the versioned mapping table
(`smarthub.meters.mapping`) turns them into `Reading`s. A point the table does not know
is kept, raw and flagged, never dropped.

Key conventions (the mapping table is written against these):

- ``dsmr``, ``dlms``, ``iec62056-21``, ``sml``: the OBIS code as the protocol carries it, formatted
  ``A-B:C.D.E`` (``*F`` only when F != 255). IEC 62056-21 lines that omit A-B (``1.8.0``)
  keep the short form: key ``1.8.0``.
- ``mbus``, ``wmbus``: ``{medium}:{quantity}`` then ``/{function}`` unless instantaneous
  (``max``, ``min``, ``err``), ``/s{storage}`` unless 0, ``/t{tariff}`` unless 0,
  ``/u{subunit}`` unless 0. Medium from the EN 13757-3 device type (``electricity``,
  ``gas``, ``water``, ``warm_water``, ``heat``, ``cooling``, ``heat_cost_allocator``,
  ``other``...); quantity from the VIF (``energy``, ``volume``, ``power``, ``volume_flow``,
  ``flow_temperature``, ``return_temperature``, ``temperature_difference``, ``hca_units``,
  ``on_time``, ``operating_time``, ``datetime``, ``fabrication_no``, ``error_flags``, or
  ``vif_0xNN`` / ``vife_0xNN_0xNN`` when the table has no name). E.g. ``water:volume``,
  ``gas:volume/s1``, ``heat:energy/t1``.
- ``zigbee``: ``{device_type}:{attribute}`` with the metering device type (``electric``,
  ``gas``, ``water``, ``thermal``, ...) and the ZCL Metering (0x0702) attribute name in
  its specification spelling, e.g. ``electric:CurrentSummationDelivered``,
  ``gas:CurrentSummationDelivered``, ``electric:InstantaneousDemand``; unknown attributes
  ``attr_0xNNNN``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

PROTOCOLS = ("dsmr", "dlms", "iec62056-21", "mbus", "wmbus", "zigbee", "sml")


class DataPoint(NamedTuple):
    """One value (immutable). A named tuple rather than a frozen dataclass: every codec builds one
    per value it decodes, and a tuple is built ~4x faster (bench/codecs.py; issue 17). Change
    a field with ``point._replace(time=None)``."""

    meter: (
        str  # the meter's id as its protocol identifies it (serial, system title, secondary address, EUI-64)
    )
    protocol: str  # one of PROTOCOLS
    key: str  # see the module docstring
    value: Decimal | str  # numbers already scaled by the protocol's own scaler/exponent/multiplier
    unit: str | None  # "Wh", "kWh", "W", "kW", "m3", "m3/h", "l", "V", "A", "°C", "K", "s", ... or None
    time: datetime | None = None  # capture time carried by the frame (UTC, aware), if any
    flags: frozenset[str] = frozenset()  # protocol status worth keeping: "error", "tamper", "estimated", ...
