"""The hub's HTTP/1.1 server: h11 (sans-I/O HTTP) on asyncio streams, with TLS from ``ssl``.

Why not aiohttp.web, as the GDSC side uses: memory on a hub. Importing ``aiohttp.web`` costs
~18 MB of RSS (its client, connector and multidict/yarl machinery come with it) on a device
whose whole budget is 64 MB (issue 4, measured by ``bench/hub.py``); h11 costs well under 1 MB
and is already a dependency (the GDSC's bulk puller, :mod:`smarthub.wan.client.pull`). The protocol
work (parsing, framing, keep-alive, pipelining) is h11's; this module adds only what a server
needs around it: routing by path template, middlewares, errors as responses, a bound on
request bodies (413, answered before the rest is read) and on time: idle keep-alive
connections, and a request's head and body each within a total deadline, so slow-loris
clients are closed (the head) or answered 408 (the body) while other clients are served.

It offers the slice of ``aiohttp.web``'s interface the WAN server uses (``Application``,
``Request``, ``Response``, ``json_response``, ``HTTPNotFound``…, ``AppRunner``, ``TCPSite``),
so :mod:`smarthub.wan.server.resources` reads as it did. Path templates are aiohttp's: ``{name}``
matches one path segment; ``match_info`` holds it as sent (still percent-encoded).

The in-home display (:mod:`smarthub.hub.ihd.app`) is served by it too, so a hub runs one HTTP
stack (issue 17: aiohttp cost a complete hub ~11 MB). What a browser-facing app needs on top:
cookies (RFC 6265: ``Request.cookies``, ``Response.set_cookie``), URL-encoded forms
(``Request.post``), redirects (``HTTPSeeOther``), per-request state (``request[key]``),
*guards* that run on a request's head before its body is read (a stranger's body is never
read), and streamed responses (``Response(stream=...)``, sent chunked: Server-Sent Events),
whose producer is cancelled when the client goes away and which a client that stops reading
cannot hold open for longer than the send timeout.

Content negotiation: each route says what it produces (the application's default, or its own);
a request whose ``Accept`` admits none of it gets 406 Not Acceptable before the handler runs
(RFC 9110 §12.5.1, §15.5.7), rather than a body of a type it said it cannot take.

TLS refusals are told: a client whose certificate the handshake refuses gets the TLS alert
OpenSSL wrote (``unknown_ca``, ``certificate_revoked``, ``certificate_expired``…), not a bare
close, so it can tell a refusal from a network fault. asyncio's TLS transport drops that alert
(it aborts the connection without flushing what OpenSSL queued); :class:`_AlertingSSLProtocol`
flushes it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import ssl
from asyncio import sslproto
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import h11

log = logging.getLogger(__name__)

MAX_HEAD = 16 * 1024  # request line and headers
IDLE_TIMEOUT = 75.0  # seconds a keep-alive connection may sit idle (aiohttp's default)
HEADER_TIMEOUT = 10.0  # seconds from a request's first byte to the end of its head, in total
BODY_TIMEOUT = 30.0  # seconds from the end of the head to the end of the body, in total
SHUTDOWN_GRACE = 1.0  # seconds a stopping server waits for its connections to close


class HTTPException(Exception):
    """Raised by a handler: the response is ``status`` with ``text`` (and ``headers``)."""

    status = 500
    reason = "Internal Server Error"

    def __init__(self, *, text: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        self.text = text if text is not None else f"{self.status}: {self.reason}"
        self.headers = dict(headers or {})
        super().__init__(self.text)


class HTTPSeeOther(HTTPException):
    """A redirect to ``location`` (RFC 9110 §15.4.4: the client GETs it)."""

    status, reason = 303, "See Other"

    def __init__(self, location: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(text=f"see {location}", headers={**(headers or {}), "Location": location})
        self.location = location


class HTTPBadRequest(HTTPException):
    status, reason = 400, "Bad Request"


class HTTPUnauthorized(HTTPException):
    status, reason = 401, "Unauthorized"


class HTTPForbidden(HTTPException):
    status, reason = 403, "Forbidden"


class HTTPNotFound(HTTPException):
    status, reason = 404, "Not Found"


class HTTPMethodNotAllowed(HTTPException):
    status, reason = 405, "Method Not Allowed"


class HTTPRequestTimeout(HTTPException):
    status, reason = 408, "Request Timeout"


class HTTPConflict(HTTPException):
    status, reason = 409, "Conflict"


class HTTPRequestEntityTooLarge(HTTPException):
    status, reason = 413, "Request Entity Too Large"


class HTTPUnsupportedMediaType(HTTPException):
    status, reason = 415, "Unsupported Media Type"


class HTTPMisdirectedRequest(HTTPException):
    status, reason = 421, "Misdirected Request"


class HTTPNotAcceptable(HTTPException):
    status, reason = 406, "Not Acceptable"


class HTTPTooManyRequests(HTTPException):
    status, reason = 429, "Too Many Requests"


def accepts(accept: str | None, content_type: str) -> bool:
    """Whether an ``Accept`` header admits ``content_type`` (RFC 9110 §12.5.1): a media range
    ``type/subtype``, ``type/*`` or ``*/*`` matching it with a q-value above 0. No header, or
    an empty one, admits anything."""
    if not accept or not accept.strip():
        return True
    want_type, _, want_sub = content_type.split(";", 1)[0].strip().lower().partition("/")
    for item in accept.split(","):
        media, *params = item.split(";")
        kind, _, sub = media.strip().lower().partition("/")
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        if q <= 0:
            continue
        if (kind == "*" and sub == "*") or (kind == want_type and sub in ("*", want_sub)):
            return True
    return False


class Response:
    """An answer: ``body`` whole (sent with its length), or ``stream``, an async iterator of
    chunks sent as they come (chunked); the stream is closed (``aclose``) when the client goes
    away or stops reading, so its ``finally`` runs."""

    def __init__(
        self,
        *,
        body: bytes = b"",
        status: int = 200,
        content_type: str = "application/octet-stream",
        headers: Mapping[str, str] | None = None,
        stream: AsyncIterator[bytes] | None = None,
    ) -> None:
        self.body = body
        self.status = status
        self.content_type = content_type
        self.headers = dict(headers or {})
        self.stream = stream
        self.cookies: list[str] = []  # Set-Cookie values, one header each

    def set_cookie(
        self,
        name: str,
        value: str,
        *,
        max_age: int | None = None,
        path: str = "/",
        httponly: bool = False,
        samesite: str | None = None,
    ) -> None:
        """A ``Set-Cookie`` (RFC 6265 §4.1); ``value`` must be a cookie-octet string (tokens are)."""
        if not _COOKIE_VALUE.fullmatch(value) or not _TOKEN.fullmatch(name):
            raise ValueError(f"cookie {name!r}: not a cookie name and value RFC 6265 allows")
        parts = [f"{name}={value}"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        parts.append(f"Path={path}")
        if httponly:
            parts.append("HttpOnly")
        if samesite:
            parts.append(f"SameSite={samesite}")
        self.cookies.append("; ".join(parts))

    def del_cookie(self, name: str, *, path: str = "/") -> None:
        """Tell the client to drop a cookie (expired now, RFC 6265 §3.1)."""
        self.cookies.append(f'{name}=""; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path={path}')


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_COOKIE_VALUE = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")


def json_response(data: Any, *, status: int = 200) -> Response:
    return Response(
        body=json.dumps(data).encode(), status=status, content_type="application/json; charset=utf-8"
    )


class Request:
    def __init__(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
        transport: asyncio.BaseTransport,
        match_info: dict[str, str],
    ) -> None:
        self.method = method
        split = urlsplit(target)
        self.path = split.path
        query: dict[str, str] = {}
        for k, v in parse_qsl(split.query, keep_blank_values=True):
            query.setdefault(k, v)  # the first of repeated parameters, as aiohttp's query.get
        self.query: Mapping[str, str] = query
        self.headers = headers
        self.transport = transport
        self.match_info = match_info
        self._body = body
        self._state: dict[str, Any] = {}
        self._form: dict[str, str] | None = None

    @property
    def remote(self) -> str | None:
        peer = self.transport.get_extra_info("peername")
        return str(peer[0]) if peer else None

    @property
    def host(self) -> str:
        """The ``Host`` header as sent (h11 refuses an HTTP/1.1 request without one)."""
        return self.headers.get("host", "")

    @property
    def content_type(self) -> str:
        """The body's media type, lower case, without parameters (``application/octet-stream``
        when none is given, RFC 9110 §8.3)."""
        given = self.headers.get("content-type", "")
        return given.split(";", 1)[0].strip().lower() or "application/octet-stream"

    @property
    def cookies(self) -> Mapping[str, str]:
        """The ``Cookie`` header's pairs (RFC 6265 §5.4); the first of a repeated name."""
        out: dict[str, str] = {}
        for pair in self.headers.get("cookie", "").split(";"):
            name, eq, value = pair.strip().partition("=")
            if eq and name:
                out.setdefault(name, value.strip().removeprefix('"').removesuffix('"'))
        return out

    # Per-request state that guards and middlewares hand on to handlers.
    def __getitem__(self, key: str) -> Any:
        return self._state[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._state[key] = value

    def get(self, key: str, default: Any = None) -> Any:
        return self._state.get(key, default)

    async def read(self) -> bytes:
        return self._body

    async def post(self) -> Mapping[str, str]:
        """The fields of an ``application/x-www-form-urlencoded`` body (the first of a repeated
        name), as UTF-8 (the HTML standard's form encoding); another body type has no fields. A
        multipart body is refused (415): forms served by this server are URL-encoded; a body
        that is not UTF-8 is 400."""
        if self._form is None:
            if self.content_type == "multipart/form-data":
                raise HTTPUnsupportedMediaType(
                    text="multipart/form-data is not accepted: send application/x-www-form-urlencoded"
                )
            form: dict[str, str] = {}
            if self.content_type == "application/x-www-form-urlencoded":
                try:
                    text = self._body.decode("utf-8")
                    pairs = parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=100)
                except (UnicodeDecodeError, ValueError) as err:
                    raise HTTPBadRequest(text=f"the request body is not a form: {err}") from None
                for k, v in pairs:
                    form.setdefault(k, v)
            self._form = form
        return self._form


