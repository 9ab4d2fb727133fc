"""The collector pulls by bulk when the hub advertises it, by walking otherwise: same store either way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from smarthub.clock import SystemClock
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.gdsc.fleet.registry import HubRecord
from smarthub.gdsc.pull.collector import Collector
from smarthub.gdsc.pull.log import pull_log
from smarthub.gdsc.readings.tables import pull_cursors
from smarthub.gdsc.store import Store
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.model import ObisCode, Reading, Unit
from smarthub.wan import httpd as web
from smarthub.wan.client import sep2
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context

IMPORT = ObisCode.parse("1-0:1.8.0")
GAS = ObisCode.parse("7-0:3.0.0")
DAY0 = datetime(2026, 3, 2, tzinfo=UTC)
WINDOW = datetime(2026, 3, 5, 1, tzinfo=UTC)


def feed(hub: SmartHub, days: int) -> None:
    for i in range(0, days * 24 * 12 + 1):
        t = DAY0 + timedelta(minutes=5 * i)
        hub.ingest(
            [
                Reading("E1", IMPORT, Decimal(1_000_000 + 25 * i + i % 11) / 1000, Unit.KWH, t),
                Reading("G1", GAS, Decimal(5_000_000 + 9 * i + i % 3) / 1000, Unit.M3, t),
            ]
        )


class WalkOnlyServer(HubWanServer):
    """A hub on older firmware: no bulk resource, and its DeviceCapability links none."""

    async def dcap(self, request: web.Request) -> web.Response:
        dcap = sep2.DeviceCapabilityResponse(
            href="/dcap", pollRate=900, UsagePointListLink=sep2.ListLink(href="/upt", all_=2)
        )
        return web.Response(body=sep2.to_xml(dcap), content_type=sep2.CONTENT_TYPE)

    async def mirror_usage_points(self, request: web.Request) -> web.Response:
        raise web.HTTPNotFound(text="no such resource")


class ElsewhereServer(HubWanServer):
    """A hub serving its bulk resource at another href than /mup, which its dcap links."""

    HREF = "/bulk"

    last: ElsewhereServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app.router.add_get(self.HREF, self.mirror_usage_points)
        self.paths: list[str] = []
        ElsewhereServer.last = self

    async def dcap(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        body = (await super().dcap(request)).body
        assert isinstance(body, bytes)
        return web.Response(
            body=body.replace(b'href="/mup"', b'href="/bulk"'), content_type=sep2.CONTENT_TYPE
        )

    async def mirror_usage_points(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        if request.path != self.HREF:
            raise web.HTTPNotFound(text="no such resource")
        return await super().mirror_usage_points(request)


@dataclass
class Rig:
    hub: SmartHub
    record: HubRecord
    dir: Path


async def _rig(tmp_path: Path, now: datetime, server_class: type[HubWanServer]) -> AsyncIterator[Rig]:
    ca = CertificateAuthority.create("test GDSC CA", now)
    ca.save(tmp_path / "ca")
    cert = ca.issue(Role.HUB, "HUB1", now, hosts=("127.0.0.1",))
    cert.save(tmp_path, "hub")
    ca.issue(Role.COLLECTOR, "collector", now).save(tmp_path, "collector")
    history = HistoryStore(tmp_path / "history.sqlite")
    hub = SmartHub("HUB1", history)
    feed(hub, 3)
    server = server_class("HUB1", cert.lfdi, hub, lambda: int(DAY0.timestamp()))
    port = await server.start(
        "127.0.0.1", 0, server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    )
    yield Rig(hub, HubRecord("HUB1", "P1", f"https://127.0.0.1:{port}", cert.lfdi, "active"), tmp_path)
    await server.stop()
    history.close()


@pytest.fixture
async def rig(tmp_path: Path, wall_now: datetime) -> AsyncIterator[Rig]:
    async for r in _rig(tmp_path, wall_now, HubWanServer):
        yield r


REGISTERS = 2 * 3  # each channel's register at the three midnights closing a day fed


def _store(url: str) -> Store:
    store = Store(url)
    store.create_schema()
    store.register_hub(
        hub_id="HUB1",
        premises_id="P1",
        url="https://127.0.0.1:1",
        lfdi="00" * 20,
        meters_by_fuel=[("E1", "electricity"), ("G1", "gas")],
    )
    return store


def _contents(store: Store) -> tuple[list[tuple], list[tuple]]:
    with store.engine.connect() as conn:
        cursors = [tuple(r) for r in conn.execute(select(pull_cursors).order_by(*pull_cursors.c))]
    return [tuple(getattr(r, f) for f in r.__slots__) for r in store.readings()], cursors


def _collector(store: Store, rig: Rig, bulk: bool) -> Collector:
    ctx = client_context(rig.dir / "collector.pem", rig.dir / "collector.key", rig.dir / "ca" / "ca.pem")
    return Collector(store, ctx, SystemClock(), bulk=bulk)


async def test_bulk_and_walk_produce_identical_stores(rig: Rig, db_url: str, tmp_path: Path) -> None:
    bulk_store, walk_store = _store(db_url), _store(f"sqlite:///{tmp_path / 'walk.sqlite'}")
    bulk, walk = _collector(bulk_store, rig, True), _collector(walk_store, rig, False)
    try:
        b = await bulk.pull(rig.record, WINDOW)
        w = await walk.pull(rig.record, WINDOW)
        assert b.ok and w.ok, (b.error, w.error)
        assert b.bulk and not w.bulk
        # every half-hour, and the register at each midnight closing a day (REGISTERS: the store
        # has no VEE gate here, so they are pulled and left out)
        assert b.readings == w.readings == 2 * 3 * 48 + REGISTERS and b.inserted == 2 * 3 * 48
        assert b.requests == 1 and w.requests > 10  # the page alone (no dcap), against the walk
        assert _contents(bulk_store) == _contents(walk_store)
        assert _contents(bulk_store)[1]  # cursors were stored
        # Next window: a new day; the bulk link is remembered and the TLS session resumed.
        feed(rig.hub, 4)
        b2 = await bulk.pull(rig.record, WINDOW + timedelta(days=1))
        w2 = await walk.pull(rig.record, WINDOW + timedelta(days=1))
        assert (b2.readings, b2.inserted, w2.inserted) == (2 * 48 + 2, 2 * 48, 2 * 48)
        assert b2.requests == 1 and b2.resumed
        assert _contents(bulk_store) == _contents(walk_store)
        nothing = await bulk.pull(rig.record, WINDOW + timedelta(days=2))
        assert nothing.ok and nothing.readings == 0 and nothing.resumed  # the same session again
        with bulk_store.engine.connect() as conn:
            assert conn.execute(select(pull_log.c.ok)).scalars().all() == [1, 1, 1]
    finally:
        await bulk.close()
        await walk.close()
        bulk_store.close()
        walk_store.close()


async def test_a_hub_without_the_bulk_link_is_walked(tmp_path: Path, wall_now: datetime) -> None:
    async for rig in _rig(tmp_path, wall_now, WalkOnlyServer):
        store = _store(f"sqlite:///{tmp_path / 'gdsc.sqlite'}")
        collector = _collector(store, rig, True)
        try:
            first = await collector.pull(rig.record, WINDOW)
            assert first.ok and not first.bulk and first.readings == 2 * 3 * 48 + REGISTERS
            second = await collector.pull(rig.record, WINDOW)
            assert second.ok and not second.bulk and second.readings == 0
        finally:
            await collector.close()
            store.close()


async def test_a_bulk_resource_elsewhere_is_found_from_dcap_once(tmp_path: Path, wall_now: datetime) -> None:
    async for rig in _rig(tmp_path, wall_now, ElsewhereServer):
        store = _store(f"sqlite:///{tmp_path / 'gdsc.sqlite'}")
        collector = _collector(store, rig, True)
        server = ElsewhereServer.last
        try:
            first = await collector.pull(rig.record, WINDOW)
            assert first.ok and first.bulk and first.readings == 2 * 3 * 48 + REGISTERS
            assert first.inserted == 2 * 3 * 48
            # /mup refused (404), then the 2030.5 entry point, then the link it gives.
            assert first.requests == 3 and server.paths == ["/mup", "/dcap", "/bulk"]
            feed(rig.hub, 4)
            second = await collector.pull(rig.record, WINDOW + timedelta(days=1))
            assert second.ok and second.bulk and second.requests == 1 and second.inserted == 2 * 48
            assert server.paths[3:] == ["/bulk"]
        finally:
            await collector.close()
            store.close()


async def test_a_wrong_hub_is_a_failed_pull_logged_not_an_exception(rig: Rig, tmp_path: Path) -> None:
    store = _store(f"sqlite:///{tmp_path / 'gdsc.sqlite'}")
    collector = _collector(store, rig, True)
    impostor = HubRecord("HUB1", "P1", rig.record.url, "11" * 20, "active")
    try:
        out = await collector.pull(impostor, WINDOW)
        assert not out.ok and out.error is not None and "LFDI" in out.error
        assert store.count_readings() == 0
        with store.engine.connect() as conn:
            assert conn.execute(select(pull_log.c.error)).scalar_one() == out.error
    finally:
        await collector.close()
        store.close()
