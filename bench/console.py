"""The operator console with a large fleet: how long its pages take, and what open pages cost.

A GDSC store is filled with ``--hubs`` hubs (the simulator's homes and network), ``--days`` days
of two half-hourly channels each (the interval blocks written directly: this measures reading,
not ingest) and three days of pull log, plus one incident per 20 hubs. Then the console serves it
over HTTP on loopback and the script measures each page, and the CPU the process spends while
``--clients`` live pages stay open, against one open page.

Reference, measured in the same run: one ``Store.fleet_status()`` (the grouped read every fleet
view is built on). Each page's time is printed with its ratio to it.

    .venv/bin/python bench/console.py --hubs 2000 --days 30 --clients 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web
from sqlalchemy import insert

from smarthub.gdsc.fleet.registry import hubs, premises
from smarthub.gdsc.incidents.console import console_app
from smarthub.gdsc.incidents.error_log import ErrorLog
from smarthub.gdsc.outages.topology import TopologyStore
from smarthub.gdsc.pull.log import pull_log
from smarthub.gdsc.readings.tables import interval_blocks
from smarthub.gdsc.store import Store
from smarthub.sim.fleet import home_specs
from smarthub.sim.topology import fleet_topology

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def fill(store: Store, n: int, days: int) -> ErrorLog:
    specs = home_specs(n, seed=1)
    day0 = int(T0.timestamp()) // 86400 - days
    with store.engine.begin() as c:
        c.execute(insert(premises), [dict(premises_id=s.premises_id, address=s.address) for s in specs])
        c.execute(
            insert(hubs),
            [
                dict(
                    hub_id=s.hub_id,
                    premises_id=s.premises_id,
                    url="https://h",
                    lfdi="a" * 40,
                    status="active",
                )
                for s in specs
            ],
        )
        c.execute(
            insert(interval_blocks),
            [
                dict(hub_id=s.hub_id, day=day0 + d, n=48, channel_no=ch, block=b"")
                for s in specs
                for d in range(days)
                for ch in range(2)
            ],
        )
        c.execute(
            insert(pull_log),
            [
                dict(
                    hub_id=s.hub_id,
                    seq=k + 1,
                    window_start=T0 + timedelta(minutes=30 * k),
                    started=T0 + timedelta(minutes=30 * k),
                    finished=T0 + timedelta(minutes=30 * k, seconds=2),
                    ok=1,
                    readings=6,
                    inserted=6,
                    error=None,
                )
                for s in specs
                for k in range(48 * 3)
            ],
        )
    TopologyStore(store.engine).load(fleet_topology(specs))
    log = ErrorLog(store)
    for s in specs[::20]:
        log.record_unreachable(s.hub_id, T0, "connect timeout")
    return log


async def timed_get(session: aiohttp.ClientSession, url: str, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        async with session.get(url) as r:
            assert r.status == 200, (url, r.status)
            await r.read()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


async def hold_live(base: str, clients: int, seconds: float) -> tuple[float, int]:
    """CPU seconds per wall second this process spends while ``clients`` live pages are open,
    and the events they received."""
    events = 0

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal events
        async with session.get(base + "/api/live") as r:
            async for line in r.content:
                if line.startswith(b"event: status"):
                    events += 1

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        cpu, wall = time.process_time(), time.perf_counter()
        tasks = [asyncio.create_task(one(session)) for _ in range(clients)]
        await asyncio.sleep(seconds)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return (time.process_time() - cpu) / (time.perf_counter() - wall), events


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hubs", type=int, default=2000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--db", default=None, help="a SQLAlchemy URL (default: SQLite in a temporary directory)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(args.db or f"sqlite:///{Path(tmp) / 'gdsc.sqlite'}")
        store.create_schema()
        t = time.perf_counter()
        log = fill(store, args.hubs, args.days)
        took = time.perf_counter() - t
        print(f"filled: {args.hubs} hubs, {args.days} days x 2 channels, 3 days of pulls in {took:.1f} s")
        ref = statistics.median(_timed(store.fleet_status) for _ in range(3))
        print(f"reference: Store.fleet_status() {ref * 1000:.0f} ms")

        runner = web.AppRunner(console_app(store, list, log, live_every=1.0), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        fresh = max(1.1, 5 * ref)  # the console keeps a read at least 4x as long as it took
        try:
            async with aiohttp.ClientSession() as session:
                for name, path in (
                    ("fleet page /", "/"),
                    ("hubs table, by readings", "/api/hubs?sort=readings&order=desc&q=HUB0001"),
                    ("incidents table", "/api/tables/incidents?state=all"),
                    ("hub detail", "/hubs/HUB000007"),
                    ("outage map and timeline", "/outages"),
                ):
                    await asyncio.sleep(fresh)  # past the shared snapshot's age: each page reads afresh
                    s = await timed_get(session, base + path, runs=1)
                    print(f"{name:28s} {s * 1000:7.0f} ms  ({s / ref:.2f}x the reference)")
            await asyncio.sleep(fresh)
            one_cpu, one_events = await hold_live(base, 1, args.seconds)
            many_cpu, many_events = await hold_live(base, args.clients, args.seconds)
            print(
                f"live pages open: 1 -> {one_cpu:.2f} CPU s/s ({one_events} events); "
                f"{args.clients} -> {many_cpu:.2f} CPU s/s ({many_events} events); "
                f"ratio {many_cpu / max(one_cpu, 1e-9):.2f} (1.0: the pages share one read)"
            )
        finally:
            await runner.cleanup()
            store.close()


def _timed(fn: object) -> float:
    t = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t


if __name__ == "__main__":
    asyncio.run(main())
