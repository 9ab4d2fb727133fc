"""Loss and return of mains at the premises: the hub's diagnosis that sends the last gasp.

Part of the hub's diagnostics (:class:`smarthub.hub.diagnostics.Diagnostics` feeds it every
decoded frame). Mains loss is told by, in order of speed:

1. **the hub's own supply** — the power supply's power-good line drops
   (:meth:`MainsMonitor.supply_lost`, called by the platform's supervisor; in the simulated
   fleet, by the fault injector): the last gasp goes out from the hold-up energy at once;
2. **the supply voltage collapsing** — every phase voltage a meter reports (1-0:32.7.0,
   52.7.0, 72.7.0) below :attr:`MainsMonitor.collapse_v` (half of 230 V; EN 50160 §3.11 calls an
   interruption a voltage below 5 %, but a register read during the collapse only sees it on the
   way down);
3. **the meter's power-failure records** — after the fact: a new entry in the power-failure
   event log (DSMR 1-0:99.97.0, P1 Companion Standard §6.12; the DLMS power-failure event log
   0-0:99.97.0 of the Blue Book's event logs) that the hub did not announce (it had no hold-up
   energy left, or was itself off) is sent as a late restoration with the meter's duration.

On return of mains the restoration notice waits up to :attr:`MainsMonitor.record_wait` for the
meter's own record of the failure (its log entry gives the end and the duration as the meter,
which rides on the supply, saw them); failing that the hub's own times are sent, flagged
:attr:`~smarthub.wan.contract.alerts.Cause.HUB_CLOCK`. Short interruptions (under three minutes,
EN 50160 §3.12) that the hub rode through are counted by the meter (0-0:96.7.21) and reported
through power quality, not as outages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from smarthub.hub.alerts import AlertSender
from smarthub.wan.contract.alerts import Alert, AlertKind, Cause
from smarthub.wan.contract.diagnosis import DiagnosisCode

if TYPE_CHECKING:
    from smarthub.clock import Clock
    from smarthub.hub.diagnostics import DiagnosticsLog
    from smarthub.model.datapoint import DataPoint

log = logging.getLogger(__name__)

NOMINAL_V = Decimal(230)
PHASE_VOLTAGES = ("1-0:32.7.0", "1-0:52.7.0", "1-0:72.7.0")
# A data point per entry of the log: 0-0:96.7.19 (duration of a long power failure in any phase,
# the object the log captures), time = end of the failure, value = seconds (meters.dsmr).
FAILURE_LOG = "0-0:96.7.19"
LONG_INTERRUPTION = timedelta(minutes=3)  # EN 50160 §3.12: long interruptions last over 3 min
DEVICE = "mains"


@dataclass
class _Outage:
    lost_at: datetime
    cause: Cause
    restored_at: datetime | None = None
    deadline: datetime | None = None  # restoration: send with the hub's times at this instant


class MainsMonitor:
    """Watches mains and sends the alerts (module docstring)."""

    def __init__(
        self,
        hub_id: str,
        sender: AlertSender | None,
        log_: DiagnosticsLog | None = None,
        *,
        collapse_v: Decimal = NOMINAL_V / 2,
        record_wait: timedelta = timedelta(minutes=3),
        clock: Clock | None = None,
    ) -> None:
        self.hub_id = hub_id
        self.clock = clock  # stamps what is sent (a late tick must not date its alert back)
        self.sender = sender
        self.log = log_
        self.collapse_v = collapse_v
        self.record_wait = record_wait
        self.outage: _Outage | None = None
        self._timer: asyncio.Task[None] | None = None
        self._log_seen: dict[str, datetime] = {}  # meter -> end of the newest failure-log entry seen

    # -- the supply ------------------------------------------------------------------------
    @property
    def lost(self) -> bool:
        return self.outage is not None and self.outage.restored_at is None

    def supply_lost(self, t: datetime, cause: Cause = Cause.HUB_SUPPLY) -> Alert | None:
        """Mains gone: the last gasp, one datagram; the diagnosis is written on restoration."""
        if self.lost:
            return None
        if self.outage is not None:  # a restoration still waiting for the meter's record
            self._send_restoration(self.outage, None, t)
        self.outage = _Outage(t, cause)
        alert = None
        if self.sender is not None:
            alert = self.sender.send(
                lambda seq: Alert(AlertKind.LAST_GASP, self.hub_id, seq, t, t, 0, cause), t
            )
        return alert  # nothing written now: the hold-up energy is for the datagram

    def supply_restored(self, t: datetime) -> None:
        """Mains back: the restoration waits for the meter's record (at most ``record_wait``)."""
        if not self.lost:
            return
        assert self.outage is not None
        self.outage.restored_at = t
        self.outage.deadline = t + self.record_wait
        if self.clock is not None:  # its own timer: not behind the housekeeping's repairs
            with contextlib.suppress(RuntimeError):  # no running loop: tick() sends it
                self._timer = asyncio.get_running_loop().create_task(self._restore_later(self.outage))
        if self.log is not None:  # the diagnosis, written once mains is back (the GDSC pulls it)
            o = self.outage
            minutes = round((t - o.lost_at).total_seconds() / 60)
            self.log.record(
                DiagnosisCode.POWER_FAILURE,
                DEVICE,
                "hub",
                o.lost_at,
                f"mains lost ({o.cause.name.lower()}) for {minutes} min",
                {"lost_at": o.lost_at.isoformat(), "restored_at": t.isoformat()},
            )
            self.log.close(DiagnosisCode.POWER_FAILURE, DEVICE, t, "mains restored")

    async def _restore_later(self, o: _Outage) -> None:
        assert self.clock is not None and o.deadline is not None
        await self.clock.sleep_until(o.deadline)
        if self.outage is o:
            self._send_restoration(o, None, self.clock.now())

    def tick(self, now: datetime) -> Alert | None:
        """The restoration with the hub's own times once no meter record came; reserve sequence
        numbers while mains is up."""
        if self.sender is not None and not self.lost:
            self.sender.replenish()
        o = self.outage
        if o is not None and o.deadline is not None and now >= o.deadline:
            return self._send_restoration(o, None, now)
        return None

    # -- what the meters say ---------------------------------------------------------------
    def observe(self, points: Sequence[DataPoint], received: datetime) -> list[Alert]:
        out: list[Alert] = []
        volts = [p.value for p in points if p.key in PHASE_VOLTAGES and isinstance(p.value, Decimal)]
        if volts and all(v < self.collapse_v for v in volts) and not self.lost:
            if (a := self.supply_lost(received, Cause.VOLTAGE_COLLAPSE)) is not None:
                out.append(a)
        elif (
            volts
            and self.outage is not None
            and self.outage.restored_at is None
            and self.outage.cause is Cause.VOLTAGE_COLLAPSE
            and all(v >= self.collapse_v for v in volts)
        ):
            self.supply_restored(received)
        for p in points:
            if p.key != FAILURE_LOG or not isinstance(p.value, Decimal) or p.time is None:
                continue
            seen = self._log_seen.get(p.meter)
            if seen is not None and p.time <= seen:
                continue
            first_look = seen is None
            self._log_seen[p.meter] = p.time
            duration = timedelta(seconds=int(p.value))
            o = self.outage
            near = self.record_wait + timedelta(minutes=1)
            if o is not None and o.restored_at is not None and abs(p.time - o.restored_at) <= near:
                # The meter's record of the failure the hub announced (its end near the hub's).
                if (a := self._send_restoration(o, (p.meter, p.time, duration), received)) is not None:
                    out.append(a)
                continue
            if not first_look and o is None and duration >= LONG_INTERRUPTION:
                # A long failure the hub never announced: report it from the meter's record.
                late = _Outage(p.time - duration, Cause.METER_EVENT, p.time)
                if (a := self._send_restoration(late, (p.meter, p.time, duration), received)) is not None:
                    out.append(a)
        return out

    def _send_restoration(
        self, o: _Outage, record: tuple[str, datetime, timedelta] | None, now: datetime
    ) -> Alert | None:
        if o is self.outage:
            self.outage = None
        if record is not None:
            meter, end, duration = record
            lost_at, seconds, cause, source = (
                end - duration,
                int(duration.total_seconds()),
                Cause.METER_EVENT,
                meter,
            )
        else:
            restored = o.restored_at or now
            lost_at, seconds, cause, source = (
                o.lost_at,
                int((restored - o.lost_at).total_seconds()),
                Cause.HUB_CLOCK,
                "",
            )
        if self.sender is None:
            return None
        sent = self.clock.now() if self.clock is not None else now
        return self.sender.send(
            lambda seq: Alert(
                AlertKind.RESTORATION, self.hub_id, seq, sent, lost_at, max(seconds, 0), cause, source
            ),
            now,
        )
