"""The lean pull client: one hub's bulk readings over mutual TLS, with TLS session resumption.

Why not aiohttp (as :class:`smarthub.wan.client.hub_client.HubClient`)? asyncio's streams and transports
do not expose the ``SSLSession``, so a collector pulling millions of hubs would pay a full
ECDHE + ECDSA handshake on every pull. Here TLS runs on ``ssl.MemoryBIO`` under a plain
asyncio ``Protocol`` (``SSLContext.wrap_bio(..., session=cached)``), HTTP/1.1 is ``h11``
(sans-I/O) and the body goes straight into :class:`smarthub.wan.client.bulk.BulkParser` chunk by
chunk. Memory per connection is bounded: the socket is paused when more than
``READ_HIGH_WATER`` bytes wait, and a body may not exceed ``MAX_BODY``.

Pinning: after every handshake, full *or resumed*, the hub's certificate LFDI must be the
one registered for it (:func:`smarthub.wan.tls.check_peer`; on a resumed session OpenSSL
reports the certificate stored in the session). Sessions are cached per (host, port, LFDI).
Every failure is a :class:`PullError` saying what went wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

import h11

from smarthub.wan.client import sep2
from smarthub.wan.client.bulk import BulkParser, ChannelReadings
from smarthub.wan.client.hub_client import PulledInterval, PullError
from smarthub.wan.contract import channel as hub_channel
from smarthub.wan.contract import crl_sync
from smarthub.wan.contract import revocations as consent_revocations
from smarthub.wan.contract import storage as storage_state
from smarthub.wan.contract.authority import host_header
from smarthub.wan.contract.sep2_xml import XmlRefused, is_register_href, parse_untrusted
from smarthub.wan.tls import PeerMismatch, check_peer

if TYPE_CHECKING:
    from smarthub.wan.client.channel import ChannelEndpoint

MAX_BODY = 4 * 1024 * 1024
READ_HIGH_WATER = 256 * 1024
PAGE = 100  # MirrorUsagePoints (meters) asked for per bulk request: a home's all, in one
_RECV = 65536
_WANTED = crl_sync.WANTED.lower().encode()  # h11 gives header names in lower case
_STORAGE = storage_state.HEADER.lower().encode()
_REVOCATIONS = consent_revocations.HEADER.lower().encode()


class HttpStatusError(PullError):
    """The hub answered with an HTTP status other than 200 (the connection stays usable)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class _Wire(asyncio.Protocol):
    """Raw TCP bytes in, with back-pressure; TLS is done above it on memory BIOs."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > READ_HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def take(self) -> bytes:
        """The bytes received so far (waits for some); b"" at end of stream."""
        while not self.buffer and not self.eof:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        data = bytes(self.buffer)
        self.buffer.clear()
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data


class SessionCache:
    """TLS sessions by (host, port, LFDI): a resumed session is only offered to the same hub."""

    def __init__(self, limit: int = 1_000_000) -> None:
        self.limit = limit
        self._sessions: dict[tuple[str, int, str], ssl.SSLSession] = {}

    def get(self, key: tuple[str, int, str]) -> ssl.SSLSession | None:
        return self._sessions.get(key)

    def put(self, key: tuple[str, int, str], session: ssl.SSLSession | None) -> None:
        if session is None:
            return
        if len(self._sessions) >= self.limit and key not in self._sessions:
            self._sessions.pop(next(iter(self._sessions)))  # oldest first (dicts keep insertion order)
        self._sessions[key] = session

    def forget(self, key: tuple[str, int, str]) -> None:
        self._sessions.pop(key, None)

    def __len__(self) -> int:
        return len(self._sessions)


@dataclass
class PullStats:
    """What one connection cost: for the bench and the collector's outcome."""

    requests: int = 0
    body_bytes: int = 0
    resumed: bool = False


