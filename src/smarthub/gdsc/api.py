"""The GDSC data services API (REST/JSON, OpenAPI from FastAPI): readings, consents, access log.

Every endpoint passes through :class:`~smarthub.gdsc.guard.AccessGuard`, so each request is
decided by the access policy and recorded in the audit chain before any data is read or written.

Callers authenticate with a bearer token that the GDSC issued to a party; only the SHA-256 of each
token is held. (The issue asks for GDSC-issued client certificates or OAuth2 client credentials:
the token table is what either would resolve to; the issuing flow is not built yet.)
"""

import hashlib
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, BaseModel, Field

from smarthub.gdsc import dataservices
from smarthub.gdsc.access import Action, TimeRange, current_tenancy
from smarthub.gdsc.guard import AccessDenied, AccessGuard
from smarthub.gdsc.parties import Consent, DataKind, Granularity, Role, UnknownParty

Id = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
MAX_PAGE = 10_000


class ErrorBody(BaseModel):
    detail: str
    max_granularity: str | None = None


class ReadingOut(BaseModel):
    start: datetime
    duration: int = Field(description="seconds")
    value: int
    power_of_ten: int
    uom: int = Field(description="IEEE 2030.5 UomType")
    quality: int
    intervals: int = Field(description="stored intervals summed into this value")


class ReadingsPage(BaseModel):
    premises_id: str
    meter_id: str
    obis: str
    granularity: Granularity
    allowed: list[tuple[datetime, datetime]] = Field(description="the data time this caller may see")
    readings: list[ReadingOut]
    next_after: int | None = Field(description="pass as `after` for the next page; null on the last page")


class AggregateOut(BaseModel):
    start: datetime
    duration: int = Field(description="seconds")
    value: int
    power_of_ten: int
    uom: int = Field(description="IEEE 2030.5 UomType")
    premises: int = Field(description="premises whose data the sum contains (never fewer than k)")


class AggregatePage(BaseModel):
    group_size: int
    granularity: Granularity
    readings: list[AggregateOut]


class ConsentIn(BaseModel):
    party_id: str = Field(min_length=1, max_length=64)
    data_kinds: list[DataKind] = Field(min_length=1)
    granularity: Granularity
    purpose: str = Field(min_length=1, max_length=500)
    expires_at: AwareDatetime
    meters: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, description="null: every meter of the premises"
    )


class ConsentOut(BaseModel):
    consent_id: str
    party_id: str
    premises_id: str
    data_kinds: list[DataKind]
    granularity: Granularity
    purpose: str
    granted_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    meters: list[str] | None


