"""Hubs on IPv6 (issue 26 item 1): a hub serves on an IPv6 literal, the registry stores its URL
(``https://[::1]:port``, RFC 3986 §3.2.2), and one collector pulls a mixed IPv4/IPv6 fleet, by
bulk and by walk, on loopback (``::1``)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from smarthub.clock import SystemClock
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.gdsc.pull.collector import Collector
from smarthub.gdsc.store import Store
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.model import ObisCode, Reading, Unit
from smarthub.wan.contract.authority import host_header
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")

IMPORT = ObisCode.parse("1-0:1.8.0")
DAY0 = datetime(2026, 3, 2, tzinfo=UTC)
WINDOW = datetime(2026, 3, 4, 1, tzinfo=UTC)


@dataclass
class Fleet:
    dir: Path
    urls: dict[str, str]
    lfdis: dict[str, str]


@pytest.fixture
async def fleet(tmp_path: Path, wall_now: datetime) -> AsyncIterator[Fleet]:
    ca = CertificateAuthority.create("test GDSC CA", wall_now)
    ca.save(tmp_path / "ca")
    ca.issue(Role.COLLECTOR, "collector", wall_now).save(tmp_path, "collector")
    urls: dict[str, str] = {}
    lfdis: dict[str, str] = {}
    servers, histories = [], []
    for hub_id, host in (("HUB4", "127.0.0.1"), ("HUB6", "::1")):
        cert = ca.issue(Role.HUB, hub_id, wall_now, hosts=(host,))
        cert.save(tmp_path, hub_id)
        history = HistoryStore(tmp_path / f"{hub_id}.sqlite")
        hub = SmartHub(hub_id, history)
        for i in range(2 * 48 + 1):
            t = DAY0 + timedelta(minutes=30 * i)
            hub.ingest([Reading(f"E-{hub_id}", IMPORT, Decimal(1000 + i) / 10, Unit.KWH, t)])
        server = HubWanServer(hub_id, cert.lfdi, hub, lambda: int(DAY0.timestamp()))
        ctx = server_context(
            tmp_path / f"{hub_id}.pem", tmp_path / f"{hub_id}.key", tmp_path / "ca" / "ca.pem"
        )
        port = await server.start(host, 0, ctx)
        urls[hub_id] = f"https://{host_header(host, port)}"
        lfdis[hub_id] = cert.lfdi
        servers.append(server)
        histories.append(history)
    yield Fleet(tmp_path, urls, lfdis)
    for server in servers:
        await server.stop()
    for history in histories:
        history.close()


def test_host_header_brackets_an_ipv6_literal() -> None:
    """RFC 9110 §7.2 / RFC 3986 §3.2.2: an IPv6 literal in Host is in brackets."""
    assert host_header("::1", 8443) == "[::1]:8443"
    assert host_header("2001:db8::7", 443) == "[2001:db8::7]:443"
    assert host_header("127.0.0.1", 8443) == "127.0.0.1:8443"
    assert host_header("hub-7.example", 8443) == "hub-7.example:8443"


@pytest.mark.parametrize("bulk", [True, False], ids=["bulk", "walk"])
async def test_one_collector_pulls_a_mixed_ipv4_ipv6_fleet(fleet: Fleet, db_url: str, bulk: bool) -> None:
    store = Store(db_url)
    store.create_schema()
    for hub_id, url in fleet.urls.items():
        store.register_hub(
            hub_id=hub_id,
            premises_id=f"P-{hub_id}",
            url=url,
            lfdi=fleet.lfdis[hub_id],
            meters_by_fuel=[(f"E-{hub_id}", "electricity")],
        )
    assert {r.hub_id: r.url for r in store.active_hubs()} == fleet.urls  # the registry keeps either form
    assert fleet.urls["HUB6"].startswith("https://[::1]:")
    ctx = client_context(
        fleet.dir / "collector.pem", fleet.dir / "collector.key", fleet.dir / "ca" / "ca.pem"
    )
    collector = Collector(store, ctx, SystemClock(), bulk=bulk)
    try:
        by_hub = {}
        for record in store.active_hubs():
            result = await collector.pull(record, WINDOW)
            assert result.ok, (record.hub_id, result.error)
            by_hub[record.hub_id] = result.inserted
        assert by_hub == {"HUB4": 2 * 48, "HUB6": 2 * 48}
        again = await collector.pull(next(r for r in store.active_hubs() if r.hub_id == "HUB6"), WINDOW)
        assert again.ok and again.inserted == 0  # cursors kept per hub: nothing twice
    finally:
        await collector.close()
