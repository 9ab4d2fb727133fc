"""The GDSC data services API (REST/JSON, OpenAPI from FastAPI): readings (JSON, or bulk CSV/Parquet
export), consents, access log, commands to hubs through the shared pull plan and their jobs, and a
non-domestic customer's portfolio of sites.

Laid out as envoy lays out its 2030.5 server: a router per resource (:mod:`.routers`), the
request and response bodies (:mod:`.schemas`), mappers from the services' values to those
bodies (:mod:`.mappers`), and what every route depends on (:mod:`.deps`: the caller, the
services); the services themselves live in the GDSC's packages (governance, readings, commands).

Every endpoint passes through :class:`~smarthub.gdsc.governance.guard.AccessGuard`, so each request
is decided by the access policy and recorded in the audit chain before any data is read or written.

Callers authenticate (:mod:`smarthub.gdsc.api.auth.oauth`) with an OAuth2 access token from the
client credentials grant at ``POST /oauth/token`` (scopes narrow what it may do), with a
GDSC-issued party certificate over mutual TLS (``smarthub gdsc api --tls``), or with a bearer token
from ``smarthub gdsc token``; only hashes of secrets and tokens are held.

Lists that can grow are paged (``after`` + ``limit``, ``next_after`` in the answer).
"""

from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from smarthub.clock import Clock
from smarthub.gdsc.api import errors
from smarthub.gdsc.api.auth.clients import ClientRegistry
from smarthub.gdsc.api.auth.oauth import (
    DEFAULT_LIFETIME,
    Authenticator,
    TokenEndpoint,
    document_security,
    token_app,
)
from smarthub.gdsc.api.auth.tokens import TokenStore
from smarthub.gdsc.api.deps import ApiServices, caller
from smarthub.gdsc.api.gate import RouteGate
from smarthub.gdsc.api.links import document_links
from smarthub.gdsc.api.routers import (
    aggregates,
    appliances,
    buildings,
    commands,
    consents,
    demand_response,
    field_meters,
    jobs,
    network,
    outages,
    portfolio,
    quality,
    readings,
    services,
    tariffs,
    transfer,
)
from smarthub.gdsc.commands.desk import CommandDesk
from smarthub.gdsc.fleet.key_escrow import KeyEscrow
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.consent_sync import syncing_parties
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.gdsc.governance.parties import PartyRepository
from smarthub.gdsc.metrics import ApiMetrics, CertificateExpiry, FleetGauges, process_name
from smarthub.gdsc.store import Store


def create_app(
    guard: AccessGuard,
    tokens: Mapping[str, str],
    desk: CommandDesk | None = None,
    *,
    clients: ClientRegistry | None = None,
    token_lifetime: timedelta = DEFAULT_LIFETIME,
    token_endpoint: TokenEndpoint | None = None,
    escrow: KeyEscrow | None = None,
) -> FastAPI:
    """``tokens`` maps the SHA-256 hex digest of each issued bearer token to its party id.

    ``desk`` signs and queues commands; without it the command and job endpoints are not offered.
    ``escrow`` keeps the meter keys of imported shipment files, sealed (without it a shipment
    file with keys is refused). ``clients`` holds OAuth2 clients, their access tokens and parties'
    certificate bindings (by default in the guard's database); access tokens from
    ``POST /oauth/token`` live ``token_lifetime``. ``token_endpoint`` replaces the default one
    (its rate limits and pool).
    """
    app = FastAPI(
        title="smarthub GDSC data services",
        version="1",
        generate_unique_id_function=operation_id,
    )
    clients = clients or ClientRegistry(guard.parties.engine)
    app.state.services = ApiServices(guard, Authenticator(clients, tokens, guard.clock), desk, escrow)
    app.mount("/oauth", token_app(token_endpoint or TokenEndpoint(clients, guard.clock, token_lifetime)))
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    errors.install(app)
    resources = [readings, aggregates, consents, portfolio, quality, outages, network, services, transfer]
    resources += [field_meters, buildings, tariffs, appliances]
    resources += [commands, jobs, demand_response] if desk is not None else []
    for resource in resources:
        app.include_router(resource.router)
    # 405 with a true Allow; the caller authenticated before the body is read (401 before 400/422)
    routes = [r for resource in resources for r in resource.router.routes if isinstance(r, APIRoute)]
    app.add_middleware(RouteGate, routes=routes, caller=caller)
    app.state.api_routes = routes  # the metrics name a request's route template from these
    return app


def operation_id(route: APIRoute) -> str:
    """An operation's id is its function's name (``top_up``, ``get_job``): the generated
    clients' method names, and what the document's links name (:mod:`.links`)."""
    return route.name


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The OpenAPI document with the API's security schemes (bearer, OAuth2, mutual TLS)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            app.openapi_schema = document_links(
                document_security(get_openapi(title=app.title, version=app.version, routes=app.routes))
            )
        return app.openapi_schema

    return openapi


def app_from_state(state: Path, clock: Clock, db_url: str | None = None) -> FastAPI:
    """The API against a GDSC state directory's store (as ``smarthub demo --state`` or
    ``smarthub gdsc --state`` lay it out), tokens from ``api_tokens``, commands signed with
    ``gdsc/operator.{pem,key}`` and queued in the shared plan of that store."""
    store = Store(db_url or f"sqlite:///{(state / 'gdsc' / 'gdsc.sqlite').resolve()}")
    store.create_schema()
    return app_from_store(store, state, clock)


def app_from_store(
    store: Store, state: Path, clock: Clock, *, metrics: CollectorRegistry | None = None
) -> FastAPI:
    """The API over an open store, with the state directory's operator key (if any), and its
    Prometheus metrics on ``/metrics`` (:func:`instrument`): in ``metrics`` (a running GDSC's
    registry), else in a registry of its own with the fleet-wide gauges."""
    if store.key_escrow is None:  # meter keys (shipments, meter.key) kept sealed under the state's KEK
        store.enable_key_escrow(KeyEscrow.from_state(state))
    desk = CommandDesk.from_state(state, store) if (state / "gdsc" / "operator.key").exists() else None
    # With the operator key, consent grants and revocations queue consent.set for the hubs.
    parties = PartyRepository(store.engine) if desk is None else syncing_parties(store, desk.signer, clock)
    guard = AccessGuard(parties, AuditLog(store.engine), clock)
    app = create_app(guard, TokenStore(store.engine), desk, escrow=store.key_escrow)
    if metrics is None:
        metrics = CollectorRegistry()
        metrics.register(FleetGauges(store, clock))
        metrics.register(CertificateExpiry.of_state(state))
    instrument(app, metrics)
    return app


def instrument(app: FastAPI, registry: CollectorRegistry) -> None:
    """Requests by route template and status, and their latency (:class:`ApiMetrics`), counted
    in ``registry``; ``GET /metrics`` renders it. Like any Prometheus exporter it asks for no
    credentials: it holds counts by route template, never a hub, premises or party id (expose
    the port to the monitoring network only; README "Metrics")."""
    app.add_middleware(
        ApiMetrics,
        registry=registry,
        process=process_name("api-"),
        routes=lambda: [*app.state.api_routes, *app.router.routes],
    )

    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)


__all__ = ["app_from_state", "app_from_store", "create_app", "instrument"]
