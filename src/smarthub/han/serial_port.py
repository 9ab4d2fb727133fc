"""Serial transports (pyserial): a byte stream from a meter that pushes, and a request/response
link to a meter the hub polls.

* :class:`SerialStream` reads a port in a thread and hands the bytes to the event loop: a DSMR
  P1 port, a DLMS/COSEM HAN port (2400/9600/115200 baud, 8N1 or 8E1), an SML optical head, a
  wireless M-Bus receiver stick. It can also write (a stick's commands). When the device goes
  away (a USB adapter unplugged) it reopens it with backoff instead of ending.
* :class:`SerialLink` is one exchange at a time with a polled meter: an IEC 62056-21 optical
  probe (mode C: sign on at 300 baud 7E1, then :meth:`SerialLink.set_baud` to the rate agreed,
  after the acknowledgement has left the UART), a wired M-Bus master (2400 8E1), a DLMS/COSEM
  meter on RS-485 or its optical port (HDLC).

Both take the serial format as pyserial does, from a string such as ``"8E1"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Sink = Callable[[bytes], None]


def serial_format(fmt: str) -> dict[str, Any]:
    """pyserial's bytesize/parity/stopbits for ``"8N1"``, ``"8E1"``, ``"7E1"``, ``"8N2"``..."""
    import serial

    if len(fmt) != 3 or fmt[0] not in "78" or fmt[1].upper() not in "NEO" or fmt[2] not in "12":
        raise ValueError(f"serial format {fmt!r}: data bits 7/8, parity N/E/O, stop bits 1/2 (e.g. 8E1)")
    return {
        "bytesize": serial.SEVENBITS if fmt[0] == "7" else serial.EIGHTBITS,
        "parity": {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}[fmt[1].upper()],
        "stopbits": serial.STOPBITS_ONE if fmt[2] == "1" else serial.STOPBITS_TWO,
    }


def _open(device: str, baud: int, fmt: str, timeout: float) -> Any:
    import serial  # imported here so a hub without serial ports never loads pyserial

    return serial.Serial(device, baudrate=baud, timeout=timeout, **serial_format(fmt))


class SerialStream:
    """A serial port read in a thread; bytes delivered to ``sink`` on the event loop."""

    def __init__(
        self,
        device: str,
        sink: Sink,
        *,
        baud: int = 115200,
        format: str = "8N1",
        reconnect_delay: float = 1.0,
        max_delay: float = 30.0,
    ) -> None:
        self.device = device
        self.sink = sink
        self.baud = baud
        self.format = format
        self.reconnect_delay = reconnect_delay
        self.max_delay = max_delay
        self.opened = 0
        self._stop = threading.Event()
        self._port: Any = None
        self._write_lock = threading.Lock()

    async def run(self, until: object = None) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.to_thread(self._pump, loop)
        finally:
            self._stop.set()

    def _pump(self, loop: asyncio.AbstractEventLoop) -> None:
        delay = self.reconnect_delay
        while not self._stop.is_set():
            try:
                port = _open(self.device, self.baud, self.format, 0.2)
            except (OSError, ValueError) as err:  # pyserial's SerialException is an OSError
                log.warning("serial %s: %s; retrying in %.0f s", self.device, err, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self.max_delay)
                continue
            delay = self.reconnect_delay
            self.opened += 1
            self._port = port
            try:
                with port:
                    while not self._stop.is_set():
                        data = port.read(4096)
                        if data:
                            loop.call_soon_threadsafe(self._deliver, data)
            except OSError as err:
                log.warning("serial %s: %s; reopening", self.device, err)
            finally:
                self._port = None

    async def write(self, data: bytes, *, wait: float = 5.0) -> bool:
        """Write to the port once it is open (within ``wait`` seconds); False if it never opened."""
        deadline = time.monotonic() + wait
        while self._port is None:
            if time.monotonic() > deadline or self._stop.is_set():
                return False
            await asyncio.sleep(0.05)

        def write() -> None:
            with self._write_lock:
                port = self._port
                if port is not None:
                    port.write(data)
                    port.flush()

        await asyncio.to_thread(write)
        return True

    def _deliver(self, data: bytes) -> None:
        if not self._stop.is_set():  # nothing after stop: whoever takes the bytes may be closed
            self.sink(data)

    def stop(self) -> None:
        self._stop.set()


class SerialLink:
    """One request/response exchange at a time with a polled meter on a serial port.

    The port is opened on first use and kept; a failed exchange closes it so the next one
    starts clean (the device may have gone away). ``timeout`` bounds the wait for each reply.
    """

    def __init__(self, device: str, *, baud: int = 2400, format: str = "8E1", timeout: float = 3.0) -> None:
        self.device = device
        self.baud = baud
        self.format = format
        self.timeout = timeout
        self._initial = (baud, format)
        self._port: Any = None
        self._lock = threading.Lock()

    def _ensure(self) -> Any:
        if self._port is None:
            self._port = _open(self.device, self.baud, self.format, 0.05)
        return self._port

    def _close(self) -> None:
        if self._port is not None:
            with contextlib.suppress(OSError):
                self._port.close()
            self._port = None

    def _exchange(self, request: bytes, complete: Callable[[bytes], bool]) -> bytes:
        with self._lock:
            try:
                port = self._ensure()
                if request:
                    port.reset_input_buffer()
                    port.write(request)
                    port.flush()
                buf = b""
                deadline = time.monotonic() + self.timeout
                while not complete(buf):
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"serial {self.device}: no complete reply within {self.timeout:g} s "
                            f"({len(buf)} bytes)"
                        )
                    chunk = port.read(4096)
                    if chunk:
                        buf += chunk
                        deadline = max(deadline, time.monotonic() + 0.5)  # a reply still arriving
                return buf
            except BaseException:
                self._close()
                raise

    async def exchange(self, request: bytes, complete: Callable[[bytes], bool]) -> bytes:
        """Send ``request`` and read until ``complete(received)`` says the reply is whole."""
        return await asyncio.to_thread(self._exchange, request, complete)

    async def send(self, data: bytes) -> None:
        """Write ``data`` and wait until it has left the UART (before a baud-rate switch)."""

        def send() -> None:
            with self._lock:
                port = self._ensure()
                port.write(data)
                port.flush()

        await asyncio.to_thread(send)

    async def set_baud(self, baud: int, format: str | None = None) -> None:
        """Switch the port's rate (IEC 62056-21 mode C, after the option select), and its format
        if another is given."""

        def switch() -> None:
            with self._lock:
                port = self._ensure()
                self.baud = port.baudrate = baud
                if format is not None and format != self.format:
                    for k, v in serial_format(format).items():
                        setattr(port, k, v)
                    self.format = format

        await asyncio.to_thread(switch)

    async def reset(self) -> None:
        """Back to the rate the link was opened at (the start of the next IEC sign-on)."""
        if (self.baud, self.format) != self._initial:
            await self.set_baud(*self._initial)

    async def close(self) -> None:
        await asyncio.to_thread(self._close)
