"""Benchmark: one Smart Hub with 100 meters of mixed protocols at their real reporting rates,
in real time. Prints the hub process's memory (RSS) and CPU, and the time from a frame
arriving at the hub to its reading being visible in the data mirror (issue 4 goals:
RSS ≤ 64 MB, arrival → mirror ≤ 1 s).

Meters: 1 DSMR P1 meter (a telegram every second, electricity + gas = 2 meters), 60 wireless
M-Bus meters (a frame every 30 s, AES mode 5), 20 wired M-Bus meters (polled every 5 min),
11 ZigBee meters (a report every 30 s), 4 DLMS/COSEM meters (encrypted, polled every minute),
3 IEC 62056-21 meters (polled every 5 min): 101 meters. The hub also runs its WAN server (idle),
diagnostics and encrypted history, as in the field.

Reference measured in the same run: the RSS of a bare Python interpreter that has imported
the same packages (what any hub written in Python pays before it holds a single meter).

    .venv/bin/python bench/hub.py [--seconds 330]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

GOAL_RSS_MB = 64.0
GOAL_LATENCY_S = 1.0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def child(seconds: float) -> dict[str, float]:
    from smarthub.clock import SystemClock
    from smarthub.gdsc.pki import CertificateAuthority, Role
    from smarthub.han.wmbus_port import WMBusPort
    from smarthub.hub.diagnostics import Diagnostics, DiagnosticsLog
    from smarthub.hub.history import HistoryStore
    from smarthub.hub.hub import SmartHub
    from smarthub.meters.dlms.security import SecurityKeys
    from smarthub.sim import rigs
    from smarthub.sim.load_profile import HouseholdProfile
    from smarthub.wan.server import HubWanServer
    from smarthub.wan.tls import server_context

    tmp = Path(tempfile.mkdtemp(prefix="smarthub-bench-hub-"))
    clock = SystemClock()
    now = clock.now()
    start = now.replace(microsecond=0) + timedelta(seconds=1)
    history = HistoryStore(tmp / "history.sqlite")
    log = DiagnosticsLog.beside(history.path)
    hub = SmartHub("BENCH", history, clock=clock, diagnostics=Diagnostics(log))
    latencies: list[float] = []
    accept = hub.accept

    def timed_accept(batch, received=None, *, port="han"):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        out = accept(batch, received, port=port)
        latencies.append(time.perf_counter() - t0)
        return out

    hub.accept = timed_accept  # type: ignore[method-assign]

    def key(i: int) -> bytes:
        return hashlib.sha256(f"bench/{i}".encode()).digest()[:16]

    loops = []
    p = HouseholdProfile(1)
    loops += rigs.dsmr_rig(hub, clock, start, p, "E00000000001", "G00000000001", timedelta(seconds=1)).loops
    radio = hub.attach(WMBusPort("wmbus", tz=p.tz))
    assert isinstance(radio, WMBusPort)
    for i in range(60):
        medium = "gas" if i % 2 else "water"
        loops += rigs.wmbus_rig(
            hub,
            clock,
            start,
            HouseholdProfile(100 + i),
            radio,
            10000000 + i,
            medium,
            key(i),
            mode=5,
            period=timedelta(seconds=30),
        ).loops
    for i in range(20):
        loops += rigs.mbus_rig(
            hub, clock, start, HouseholdProfile(200 + i), 1 + i, 20000000 + i, "water", timedelta(minutes=5)
        ).loops
    for i in range(11):
        eui = f"00:0d:6f:00:00:00:{i:02x}"
        loops += rigs.zigbee_rig(
            hub, clock, start, HouseholdProfile(300 + i), eui + ":01", eui + ":02", timedelta(seconds=30)
        ).loops[:1]
    for i in range(4):
        title = b"LGZ" + (0x50000000 + i).to_bytes(5, "big")
        loops += rigs.dlms_rig(
            hub,
            clock,
            start,
            HouseholdProfile(400 + i),
            title,
            SecurityKeys(key(1000 + i), key(2000 + i)),
            timedelta(minutes=1),
        ).loops
    for i in range(3):
        loops += rigs.iec_rig(
            hub, clock, start, HouseholdProfile(500 + i), f"{80000000 + i:08d}", timedelta(minutes=5)
        ).loops

    ca = CertificateAuthority.create("bench CA", now)
    ca.save(tmp / "ca")
    ca.issue(Role.HUB, "BENCH", now, hosts=("127.0.0.1",)).save(tmp, "hub")
    server = HubWanServer("BENCH", "0" * 40, hub, lambda: int(clock.now().timestamp()), events=log)
    await server.start(
        "127.0.0.1", 0, server_context(tmp / "hub.pem", tmp / "hub.key", tmp / "ca" / "ca.pem")
    )

    meters = len(hub.mirror.meters())
    until = start + timedelta(seconds=seconds)
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.gather(*(loop.run(until) for loop in loops))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    await server.stop()
    lat = sorted(latencies)
    return {
        "meters": float(len(hub.mirror.meters()) or meters),
        "frames": float(len(lat)),
        "rss_mb": rss_mb(),
        "cpu_percent": 100 * cpu / wall,
        "latency_p50_ms": 1000 * statistics.median(lat) if lat else float("nan"),
        "latency_p99_ms": 1000 * lat[int(0.99 * (len(lat) - 1))] if lat else float("nan"),
        "latency_max_ms": 1000 * lat[-1] if lat else float("nan"),
        "wall_s": wall,
    }


def reference_rss() -> float:
    code = (
        "import aiohttp, cryptography, envoy_schema, sqlalchemy, lxml, smarthub.hub.hub, smarthub.wan.server;"
        "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS:')) / 1024)"
    )
    return float(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    # Long enough for every meter to report at least once (the slowest are polled every 5 min).
    ap.add_argument("--seconds", type=float, default=330.0)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args.seconds))))
        return
    print(f"running a hub with about 100 meters in real time for {args.seconds:.0f} s ...", flush=True)
    out = subprocess.run(
        [sys.executable, __file__, "--child", "--seconds", str(args.seconds)],
        capture_output=True,
        text=True,
        check=True,
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    ref = reference_rss()
    print(f"meters in the mirror      {r['meters']:.0f}")
    print(f"frames/cycles processed   {r['frames']:.0f} in {r['wall_s']:.0f} s")
    verdict = "met" if r["rss_mb"] <= GOAL_RSS_MB else "NOT met"
    print(f"RSS                       {r['rss_mb']:.1f} MB (goal ≤ {GOAL_RSS_MB:.0f} MB: {verdict})")
    print(
        f"reference: bare Python + the same imports {ref:.1f} MB; hub / reference = {r['rss_mb'] / ref:.2f}"
    )
    print(f"CPU                       {r['cpu_percent']:.1f} % of one core")
    print(
        f"arrival → mirror          p50 {r['latency_p50_ms']:.2f} ms, p99 {r['latency_p99_ms']:.2f} ms, "
        f"max {r['latency_max_ms']:.2f} ms (goal ≤ {GOAL_LATENCY_S * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    main()
