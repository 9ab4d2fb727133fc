"""Benchmark: a primary substation trips and ``--hubs`` hubs send their last gasp within
``--spread`` seconds, into the GDSC's real UDP alert endpoint (:mod:`smarthub.gdsc.outages`).

Every hub has its own P-256 key, registered as the GDSC registers a commissioned hub's alert key;
the datagrams are signed beforehand (the hubs' work, not the GDSC's) and sent over loopback,
paced evenly over the spread. The GDSC side is what ``smarthub gdsc --alerts`` runs: token
buckets, the bounded queue, batch signature verification, each alert stored once, correlation
over the topology (feeders of 40 homes, 8 feeders per secondary, 20 secondaries per primary).

Prints: alerts received, accepted, stored and refused (nothing may be lost: sent = stored, no
refusal); alerts/s accepted; seconds from the first datagram to the one correlated outage (the
live list holds exactly one outage, at the primary); peak memory; the data services API's p99
(``GET /v1/outages``, the network operator's call) during the storm against the same call
before it; and, as the reference measured in the same run, ECDSA P-256 verifications per second
on one core (verification is the endpoint's irreducible cost per alert), with the ratio.

    .venv/bin/python bench/alert_storm.py [--hubs 50000] [--spread 10] [--db URL]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from smarthub.clock import SystemClock
from smarthub.gdsc.api.app import create_app
from smarthub.gdsc.api.auth.tokens import TokenStore
from smarthub.gdsc.fleet.registry import hubs, premises
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.gdsc.governance.parties import Party, PartyRepository, Role
from smarthub.gdsc.outages.service import OutageService
from smarthub.gdsc.outages.store import alert_keys
from smarthub.gdsc.outages.topology import Node, Place, TopologyFile, TopologyStore
from smarthub.gdsc.store import Store
from smarthub.wan.contract.alerts import Alert, AlertKind, Cause, decode, sign, verify

FEEDER, FEEDERS_PER_SECONDARY, SECONDARIES_PER_PRIMARY = 40, 8, 20


def topology(n: int) -> TopologyFile:
    """One primary (the one that trips) over secondaries, feeders of 40 homes."""
    out = TopologyFile()
    out.nodes["PRI-0"] = Node("PRI-0", "primary")
    for i in range(n):
        f = i // FEEDER
        s = f // FEEDERS_PER_SECONDARY
        sec, fee = f"SS-{s:04d}", f"LV-{f:05d}"
        out.nodes.setdefault(sec, Node(sec, "secondary", "PRI-0"))
        out.nodes.setdefault(fee, Node(fee, "feeder", sec))
        out.places[f"P{i:06d}"] = Place(f"P{i:06d}", fee, ("L1", "L2", "L3")[i % 3])
    return out


def register(store: Store, keys: list[ec.EllipticCurvePrivateKey]) -> None:
    """The hubs, and their alert keys as commissioning writes them (bulk: setting up is not measured)."""
    ids = [f"H{i:06d}" for i in range(len(keys))]
    spki = [
        k.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        for k in keys
    ]
    with store.engine.begin() as conn:
        conn.execute(
            premises.insert(), [{"premises_id": f"P{i:06d}", "address": ""} for i in range(len(ids))]
        )
        conn.execute(
            hubs.insert(),
            [
                {"hub_id": h, "premises_id": f"P{i:06d}", "url": "https://x", "lfdi": "A" * 40}
                for i, h in enumerate(ids)
            ],
        )
        conn.execute(
            alert_keys.insert(),
            [{"hub_id": h, "lfdi": "A" * 40, "public_key": s} for h, s in zip(ids, spki, strict=True)],
        )


def reference_verifies(datagrams: list[bytes], key_of: dict[str, ec.EllipticCurvePublicKey]) -> float:
    """ECDSA P-256 verifications per second on one thread (the endpoint's floor per alert)."""
    sample = datagrams[: min(len(datagrams), 3000)]
    parsed = [decode(d) for d in sample]
    t0 = time.perf_counter()
    for alert, body, sig in parsed:
        assert verify(body, sig, key_of[alert.hub_id])
    return len(parsed) / (time.perf_counter() - t0)


def p99(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=100)[98] if len(xs) >= 2 else (xs[0] if xs else float("nan"))


def api_latencies(client: TestClient, token: str, stop: threading.Event, out: list[float]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    while not stop.is_set():
        t0 = time.perf_counter()
        r = client.get("/v1/outages", params={"live": "true"}, headers=headers)
        out.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.text
        time.sleep(0.02)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hubs", type=int, default=50_000)
    ap.add_argument("--spread", type=float, default=10.0, help="seconds over which the last gasps arrive")
    ap.add_argument("--db", default=None, help="database URL (default: SQLite in a temporary directory)")
    args = ap.parse_args()
    n = args.hubs
    tmp = Path(tempfile.mkdtemp(prefix="alert_storm_"))
    store = Store(args.db or f"sqlite:///{tmp / 'gdsc.sqlite'}")
    store.create_schema()

    t0 = time.perf_counter()
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(n)]
    register(store, keys)
    TopologyStore(store.engine).load(topology(n))
    now = datetime.now(UTC)
    datagrams = [
        sign(
            Alert(AlertKind.LAST_GASP, f"H{i:06d}", 1, now, now - timedelta(seconds=1), 0, Cause.HUB_SUPPLY),
            k,
        )
        for i, k in enumerate(keys)
    ]
    key_of = {f"H{i:06d}": k.public_key() for i, k in enumerate(keys)}
    print(f"setup: {n} hubs, keys, topology and signed datagrams in {time.perf_counter() - t0:.1f} s")

    reference = reference_verifies(datagrams, key_of)
    # The datagrams were signed up to a minute ago: within the contract's ±10 min freshness.
    svc = OutageService(store.engine, SystemClock())
    port = await svc.start("127.0.0.1", 0)
    parties = PartyRepository(store.engine)
    parties.add_party(Party("DNO", Role.OPERATOR))  # sees every outage (no area filter cost)
    token = TokenStore(store.engine).issue("DNO", datetime.now(UTC))
    client = TestClient(
        create_app(AccessGuard(parties, AuditLog(store.engine), SystemClock()), TokenStore(store.engine))
    )

    quiet: list[float] = []
    stop = threading.Event()
    probe = threading.Thread(target=api_latencies, args=(client, token, stop, quiet))
    probe.start()
    await asyncio.sleep(3.0)
    stop.set()
    probe.join()

    during: list[float] = []
    stop = threading.Event()
    probe = threading.Thread(target=api_latencies, args=(client, token, stop, during))
    probe.start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    correlated_at: list[float] = []

    def watch(_changes: object) -> None:
        if not correlated_at and [o.level for o in svc.correlator.live()] == ["primary"]:
            correlated_at.append(time.perf_counter())

    svc.on_change.append(watch)
    start = time.perf_counter()
    per_ms = n / (args.spread * 1000)
    sent = 0
    while sent < n:
        due = min(n, int((time.perf_counter() - start) * 1000 * per_ms) + 1)
        while sent < due:
            sock.sendto(datagrams[sent], ("127.0.0.1", port))
            sent += 1
        await asyncio.sleep(0.001)
    send_s = time.perf_counter() - start
    deadline = time.perf_counter() + 120
    while svc.receiver.stats.received < n and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    await svc.receiver.drain()
    done = time.perf_counter()
    stop.set()
    probe.join()
    stats = svc.receiver.stats
    stored = svc.store.count_alerts()
    live = svc.correlator.live()
    await svc.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    rate = stats.accepted / (done - start)
    print(f"sent {n} last gasps in {send_s:.1f} s over UDP loopback ({n / send_s:,.0f}/s offered)")
    print(
        f"received {stats.received}, accepted {stats.accepted}, stored {stored}, "
        f"refused {dict(stats.refused) or 0}, lost in the socket {n - stats.received}"
    )
    print(f"alerts accepted per second (first datagram to last stored): {rate:,.0f}")
    print(f"endpoint worker busy {svc.receiver.process_seconds:.1f} s in {stats.batches} batches")
    if correlated_at:
        print(
            f"one correlated outage (the primary) {correlated_at[0] - start:.2f} s after the first datagram"
        )
    print(f"live outages at the end: {[(o.level, o.location, o.customers, len(o.premises)) for o in live]}")
    print(f"peak memory (RSS): {rss_mb:,.0f} MB")
    print(
        f"API GET /v1/outages p99: {p99(during) * 1000:.1f} ms during the storm ({len(during)} calls), "
        f"{p99(quiet) * 1000:.1f} ms before it ({len(quiet)} calls); ratio {p99(during) / p99(quiet):.2f}"
    )
    print(
        f"reference: {reference:,.0f} ECDSA P-256 verifications/s on one thread; "
        f"endpoint / reference = {rate / reference:.2f}"
    )
    ok = stored == n and not stats.refused and len(live) == 1 and live[0].level == "primary"
    print("nothing lost, one outage" if ok else "FAILED: alerts lost or not one outage")
    store.close()
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())
