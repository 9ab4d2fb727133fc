"""Oversized bodies and slow clients at the IHD (the hub's own h11 server, ``wan.httpd``) and the GDSC data services API
(FastAPI under uvicorn), over real loopback sockets (issue 8).

Each server runs with its limits set small (they are attributes: ``Ihd.header_timeout`` ...,
``HeadDeadlineH11Protocol.header_timeout``, ``BodyGuard``'s arguments) so the tests take about
a second; the assertions are on behaviour (closed, 408, 413, served). The last test starts the
real ``smarthub gdsc api`` process with its default limits. ``GUARD`` only keeps a broken server
from hanging the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from hub.ihd_home import make_home

from smarthub.gdsc.api.app import app_from_state
from smarthub.gdsc.api.http_limits import BodyGuard, HeadDeadlineH11Protocol
from smarthub.sim.fleet import provision

GUARD = 20.0
HEAD_TIMEOUT = 0.5
# The fifty lorises must all still be open while the normal client is served: a longer deadline.
SLOW_HEAD = {"test_fifty_slow_loris_clients_do_not_stop_a_normal_client_being_served": 3.0}


def _head_timeout(request: pytest.FixtureRequest) -> float:
    return SLOW_HEAD.get(request.node.originalname, HEAD_TIMEOUT)


START = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)


@dataclass
class Target:
    port: int
    path: str  # a POST endpoint that reads its body
    limit: int  # the body limit
    headers: str = ""  # what an authorised client sends (cookie, token)
    served_path: str = "/"  # a GET a normal client is answered 200 on


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), GUARD)


async def _read_to_eof(reader: asyncio.StreamReader) -> bytes:
    out = b""
    with contextlib.suppress(ConnectionError):
        while chunk := await asyncio.wait_for(reader.read(65536), GUARD):
            out += chunk
    return out


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


# --- the servers ------------------------------------------------------------------------------


@pytest.fixture
async def ihd(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Target]:
    home = make_home(tmp_path, START, prepayment=False)
    ihd = home.side.ihd
    ihd.header_timeout, ihd.body_timeout = _head_timeout(request), 0.5
    ihd.allowed_hosts = ihd.allowed_hosts | {"x"}  # the raw requests here name the host "x"
    await home.side.serve()
    token = home.side.store.pair(home.side.store.new_pairing_code(START), START)
    port = int(home.side.url.rsplit(":", 1)[1])
    try:
        yield Target(port, "/consent", ihd.max_body, f"Cookie: ihd_session={token}\r\n", "/api/summary")
    finally:
        await home.close()


@pytest.fixture
def api(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Target]:
    """The API app under a real uvicorn server (in a thread), with the guard's limits small."""
    state = tmp_path / "state"
    provision(state, [], datetime.now(UTC) - timedelta(minutes=5))

    class Protocol(HeadDeadlineH11Protocol):
        header_timeout = _head_timeout(request)

    from smarthub.clock import SystemClock

    limit = 64 * 1024
    app = BodyGuard(app_from_state(state, SystemClock()), max_body=limit, body_timeout=0.5)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", http=Protocol)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        threading.Event().wait(0.05)
    assert server.started
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Target(
            port, "/v1/premises/P1/commands/top-up", limit, "Authorization: Bearer x\r\n", "/openapi.json"
        )
    finally:
        server.should_exit = True
        thread.join(GUARD)


@pytest.fixture(params=["ihd", "api"])
def target(request: pytest.FixtureRequest) -> Target:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


# --- the behaviours ---------------------------------------------------------------------------


async def test_content_length_over_the_limit_is_refused_before_any_body_byte(target: Target) -> None:
    reader, writer = await _connect(target.port)
    writer.write(
        f"POST {target.path} HTTP/1.1\r\nHost: x\r\n{target.headers}Content-Type: application/json\r\n"
        f"Content-Length: {100 * target.limit}\r\n\r\n".encode()
    )
    await writer.drain()
    answer = await _read_to_eof(reader)  # no body sent at all: the server does not wait for it
    await _close(writer)
    assert _status(answer) == 413, answer[:300]


