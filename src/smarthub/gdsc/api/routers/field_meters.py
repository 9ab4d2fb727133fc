"""Meters registered from the field over the API (:mod:`smarthub.gdsc.fleet.field_meters`):

* ``POST /v1/meter-shipments`` — the GDSC operator imports a manufacturer's shipment file (CSV:
  ``meter_id,manufacturer,protocol,fuel,key``; all or nothing);
* ``POST /v1/premises/{premises_id}/meter-installs`` — the installer on site (or the operator)
  records the job: the meter fitted, and the meter it replaced. The hub's next pulls carry the
  HAN scan that finds the meter, and the registration follows once both confirm it;
* ``GET /v1/premises/{premises_id}/pending-meters`` — the same parties follow it: the meters the
  premises' hubs heard but were not told of, and where each one's registration stands (its
  status and the reason it waits). No reading: a pending meter's readings are never stored.
"""

from datetime import datetime

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from smarthub.gdsc.api.deps import Caller, Id, Services, require_premises
from smarthub.gdsc.api.schemas import ERRORS
from smarthub.gdsc.fleet.field_meters import FieldMeters, ShipmentRefused
from smarthub.gdsc.fleet.key_escrow import EscrowUnavailable
from smarthub.gdsc.governance.access import Action
from smarthub.gdsc.governance.parties import utc

router = APIRouter()
MAX_SHIPMENT = 8 * 1024 * 1024
METER = r"^[A-Za-z0-9._:@-]+$"


class ShipmentLoaded(BaseModel):
    shipment: str
    meters: int


class InstallIn(BaseModel):
    meter_id: str = Field(min_length=1, max_length=64, pattern=METER, description="the meter fitted")
    replaces: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=METER, description="the meter it replaced"
    )


class InstallOut(BaseModel):
    install_id: int
    premises_id: str
    meter_id: str
    replaces: str | None


@router.post(
    "/v1/meter-shipments",
    response_model=ShipmentLoaded,
    responses=ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "a shipment file: CSV, header meter_id,manufacturer,protocol,fuel,key",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
)
async def import_shipment(
    party: Caller,
    api: Services,
    request: Request,
    shipment: str = Query(default="shipment", min_length=1, max_length=64, pattern=METER),
) -> ShipmentLoaded:
    """Import a manufacturer's shipment file (meters, protocols, fuels, keys): all or nothing."""
    api.guard.require(party, Action.METER_SHIPMENT, detail={"op": "import", "shipment": shipment})
    raw = await request.body()
    if len(raw) > MAX_SHIPMENT:
        raise HTTPException(413, f"a shipment file is at most {MAX_SHIPMENT} bytes")
    try:
        n = FieldMeters(api.engine, escrow=api.escrow).import_shipment(
            raw.decode("utf-8"), shipment, api.guard.clock.now()
        )
    except (ShipmentRefused, UnicodeDecodeError) as err:
        raise HTTPException(400, f"shipment file refused: {err}") from None
    except EscrowUnavailable as err:
        raise HTTPException(503, str(err)) from None
    return ShipmentLoaded(shipment=shipment, meters=n)


@router.post(
    "/v1/premises/{premises_id}/meter-installs",
    response_model=InstallOut,
    responses={**ERRORS, 404: {"model": ERRORS[404]["model"], "description": "no such premises"}},
)
def record_install(party: Caller, api: Services, premises_id: Id, body: InstallIn) -> InstallOut:
    """The installer's job: a meter fitted at the premises (replacing another, if named)."""
    api.guard.require(
        party, Action.METER_INSTALL, premises_id=premises_id, detail=body.model_dump(mode="json")
    )
    require_premises(api, premises_id)
    now = api.guard.clock.now()
    job = FieldMeters(api.engine).record_install(premises_id, body.meter_id, body.replaces, party, now)
    return InstallOut(install_id=job, premises_id=premises_id, meter_id=body.meter_id, replaces=body.replaces)


class PendingMeter(BaseModel):
    hub_id: str = Field(description="the hub that heard it")
    meter_id: str
    protocol: str
    first_heard: datetime
    last_heard: datetime
    decoded: int = Field(description="frames the hub decoded (none stored)")
    undecrypted: int = Field(description="frames it could not decrypt (no key, or a wrong one)")
    status: str = Field(description="pending, keyed, commissioning, registered or refused")
    reason: str = Field(description="what it waits for, or why it was refused")
    authenticated: bool = Field(description="its frames decoded under the shipment's key")
    updated_at: datetime


class PendingMeters(BaseModel):
    premises_id: str
    pending_meters: list[PendingMeter]


@router.get(
    "/v1/premises/{premises_id}/pending-meters",
    response_model=PendingMeters,
    responses={**ERRORS, 404: {"model": ERRORS[404]["model"], "description": "no such premises"}},
)
def list_pending_meters(party: Caller, api: Services, premises_id: Id) -> PendingMeters:
    """The meters the premises' hubs heard but were not told of, and where each registration stands."""
    api.guard.require(party, Action.METER_INSTALL, premises_id=premises_id, detail={"op": "pending-meters"})
    require_premises(api, premises_id)
    rows = FieldMeters(api.engine).of_premises(premises_id)
    times = ("first_heard", "last_heard", "updated_at")  # SQLite gives them back naive, in UTC
    return PendingMeters(
        premises_id=premises_id,
        pending_meters=[
            PendingMeter(
                **{k: r[k] for k in PendingMeter.model_fields if k not in (*times, "authenticated")},
                **{k: utc(r[k]) for k in times},
                authenticated=bool(r["authenticated"]),
            )
            for r in rows
        ],
    )
