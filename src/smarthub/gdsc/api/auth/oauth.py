"""OAuth2 client credentials (RFC 6749 §4.4) and client certificates for the data services API.

A party's software authenticates in one of three ways; each resolves to a party id, on which the
access policy then decides as before:

1. **OAuth2 client credentials.** ``POST /oauth/token`` (form-encoded, ``grant_type=
   client_credentials``, optional ``scope``), the client authenticated by HTTP Basic or by
   ``client_id``/``client_secret`` in the body (RFC 6749 §2.3.1), answers an access token
   (§5.1) or an error exactly as §5.2 lists them. The token is then sent as
   ``Authorization: Bearer`` (RFC 6750 §2.1).
2. **Mutual TLS.** Served with ``--tls``, the API requires a client certificate from the GDSC CA
   (checked against its CRL in the handshake, :mod:`smarthub.wan.tls`); the caller is the party
   whose certificate binding (:data:`~smarthub.gdsc.api.auth.clients.party_certificates`) holds the
   certificate's LFDI. A certificate of another role, or one bound to nobody, is refused with a
   401 that says so.
3. **Bearer tokens** issued by ``smarthub gdsc token`` (:mod:`smarthub.gdsc.api.auth.tokens`), as
   before: they act with every scope.

**Why opaque access tokens, not signed JWTs.** The API is its own authorization server and its
tokens never leave it for another resource server, so nothing gains from self-contained tokens;
opaque ones are looked up (by SHA-256, never stored in clear) together with their client on every
request, so revoking a client stops its tokens at once — a JWT would stay good until it expires
unless every request also looked the client up, which removes its one advantage. And there is no
signing key to keep, rotate and publish. Tokens live 15 minutes unless configured otherwise; the
expiry is checked against the API's injected clock.

**Scopes narrow, never widen.** Each scope (:data:`SCOPES`) names what a token may be used for;
:func:`required_scope` maps each route to one (a route it does not know needs a scope nobody is
given, so a new route fails closed); a route two kinds of party call may accept another
(:func:`route_scopes`: an IHD message is a supplier's command, ``commands:write``, or a data
service's message, ``ihd-messages``, so a service's token need not carry every command's
scope). A request whose token lacks the route's scope is refused
with 403 ``insufficient_scope`` (RFC 6750 §3.1) before the access policy is asked; with it, the
policy still decides exactly as for the party itself.

**The token endpoint cannot stall the API** (issue 13): the scrypt check of a client secret runs
in a small bounded pool off the event loop, behind rate limits per source address and per client
id, and an unknown client id costs exactly what a known one does (:mod:`smarthub.gdsc.api.auth.limits`).

**The token endpoint is its own app**, mounted at ``/oauth``: it is the authorization server
(RFC 6749 §1.1), not a resource of the data services, so it is not decided by the access policy
and its form-encoded errors are not the API's JSON ``ErrorBody``. Its OpenAPI document is at
``/oauth/openapi.json``; the API's document declares the three security schemes and, per
operation, the scope it needs.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from cryptography import x509
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from smarthub.clock import Clock
from smarthub.gdsc.api.auth.clients import ClientRegistry, token_digest
from smarthub.gdsc.api.auth.limits import (
    PER_CLIENT,
    PER_SOURCE,
    CheckPool,
    KeyedBuckets,
    Limit,
    PoolBusy,
    source_key,
)
from smarthub.gdsc.governance.parties import PartyRepository, UnknownParty
from smarthub.security.certificates import CertificateRejected, Role, lfdi, role_of

SCOPES: dict[str, str] = {
    "readings:read": "readings, their export, aggregates and a customer's portfolio",
    "commands:write": "queue commands to hubs and on-demand reads",
    "commands:read": "follow the jobs of queued commands and reads",
    "consents": "list, grant and revoke consents",
    "access-log:read": "read a premises' access log",
    "network:read": "a network operator's outages (and their push stream), topology and power quality",
    "network:write": "edit the network topology",
    "readings:edit": "correct validated readings with a reason, see a day's versions (GDSC data operations)",
    "data-quality:read": "the VEE gate's data-quality figures per hub, meter model or supplier",
    "services": "apply as a third-party data service and follow the application; the operator's decisions",
    "tariffs:read": "the catalogue of tariffs the GDSC distributes",
    "demand-response": "send demand-response (DRLC) events to consenting homes' hubs and follow them",
    "appliances:read": "per-appliance consumption from a premises' smart plugs (not whole-home readings)",
    "ihd-messages": "put a data service's message on a consenting home's in-home display",
}
ALL_SCOPES = frozenset(SCOPES)
DEFAULT_LIFETIME = timedelta(minutes=15)
TOKEN_PATH = "/oauth/token"
_GONE = "the token is unknown, expired, or its client was revoked"
_NO_SCOPE = "(none: this route is not open to OAuth2 tokens)"
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")


def required_scope(method: str, path: str) -> str:
    """The scope a route (``method``, FastAPI path template) needs; an unknown route gets a scope
    that is never granted (fail closed)."""
    if path.startswith("/v1/jobs"):
        return "commands:read"
    if path.startswith("/v1/services"):
        return "services"
    if path.startswith(("/v1/network", "/v1/outages")):
        if method != "GET":
            return "network:write"
        # DUoS data sets and planning aggregates are consumption data, as readings are.
        return "readings:read" if path.endswith(("/duos", "/planning")) else "network:read"
    if "/demand-response/" in path:
        return "demand-response"
    if "/commands/" in path or path.endswith("/on-demand-reads"):
        return "commands:write"
    if "/consents" in path or (path.startswith("/v1/premises/") and path.endswith("/services")):
        return "consents"  # the occupant's view of the services it may consent to
    if path.endswith("/access-log"):
        return "access-log:read"
    if path.endswith(("/readings/edits", "/readings/versions", "/readings/quarantine")):
        return "readings:edit"
    if path == "/v1/data-quality":
        return "data-quality:read"
    if method == "GET" and path == "/v1/tariffs":
        return "tariffs:read"
    if method == "GET" and path.endswith("/appliances"):
        return "appliances:read"
    if method == "GET" and (
        path.endswith("/readings")
        or path.endswith("/readings/export")
        or path.startswith("/v1/portfolio")
        or path.endswith("/heat-bill")  # a building's bills: its sub-meters' readings, summed
    ):
        return "readings:read"
    return _NO_SCOPE


# Routes that also accept a narrower scope than their own (any one of them suffices).
_ALSO: dict[tuple[str, str], str] = {
    ("POST", "/v1/premises/{premises_id}/commands/ihd-message"): "ihd-messages",
}


def route_scopes(method: str, path: str) -> tuple[str, ...]:
    """The scopes any one of which lets a token call the route: :func:`required_scope` first."""
    also = _ALSO.get((method, path))
    return (required_scope(method, path),) if also is None else (required_scope(method, path), also)


def parse_scope(value: str) -> frozenset[str]:
    """RFC 6749 §3.3: space-delimited, case-sensitive scope tokens (``ValueError`` if malformed)."""
    tokens = value.split(" ")
    if any(not _SCOPE_TOKEN.match(t) for t in tokens):
        raise ValueError(f"scope {value!r} is not a space-separated list of scope tokens (RFC 6749 §3.3)")
    return frozenset(tokens)


# -- the token endpoint (authorization server) -----------------------------------------------------


class OAuthError(Exception):
    """An error response of the token endpoint (RFC 6749 §5.2)."""

    def __init__(
        self,
        error: str,
        description: str,
        status: int = 400,
        basic: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.basic = basic
        self.retry_after = retry_after

    def response(self) -> JSONResponse:
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        if self.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="smarthub GDSC", charset="UTF-8"'
        if self.retry_after is not None:  # RFC 9110 §10.2.3: whole seconds
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return JSONResponse(
            {"error": self.error, "error_description": self.description}, self.status, headers=headers
        )


def _invalid_client(why: str) -> OAuthError:
    return OAuthError("invalid_client", why, 401)


@dataclass(frozen=True)
class TokenIssued:
    access_token: str
    expires_in: int
    scope: str

    def response(self) -> JSONResponse:
        body = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


class TokenEndpoint:
    """The client credentials grant (RFC 6749 §4.4.2-§4.4.3), independent of the web framework:
    :meth:`handle` takes the request's method, headers and body bytes and checks the secret in
    the caller's thread; :meth:`serve` (what the endpoint runs) first applies the rate limits per
    source and per client id, then checks the secret in a bounded pool off the event loop
    (:mod:`smarthub.gdsc.api.auth.limits`)."""

    def __init__(
        self,
        registry: ClientRegistry,
        clock: Clock,
        lifetime: timedelta = DEFAULT_LIFETIME,
        *,
        per_client: Limit = PER_CLIENT,
        per_source: Limit = PER_SOURCE,
        pool: CheckPool | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if lifetime <= timedelta(0):
            raise ValueError(f"an access token lifetime must be positive, got {lifetime}")
        self.registry = registry
        self.clock = clock
        self.lifetime = lifetime
        self.per_client = KeyedBuckets(per_client, monotonic=monotonic)
        self.per_source = KeyedBuckets(per_source, monotonic=monotonic)
        self.pool = pool or CheckPool()
        self.rate_limited = 0

    async def serve(
        self, method: str, headers: Mapping[str, str], body: bytes, source: str | None
    ) -> TokenIssued:
        """:meth:`handle`, rate-limited and with the secret checked off the event loop."""
        wait = self.per_source.take(source_key(source))
        if wait:
            self.rate_limited += 1
            raise OAuthError("slow_down", "too many token requests from this address", 429, retry_after=wait)
        client_id, secret, params = self.parse(method, headers, body)
        wait = self.per_client.take(client_id)
        if wait:
            self.rate_limited += 1
            raise OAuthError(
                "slow_down", f"too many token requests for client {client_id!r}", 429, retry_after=wait
            )
        try:
            return await self.pool.run(lambda: self.grant(client_id, secret, params))
        except PoolBusy as err:
            raise OAuthError("temporarily_unavailable", str(err), 503, retry_after=1) from None

    def handle(self, method: str, headers: Mapping[str, str], body: bytes) -> TokenIssued:
        return self.grant(*self.parse(method, headers, body))

    def parse(self, method: str, headers: Mapping[str, str], body: bytes) -> tuple[str, str, dict[str, str]]:
        """The request's client id, secret and parameters (cheap: no secret is checked here)."""
        if method != "POST":  # §3.2: the client MUST use POST
            raise OAuthError("invalid_request", "the token endpoint takes POST requests only")
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":  # §4.4.2, Appendix B
            raise OAuthError(
                "invalid_request",
                f"the body must be application/x-www-form-urlencoded, not {ctype or 'absent'}",
            )
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError):
            raise OAuthError(
                "invalid_request", "the body is not a form-encoded UTF-8 parameter list"
            ) from None
        params: dict[str, str] = {}
        for k, v in pairs:
            if k in params:  # §3.2: parameters MUST NOT be included more than once
                raise OAuthError("invalid_request", f"parameter {k!r} is repeated")
            if v != "":  # §3.2: parameters sent without a value are treated as omitted
                params[k] = v
        client_id, secret = self._client_credentials(headers.get("authorization"), params)
        return client_id, secret, params

    def grant(self, client_id: str, secret: str, params: dict[str, str]) -> TokenIssued:
        """Check the secret (scrypt, the same for an unknown id) and issue the token."""
        client = self.registry.authenticate(client_id, secret)
        if client is None:
            raise _invalid_client(f"client {client_id!r} is unknown, revoked, or the secret is wrong")
        grant = params.get("grant_type")
        if grant is None:
            raise OAuthError("invalid_request", "grant_type is missing")
        if grant != "client_credentials":
            raise OAuthError(
                "unsupported_grant_type", f"grant_type {grant!r} is not supported; use client_credentials"
            )
        if "scope" in params:
            try:
                asked = parse_scope(params["scope"])
            except ValueError as err:
                raise OAuthError("invalid_scope", str(err)) from None
            unknown = asked - ALL_SCOPES
            if unknown:
                raise OAuthError(
                    "invalid_scope", f"unknown scope {' '.join(sorted(unknown))}; scopes: {' '.join(SCOPES)}"
                )
            beyond = asked - client.scopes
            if beyond:
                raise OAuthError(
                    "invalid_scope",
                    f"client {client.client_id} is not registered for {' '.join(sorted(beyond))} "
                    f"(it may ask for {' '.join(sorted(client.scopes))})",
                )
        else:  # §3.3: without a scope, the client's registered scopes
            asked = client.scopes
        try:
            party = PartyRepository(self.registry.engine).party(client.party_id)
        except UnknownParty:
            raise OAuthError("invalid_grant", f"party {client.party_id!r} no longer exists") from None
        if not party.approved:
            raise OAuthError("invalid_grant", f"party {party.party_id} is not approved by the GDSC yet")
        token = self.registry.issue_token(client, asked, self.clock.now(), self.lifetime)
        return TokenIssued(token, int(self.lifetime.total_seconds()), " ".join(sorted(asked)))

    @staticmethod
    def _client_credentials(authorization: str | None, params: dict[str, str]) -> tuple[str, str]:
        """§2.3.1: HTTP Basic (id and secret form-encoded, then base64) or both in the body, not both."""
        if authorization is not None:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "basic":
                raise _invalid_client(f"client authentication by {scheme!r} is not supported; use Basic")
            if "client_secret" in params:
                raise OAuthError(
                    "invalid_request",
                    "the client authenticated twice: Basic and client_secret (RFC 6749 §2.3.1)",
                )
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise _invalid_client("the Basic credentials are not base64 of UTF-8") from None
            raw_id, sep, raw_secret = decoded.partition(":")
            if not sep:
                raise _invalid_client("the Basic credentials have no ':' between client id and secret")
            client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
            if params.get("client_id", client_id) != client_id:
                raise OAuthError("invalid_request", "client_id in the body differs from the Basic client id")
            return client_id, secret
        if "client_id" not in params or "client_secret" not in params:
            raise _invalid_client("no client authentication: use HTTP Basic, or client_id and client_secret")
        return params["client_id"], params["client_secret"]


