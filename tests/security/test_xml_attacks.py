"""Entity bombs, external entities and DTDs against every XML parser of the project, and over
real mutual TLS against the hub's body-taking endpoint and through the GDSC's pull clients.

Every document is refused with the specific "DTD" error; nothing is expanded, no file is read
(its contents appear nowhere) and nothing is fetched (a listener stands where the documents
point and must see no connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from smarthub.clock import SystemClock
from smarthub.gdsc.pki import CertificateAuthority, Role
from smarthub.hub.drlc import InvalidEvent, parse_end_device_control
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.hub.management import ManagementInterface
from smarthub.security.xml import XmlRefused, parse_untrusted
from smarthub.wan import httpd
from smarthub.wan.client import sep2
from smarthub.wan.client.bulk import BulkParser
from smarthub.wan.client.hub_client import HubClient, PullError, parse_resource
from smarthub.wan.client.pull import PullClient, bulk_link
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context

from .xml_attacks import NS, SECRET_MARK, Attack, attacks, document

GUARD = 20.0

MUP = (
    f'<MirrorUsagePointList xmlns="{NS}" href="/mup" all="1" results="1"><MirrorUsagePoint>'
    "<description>{ref}</description></MirrorUsagePoint></MirrorUsagePointList>"
)
DCAP = f'<DeviceCapability xmlns="{NS}" href="/dcap"><MirrorUsagePointListLink href="/mup{{ref}}" all="1"/></DeviceCapability>'
TIME = (
    f'<Time xmlns="{NS}" href="/tm"><currentTime>{{ref}}</currentTime><dstEndTime>0</dstEndTime>'
    "<dstOffset>0</dstOffset><dstStartTime>0</dstStartTime><localTime>0</localTime><quality>7</quality><tzOffset>0</tzOffset></Time>"
)
EDC = f'<EndDeviceControl xmlns="{NS}"><mRID>{{ref}}</mRID></EndDeviceControl>'


@pytest.fixture
def listener() -> Iterator[tuple[str, Callable[[], int]]]:
    """Where the documents point: a TCP socket whose backlog records any connection attempt."""
    sock = socket.create_server(("127.0.0.1", 0), backlog=16)
    sock.setblocking(False)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    def connections() -> int:
        n = 0
        while True:
            try:
                conn, _ = sock.accept()
            except BlockingIOError:
                return n
            conn.close()
            n += 1

    yield url, connections
    sock.close()


def _bulk(body: bytes) -> object:
    p = BulkParser()
    for k in range(0, len(body), 4096):
        p.feed(body[k : k + 4096])
    return p.close()


def _bulk_whole(body: bytes) -> object:
    p = BulkParser()
    p.feed(body)
    return p.close()


# name -> (document element, template, parse, the error it documents)
PARSERS: dict[str, tuple[str, str, Callable[[bytes], object], type[Exception]]] = {
    "security.xml.parse_untrusted": ("Time", TIME, parse_untrusted, XmlRefused),
    "wan.client.parse_resource (walk)": (
        "Time",
        TIME,
        lambda b: parse_resource(b, sep2.TimeResponse, "GET /tm"),
        PullError,
    ),
    "wan.pull.bulk_link (/dcap)": ("DeviceCapability", DCAP, bulk_link, PullError),
    "wan.bulk.BulkParser (4 kB chunks)": ("MirrorUsagePointList", MUP, _bulk, PullError),
    "wan.bulk.BulkParser (one chunk)": ("MirrorUsagePointList", MUP, _bulk_whole, PullError),
    "hub.drlc.parse_end_device_control": ("EndDeviceControl", EDC, parse_end_device_control, InvalidEvent),
}


def _documents(root: str, template: str, url: str) -> list[tuple[str, bytes]]:
    docs = [(a.name, document(a, template)) for a in attacks(root, url)]
    # The same in UTF-16, which a byte search for "<!DOCTYPE" cannot see.
    for a in attacks(root, url):
        if a.name in ("billion-laughs", "external-entity-file", "external-dtd-http"):
            text = document(a, template).decode().replace('encoding="UTF-8"', 'encoding="UTF-16"')
            docs.append((a.name + " (UTF-16)", text.encode("utf-16")))
    return docs


def test_the_documents_are_valid_without_their_dtd() -> None:
    """Control: with a plain value where the entity was, every parser accepts the document, so
    what the tests below see refused is the DTD, not the shape."""
    clean = Attack("clean", "", "1700000000")
    for name, (_, template, parse, _) in PARSERS.items():
        if name.startswith("hub.drlc"):
            continue  # an EndDeviceControl needs more fields; its parser's refusal is checked by message
        parse(document(clean, template))


@pytest.mark.parametrize("parser", sorted(PARSERS))
def test_every_parser_refuses_bombs_external_entities_and_dtds(
    parser: str, listener: tuple[str, Callable[[], int]]
) -> None:
    url, connections = listener
    root, template, parse, error = PARSERS[parser]
    for name, doc in _documents(root, template, url):
        with pytest.raises(error) as refused:
            parse(doc)
        message = str(refused.value)
        # A streamed bulk body in UTF-16 is refused for its encoding before its DTD is read.
        assert "DTD" in message or (name.endswith("(UTF-16)") and "only UTF-8" in message), (
            f"{parser} / {name}: {message}"
        )
        assert SECRET_MARK not in message and "lollol" not in message, f"{parser} / {name}"
    assert connections() == 0  # nothing was fetched


# --- over real TLS ------------------------------------------------------------------------------


@dataclass
class Pki:
    dir: Path
    ca: CertificateAuthority
    hub_lfdi: str
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture
def pki(tmp_path: Path, wall_now: datetime) -> Pki:
    ca = CertificateAuthority.create("CA", wall_now)
    ca.save(tmp_path / "ca")
    hub = ca.issue(Role.HUB, "HUB1", wall_now, hosts=("127.0.0.1",))
    hub.save(tmp_path, "hub")
    ca.issue(Role.COLLECTOR, "c", wall_now).save(tmp_path, "c")
    ca_pem = tmp_path / "ca" / "ca.pem"
    return Pki(
        tmp_path,
        ca,
        hub.lfdi,
        server_context(tmp_path / "hub.pem", tmp_path / "hub.key", ca_pem),
        client_context(tmp_path / "c.pem", tmp_path / "c.key", ca_pem),
    )


@contextlib.asynccontextmanager
async def hostile_hub(pki: Pki, bodies: dict[str, bytes]) -> AsyncIterator[str]:
    """A hub (the real h11 server, a real hub certificate) answering each path with a hostile body."""
    app = httpd.Application()
    for path, body in bodies.items():

        async def answer(request: httpd.Request, body: bytes = body) -> httpd.Response:
            return httpd.Response(body=body, content_type=sep2.CONTENT_TYPE)

        app.router.add_get(path, answer)
    runner = httpd.AppRunner(app)
    await runner.setup()
    await httpd.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.server).start()
    try:
        yield f"https://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


GOOD_DCAP = DCAP.replace("{ref}", "").encode()


async def test_gdsc_bulk_pull_refuses_every_hostile_mup_body(
    pki: Pki, listener: tuple[str, Callable[[], int]]
) -> None:
    url, connections = listener
    for name, doc in _documents("MirrorUsagePointList", MUP, url):
        async with hostile_hub(pki, {"/dcap": GOOD_DCAP, "/mup": doc}) as base:
            client = PullClient(pki.client)
            conn = await client.connect(base, pki.hub_lfdi)
            try:
                href = await client.discover(conn)
                assert href == "/mup"
                with pytest.raises(PullError, match=r"DTD|only UTF-8") as refused:
                    async for _ in client.pages(conn, href, {}):
                        pass
            finally:
                conn.close()
        assert SECRET_MARK not in str(refused.value), name
    assert connections() == 0


async def test_gdsc_discovery_and_walk_refuse_hostile_dcap_and_time(
    pki: Pki, listener: tuple[str, Callable[[], int]]
) -> None:
    url, connections = listener
    dcaps = _documents("DeviceCapability", DCAP, url)
    times = _documents("Time", TIME, url)
    for (name, dcap), (_, tm) in zip(dcaps, times, strict=True):
        async with hostile_hub(pki, {"/dcap": dcap, "/tm": tm}) as base:
            client = PullClient(pki.client)
            conn = await client.connect(base, pki.hub_lfdi)
            try:
                with pytest.raises(PullError, match="DTD"):
                    await client.discover(conn)
            finally:
                conn.close()
            walker = HubClient(base, pki.client, pki.hub_lfdi)
            try:
                with pytest.raises(PullError, match="DTD") as refused:
                    await walker.get("/tm", sep2.TimeResponse)
            finally:
                await walker.close()
        assert SECRET_MARK not in str(refused.value), name
    assert connections() == 0


async def test_hub_refuses_xml_bombs_posted_to_its_only_body_taking_endpoint(
    pki: Pki, listener: tuple[str, Callable[[], int]]
) -> None:
    """POST /mgmt takes a JSON envelope: an XML document, hostile or not, is a malformed command."""
    url, connections = listener
    hub = SmartHub("HUB1", HistoryStore(pki.dir / "h.sqlite"))
    mgmt = ManagementInterface("HUB1", pki.ca.certificate, SystemClock(), pki.dir / "m.sqlite")
    server = HubWanServer("HUB1", pki.hub_lfdi, hub, lambda: 1_700_000_000, management=mgmt)
    port = await server.start("127.0.0.1", 0, pki.server)
    try:
        for name, doc in _documents("Command", "<Command>{ref}</Command>", url):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=pki.client)
            head = (
                f"POST /mgmt HTTP/1.1\r\nHost: hub\r\nContent-Length: {len(doc)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + doc)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), GUARD)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            status, body = answer.split(b" ", 2)[1], answer.split(b"\r\n\r\n", 1)[1]
            verdict = json.loads(body)
            assert status == b"403" and verdict["code"] == "malformed", name
            assert SECRET_MARK.encode() not in answer
        assert mgmt.last_counter == 0
    finally:
        await server.stop()
        mgmt.close()
        hub.history.close()
    assert connections() == 0
