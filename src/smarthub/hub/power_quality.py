"""Power quality at the hub: its meters' phase voltages summarised per 10-minute period (EN 50160
aggregates voltage over 10 minutes), and their sag and swell counters turned into counts per
period, kept in the hub's history as interval channels the GDSC pulls like any other
(:data:`smarthub.model.reading_type.quality_channels`: the OBIS codes and the 2030.5 ReadingType
of each).

From every reading of 1-0:32.7.0 / 52.7.0 / 72.7.0 (instantaneous voltage L1/L2/L3, as DSMR P1
telegrams, DLMS push lists and IEC 62056-21 readouts carry it) the period's minimum (D = 3),
mean of the samples (D = 5, "last average") and maximum (D = 6) are kept in 0.1 V; from the
counters 1-0:32.32.0 / 32.36.0 (sags / swells on L1, and 52.x, 72.x for L2, L3: DSMR and DLMS
number them alike) the advance over the period. A period is written when the first sample of a
later period arrives (the samples of one meter come in time order; a late one is dropped and
counted). A meter's first counter value only sets the baseline; a counter that goes backwards
(a meter reset) sets a new one; after a gap in the samples the period before it takes the gap's
events (records stay on the 10-minute grid).

Opt-in per hub (``[power_quality] enabled = true`` in ``hub.toml``, the network operator's
request through its supplier): it adds up to 15 channels of 144 values a day per meter.
Pure: no clock, no I/O; :meth:`PowerQuality.observe` takes readings, returns interval records.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from smarthub.hub.intervals import IntervalRecord
from smarthub.model.obis import ObisCode
from smarthub.model.reading import Reading
from smarthub.model.reading_type import PHASES, QUALITY_PERIOD

VOLTAGES = {ObisCode(1, 0, c, 7, 0): c for c in PHASES}
COUNTERS = {ObisCode(1, 0, c, d, 0) for c in PHASES for d in (32, 36)}


@dataclass
class _Period:
    start: int
    low: int
    high: int
    total: int = 0
    n: int = 0


@dataclass
class PowerQuality:
    period: int = QUALITY_PERIOD
    late: int = 0  # samples older than the period being summarised (dropped)
    _volts: dict[tuple[str, int], _Period] = field(default_factory=dict)
    # (meter, counter) -> (period start, value at its start, last value)
    _counts: dict[tuple[str, ObisCode], tuple[int, int, int]] = field(default_factory=dict)

    def observe(self, readings: Iterable[Reading]) -> list[IntervalRecord]:
        out: list[IntervalRecord] = []
        for r in readings:
            if r.obis in VOLTAGES:
                out += self._voltage(r)
            elif r.obis in COUNTERS:
                out += self._counter(r)
        return out

    def _slot(self, r: Reading) -> int:
        t = int(r.time.timestamp())
        return t - t % self.period

    def _voltage(self, r: Reading) -> list[IntervalRecord]:
        if not isinstance(r.value, Decimal | int):
            return []
        base, _ = r.in_base_unit()
        decivolts = int((Decimal(base) * 10).to_integral_value())
        c = VOLTAGES[r.obis]
        key, slot = (r.meter, c), self._slot(r)
        cur = self._volts.get(key)
        out: list[IntervalRecord] = []
        if cur is not None and slot < cur.start:
            self.late += 1
            return out
        if cur is not None and slot > cur.start:
            out = self._close_voltage(r.meter, c, cur)
            cur = None
        if cur is None:
            cur = self._volts[key] = _Period(slot, decivolts, decivolts)
        cur.low, cur.high = min(cur.low, decivolts), max(cur.high, decivolts)
        cur.total += decivolts
        cur.n += 1
        return out

    def _close_voltage(self, meter: str, c: int, p: _Period) -> list[IntervalRecord]:
        mean = (p.total + p.n // 2) // p.n
        return [
            IntervalRecord(meter, ObisCode(1, 0, c, d, 0), p.start, self.period, v, v, -1, 0)
            for d, v in ((5, mean), (3, p.low), (6, p.high))
        ]

    def _counter(self, r: Reading) -> list[IntervalRecord]:
        if not isinstance(r.value, Decimal | int):
            return []
        value = int(r.value)
        key, slot = (r.meter, r.obis), self._slot(r)
        held = self._counts.get(key)
        if held is None or value < held[2]:  # first value, or the meter reset its counter
            self._counts[key] = (slot, value, value)
            return []
        start, base, _ = held
        if slot < start:
            self.late += 1
            return []
        if slot == start:
            self._counts[key] = (start, base, value)
            return []
        # The value read in a later period: the advance up to it is counted in the period that
        # ended (after a gap in the samples, that period takes the whole gap's events: records
        # stay on the 10-minute grid the GDSC stores).
        self._counts[key] = (slot, value, value)
        return [IntervalRecord(r.meter, r.obis, start, self.period, value - base, value, 0, 0)]
