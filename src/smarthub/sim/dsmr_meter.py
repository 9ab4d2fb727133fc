"""A simulated DSMR 5 electricity meter with an M-Bus gas meter, driven by a household profile.

``telegram_at(t)`` advances the registers to ``t`` and returns the P1 telegram the meter would
send at that instant (DSMR 5.0.2 P1 Companion Standard, object list). Registers are exact
integers (Wh, dm3): energy from the profile is accumulated in integer mWh and cm3, so no float
error builds up however often the meter is read, and ``registers`` gives the hub's tests the
exact values to check their arithmetic against.

DSMR conventions followed:

* tariff 1 (low) from 23:00 to 07:00 local time and all weekend, tariff 2 (normal) otherwise
  (the Dutch network operators' day/night split; public holidays are not modelled);
* the gas value 0-1:24.2.1 is the M-Bus meter's reading at the last whole 5 minutes, with that
  capture time (P1 Companion Standard object list: "last 5-minute value");
* the CRC is computed by :func:`smarthub.meters.dsmr.encode_telegram`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from smarthub.meters.dsmr import encode_telegram, format_timestamp, hex_encode
from smarthub.sim.load_profile import HouseholdProfile

__all__ = ["GAS_KWH_PER_M3", "LONG_FAILURE", "DsmrMeterSimulator", "DsmrRegisters", "tariff_at"]

# Gross calorific value of Dutch (Groningen-quality) natural gas: 35.17 MJ/m3 = 9.769 kWh/m3.
GAS_KWH_PER_M3 = 9.769
_GAS_INTERVAL = timedelta(minutes=5)
_LOW_TARIFF_FROM = time(23, 0)
_LOW_TARIFF_UNTIL = time(7, 0)
LONG_FAILURE = timedelta(minutes=3)  # DSMR default of 0-0:96.7.20, EN 50160 §3.12: long is over 3 min


@dataclass(frozen=True, slots=True)
class DsmrRegisters:
    """The meter's state as of the last telegram: exact integers, as the meter stores them."""

    time: datetime
    import_t1_wh: int
    import_t2_wh: int
    export_t1_wh: int
    export_t2_wh: int
    gas_dm3: int
    gas_time: datetime  # capture time of gas_dm3: the last 5-minute boundary <= time
    tariff: int  # 1 = low, 2 = normal
    import_w: int  # instantaneous 1-0:1.7.0, W
    export_w: int  # instantaneous 1-0:2.7.0, W

    @property
    def import_wh(self) -> int:
        return self.import_t1_wh + self.import_t2_wh

    @property
    def export_wh(self) -> int:
        return self.export_t1_wh + self.export_t2_wh


def tariff_at(t: datetime, tz: ZoneInfo) -> int:
    """DSMR tariff indicator at ``t``: 1 (low) nights 23:00-07:00 and weekends, else 2."""
    local = t.astimezone(tz)
    if local.weekday() >= 5:
        return 1
    clock = local.time()
    return 1 if clock >= _LOW_TARIFF_FROM or clock < _LOW_TARIFF_UNTIL else 2


def _next_tariff_boundary(t: datetime, tz: ZoneInfo) -> datetime:
    """The first instant after ``t`` at which the tariff may change: 00:00, 07:00 or 23:00 local."""
    local = t.astimezone(tz)
    day = local.date()
    for days, clock in ((0, time(7)), (0, time(23)), (1, time(0))):
        candidate = datetime.combine(day + timedelta(days=days), clock, tzinfo=tz).astimezone(UTC)
        if candidate > t:
            return candidate
    raise AssertionError("unreachable: local midnight tomorrow is always later")  # pragma: no cover


def _floor_5min(t: datetime) -> datetime:
    t = t.astimezone(UTC)
    return t.replace(minute=t.minute - t.minute % 5, second=0, microsecond=0)


def _kwh(wh: int) -> str:
    return f"{wh // 1000:06d}.{wh % 1000:03d}*kWh"


def _kw(w: int) -> str:
    return f"{w // 1000:02d}.{w % 1000:03d}*kW"


def _m3(dm3: int) -> str:
    return f"{dm3 // 1000:05d}.{dm3 % 1000:03d}*m3"


