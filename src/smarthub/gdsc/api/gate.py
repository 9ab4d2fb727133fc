"""The route gate: what the data services API decides about a request before any route reads it
(issue 22 items 4 and 5).

Starlette's router answers a method a path does not serve with the first route that matched the
path, so ``PUT /v1/premises/P1/consents`` said ``405, Allow: GET`` although ``POST`` is served there
too, by another route. And FastAPI parses a JSON body before it runs any dependency, the caller's
authentication among them: a malformed body without a token got 400/422, telling an anonymous
client about the body's schema, where the answer is 401.

:class:`RouteGate` (ASGI middleware, inside the app so it sees ``scope["app"]``) matches the
request against the app's routes once, then:

* no API route serves the path: passes it on (404, or the documentation, the token endpoint);
* routes serve the path but none the method: 405 with ``Allow`` listing every method served there;
* the route needs a caller (it depends on :func:`smarthub.gdsc.api.deps.caller`): authenticates
  it *before* the body is read (401, or 403 for an OAuth2 token without the route's scope), then
  hands the authenticated party on in the scope, where ``deps.caller`` takes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from smarthub.gdsc.api.auth.oauth import AuthFailed

CALLER_KEY = "smarthub.caller"  # the party the gate authenticated, in the ASGI scope


def _depends_on(dependant: Dependant, target: Callable[..., Any]) -> bool:
    return any(d.call is target or _depends_on(d, target) for d in dependant.dependencies)


def bearer_token(scope: Scope) -> str | None:
    """The credentials of an ``Authorization: Bearer ...`` header, as FastAPI's HTTPBearer reads it."""
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials:
                return credentials
            return None
    return None


class RouteGate:
    """ASGI middleware: 405 with a true ``Allow``, and authentication before the body (see above)."""

    def __init__(self, app: ASGIApp, routes: Iterable[APIRoute], caller: Callable[..., Any]) -> None:
        """``routes``: the API's routes, in the order the app matches them (the routers' own
        routes: how FastAPI keeps included routers in ``app.routes`` differs between versions);
        ``caller``: the dependency that marks a route as needing an authenticated caller."""
        self.app = app
        self.routes = [(r, _depends_on(r.dependant, caller)) for r in routes]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        full: APIRoute | None = None
        needs_caller = False
        allow: set[str] = set()
        for route, gated in self.routes:
            match, _child = route.matches(scope)
            if match is Match.FULL:
                full, needs_caller = route, gated
                break
            if match is Match.PARTIAL:
                allow |= route.methods or set()
        if full is None and allow:
            methods = ", ".join(sorted(allow))
            await JSONResponse(
                {"detail": f"{scope['method']} is not served at {scope['path']}: {methods} are"},
                status_code=405,
                headers={"Allow": methods},
            )(scope, receive, send)
            return
        if full is not None and needs_caller:
            api = scope["app"].state.services
            try:
                who = await run_in_threadpool(
                    api.authenticate,
                    bearer_token(scope),
                    scope.get("extensions", {}).get("tls"),
                    scope["method"],
                    full.path,
                )
            except AuthFailed as err:
                await JSONResponse({"detail": err.detail}, status_code=err.status, headers=err.headers)(
                    scope, receive, send
                )
                return
            scope[CALLER_KEY] = who.party_id
        await self.app(scope, receive, send)
