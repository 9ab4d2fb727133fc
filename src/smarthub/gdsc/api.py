"""The GDSC data services API (REST/JSON, OpenAPI from FastAPI): readings (JSON, or bulk CSV/Parquet
export), consents, access log, commands to hubs through the shared pull plan and their jobs, and a
non-domestic customer's portfolio of sites.

Every endpoint passes through :class:`~smarthub.gdsc.guard.AccessGuard`, so each request is
decided by the access policy and recorded in the audit chain before any data is read or written.

Callers authenticate (:mod:`smarthub.gdsc.oauth`) with an OAuth2 access token from the client
credentials grant at ``POST /oauth/token`` (scopes narrow what it may do), with a GDSC-issued party
certificate over mutual TLS (``smarthub gdsc api --tls``), or with a bearer token from
``smarthub gdsc token``; only hashes of secrets and tokens are held.

Lists that can grow are paged (``after`` + ``limit``, ``next_after`` in the answer).
"""

import enum
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, BaseModel, Field

from smarthub.clock import Clock
from smarthub.gdsc import aggregates, dataservices, export, tariffs
from smarthub.gdsc.access import Action, Decision, TimeRange, current_tenancy
from smarthub.gdsc.api_clients import ClientRegistry
from smarthub.gdsc.api_commands import CommandDesk, HubInactive, Job, message_id
from smarthub.gdsc.api_tokens import TokenStore, token_digest
from smarthub.gdsc.audit import AuditLog
from smarthub.gdsc.consent_sync import syncing_parties
from smarthub.gdsc.guard import AccessDenied, AccessGuard
from smarthub.gdsc.oauth import (
    DEFAULT_LIFETIME,
    Authenticator,
    AuthFailed,
    TokenEndpoint,
    document_security,
    token_app,
)
from smarthub.gdsc.parties import Consent, DataKind, Granularity, PartyRepository, Role, UnknownParty
from smarthub.gdsc.store import Store
from smarthub.model.prepayment import MAX_TOPUP, BadVoucher
from smarthub.model.tariff import Tariff

Id = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
MAX_PAGE = 10_000


class ErrorBody(BaseModel):
    detail: str
    max_granularity: str | None = None


class BucketOut(BaseModel):
    """A value over [start, start + duration): value × 10^power_of_ten in the unit uom."""

    start: datetime
    duration: int = Field(description="seconds")
    value: int
    power_of_ten: int
    uom: int = Field(description="IEEE 2030.5 UomType")


class ReadingOut(BucketOut):
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


class AggregateOut(BucketOut):
    premises: int = Field(description="premises whose data the sum contains (never fewer than k)")


class AggregatePage(BaseModel):
    group: str
    group_size: int = Field(description="premises that were members of the group in the period")
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


class ExportFormat(enum.StrEnum):
    CSV = "csv"
    PARQUET = "parquet"


# -- commands and jobs ----------------------------------------------------------------------------

MeterId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]


class TariffUpdateIn(BaseModel):
    meter_id: MeterId = Field(description="a meter of the supply: its fuel is the tariff's fuel")
    tariff: Tariff
    effective: AwareDatetime | None = Field(
        default=None,
        description="when the hub starts charging by this version: local (Europe/London) midnight of "
        "the tariff's effective_from, the only instant a hub accepts (null: that midnight)",
    )


class IhdMessageIn(BaseModel):
    meter_id: MeterId = Field(description="a meter of the premises (it names the hub whose IHD shows it)")
    text: str = Field(min_length=1, max_length=500)
    priority: int = Field(default=1, ge=0, le=3, description="IEEE 2030.5 TextMessage priority, 0 low..3")
    expires: AwareDatetime | None = None


class TopUpIn(BaseModel):
    meter_id: MeterId
    amount: Annotated[Decimal, Field(gt=0, le=MAX_TOPUP, max_digits=5, decimal_places=2)] = Field(
        description="pounds, with pence"
    )


