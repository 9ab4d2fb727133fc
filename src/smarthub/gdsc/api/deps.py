"""What every route of the data services API depends on (FastAPI ``Depends``): the caller,
authenticated, and the API's services (the access guard, the database, the command desk)."""

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime
from sqlalchemy import Engine, select

from smarthub.gdsc.api.auth.oauth import Authenticator, AuthFailed
from smarthub.gdsc.api.gate import CALLER_KEY
from smarthub.gdsc.commands.desk import CommandDesk
from smarthub.gdsc.fleet.key_escrow import KeyEscrow
from smarthub.gdsc.fleet.registry import premises
from smarthub.gdsc.governance.access import TimeRange
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.model.decimals import INSTANT_TEXT

Id = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
MAX_PAGE = 10_000
Instant = Annotated[AwareDatetime, INSTANT_TEXT]  # a query's instant: RFC 3339 with its offset, as published

bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True, slots=True)
class ApiServices:
    """The services behind the routes; ``create_app`` puts them on ``app.state.services``."""

    guard: AccessGuard
    authenticate: Authenticator
    desk: CommandDesk | None = None
    escrow: KeyEscrow | None = None  # the meter key escrow (shipment files' keys)

    @property
    def engine(self) -> Engine:
        return self.guard.parties.engine


def services(request: Request) -> ApiServices:
    found: ApiServices = request.app.state.services
    return found


Services = Annotated[ApiServices, Depends(services)]


def desk(api: Services) -> CommandDesk:
    assert api.desk is not None  # the command routes are only mounted with a desk
    return api.desk


Desk = Annotated[CommandDesk, Depends(desk)]


def caller(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)], api: Services
) -> str:
    """The calling party: a bearer or OAuth2 token, or a party certificate over mutual TLS.

    :class:`~smarthub.gdsc.api.gate.RouteGate` has authenticated it before the body was read
    (401 before 400/422); without the gate (an app assembled otherwise) it is done here."""
    gated = request.scope.get(CALLER_KEY)
    if isinstance(gated, str):
        return gated
    route = request.scope.get("route")
    tls = request.scope.get("extensions", {}).get("tls")
    try:
        who = api.authenticate(
            creds.credentials if creds else None,
            tls,
            request.method,
            getattr(route, "path", request.url.path),
        )
    except AuthFailed as err:
        raise HTTPException(err.status, err.detail, headers=err.headers) from None
    return who.party_id


Caller = Annotated[str, Depends(caller)]


def period(start: datetime, end: datetime) -> TimeRange:
    """The asked period, or 400."""
    try:
        return TimeRange(start, end)
    except ValueError as err:
        raise HTTPException(400, str(err)) from err


def require_premises(api: ApiServices, premises_id: str) -> None:
    """404 unless the GDSC knows the premises (asked after the access decision, so that a
    refused caller cannot learn which premises exist)."""
    with api.engine.connect() as conn:
        known = conn.execute(
            select(premises.c.premises_id).where(premises.c.premises_id == premises_id)
        ).first()
    if known is None:
        raise HTTPException(404, f"no premises {premises_id}")
