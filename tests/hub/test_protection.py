"""WAN and HAN protection: clients are rate-limited, a flooding HAN device is quarantined."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aiohttp

from smarthub.clock import ManualClock
from smarthub.gdsc.pki import CertificateAuthority, Role
from smarthub.han.ports import PortBatch
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.model.datapoint import DataPoint
from smarthub.wan.server.resources import HubWanServer, RateLimiter
from smarthub.wan.tls import client_context, server_context

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    rl = RateLimiter(rate=2.0, burst=3, monotonic=lambda: now[0])
    assert [rl.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert rl.take("a") == 0.5  # the 4th must wait half a second at 2/s
    assert rl.take("b") == 0.0  # buckets are per client
    now[0] += 0.5
    assert rl.take("a") == 0.0


async def test_hub_answers_429_with_retry_after_to_a_greedy_client(
    tmp_path: Path, wall_now: datetime
) -> None:
    ca = CertificateAuthority.create("CA", wall_now)
    ca.save(tmp_path / "ca")
    hub_cert = ca.issue(Role.HUB, "HUB1", wall_now, hosts=("127.0.0.1",))
    hub_cert.save(tmp_path, "hub")
    ca.issue(Role.COLLECTOR, "c", wall_now).save(tmp_path, "c")
    hub = SmartHub("HUB1", HistoryStore(tmp_path / "h.sqlite"))
    server = HubWanServer("HUB1", hub_cert.lfdi, hub, lambda: 0)
    server.limiter = RateLimiter(rate=0.5, burst=5)
    port = await server.start(
        "127.0.0.1", 0, server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    )
    ctx = client_context(tmp_path / "c.pem", tmp_path / "c.key", tmp_path / "ca" / "ca.pem")
    statuses = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        for _ in range(8):
            async with s.get(f"https://127.0.0.1:{port}/dcap") as resp:
                statuses.append(resp.status)
                retry = resp.headers.get("Retry-After")
    await server.stop()
    hub.history.close()
    assert statuses[:5] == [200] * 5 and statuses[5:] == [429] * 3
    assert retry is not None and int(retry) >= 1 and server.rate_limited == 3


def test_flooding_meter_is_quarantined_and_others_are_not(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    hub = SmartHub("HUB1", HistoryStore(tmp_path / "h.sqlite"), clock=clock)

    def frame(meter: str, i: int) -> PortBatch:
        return PortBatch(points=[DataPoint(meter, "wmbus", "water:volume", Decimal(i), "m3")])

    for i in range(600):  # 10 frames a second for a minute from one "meter"
        t = T0 + timedelta(milliseconds=100 * i)
        hub.accept(frame("FLOODER", i), t)
        if i % 300 == 0:
            hub.accept(frame("GOOD", i), t)
    assert hub.flood.quarantined_until["FLOODER"] > T0 + timedelta(minutes=10)
    assert hub.stats.quarantined == 600 - hub.flood.max_per_minute
    assert "GOOD" not in hub.flood.quarantined_until
    after = T0 + timedelta(minutes=20)
    hub.accept(frame("FLOODER", 1000), after)  # quarantine over: admitted again
    assert hub.mirror.latest("FLOODER", hub.mapping.entries[("wmbus", "water:volume")].obis).value == Decimal(
        "1000"
    )  # type: ignore[union-attr]
