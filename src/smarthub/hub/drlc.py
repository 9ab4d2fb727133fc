"""The hub's IEEE 2030.5 Demand Response / Load Control client (DRLC function set, §10.7).

**How events arrive.** The GDSC delivers an ``EndDeviceControl`` (2030.5 XML) as the body of a
signed management command (``drlc.event``), and pulls the hub's responses with another
(``drlc.responses``). 2030.5 has the client poll a ``DemandResponseProgram`` on a server; here
the roles are turned round (the hub is the server, the GDSC never serves), so a program the
GDSC writes to the hub would need a write endpoint with its own authorisation, counters and
audit. The management channel already has all three (operator signature, a counter that only
rises, a log of every command), so events ride on it and keep their 2030.5 XML unchanged.
The one program is the GDSC's; there is no primacy between programs.

**Event rules** (§10.7 and the Event / RandomizableEvent rules it builds on):

* *Randomisation*: ``randomizeStart`` and ``randomizeDuration`` (−3600..3600 s) bound a random
  offset chosen once per device and event and applied to the start and to the duration, so a
  fleet does not switch in step. The draw is seeded by the hub's LFDI and the event's mRID, and
  the effective times are stored with the event, so a restart keeps them.
* *Superseding*: a newer event (later ``creationTime``) whose interval overlaps an older one
  supersedes it. An older event not yet started is dropped at once; one already active runs
  until the newer event takes effect. Either way its last response is *Event Superseded* (7).
  An event that arrives already superseded by one held is answered 7 at once.
* *Cancellation*: the same mRID with ``EventStatus/currentStatus`` 2 (cancelled) ends the event
  now (or, 3, after the event's own random start offset); response *Event Cancelled* (6).
* *Opt-out*: the consumer may opt out of any event not finished, at the IHD: response 4 at once;
  at the end, 10 (no participation) if opted out before it started, 8 (partial, opt-out) if
  during it. An appliance that could not follow the event within the consumer's own limits
  (a deadline it would miss) also makes the completion 8 rather than 3.
* An event received after its end is refused with 254; one without a control an on/off load
  can follow (only ``SetPoint`` or ``TargetReduction``) with 252; a malformed one with 253.

Responses are recorded as they happen (SQLite, WAL, ``synchronous=FULL``) and served as a 2030.5
``ResponseList`` of ``DrResponse`` filtered by the event's ``responseRequired`` bits: bit 0 the
*received* response, bit 1 every specific response, bit 2 the user's (opt-out) responses. Only
events whose ``deviceCategory`` matches one of the home's appliances are answered at all.

The XML is read and written with lxml in the XSD's element order: envoy-schema's
``EndDeviceControlResponse`` model leaves out the control elements (``DutyCycle``, ``Offset``,
``ApplianceLoadReduction``) this client acts on.
"""

from __future__ import annotations

import enum
import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from smarthub.hub import sqlite_files
from smarthub.wan.contract.bodies import DrlcEvent, DrlcResponses
from smarthub.wan.contract.drlc import (  # noqa: F401  (InvalidEvent, NS: this module's API)
    CANCELLED,
    CANCELLED_RANDOM,
    NS,
    SUPERSEDED,
    EndDeviceControl,
    InvalidEvent,
    ResponseStatus,
    parse_end_device_control,
    response_list_xml,
)

# -- the client -----------------------------------------------------------------------------------


class EventState(enum.StrEnum):
    SCHEDULED = "scheduled"
    ACTIVE = "active"
    DONE = "done"  # completed, cancelled, superseded, refused: nothing more will happen


@dataclass(frozen=True)
class HeldEvent:
    control: EndDeviceControl
    effective_start: datetime
    effective_end: datetime
    state: EventState
    opted_out: datetime | None = None
    superseded: bool = False
    cancelled: bool = False
    limited: bool = False  # an appliance could not follow it within the consumer's limits

    @property
    def mrid(self) -> str:
        return self.control.mrid

    def in_effect(self, t: datetime) -> bool:
        return self.effective_start <= t < self.effective_end


@dataclass(frozen=True)
class DrlcResponse:
    id: int
    mrid: str
    status: ResponseStatus
    at: datetime
    required: int  # the event's responseRequired bits, to filter what is served


