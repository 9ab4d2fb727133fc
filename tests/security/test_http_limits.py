"""Oversized bodies and slow clients at the hub's WAN server (h11, ``wan.httpd``), on real TLS.

The timeouts are set small on the server's application (they are its attributes) so the tests
take well under a second each; what is asserted is behaviour (closed, 408, 413, served), and
the generous guards only keep a broken server from hanging the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from smarthub.gdsc.pki import CertificateAuthority, Role
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context

GUARD = 20.0  # a broken server fails the test instead of hanging it; not a timing assertion
LIMIT = 256 * 1024  # the hub's WAN body bound (HubWanServer)


@dataclass
class Rig:
    server: HubWanServer
    port: int
    ctx: ssl.SSLContext


@pytest.fixture
async def rig(tmp_path: Path, wall_now: datetime) -> AsyncIterator[Rig]:
    ca = CertificateAuthority.create("CA", wall_now)
    ca.save(tmp_path / "ca")
    ca.issue(Role.HUB, "HUB1", wall_now, hosts=("127.0.0.1",)).save(tmp_path, "hub")
    ca.issue(Role.COLLECTOR, "c", wall_now).save(tmp_path, "c")
    hub = SmartHub("HUB1", HistoryStore(tmp_path / "h.sqlite"))
    server = HubWanServer("HUB1", "00" * 20, hub, lambda: 1_700_000_000)
    server.app.header_timeout = 0.5
    server.app.body_timeout = 0.5
    server.app.idle_timeout = 2.0
    port = await server.start(
        "127.0.0.1", 0, server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    )
    ctx = client_context(tmp_path / "c.pem", tmp_path / "c.key", tmp_path / "ca" / "ca.pem")
    try:
        yield Rig(server, port, ctx)
    finally:
        await server.stop()
        hub.history.close()


async def _connect(rig: Rig) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", rig.port, ssl=rig.ctx), GUARD)


async def _read_to_eof(reader: asyncio.StreamReader) -> bytes:
    out = b""
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while chunk := await asyncio.wait_for(reader.read(65536), GUARD):
            out += chunk
    return out


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


async def test_content_length_over_the_limit_is_answered_413_before_any_body_byte(rig: Rig) -> None:
    reader, writer = await _connect(rig)
    writer.write(f"POST /mgmt HTTP/1.1\r\nHost: hub\r\nContent-Length: {100 * LIMIT}\r\n\r\n".encode())
    await writer.drain()
    answer = await _read_to_eof(reader)  # no body sent at all: the hub does not wait for it
    await _close(writer)
    assert _status(answer) == 413 and f"exceeds {LIMIT} bytes".encode() in answer
    assert rig.server.requests == 0


async def test_a_chunked_body_growing_past_the_limit_is_answered_413_before_it_ends(rig: Rig) -> None:
    reader, writer = await _connect(rig)
    writer.write(b"POST /mgmt HTTP/1.1\r\nHost: hub\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"10000\r\n" + b"<" * 65536 + b"\r\n"
    for _ in range(LIMIT // 65536 + 1):  # one chunk past the limit, and never the last chunk
        writer.write(chunk)
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    answer = await _read_to_eof(reader)
    await _close(writer)
    assert _status(answer) == 413
    assert rig.server.requests == 0


async def test_a_head_over_16_kib_is_refused(rig: Rig) -> None:
    reader, writer = await _connect(rig)
    writer.write(b"GET /dcap HTTP/1.1\r\nHost: hub\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n")
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    answer = await _read_to_eof(reader)
    await _close(writer)
    assert _status(answer) == 431


async def test_a_head_sent_a_byte_at_a_time_is_cut_off_at_the_header_deadline(rig: Rig) -> None:
    """Each byte arrives well inside any per-read timeout; the head's total deadline still ends it."""
    reader, writer = await _connect(rig)
    head = b"GET /dcap HTTP/1.1\r\nHost: hub\r\nX-Slow: " + b"s" * 200 + b"\r\n\r\n"
    sent = 0
    closed = asyncio.ensure_future(_read_to_eof(reader))
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        for byte in head:
            if closed.done():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            sent += 1
            await asyncio.sleep(0.05)
    answer = await asyncio.wait_for(closed, GUARD)
    await _close(writer)
    assert answer == b""  # closed without an HTTP answer: there is no request to answer
    assert sent < len(head)  # the hub hung up before the client finished
    assert rig.server.requests == 0


async def test_a_body_that_never_finishes_is_answered_408(rig: Rig) -> None:
    reader, writer = await _connect(rig)
    writer.write(b"POST /mgmt HTTP/1.1\r\nHost: hub\r\nContent-Length: 100\r\n\r\n" + b"{" * 10)
    await writer.drain()
    answer = await _read_to_eof(reader)
    await _close(writer)
    assert _status(answer) == 408 and b"not received within 0.5 s" in answer
    assert rig.server.requests == 0


async def test_an_idle_keep_alive_connection_is_closed(rig: Rig) -> None:
    reader, writer = await _connect(rig)
    writer.write(b"GET /tm HTTP/1.1\r\nHost: hub\r\n\r\n")
    await writer.drain()
    answer = await _read_to_eof(reader)  # the answer, then EOF once the idle timeout passes
    await _close(writer)
    assert _status(answer) == 200


async def test_fifty_slow_loris_clients_do_not_stop_a_normal_client_being_served(rig: Rig) -> None:
    rig.server.app.header_timeout = 3.0  # long enough that they are all still open meanwhile
    lorises = [await _connect(rig) for _ in range(50)]
    for _, writer in lorises:
        writer.write(b"GET /dcap HTTP/1.1\r\nHo")  # a head started and never finished
        await writer.drain()
    await asyncio.sleep(0.1)
    assert not any(reader.at_eof() for reader, _ in lorises)

    reader, writer = await _connect(rig)
    writer.write(b"GET /dcap HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
    await writer.drain()
    answer = await _read_to_eof(reader)
    await _close(writer)
    assert _status(answer) == 200 and b"DeviceCapability" in answer
    assert not any(reader.at_eof() for reader, _ in lorises)  # still held when it was served

    # ... and each of them is closed at its header deadline, with nothing answered.
    leftovers = await asyncio.gather(*(_read_to_eof(r) for r, _ in lorises))
    assert leftovers == [b""] * 50
    for _, w in lorises:
        await _close(w)
    assert rig.server.requests == 1
