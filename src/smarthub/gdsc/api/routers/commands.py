"""``/v1/premises/{premises_id}/commands/…`` and ``…/on-demand-reads``: commands to a meter's
hub (tariff update, IHD message, top-up, supply), signed and queued in the shared pull plan by
the command desk; each answers 202 with the job to follow at ``/v1/jobs/{id}``."""

from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Response

from smarthub.gdsc.api.deps import ApiServices, Caller, Desk, Id, Services
from smarthub.gdsc.api.schemas import (
    COMMAND_ERRORS,
    IHD_MESSAGE_ERRORS,
    TOP_UP_ERRORS,
    IhdMessageIn,
    JobAccepted,
    OnDemandReadIn,
    SupplyIn,
    TariffUpdateIn,
    TopUpIn,
)
from smarthub.gdsc.commands import service_messages, tariffs
from smarthub.gdsc.commands.desk import IdempotencyConflict, message_id
from smarthub.gdsc.commands.tariff_catalogue import TariffCatalogue
from smarthub.gdsc.governance.access import Action
from smarthub.gdsc.governance.parties import Role
from smarthub.gdsc.readings import queries
from smarthub.model.prepayment import BadVoucher
from smarthub.wan.contract.bodies import IhdMessage, SupplyDisconnect, SupplyReconnect
from smarthub.wan.contract.commands import MalformedCommand

router = APIRouter()
common: dict[str, Any] = {"response_model": JobAccepted, "status_code": 202, "responses": COMMAND_ERRORS}


def accepted(
    response: Response, job: int, ctype: str | None, meter: queries.Meter, voucher: str | None = None
) -> JobAccepted:
    response.headers["Location"] = f"/v1/jobs/{job}"
    return JobAccepted(
        job_id=job, state="queued", command_type=ctype, hub_id=meter.hub_id, voucher_id=voucher
    )


def allowed(
    api: ApiServices, party: str, action: Action, premises_id: str, meter_id: str, detail: dict[str, Any]
) -> queries.Meter:
    """The meter at the premises (else 404), if the policy allows the caller the action on it."""
    meter = queries.find_meter(api.engine, premises_id, meter_id)
    api.guard.require(
        party, action, premises_id=premises_id, fuel=meter.fuel, meter_id=meter_id, detail=detail
    )
    return meter


@router.post("/v1/premises/{premises_id}/commands/tariff-update", **common)
def tariff_update(
    party: Caller, api: Services, desk: Desk, premises_id: Id, body: TariffUpdateIn, response: Response
) -> JobAccepted:
    """Send a tariff version to the hub (``tariff.update``); the current supplier for the fuel only.

    The fuel is the fuel of the meter the access policy checked, never the caller's word."""
    try:  # the instant first: it is about the request alone (any fuel will do for the check)
        tariffs.tariff_update(body.tariff, tariffs.FUELS[0], body.effective)
    except ValueError as err:
        raise HTTPException(400, f"cannot send tariff {body.tariff.tariff_id!r}: {err}") from err
    detail = {"tariff": body.tariff.to_json_dict(), "version": body.tariff.version}
    meter = allowed(api, party, Action.TARIFF_UPDATE, premises_id, body.meter_id, detail)
    if meter.fuel not in tariffs.FUELS:
        raise HTTPException(
            400, f"meter {meter.meter_id!r} is a {meter.fuel} meter: tariffs are for electricity and gas"
        )
    payload = tariffs.tariff_update(body.tariff, meter.fuel, body.effective)
    now = api.guard.clock.now()
    job = desk.command(party, premises_id, meter, Action.TARIFF_UPDATE.value, "tariff.update", payload, now)
    # Into the catalogue of tariffs distributed (GET /v1/tariffs) once it is on its way to a hub.
    TariffCatalogue(api.engine).record(body.tariff, meter.fuel, party, now)
    return accepted(response, job, "tariff.update", meter)


def _too_many(err: service_messages.TooManyMessages) -> HTTPException:
    """429 with ``Retry-After`` in whole seconds, rounded up (RFC 9110 §10.2.3)."""
    wait = max(1, int(err.retry_after.total_seconds() + 0.999))
    return HTTPException(429, str(err), headers={"Retry-After": str(wait)})