Handler = Callable[[Request], Awaitable[Response]]
Middleware = Callable[[Request, Handler], Awaitable[Response]]
Guard = Callable[[Request], Awaitable[None]]  # raises an HTTPException to refuse


def middleware(f: Middleware) -> Middleware:
    """Marks a middleware (as aiohttp's decorator does; here for symmetry)."""
    return f


@dataclass(frozen=True)
class _Resource:
    template: str

    def get_info(self) -> dict[str, str]:
        return {"formatter": self.template} if "{" in self.template else {"path": self.template}


@dataclass(frozen=True)
class Route:
    method: str
    resource: _Resource
    handler: Handler
    pattern: re.Pattern[str]
    produces: str | None = None  # the content type it answers with (None: the application's)


class Router:
    def __init__(self) -> None:
        self._routes: list[Route] = []

    def _add(self, method: str, template: str, handler: Handler, produces: str | None) -> None:
        regex = "".join(
            f"(?P<{part[1:-1]}>[^{{}}/]+)" if part.startswith("{") else re.escape(part)
            for part in re.split(r"({\w+})", template)
            if part
        )
        self._routes.append(Route(method, _Resource(template), handler, re.compile(regex), produces))

    def add_get(self, template: str, handler: Handler, *, produces: str | None = None) -> None:
        self._add("GET", template, handler, produces)

    def add_post(self, template: str, handler: Handler, *, produces: str | None = None) -> None:
        self._add("POST", template, handler, produces)

    def add_put(self, template: str, handler: Handler, *, produces: str | None = None) -> None:
        self._add("PUT", template, handler, produces)

    def routes(self) -> Iterator[Route]:
        return iter(self._routes)

    def resolve_route(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed = False
        for route in self._routes:
            m = route.pattern.fullmatch(path)
            if m is None:
                continue
            if route.method == method:
                return route, m.groupdict()
            allowed = True
        if allowed:
            raise HTTPMethodNotAllowed()
        raise HTTPNotFound()

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        route, match = self.resolve_route(method, path)
        return route.handler, match


class Application:
    def __init__(
        self,
        *,
        client_max_size: int = 1024**2,
        middlewares: tuple[Middleware, ...] | list[Any] = (),
        idle_timeout: float = IDLE_TIMEOUT,
        header_timeout: float = HEADER_TIMEOUT,
        body_timeout: float = BODY_TIMEOUT,
        produces: str | None = None,
        guards: tuple[Guard, ...] | list[Guard] = (),
        send_timeout: float = BODY_TIMEOUT,
    ) -> None:
        """``client_max_size`` bounds a request body; the timeouts bound how long a connection may
        sit idle between requests, and how long a request's head and then its body may take in
        total (not per read: a slow-loris client sending a byte a second gains nothing).
        ``produces``: the content type routes answer with unless they name their own; a request
        whose ``Accept`` admits none is answered 406 (None: no check). ``guards`` run in turn
        on each request's head, before its body is read or any middleware runs: one raising an
        :class:`HTTPException` is the answer, the body is left unread and the connection closed.
        ``send_timeout``: how long a client may leave a response unread (its socket buffer
        full) before the connection is closed."""
        self.guards = list(guards)
        self.send_timeout = send_timeout
        self.produces = produces
        self.client_max_size = client_max_size
        self.idle_timeout = idle_timeout
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.middlewares = list(middlewares)
        self.router = Router()

    async def handle(self, request: Request) -> Response:
        async def endpoint(request: Request) -> Response:
            route, request.match_info = self.router.resolve_route(request.method, request.path)
            produces = route.produces or self.produces
            if produces is not None and not accepts(request.headers.get("accept"), produces):
                accept = request.headers.get("accept")
                raise HTTPNotAcceptable(
                    text=f"this resource is {produces}; the request accepts only {accept}"
                )
            return await route.handler(request)

        handler: Handler = endpoint
        for mw in reversed(self.middlewares):  # the first middleware is the outermost
            handler = _wrap(mw, handler)
        return await _answered(handler, request)

    async def check_head(self, request: Request) -> Response | None:
        """The guards' refusal of a request whose body is still unread, or None."""

        async def guarded(request: Request) -> Response:
            for guard in self.guards:
                await guard(request)
            return _PASSED

        response = await _answered(guarded, request)
        return None if response is _PASSED else response


_PASSED = Response(status=100)  # the guards' "go on" (never sent)


async def _answered(handler: Handler, request: Request) -> Response:
    """The handler's response, or the one its exception stands for."""
    try:
        return await handler(request)
    except HTTPException as err:
        return Response(
            body=err.text.encode(),
            status=err.status,
            content_type="text/plain; charset=utf-8",
            headers=err.headers,
        )
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return Response(body=b"500: Internal Server Error", status=500, content_type="text/plain")


def _wrap(mw: Middleware, handler: Handler) -> Handler:
    async def wrapped(request: Request) -> Response:
        return await mw(request, handler)

    return wrapped


class _Connection:
    """One client connection: h11 parses requests, the application answers them in turn."""

    def __init__(self, app: Application, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.app = app
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)

    async def _event(self, deadline: float | None, then: float = 0.0) -> h11.Event | type[h11.PAUSED]:
        """The next h11 event, reading until ``deadline`` (loop time). With ``deadline`` None,
        the first read may take the idle timeout and the deadline becomes ``then`` seconds after
        the first data arrives (a request's head must be complete that long after it starts)."""
        loop = asyncio.get_running_loop()
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            timeout = self.app.idle_timeout if deadline is None else deadline - loop.time()
            if timeout <= 0:
                raise TimeoutError
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if deadline is None:
                deadline = loop.time() + then
            self.h11.receive_data(data)  # b"": the client closed its side

    async def _send(self, *events: h11.Event) -> None:
        for event in events:
            data = self.h11.send(event)
            if data:
                self.writer.write(data)
        await self.writer.drain()

    def _body_ended(self) -> bool:
        """Whether the request's body is over, from what is buffered already (a request refused
        unread may have had none); if not, the answer says the connection closes."""
        while self.h11.their_state is h11.SEND_BODY:
            event = self.h11.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return False
            if isinstance(event, h11.ConnectionClosed):
                return False
        return True

    async def _respond(self, response: Response) -> None:
        headers = [(k.encode(), v.encode()) for k, v in response.headers.items()]
        if not self._body_ended():
            headers.append((b"connection", b"close"))
        headers += [(b"set-cookie", c.encode()) for c in response.cookies]
        headers.append((b"content-type", response.content_type.encode()))
        if response.stream is not None:
            # No length: h11 sends it chunked (or, to an HTTP/1.0 client, until close).
            await self._send(h11.Response(status_code=response.status, headers=headers))
            await self._stream(response.stream)
            return
        headers.append((b"content-length", str(len(response.body)).encode()))
        await self._send(
            h11.Response(status_code=response.status, headers=headers),
            h11.Data(data=response.body),
            h11.EndOfMessage(),
        )

    async def _stream(self, chunks: AsyncIterator[bytes]) -> None:
        """Send ``chunks`` until they end, the client closes its side or sends anything, or it
        leaves them unread for ``send_timeout``; then close the producer (its ``finally`` runs)
        either way, and the connection unless the chunks ended."""

        async def send() -> None:
            async for chunk in chunks:
                self.writer.write(self.h11.send(h11.Data(data=chunk)) or b"")
                await asyncio.wait_for(self.writer.drain(), self.app.send_timeout)
            await self._send(h11.EndOfMessage())

        async def client_gone() -> None:
            # A streaming client (an EventSource) sends nothing more on its connection: its
            # close, or anything it sends (which would otherwise pile up unread), ends the stream.
            await self.reader.read(65536)

        sending = asyncio.ensure_future(send())
        watching = asyncio.ensure_future(client_gone())
        try:
            await asyncio.wait({sending, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sending, watching):
                task.cancel()
            with contextlib.suppress(BaseException):
                await sending
            with contextlib.suppress(BaseException):
                await watching
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        if not sending.cancelled() and sending.exception() is None:
            return
        raise ConnectionError("the client went away or stopped reading during a streamed response")

    async def run(self) -> None:
        while True:
            # A pipelined head may already be (partly) buffered: its clock starts now.
            loop = asyncio.get_running_loop()
            started = self.h11.trailing_data[0]
            deadline = loop.time() + self.app.header_timeout if started else None
            event = await self._event(deadline, self.app.header_timeout)
            if not isinstance(event, h11.Request):
                return  # closed, or nothing more to read
            response = await self._request(event)
            await self._respond(response)
            if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
                return  # a body left unread, or either side asked to close
            self.h11.start_next_cycle()

    async def _request(self, head: h11.Request) -> Response:
        # h11 bounds a head only while it is incomplete; one that arrived whole in a single
        # read can be larger, so the bound is checked again on the parsed head.
        if len(head.target) + sum(len(k) + len(v) + 4 for k, v in head.headers) > MAX_HEAD:
            return _refused(431, f"request head exceeds {MAX_HEAD} bytes")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in head.headers}
        target = head.target.decode("ascii", "replace")
        request = Request(head.method.decode("ascii"), target, headers, b"", self.writer.transport, {})
        if self.app.guards:
            refused = await self.app.check_head(request)
            if refused is not None:
                return refused  # the body unread: the connection closes after the answer
        limit = self.app.client_max_size
        if int(headers.get("content-length") or 0) > limit:
            # Refused unread; the connection closes after the answer (h11 sees the body pending).
            return _too_large(limit)
        body = bytearray()
        deadline = asyncio.get_running_loop().time() + self.app.body_timeout
        while True:
            try:
                event = await self._event(deadline)
            except TimeoutError:
                # The head was read, so h11 lets us answer before closing.
                return _refused(408, f"request body not received within {self.app.body_timeout:g} s")
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > limit:  # a chunked body announces no length
                    return _too_large(limit)
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise h11.RemoteProtocolError("request ended before its body")
        request._body = bytes(body)
        return await self.app.handle(request)


def _too_large(limit: int) -> Response:
    return _refused(413, f"request body exceeds {limit} bytes")


def _refused(status: int, why: str) -> Response:
    """An answer the connection closes after (h11 sees the request's body unfinished)."""
    return Response(body=f"{status}: {why}".encode(), status=status, content_type="text/plain; charset=utf-8")


class AppRunner:
    """Serves an :class:`Application` on the sites started for it; ``cleanup`` stops them all,
    with their connections and the requests in progress on them (a streamed response's
    producer is closed, so its ``finally`` runs before ``cleanup`` returns)."""

    def __init__(self, app: Application, **_aiohttp_options: Any) -> None:
        self.app = app
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()

    async def setup(self) -> None:
        pass

    @property
    def addresses(self) -> list[Any]:
        return [s.getsockname() for server in self._servers for s in server.sockets]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
        conn = _Connection(self.app, reader, writer)
        try:
            await conn.run()
        except h11.RemoteProtocolError as err:
            with contextlib.suppress(Exception):
                if conn.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    status = err.error_status_hint
                    await conn._respond(Response(body=f"{status}: {err}".encode(), status=status))
        except (TimeoutError, ConnectionError, ssl.SSLError, OSError):
            pass  # an idle, slow or vanished client: just close
        except asyncio.CancelledError:
            # Stopped by cleanup. Not re-raised: asyncio's stream protocol asks the finished
            # task for its exception and would log a cancelled one as an error (Python 3.11).
            pass
        finally:
            try:
                _close(writer)
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
            finally:
                # Kept until closed: a stopping server aborts what is still closing (cleanup).
                self._connections.discard(writer)
                if handler is not None:
                    self._handlers.discard(handler)

    async def cleanup(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._connections):
            _close(writer)
        handlers = list(self._handlers)
        for handler in handlers:
            handler.cancel()
        # A TLS connection's close sends our close_notify, then asyncio waits for the client's
        # (up to 30 s, its SSL shutdown timeout). RFC 8446 §6.1 does not require the closer to
        # wait for it, and a client that never answers (frozen, or its network gone) must not
        # hold a stopping hub: past a short grace, the connections left are aborted.
        if handlers:
            _, left = await asyncio.wait(handlers, timeout=SHUTDOWN_GRACE)
            if left:
                for writer in list(self._connections):
                    writer.transport.abort()
                await asyncio.gather(*left, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()


def _close(writer: asyncio.StreamWriter) -> None:
    """Close once: asyncio's TLS transport forgets its protocol on a second ``close()`` (Python
    3.11), after which ``abort()`` does nothing and the stop could not cut a closing connection."""
    if not writer.is_closing():
        writer.close()


class TCPSite:
    def __init__(
        self,
        runner: AppRunner,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 128,
    ) -> None:
        self.runner = runner
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.backlog = backlog

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        context = self.ssl_context
        serve = self.runner._serve

        def factory() -> asyncio.BaseProtocol:
            reader = asyncio.StreamReader(limit=2**16, loop=loop)
            app: asyncio.BaseProtocol = asyncio.StreamReaderProtocol(reader, serve, loop=loop)
            if context is None:
                return app
            # TLS as asyncio.start_server(ssl=...) does it, with the refusal alert kept.
            # waiter None, as asyncio's own loop passes it (typeshed wants a Future)
            return _AlertingSSLProtocol(loop, app, context, None, server_side=True)  # type: ignore[arg-type]

        server = await loop.create_server(factory, self.host, self.port, backlog=self.backlog)
        self.runner._servers.append(server)


class _AlertingSSLProtocol(sslproto.SSLProtocol):
    """asyncio's TLS protocol, sending the alert of a failed handshake before closing.

    ``SSLProtocol._on_handshake_complete`` aborts the transport on a handshake error without
    writing what OpenSSL queued in its outgoing buffer: the alert naming the refusal. Flushing
    it first is what OpenSSL's own servers do. (``_process_outgoing`` and
    ``_on_handshake_complete`` are the asyncio TLS protocol's hooks since Python 3.11.)"""

    def _on_handshake_complete(self, handshake_exc: BaseException | None) -> None:
        if handshake_exc is not None:
            with contextlib.suppress(Exception):
                self._process_outgoing()  # type: ignore[attr-defined]  # private hook, not in typeshed
        super()._on_handshake_complete(handshake_exc)


__all__ = [
    "AppRunner",
    "Application",
    "Guard",
    "HTTPBadRequest",
    "HTTPConflict",
    "HTTPException",
    "HTTPForbidden",
    "HTTPMethodNotAllowed",
    "HTTPMisdirectedRequest",
    "HTTPNotAcceptable",
    "HTTPNotFound",
    "HTTPRequestEntityTooLarge",
    "HTTPRequestTimeout",
    "HTTPSeeOther",
    "HTTPTooManyRequests",
    "HTTPUnauthorized",
    "HTTPUnsupportedMediaType",
    "Request",
    "Response",
    "Route",
    "Router",
    "TCPSite",
    "accepts",
    "json_response",
    "middleware",
]
