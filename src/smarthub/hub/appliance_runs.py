"""Appliance runs at the hub: how often a smart plug's appliance starts and how long it runs.

A half-hour's energy cannot tell a heat pump that ran three 10-minute bursts from one that ran
30 minutes at a third of its power, nor a boiler cycling every 12 minutes from one cycling every
two hours at the same duty: short-cycling (issue 25) is counted in *starts* and *run times*, and
only the hub sees those, in the plug's InstantaneousDemand (ZigBee SE Metering 0x0400, read as
1-0:1.7.0 on every poll or report). From the demand samples of each watched meter (the home's
smart plugs, :class:`smarthub.assembly.hub.HubAssembly` decides) it keeps two channels per
half-hour (:data:`~smarthub.model.reading_type.APPLIANCE_STARTS`,
:data:`~smarthub.model.reading_type.APPLIANCE_RUN_SECONDS`): the number of times the appliance
started and the seconds it ran, which leave the home with the plug's energy and under the same
consent (``hub.submeters``).

**What a run is.** The appliance runs while its demand is at least :data:`RUN_FRACTION` of the
largest the hub has seen from the plug (and at least :data:`RUN_FLOOR_W`), and stops when it
falls below half that (hysteresis: a modulating compressor hovering at the threshold is one run,
not many). Relative, because the hub does not know the appliance: a heat pump's compressor draws
kilowatts over a controller's tens of watts; a gas boiler's fan and pump a hundred watts over its
standby. A start is an off sample followed by an on sample.

**Sample and hold.** Each sample's state holds until the next; the seconds between two samples
go to the half-hours they fall in. So a run is measured to within the sampling interval (the
simulated fleet polls plugs every 2 minutes; a plug reporting on change is exact), and a run or
pause shorter than it can be missed: counts are a lower bound, never inflated. A silence longer
than :data:`MAX_GAP` (the plug unreachable) is unknown: neither seconds nor a start are counted
across it. The largest demand seen outlives a restart: it is the seconds-run channel's register
(``register_end``), taken back from the history at the hub's start (:func:`from_history`); a plug
the history knows nothing of starts from nothing (until the appliance's first full-power run its
standby may count as running: one long run, fewer starts, again never more).

A half-hour is written when the first sample of a later half-hour arrives (the samples of one
meter come in time order; a late one is dropped and counted). Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from smarthub.hub.intervals import PERIOD, IntervalRecord
from smarthub.model.obis import IMPORT_ACTIVE_POWER, ObisCode
from smarthub.model.reading import Reading
from smarthub.model.reading_type import APPLIANCE_RUN_SECONDS, APPLIANCE_STARTS

RUN_FRACTION = 0.2  # running: at least a fifth of the largest demand seen from the plug ...
RUN_FLOOR_W = 10.0  # ... and at least this (a plug's own standby and an idle appliance's are less)
MAX_GAP = 600  # seconds: samples further apart than this leave the time between them unknown


class History(Protocol):
    """What :func:`from_history` reads of the hub's history (:class:`smarthub.hub.history.HistoryStore`)."""

    def channels(self) -> list[tuple[str, ObisCode]]: ...
    def last(self, meter: str, obis: ObisCode) -> IntervalRecord | None: ...


def from_history(history: History, watch: Callable[[str], bool]) -> ApplianceRuns:
    """A counter that knows each plug's largest demand from ``history`` (the hub's start)."""
    runs = ApplianceRuns(watch)
    runs.resume(
        rec
        for meter, obis in history.channels()
        if obis == APPLIANCE_RUN_SECONDS and (rec := history.last(meter, obis)) is not None
    )
    return runs


@dataclass
class _Plug:
    t: int  # the last sample's time (epoch seconds)
    on: bool  # its state, held until the next sample
    peak: float  # the largest demand seen, W
    slot: int  # the half-hour being summed (its start)
    starts: int = 0
    seconds: int = 0


@dataclass
class ApplianceRuns:
    watch: Callable[[str], bool]  # the meters whose runs are counted (the plugs)
    period: int = PERIOD
    late: int = 0  # samples older than the meter's last (dropped)
    _plugs: dict[str, _Plug] = field(default_factory=dict)
    _peaks: dict[str, float] = field(default_factory=dict)  # from the history, until a plug's first sample

    def resume(self, records: Iterable[IntervalRecord]) -> None:
        """Take back each plug's largest demand: the register of its newest seconds-run record."""
        for rec in records:
            if rec.obis == APPLIANCE_RUN_SECONDS and rec.register_end > 0:  # -1: restored from the GDSC
                self._peaks[rec.meter] = max(self._peaks.get(rec.meter, 0.0), float(rec.register_end))

    def observe(self, readings: Iterable[Reading]) -> list[IntervalRecord]:
        out: list[IntervalRecord] = []
        for r in readings:
            if r.obis != IMPORT_ACTIVE_POWER or r.is_interval or not isinstance(r.value, Decimal | int):
                continue
            if not self.watch(r.meter):
                continue
            watts, _unit = r.in_base_unit()
            out += self._sample(r.meter, int(r.time.timestamp()), float(watts))
        return out

    def _sample(self, meter: str, t: int, watts: float) -> list[IntervalRecord]:
        plug = self._plugs.get(meter)
        slot = t - t % self.period
        if plug is None:
            # The first sample: its state is known, not when it began (no start counted).
            peak = max(watts, self._peaks.pop(meter, 0.0))
            self._plugs[meter] = _Plug(t, watts >= _threshold(peak), peak, slot)
            return []
        if t <= plug.t:
            self.late += 1
            return []
        plug.peak = max(plug.peak, watts)
        on_at = _threshold(plug.peak)
        on = watts >= on_at if not plug.on else watts >= on_at / 2
        out: list[IntervalRecord] = []
        known = t - plug.t <= MAX_GAP
        # The state read at plug.t held until t: its seconds go to the half-hours they fall in,
        # and the half-hour being summed is written at its end. After an unknown gap only the
        # half-hour of the last sample is written (what was seen of it); those in the gap are not.
        a, written = plug.t, False
        while a < t:
            b = min(t, a - a % self.period + self.period)
            if known and plug.on:
                plug.seconds += b - a
            if b % self.period == 0:
                if not written:
                    out += self._close(meter, plug)
                    written = not known
                plug.slot = b
            a = b
        if on and not plug.on and known:
            plug.starts += 1
        plug.t, plug.on = t, on
        return out

    def _close(self, meter: str, plug: _Plug) -> list[IntervalRecord]:
        recs = [
            IntervalRecord(meter, APPLIANCE_STARTS, plug.slot, self.period, plug.starts, plug.starts, 0, 0),
            # The register: the largest demand seen, W (it outlives a restart: from_history).
            IntervalRecord(
                meter, APPLIANCE_RUN_SECONDS, plug.slot, self.period, plug.seconds, round(plug.peak), 0, 0
            ),
        ]
        plug.starts = plug.seconds = 0
        return recs


def _threshold(peak: float) -> float:
    return max(RUN_FLOOR_W, RUN_FRACTION * peak)
