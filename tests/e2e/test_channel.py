"""A hub the GDSC cannot dial (issue 26 item 2): it listens on no port, opens a channel to the
GDSC's endpoint, and is pulled and sent commands through it exactly like a dialled hub — bulk
pull, event pull and a signed command; the channel cut and restored; an impostor claiming the
hub's id refused by the same LFDI pinning; the back-off's jitter bounded."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from smarthub.clock import SystemClock
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.gdsc.pull.collector import Collector
from smarthub.gdsc.pull.courier import CommandCourier
from smarthub.gdsc.store import Store
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.hub.management import ManagementInterface
from smarthub.model import ObisCode, Reading, Unit
from smarthub.wan.client.channel import ChannelEndpoint
from smarthub.wan.contract.channel import (
    MAX_PREAMBLE,
    ChannelRefused,
    channel_url,
    encode_preamble,
    hub_of_url,
    parse_preamble,
    reconnect_delay,
)
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context

IMPORT = ObisCode.parse("1-0:1.8.0")
DAY0 = datetime(2026, 3, 2, tzinfo=UTC)
WINDOW = datetime(2026, 3, 4, 1, tzinfo=UTC)
GUARD = 10.0  # seconds a wait may take before the test fails (not a timing assertion)


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(GUARD):
        while not condition():
            await asyncio.sleep(0.01)


# --- the contract: the line, the URL, the back-off ------------------------------------------------


def test_the_channel_line_round_trips_and_bad_lines_are_refused_with_a_reason() -> None:
    assert parse_preamble(encode_preamble("HUB000042")) == "HUB000042"
    for line, reason in [
        (b"SMARTHUB-CHANNEL/1 HUB1\n", "CRLF"),
        (b"GET / HTTP/1.1\r\n", "does not start"),
        (b"SMARTHUB-CHANNEL/1 \r\n", "no valid hub id"),
        (b"SMARTHUB-CHANNEL/1 ../etc\r\n", "no valid hub id"),
        (b"SMARTHUB-CHANNEL/1 " + b"A" * MAX_PREAMBLE + b"\r\n", "exceeds"),
    ]:
        with pytest.raises(ChannelRefused, match=reason):
            parse_preamble(line)
    assert hub_of_url(channel_url("HUB1")) == "HUB1" and hub_of_url("https://[::1]:8443") is None


def test_reconnect_delays_are_jittered_and_capped() -> None:
    rng = random.Random(7)
    assert all(0 <= reconnect_delay(0, rng) <= 1.0 for _ in range(1000))
    waits = [reconnect_delay(20, rng, cap=300.0) for _ in range(2000)]
    assert max(waits) <= 300.0 and min(waits) < 30.0  # spread over the window, not together
    assert 120 < sum(waits) / len(waits) < 180  # uniform on [0, 300]


# --- a hub behind a NAT ------------------------------------------------------------------------


@dataclass
class World:
    dir: Path
    store: Store
    endpoint: ChannelEndpoint
    hub: SmartHub
    server: HubWanServer
    lfdi: str
    ca: CertificateAuthority
    collector_ctx: ssl.SSLContext


@pytest.fixture
async def world(tmp_path: Path, wall_now: datetime, db_url: str) -> AsyncIterator[World]:
    ca = CertificateAuthority.create("test GDSC CA", wall_now)
    ca.save(tmp_path / "ca")
    # A channel hub's certificate names the hub (lower-cased) as its host, as commissioning does
    # for a channel:// URL, so the collector's hostname check holds on the channel too.
    cert = ca.issue(Role.HUB, "HUB1", wall_now, hosts=("hub1",))
    cert.save(tmp_path, "hub")
    ca.issue(Role.COLLECTOR, "collector", wall_now).save(tmp_path, "collector")
    store = Store(db_url)
    store.create_schema()
    store.register_hub(
        hub_id="HUB1",
        premises_id="P1",
        url=channel_url("HUB1"),
        lfdi=cert.lfdi,
        meters_by_fuel=[("E1", "electricity")],
    )
    channel_hubs = {r.hub_id for r in store.active_hubs() if hub_of_url(r.url)}
    endpoint = ChannelEndpoint(known=channel_hubs.__contains__)
    await endpoint.start("127.0.0.1", 0)
    history = HistoryStore(tmp_path / "history.sqlite")
    hub = SmartHub("HUB1", history)
    for i in range(2 * 48 + 1):
        t = DAY0 + timedelta(minutes=30 * i)
        hub.ingest([Reading("E1", IMPORT, Decimal(1000 + i) / 10, Unit.KWH, t)])
    mgmt = ManagementInterface("HUB1", ca.certificate, SystemClock(), tmp_path / "management.sqlite")
    for ctype, handler in hub.command_handlers().items():
        mgmt.register(ctype, handler)
    server = HubWanServer("HUB1", cert.lfdi, hub, lambda: int(DAY0.timestamp()), management=mgmt)
    ctx = server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    # No server.start(): the hub listens on no port at all.
    await server.start_channel(
        "127.0.0.1", endpoint.port or 0, ctx, links=2, rng=random.Random(1), max_backoff=0.5
    )
    collector_ctx = client_context(
        tmp_path / "collector.pem", tmp_path / "collector.key", tmp_path / "ca" / "ca.pem"
    )
    yield World(tmp_path, store, endpoint, hub, server, cert.lfdi, ca, collector_ctx)
    await server.stop()
    await endpoint.stop()
    mgmt.close()
    history.close()


async def test_a_hub_with_no_inbound_port_is_pulled_and_commanded_through_its_channel(world: World) -> None:
    assert world.server.port is None  # nothing listening on the hub
    await until(lambda: world.endpoint.is_open("HUB1"))
    collector = Collector(world.store, world.collector_ctx, SystemClock(), channels=world.endpoint)
    courier = CommandCourier(world.collector_ctx, channels=world.endpoint)
    try:
        [record] = world.store.active_hubs()
        result = await collector.pull(record, WINDOW)
        assert result.ok, result.error
        assert result.bulk and result.inserted == 2 * 48
        # the hub opens a new channel once the GDSC has used one; the next pull finds nothing new
        await until(lambda: world.endpoint.is_open("HUB1"))
        again = await collector.pull(record, WINDOW)
        assert again.ok and again.inserted == 0
        # The second pull resumed the first one's TLS session, on a new channel: the session is
        # kept by hub id and LFDI, and the hub's channels share its TLS context (ticket keys).
        assert not result.resumed and again.resumed

        operator = world.ca.issue(Role.OPERATOR, "gdsc-ops", datetime.now(UTC))
        signer = CommandSigner(operator.private_key, operator.cert_pem, lambda _hub: 1)
        command = signer.command("HUB1", "diagnostic.ping", {"nonce": 7}, datetime.now(UTC))
        await until(lambda: world.endpoint.is_open("HUB1"))
        verdict = await courier.deliver(record, command.envelope())
        assert verdict["status"] == "applied", verdict
        site = world.server.channels[0]
        assert site.stats.served >= 3 and site.stats.failures == 0
    finally:
        await collector.close()
        await courier.close()


async def test_a_cut_channel_fails_the_pull_like_an_unreachable_hub_then_comes_back(world: World) -> None:
    collector = Collector(world.store, world.collector_ctx, SystemClock(), channels=world.endpoint)
    [record] = world.store.active_hubs()
    try:
        await until(lambda: world.endpoint.is_open("HUB1"))
        await world.server.stop()  # the hub goes away (power cut, router down): its channels close
        await until(lambda: not world.endpoint.is_open("HUB1"))  # seen at the GDSC at once
        down = await collector.pull(record, WINDOW)
        assert not down.ok and "no channel open" in (down.error or "")
        ctx = server_context(world.dir / "hub.pem", world.dir / "hub.key", world.dir / "ca" / "ca.pem")
        await world.server.start_channel("127.0.0.1", world.endpoint.port or 0, ctx, links=1)
        await until(lambda: world.endpoint.is_open("HUB1"))
        up = await collector.pull(record, WINDOW)
        assert up.ok and up.inserted == 2 * 48
    finally:
        await collector.close()


async def test_an_impostor_claiming_the_hub_is_refused_by_the_pinning_and_the_hub_still_served(
    world: World, wall_now: datetime
) -> None:
    """Someone parks a socket claiming HUB1 and answers the handshake with another hub's valid
    certificate: the pull fails on the LFDI, as a direct pull of a hub with the wrong certificate
    does; the real hub's parked channel is used by the next pull."""
    await until(lambda: len(world.endpoint._parked.get("HUB1", ())) == 2)
    other = world.ca.issue(Role.HUB, "HUB2", wall_now, hosts=("hub1",))  # even with the right name
    other.save(world.dir, "impostor")
    impostor_ctx = server_context(
        world.dir / "impostor.pem", world.dir / "impostor.key", world.dir / "ca" / "ca.pem"
    )
    loop = asyncio.get_running_loop()
    raw = socket.create_connection(("127.0.0.1", world.endpoint.port or 0))
    raw.sendall(encode_preamble("HUB1"))
    raw.setblocking(False)

    async def impersonate() -> None:
        with contextlib.suppress(Exception):
            tls = impostor_ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            while True:
                try:
                    tls.do_handshake()
                    break
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    await asyncio.sleep(0.005)
            await loop.sock_recv(tls, 1024)

    task = asyncio.create_task(impersonate())
    await until(lambda: world.endpoint.stats.accepted >= 3)
    collector = Collector(world.store, world.collector_ctx, SystemClock(), channels=world.endpoint)
    [record] = world.store.active_hubs()
    try:
        refused = await collector.pull(record, WINDOW)  # the newest parked socket: the impostor's
        assert not refused.ok and "LFDI" in (refused.error or ""), refused.error
        served = await collector.pull(record, WINDOW)
        assert served.ok and served.inserted == 2 * 48
    finally:
        await collector.close()
        task.cancel()
        raw.close()


async def test_unknown_hubs_and_bad_lines_are_not_parked(world: World) -> None:
    before = world.endpoint.stats.refused
    for line in (encode_preamble("HUB9"), b"GET / HTTP/1.1\r\n"):
        reader, writer = await asyncio.open_connection("127.0.0.1", world.endpoint.port or 0)
        writer.write(line)
        async with asyncio.timeout(GUARD):
            assert await reader.read(1) == b""  # closed by the GDSC
        writer.close()
    assert world.endpoint.stats.refused == before + 2
    assert world.endpoint.hubs() in ([], ["HUB1"])