def token_app(endpoint: TokenEndpoint) -> FastAPI:
    """The authorization server, to mount at ``/oauth``: ``POST /oauth/token``."""
    app = FastAPI(title="smarthub GDSC OAuth2 token endpoint", version="1")

    @app.post(
        "/token",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "required": ["grant_type"],
                            "properties": {
                                "grant_type": {"type": "string", "enum": ["client_credentials"]},
                                "scope": {"type": "string", "description": " ".join(SCOPES)},
                                "client_id": {"type": "string"},
                                "client_secret": {"type": "string"},
                            },
                        }
                    }
                },
            }
        },
        responses={
            200: {"description": "an access token (RFC 6749 §5.1)"},
            400: {"description": "invalid_request, invalid_grant, unsupported_grant_type, invalid_scope"},
            401: {"description": "invalid_client (RFC 6749 §5.2)"},
            429: {"description": "slow_down: too many requests from this address or for this client"},
            503: {"description": "temporarily_unavailable: too many secret checks under way"},
        },
    )
    async def token(request: Request) -> JSONResponse:
        """Client credentials grant (RFC 6749 §4.4)."""
        body = await request.body()
        source = request.client.host if request.client else None
        try:
            return (await endpoint.serve(request.method, request.headers, body, source)).response()
        except OAuthError as err:
            return err.response()

    return app


