"""TCP transports for the HAN: a byte stream from a P1/serial-to-TCP bridge, and a
request/response link for polled meters (DLMS/COSEM wrapper on port 4059, IEC 62056-21 or
M-Bus behind a serial server).

Many homes read their DSMR meter through a "P1 dongle" or ser2net that republishes the
serial port on TCP; `TcpStreamTransport` reads such a stream and reconnects with backoff
when it drops. The protocol framing stays in the sans-I/O codecs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

Sink = Callable[[bytes], None]


class TcpStreamTransport:
    def __init__(
        self, host: str, port: int, sink: Sink, *, reconnect_delay: float = 1.0, max_delay: float = 60.0
    ) -> None:
        self.host = host
        self.port = port
        self.sink = sink
        self.reconnect_delay = reconnect_delay
        self.max_delay = max_delay
        self.connections = 0
        self._stopped = asyncio.Event()

    async def run(self) -> None:
        delay = self.reconnect_delay
        while not self._stopped.is_set():
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError as err:
                log.warning(
                    "P1 bridge %s:%d unreachable: %s; retrying in %.0f s", self.host, self.port, err, delay
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), delay)
                delay = min(delay * 2, self.max_delay)
                continue
            self.connections += 1
            delay = self.reconnect_delay
            try:
                while not self._stopped.is_set():
                    read = asyncio.ensure_future(reader.read(4096))
                    stop = asyncio.ensure_future(self._stopped.wait())
                    done, _ = await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
                    stop.cancel()
                    if read not in done:
                        read.cancel()
                        break
                    data = read.result()
                    if not data:
                        log.warning(
                            "P1 bridge %s:%d closed the connection; reconnecting", self.host, self.port
                        )
                        break
                    self.sink(data)
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    def stop(self) -> None:
        self._stopped.set()


class TcpLink:
    """One request/response exchange at a time with a polled meter over TCP."""

    def __init__(self, host: str, port: int, *, timeout: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), self.timeout
        )

    async def exchange(self, request: bytes, complete: Callable[[bytes], bool]) -> bytes:
        """Send ``request`` and read until ``complete(received)`` says the response is whole."""
        if self._reader is None or self._writer is None:
            await self.open()
        assert self._reader is not None and self._writer is not None
        if request:
            self._writer.write(request)
            await self._writer.drain()
        buf = b""
        while not complete(buf):
            chunk = await asyncio.wait_for(self._reader.read(4096), self.timeout)
            if not chunk:
                raise ConnectionError(f"{self.host}:{self.port} closed the link mid-response")
            buf += chunk
        return buf

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None
