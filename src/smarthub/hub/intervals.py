"""Half-hourly interval building from register readings (sans-I/O, no clock).

A meter such as a DSMR P1 port reports *registers* (cumulative kWh, m3) every few
seconds; settlement and billing need the advance of each register over every half-hour
(GB settlement periods). For each boundary B the register value at B is the sample taken
exactly at B, or, failing that, the linear interpolation between the last sample before B
and the first after it. An interval's value is the difference of its two boundary values,
so the intervals of a day always add up to the register's advance over the day.

Quality (IEEE 2030.5 qualityFlags): VALID when both boundary values were sampled within
``tolerance`` of the boundary; ESTIMATED_LINEAR_INTERPOLATION otherwise (e.g. after a HAN
outage spanning several boundaries, whose consumption is spread evenly over them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from smarthub.model import ObisCode, Quality
from smarthub.model.obis import counts_since_set_day

PERIOD = 1800  # seconds: a GB settlement period
# The register_end of an interval restored from the GDSC (smarthub.hub.recovery), which keeps
# advances only: no register reading to resume from.
RESTORED_REGISTER = -1


@dataclass(frozen=True, slots=True)
class IntervalRecord:
    """One half-hour of one register: ``value`` is the advance, in units of 10**power_of_ten."""

    meter: str
    obis: ObisCode
    start: int  # epoch seconds, UTC
    duration: int
    value: int
    register_end: int
    power_of_ten: int
    quality: int

    @property
    def end(self) -> int:
        return self.start + self.duration


@dataclass(slots=True)
class _Channel:
    power_of_ten: int
    last_time: int | None = None
    last_value: int = 0
    anchor: int | None = None  # the last boundary whose register value is known
    anchor_value: int = 0
    anchor_quality: Quality = Quality.VALID
    rejected: int = 0


@dataclass
class IntervalBuilder:
    period: int = PERIOD
    tolerance: int = 60
    _channels: dict[tuple[str, ObisCode], _Channel] = field(default_factory=dict)

    def restore(self, last: IntervalRecord) -> None:
        """Resume after a restart from the last stored interval of a channel (not from one
        restored from the GDSC: it carries no register reading)."""
        if last.register_end == RESTORED_REGISTER:
            return
        ch = self._channels.setdefault((last.meter, last.obis), _Channel(last.power_of_ten))
        ch.anchor = ch.last_time = last.end
        ch.anchor_value = ch.last_value = last.register_end
        ch.anchor_quality = Quality.VALID

    def anchor(self, meter: str, obis: ObisCode) -> int | None:
        """The last boundary whose register value is known (epoch seconds), None before the
        first: every half-hour ending at or before it is built, the ones after are still open."""
        ch = self._channels.get((meter, obis))
        return None if ch is None else ch.anchor

    def rejected(self, meter: str, obis: ObisCode) -> int:
        ch = self._channels.get((meter, obis))
        return 0 if ch is None else ch.rejected

    def add(
        self, meter: str, obis: ObisCode, time: int, value: int, power_of_ten: int
    ) -> list[IntervalRecord]:
        """Feed one register sample; returns the intervals it completes (possibly none)."""
        ch = self._channels.get((meter, obis))
        if ch is None:
            ch = self._channels[(meter, obis)] = _Channel(power_of_ten)
        if ch.power_of_ten != power_of_ten:
            raise ValueError(
                f"{meter} {obis}: register scale changed from 10^{ch.power_of_ten} to 10^{power_of_ten}"
            )
        if ch.last_time is None:
            ch.last_time, ch.last_value = time, value
            if time % self.period == 0:
                ch.anchor, ch.anchor_value = time, value
            return []
        if time > ch.last_time and value < ch.last_value and counts_since_set_day(obis):
            # An allocator's restart after its set day: the advance since the last sample is
            # what it counted from zero (the consumption between that sample and the set day's
            # end is the few minutes' before the frame, not known: left out, as the device does).
            ch.anchor_value -= ch.last_value
            ch.last_value = 0
        if time <= ch.last_time or value < ch.last_value:
            # A repeated or out-of-order sample, or a register going backwards: not a basis
            # for billing. Counted so diagnostics can report it; never turned into an interval.
            ch.rejected += 1
            return []
        out: list[IntervalRecord] = []
        first = (ch.last_time // self.period + 1) * self.period
        gap = time - ch.last_time
        for boundary in range(first, time + 1, self.period):
            if boundary == time:
                at_b, q = value, Quality.VALID
            else:
                at_b = ch.last_value + (value - ch.last_value) * (boundary - ch.last_time) // gap
                q = Quality.VALID if gap <= self.tolerance else Quality.ESTIMATED_LINEAR_INTERPOLATION
            if ch.anchor is not None and ch.anchor == boundary - self.period:
                quality = Quality.VALID
                if Quality.ESTIMATED_LINEAR_INTERPOLATION in (q | ch.anchor_quality):
                    quality = Quality.ESTIMATED_LINEAR_INTERPOLATION
                out.append(
                    IntervalRecord(
                        meter,
                        obis,
                        ch.anchor,
                        self.period,
                        at_b - ch.anchor_value,
                        at_b,
                        power_of_ten,
                        int(quality),
                    )
                )
            ch.anchor, ch.anchor_value, ch.anchor_quality = boundary, at_b, q
        ch.last_time, ch.last_value = time, value
        return out