class SupplyIn(BaseModel):
    meter_id: MeterId
    state: Literal["connect", "disconnect"]


class OnDemandReadIn(BaseModel):
    meter_id: MeterId


class JobAccepted(BaseModel):
    job_id: int
    state: str
    command_type: str | None = Field(description="null for an on-demand read")
    hub_id: str
    voucher_id: str | None = None


class JobOut(BaseModel):
    job_id: int
    state: Literal["queued", "in-flight", "done", "failed"]
    action: str
    command_type: str | None
    premises_id: str
    meter_id: str
    hub_id: str
    queued: datetime
    finished: datetime | None
    tries: int = Field(description="deliveries that have failed so far (retried with backoff)")
    result: dict[str, Any] | None = Field(description="the hub's verdict, or the read's counts")
    error: str | None
    voucher_id: str | None = None
    voucher_status: str | None = None


class JobsPage(BaseModel):
    jobs: list[int]
    next_after: int | None


# -- portfolio ------------------------------------------------------------------------------------


class SiteMeter(BaseModel):
    meter_id: str
    fuel: str


class SiteOut(BaseModel):
    premises_id: str
    occupied: list[tuple[datetime, datetime | None]] = Field(description="the customer's tenancies there")
    current: bool
    meters: list[SiteMeter]


class PortfolioPage(BaseModel):
    customer_id: str
    sites: list[SiteOut]
    next_after: str | None


class SiteReading(BucketOut):
    meters: int = Field(description="meter buckets summed into this value")


class SiteConsumption(BaseModel):
    premises_id: str
    allowed: list[tuple[datetime, datetime]]
    readings: list[SiteReading]


class PortfolioConsumption(BaseModel):
    customer_id: str
    fuel: str
    obis: str
    granularity: Granularity
    sites: list[SiteConsumption] = Field(description="this page of sites")
    total: list[SiteReading] = Field(description="summed across every site in the period, not only this page")
    next_after: str | None


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "the request is well-formed but cannot be carried out as asked"},
    401: {
        "model": ErrorBody,
        "description": "no, unknown or expired token, or a client certificate bound to no party",
    },
    403: {
        "model": ErrorBody,
        "description": "refused by the access policy, or beyond the token's scope (the reason says why)",
    },
    404: {
        "model": ErrorBody,
        "description": "no such meter, consent or aggregation group; no such job, or another party's job",
    },
    422: {
        "model": ErrorBody,
        "description": "the request does not match the schema (detail names the fields)",
    },
}
COMMAND_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    409: {"model": ErrorBody, "description": "the meter's hub is not active: there is nothing to send to"},
}


