"""``/v1/premises/{premises_id}/demand-response/events``: an approved demand-response aggregator,
with the occupant's consent, has the GDSC send the premises' hub a DRLC event (IEEE 2030.5
EndDeviceControl as a signed ``drlc.event``) and follows it, the hub's DrResponses included
(:mod:`smarthub.gdsc.commands.demand_response`). Both are decided by the access policy
(``demand-response``: the service's approval and a live consent to that kind, the event's
interval within the consenting tenancy) and recorded in the audit chain."""

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Response

from smarthub.gdsc.api.deps import ApiServices, Caller, Desk, Id, Services
from smarthub.gdsc.api.schemas import (
    COMMAND_ERRORS,
    ERRORS,
    DemandResponseEventIn,
    DemandResponseEventOut,
    DrResponseOut,
)
from smarthub.gdsc.commands.demand_response import BadEvent, DemandResponse, EventRequest, EventStatus
from smarthub.gdsc.governance.access import Action, TimeRange
from smarthub.gdsc.governance.parties import utc
from smarthub.gdsc.readings import queries

router = APIRouter()
EventId = Id


def out(s: EventStatus) -> DemandResponseEventOut:
    return DemandResponseEventOut(
        event_id=s.event_id,
        premises_id=s.premises_id,
        meter_id=s.meter_id,
        hub_id=s.hub_id,
        job_id=s.job_id,
        start=s.start,
        end=s.end,
        device_category=s.device_category,
        state=s.state,  # type: ignore[arg-type]
        hub_answer=s.hub_answer,
        error=s.error,
        responses=[DrResponseOut(**r) for r in s.responses],
        responses_pulled_at=s.pulled,
    )


@router.post(
    "/v1/premises/{premises_id}/demand-response/events",
    response_model=DemandResponseEventOut,
    status_code=202,
    responses=COMMAND_ERRORS,
)
def dispatch_demand_response_event(
    party: Caller, api: Services, desk: Desk, premises_id: Id, body: DemandResponseEventIn, response: Response
) -> DemandResponseEventOut:
    """Send a demand-response event to the premises' hub (``drlc.event``); an approved service with
    the occupant's live consent to ``demand-response`` only. 202: follow it at the ``Location``."""
    now = api.guard.clock.now()
    request = EventRequest(
        start=body.start,
        duration=timedelta(minutes=body.duration_minutes),
        categories=tuple(body.device_categories),
        duty_cycle=body.duty_cycle,
        load_reduction_percent=body.load_reduction_percent,
        appliance_load_reduction=body.appliance_load_reduction,
        randomize_start=body.randomize_start_seconds,
        randomize_duration=body.randomize_duration_seconds,
        description=body.description,
    )
    try:  # about the request alone: checked before the premises is looked at
        request.control("0" * 32, now)
    except BadEvent as err:
        raise HTTPException(400, f"cannot send this event: {err}") from None
    meter = queries.find_meter(api.engine, premises_id, body.meter_id)  # 404 if not at the premises
    if meter.fuel != "electricity":
        raise HTTPException(
            400, f"meter {meter.meter_id!r} is a {meter.fuel} meter: events are for electricity"
        )
    detail = body.model_dump(mode="json")
    api.guard.require(
        party,
        Action.DEMAND_RESPONSE,
        premises_id=premises_id,
        fuel=meter.fuel,
        meter_id=meter.meter_id,
        period=TimeRange(request.start, request.start + request.duration),
        detail={"op": "dispatch", **detail},
    )
    status = DemandResponse(desk).dispatch(
        party, premises_id, meter, Action.DEMAND_RESPONSE.value, request, now
    )
    response.headers["Location"] = f"/v1/premises/{premises_id}/demand-response/events/{status.event_id}"
    return out(status)


@router.get(
    "/v1/premises/{premises_id}/demand-response/events/{event_id}",
    response_model=DemandResponseEventOut,
    responses=ERRORS,
)
def get_demand_response_event(
    party: Caller, api: Services, desk: Desk, premises_id: Id, event_id: EventId
) -> DemandResponseEventOut:
    """The event's delivery, the hub's answer and its DrResponses (pulled from the hub with a signed
    ``drlc.responses`` at most once a minute, as the event is followed). Only the service that sent
    it, while its approval and the occupant's consent last (403 otherwise, as for sending one);
    another service's event answers 404, as one that does not exist."""
    dr = DemandResponse(desk)
    row = _own_event(party, api, dr, premises_id, event_id, "follow")
    return out(dr.follow(row["event_id"], api.guard.clock.now()))


@router.post(
    "/v1/premises/{premises_id}/demand-response/events/{event_id}/cancellation",
    response_model=DemandResponseEventOut,
    status_code=202,
    responses=COMMAND_ERRORS,
)
def cancel_demand_response_event(
    party: Caller, api: Services, desk: Desk, premises_id: Id, event_id: EventId, response: Response
) -> DemandResponseEventOut:
    """Cancel an event (the same EndDeviceControl with ``currentStatus`` 2, a signed ``drlc.event``):
    the hub drops it if it has not started, ends it now if it has (response 6, *Event Cancelled*,
    among its DrResponses). Who may: as for following it."""
    dr = DemandResponse(desk)
    row = _own_event(party, api, dr, premises_id, event_id, "cancel")
    meter = queries.find_meter(api.engine, premises_id, row["meter_id"])
    status = dr.cancel(party, meter, Action.DEMAND_RESPONSE.value, row["event_id"], api.guard.clock.now())
    response.headers["Location"] = f"/v1/premises/{premises_id}/demand-response/events/{status.event_id}"
    return out(status)


def _own_event(
    party: str, api: ApiServices, dr: DemandResponse, premises_id: str, event_id: str, op: str
) -> dict[str, Any]:
    """The caller's event at the premises, decided and audited as ``op``: 404 if there is none,
    403 from the access policy, 404 for another service's event (as for one that does not exist)."""
    row = dr.find(premises_id, event_id)
    missing = f"no demand-response event {event_id} of {party} at {premises_id}"
    if row is None:
        raise HTTPException(404, missing)
    api.guard.require(
        party,
        Action.DEMAND_RESPONSE,
        premises_id=premises_id,
        fuel="electricity",
        meter_id=row["meter_id"],
        period=TimeRange(utc(row["start"]), utc(row["end"])),
        detail={"op": op, "event_id": row["event_id"]},
    )
    if row["party_id"] != party:
        raise HTTPException(404, missing)
    return row
