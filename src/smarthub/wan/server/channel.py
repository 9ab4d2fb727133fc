"""The hub's outbound channel to the GDSC (:mod:`smarthub.wan.contract.channel`): for a hub the
GDSC cannot dial (behind a NAT or an inbound-blocking firewall). The hub opens the TCP
connection; everything above it — TLS with the hub as server, HTTP, the application — is what an
accepted connection gets (:class:`smarthub.wan.httpd.TCPSite`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from smarthub.clock import Clock, SystemClock
from smarthub.wan.contract import channel as hub_channel
from smarthub.wan.httpd import AppRunner, _AlertingSSLProtocol

log = logging.getLogger(__name__)

__all__ = ["ChannelSite", "ChannelStats"]


@dataclass
class ChannelStats:
    connects: int = 0  # channels opened (TCP connected and the line sent)
    failures: int = 0  # attempts that failed to connect
    served: int = 0  # channels the GDSC used (a TLS handshake completed on them)
    dropped: int = 0  # channels that ended unused before their park time (cut, refused, GDSC gone)


class ChannelSite:
    """The hub's outbound channel(s) to the GDSC (:mod:`smarthub.wan.contract.channel`).

    Each of ``links`` loops connects to ``host:port``, sends the line naming the hub and then
    serves the connection exactly as an accepted one (TLS server side, the same application):
    the GDSC's requests arrive on it when the GDSC decides. Once the GDSC uses it (its TLS
    handshake completes), or when it ends unused (parked for ``park_timeout`` seconds with no
    handshake, or cut), the loop connects again: soon after a use or a normal end, after an
    exponentially growing, fully jittered wait after failures. So ``links`` channels stay
    *parked* while others are in use (a bulk pull, an event pull and a command at once, each
    kept alive by the GDSC for a while), up to ``in_use`` more. TCP keep-alive probes keep a
    router's NAT mapping alive while the channel is parked.

    A channel that ends unused before its park time counts as a failure too: the GDSC refused
    it (an unregistered hub id), or a router between dropped it at once. Without that, a hub the
    GDSC keeps refusing would reconnect every second for ever instead of backing off. The
    back-off waits on ``clock`` (injected: a simulated fleet's hubs back off in simulated time).
    """

    def __init__(
        self,
        runner: AppRunner,
        hub_id: str,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext,
        links: int = 2,
        park_timeout: float = 900.0,
        rng: random.Random | None = None,
        max_backoff: float = 300.0,
        clock: Clock | None = None,
        in_use: int = 6,
    ) -> None:
        self.runner = runner
        self.preamble = hub_channel.encode_preamble(hub_id)
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.links = links
        self.park_timeout = park_timeout
        self.rng = rng or random.Random()
        self.max_backoff = max_backoff
        self.clock = clock or SystemClock()
        self.stats = ChannelStats()
        self._tasks: list[asyncio.Task[None]] = []
        self._transports: set[asyncio.Transport] = set()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(links + in_use)  # channels open at once, parked or in use

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._link()) for _ in range(self.links)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for transport in list(self._transports):
            transport.abort()

    def cut(self) -> None:
        """Drop every open channel now (a router restart, a test); the loops connect again."""
        for transport in list(self._transports):
            transport.abort()

    async def _link(self) -> None:
        failures = 0
        while True:
            try:
                used = await self._serve_once()
            except OSError as err:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # Stopped while a connect failed: the failure must not swallow the stop
                    # (the loop would go on, and stop() wait for it for ever).
                    raise asyncio.CancelledError from err
                failures += 1
                self.stats.failures += 1
                log.info("channel to %s:%s failed (%d in a row): %s", self.host, self.port, failures, err)
            else:
                if used:
                    failures = 0
                else:
                    failures += 1
                    self.stats.dropped += 1
            delay = hub_channel.reconnect_delay(failures, self.rng, base=1.0, cap=self.max_backoff)
            await self._back_off(delay)

    async def _back_off(self, seconds: float) -> None:
        """Wait ``seconds`` on the clock, or until :meth:`reconnect_now`."""
        self._wake.clear()
        sleep = asyncio.ensure_future(self.clock.sleep_until(self.clock.now() + timedelta(seconds=seconds)))
        wake = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((sleep, wake), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleep.cancel()
            wake.cancel()

    def reconnect_now(self) -> None:
        """End the loops' back-off waits: connect at once (the WAN came up again; a simulated
        clock was set back, which would leave a wait on it running for the setback's length)."""
        self._wake.set()

    async def _serve_once(self) -> bool:
        """One channel, from connecting to its end; True if it was used (the GDSC's handshake
        completed on it) or parked its full time, False if it ended unused before that."""
        loop = asyncio.get_running_loop()
        await self._slots.acquire()
        owned = [True]  # the slot is this call's until the channel's end takes it over
        try:
            return await self._open(loop, owned)
        finally:
            if owned[0]:
                self._slots.release()

    async def _open(self, loop: asyncio.AbstractEventLoop, owned: list[bool]) -> bool:
        """:meth:`_serve_once` holding a slot, released when the channel ends."""
        infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        family, type_, proto, _, address = infos[0]
        sock = socket.socket(family, type_, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for name, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 30), ("TCP_KEEPCNT", 4)):
                if hasattr(socket, name):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
            async with asyncio.timeout(30.0):  # not wait_for: on 3.11 it can swallow a cancel
                await loop.sock_connect(sock, address)
            await loop.sock_sendall(sock, self.preamble)
        except BaseException:
            sock.close()
            raise
        self.stats.connects += 1
        opened = loop.time()
        used = asyncio.Event()  # set by this channel's protocol when the GDSC's handshake completes
        ended: asyncio.Future[None] = loop.create_future()
        serve = self.runner._serve
        stats = self.stats

        def factory() -> asyncio.BaseProtocol:
            reader = asyncio.StreamReader(limit=2**16, loop=loop)
            app = asyncio.StreamReaderProtocol(reader, serve, loop=loop)
            # waiter None, as asyncio's own loop passes it
            return _ChannelSSLProtocol(
                loop,
                app,
                self.ssl_context,
                None,
                server_side=True,
                ssl_handshake_timeout=self.park_timeout,
                ended=ended,
                stats=stats,
                used=used,
            )

        transport, _ = await loop.create_connection(factory, sock=sock)
        assert isinstance(transport, asyncio.Transport)
        self._transports.add(transport)

        def closed(_: asyncio.Future[None]) -> None:
            self._transports.discard(transport)
            self._slots.release()

        ended.add_done_callback(closed)
        owned[0] = False
        in_use = asyncio.ensure_future(used.wait())
        try:
            # Used: the GDSC's requests go on over it by themselves; the loop parks a new one.
            await asyncio.wait((ended, in_use), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            transport.abort()  # stopped: the channel closes with the loop that owns it
            raise
        finally:
            in_use.cancel()
        return used.is_set() or loop.time() - opened >= self.park_timeout


class _ChannelSSLProtocol(_AlertingSSLProtocol):
    """The TLS server protocol on a hub's outbound channel: says when the channel has ended."""

    def __init__(
        self,
        *args: Any,
        ended: asyncio.Future[None],
        stats: ChannelStats,
        used: asyncio.Event,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._ended = ended
        self._stats = stats
        self._used = used

    def _on_handshake_complete(self, handshake_exc: BaseException | None) -> None:
        if handshake_exc is None:
            self._stats.served += 1
            self._used.set()
        super()._on_handshake_complete(handshake_exc)

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        if not self._ended.done():
            self._ended.set_result(None)
