"""The GDSC's end of the hub-initiated channel (:mod:`smarthub.wan.contract.channel`).

:class:`ChannelEndpoint` accepts TCP connections from hubs, reads each one's claim line, and
parks the socket under that hub id until a pull takes it (:meth:`ChannelEndpoint.take`); the
pull then runs TLS and HTTP over it as over a socket it had dialled (``PullClient``,
``HubClient``). A parked socket the hub closes (its park time ran out, its router dropped the
mapping, it restarted) is noticed at once through the event loop's reader callback and dropped,
so :meth:`is_open` is the channel's liveness: a hub with no channel open is unreachable, and a
pull of it fails as a pull of a hub that does not answer does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from smarthub.wan.contract.channel import MAX_PREAMBLE, ChannelRefused, parse_preamble

log = logging.getLogger(__name__)

__all__ = ["ChannelEndpoint", "ChannelStats"]

PREAMBLE_TIMEOUT = 5.0  # seconds a new connection has to send its line
PARKED_PER_HUB = 4  # sockets kept per hub id, newest first (a claim can take a place, see contract)


@dataclass
class ChannelStats:
    accepted: int = 0  # connections that sent a valid line for a known hub
    refused: int = 0  # bad line, unknown hub, or no line in time
    dropped: int = 0  # parked sockets the hub closed (or displaced by newer ones)
    taken: int = 0


class ChannelEndpoint:
    """Listens for hubs' channels; ``known(hub_id)`` says which hub ids may park (the registry's
    channel hubs; None: any)."""

    def __init__(self, known: Callable[[str], bool] | None = None, *, per_hub: int = PARKED_PER_HUB) -> None:
        self.known = known
        self.per_hub = per_hub
        self.stats = ChannelStats()
        self._parked: dict[str, deque[socket.socket]] = {}
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self.port: int | None = None

    async def start(self, host: str, port: int, backlog: int = 1024) -> int:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(backlog)
        listener.setblocking(False)
        self._listener = listener
        self.port = int(listener.getsockname()[1])
        self._accepting = asyncio.create_task(self._accept_loop(listener))
        return self.port

    async def stop(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
        for task in list(self._pending):
            task.cancel()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for hub_id in list(self._parked):
            for sock in self._parked.pop(hub_id):
                self._unwatch(sock)
                sock.close()

    # -- what pulls use ----------------------------------------------------------------------
    def take(self, hub_id: str) -> socket.socket | None:
        """The newest parked socket of ``hub_id`` (now the caller's), or None if none is open."""
        queue = self._parked.get(hub_id)
        if not queue:
            return None
        sock = queue.pop()
        if not queue:
            del self._parked[hub_id]
        self._unwatch(sock)
        self.stats.taken += 1
        return sock

    def is_open(self, hub_id: str) -> bool:
        return bool(self._parked.get(hub_id))

    def open_channels(self) -> int:
        return sum(len(q) for q in self._parked.values())

    def hubs(self) -> list[str]:
        return sorted(self._parked)

    # -- accepting ---------------------------------------------------------------------------
    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _addr = await loop.sock_accept(listener)
            except OSError as err:  # e.g. out of file descriptors: wait, do not spin
                log.warning("channel endpoint: accept failed: %s", err)
                await asyncio.sleep(0.1)
                continue
            task = asyncio.create_task(self._admit(sock))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _admit(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        try:
            line = await asyncio.wait_for(self._read_line(sock), PREAMBLE_TIMEOUT)
            hub_id = parse_preamble(line)
            if self.known is not None and not self.known(hub_id):
                raise ChannelRefused(f"hub {hub_id!r} is not registered for a channel")
        except (ChannelRefused, TimeoutError, OSError) as err:
            self.stats.refused += 1
            log.info("channel refused: %s", err if not isinstance(err, TimeoutError) else "no line in time")
            sock.close()
            return
        self.stats.accepted += 1
        queue = self._parked.setdefault(hub_id, deque())
        queue.append(sock)
        while len(queue) > self.per_hub:
            old = queue.popleft()
            self._unwatch(old)
            old.close()
            self.stats.dropped += 1
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable, hub_id, sock)

    @staticmethod
    async def _read_line(sock: socket.socket) -> bytes:
        """Up to and including the first CRLF, reading no byte past it (TLS follows on the socket)."""
        loop = asyncio.get_running_loop()
        line = bytearray()
        while not line.endswith(b"\r\n"):
            if len(line) >= MAX_PREAMBLE:
                raise ChannelRefused(f"no channel line within {MAX_PREAMBLE} bytes")
            chunk = await loop.sock_recv(sock, 1)  # byte by byte: the line is short, once per channel
            if not chunk:
                raise ChannelRefused("connection closed before its channel line")
            line += chunk
        return bytes(line)

    def _readable(self, hub_id: str, sock: socket.socket) -> None:
        """A parked socket became readable: the hub closed it (or sent bytes it must not send
        before our ClientHello); either way it is no longer a usable channel."""
        queue = self._parked.get(hub_id)
        if queue is not None and sock in queue:
            queue.remove(sock)
            if not queue:
                del self._parked[hub_id]
        self._unwatch(sock)
        sock.close()
        self.stats.dropped += 1

    @staticmethod
    def _unwatch(sock: socket.socket) -> None:
        with contextlib.suppress(ValueError, OSError, RuntimeError):
            if sock.fileno() >= 0:
                asyncio.get_running_loop().remove_reader(sock.fileno())