async def test_a_chunked_body_growing_past_the_limit_is_refused_before_it_ends(target: Target) -> None:
    reader, writer = await _connect(target.port)
    writer.write(
        f"POST {target.path} HTTP/1.1\r\nHost: x\r\n{target.headers}Content-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode()
    )
    chunk = b"4000\r\n" + b"[" * 0x4000 + b"\r\n"
    with contextlib.suppress(ConnectionError):
        for _ in range(target.limit // 0x4000 + 2):  # past the limit, and never the last chunk
            writer.write(chunk)
            await writer.drain()
    answer = await _read_to_eof(reader)
    await _close(writer)
    assert _status(answer) == 413, answer[:300]


async def test_a_body_that_never_finishes_is_answered_408(target: Target) -> None:
    reader, writer = await _connect(target.port)
    writer.write(
        f"POST {target.path} HTTP/1.1\r\nHost: x\r\n{target.headers}Content-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n{".encode()
    )
    await writer.drain()
    answer = await _read_to_eof(reader)
    await _close(writer)
    assert _status(answer) == 408 and b"not received within 0.5 s" in answer, answer[:300]


async def test_a_head_sent_a_byte_at_a_time_is_cut_off_at_the_header_deadline(target: Target) -> None:
    reader, writer = await _connect(target.port)
    head = f"GET {target.served_path} HTTP/1.1\r\nHost: x\r\nX-Slow: {'s' * 200}\r\n\r\n".encode()
    sent = 0
    closed = asyncio.ensure_future(_read_to_eof(reader))
    with contextlib.suppress(ConnectionError):
        for byte in head:
            if closed.done():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            sent += 1
            await asyncio.sleep(0.05)
    answer = await asyncio.wait_for(closed, GUARD)
    await _close(writer)
    assert _status(answer) in (0, 408)  # closed (uvicorn) or told so (aiohttp may answer 408)
    assert sent < len(head)  # the server hung up before the client finished


async def test_a_second_head_on_a_kept_alive_connection_has_a_deadline_too(target: Target) -> None:
    reader, writer = await _connect(target.port)
    writer.write(f"GET {target.served_path} HTTP/1.1\r\nHost: x\r\n{target.headers}\r\n".encode())
    await writer.drain()
    first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GUARD)
    assert _status(first) == 200
    closed = asyncio.ensure_future(_read_to_eof(reader))
    with contextlib.suppress(ConnectionError):
        for _ in range(100):
            if closed.done():
                break
            writer.write(b"X")  # a second head that never ends
            await writer.drain()
            await asyncio.sleep(0.05)
    await asyncio.wait_for(closed, GUARD)
    await _close(writer)
    assert closed.done()


async def test_fifty_slow_loris_clients_do_not_stop_a_normal_client_being_served(target: Target) -> None:
    lorises = [await _connect(target.port) for _ in range(50)]
    for _, writer in lorises:
        writer.write(b"GET / HTTP/1.1\r\nHo")  # a head started and never finished
        await writer.drain()
    await asyncio.sleep(0.1)
    assert not any(reader.at_eof() for reader, _ in lorises)

    reader, writer = await _connect(target.port)
    writer.write(
        f"GET {target.served_path} HTTP/1.1\r\nHost: x\r\n{target.headers}Connection: close\r\n\r\n".encode()
    )
    await writer.drain()
    answer = await _read_to_eof(reader)
    await _close(writer)
    assert _status(answer) == 200
    assert not any(reader.at_eof() for reader, _ in lorises)  # still held when it was served

    # ... and each of them is closed at its header deadline.
    await asyncio.gather(*(_read_to_eof(r) for r, _ in lorises))
    for _, w in lorises:
        await _close(w)


# --- the real process -------------------------------------------------------------------------


def test_the_served_api_refuses_an_oversized_body_and_serves_past_fifty_lorises(tmp_path: Path) -> None:
    """``smarthub gdsc api`` as shipped: BodyGuard and the head deadline are wired in."""
    state = tmp_path / "state"
    provision(state, [], datetime.now(UTC) - timedelta(minutes=5))
    from security.test_no_secrets_logged import _free_port, _wait_listening

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "smarthub.cli", "gdsc", "api", "--state", str(state), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_listening(f"http://127.0.0.1:{port}", proc)

        async def run() -> None:
            lorises = [await _connect(port) for _ in range(50)]
            for _, w in lorises:
                w.write(b"POST /v1/premises/P1/commands/top-up HTTP/1.1\r\nHo")
                await w.drain()
            reader, writer = await _connect(port)
            writer.write(
                b"POST /v1/premises/P1/commands/top-up HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n"
            )
            await writer.drain()
            answer = await _read_to_eof(reader)
            await _close(writer)
            assert _status(answer) == 413 and b"exceeds 1048576 bytes" in answer, answer[:300]
            reader, writer = await _connect(port)
            writer.write(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            await writer.drain()
            assert _status(await _read_to_eof(reader)) == 200
            await _close(writer)
            assert not any(r.at_eof() for r, _ in lorises)
            for _, w in lorises:
                await _close(w)

        asyncio.run(run())
    finally:
        proc.terminate()
        proc.wait(timeout=10)
