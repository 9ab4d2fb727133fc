"""A simulated ZigBee Smart Energy meter (Metering cluster 0x0702), driven by a household profile.

``report_at(t)`` advances the registers to ``t`` and returns the ZCL Report Attributes frame
the meter sends (CurrentSummationDelivered; for electricity also CurrentSummationReceived and
InstantaneousDemand); ``formatting_report()`` is the report of the "Formatting" attribute set
a meter sends once on joining (Multiplier, Divisor, UnitOfMeasure, SummationFormatting,
DemandFormatting, MeteringDeviceType). ZigBee SE 1.x annex D, Metering cluster attribute sets.

Registers are exact integers in the meter's raw unit (the value × Multiplier / Divisor is the
quantity in UnitOfMeasure): energy is accumulated in integer mWh and gas in integer cm3, so
no float error builds up, and ``registers`` gives the tests the exact raw values. Gas energy
from the profile becomes volume with the calorific value the DSMR simulator uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from smarthub.meters.zigbee_se import (
    A_DEMAND_FORMATTING,
    A_DEVICE_TYPE,
    A_DIVISOR,
    A_INSTANTANEOUS_DEMAND,
    A_MULTIPLIER,
    A_SUMMATION_DELIVERED,
    A_SUMMATION_FORMATTING,
    A_SUMMATION_RECEIVED,
    A_UNIT_OF_MEASURE,
    T_BITMAP8,
    T_ENUM8,
    T_INT24,
    T_UINT24,
    T_UINT48,
    report_attributes,
)
from smarthub.sim.dsmr_meter import GAS_KWH_PER_M3
from smarthub.sim.load_profile import HouseholdProfile

__all__ = ["ZigbeeMeterSimulator", "ZigbeeRegisters"]

_DEVICE_TYPES = {"electric": 0, "gas": 1}
_UNITS = {"electric": 0x00, "gas": 0x01}  # kWh & kW, m3 & m3/h
_UINT48_MAX = (1 << 48) - 1
_INT24 = (-(1 << 23), (1 << 23) - 1)


@dataclass(frozen=True, slots=True)
class ZigbeeRegisters:
    time: datetime
    summation_delivered: int  # raw CurrentSummationDelivered
    summation_received: int  # raw CurrentSummationReceived (electric export; 0 for gas)
    instantaneous_demand: int  # raw InstantaneousDemand (signed: negative = export)


class ZigbeeMeterSimulator:
    """One ZigBee SE meter on simulated time (see the module docstring).

    Electric: raw summation = Wh × divisor / (1000 × multiplier) (kWh), demand the same in kW
    from W. Gas: raw summation = m3 × divisor / multiplier, demand m3/h.
    """

    def __init__(
        self,
        eui64: str,
        device_type: str,
        profile: HouseholdProfile,
        start: datetime,
        multiplier: int = 1,
        divisor: int = 1000,
        unit: int | None = None,
        *,
        initial_wh: int = 3_000_000,
        initial_gas_dm3: int = 1_500_000,
    ) -> None:
        if device_type not in _DEVICE_TYPES:
            raise ValueError(f"device_type must be 'electric' or 'gas', got {device_type!r}")
        if unit is None:
            unit = _UNITS[device_type]
        if unit != _UNITS[device_type]:
            raise ValueError(f"a simulated {device_type} meter reports in unit 0x{_UNITS[device_type]:02X}")
        if not (0 < multiplier < 1 << 24 and 0 < divisor < 1 << 24):
            raise ValueError("multiplier and divisor are uint24 and not zero")
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if min(initial_wh, initial_gas_dm3) < 0:
            raise ValueError("initial register values cannot be negative")
        digits = eui64.replace(":", "").replace("-", "")
        if len(digits) != 16 or any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise ValueError(f"an EUI-64 is 16 hex digits, got {eui64!r}")
        self.eui64 = ":".join(digits[i : i + 2] for i in range(0, 16, 2)).lower()
        self.device_type = device_type
        self.profile = profile
        self.multiplier = multiplier
        self.divisor = divisor
        self.unit = unit
        self._time = start.astimezone(UTC)
        self._sequence = 0
        # Accumulators: electric mWh (delivered, received), gas cm3 (delivered).
        if device_type == "electric":
            self._acc = [initial_wh * 1000, 0]
        else:
            self._acc = [initial_gas_dm3 * 1000, 0]
        self._registers = self._snapshot()

    @property
    def registers(self) -> ZigbeeRegisters:
        return self._registers

    def _raw(self, amount: int) -> int:
        """mWh or cm3 -> raw units, truncated as a register is."""
        # electric: kWh = mWh / 1e6; gas: m3 = cm3 / 1e6. raw = quantity × divisor / multiplier.
        return min(_UINT48_MAX, amount * self.divisor // (1_000_000 * self.multiplier))

    def advance(self, t: datetime) -> ZigbeeRegisters:
        if t.tzinfo is None:
            raise ValueError("t must be timezone-aware")
        t = t.astimezone(UTC)
        if t < self._time:
            raise ValueError(f"meter time cannot go backwards: {t.isoformat()} < {self._time.isoformat()}")
        if t > self._time:
            imp, exp, gas = self.profile.energy_wh(self._time, t)
            if self.device_type == "electric":
                self._acc[0] += round(imp * 1000)
                self._acc[1] += round(exp * 1000)
            else:
                # Wh / (kWh per m3) = dm3; × 1000 = cm3.
                self._acc[0] += round(gas * 1000 / GAS_KWH_PER_M3)
        self._time = t
        self._registers = self._snapshot()
        return self._registers

    def _snapshot(self) -> ZigbeeRegisters:
        t = self._time
        if self.device_type == "electric":
            w = self.profile.net_import_w(t)  # W: × divisor / (1000 × multiplier) for kW raw
            demand = round(w * self.divisor / (1000 * self.multiplier))
        else:
            # Gas power in W -> m3/h: W / 1000 kW / (kWh per m3) = m3/h.
            demand = round(self.profile.gas_w(t) / 1000 / GAS_KWH_PER_M3 * self.divisor / self.multiplier)
        demand = max(_INT24[0], min(_INT24[1], demand))
        return ZigbeeRegisters(t, self._raw(self._acc[0]), self._raw(self._acc[1]), demand)

    def _next_sequence(self) -> int:
        seq = self._sequence
        self._sequence = (seq + 1) & 0xFF
        return seq

    def report_at(self, t: datetime) -> bytes:
        """Advance to ``t`` and return the Report Attributes frame (ZCL payload)."""
        r = self.advance(t)
        records = [(A_SUMMATION_DELIVERED, T_UINT48, r.summation_delivered)]
        if self.device_type == "electric":
            records.append((A_SUMMATION_RECEIVED, T_UINT48, r.summation_received))
        records.append((A_INSTANTANEOUS_DEMAND, T_INT24, r.instantaneous_demand))
        return report_attributes(records, self._next_sequence())

    def formatting_report(self) -> bytes:
        """The "Formatting" attribute set, as reported once on joining."""
        right = min(7, len(str(self.divisor)) - 1) if str(self.divisor).strip("0") == "1" else 3
        left = 6 if self.device_type == "electric" else 5
        summation_fmt = (left << 3) | right
        demand_fmt = (3 << 3) | right | 0x80  # leading zeros suppressed
        records = [
            (A_UNIT_OF_MEASURE, T_ENUM8, self.unit),
            (A_MULTIPLIER, T_UINT24, self.multiplier),
            (A_DIVISOR, T_UINT24, self.divisor),
            (A_SUMMATION_FORMATTING, T_BITMAP8, summation_fmt),
            (A_DEMAND_FORMATTING, T_BITMAP8, demand_fmt),
            (A_DEVICE_TYPE, T_BITMAP8, _DEVICE_TYPES[self.device_type]),
        ]
        return report_attributes(records, self._next_sequence())
