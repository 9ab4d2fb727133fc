"""Simulated smart plugs: ZigBee SE metering devices measuring one appliance each.

A smart plug on the HAN is a ZigBee Smart Energy electric meter (Metering cluster 0x0702)
that measures the appliance plugged into it; it is driven here by an :class:`ApplianceProfile`
in place of a household profile, through the same :class:`ZigbeeMeterSimulator` (and so the
same frames) as a whole-home ZigBee meter.

An appliance's power is piecewise constant per minute (local time): a base load plus runs at
given local times (a washing machine at 19:00, a kettle at breakfast, ...). For appliance health
(issue 25), :class:`CyclingProfile` (a fridge's compressor, a heat pump or boiler: thermostat
cycles whose duty can drift day by day, or whose cycles turn minutes long from a given day) and
:class:`CycleProfile` (a daily run whose energy can creep up) model appliances wearing out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class ApplianceRun:
    start: time  # local
    minutes: int
    watts: float


@dataclass(frozen=True)
class ApplianceProfile:
    """Power drawn by one appliance; has the methods ZigbeeMeterSimulator asks of a profile."""

    name: str
    base_w: float = 0.0
    runs: tuple[ApplianceRun, ...] = ()
    tz: ZoneInfo = ZoneInfo("Europe/London")  # noqa: RUF009 - ZoneInfo instances are cached, immutable

    def power_w(self, t: datetime) -> float:
        local = t.astimezone(self.tz)
        minute = local.hour * 60 + local.minute
        w = self.base_w
        for run in self.runs:
            s = run.start.hour * 60 + run.start.minute
            if s <= minute < s + run.minutes:
                w += run.watts
        return w

    def net_import_w(self, t: datetime) -> float:
        return self.power_w(t)

    def gas_w(self, t: datetime) -> float:
        return 0.0

    def energy_wh(self, t0: datetime, t1: datetime) -> tuple[float, float, float]:
        """(import Wh, export Wh, gas Wh) from ``t0`` to ``t1``, power constant per minute."""
        t0, t1 = t0.astimezone(UTC), t1.astimezone(UTC)
        wh, t = 0.0, t0
        while t < t1:
            nxt = min(t1, t.replace(second=0, microsecond=0) + _MINUTE)
            wh += self.power_w(t) * (nxt - t).total_seconds() / 3600
            t = nxt
        return wh, 0.0, 0.0


# The appliances the simulated homes have plugs on.
APPLIANCES = (
    ApplianceProfile("Washing machine", 1.0, (ApplianceRun(time(19, 0), 90, 1900.0),)),
    ApplianceProfile("Fridge freezer", 55.0),
    ApplianceProfile(
        "Kettle", 0.0, (ApplianceRun(time(7, 30), 4, 2800.0), ApplianceRun(time(17, 0), 4, 2800.0))
    ),
    ApplianceProfile("TV", 2.0, (ApplianceRun(time(18, 0), 300, 110.0),)),
)


def _day_jitter(seed: int, day: date) -> float:
    """A fixed pseudo-random number in [-1, 1] for ``day`` (the weather, the door opened more)."""
    h = hashlib.blake2b(f"{seed}:{day.isoformat()}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**63 - 1.0


class _MinuteEnergy:
    """``energy_wh`` from ``power_w`` constant per minute, as :class:`ApplianceProfile` has it."""

    def power_w(self, t: datetime) -> float:
        raise NotImplementedError

    def net_import_w(self, t: datetime) -> float:
        return self.power_w(t)

    def gas_w(self, t: datetime) -> float:
        return 0.0

    def energy_wh(self, t0: datetime, t1: datetime) -> tuple[float, float, float]:
        t0, t1 = t0.astimezone(UTC), t1.astimezone(UTC)
        wh, t = 0.0, t0
        while t < t1:
            nxt = min(t1, t.replace(second=0, microsecond=0) + _MINUTE)
            wh += self.power_w(t) * (nxt - t).total_seconds() / 3600
            t = nxt
        return wh, 0.0, 0.0


@dataclass(frozen=True)
class CyclingProfile(_MinuteEnergy):
    """A thermostat-cycled appliance (a fridge's compressor, a heater): on at ``on_w`` for the
    first ``duty`` of every ``period_min`` minutes (local time), during ``hours`` (local
    [start, end) hour pairs; None: all day). The duty cycle of local day k after ``first_day`` is
    ``duty`` × (1 + ``drift_per_day`` × k) × (1 + ``jitter`` × u_k), u_k in [-1, 1] fixed by
    ``seed`` and the day: a worn door seal or a failing thermostat is a positive drift.

    A heat pump's compressor or a boiler's fan and pump is one too, on during its heating
    ``hours``; from the local day ``short_cycle_from`` (if given) it *short-cycles*: the same duty
    in cycles of ``short_period_min`` minutes instead of ``period_min`` (the same heat in bursts
    of a few minutes: an oversized unit, a thermostat in a draught, low flow or a refrigerant
    fault), each day's period ± ``period_jitter`` of it (u fixed by ``seed`` and the day, as the
    duty's)."""

    name: str
    on_w: float
    period_min: int
    duty: float
    first_day: date
    drift_per_day: float = 0.0
    jitter: float = 0.0
    seed: int = 0
    hours: tuple[tuple[int, int], ...] | None = None
    short_cycle_from: date | None = None
    short_period_min: int = 12
    period_jitter: float = 0.0
    tz: ZoneInfo = ZoneInfo("Europe/London")  # noqa: RUF009 - cached, immutable

    def duty_on(self, day: date) -> float:
        k = (day - self.first_day).days
        d = self.duty * (1 + self.drift_per_day * max(0, k)) * (1 + self.jitter * _day_jitter(self.seed, day))
        return min(1.0, max(0.0, d))

    def period_on(self, day: date) -> int:
        """The cycle's length on ``day``, in whole minutes (at least 2: one on, one off)."""
        short = self.short_cycle_from is not None and day >= self.short_cycle_from
        period = self.short_period_min if short else self.period_min
        u = _day_jitter(self.seed + 7919, day)  # another draw than the duty's
        return max(2, round(period * (1 + self.period_jitter * u)))

    def power_w(self, t: datetime) -> float:
        local = t.astimezone(self.tz)
        if self.hours is not None and not any(a <= local.hour < b for a, b in self.hours):
            return 0.0
        period = self.period_on(local.date())
        phase = (local.hour * 60 + local.minute) % period
        on = self.duty_on(local.date()) * period  # minutes on in each cycle
        # Constant per minute: the minute the thermostat opens in draws its part of the minute.
        return self.on_w * min(1.0, max(0.0, on - phase))


@dataclass(frozen=True)
class CycleProfile(_MinuteEnergy):
    """An appliance run once a day (a washing machine at ``start``, ``minutes`` long at ``watts``),
    each day's run drawing ``drift_per_day`` more than the day before from ``first_day`` (scale on
    the heating element: it heats longer for the same wash), ± ``jitter`` (the load)."""

    name: str
    start: time
    minutes: int
    watts: float
    first_day: date
    drift_per_day: float = 0.0
    jitter: float = 0.0
    seed: int = 0
    base_w: float = 1.0
    tz: ZoneInfo = ZoneInfo("Europe/London")  # noqa: RUF009 - cached, immutable

    def power_w(self, t: datetime) -> float:
        local = t.astimezone(self.tz)
        s = self.start.hour * 60 + self.start.minute
        minute = local.hour * 60 + local.minute
        if not s <= minute < s + self.minutes:
            return self.base_w
        k = max(0, (local.date() - self.first_day).days)
        scale = (1 + self.drift_per_day * k) * (1 + self.jitter * _day_jitter(self.seed, local.date()))
        return self.base_w + self.watts * scale
