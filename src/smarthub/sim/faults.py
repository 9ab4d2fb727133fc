"""Faults a chaos run injects into a simulated fleet: WAN links cut, HAN dropouts, power cuts.

Each fault acts where it happens in the field, not inside the code under test:

* :class:`WanLink` is a hub's WAN connection as a TCP relay between the GDSC and the hub's
  HTTPS port. Cutting it drops every open connection and refuses new ones, as a dead cellular
  link does; hubs behind one cell share one link object.
* :class:`HanGate` drops what a hub would have heard from a meter (a radio dropout, a pulled
  P1 cable): the hub's ``accept`` never sees those frames.
* A **power cut** of a hub is both at once: nothing heard, nothing served. Durability of the
  hub's stores across a real process kill is proven separately (the SIGKILL tests of the
  history, the prepayment ledger and firmware); here the point is the fleet-level outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from smarthub.han.ports import PortBatch
from smarthub.hub.hub import SmartHub


class WanLink:
    """A cuttable TCP relay in front of one or more hubs' WAN ports (one listener per hub)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.up = True
        self.cuts = 0
        self._servers: list[asyncio.AbstractServer] = []
        self._open: set[asyncio.StreamWriter] = set()

    async def relay(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> int:
        """Listen on a new port that relays to the hub at ``target``; returns the port."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if not self.up:
                writer.transport.abort()  # a dead link: the connection goes nowhere
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(target_host, target_port)
            except OSError:
                writer.transport.abort()
                return
            self._open |= {writer, up_writer}
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                self._open -= {writer, up_writer}
                for w in (writer, up_writer):
                    w.transport.abort()

        server = await asyncio.start_server(handle, host, 0)
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    def cut(self) -> None:
        self.up = False
        self.cuts += 1
        for w in list(self._open):
            w.transport.abort()

    def restore(self) -> None:
        self.up = True

    async def close(self) -> None:
        self.cut()
        for s in self._servers:
            s.close()
            with contextlib.suppress(Exception):
                await s.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(Exception):
        writer.write_eof()


class HanGate:
    """Decides which meters a hub hears; installed in front of ``SmartHub.accept``.

    ``silence(meter)`` drops one meter's points (a HAN dropout), ``silence(None)`` drops
    everything the hub would hear (a power cut); ``restore`` undoes it.
    """

    def __init__(self, hub: SmartHub) -> None:
        self.hub = hub
        self.silent: set[str | None] = set()
        self.dropped = 0
        accept: Callable[..., Any] = hub.accept

        def gated(batch: PortBatch, received: datetime | None = None, **kw: Any) -> Any:
            if None in self.silent:
                self.dropped += len(batch.points)
                return []
            if self.silent:
                kept = [p for p in batch.points if p.meter not in self.silent]
                self.dropped += len(batch.points) - len(kept)
                batch = PortBatch(kept, batch.errors)
            return accept(batch, received, **kw)

        hub.accept = gated  # type: ignore[method-assign]

    def silence(self, meter: str | None) -> None:
        self.silent.add(meter)

    def restore(self, meter: str | None) -> None:
        self.silent.discard(meter)