class AccessLogEntry(BaseModel):
    seq: int
    at: datetime
    actor: str
    role: str
    action: str
    allow: bool
    reason: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "the request is well-formed but cannot be carried out as asked"},
    401: {"model": ErrorBody, "description": "no or unknown bearer token"},
    403: {"model": ErrorBody, "description": "refused by the access policy (the reason says why)"},
    404: {"model": ErrorBody, "description": "no such meter or consent at this premises"},
}


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_app(guard: AccessGuard, tokens: Mapping[str, str]) -> FastAPI:
    """``tokens`` maps the SHA-256 hex digest of each issued bearer token to its party id."""
    app = FastAPI(title="smarthub GDSC data services", version="1")
    bearer = HTTPBearer(auto_error=False)
    engine = guard.parties.engine

    def caller(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
        party = tokens.get(token_digest(creds.credentials)) if creds else None
        if party is None:
            raise HTTPException(401, "no or unknown bearer token", headers={"WWW-Authenticate": "Bearer"})
        return party

    Caller = Annotated[str, Depends(caller)]

    @app.exception_handler(AccessDenied)
    async def denied(_request: Any, err: AccessDenied) -> JSONResponse:
        body = ErrorBody(detail=err.decision.reason, max_granularity=err.decision.max_granularity.value)
        return JSONResponse(body.model_dump(), status_code=403)

    @app.exception_handler(UnknownParty)
    async def unknown_party(_request: Any, err: UnknownParty) -> JSONResponse:
        # A token whose party has since been removed authenticates nobody.
        return JSONResponse(ErrorBody(detail="no or unknown bearer token").model_dump(), status_code=401)

    @app.exception_handler(dataservices.NotFound)
    async def not_found(_request: Any, err: dataservices.NotFound) -> JSONResponse:
        return JSONResponse(ErrorBody(detail=str(err)).model_dump(), status_code=404)

    def period(start: datetime, end: datetime) -> TimeRange:
        try:
            return TimeRange(start, end)
        except ValueError as err:
            raise HTTPException(400, str(err)) from err

    @app.get("/v1/premises/{premises_id}/readings", response_model=ReadingsPage, responses=ERRORS)
    def get_readings(
        party: Caller,
        premises_id: Id,
        meter_id: Annotated[str, Query(min_length=1, max_length=64)],
        start: AwareDatetime,
        end: AwareDatetime,
        granularity: Granularity,
        obis: Annotated[str, Query(max_length=32)] = "1-0:1.8.0",
        after: Annotated[
            int | None, Query(ge=0, le=2**40, description="epoch seconds of the last start seen")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
    ) -> ReadingsPage:
        asked = period(start, end)
        if granularity not in dataservices.SERVED:
            raise HTTPException(
                400, f"readings are served half-hourly, daily or monthly, not {granularity.value}"
            )
        meter = dataservices.find_meter(engine, premises_id, meter_id)
        decision = guard.require(
            party,
            Action.READ_READINGS,
            premises_id=premises_id,
            fuel=meter.fuel,
            meter_id=meter_id,
            granularity=granularity,
            period=asked,
        )
        buckets = dataservices.readings(engine, meter, obis, decision.ranges, granularity)
        if after is not None:
            buckets = [b for b in buckets if b.start > after]
        page = buckets[:limit]
        return ReadingsPage(
            premises_id=premises_id,
            meter_id=meter_id,
            obis=obis,
            granularity=granularity,
            allowed=[(r.start, r.end) for r in decision.ranges],
            readings=[
                ReadingOut(
                    start=datetime.fromtimestamp(b.start, asked.start.tzinfo),
                    duration=b.duration,
                    value=b.value,
                    power_of_ten=b.power_of_ten,
                    uom=b.uom,
                    quality=b.quality,
                    intervals=b.intervals,
                )
                for b in page
            ],
            next_after=page[-1].start if len(buckets) > limit else None,
        )

    @app.get("/v1/aggregates/readings", response_model=AggregatePage, responses=ERRORS)
    def get_aggregate(
        party: Caller,
        premises: Annotated[
            list[Annotated[str, Field(min_length=1, max_length=64)]], Query(min_length=1, max_length=100_000)
        ],
        start: AwareDatetime,
        end: AwareDatetime,
        granularity: Granularity,
        fuel: Annotated[str, Query(max_length=16)] = "electricity",
        obis: Annotated[str, Query(max_length=32)] = "1-0:1.8.0",
    ) -> AggregatePage:
        asked = period(start, end)
        if granularity not in dataservices.SERVED:
            raise HTTPException(
                400, f"readings are served half-hourly, daily or monthly, not {granularity.value}"
            )
        group = frozenset(premises)
        decision = guard.require(
            party,
            Action.AGGREGATE_QUERY,
            group=group,
            granularity=granularity,
            period=asked,
            detail={"fuel": fuel, "obis": obis},
        )
        buckets = dataservices.aggregate(
            engine, sorted(group), fuel, obis, decision.ranges[0], granularity, guard.policy.k_anonymity
        )
        return AggregatePage(
            group_size=len(group),
            granularity=granularity,
            readings=[
                AggregateOut(
                    start=datetime.fromtimestamp(b.start, asked.start.tzinfo),
                    duration=b.duration,
                    value=b.value,
                    power_of_ten=b.power_of_ten,
                    uom=b.uom,
                    premises=b.premises,
                )
                for b in buckets
            ],
        )

    @app.get("/v1/premises/{premises_id}/access-log", response_model=list[AccessLogEntry], responses=ERRORS)
    def get_access_log(
        party: Caller, premises_id: Id, start: AwareDatetime, end: AwareDatetime
    ) -> list[AccessLogEntry]:
        entries = guard.access_log(party, premises_id, period(start, end))
        return [
            AccessLogEntry(
                seq=e.seq,
                at=e.at,
                actor=e.actor,
                role=e.role,
                action=e.action,
                allow=e.allow,
                reason=e.reason,
            )
            for e in entries
        ]

    def tenancy_id(premises_id: str) -> str:
        t = current_tenancy(guard.parties.facts([premises_id]), premises_id, guard.clock.now())
        assert t is not None  # MANAGE_CONSENT was allowed, so someone occupies it now
        return t.tenancy_id

    @app.get("/v1/premises/{premises_id}/consents", response_model=list[ConsentOut], responses=ERRORS)
    def list_consents(party: Caller, premises_id: Id) -> list[ConsentOut]:
        guard.require(party, Action.MANAGE_CONSENT, premises_id=premises_id, detail={"op": "list"})
        mine = tenancy_id(premises_id)
        return [_out(c) for c in guard.parties.consents([premises_id]) if c.tenancy_id == mine]

    @app.post(
        "/v1/premises/{premises_id}/consents",
        response_model=ConsentOut,
        status_code=201,
        responses=ERRORS,
    )
    def grant(party: Caller, premises_id: Id, body: ConsentIn) -> ConsentOut:
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
        if body.meters is not None:
            unknown = set(body.meters) - dataservices.premises_meters(engine, premises_id)
            if unknown:
                raise HTTPException(400, f"no meter {sorted(unknown)} at premises {premises_id!r}")
        try:
            consent = Consent(
                consent_id=uuid.uuid4().hex,
                party_id=body.party_id,
                premises_id=premises_id,
                tenancy_id=tenancy_id(premises_id),
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
        return _out(consent)

    @app.delete(
        "/v1/premises/{premises_id}/consents/{consent_id}",
        status_code=204,
        response_class=Response,
        responses=ERRORS,
    )
    def revoke(party: Caller, premises_id: Id, consent_id: Id) -> Response:
        guard.require(
            party,
            Action.MANAGE_CONSENT,
            premises_id=premises_id,
            detail={"op": "revoke", "consent_id": consent_id},
        )
        mine = tenancy_id(premises_id)
        if not any(
            c.consent_id == consent_id and c.tenancy_id == mine for c in guard.parties.consents([premises_id])
        ):
            raise HTTPException(404, f"no consent {consent_id!r} of the current tenancy at {premises_id!r}")
        guard.parties.revoke_consent(consent_id, guard.clock.now())  # revoking twice keeps the first time
        return Response(status_code=204)

    return app


def _out(c: Consent) -> ConsentOut:
    return ConsentOut(
        consent_id=c.consent_id,
        party_id=c.party_id,
        premises_id=c.premises_id,
        data_kinds=sorted(c.data_kinds),
        granularity=c.granularity,
        purpose=c.purpose,
        granted_at=c.granted_at,
        expires_at=c.expires_at,
        revoked_at=c.revoked_at,
        meters=None if c.meters is None else sorted(c.meters),
    )
