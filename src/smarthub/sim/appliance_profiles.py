"""Simulated smart plugs: ZigBee SE metering devices measuring one appliance each.

A smart plug on the HAN is a ZigBee Smart Energy electric meter (Metering cluster 0x0702)
that measures the appliance plugged into it; it is driven here by an :class:`ApplianceProfile`
in place of a household profile, through the same :class:`ZigbeeMeterSimulator` (and so the
same frames) as a whole-home ZigBee meter.

An appliance's power is piecewise constant per minute (local time): a base load plus runs at
given local times (a washing machine at 19:00, a kettle at breakfast, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
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