class HubConnection:
    """One mutual-TLS HTTP/1.1 connection to one hub (keep-alive across the pull's pages)."""

    def __init__(self, host: str, port: int, lfdi: str, recipient: str | None, timeout: float) -> None:
        self.host = host
        self.port = port
        self.lfdi = lfdi.upper()
        self.recipient = recipient
        self.timeout = timeout
        self.stats = PullStats()
        self.extra_headers: list[tuple[str, str]] = []  # sent with every request (wan.crl_sync's offer)
        self.crl_wanted = False  # a response asked for the CRL (wan.crl_sync)
        # The appliance sub-meters the bulk pages listed (meter → appliance name; issue 25).
        self.appliances: dict[str, str] = {}
        self.storage: str | None = None  # the hub's storage state, as its last answer gave it
        # Consent revocations waiting at the hub, as its last answer said (wan.contract.revocations)
        self.revocations_waiting = 0
        self.session_key: tuple[str, int, str] | None = None  # set for a channel (see PullClient)
        self._wire = _Wire()
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._tls: ssl.SSLObject | None = None
        self._http = h11.Connection(h11.CLIENT, max_incomplete_event_size=16 * 1024)

    @property
    def ssl_object(self) -> ssl.SSLObject:
        assert self._tls is not None
        return self._tls

    async def open(
        self, context: ssl.SSLContext, session: ssl.SSLSession | None, sock: socket.socket | None = None
    ) -> None:
        """Connect (or take ``sock``, a hub's channel already connected), then the TLS handshake
        and the LFDI pinning."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                if sock is None:
                    await loop.create_connection(lambda: self._wire, self.host, self.port)
                else:
                    await loop.create_connection(lambda: self._wire, sock=sock)
                self._tls = context.wrap_bio(
                    self._in, self._out, server_side=False, server_hostname=self.host, session=session
                )
                while True:
                    try:
                        self._tls.do_handshake()
                        break
                    except ssl.SSLWantReadError:
                        self._flush()
                        await self._fill()
                # The client's last flight (Certificate, CertificateVerify, Finished) waits in
                # the BIO and leaves with the first request (or close_notify): one socket write
                # and one segment per pull fewer, and nothing is sent to a hub that fails the
                # pinning below.
        except PullError:
            self.abort()
            raise
        except (ssl.SSLError, OSError, TimeoutError, ValueError) as err:
            self.abort()
            raise PullError(f"{self.host}:{self.port}: TLS/TCP: {type(err).__name__}: {err}") from None
        try:
            check_peer(self._tls, self.lfdi)  # on a resumed session too: the session's certificate
        except PeerMismatch as err:
            self.abort()
            raise PullError(f"{self.host}:{self.port}: {err}") from None
        self.stats.resumed = self._tls.session_reused

    def _flush(self) -> None:
        data = self._out.read()
        if data and self._wire.transport is not None:
            self._wire.transport.write(data)

    async def _fill(self) -> None:
        data = await self._wire.take()
        if data:
            self._in.write(data)
        else:
            self._in.write_eof()

    async def _recv(self) -> bytes:
        assert self._tls is not None
        while True:
            try:
                return self._tls.read(_RECV)
            except ssl.SSLWantReadError:
                self._flush()
                await self._fill()
            except ssl.SSLZeroReturnError:
                return b""

    def _send(self, data: bytes) -> None:
        assert self._tls is not None
        self._tls.write(data)
        self._flush()

    async def get(self, path: str, params: dict[str, int] | None, sink: Callable[[bytes], object]) -> int:
        """GET ``path``; the body goes to ``sink`` chunk by chunk as it arrives; returns its size.

        Raises :class:`PullError` for an HTTP status other than 200, a body over ``MAX_BODY``,
        a connection closed mid-body, or a body the parser refuses."""
        query: dict[str, int | str] = dict(params or {})
        if self.recipient:
            query["recipient"] = self.recipient
        target = f"{path}?{urlencode(query)}" if query else path
        try:
            async with asyncio.timeout(self.timeout):
                return await self._get(target, sink)
        except PullError:
            raise
        except h11.ProtocolError as err:
            raise PullError(f"GET {target}: bad HTTP from hub: {err}") from None
        except (ssl.SSLError, OSError, TimeoutError) as err:
            raise PullError(f"GET {target}: {type(err).__name__}: {err}") from None

    async def get_json(self, path: str) -> bytes:
        """GET a JSON resource of the hub (not 2030.5) on this connection; :class:`PullError` as
        ``get``."""
        chunks: list[bytes] = []
        try:
            async with asyncio.timeout(self.timeout):
                await self._get(path, chunks.append, accept="application/json")
        except PullError:
            raise
        except h11.ProtocolError as err:
            raise PullError(f"GET {path}: bad HTTP from hub: {err}") from None
        except (ssl.SSLError, OSError, TimeoutError) as err:
            raise PullError(f"GET {path}: {type(err).__name__}: {err}") from None
        return b"".join(chunks)

    async def put(
        self, path: str, body: bytes, content_type: str, sink: Callable[[bytes], object] | None = None
    ) -> int:
        """PUT ``body`` to ``path`` on this connection; its size (the answer to ``sink``, if
        given). :class:`PullError` as ``get``."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._get(path, sink or (lambda _chunk: None), "PUT", body, content_type)
        except PullError:
            raise
        except h11.ProtocolError as err:
            raise PullError(f"PUT {path}: bad HTTP from hub: {err}") from None
        except (ssl.SSLError, OSError, TimeoutError) as err:
            raise PullError(f"PUT {path}: {type(err).__name__}: {err}") from None

    async def _get(
        self,
        target: str,
        sink: Callable[[bytes], object],
        method: str = "GET",
        body: bytes = b"",
        content_type: str | None = None,
        accept: str | None = None,
    ) -> int:
        http = self._http
        if http.our_state is h11.DONE and http.their_state is h11.DONE:
            http.start_next_cycle()
        # A GET reads a 2030.5 document; the hub answers a PUT (the CRL) in JSON.
        accept = accept or (sep2.CONTENT_TYPE if method == "GET" else "application/json")
        headers = [("Host", host_header(self.host, self.port)), ("Accept", accept), *self.extra_headers]
        if content_type is not None:
            headers += [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        # Head and end of message in one TLS record and one socket write.
        self._send(
            http.send(h11.Request(method=method, target=target, headers=headers))
            + (http.send(h11.Data(data=body)) if body else b"")
            + (http.send(h11.EndOfMessage()) or b"")
        )
        self.stats.requests += 1
        status = 0
        size = 0
        error = bytearray()
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                http.receive_data(await self._recv())
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                self.revocations_waiting = 0  # an answer without the header: none waits
                for k, v in event.headers:
                    if k == _WANTED:
                        self.crl_wanted = True
                    elif k == _STORAGE:
                        self.storage = v.decode("ascii", "replace")
                    elif k == _REVOCATIONS:
                        self.revocations_waiting = consent_revocations.parse_pending(
                            v.decode("ascii", "replace")
                        )
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_BODY:
                    raise PullError(f"GET {target}: body exceeds {MAX_BODY} bytes")
                if status != 200:
                    error += event.data[: 300 - len(error)]
                else:
                    sink(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise PullError(f"GET {target}: hub closed the connection mid-response")
        self.stats.body_bytes += size
        if status != 200:
            text = error.decode("utf-8", "replace")
            raise HttpStatusError(f"{method} {target}: HTTP {status}: {text}", status)
        return size

    def abort(self) -> None:
        if self._wire.transport is not None:
            self._wire.transport.abort()

    def close(self) -> None:
        """Send close_notify (best effort; the session stays resumable either way) and close."""
        if self._tls is not None:
            with contextlib.suppress(ssl.SSLError):
                self._tls.unwrap()
            self._flush()
        if self._wire.transport is not None:
            self._wire.transport.close()


@dataclass
class BulkPull:
    """One hub's readings after its cursors, and the cursors that follow."""

    intervals: list[PulledInterval] = field(default_factory=list)
    cursors: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    body_bytes: int = 0
    resumed: bool = False


_MUP_LINK = "{urn:ieee:std:2030.5:ns}MirrorUsagePointListLink"


def bulk_link(dcap_body: bytes) -> str | None:
    """The href of the MirrorUsagePointListLink a DeviceCapability advertises, if any."""
    try:
        root = parse_untrusted(dcap_body)
    except XmlRefused as err:
        raise PullError(f"GET /dcap: {err}") from None
    if root.tag != "{urn:ieee:std:2030.5:ns}DeviceCapability":
        raise PullError(f"GET /dcap: root is {root.tag!r}, not a 2030.5 DeviceCapability")
    link = root.find(_MUP_LINK)
    return link.get("href") if link is not None else None


class PullClient:
    """Pulls hubs' bulk resources; one per collector process (it holds the session cache)."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        *,
        timeout: float = 15.0,
        recipient: str | None = None,
        sessions: SessionCache | None = None,
        page: int = PAGE,
        channels: ChannelEndpoint | None = None,
    ) -> None:
        """``channels``: where hubs registered as ``channel://<hub id>`` have parked their
        connections (:mod:`smarthub.wan.client.channel`); without it such hubs cannot be pulled."""
        self.channels = channels
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.recipient = recipient
        self.sessions = sessions if sessions is not None else SessionCache()
        self.page = page

    async def connect(self, url: str, lfdi: str) -> HubConnection:
        if url.startswith(f"{hub_channel.SCHEME}://"):
            return await self._connect_channel(url, lfdi)
        parts = urlsplit(url)
        if parts.scheme != "https" or parts.hostname is None:
            raise PullError(f"{url}: a hub is pulled over https://host:port")
        port = parts.port or 443
        key = (parts.hostname, port, lfdi.upper())
        conn = HubConnection(parts.hostname, port, lfdi, self.recipient, self.timeout)
        try:
            await conn.open(self.ssl_context, self.sessions.get(key))
        except PullError:
            self.sessions.forget(key)
            raise
        return conn

    async def _connect_channel(self, url: str, lfdi: str) -> HubConnection:
        try:
            hub_id = hub_channel.hub_of_url(url)
        except hub_channel.ChannelRefused as err:
            raise PullError(f"{url}: {err}") from None
        assert hub_id is not None
        sock = self.channels.take(hub_id) if self.channels is not None else None
        if sock is None:
            raise PullError(f"{url}: no channel open from hub {hub_id}")
        # The hub's certificate names it (lower-cased) as a DNS name: the hostname check holds.
        key = (f"{hub_channel.SCHEME}:{hub_id}", 0, lfdi.upper())
        conn = HubConnection(hub_id.lower(), 443, lfdi, self.recipient, self.timeout)
        try:
            await conn.open(self.ssl_context, self.sessions.get(key), sock=sock)
        except PullError:
            self.sessions.forget(key)
            raise
        conn.session_key = key
        return conn

    def remember(self, conn: HubConnection) -> None:
        """Keep the connection's session for the next pull of that hub (TLS 1.3 tickets come
        after the handshake, so this is called once a response has been read)."""
        if conn._tls is None:
            return
        key = conn.session_key or (conn.host, conn.port, conn.lfdi)
        if conn.stats.resumed:
            held = self.sessions.get(key)
            # The session this pull resumed serves again until half its lifetime is gone (OpenSSL
            # dates sessions by the wall clock): the ``session`` getter copies the session through
            # DER, the peer's certificate parsed again, ~0.15 ms, half the client's side of a
            # resumed handshake.
            if held is not None and time.time() < held.time + held.timeout / 2:
                return
        self.sessions.put(key, conn._tls.session)

    async def discover(self, conn: HubConnection) -> str | None:
        """GET /dcap on an open connection: the bulk resource's href, or None (walk instead)."""
        body = bytearray()
        await conn.get("/dcap", None, body.extend)
        return bulk_link(bytes(body))

    async def pages(
        self, conn: HubConnection, href: str, cursors: dict[str, int]
    ) -> AsyncIterator[tuple[list[PulledInterval], dict[str, int]]]:
        """Each response's readings after the channel cursors, and the cursors after it.

        The bulk resource is a 2030.5 MirrorUsagePointList paged by usage point (``s``, ``l``,
        ``all``, ``results``); ``a`` selects the readings inside. ``a`` is one value per
        request, so the hub is asked for everything at or after the *earliest* cursor and
        readings a channel already has are dropped here. A channel the hub cut short (its
        MirrorMeterReading's lastUpdateTime later than the last reading served) is asked for
        again from where it stopped, until none is. Every channel is listed on every page; if
        one has no cursor yet (a meter paired since the last pull), its readings may start
        before that ``a``, so the pull goes on with a second pass without ``a`` for those
        channels alone, up to where the first pass began.
        """
        seen: set[str] = set()
        advanced = dict(cursors)  # what this pull already has
        # A register channel's cursor (its last daily read) lags its intervals' by up to a day:
        # ``a`` from the interval channels alone, or every pull would bring the day's half-hours
        # again. No read is missed: a hub fixes the read at a midnight with the half-hour ending
        # there, so it is served (at or after ``a``) in the answer that brings that half-hour.
        intervals = [v for h, v in cursors.items() if not is_register_href(h)]
        after = min(intervals or cursors.values()) if cursors else None
        async for page in self._pass(conn, href, advanced, after, seen, None):
            yield page
        new = seen - cursors.keys()
        if after is not None and new:
            # The new channels' readings before ``a`` (the first pass had those after it).
            windows = {h: (0, after) for h in new}
            async for page in self._pass(conn, href, advanced, None, set(), windows):
                yield page

    async def _pass(
        self,
        conn: HubConnection,
        href: str,
        cursors: dict[str, int],
        after: int | None,
        seen: set[str],
        windows: dict[str, tuple[int, int]] | None,
    ) -> AsyncIterator[tuple[list[PulledInterval], dict[str, int]]]:
        """Rounds of pages from ``a`` = ``after`` until no channel of interest was cut short.

        Without ``windows`` every channel is of interest and a reading is kept from the
        channel's cursor on; with ``windows``, only those channels, each reading kept when it
        starts inside its ``[low, high)``. ``cursors`` is advanced in place."""
        while True:
            resume: int | None = None  # the earliest point a channel of interest was cut at
            offset = 0
            while True:
                parser = BulkParser()
                params = {"s": offset, "l": self.page}
                if after is not None:
                    params["a"] = after
                channels: list[ChannelReadings] = []
                await conn.get(href, params, _feeding(parser, channels))
                page = parser.close()
                fresh: list[PulledInterval] = []
                page_cursors: dict[str, int] = {}
                for ch in channels:
                    seen.add(ch.href)
                    if ch.appliance is not None:
                        conn.appliances[ch.appliance[0]] = ch.appliance[1]
                    if windows is not None and ch.href not in windows:
                        continue
                    known = cursors.get(ch.href, 0)
                    low, high = windows[ch.href] if windows is not None else (known, None)
                    cursor = known
                    first = ch.first_start
                    if high is None and first is not None and first >= low and ch.served_end is not None:
                        # Every reading is new (the usual case: ``a`` is this channel's cursor).
                        fresh += ch.intervals
                        cursor = max(cursor, ch.served_end)
                    else:
                        for i in ch.intervals:
                            if i.start < low or (high is not None and i.start >= high):
                                continue
                            fresh.append(i)
                            # A register read (duration 0) is covered once the cursor is past it.
                            cursor = max(cursor, i.start + (i.duration or 1))
                    if cursor > known:
                        page_cursors[ch.href] = cursors[ch.href] = cursor
                    end = ch.served_end
                    if ch.cut_short and end is not None and (high is None or end < high):
                        resume = end if resume is None else min(resume, end)
                yield fresh, page_cursors
                offset += page.results
                if page.results == 0 or offset >= page.all_:
                    break
            if resume is None:
                return
            # A cut is after ``a`` (at least one reading at or after ``a`` was served), so each
            # round starts later than the one before.
            after = resume


def _feeding(parser: BulkParser, into: list[ChannelReadings]) -> Callable[[bytes], None]:
    def sink(chunk: bytes) -> None:
        into.extend(parser.feed(chunk))

    return sink
