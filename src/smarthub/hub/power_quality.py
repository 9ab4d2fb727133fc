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

Power failures in any phase (:data:`~smarthub.model.reading_type.SHORT_FAILURES` 0-0:96.7.21 and
:data:`~smarthub.model.reading_type.LONG_FAILURES` 0-0:96.7.9, DSMR and DLMS number them alike)
are counters like the sag and swell ones: their advance per period. The failure log's entries
(0-0:96.7.19 readings: duration in seconds at the failure's end, as :mod:`smarthub.meters.dsmr`
reads 1-0:99.97.0) become :data:`~smarthub.model.reading_type.FAILURE_SECONDS`: per period, the
seconds of the long failures that *ended* in it (the log's time stamp; the period is written when
a later reading of the meter arrives, so two failures ending in one 10 minutes are one record of
their sum), its register the newest end seen. Why the end and not the start: the meter writes
the entry when supply returns and the hub reads it within seconds, so the record lands in the
period being written, never in one the GDSC has already pulled; the duration gives the start.
An entry counts once: only entries ending after the newest one seen are new, and entries that
ended before the hub first heard the meter are its past, not recorded (a meter's log holds its
last 10 failures, placeholders of a never-set clock included).

**Durable.** A feeder outage takes the hub down with its meter: the counter rises and the log
gains its entry while the hub is off, so what the hub had seen must outlive it.
:meth:`PowerQuality.resume` takes each counter's and the log's newest record back from the
history (``register_end`` is the counter's value, or the newest end seen) after a restart; the
first reading after it is counted from there instead of setting a new baseline.

Opt-in per hub (``[power_quality] enabled = true`` in ``hub.toml``, the network operator's
request through its supplier): it adds up to 18 channels of 144 values a day per meter.
Pure: no clock, no I/O; :meth:`PowerQuality.observe` takes readings, returns interval records
(:func:`from_history` reads the history it is given).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from smarthub.hub.intervals import IntervalRecord
from smarthub.model.obis import ObisCode
from smarthub.model.reading import Reading
from smarthub.model.reading_type import (
    FAILURE_SECONDS,
    LONG_FAILURES,
    PHASES,
    QUALITY_PERIOD,
    SHORT_FAILURES,
)

VOLTAGES = {ObisCode(1, 0, c, 7, 0): c for c in PHASES}
COUNTERS = {ObisCode(1, 0, c, d, 0) for c in PHASES for d in (32, 36)} | {SHORT_FAILURES, LONG_FAILURES}
FAILURE_LOG = FAILURE_SECONDS  # a log entry: seconds, at the failure's end (and its channel)
DURABLE = frozenset(COUNTERS | {FAILURE_LOG})  # the channels :meth:`PowerQuality.resume` reads


class History(Protocol):
    """What :func:`from_history` reads of the hub's history (:class:`smarthub.hub.history.HistoryStore`)."""

    def channels(self) -> list[tuple[str, ObisCode]]: ...
    def last(self, meter: str, obis: ObisCode) -> IntervalRecord | None: ...


def from_history(history: History) -> PowerQuality:
    """A summary that takes up each meter's counters and failure log where ``history`` left
    them (the hub's start: :meth:`PowerQuality.resume`)."""
    pq = PowerQuality()
    pq.resume(
        rec
        for meter, obis in history.channels()
        if obis in DURABLE and (rec := history.last(meter, obis)) is not None
    )
    return pq


@dataclass
class _Log:
    seen: int  # epoch seconds: entries ending at or before this are not new
    start: int | None = None  # the period being summed (its start), if any
    seconds: int = 0


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
    # (meter, counter) -> its value when the hub last wrote it (resume): the next value counts from it
    _resumed: dict[tuple[str, ObisCode], int] = field(default_factory=dict)
    _logs: dict[str, _Log] = field(default_factory=dict)

    def observe(self, readings: Iterable[Reading]) -> list[IntervalRecord]:
        readings = list(readings)
        out: list[IntervalRecord] = []
        # The newest non-log time per meter: the telegram's, which closes a log period before it
        # and marks where a meter first heard begins (its older entries are its past).
        now: dict[str, int] = {}
        for r in readings:
            if r.obis != FAILURE_LOG:
                t = int(r.time.timestamp())
                if t > now.get(r.meter, -(2**62)):
                    now[r.meter] = t
        entries = []
        for r in readings:
            if r.obis in VOLTAGES:
                out += self._voltage(r)
            elif r.obis in COUNTERS:
                out += self._counter(r)
            elif r.obis == FAILURE_LOG:
                entries.append(r)
        # Oldest first: meters list their log either way round, and several entries can be new
        # at once (a hub that was off through more than one failure).
        for r in sorted(entries, key=lambda r: r.time):
            out += self._log_entry(r, now.get(r.meter))
        for meter, t in now.items():
            log = self._logs.get(meter)
            if log is None:
                self._logs[meter] = _Log(seen=t)
            elif log.start is not None and t - t % self.period > log.start:
                out.append(self._close_log(meter, log))
        return out

    def resume(self, records: Iterable[IntervalRecord]) -> None:
        """Take up the counters and the log where the history left them (module docstring):
        ``records`` are the newest of each meter's counter and failure-log channels."""
        for rec in records:
            if rec.obis in COUNTERS:
                self._resumed[(rec.meter, rec.obis)] = rec.register_end
            elif rec.obis == FAILURE_LOG:
                log = self._logs.setdefault(rec.meter, _Log(seen=rec.register_end))
                log.seen = max(log.seen, rec.register_end)
            else:
                continue
            if rec.obis in (SHORT_FAILURES, LONG_FAILURES) and rec.meter not in self._logs:
                # No log record yet: the meter was watched until this period's end at least.
                self._logs[rec.meter] = _Log(seen=rec.end)

    def _log_entry(self, r: Reading, now: int | None) -> list[IntervalRecord]:
        if not isinstance(r.value, Decimal | int):
            return []
        log = self._logs.get(r.meter)
        end = int(r.time.timestamp())
        if log is None:
            if now is None:
                return []  # no telegram time to tell the meter's past from what is new
            log = self._logs[r.meter] = _Log(seen=now)
        if end <= log.seen:
            return []
        log.seen = end
        slot = end - end % self.period
        out: list[IntervalRecord] = []
        if log.start is not None and slot > log.start:
            out.append(self._close_log(r.meter, log))
        if log.start is None:
            log.start, log.seconds = slot, 0
        log.seconds += int(r.value)
        return out

    def _close_log(self, meter: str, log: _Log) -> IntervalRecord:
        assert log.start is not None
        rec = IntervalRecord(meter, FAILURE_LOG, log.start, self.period, log.seconds, log.seen, 0, 0)
        log.start, log.seconds = None, 0
        return rec

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
        if held is None and key in self._resumed:
            # After a restart: counted from the value last written, in the period read now.
            base = self._resumed.pop(key)
            if value >= base:
                self._counts[key] = (slot, base, value)
                return []
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
