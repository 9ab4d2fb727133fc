"""``/v1/services``: third-party data services' applications and the GDSC operator's decisions.

A third party (authenticated as itself) applies and follows its own application; the operator
lists them and approves (the answer carries the OAuth2 client credentials, once), refuses,
suspends, resumes or revokes, each with a reason (:mod:`smarthub.gdsc.api.auth.onboarding`).
"""

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from smarthub.gdsc.api.auth.clients import ClientRegistry
from smarthub.gdsc.api.auth.onboarding import Onboarding
from smarthub.gdsc.api.deps import Caller, Id, Services
from smarthub.gdsc.api.schemas import (
    ERRORS,
    ServiceApplicationIn,
    ServiceCredentials,
    ServiceDecisionIn,
    ServiceDecisionOut,
    ServiceOut,
)
from smarthub.gdsc.governance.access import Action
from smarthub.gdsc.governance.services import (
    Application,
    DataService,
    DataServices,
    Decision,
    ServiceError,
    Status,
    UnknownService,
)

router = APIRouter()

CONFLICT: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    409: {
        "model": ERRORS[400]["model"],
        "description": "the decision does not apply to the application's status",
    },
}


def service_out(s: DataService) -> ServiceOut:
    a = s.application
    return ServiceOut(
        service_id=s.party_id,
        organisation=a.organisation,
        purpose=a.purpose,
        data_kinds=sorted(a.data_kinds),
        granularity=a.granularity,
        retention_days=a.retention_days,
        status=s.status.value,
        reason=s.reason,
        applied_at=s.applied_at,
        decided_at=s.decided_at,
        decided_by=s.decided_by,
        client_id=s.client_id,
    )


@router.post("/v1/services", response_model=ServiceOut, status_code=201, responses=CONFLICT)
def apply_as_service(party: Caller, api: Services, body: ServiceApplicationIn) -> ServiceOut:
    """The calling third party applies as a data service (again, if it was refused)."""
    api.guard.require(
        party, Action.SERVICE_APPLICATION, detail={"op": "apply", **body.model_dump(mode="json")}
    )
    try:
        application = Application(
            body.organisation, body.purpose, frozenset(body.data_kinds), body.granularity, body.retention_days
        )
        return service_out(
            DataServices(api.engine, api.guard.audit).apply(party, application, api.guard.clock.now())
        )
    except ServiceError as err:
        raise HTTPException(409, str(err)) from err
    except ValueError as err:
        raise HTTPException(400, str(err)) from err


@router.get("/v1/services/mine", response_model=list[ServiceOut], responses=ERRORS)
def my_service(party: Caller, api: Services) -> list[ServiceOut]:
    """The calling third party's application and the decision on it (empty if it has not applied)."""
    api.guard.require(party, Action.SERVICE_APPLICATION, detail={"op": "show"})
    found = DataServices(api.engine, api.guard.audit).find(party)
    return [] if found is None else [service_out(found)]


@router.get("/v1/services", response_model=list[ServiceOut], responses=ERRORS)
def list_services(
    party: Caller,
    api: Services,
    status: Annotated[Status | None, Query(description="only applications in this status")] = None,
) -> list[ServiceOut]:
    """Every application (GDSC operator only), oldest first."""
    api.guard.require(party, Action.SERVICE_ADMIN, detail={"op": "list"})
    return [service_out(s) for s in DataServices(api.engine, api.guard.audit).all(status)]


@router.post("/v1/services/{service_id}/decisions", response_model=ServiceDecisionOut, responses=CONFLICT)
def decide_service(
    party: Caller, api: Services, service_id: Id, body: ServiceDecisionIn
) -> ServiceDecisionOut:
    """The operator's decision on a service (the reason is required for all but an approval); an
    approval answers the service's OAuth2 client credentials, once."""
    guard = api.guard
    guard.require(party, Action.SERVICE_ADMIN, detail={"op": body.decision, "service": service_id})
    onboarding = Onboarding(DataServices(api.engine, guard.audit), ClientRegistry(api.engine))
    try:
        service, creds = onboarding.decide(
            service_id, Decision(body.decision), body.reason, party, guard.clock.now()
        )
    except UnknownService as err:
        raise HTTPException(404, str(err)) from err
    except ServiceError as err:
        raise HTTPException(409, str(err)) from err
    except ValueError as err:
        raise HTTPException(400, str(err)) from err
    return ServiceDecisionOut(
        service=service_out(service),
        credentials=None
        if creds is None
        else ServiceCredentials(
            client_id=creds.client_id, client_secret=creds.client_secret, scope=" ".join(sorted(creds.scopes))
        ),
    )
