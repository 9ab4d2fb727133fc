"""The hub's h11 server (wan.httpd) at the HTTP level, through the real WAN server on TLS.

Raw bytes on a mutual-TLS socket, answers parsed by h11 as a client: keep-alive and
pipelining, the body-size bound, routing errors, malformed requests, and that a client
without a GDSC certificate never gets an HTTP answer.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import h11
import pytest
from lxml import etree

from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.wan.httpd import accepts
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context


@dataclass
class Rig:
    server: HubWanServer
    port: int
    ctx: ssl.SSLContext
    dir: Path


@pytest.fixture
async def rig(tmp_path: Path, wall_now: datetime) -> AsyncIterator[Rig]:
    ca = CertificateAuthority.create("CA", wall_now)
    ca.save(tmp_path / "ca")
    hub_cert = ca.issue(Role.HUB, "HUB1", wall_now, hosts=("127.0.0.1",))
    hub_cert.save(tmp_path, "hub")
    ca.issue(Role.COLLECTOR, "c", wall_now).save(tmp_path, "c")
    hub = SmartHub("HUB1", HistoryStore(tmp_path / "h.sqlite"))
    server = HubWanServer("HUB1", hub_cert.lfdi, hub, lambda: 1_700_000_000)
    port = await server.start(
        "127.0.0.1", 0, server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    )
    ctx = client_context(tmp_path / "c.pem", tmp_path / "c.key", tmp_path / "ca" / "ca.pem")
    try:
        yield Rig(server, port, ctx, tmp_path)
    finally:
        await server.stop()
        hub.history.close()


async def exchange(rig: Rig, raw: bytes, answers: int) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """Send ``raw`` on one TLS connection and read ``answers`` responses (status, headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.port, ssl=rig.ctx)
    client = h11.Connection(h11.CLIENT)
    out: list[tuple[int, dict[bytes, bytes], bytes]] = []
    try:
        writer.write(raw)
        await writer.drain()
        # h11 as a client tracks one request at a time: tell it about each before its answer.
        for _ in range(answers):
            client.send(h11.Request(method="GET", target="/", headers=[("Host", "hub")]))
            client.send(h11.EndOfMessage())
            status, headers, body = 0, {}, b""
            while True:
                event = client.next_event()
                if event is h11.NEED_DATA:
                    client.receive_data(await asyncio.wait_for(reader.read(65536), 10))
                    continue
                if isinstance(event, h11.Response):
                    status, headers = event.status_code, dict(event.headers)
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise ConnectionError("the hub closed the connection")
            out.append((status, headers, body))
            if client.our_state is h11.MUST_CLOSE or client.their_state is h11.MUST_CLOSE:
                break
            client.start_next_cycle()
    finally:
        writer.close()
    return out


async def test_pipelined_requests_on_one_kept_alive_connection(rig: Rig) -> None:
    raw = b"GET /dcap HTTP/1.1\r\nHost: hub\r\n\r\nGET /tm HTTP/1.1\r\nHost: hub\r\n\r\n"
    (s1, h1, b1), (s2, h2, b2) = await exchange(rig, raw, 2)
    assert (s1, s2) == (200, 200)
    assert h1[b"content-type"] == h2[b"content-type"] == b"application/sep+xml"
    assert etree.fromstring(b1).tag == "{urn:ieee:std:2030.5:ns}DeviceCapability"
    assert etree.fromstring(b2).findtext("{urn:ieee:std:2030.5:ns}currentTime") == "1700000000"
    assert rig.server.requests == 2


async def test_a_body_over_the_limit_is_refused_with_413_unread(rig: Rig) -> None:
    big = 256 * 1024 + 1
    raw = f"POST /mgmt HTTP/1.1\r\nHost: hub\r\nContent-Length: {big}\r\n\r\n".encode() + b"x" * 1024
    [(status, _, body)] = await exchange(rig, raw, 1)
    assert status == 413 and b"262144" in body
    assert rig.server.requests == 0  # never reached the application


async def test_a_chunked_body_over_the_limit_is_refused_with_413(rig: Rig) -> None:
    chunk = b"x" * 65536
    raw = b"POST /mgmt HTTP/1.1\r\nHost: hub\r\nTransfer-Encoding: chunked\r\n\r\n"
    raw += (b"10000\r\n" + chunk + b"\r\n") * 5 + b"0\r\n\r\n"
    [(status, _, _)] = await exchange(rig, raw, 1)
    assert status == 413


async def test_unknown_path_is_404_and_wrong_method_405(rig: Rig) -> None:
    raw = b"GET /nowhere HTTP/1.1\r\nHost: hub\r\n\r\nPOST /dcap HTTP/1.1\r\nHost: hub\r\nContent-Length: 0\r\n\r\n"
    (s1, _, _), (s2, _, _) = await exchange(rig, raw, 2)
    assert (s1, s2) == (404, 405)


async def test_malformed_request_gets_400_and_the_connection_closes(rig: Rig) -> None:
    [(status, _, _)] = await exchange(rig, b"GET /dcap NOT-HTTP\r\n\r\n", 1)
    assert status == 400


async def test_bad_query_parameter_is_a_clear_400(rig: Rig) -> None:
    [(status, _, body)] = await exchange(rig, b"GET /upt?l=ten HTTP/1.1\r\nHost: hub\r\n\r\n", 1)
    assert status == 400 and b"must be integers" in body


async def test_a_client_without_a_certificate_gets_no_http_answer(rig: Rig) -> None:
    ctx = ssl.create_default_context(cafile=str(rig.dir / "ca" / "ca.pem"))
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        reader, writer = await asyncio.open_connection("127.0.0.1", rig.port, ssl=ctx)
        writer.write(b"GET /dcap HTTP/1.1\r\nHost: hub\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(65536), 10)
        writer.close()
        if not data:
            raise ConnectionError("closed without an answer")
    assert rig.server.requests == 0


@pytest.mark.parametrize(
    ("accept", "ok"),
    [
        (None, True),
        ("", True),
        ("*/*", True),
        ("application/*", True),
        ("application/sep+xml", True),
        ("text/html, application/sep+xml;q=0.5", True),
        ("APPLICATION/SEP+XML", True),
        ("application/json", False),
        ("application/sep+xml;q=0", False),
        ("text/*, application/xml", False),
        ("application/sep+xml;q=zero", False),
    ],
)
def test_accept_header_is_read_as_rfc_9110_media_ranges(accept: str | None, ok: bool) -> None:
    assert accepts(accept, "application/sep+xml") is ok


async def test_the_server_stops_at_once_though_a_client_never_answers_its_close_notify(rig: Rig) -> None:
    """A stopping hub closes each TLS connection with a close_notify (RFC 8446 §6.1) and does not
    wait for the client's: one that never answers (its process frozen, its network gone) must not
    hold the hub's stop for asyncio's 30-second TLS shutdown timeout."""

    def connect() -> ssl.SSLSocket:
        sock = rig.ctx.wrap_socket(
            socket.create_connection(("127.0.0.1", rig.port)), server_hostname="127.0.0.1"
        )
        sock.sendall(b"GET /tm HTTP/1.1\r\nHost: hub\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")  # served, and kept alive
        return sock

    silent = await asyncio.to_thread(connect)  # a blocking socket: it reads (and answers) nothing more
    try:
        t0 = asyncio.get_running_loop().time()
        await asyncio.wait_for(rig.server.stop(), 10)
        assert asyncio.get_running_loop().time() - t0 < 2.5
    finally:
        silent.close()