# -- the resource server: who is calling --------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    party_id: str
    scopes: frozenset[str] | None  # None: not narrowed (a certificate or a `gdsc token` bearer token)
    via: str  # "bearer", "oauth2" or "mtls"


class AuthFailed(Exception):
    """401 or 403, with a specific detail and the RFC 6750 §3 challenge."""

    def __init__(
        self,
        status: int,
        detail: str,
        error: str | None = None,
        scope: str | None = None,
        description: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        challenge = 'Bearer realm="smarthub GDSC"'
        if error is not None:
            said = (description or detail).replace('"', "'")
            challenge += f', error="{error}", error_description="{said}"'
        if scope is not None:
            challenge += f', scope="{scope}"'
        self.headers = {"WWW-Authenticate": challenge}


class Authenticator:
    """Resolves a request's credentials to a :class:`Caller` (see the module docstring)."""

    def __init__(self, registry: ClientRegistry, legacy: Mapping[str, str], clock: Clock) -> None:
        self.registry = registry
        self.legacy = legacy
        self.clock = clock

    def __call__(
        self, token: str | None, tls: Mapping[str, Any] | None, method: str, route_path: str
    ) -> Caller:
        by_cert = self._certificate(tls)
        by_token = self._token(token) if token is not None else None
        if by_cert is not None and by_token is not None and by_cert.party_id != by_token.party_id:
            raise AuthFailed(
                401,
                f"the client certificate is bound to party {by_cert.party_id} but the bearer token "
                f"authenticates {by_token.party_id}",
                "invalid_token",
            )
        caller = by_token or by_cert
        if caller is None:
            raise AuthFailed(401, "no or unknown bearer token")
        if caller.scopes is not None:
            need = route_scopes(method, route_path)
            if not caller.scopes.intersection(need):
                raise AuthFailed(
                    403,
                    f"the access token's scope ({' '.join(sorted(caller.scopes))}) does not include "
                    + " or ".join(need),
                    "insufficient_scope",
                    need[0],  # RFC 6750 §3: the attribute lists scopes all needed; one suffices here
                )
        return caller

    def _token(self, token: str) -> Caller:
        digest = token_digest(token)
        party = self.legacy.get(digest)
        if party is not None:
            return Caller(party, None, "bearer")
        access = self.registry.access_token(digest, self.clock.now())
        if access is None:
            # RFC 6750 §3.1: expired, revoked or unknown alike (the detail is the API's usual one)
            raise AuthFailed(401, "no or unknown bearer token", "invalid_token", description=_GONE)
        return Caller(access.party_id, access.scopes, "oauth2")

    def _certificate(self, tls: Mapping[str, Any] | None) -> Caller | None:
        """The party of the verified client certificate the server put in the ASGI TLS extension
        (``client_cert_chain``, PEM, leaf first), or None without one."""
        chain = (tls or {}).get("client_cert_chain") or ()
        if not chain:
            return None
        cert = x509.load_pem_x509_certificate(chain[0].encode() if isinstance(chain[0], str) else chain[0])
        subject = cert.subject.rfc4514_string()
        try:
            role = role_of(cert)
        except CertificateRejected as err:
            raise AuthFailed(401, f"client certificate refused: {err.reason}") from None
        if role is not Role.PARTY:
            raise AuthFailed(
                401,
                f"client certificate {subject} is for a {role.value}, not a party: it cannot call this API",
            )
        id_ = lfdi(cert)
        binding = self.registry.certificate(id_)
        if binding is None:
            raise AuthFailed(401, f"client certificate {subject} (LFDI {id_}) is not registered to any party")
        if binding.revoked is not None:
            raise AuthFailed(
                401,
                f"client certificate {subject} (LFDI {id_}) of party {binding.party_id} was revoked on "
                f"{binding.revoked.isoformat()}",
            )
        return Caller(binding.party_id, None, "mtls")


def security_schemes() -> dict[str, Any]:
    """OpenAPI 3.1 components.securitySchemes of the API."""
    return {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "a token from `smarthub gdsc token` (every scope) or from the token endpoint",
        },
        "oauth2": {
            "type": "oauth2",
            "description": "OAuth2 client credentials (RFC 6749 §4.4); clients from `smarthub gdsc client`",
            "flows": {"clientCredentials": {"tokenUrl": TOKEN_PATH, "scopes": dict(SCOPES)}},
        },
        "mutualTLS": {
            "type": "mutualTLS",
            "description": "a GDSC-issued party certificate whose LFDI is bound to the party "
            "(when served with --tls)",
        },
    }


def document_security(spec: dict[str, Any]) -> dict[str, Any]:
    """Declare the schemes and, on every operation that needs a caller, the alternatives (any one
    suffices) with the operation's scope."""
    spec.setdefault("components", {}).setdefault("securitySchemes", {}).clear()
    spec["components"]["securitySchemes"].update(security_schemes())
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            if isinstance(op, dict) and op.get("security"):
                op["security"] = [
                    {"bearer": []},
                    *({"oauth2": [scope]} for scope in route_scopes(method.upper(), path)),
                    {"mutualTLS": []},
                ]
    return spec