@router.post("/v1/premises/{premises_id}/commands/ihd-message", **{**common, "responses": IHD_MESSAGE_ERRORS})
def ihd_message(
    party: Caller, api: Services, desk: Desk, premises_id: Id, body: IhdMessageIn, response: Response
) -> JobAccepted:
    """Show a message on the home's IHD (``ihd.message``, IEEE 2030.5 Messaging): the premises'
    supplier's, or an approved data service's with the occupant's consent to ``ihd-messages``,
    shown under the service's name as a third party's (priority at most 1, at most 3 a day)."""
    if not body.text.strip():
        raise HTTPException(400, "message text must not be blank")
    now = api.guard.clock.now()
    if body.expires is not None and body.expires <= now:
        raise HTTPException(400, f"message expiry {body.expires.isoformat()} is already past")
    who = api.guard.parties.party(party)
    origin, name = "supplier", None
    if who.role is Role.THIRD_PARTY:  # a data service's: labelled as its own, limited (see module)
        if body.priority > service_messages.MAX_PRIORITY:
            raise HTTPException(
                400,
                f"a data service's message has priority {service_messages.MAX_PRIORITY} (normal) at "
                "most: high and very high are kept for the supplier's",
            )
        try:
            service_messages.check_quota(api.engine, party, premises_id, now)
        except service_messages.TooManyMessages as err:
            raise _too_many(err) from None
        origin, name = service_messages.ORIGIN, service_messages.sender_name(api.engine, api.guard.audit, who)
    try:
        payload = IhdMessage(
            party, message_id(), body.text, body.priority, body.expires, origin=origin, sender_name=name
        )
        IhdMessage.parse(payload.to_json())  # the limits the hub will hold it to (sender, text)
    except MalformedCommand as err:
        raise HTTPException(400, str(err)) from None
    meter = allowed(api, party, Action.IHD_MESSAGE, premises_id, body.meter_id, payload.to_json())
    try:
        with desk.store.engine.begin() as conn:
            job = desk.command(
                party, premises_id, meter, Action.IHD_MESSAGE.value, "ihd.message", payload, now, conn=conn
            )
            if origin == service_messages.ORIGIN:  # counted again, after the hub's counter row is held
                service_messages.check_quota(conn, party, premises_id, now, queued=True)
    except service_messages.TooManyMessages as err:  # a request at the same instant came first
        raise _too_many(err) from None
    return accepted(response, job, "ihd.message", meter)


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="the caller's unique key of this top-up (e.g. its payment id): a repeat of the "
        "request with the same key answers the first one's job and voucher and credits nothing more",
    ),
]


@router.post("/v1/premises/{premises_id}/commands/top-up", **{**common, "responses": TOP_UP_ERRORS})
def top_up(
    party: Caller,
    api: Services,
    desk: Desk,
    premises_id: Id,
    body: TopUpIn,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> JobAccepted:
    """Credit a prepayment meter: a signed single-use voucher, recorded before it is sent
    (``prepayment.topup``); with an ``Idempotency-Key``, once however often it is asked."""
    detail = {"amount": f"{body.amount:.2f}"}
    if idempotency_key is not None:
        detail["idempotency_key"] = idempotency_key
    meter = allowed(api, party, Action.TOP_UP, premises_id, body.meter_id, detail)
    now = api.guard.clock.now()
    try:
        if idempotency_key is None:
            job, voucher = desk.top_up(party, premises_id, meter, Action.TOP_UP.value, body.amount, now)
        else:
            job, voucher = desk.top_up_once(
                party, premises_id, meter, Action.TOP_UP.value, body.amount, now, idempotency_key
            )
    except BadVoucher as err:
        raise HTTPException(400, f"cannot top up meter {meter.meter_id!r}: {err}") from err
    except IdempotencyConflict as err:
        raise HTTPException(409, str(err)) from None
    return accepted(response, job, "prepayment.topup", meter, voucher)


@router.post("/v1/premises/{premises_id}/commands/supply", **common)
def supply(
    party: Caller, api: Services, desk: Desk, premises_id: Id, body: SupplyIn, response: Response
) -> JobAccepted:
    """Connect or disconnect the meter's supply (``supply.reconnect`` / ``supply.disconnect``)."""
    ctype = "supply.reconnect" if body.state == "connect" else "supply.disconnect"
    payload = (SupplyReconnect if body.state == "connect" else SupplyDisconnect)(body.meter_id)
    meter = allowed(
        api,
        party,
        Action.CONNECT_DISCONNECT,
        premises_id,
        body.meter_id,
        {"type": ctype, **payload.to_json()},
    )
    now = api.guard.clock.now()
    job = desk.command(party, premises_id, meter, Action.CONNECT_DISCONNECT.value, ctype, payload, now)
    return accepted(response, job, ctype, meter)


@router.post("/v1/premises/{premises_id}/on-demand-reads", **common)
def on_demand_read(
    party: Caller, api: Services, desk: Desk, premises_id: Id, body: OnDemandReadIn, response: Response
) -> JobAccepted:
    """Pull the meter's hub now, outside its windows (the readings then appear in the store)."""
    meter = allowed(api, party, Action.ON_DEMAND_READ, premises_id, body.meter_id, {})
    job = desk.read(party, premises_id, meter, Action.ON_DEMAND_READ.value, api.guard.clock.now())
    return accepted(response, job, None, meter)