def create_app(
    guard: AccessGuard,
    tokens: Mapping[str, str],
    desk: CommandDesk | None = None,
    *,
    clients: ClientRegistry | None = None,
    token_lifetime: timedelta = DEFAULT_LIFETIME,
    token_endpoint: TokenEndpoint | None = None,
) -> FastAPI:
    """``tokens`` maps the SHA-256 hex digest of each issued bearer token to its party id.

    ``desk`` signs and queues commands; without it the command and job endpoints are not offered.
    ``clients`` holds OAuth2 clients, their access tokens and parties' certificate bindings (by
    default in the guard's database); access tokens from ``POST /oauth/token`` live
    ``token_lifetime``. ``token_endpoint`` replaces the default one (its rate limits and pool).
    """
    app = FastAPI(title="smarthub GDSC data services", version="1")
    bearer = HTTPBearer(auto_error=False)
    engine = guard.parties.engine
    if clients is None:
        clients = ClientRegistry(engine)
    authenticate = Authenticator(clients, tokens, guard.clock)
    app.mount("/oauth", token_app(token_endpoint or TokenEndpoint(clients, guard.clock, token_lifetime)))

    def caller(
        request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> str:
        route = request.scope.get("route")
        tls = request.scope.get("extensions", {}).get("tls")
        try:
            who = authenticate(
                creds.credentials if creds else None,
                tls,
                request.method,
                getattr(route, "path", request.url.path),
            )
        except AuthFailed as err:
            raise HTTPException(err.status, err.detail, headers=err.headers) from None
        return who.party_id

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            app.openapi_schema = document_security(
                get_openapi(title=app.title, version=app.version, routes=app.routes)
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

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

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Any, err: RequestValidationError) -> JSONResponse:
        problems = []
        for e in err.errors()[:10]:
            where = ".".join(str(x) for x in e.get("loc", ()))
            problems.append(f"{where}: {e.get('msg', 'invalid')}")
        more = len(err.errors()) - len(problems)
        detail = "; ".join(problems) + (f"; and {more} more" if more > 0 else "")
        return JSONResponse(ErrorBody(detail=detail or "invalid request").model_dump(), status_code=422)

    @app.exception_handler(HubInactive)
    async def hub_inactive(_request: Any, err: HubInactive) -> JSONResponse:
        return JSONResponse(ErrorBody(detail=str(err)).model_dump(), status_code=409)

    def period(start: datetime, end: datetime) -> TimeRange:
        try:
            return TimeRange(start, end)
        except ValueError as err:
            raise HTTPException(400, str(err)) from err

    def meter_readings_access(
        party: str,
        action: Action,
        premises_id: str,
        meter_id: str,
        granularity: Granularity,
        asked: TimeRange,
        detail: dict[str, Any] | None = None,
    ) -> tuple[dataservices.Meter, Decision]:
        """One meter's readings, read or exported: a served granularity (else 400), the meter at
        the premises (else 404), and the guard's decision (denied: 403, recorded in the audit)."""
        if granularity not in dataservices.SERVED:
            raise HTTPException(
                400, f"readings are served half-hourly, daily or monthly, not {granularity.value}"
            )
        meter = dataservices.find_meter(engine, premises_id, meter_id)
        decision = guard.require(
            party,
            action,
            premises_id=premises_id,
            fuel=meter.fuel,
            meter_id=meter_id,
            granularity=granularity,
            period=asked,
            detail=detail,
        )
        return meter, decision

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
        meter, decision = meter_readings_access(
            party, Action.READ_READINGS, premises_id, meter_id, granularity, asked
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

    @app.get(
        "/v1/premises/{premises_id}/readings/export",
        response_class=StreamingResponse,
        responses={
            **ERRORS,
            200: {
                "description": "the readings as CSV (RFC 4180, header line) or Parquet, streamed",
                "content": {export.CSV_MEDIA_TYPE: {}, export.PARQUET_MEDIA_TYPE: {}},
            },
        },
    )
    def export_readings(
        party: Caller,
        premises_id: Id,
        meter_id: Annotated[str, Query(min_length=1, max_length=64)],
        start: AwareDatetime,
        end: AwareDatetime,
        granularity: Granularity,
        format: ExportFormat = ExportFormat.CSV,
        obis: Annotated[str, Query(max_length=32)] = "1-0:1.8.0",
    ) -> StreamingResponse:
        """The readings query's data, whole, as a file: same policy, granularity limit and audit
        (action ``export``); streamed a month of stored data at a time."""
        asked = period(start, end)
        meter, decision = meter_readings_access(
            party,
            Action.EXPORT,
            premises_id,
            meter_id,
            granularity,
            asked,
            detail={"format": format.value, "obis": obis},
        )
        buckets = dataservices.iter_readings(engine, meter, obis, decision.ranges, granularity)
        stem = f"{premises_id}-{meter_id}-{asked.start:%Y%m%d}-{asked.end:%Y%m%d}-{granularity.value}"
        if format is ExportFormat.CSV:
            body: Iterator[bytes] = export.csv_stream(buckets)
            media = export.CSV_MEDIA_TYPE
        else:
            allowed = ",".join(f"{r.start.isoformat()}/{r.end.isoformat()}" for r in decision.ranges)
            meta = {
                "premises_id": premises_id,
                "meter_id": meter_id,
                "obis": obis,
                "granularity": granularity.value,
                "allowed": allowed,
            }
            body, media = export.parquet_stream(buckets, meta), export.PARQUET_MEDIA_TYPE
        return StreamingResponse(
            body,
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{stem}.{format.value}"'},
        )

    @app.get("/v1/aggregates/readings", response_model=AggregatePage, responses=ERRORS)
    def get_aggregate(
        party: Caller,
        group: Annotated[str, Query(min_length=1, max_length=64, description="a group the GDSC defined")],
        start: AwareDatetime,
        end: AwareDatetime,
        granularity: Granularity,
        fuel: Annotated[str, Query(max_length=16)] = "electricity",
        obis: Annotated[str, Query(max_length=32)] = "1-0:1.8.0",
    ) -> AggregatePage:
        """Sums over a pre-defined group of premises (e.g. a feeder), never over a list the caller
        chooses: each half-hour is released once it is settled, over at least k premises with data,
        and never changes afterwards (``smarthub.gdsc.aggregates``)."""
        asked = period(start, end)
        if granularity not in dataservices.SERVED:
            raise HTTPException(
                400, f"readings are served half-hourly, daily or monthly, not {granularity.value}"
            )
        if not aggregates.AggregationGroups(engine).exists(group):
            raise HTTPException(404, f"no aggregation group {group!r}")
        members = aggregates.group_members(engine, group, asked)
        decision = guard.require(
            party,
            Action.AGGREGATE_QUERY,
            group=members,
            group_id=group,
            granularity=granularity,
            period=asked,
            detail={"fuel": fuel, "obis": obis},
        )
        buckets = aggregates.aggregate(
            engine,
            group,
            fuel,
            obis,
            decision.ranges[0],
            granularity,
            guard.clock.now(),
            guard.policy.k_anonymity,
        )
        return AggregatePage(
            group=group,
            group_size=len(members),
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
        party: Caller,
        premises_id: Id,
        start: AwareDatetime,
        end: AwareDatetime,
        after: Annotated[
            int | None, Query(ge=0, le=2**62, description="the last seq seen (next page)")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = MAX_PAGE,
    ) -> list[AccessLogEntry]:
        """Who accessed (or tried to) the premises' data, oldest first; page with ``after`` = the
        last ``seq`` received until fewer than ``limit`` entries come back."""
        entries = guard.access_log(party, premises_id, period(start, end))
        entries = [e for e in entries if after is None or e.seq > after][:limit]
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

    _portfolio_routes(app, guard, Caller, period)
    if desk is not None:
        _command_routes(app, guard, desk, Caller)
    return app


def _portfolio_routes(app: FastAPI, guard: AccessGuard, Caller: Any, period: Any) -> None:
    engine = guard.parties.engine

    def sites_of(party: str) -> dict[str, list[tuple[datetime, datetime | None]]]:
        out: dict[str, list[tuple[datetime, datetime | None]]] = {}
        for premises_id, start, end in dataservices.customer_sites(engine, party):
            out.setdefault(premises_id, []).append((start, end))
        return out

    @app.get("/v1/portfolio", response_model=PortfolioPage, responses=ERRORS)
    def list_portfolio(
        party: Caller,
        after: Annotated[str | None, Query(max_length=64, description="the last premises id seen")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> PortfolioPage:
        """A customer's sites: every premises it occupies or occupied, with its meters."""
        held = sites_of(party)
        decision = guard.require(party, Action.PORTFOLIO, group=frozenset(held), detail={"op": "list"})
        ids = [p for p, _ in decision.sites if after is None or p > after]
        page = ids[:limit]
        now = guard.clock.now()
        return PortfolioPage(
            customer_id=party,
            sites=[
                SiteOut(
                    premises_id=p,
                    occupied=held[p],
                    current=any(s <= now and (e is None or now < e) for s, e in held[p]),
                    meters=[
                        SiteMeter(meter_id=m.meter_id, fuel=m.fuel)
                        for m in dataservices.premises_meter_list(engine, p)
                    ],
                )
                for p in page
            ],
            next_after=page[-1] if len(ids) > limit else None,
        )

    @app.get("/v1/portfolio/consumption", response_model=PortfolioConsumption, responses=ERRORS)
    def portfolio_consumption(
        party: Caller,
        start: AwareDatetime,
        end: AwareDatetime,
        granularity: Granularity,
        fuel: Annotated[str, Query(max_length=16)] = "electricity",
        obis: Annotated[str, Query(max_length=32)] = "1-0:1.8.0",
        after: Annotated[str | None, Query(max_length=64, description="the last premises id seen")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> PortfolioConsumption:
        """Consumption per site (this page of sites) and in total (every site), each site's data
        only from the customer's own tenancy there."""
        asked = period(start, end)
        if granularity not in dataservices.SERVED:
            raise HTTPException(
                400, f"readings are served half-hourly, daily or monthly, not {granularity.value}"
            )
        held = sites_of(party)
        decision = guard.require(
            party,
            Action.PORTFOLIO,
            group=frozenset(held),
            granularity=granularity,
            period=asked,
            detail={"op": "consumption", "fuel": fuel, "obis": obis},
        )
        tz = asked.start.tzinfo
        per_site: list[SiteConsumption] = []
        total: dict[int, list[int]] = {}
        listed = [p for p, _ in decision.sites if after is None or p > after][:limit]
        for premises_id, ranges in decision.sites:
            sums: dict[int, list[int]] = {}
            for m in dataservices.premises_meter_list(engine, premises_id):
                if m.fuel == fuel:
                    for b in dataservices.iter_readings(engine, m, obis, ranges, granularity):
                        _add(sums, b.start, b.duration, b.value, b.power_of_ten, b.uom, 1)
            for s, (d, v, p10, uom, n) in sums.items():
                _add(total, s, d, v, p10, uom, n)
            if premises_id in listed:
                per_site.append(
                    SiteConsumption(
                        premises_id=premises_id,
                        allowed=[(r.start, r.end) for r in ranges],
                        readings=_site_readings(sums, tz),
                    )
                )
        remaining = [p for p, _ in decision.sites if after is None or p > after]
        return PortfolioConsumption(
            customer_id=party,
            fuel=fuel,
            obis=obis,
            granularity=granularity,
            sites=per_site,
            total=_site_readings(total, tz),
            next_after=listed[-1] if len(remaining) > limit else None,
        )


def _add(
    acc: dict[int, list[int]], start: int, duration: int, value: int, p10: int, uom: int, n: int
) -> None:
    a = acc.get(start)
    if a is None:
        acc[start] = [duration, value, p10, uom, n]
        return
    if a[3] != uom:
        raise HTTPException(400, f"cannot sum readings in unit {a[3]} and {uom}: ask for one OBIS code")
    if p10 < a[2]:  # rescale to the finer power of ten so the sum stays exact
        a[1] *= 10 ** (a[2] - p10)
        a[2] = p10
    a[1] += value * 10 ** (p10 - a[2])
    a[4] += n


def _site_readings(acc: dict[int, list[int]], tz: Any) -> list[SiteReading]:
    return [
        SiteReading(
            start=datetime.fromtimestamp(s, tz), duration=d, value=v, power_of_ten=p10, uom=uom, meters=n
        )
        for s, (d, v, p10, uom, n) in sorted(acc.items())
    ]


def _command_routes(app: FastAPI, guard: AccessGuard, desk: CommandDesk, Caller: Any) -> None:
    engine = guard.parties.engine

    def accepted(response: Response, job: int, ctype: str | None, meter: Any, voucher: str | None = None):
        response.headers["Location"] = f"/v1/jobs/{job}"
        return JobAccepted(
            job_id=job, state="queued", command_type=ctype, hub_id=meter.hub_id, voucher_id=voucher
        )

    def allowed(party: str, action: Action, premises_id: str, meter_id: str, detail: dict[str, Any]):
        meter = dataservices.find_meter(engine, premises_id, meter_id)
        guard.require(
            party, action, premises_id=premises_id, fuel=meter.fuel, meter_id=meter_id, detail=detail
        )
        return meter

    common: dict[str, Any] = {"response_model": JobAccepted, "status_code": 202, "responses": COMMAND_ERRORS}

    @app.post("/v1/premises/{premises_id}/commands/tariff-update", **common)
    def tariff_update(
        party: Caller, premises_id: Id, body: TariffUpdateIn, response: Response
    ) -> JobAccepted:
        """Send a tariff version to the hub (``tariff.update``); the current supplier for the fuel only.

        The fuel is the fuel of the meter the access policy checked, never the caller's word."""
        try:  # the instant first: it is about the request alone (any fuel will do for the check)
            tariffs.tariff_update_body(body.tariff, tariffs.FUELS[0], body.effective)
        except ValueError as err:
            raise HTTPException(400, f"cannot send tariff {body.tariff.tariff_id!r}: {err}") from err
        detail = {"tariff": body.tariff.model_dump(mode="json"), "version": body.tariff.version}
        meter = allowed(party, Action.TARIFF_UPDATE, premises_id, body.meter_id, detail)
        if meter.fuel not in tariffs.FUELS:
            raise HTTPException(
                400, f"meter {meter.meter_id!r} is a {meter.fuel} meter: tariffs are for electricity and gas"
            )
        payload = tariffs.tariff_update_body(body.tariff, meter.fuel, body.effective)
        job = desk.command(
            party, premises_id, meter, Action.TARIFF_UPDATE.value, "tariff.update", payload, guard.clock.now()
        )
        return accepted(response, job, "tariff.update", meter)

    @app.post("/v1/premises/{premises_id}/commands/ihd-message", **common)
    def ihd_message(party: Caller, premises_id: Id, body: IhdMessageIn, response: Response) -> JobAccepted:
        """Show a message on the home's IHD (``ihd.message``, IEEE 2030.5 Messaging); the sender is the
        calling supplier."""
        if not body.text.strip():
            raise HTTPException(400, "message text must not be blank")
        payload: dict[str, Any] = {
            "sender": party,
            "id": message_id(),
            "text": body.text,
            "priority": body.priority,
        }
        if body.expires is not None:
            if body.expires <= guard.clock.now():
                raise HTTPException(400, f"message expiry {body.expires.isoformat()} is already past")
            payload["expires"] = body.expires.isoformat()
        meter = allowed(party, Action.IHD_MESSAGE, premises_id, body.meter_id, payload)
        job = desk.command(
            party, premises_id, meter, Action.IHD_MESSAGE.value, "ihd.message", payload, guard.clock.now()
        )
        return accepted(response, job, "ihd.message", meter)

    @app.post("/v1/premises/{premises_id}/commands/top-up", **common)
    def top_up(party: Caller, premises_id: Id, body: TopUpIn, response: Response) -> JobAccepted:
        """Credit a prepayment meter: a signed single-use voucher, recorded before it is sent
        (``prepayment.topup``)."""
        meter = allowed(party, Action.TOP_UP, premises_id, body.meter_id, {"amount": f"{body.amount:.2f}"})
        try:
            job, voucher = desk.top_up(
                party, premises_id, meter, Action.TOP_UP.value, body.amount, guard.clock.now()
            )
        except BadVoucher as err:
            raise HTTPException(400, f"cannot top up meter {meter.meter_id!r}: {err}") from err
        return accepted(response, job, "prepayment.topup", meter, voucher)

    @app.post("/v1/premises/{premises_id}/commands/supply", **common)
    def supply(party: Caller, premises_id: Id, body: SupplyIn, response: Response) -> JobAccepted:
        """Connect or disconnect the meter's supply (``supply.reconnect`` / ``supply.disconnect``)."""
        ctype = "supply.reconnect" if body.state == "connect" else "supply.disconnect"
        payload = {"meter": body.meter_id}
        meter = allowed(
            party, Action.CONNECT_DISCONNECT, premises_id, body.meter_id, {"type": ctype, **payload}
        )
        job = desk.command(
            party, premises_id, meter, Action.CONNECT_DISCONNECT.value, ctype, payload, guard.clock.now()
        )
        return accepted(response, job, ctype, meter)

    @app.post("/v1/premises/{premises_id}/on-demand-reads", **common)
    def on_demand_read(
        party: Caller, premises_id: Id, body: OnDemandReadIn, response: Response
    ) -> JobAccepted:
        """Pull the meter's hub now, outside its windows (the readings then appear in the store)."""
        meter = allowed(party, Action.ON_DEMAND_READ, premises_id, body.meter_id, {})
        job = desk.read(party, premises_id, meter, Action.ON_DEMAND_READ.value, guard.clock.now())
        return accepted(response, job, None, meter)

    @app.get("/v1/jobs/{job_id}", response_model=JobOut, responses=ERRORS)
    def get_job(party: Caller, job_id: Annotated[int, Path(ge=1, le=2**62)]) -> JobOut:
        """A queued command's or read's state: queued, in-flight, done or failed (with why)."""
        # A job that does not exist and another party's job get the same answer, after the same
        # work (one look-up, one audit entry), so job ids cannot be enumerated (issue 13).
        owner = desk.job_owner(job_id)
        decision = guard.authorize(
            party,
            Action.READ_JOB,
            premises_id=owner[1] if owner else None,
            job_owner=owner[0] if owner else None,
        )
        job = desk.job(job_id) if owner is not None and decision.allow else None
        if job is None:
            raise HTTPException(404, f"no job {job_id} that {party} may follow")
        return _job_out(job)

    @app.get("/v1/jobs", response_model=JobsPage, responses=ERRORS)
    def list_jobs(
        party: Caller,
        after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> JobsPage:
        """The ids of the jobs the caller queued, oldest first (each followed at ``/v1/jobs/{id}``)."""
        ids = desk.jobs_of(party, after, limit + 1)
        return JobsPage(jobs=ids[:limit], next_after=ids[limit - 1] if len(ids) > limit else None)


def _job_out(j: Job) -> JobOut:
    return JobOut(
        job_id=j.job_id,
        state=j.state,  # type: ignore[arg-type]
        action=j.action,
        command_type=j.command_type,
        premises_id=j.premises_id,
        meter_id=j.meter_id,
        hub_id=j.hub_id,
        queued=j.queued,
        finished=j.finished,
        tries=j.tries,
        result=j.result,
        error=j.error,
        voucher_id=j.voucher_id,
        voucher_status=j.voucher_status,
    )


def app_from_state(state: FsPath, clock: Clock, db_url: str | None = None) -> FastAPI:
    """The API against a GDSC state directory's store (as ``smarthub demo --state`` or
    ``smarthub gdsc --state`` lay it out), tokens from ``api_tokens``, commands signed with
    ``gdsc/operator.{pem,key}`` and queued in the shared plan of that store."""
    store = Store(db_url or f"sqlite:///{(state / 'gdsc' / 'gdsc.sqlite').resolve()}")
    store.create_schema()
    desk = CommandDesk.from_state(state, store) if (state / "gdsc" / "operator.key").exists() else None
    # With the operator key, consent grants and revocations queue consent.set for the hubs.
    parties = PartyRepository(store.engine) if desk is None else syncing_parties(store, desk.signer, clock)
    guard = AccessGuard(parties, AuditLog(store.engine), clock)
    return create_app(guard, TokenStore(store.engine), desk)


__all__ = ["ErrorBody", "app_from_state", "create_app", "token_digest"]


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
