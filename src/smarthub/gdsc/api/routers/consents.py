"""``/v1/premises/{premises_id}/consents`` and ``…/access-log``: the occupier's consents (list,
grant, revoke) and who accessed, or tried to access, the premises' data."""

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response

from smarthub.gdsc.api import mappers
from smarthub.gdsc.api.deps import MAX_PAGE, ApiServices, Caller, Id, Instant, Services, period
from smarthub.gdsc.api.schemas import ERRORS, AccessLogEntry, ConsentIn, ConsentOut, ServiceOffer
from smarthub.gdsc.governance.access import Action, current_tenancy
from smarthub.gdsc.governance.parties import Consent, DataKind, Granularity, Role, UnknownParty
from smarthub.gdsc.governance.service_activity import household_services
from smarthub.gdsc.governance.services import DataServices
from smarthub.gdsc.readings import queries

router = APIRouter()


@router.get("/v1/premises/{premises_id}/access-log", response_model=list[AccessLogEntry], responses=ERRORS)
def get_access_log(
    party: Caller,
    api: Services,
    premises_id: Id,
    start: Instant,
    end: Instant,
    after: Annotated[int | None, Query(ge=0, le=2**62, description="the last seq seen (next page)")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = MAX_PAGE,
) -> list[AccessLogEntry]:
    """Who accessed (or tried to) the premises' data, oldest first; page with ``after`` = the
    last ``seq`` received until fewer than ``limit`` entries come back."""
    entries = api.guard.access_log(party, premises_id, period(start, end))
    entries = [e for e in entries if after is None or e.seq > after][:limit]
    return [mappers.access_log_entry(e) for e in entries]


def _within_approval(api: ApiServices, body: ConsentIn) -> None:
    """A consent to a data service with an application must be within what the GDSC approved it
    for (400 otherwise: the policy would never serve more, and the occupant should not think so)."""
    service = DataServices(api.engine, api.guard.audit).find(body.party_id)
    if service is None:
        return
    if not service.approved:
        raise HTTPException(
            400, f"data service {body.party_id} is {service.status.value}: it cannot be given consent"
        )
    approved = service.application
    beyond = sorted({DataKind(k) for k in body.data_kinds} - approved.data_kinds)
    if beyond:
        raise HTTPException(
            400, f"data service {body.party_id} is not approved for {', '.join(k.value for k in beyond)}"
        )
    if Granularity(body.granularity).rank > approved.granularity.rank:
        raise HTTPException(
            400,
            f"data service {body.party_id} is approved for {approved.granularity.value} data at most, "
            f"not {Granularity(body.granularity).value}",
        )


@router.get("/v1/premises/{premises_id}/services", response_model=list[ServiceOffer], responses=ERRORS)
def list_services_for_occupant(party: Caller, api: Services, premises_id: Id) -> list[ServiceOffer]:
    """The data services that hold or held a consent of the current occupant or read their data,
    and every approved service besides: what each asks for, the occupant's live consents to it
    (granted and revoked with the consent endpoints) and what it read during the tenancy, from the
    audit log (issue 25 item 3)."""
    guard = api.guard
    guard.require(party, Action.MANAGE_CONSENT, premises_id=premises_id, detail={"op": "services"})
    now = guard.clock.now()
    tenancy = current_tenancy(guard.parties.facts([premises_id]), premises_id, now)
    assert tenancy is not None  # MANAGE_CONSENT was allowed, so someone occupies it now
    return [mappers.service_offer(s, now) for s in household_services(api.engine, guard.audit, tenancy, now)]


def tenancy_id(api: ApiServices, premises_id: str) -> str:
    guard = api.guard
    t = current_tenancy(guard.parties.facts([premises_id]), premises_id, guard.clock.now())
    assert t is not None  # MANAGE_CONSENT was allowed, so someone occupies it now
    return t.tenancy_id


@router.get("/v1/premises/{premises_id}/consents", response_model=list[ConsentOut], responses=ERRORS)
def list_consents(party: Caller, api: Services, premises_id: Id) -> list[ConsentOut]:
    api.guard.require(party, Action.MANAGE_CONSENT, premises_id=premises_id, detail={"op": "list"})
    mine = tenancy_id(api, premises_id)
    return [mappers.consent_out(c) for c in api.guard.parties.consents([premises_id]) if c.tenancy_id == mine]


@router.post(
    "/v1/premises/{premises_id}/consents",
    response_model=ConsentOut,
    status_code=201,
    responses=ERRORS,
)
def grant_consent(party: Caller, api: Services, premises_id: Id, body: ConsentIn) -> ConsentOut:
    guard = api.guard
    guard.require(
        party,
        Action.MANAGE_CONSENT,
        premises_id=premises_id,
        detail={"op": "grant", **body.model_dump(mode="json")},
    )
    try:
        grantee = guard.parties.party(body.party_id)
    except UnknownParty as err:
        raise HTTPException(400, f"cannot consent to {body.party_id!r}: {err}") from err
    if grantee.role not in (Role.THIRD_PARTY, Role.SUPPLIER):
        raise HTTPException(
            400, f"consent is given to suppliers and data services, not to a {grantee.role.value}"
        )
    _within_approval(api, body)
    if body.meters is not None:
        unknown = set(body.meters) - queries.premises_meters(api.engine, premises_id)
        if unknown:
            raise HTTPException(400, f"no meter {sorted(unknown)} at premises {premises_id!r}")
    try:
        consent = Consent(
            consent_id=uuid.uuid4().hex,
            party_id=body.party_id,
            premises_id=premises_id,
            tenancy_id=tenancy_id(api, premises_id),
            data_kinds=frozenset(body.data_kinds),
            granularity=body.granularity,
            purpose=body.purpose,
            granted_at=guard.clock.now(),
            expires_at=body.expires_at,
            meters=None if body.meters is None else frozenset(body.meters),
        )
    except ValueError as err:
        raise HTTPException(400, str(err)) from err
    guard.parties.grant_consent(consent)
    return mappers.consent_out(consent)


@router.delete(
    "/v1/premises/{premises_id}/consents/{consent_id}",
    status_code=204,
    response_class=Response,
    responses=ERRORS,
)
def revoke_consent(party: Caller, api: Services, premises_id: Id, consent_id: Id) -> Response:
    guard = api.guard
    guard.require(
        party,
        Action.MANAGE_CONSENT,
        premises_id=premises_id,
        detail={"op": "revoke", "consent_id": consent_id},
    )
    mine = tenancy_id(api, premises_id)
    if not any(
        c.consent_id == consent_id and c.tenancy_id == mine for c in guard.parties.consents([premises_id])
    ):
        raise HTTPException(404, f"no consent {consent_id!r} of the current tenancy at {premises_id!r}")
    guard.parties.revoke_consent(consent_id, guard.clock.now())  # revoking twice keeps the first time
    return Response(status_code=204)
