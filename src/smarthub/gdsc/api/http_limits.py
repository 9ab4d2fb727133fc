"""Limits for the data services API as uvicorn serves it: slow and oversized clients (issue 8).

uvicorn (0.54, h11 protocol) bounds an incomplete head's size (``h11_max_incomplete_event_size``)
and closes an idle keep-alive connection after ``timeout_keep_alive`` — but any byte received
cancels that timer, and it is not armed at all before the first request: a client that sends
its head a byte at a time, or never finishes it, holds the connection for ever (slow loris).
And neither uvicorn nor FastAPI bounds a request body: FastAPI reads a JSON body whole, before
the bearer token is even looked at.

* :class:`HeadDeadlineH11Protocol` (``uvicorn.run(..., http=HeadDeadlineH11Protocol)``) closes
  a connection whose request head is not complete ``header_timeout`` seconds after the
  connection opened or the previous response ended, however steadily its bytes trickle in.
* :class:`BodyGuard` wraps the ASGI app: a ``Content-Length`` over ``max_body`` is answered
  413 before any body byte is read; a body that grows past it (chunked) is answered 413 as
  soon as it does; a body not received within ``body_timeout`` is answered 408. Both answers
  close the connection (the unread rest is never read). The body is read ahead into memory
  (bounded by ``max_body``) and handed to the app whole.

Errors are answered in the API's own error shape (``{"detail": ..., "max_granularity": null}``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = 1024 * 1024  # the largest command body (a tariff) is a few KiB
BODY_TIMEOUT = 10.0
HEADER_TIMEOUT = 10.0


class HeadDeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request head (see the module docstring)."""

    header_timeout: float = HEADER_TIMEOUT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_deadline is not None and not self._awaiting_head():
            self._head_deadline.cancel()
            self._head_deadline = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None
        super().connection_lost(exc)

    def _awaiting_head(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        self._head_deadline = self.loop.call_later(self.header_timeout, self._head_expired)

    def _head_expired(self) -> None:
        self._head_deadline = None
        if self._awaiting_head() and not self.transport.is_closing():
            self.transport.close()  # no request to answer: the head never arrived


class BodyGuard:
    """ASGI middleware bounding request bodies in size and time (see the module docstring)."""

    def __init__(self, app: App, max_body: int = MAX_BODY, body_timeout: float = BODY_TIMEOUT) -> None:
        self.app = app
        self.max_body = max_body
        self.body_timeout = body_timeout

    def __getattr__(self, name: str) -> Any:  # openapi(), routes ... of the wrapped app
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await _refuse(send, 400, "Content-Length is not a number")
                return
            if int(length) > self.max_body:
                await _refuse(send, 413, f"request body of {int(length)} bytes exceeds {self.max_body} bytes")
                return
        body = bytearray()
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    body += message.get("body", b"")
                    if len(body) > self.max_body:
                        await _refuse(send, 413, f"request body exceeds {self.max_body} bytes")
                        return
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await _refuse(send, 408, f"request body not received within {self.body_timeout:g} s")
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail, "max_granularity": None}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
