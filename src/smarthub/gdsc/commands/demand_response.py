"""Demand-response events a data service asks the GDSC to send to a home's hub (issue 25).

An approved demand-response aggregator, with the occupant's consent to the ``demand-response``
kind (:mod:`smarthub.gdsc.governance.access`), asks for an event: its interval, the device
categories it addresses and the control (a duty cycle, a load reduction in per cent, or a
temporary appliance load reduction), with optional randomisation. The GDSC builds the 2030.5
``EndDeviceControl`` (IEEE 2030.5 §10.7; its mRID a fresh 128-bit id, ``responseRequired`` 0x03:
the *received* response and every specific one) and queues it to the premises' hub as a signed
``drlc.event`` management command through the command desk, recording the event in ``dr_events``
in the same transaction (a crash leaves both or neither). The hub's DRLC client answers the
command at once (received, superseded, refused as expired or not applicable); its later
responses (started, completed, opted out, partial, ...) stay at the hub until pulled.

**Pulling the responses.** The GDSC never serves the hub a program to poll (the roles are turned
round, :mod:`smarthub.hub.drlc`), so it asks: when the service follows the event and the last
pull finished at least :data:`PULL_EVERY` ago, one signed ``drlc.responses`` command is queued;
the hub's ``ResponseList`` it brings back is parsed and the responses about this event kept with
the event. A service polling every second therefore costs the hub one command per
:data:`PULL_EVERY`, not one per request. (The pull asks for every response since id 0: a hub
keeps a handful of events, and the filter by mRID is the GDSC's.)
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Integer, String, Table, Text, select, update

from smarthub.gdsc.commands.desk import CommandDesk
from smarthub.gdsc.db.database import metadata
from smarthub.gdsc.governance.parties import utc
from smarthub.gdsc.pull.tables import CLAIMED, DONE, FAILED
from smarthub.gdsc.readings.queries import Meter
from smarthub.wan.contract.bodies import DrlcEvent, DrlcResponses
from smarthub.wan.contract.drlc import (
    CANCELLED,
    DEVICE_CATEGORIES,
    EndDeviceControl,
    InvalidResponseList,
    parse_end_device_control,
    parse_response_list,
)

PULL_EVERY = timedelta(minutes=1)
RESPONSE_REQUIRED = 0b011  # received, and every specific response (2030.5 responseRequired bits)
MAX_DURATION = timedelta(hours=24)

dr_events = Table(
    "dr_events",
    metadata,
    Column("event_id", String(32), primary_key=True),  # the EndDeviceControl's mRID (hex)
    Column("party_id", String(64), nullable=False, index=True),  # the service that asked
    Column("premises_id", String(64), nullable=False),
    Column("meter_id", String(64), nullable=False),
    Column("hub_id", String(64), nullable=False),
    Column("job_id", BigInteger().with_variant(Integer, "sqlite"), nullable=False),  # the drlc.event
    Column("start", DateTime(timezone=True), nullable=False),
    Column("end", DateTime(timezone=True), nullable=False),
    Column("device_category", BigInteger, nullable=False),
    Column("control", Text, nullable=False),  # the EndDeviceControl XML sent
    Column("created", DateTime(timezone=True), nullable=False),
    Column("pull_job", BigInteger().with_variant(Integer, "sqlite")),  # the latest drlc.responses
    Column("responses", Text),  # JSON: this event's DrResponses as last pulled
    Column("pulled", DateTime(timezone=True)),  # when those were brought back
)


class BadEvent(ValueError):
    """An event the hub could not follow or would refuse (the API answers 400 with the reason)."""


@dataclass(frozen=True, slots=True)
class EventRequest:
    """What a service asks for (the API's body, checked)."""

    start: datetime
    duration: timedelta
    categories: tuple[str, ...]
    duty_cycle: int | None = None  # % of time on
    load_reduction_percent: int | None = None  # % of normal load shed
    appliance_load_reduction: bool = False  # delay or temporarily reduce (2030.5 ApplianceLoadReduction)
    randomize_start: int = 0  # seconds
    randomize_duration: int = 0
    description: str = ""

    def control(self, mrid: str, now: datetime) -> EndDeviceControl:
        """The 2030.5 EndDeviceControl for this request (:class:`BadEvent` if the hub would refuse it)."""
        if self.start.tzinfo is None:
            raise BadEvent("the event's start must carry its UTC offset")
        if not timedelta(minutes=1) <= self.duration <= MAX_DURATION:
            raise BadEvent(f"an event lasts 1 minute to {MAX_DURATION}, not {self.duration}")
        if self.start + self.duration <= now:
            # The hub would answer 254 (expired): refuse it here, where the caller can be told why.
            raise BadEvent(
                f"the event ends at {(self.start + self.duration).isoformat()}, which is already past"
            )
        if (
            self.duty_cycle is None
            and self.load_reduction_percent is None
            and not self.appliance_load_reduction
        ):
            raise BadEvent(
                "an event needs a control a switched load can follow: duty_cycle, "
                "load_reduction_percent or appliance_load_reduction (the hub answers 252 otherwise)"
            )
        unknown = sorted(set(self.categories) - set(DEVICE_CATEGORIES))
        if unknown or not self.categories:
            raise BadEvent(f"device categories must be some of {', '.join(DEVICE_CATEGORIES)}")
        category = 0
        for name in self.categories:
            category |= DEVICE_CATEGORIES[name]
        offset = None if self.load_reduction_percent is None else self.load_reduction_percent * 100
        return EndDeviceControl(
            mrid=mrid,
            creation=now,
            status=0,
            start=self.start,
            duration=self.duration,
            device_category=category,
            randomize_start=self.randomize_start,
            randomize_duration=self.randomize_duration,
            response_required=RESPONSE_REQUIRED,
            duty_cycle=self.duty_cycle,
            load_adjustment_offset=offset,
            appliance_load_reduction=1 if self.appliance_load_reduction else None,
            description=self.description,
        )


@dataclass(frozen=True, slots=True)
class EventStatus:
    event_id: str
    party_id: str
    premises_id: str
    meter_id: str
    hub_id: str
    job_id: int
    start: datetime
    end: datetime
    device_category: int
    created: datetime
    state: str  # the drlc.event's delivery: queued / in-flight / done / failed
    hub_answer: str | None  # the hub's answer to the event when delivered (received, superseded, ...)
    error: str | None
    responses: tuple[dict[str, Any], ...]  # {"status", "status_name", "at"} as last pulled
    pulled: datetime | None


class DemandResponse:
    """Dispatches events through the command desk and follows them (``dr_events``)."""

    def __init__(self, desk: CommandDesk) -> None:
        self.desk = desk
        self.engine = desk.store.engine

    def dispatch(
        self, party_id: str, premises_id: str, meter: Meter, action: str, event: EventRequest, now: datetime
    ) -> EventStatus:
        mrid = uuid.uuid4().hex.upper()
        control = event.control(mrid, now)
        xml = control.to_xml().decode()
        with self.engine.begin() as conn:
            job = self.desk.command(
                party_id, premises_id, meter, action, "drlc.event", DrlcEvent(xml), now, conn=conn
            )
            conn.execute(
                dr_events.insert().values(
                    event_id=mrid,
                    party_id=party_id,
                    premises_id=premises_id,
                    meter_id=meter.meter_id,
                    hub_id=meter.hub_id,
                    job_id=job,
                    start=utc(control.start),
                    end=utc(control.end),
                    device_category=control.device_category,
                    control=xml,
                    created=utc(now),
                )
            )
        status = self.status(mrid)
        assert status is not None
        return status

    def cancel(self, party_id: str, meter: Meter, action: str, event_id: str, now: datetime) -> EventStatus:
        """Queue the event again with ``EventStatus/currentStatus`` 2 (cancelled, 2030.5 §10.7
        event rules): the hub drops it if it has not started and ends it now if it has (its last
        response then *Event Cancelled*); an event already over is left as it ended."""
        row = self._row(event_id)
        control = replace(parse_end_device_control(row["control"]), status=CANCELLED)
        body = DrlcEvent(control.to_xml().decode())
        self.desk.command(party_id, row["premises_id"], meter, action, "drlc.event", body, now)
        status = self.status(event_id)
        assert status is not None
        return status

    def find(self, premises_id: str, event_id: str) -> dict[str, Any] | None:
        """The event's row if it is one of ``premises_id``'s (None otherwise)."""
        q = select(dr_events).where(
            dr_events.c.event_id == event_id.upper(), dr_events.c.premises_id == premises_id
        )
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return None if row is None else dict(row._mapping)

    def follow(self, event_id: str, now: datetime) -> EventStatus:
        """Take in a pull that came back, queue the next one if due; the event as it stands."""
        row = self._row(event_id)
        plan = self.desk.plan
        pull = None if row["pull_job"] is None else plan.urgent_job(int(row["pull_job"]))
        if pull is not None and pull["state"] == DONE and pull["finished"] != utc(row["pulled"]):
            self._take(row, pull)
        pending = pull is not None and pull["state"] not in (DONE, FAILED)
        last = None if pull is None else pull["finished"]
        if not pending and (last is None or now - last >= PULL_EVERY) and self._delivered(row):
            with self.engine.begin() as conn:
                job = plan.queue_command(
                    self.desk.signer, row["hub_id"], "drlc.responses", DrlcResponses(0), now, conn=conn
                )
                conn.execute(update(dr_events).where(dr_events.c.event_id == event_id).values(pull_job=job))
        status = self.status(event_id)
        assert status is not None
        return status

    def _delivered(self, row: dict[str, Any]) -> bool:
        return bool(self.desk.plan.urgent_job(int(row["job_id"]))["state"] == DONE)

    def _take(self, row: dict[str, Any], pull: dict[str, Any]) -> None:
        verdict = json.loads(pull["result"]) if pull.get("result") else {}
        kept: list[dict[str, Any]] = []
        if verdict.get("status") == "applied":
            try:
                found = parse_response_list(str((verdict.get("result") or {}).get("xml", "")))
            except InvalidResponseList:
                found = []  # a hub answering garbage: what was kept before stands
                kept = json.loads(row["responses"] or "[]")
            for r in found:
                if r.subject == row["event_id"]:
                    kept.append(
                        {"status": r.status, "status_name": r.status_name, "at": r.created.isoformat()}
                    )
        with self.engine.begin() as conn:
            conn.execute(
                update(dr_events)
                .where(dr_events.c.event_id == row["event_id"])
                .values(responses=json.dumps(kept), pulled=pull["finished"])
            )

    def _row(self, event_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(dr_events).where(dr_events.c.event_id == event_id)).one()
        return dict(row._mapping)

    def status(self, event_id: str) -> EventStatus | None:
        with self.engine.connect() as conn:
            found = conn.execute(select(dr_events).where(dr_events.c.event_id == event_id)).first()
        if found is None:
            return None
        row = dict(found._mapping)
        work = self.desk.plan.urgent_job(int(row["job_id"]))
        state, error, answer = "queued", work.get("last_error"), None
        if work["state"] == CLAIMED:
            state = "in-flight"
        elif work["state"] == FAILED:
            state = "failed"
        elif work["state"] == DONE:
            verdict = json.loads(work["result"]) if work.get("result") else {}
            if verdict.get("status") == "applied":
                state = "done"
                answer = str((verdict.get("result") or {}).get("status_name"))
            else:
                state = "failed"
                error = f"hub {verdict.get('status')}: {verdict.get('code')}: {verdict.get('detail')}"
        return EventStatus(
            event_id=row["event_id"],
            party_id=row["party_id"],
            premises_id=row["premises_id"],
            meter_id=row["meter_id"],
            hub_id=row["hub_id"],
            job_id=int(row["job_id"]),
            start=utc(row["start"]),
            end=utc(row["end"]),
            device_category=int(row["device_category"]),
            created=utc(row["created"]),
            state=state,
            hub_answer=answer,
            error=error,
            responses=tuple(json.loads(row["responses"] or "[]")),
            pulled=utc(row["pulled"]),
        )


__all__ = [
    "DEVICE_CATEGORIES",
    "BadEvent",
    "DemandResponse",
    "EventRequest",
    "EventStatus",
    "dr_events",
]