class DsmrMeterSimulator:
    """One home's DSMR 5 meter (and gas meter on M-Bus channel 1) on simulated time.

    ``initial_import_wh`` is split evenly between the two import tariff registers.
    ``failure_log`` fills the power-failure event log 1-0:99.97.0 as (end time, duration s).
    A power cut at the home (:meth:`power_lost`, :meth:`power_restored`) is counted as the meter
    counts it: a failure shorter than :data:`LONG_FAILURE` in 0-0:96.7.21, a longer one in
    0-0:96.7.9 and as a new entry of the log (its newest 10 kept), stamped with its end.
    """

    def __init__(
        self,
        equipment_id: str,
        gas_equipment_id: str | None,
        profile: HouseholdProfile,
        start: datetime,
        initial_import_wh: int = 3_000_000,
        initial_gas_dm3: int = 1_500_000,
        tz: ZoneInfo = ZoneInfo("Europe/Amsterdam"),  # noqa: B008 - ZoneInfo instances are cached, immutable
        *,
        initial_export_wh: int = 0,
        header: str = "/ISK5\\2M550T-1012",
        failure_log: Sequence[tuple[datetime, int]] = (),
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if min(initial_import_wh, initial_gas_dm3, initial_export_wh) < 0:
            raise ValueError("initial register values cannot be negative")
        if len(failure_log) > 10:
            raise ValueError("the DSMR power failure log holds at most 10 events")
        hex_encode(equipment_id)  # fail now, not at the first telegram, on a non-ASCII id
        if gas_equipment_id is not None:
            hex_encode(gas_equipment_id)
        self.equipment_id = equipment_id
        self.gas_equipment_id = gas_equipment_id
        self.profile = profile
        self.tz = tz
        self.header = header
        self.failure_log = tuple(failure_log)
        # The failure counters: a meter in service has counted a few short ones before.
        self.short_failures = 3
        self.long_failures = len(self.failure_log)
        self._lost_at: datetime | None = None
        # Voltage sags and swells on L1 the meter has counted (a test or a fault raises them).
        self.sags = 0
        self.swells = 0
        self._time = start.astimezone(UTC)
        # Accumulators in mWh / cm3 since start: integer arithmetic keeps the registers exact.
        self._initial = (
            initial_import_wh // 2,
            initial_import_wh - initial_import_wh // 2,
            initial_export_wh // 2,
            initial_export_wh - initial_export_wh // 2,
        )
        self._mwh = [0, 0, 0, 0]  # import t1, import t2, export t1, export t2
        self._initial_gas_dm3 = initial_gas_dm3
        self._gas_cm3 = 0
        self._gas_time = _floor_5min(self._time)
        self._registers = self._snapshot()

    @property
    def registers(self) -> DsmrRegisters:
        """The exact register values as of the last ``telegram_at`` (or ``start``)."""
        return self._registers

    def advance(self, t: datetime) -> DsmrRegisters:
        """Move the registers to ``t`` without building a telegram."""
        if t.tzinfo is None:
            raise ValueError("t must be timezone-aware")
        t = t.astimezone(UTC)
        if t < self._time:
            raise ValueError(f"meter time cannot go backwards: {t.isoformat()} < {self._time.isoformat()}")
        # Electricity, split at every instant the tariff may change.
        a = self._time
        while a < t:
            b = min(t, _next_tariff_boundary(a, self.tz))
            imp, exp, _ = self.profile.energy_wh(a, b)
            tariff = tariff_at(a, self.tz)
            self._mwh[tariff - 1] += round(imp * 1000)
            self._mwh[tariff + 1] += round(exp * 1000)
            a = b
        # Gas only moves at 5-minute boundaries: the M-Bus meter reports its last 5-minute value.
        boundary = _floor_5min(t)
        if boundary > self._gas_time:
            _, _, gas_wh = self.profile.energy_wh(self._gas_time, boundary)
            # Wh / (kWh per m3) = dm3; one more factor 1000 for cm3.
            self._gas_cm3 += round(gas_wh * 1000 / GAS_KWH_PER_M3)
            self._gas_time = boundary
        self._time = t
        self._registers = self._snapshot()
        return self._registers

    def power_lost(self, t: datetime) -> None:
        """Mains gone at ``t`` (the meter sends nothing while it lasts: the caller's business)."""
        if self._lost_at is None:
            self._lost_at = t.astimezone(UTC)

    def power_restored(self, t: datetime) -> None:
        """Mains back at ``t``: the failure counted, and logged when long (P1 CS object list)."""
        if self._lost_at is None:
            return
        seconds = int((t.astimezone(UTC) - self._lost_at).total_seconds())
        self._lost_at = None
        if seconds <= LONG_FAILURE.total_seconds():
            self.short_failures += 1
            return
        self.long_failures += 1
        self.failure_log = (*self.failure_log, (t.astimezone(UTC).replace(microsecond=0), seconds))[-10:]

    def telegram_at(self, t: datetime) -> bytes:
        """Advance to ``t`` and return the telegram the meter sends at ``t``."""
        r = self.advance(t)
        # Mains voltage wandering 228.0-232.9 V, a fixed function of the minute (no clock, no RNG).
        v = 228.0 + ((int(r.time.timestamp()) // 60 * 7919 + self.profile.seed) % 50) / 10
        amps = round(r.import_w / v) if r.import_w else round(r.export_w / v)
        lines: list[tuple[str, Sequence[str]]] = [
            ("1-3:0.2.8", ("50",)),
            ("0-0:1.0.0", (format_timestamp(r.time, self.tz),)),
            ("0-0:96.1.1", (hex_encode(self.equipment_id),)),
            ("1-0:1.8.1", (_kwh(r.import_t1_wh),)),
            ("1-0:1.8.2", (_kwh(r.import_t2_wh),)),
            ("1-0:2.8.1", (_kwh(r.export_t1_wh),)),
            ("1-0:2.8.2", (_kwh(r.export_t2_wh),)),
            ("0-0:96.14.0", (f"{r.tariff:04d}",)),
            ("1-0:1.7.0", (_kw(r.import_w),)),
            ("1-0:2.7.0", (_kw(r.export_w),)),
            ("0-0:96.7.21", (f"{self.short_failures:05d}",)),
            ("0-0:96.7.9", (f"{self.long_failures:05d}",)),
            (
                "1-0:99.97.0",
                (
                    str(len(self.failure_log)),
                    "0-0:96.7.19",
                    *(
                        part
                        for end, seconds in self.failure_log
                        for part in (format_timestamp(end, self.tz), f"{seconds:010d}*s")
                    ),
                ),
            ),
            ("1-0:32.32.0", (f"{self.sags:05d}",)),
            ("1-0:32.36.0", (f"{self.swells:05d}",)),
            ("0-0:96.13.0", ("",)),
            ("1-0:32.7.0", (f"{v:05.1f}*V",)),
            ("1-0:31.7.0", (f"{amps:03d}*A",)),
            ("1-0:21.7.0", (_kw(r.import_w),)),
            ("1-0:22.7.0", (_kw(r.export_w),)),
        ]
        if self.gas_equipment_id is not None:
            lines += [
                ("0-1:24.1.0", ("003",)),
                ("0-1:96.1.0", (hex_encode(self.gas_equipment_id),)),
                ("0-1:24.2.1", (format_timestamp(r.gas_time, self.tz), _m3(r.gas_dm3))),
            ]
        return encode_telegram(self.header, lines)

    def _snapshot(self) -> DsmrRegisters:
        t = self._time
        net = self.profile.net_import_w(t)
        i1, i2, e1, e2 = (init + mwh // 1000 for init, mwh in zip(self._initial, self._mwh, strict=True))
        return DsmrRegisters(
            time=t,
            import_t1_wh=i1,
            import_t2_wh=i2,
            export_t1_wh=e1,
            export_t2_wh=e2,
            gas_dm3=self._initial_gas_dm3 + self._gas_cm3 // 1000,
            gas_time=self._gas_time,
            tariff=tariff_at(t, self.tz),
            import_w=max(0, round(net)),
            export_w=max(0, round(-net)),
        )
