"""How the data services API answers what went wrong: one JSON body (``ErrorBody``) with a
reason, and the status each failure of the layers below maps to."""

from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from smarthub.gdsc.api.schemas import ErrorBody
from smarthub.gdsc.commands.desk import HubInactive
from smarthub.gdsc.governance.guard import AccessDenied
from smarthub.gdsc.governance.parties import UnknownParty
from smarthub.gdsc.readings.queries import NotFound


async def denied(_request: Any, err: AccessDenied) -> JSONResponse:
    body = ErrorBody(detail=err.decision.reason, max_granularity=err.decision.max_granularity.value)
    return JSONResponse(body.model_dump(), status_code=403)


async def unknown_party(_request: Any, err: UnknownParty) -> JSONResponse:
    # A token whose party has since been removed authenticates nobody.
    return JSONResponse(ErrorBody(detail="no or unknown bearer token").model_dump(), status_code=401)


async def not_found(_request: Any, err: NotFound) -> JSONResponse:
    return JSONResponse(ErrorBody(detail=str(err)).model_dump(), status_code=404)


async def invalid(_request: Any, err: RequestValidationError) -> JSONResponse:
    problems = []
    for e in err.errors()[:10]:
        where = ".".join(str(x) for x in e.get("loc", ()))
        problems.append(f"{where}: {e.get('msg', 'invalid')}")
    more = len(err.errors()) - len(problems)
    detail = "; ".join(problems) + (f"; and {more} more" if more > 0 else "")
    return JSONResponse(ErrorBody(detail=detail or "invalid request").model_dump(), status_code=422)


async def hub_inactive(_request: Any, err: HubInactive) -> JSONResponse:
    return JSONResponse(ErrorBody(detail=str(err)).model_dump(), status_code=409)


HANDLERS: dict[type[Exception], Any] = {
    AccessDenied: denied,
    UnknownParty: unknown_party,
    NotFound: not_found,
    RequestValidationError: invalid,
    HubInactive: hub_inactive,
}


def install(app: FastAPI) -> None:
    for exc, handler in HANDLERS.items():
        app.add_exception_handler(exc, handler)
