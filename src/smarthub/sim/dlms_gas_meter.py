"""A simulated DLMS/COSEM gas meter with a valve, driven by a household profile's gas demand.

It is :class:`~smarthub.sim.dlms_meter.DlmsMeterSimulator` (the same HDLC/wrapper link, LN
association, suite 0 ciphering, GET/SET/ACTION and Blue Book result codes) serving a gas meter's
objects instead of an electricity meter's:

* 7-0:3.0.0 Register (class 3): the gas volume, double-long-unsigned in dm³ (scaler -3, unit 13
  m³), IEC 62056-6-1 / EN 13757-3 convention for a gas meter's index;
* 7-0:99.1.0 Profile Generic (class 7): half-hourly profile, columns clock and 7-0:3.0.0,
  capture period 1800 s, the last ``profile_entries`` rows;
* 0-0:96.3.10 Disconnect control (class 70) **as the valve** (DLMS UA 1000-1 Blue Book: the
  disconnect control object switches "the supply of electricity, gas or water"; the same OBIS
  code): output_state (2) True while the valve is open, control_state (3), control_mode (4) = 1;
  ACTION remote_disconnect (1) closes it, remote_reconnect (2) opens it again (transition d).
  With control_mode 1 the meter opens on a remote reconnect, so the safety interlock (no gas
  into a home until the consumer has checked that appliances are off) is the hub's: it sends
  remote_reconnect only after the consumer confirms at the IHD
  (:class:`smarthub.hub.prepayment_bridge.GasValve`), as a GB supplier *arms* the valve and the
  consumer restores it at the meter or the IHD/PPMID. While the valve is closed no gas flows: the
  index does not advance and the profile's half-hours carry no volume.

Volume is the profile's gas energy converted with the GB billing rule backwards (m³ = kWh × 3.6 /
(1.02264 × calorific value)), accumulated in whole millilitres, so the hub's kWh (the same rule
forwards) is the profile's energy up to rounding. No limiter, no export, no push.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from smarthub.clock import Clock
from smarthub.hub.hub import SmartHub
from smarthub.meters.dlms.axdr import Tag, encode_data
from smarthub.meters.dlms.security import SecurityKeys
from smarthub.model.obis import ObisCode
from smarthub.sim.dlms_meter import (
    CLOCK,
    CONNECTED,
    DISCONNECT_CONTROL,
    LDN,
    DlmsMeterSimulator,
    _next_half_hour,
    profile_attribute,
)
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.rigs import MINUTE, Rig, dlms_meter_rig

__all__ = ["GAS_PROFILE", "GAS_VOLUME", "DlmsGasMeterSimulator", "GasProfileRow", "GasRegisters"]

GAS_VOLUME = ObisCode(7, 0, 3, 0, 0)
GAS_PROFILE = ObisCode(7, 0, 99, 1, 0)
UNIT_M3 = 13  # DLMS unit enumeration
CALORIFIC_VALUE = Decimal("39.5")  # MJ/m³, as the hub's default
WH_PER_LITRE = float(Decimal("1.02264") * CALORIFIC_VALUE / Decimal("3.6"))  # kWh/m³ = Wh/dm³
_OBJECT_UNDEFINED = 4
_OBJECT_UNAVAILABLE = 11
_GAS_CLASSES = {CLOCK: 8, LDN: 1, GAS_VOLUME: 3, GAS_PROFILE: 7, DISCONNECT_CONTROL: 70}


@dataclass(frozen=True, slots=True)
class GasRegisters:
    time: datetime
    volume_l: int  # dm³


@dataclass(frozen=True, slots=True)
class GasProfileRow:
    time: datetime  # UTC, on a half-hour boundary
    volume_l: int


class DlmsGasMeterSimulator(DlmsMeterSimulator):
    """A DLMS gas meter with a valve (see the module docstring)."""

    classes = _GAS_CLASSES

    def __init__(
        self,
        system_title: bytes,
        serial: str,
        profile: HouseholdProfile,
        start: datetime,
        keys: SecurityKeys | None = None,
        *,
        initial_volume_l: int = 1_000_000,
        **kwargs: Any,
    ) -> None:
        self._ml = 0
        self._initial_l = initial_volume_l
        self._gas_rows: list[GasProfileRow] = []
        super().__init__(system_title, serial, profile, start, keys, **kwargs)

    # ---- registers ----------------------------------------------------------------------
    @property
    def registers(self) -> GasRegisters:  # type: ignore[override]
        return self._registers  # type: ignore[return-value]

    @property
    def gas_rows(self) -> list[GasProfileRow]:
        return list(self._gas_rows)

    @property
    def valve_open(self) -> bool:
        return self.control_state == CONNECTED

    def _litres(self) -> int:
        return self._initial_l + self._ml // 1000

    def _snapshot(self) -> GasRegisters:  # type: ignore[override]
        return GasRegisters(self._time, self._litres())

    def advance(self, t: datetime) -> GasRegisters:  # type: ignore[override]
        if t.tzinfo is None:
            raise ValueError("t must be timezone-aware")
        t = t.astimezone(UTC)
        if t < self._time:
            raise ValueError(f"meter time cannot go backwards: {t.isoformat()} < {self._time.isoformat()}")
        a = self._time
        while a < t:
            boundary = _next_half_hour(a)
            b = min(t, boundary)
            if self.valve_open:  # a closed valve: no gas flows
                _, _, gas_wh = self.profile.energy_wh(a, b)
                self._ml += round(gas_wh / WH_PER_LITRE * 1000)
            if b == boundary:
                self._gas_rows.append(GasProfileRow(b, self._litres()))
                del self._gas_rows[: -self.profile_entries]
            a = b
        self._time = t
        self._registers = self._snapshot()  # type: ignore[assignment]
        return self._registers  # type: ignore[return-value]

    def press_button(self, t: datetime) -> None:
        raise NotImplementedError("this valve (control_mode 1) has no manual reconnection")

    def push_apdu_at(self, t: datetime) -> bytes:
        raise NotImplementedError("the simulated gas meter is polled, it does not push")

    # ---- objects ------------------------------------------------------------------------
    def _attribute(self, class_id: int, obis: ObisCode, attribute: int) -> bytes | int:
        if obis not in _GAS_CLASSES:
            return _OBJECT_UNDEFINED
        if obis == GAS_VOLUME and class_id == 3:
            if attribute == 1:
                return encode_data(Tag.OCTET_STRING, obis.to_bytes())
            if attribute == 2:
                return encode_data(Tag.DOUBLE_LONG_UNSIGNED, self.registers.volume_l)
            if attribute == 3:
                return encode_data(Tag.STRUCTURE, [(Tag.INTEGER, -3), (Tag.ENUM, UNIT_M3)])
            return _OBJECT_UNAVAILABLE
        if obis == GAS_PROFILE and class_id == 7:
            if attribute == 1:
                return encode_data(Tag.OCTET_STRING, obis.to_bytes())
            rows = [
                [(Tag.OCTET_STRING, self._clock(row.time)), (Tag.DOUBLE_LONG_UNSIGNED, row.volume_l)]
                for row in self._gas_rows
            ]
            found = profile_attribute(attribute, rows, ((8, CLOCK), (3, GAS_VOLUME)), self.profile_entries)
            if found is not None:
                return found
            return _OBJECT_UNAVAILABLE
        return super()._attribute(class_id, obis, attribute)


def dlms_gas_rig(
    hub: SmartHub,
    clock: Clock,
    start: datetime,
    profile: HouseholdProfile,
    system_title: bytes,
    keys: SecurityKeys,
    period: timedelta = MINUTE,
) -> Rig:
    """An encrypted (suite 0) DLMS gas meter with a valve on HDLC, polled for its index; its
    valve is the rig's ``supply`` (a :class:`smarthub.sim.rigs.SupplyControl`: class 70 ACTIONs)."""
    meter = DlmsGasMeterSimulator(system_title, system_title.hex().upper(), profile, start, keys)
    return dlms_meter_rig(
        meter,
        hub,
        clock,
        start,
        system_title,
        keys,
        polled=(GAS_VOLUME,),
        channels=(GAS_VOLUME,),
        fuel="gas",
        period=period,
        name="dlms-gas",
    )
