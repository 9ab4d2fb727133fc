"""Simulated meters behind real wires: a pseudo-terminal standing in for a USB serial adapter, a
TCP server standing in for a ser2net or Ethernet gateway, and a fake IMST iM871A stick.

The hub opens these like the real thing (``smarthub hub --config`` with ``kind = "serial"``
naming the pty's device, or ``kind = "tcp"``), so its serial ports, TCP links, framers and
codecs all run as they would against a meter. The meters answer as of the injected clock.

* :class:`Pty`: ``os.openpty``; the hub's side is :attr:`Pty.device`, the meter writes and
  reads the master. :meth:`Pty.baud` is the rate the hub set on its side (an IEC 62056-21
  meter checks the hub switched to the rate agreed before it sends its data).
* :func:`answer_pty` / :func:`serve_tcp`: a polled meter (``respond(request, t)``) answering
  each whole request.
* :func:`push_pty` / :func:`push_tcp`: a meter pushing what ``frame_at(t)`` gives, every period.
* :func:`im871a_frame`: a wM-Bus telegram as the iM871A stick delivers it (HCI, CRCs stripped).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import termios
import tty
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from smarthub.clock import Clock, next_aligned
from smarthub.han.im871a import RADIOLINK, WMBUSMSG_IND, encode_hci
from smarthub.han.poll import Responder

_SPEEDS = {
    getattr(termios, f"B{b}"): b for b in (300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
}


class Pty:
    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        self.device = os.ttyname(self.slave)

    def baud(self) -> int | None:
        """The rate the hub's side is set to now."""
        return _SPEEDS.get(termios.tcgetattr(self.slave)[4])

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def strip_link_crcs(frame: bytes) -> bytes:
    """A format A wM-Bus frame (EN 13757-4: a first block of 10 bytes, then blocks of up to 16,
    each followed by its CRC) without its CRCs, as sticks deliver it. L counts the bytes after
    it without the CRCs in format A, so it stays as it is."""
    out, pos = bytearray(frame[:10]), 12
    while pos < len(frame):
        block = frame[pos : pos + 18][:-2]
        out += block
        pos += len(block) + 2
    if out[0] + 1 != len(out):
        raise ValueError(f"not a format A frame: L = {out[0]}, {len(out) - 1} bytes follow without CRCs")
    return bytes(out)


def im871a_frame(telegram: bytes, *, rssi: int = 180, timestamp: int | None = None) -> bytes:
    """``telegram`` (with its link CRCs) as the stick sends it to the host: radio link message
    WMBUSMSG_IND, payload from the C field on (no L, no CRCs), RSSI and the HCI CRC attached."""
    body = strip_link_crcs(telegram)
    return encode_hci(RADIOLINK, WMBUSMSG_IND, body[1:], rssi=rssi, timestamp=timestamp)


async def answer_pty(
    pty: Pty,
    meter: Responder,
    clock: Clock,
    complete: Callable[[bytes], bool],
    *,
    check: Callable[[bytes, Pty], Any] | None = None,
) -> None:
    """Answer each whole request the hub writes to ``pty`` until cancelled. ``check(request,
    pty)`` (a function or a coroutine function) may refuse to answer (e.g. the hub is at the
    wrong baud rate): no reply is sent."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    def readable() -> None:
        with contextlib.suppress(OSError):
            queue.put_nowait(os.read(pty.master, 4096))

    loop.add_reader(pty.master, readable)
    buf = b""
    try:
        while True:
            buf += await queue.get()
            if not complete(buf):
                continue
            request, buf = buf, b""
            if check is not None:
                ok = check(request, pty)
                if inspect.isawaitable(ok):
                    ok = await ok
                if not ok:
                    continue
            reply = meter.respond(request, clock.now())
            if reply:
                os.write(pty.master, reply)
    finally:
        loop.remove_reader(pty.master)


async def push_pty(pty: Pty, frame_at: Callable[[datetime], bytes], clock: Clock, period: timedelta) -> None:
    """Write ``frame_at(t)`` to ``pty`` every ``period`` of ``clock`` (aligned to it, as meters
    send on the minute), until cancelled."""
    t = next_aligned(clock.now(), period)
    while True:
        await clock.sleep_until(t)
        data = frame_at(t)
        if data:
            await asyncio.to_thread(os.write, pty.master, data)
        t += period


async def serve_tcp(
    meter: Responder, clock: Clock, complete: Callable[[bytes], bool], host: str = "127.0.0.1"
) -> asyncio.Server:
    """A gateway on an ephemeral port: each whole request answered by the meter."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = b""
        try:
            while True:
                chunk = await reader.read(4096)
                if not chunk:
                    return
                buf += chunk
                if not complete(buf):
                    continue
                reply = meter.respond(buf, clock.now())
                buf = b""
                if reply:
                    writer.write(reply)
                    await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, 0)


async def push_tcp(
    frame_at: Callable[[datetime], bytes], clock: Clock, period: timedelta, host: str = "127.0.0.1"
) -> tuple[asyncio.Server, list[Any]]:
    """A gateway pushing ``frame_at(t)`` every ``period`` to each client connected."""
    clients: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        clients.append(writer)
        t = next_aligned(clock.now(), period)
        try:
            while True:
                await clock.sleep_until(t)
                writer.write(frame_at(t))
                await writer.drain()
                t += period
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            return  # the loop ends (a handler task left running when the gateway closes)
        finally:
            clients.remove(writer)
            writer.close()

    return await asyncio.start_server(handle, host, 0), clients


def port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])