_SERVE_BITS = {ResponseStatus.RECEIVED: 0b001, ResponseStatus.OPTED_OUT: 0b110}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS drlc_events (
    mrid TEXT PRIMARY KEY,
    xml BLOB NOT NULL,
    effective_start INTEGER NOT NULL,
    effective_end INTEGER NOT NULL,
    state TEXT NOT NULL,
    opted_out INTEGER,
    superseded INTEGER NOT NULL DEFAULT 0,
    cancelled INTEGER NOT NULL DEFAULT 0,
    limited INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS drlc_responses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    mrid TEXT NOT NULL,
    status INTEGER NOT NULL,
    at INTEGER NOT NULL,
    required INTEGER NOT NULL
);
"""

# Migrations: 1 is the schema when versions began (its IF NOT EXISTS adopts an unversioned file).
SCHEMA = sqlite_files.Schema("DRLC", [_SCHEMA])


class DrlcClient:
    """Holds the events, moves them through their lives on the injected time, records responses.

    ``categories`` is the union of the home's appliances' DeviceCategoryType bits (events for
    none of them are held but never answered, as §10.7 requires)."""

    def __init__(self, db_path: Path | str, lfdi: str, categories: int = 0) -> None:
        self.lfdi = lfdi.upper()
        self.categories = categories
        self._file = sqlite_files.open_database(db_path, SCHEMA)
        self._db, self._lock = self._file.connection, self._file.lock

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- storage -------------------------------------------------------------------------------

    def events(self) -> list[HeldEvent]:
        with self._lock:
            rows = self._db.execute(
                "SELECT xml, effective_start, effective_end, state, opted_out, superseded, cancelled, limited"
                " FROM drlc_events ORDER BY effective_start, mrid"
            ).fetchall()
        return [
            HeldEvent(
                parse_end_device_control(x),
                _t(s),
                _t(e),
                EventState(st),
                None if o is None else _t(o),
                bool(sup),
                bool(c),
                bool(lim),
            )
            for x, s, e, st, o, sup, c, lim in rows
        ]

    def event(self, mrid: str) -> HeldEvent | None:
        return next((e for e in self.events() if e.mrid == mrid.upper()), None)

    def _save(self, ev: HeldEvent, responses: Iterable[ResponseStatus], at: datetime) -> None:
        """The event's new state and the responses it gives, in one transaction."""
        with self._file.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO drlc_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ev.mrid,
                    ev.control.to_xml(),
                    _s(ev.effective_start),
                    _s(ev.effective_end),
                    ev.state.value,
                    None if ev.opted_out is None else _s(ev.opted_out),
                    int(ev.superseded),
                    int(ev.cancelled),
                    int(ev.limited),
                ),
            )
            if ev.control.device_category & self.categories:
                for status in responses:
                    self._db.execute(
                        "INSERT INTO drlc_responses(mrid, status, at, required) VALUES (?, ?, ?, ?)",
                        (ev.mrid, int(status), _s(at), ev.control.response_required),
                    )

    def _record_refusal(self, ctl: EndDeviceControl, status: ResponseStatus, at: datetime) -> None:
        """A response about an event this hub does not hold (refused, or cancelled unseen)."""
        if not ctl.device_category & self.categories:
            return
        with self._lock:
            self._db.execute(
                "INSERT INTO drlc_responses(mrid, status, at, required) VALUES (?, ?, ?, ?)",
                (ctl.mrid, int(status), _s(at), ctl.response_required),
            )

    # -- events in -------------------------------------------------------------------------------

    def receive(self, xml: bytes | str, now: datetime) -> ResponseStatus:
        """Take an EndDeviceControl from the GDSC; the response status it gets now."""
        # A malformed event raises InvalidEvent: without a valid mRID there is no subject to answer.
        ctl = parse_end_device_control(xml)
        held = self.event(ctl.mrid)
        if held is not None:
            return self._update(held, ctl, now)
        if ctl.status in (CANCELLED, CANCELLED_RANDOM, SUPERSEDED):
            # Cancelled before this hub ever held it: nothing to do (answered as cancelled).
            self._record_refusal(ctl, ResponseStatus.CANCELLED, now)
            return ResponseStatus.CANCELLED
        if ctl.end <= now:
            self._record_refusal(ctl, ResponseStatus.REJECTED_EXPIRED, now)
            return ResponseStatus.REJECTED_EXPIRED
        if ctl.load_factor() is None:
            self._record_refusal(ctl, ResponseStatus.REJECTED_NOT_APPLICABLE, now)
            return ResponseStatus.REJECTED_NOT_APPLICABLE
        r_start, r_duration = self._randomisation(ctl)
        start = ctl.start + timedelta(seconds=r_start)
        end = max(start, ctl.end + timedelta(seconds=r_start + r_duration))
        ev = HeldEvent(ctl, start, end, EventState.SCHEDULED)
        overlapping = [
            o
            for o in self.events()
            if o.state is not EventState.DONE and o.control.start < ctl.end and ctl.start < o.control.end
        ]
        if any(o.control.creation > ctl.creation for o in overlapping):
            ev = replace(ev, state=EventState.DONE, superseded=True)
            self._save(ev, [ResponseStatus.RECEIVED, ResponseStatus.SUPERSEDED], now)
            return ResponseStatus.SUPERSEDED
        self._save(ev, [ResponseStatus.RECEIVED], now)
        for old in overlapping:
            if old.state is EventState.SCHEDULED:
                self._save(
                    replace(old, state=EventState.DONE, superseded=True), [ResponseStatus.SUPERSEDED], now
                )
            else:  # active: runs until the newer event takes effect, then ends as superseded
                cut = max(now, min(old.effective_end, start))
                self._save(replace(old, effective_end=cut, superseded=True), [], now)
        self.tick(now)
        return ResponseStatus.RECEIVED

    def _update(self, held: HeldEvent, ctl: EndDeviceControl, now: datetime) -> ResponseStatus:
        if ctl.status in (CANCELLED, CANCELLED_RANDOM):
            if held.state is EventState.DONE:
                return ResponseStatus.CANCELLED
            if held.state is EventState.SCHEDULED:
                self._save(
                    replace(held, state=EventState.DONE, cancelled=True), [ResponseStatus.CANCELLED], now
                )
            else:
                delay = timedelta(0)
                if ctl.status == CANCELLED_RANDOM:
                    delay = abs(held.effective_start - held.control.start)
                self._save(
                    replace(held, effective_end=min(held.effective_end, now + delay), cancelled=True), [], now
                )
                self.tick(now)
            return ResponseStatus.CANCELLED
        if (ctl.start, ctl.duration, ctl.device_category) != (
            held.control.start,
            held.control.duration,
            held.control.device_category,
        ):
            # Events are immutable but for their status (§10.7 event rules): a changed copy is invalid.
            self._record_refusal(ctl, ResponseStatus.REJECTED_INVALID, now)
            return ResponseStatus.REJECTED_INVALID
        return ResponseStatus.RECEIVED  # a re-delivery: already held, already answered

    def _randomisation(self, ctl: EndDeviceControl) -> tuple[int, int]:
        """Offsets (s) for start and duration, drawn once per hub and event."""
        rng = random.Random(hashlib.sha256(f"{self.lfdi}/{ctl.mrid}".encode()).digest())

        def draw(bound: int) -> int:
            return rng.randint(0, abs(bound)) * (1 if bound >= 0 else -1)

        return draw(ctl.randomize_start), draw(ctl.randomize_duration)

    # -- the consumer ----------------------------------------------------------------------------

    def opt_out(self, mrid: str, now: datetime) -> HeldEvent:
        held = self.event(mrid)
        if held is None:
            raise KeyError(f"no demand-response event {mrid}")
        if held.state is EventState.DONE:
            raise ValueError(f"event {held.mrid} is over; nothing to opt out of")
        if held.opted_out is not None:
            return held
        held = replace(held, opted_out=now)
        self._save(held, [ResponseStatus.OPTED_OUT], now)
        return held

    def note_limited(self, mrid: str, now: datetime) -> None:
        """An appliance will not follow this event fully (a consumer limit): completion is partial."""
        held = self.event(mrid)
        if held is not None and not held.limited and held.state is not EventState.DONE:
            self._save(replace(held, limited=True), [], now)

    # -- time ------------------------------------------------------------------------------------

    def tick(self, now: datetime) -> None:
        """Start and end events whose effective times have come."""
        for ev in self.events():
            if ev.state is EventState.SCHEDULED and now >= ev.effective_start:
                out = [] if ev.opted_out is not None else [ResponseStatus.STARTED]
                ev = replace(ev, state=EventState.ACTIVE)
                self._save(ev, out, now)
            if ev.state is EventState.ACTIVE and now >= ev.effective_end:
                self._save(replace(ev, state=EventState.DONE), [self._final(ev)], now)

    @staticmethod
    def _final(ev: HeldEvent) -> ResponseStatus:
        if ev.superseded:
            return ResponseStatus.SUPERSEDED
        if ev.cancelled:
            return ResponseStatus.CANCELLED
        if ev.opted_out is not None:
            if ev.opted_out <= ev.effective_start:
                return ResponseStatus.NO_PARTICIPATION
            return ResponseStatus.PARTIAL_OPT_OUT
        return ResponseStatus.PARTIAL_OPT_OUT if ev.limited else ResponseStatus.COMPLETED

    def next_change(self, now: datetime) -> datetime | None:
        times = [
            t
            for ev in self.events()
            if ev.state is not EventState.DONE
            for t in (ev.effective_start, ev.effective_end)
            if t > now
        ]
        return min(times, default=None)

    def controls_for(self, category: int) -> list[HeldEvent]:
        """Events an appliance of ``category`` follows: held, not over, not opted out of."""
        return [
            ev
            for ev in self.events()
            if ev.control.device_category & category
            and ev.opted_out is None
            and not (ev.state is EventState.DONE and (ev.superseded or ev.cancelled))
            and ev.effective_end > ev.effective_start
        ]

    def followed(self, category: int) -> list[tuple[datetime, datetime, HeldEvent]]:
        """Every event an appliance of ``category`` followed or will follow, with the part of it
        that is followed: (from, to, event). An opt-out ends the following; a cancelled or
        superseded event counts only if it started (one cancelled before its start was never
        followed), to where the hub cut it. The appliance controller makes up what an
        interruptible appliance was held off from these (``hub.appliances``), so an event that
        is over still counts, unlike :meth:`controls_for`."""
        started: set[str] | None = None
        out = []
        for ev in self.events():
            if not ev.control.device_category & category:
                continue
            if ev.state is EventState.DONE and (ev.superseded or ev.cancelled):
                if started is None:
                    every = self.responses(served_only=False)
                    started = {r.mrid for r in every if r.status is ResponseStatus.STARTED}
                if ev.mrid not in started:
                    continue
            end = ev.effective_end if ev.opted_out is None else min(ev.effective_end, ev.opted_out)
            if end > ev.effective_start:
                out.append((ev.effective_start, end, ev))
        return out

    # -- responses out ---------------------------------------------------------------------------

    def responses(self, after: int = 0, *, served_only: bool = True) -> list[DrlcResponse]:
        """Responses recorded after id ``after``; by default only those the events asked for."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, mrid, status, at, required FROM drlc_responses WHERE id > ? ORDER BY id", (after,)
            ).fetchall()
        out = [DrlcResponse(i, m, ResponseStatus(s), _t(a), r) for i, m, s, a, r in rows]
        if served_only:
            out = [r for r in out if r.required & _SERVE_BITS.get(r.status, 0b010)]
        return out

    def response_list_xml(self, after: int = 0) -> bytes:
        """The served responses as a 2030.5 ResponseList of DrResponse."""
        return response_list_xml(self.lfdi, [(r.id, r.at, r.status, r.mrid) for r in self.responses(after)])


def _s(t: datetime) -> int:
    return int(t.timestamp())


def _t(s: int) -> datetime:
    return datetime.fromtimestamp(s, UTC)


def drlc_commands(client: DrlcClient, clock: Any, on_change: Any = None) -> dict[str, Any]:
    """Management handlers: ``drlc.event`` {"xml": EndDeviceControl} and ``drlc.responses``
    {"after": last response id seen}."""

    def event(body: DrlcEvent) -> dict[str, Any]:
        status = client.receive(body.xml, clock.now())
        if on_change is not None:
            on_change()
        return {"status": int(status), "status_name": status.name.lower()}

    def responses(body: DrlcResponses) -> dict[str, Any]:
        after = body.after
        recorded = client.responses(after, served_only=False)
        return {
            "xml": client.response_list_xml(after).decode(),
            "last": max((r.id for r in recorded), default=after),
        }

    return {"drlc.event": event, "drlc.responses": responses}
