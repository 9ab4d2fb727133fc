"""The TCP transports against real loopback servers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from smarthub.han.p1 import P1Port
from smarthub.han.tcp import TcpLink, TcpStreamTransport
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.model.obis import IMPORT_ACTIVE_ENERGY
from smarthub.sim.dsmr_meter import DsmrMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile

T0 = datetime(2026, 3, 2, tzinfo=UTC)


async def test_p1_over_tcp_bridge_survives_a_dropped_connection(tmp_path: Path) -> None:
    meter = DsmrMeterSimulator("E7", None, HouseholdProfile(2), start=T0)
    sessions = 0

    async def bridge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sessions
        sessions += 1
        # Each session sends one telegram in two pieces, then drops the line.
        data = meter.telegram_at(T0 + timedelta(minutes=sessions))
        writer.write(data[:100])
        await writer.drain()
        writer.write(data[100:])
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(bridge, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    hub = SmartHub("HUB1", HistoryStore(tmp_path / "h.sqlite"))
    hub.attach(P1Port("p1"))
    tr = TcpStreamTransport("127.0.0.1", port, lambda d: hub.receive("p1", d), reconnect_delay=0.05)
    task = asyncio.create_task(tr.run())
    for _ in range(200):
        if hub.stats.frames_ok >= 3:
            break
        await asyncio.sleep(0.02)
    tr.stop()
    await task
    server.close()
    assert hub.stats.frames_ok >= 3 and hub.stats.frame_errors == 0
    assert tr.connections >= 3
    latest = hub.mirror.latest("E7", IMPORT_ACTIVE_ENERGY)
    assert latest is not None and latest.time >= T0 + timedelta(minutes=3)


async def test_tcp_link_reads_until_the_response_is_complete() -> None:
    async def echo_twice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        req = await reader.read(100)
        writer.write(req[:2])
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(req[2:] + b"!")
        await writer.drain()

    server = await asyncio.start_server(echo_twice, "127.0.0.1", 0)
    link = TcpLink("127.0.0.1", server.sockets[0].getsockname()[1])
    assert await link.exchange(b"hello", lambda b: b.endswith(b"!")) == b"hello!"
    await link.close()
    server.close()
