"""Benchmark: the data services API's latency while a bulk pull window runs at full speed (issue 8).

The GDSC store on PostgreSQL (SQLite if it does not answer; the output says so). N simulated hubs
in P hub processes (bench/pull.py's: real :class:`HubWanServer` over mutual TLS, one day of
electricity + gas half-hours each). The data services API (:func:`smarthub.gdsc.api.app.create_app`:
bearer token, access policy, audit chain, store reads) is served by uvicorn in its own process,
and a supplier client process sends realistic reads with a few requests in flight: one
premises' day of half-hours, or its day total, electricity or gas, under the supplier's
half-hourly consent.

1. **preload**: a first pull of 10% of the hubs gives the API's premises their data;
2. **reference**: the client alone for ``--reference-seconds`` (no pull running);
3. **under load**: the same client while one collector pulls the other 90% of the hubs as fast
   as it can (``--concurrency`` pulls in flight).

Printed: API p50/p99/max latency and request rate in both phases, and the pull rate achieved
during the loaded phase.

    .venv/bin/python bench/api_load.py --hubs 2000 [--processes 2] [--users 4] [--db URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pull  # bench/pull.py: hub processes, the DaySource, the pull pass

SUPPLIER = "S1"
SINCE = datetime(2026, 1, 1, tzinfo=UTC)


# -- the API process --------------------------------------------------------------------------
def serve_api(state: Path, db_url: str, port: int) -> None:
    """Serve the data services API on ``port`` as ``smarthub gdsc api`` does (uvicorn, one worker,
    the slow-client guards) until terminated."""
    from smarthub.gdsc.api.serve import serve_api as serve

    serve(state, db_url, "127.0.0.1", port)


# -- the client process -----------------------------------------------------------------------
async def supplier_reads(base: str, token: str, targets: list[tuple[str, str]], users: int) -> dict[str, Any]:
    """Read until stdin closes, ``users`` requests in flight; print "ready" first. Returns the
    latencies (ms) and failures."""
    import aiohttp

    rng = random.Random(8)
    day = pull.DAY
    latencies: list[float] = []
    failures: dict[str, int] = {}
    stop = asyncio.Event()
    headers = {"Authorization": f"Bearer {token}"}

    async def user(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            premises, meter = rng.choice(targets)
            granularity = "half-hourly" if rng.random() < 0.7 else "daily"
            params = {
                "meter_id": meter,
                "obis": "1-0:1.8.0" if meter.startswith("E") else "7-0:3.0.0",
                "start": day.isoformat(),
                "end": (day + timedelta(days=1)).isoformat(),
                "granularity": granularity,
            }
            t0 = time.perf_counter()
            try:
                async with session.get(f"{base}/v1/premises/{premises}/readings", params=params) as r:
                    body = await r.json()
                    ok = r.status == 200 and len(body["readings"]) == (
                        48 if granularity == "half-hourly" else 1
                    )
                    key = "" if ok else f"HTTP {r.status}: {str(body)[:120]}"
            except (aiohttp.ClientError, OSError, ValueError) as err:
                key = f"{type(err).__name__}: {err}"
            latencies.append((time.perf_counter() - t0) * 1000)
            if key:
                failures[key] = failures.get(key, 0) + 1

    async with aiohttp.ClientSession(headers=headers) as session:
        tasks = [asyncio.create_task(user(session)) for _ in range(users)]
        print("ready", flush=True)
        t0 = time.perf_counter()
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        stop.set()
        await asyncio.gather(*tasks)
        seconds = time.perf_counter() - t0
    return {"latencies": latencies, "failures": failures, "seconds": seconds}


# -- the run ----------------------------------------------------------------------------------
@dataclass
class Phase:
    name: str
    requests: int
    seconds: float
    p50: float
    p99: float
    max: float
    failures: dict[str, int]

    @classmethod
    def of(cls, name: str, out: dict[str, Any]) -> Phase:
        lat = sorted(out["latencies"])
        if not lat:
            return cls(name, 0, out["seconds"], float("nan"), float("nan"), float("nan"), out["failures"])
        q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else [lat[0]] * 99
        return cls(name, len(lat), out["seconds"], q[49], q[98], lat[-1], out["failures"])

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API did not answer at {url} within {seconds:.0f} s") from None
            time.sleep(0.2)


def _client_phase(
    base: str, token: str, targets: list[tuple[str, str]], users: int, during: Any
) -> dict[str, Any]:
    """Run the client process while ``during()`` runs (in this process); its results."""
    p = subprocess.Popen(
        [sys.executable, __file__, "--client", base, token, str(users), json.dumps(targets)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdin is not None and p.stdout is not None
    try:
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError("the API client died while starting")
        during()
        p.stdin.close()
        out: dict[str, Any] = json.loads(p.stdout.read())
        return out
    finally:
        if p.poll() is None:
            p.wait(timeout=60)


def run(a: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from smarthub.gdsc.api.auth.tokens import issue_token
    from smarthub.gdsc.governance.parties import (
        Consent,
        Fuel,
        Granularity,
        Party,
        PartyRepository,
        Role,
        SupplyPeriod,
        Tenancy,
    )
    from smarthub.sim.fleet import home_specs, provision

    console = Console(stderr=True)
    pull._raise_fd_limit()
    state = a.state or Path(os.environ.get("TMPDIR", "/tmp")) / "smarthub-bench-pull"
    specs = home_specs(a.hubs, seed=5)
    provision(state, specs, datetime.now(UTC))

    schema, db_note, db_url = None, "", a.db
    if db_url is None:
        made = pull.bench_schema("bench_api")
        if made is not None:
            schema, db_url = made
        else:
            db_url = f"sqlite:///{state / f'gdsc-api-{uuid.uuid4().hex[:8]}.sqlite'}"
            db_note = f" (PostgreSQL did not answer at {pull.PG_URL}: fell back to SQLite)"
    procs: list[subprocess.Popen[str]] = []
    api: subprocess.Popen[str] | None = None
    gdsc = None
    try:
        console.print(f"starting {a.hubs} hubs in {a.processes} processes …")
        pull.start_hubs(state, specs, a.processes, procs)
        gdsc = pull.build_gdsc(state, db_url)  # the GDSC `smarthub gdsc` runs
        store = gdsc.store
        records = store.active_hubs()

        # The supplier of every home; the preloaded homes opted in to half-hourly reads.
        preload = max(1, a.hubs // 10)
        repo = PartyRepository(store.engine)
        repo.add_party(Party(SUPPLIER, Role.SUPPLIER))
        targets: list[tuple[str, str]] = []
        for s in specs[:preload]:
            consumer, tenancy = f"C{s.premises_id}", f"T{s.premises_id}"
            repo.add_party(Party(consumer, Role.CONSUMER))
            repo.add_tenancy(Tenancy(tenancy, s.premises_id, consumer, SINCE))
            for fuel in (Fuel.ELECTRICITY, Fuel.GAS):
                repo.add_supply_period(SupplyPeriod(s.premises_id, fuel, SUPPLIER, SINCE))
            repo.grant_consent(
                Consent(
                    f"K{s.premises_id}",
                    SUPPLIER,
                    s.premises_id,
                    tenancy,
                    frozenset({"readings"}),  # type: ignore[arg-type]
                    Granularity.HALF_HOURLY,
                    "settlement and time-of-use billing",
                    SINCE,
                    datetime(2099, 1, 1, tzinfo=UTC),
                )
            )
            targets += [(s.premises_id, m) for m in pull.meters_of(s.hub_id)]

        token = issue_token(db_url, SUPPLIER, datetime.now(UTC))
        port = _free_port()
        api = subprocess.Popen([sys.executable, __file__, "--api", str(state), db_url, str(port)], text=True)
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/openapi.json")
        pids = [p.pid for p in procs]

        async def window(name: str, hubs: list[Any]) -> pull.PassResult:
            assert gdsc is not None
            collector = await gdsc.replace_collector()  # a fresh one of the GDSC's (cold TLS sessions)
            progress = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            )
            progress.start()
            try:
                return await pull._pass(name, collector, hubs, a.concurrency, progress, pids)
            finally:
                progress.stop()
                await collector.close()

        loaded_pass: list[pull.PassResult] = []
        preload_pass = asyncio.run(window("preload (the API's premises)", records[:preload]))
        console.print(f"reference: the API alone for {a.reference_seconds:g} s …")
        reference = Phase.of(
            "reference (no pull running)",
            _client_phase(base, token, targets, a.users, lambda: time.sleep(a.reference_seconds)),
        )
        loaded = Phase.of(
            "under the bulk pull window",
            _client_phase(
                base,
                token,
                targets,
                a.users,
                lambda: loaded_pass.append(asyncio.run(window("bulk pull window", records[preload:]))),
            ),
        )
        bulk = loaded_pass[0]
        stored, duplicates = store.count_readings(), store.duplicate_keys()
    finally:
        if api is not None:
            api.terminate()
            api.wait(timeout=30)
        for p in procs:
            if p.stdin is not None:
                p.stdin.close()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        if gdsc is not None:
            gdsc.store.close()
        if schema is not None:
            pull.drop_schema(schema)

    print(
        f"bench/api_load.py: {a.hubs} hubs in {a.processes} hub processes, one collector, API on"
        f" uvicorn (1 process), {a.users} supplier requests in flight, {os.cpu_count()} cores,"
        f" store {store.dialect}{db_note}"
    )
    print(
        f"  preload: {preload_pass.pulled} hubs pulled ({preload_pass.failed} failed)"
        f" in {preload_pass.seconds:.2f} s"
    )
    for ph in (reference, loaded):
        print(
            f"  API {ph.name:28}: {ph.requests} requests in {ph.seconds:.1f} s ({ph.rate:,.0f}/s), "
            f"p50 {ph.p50:.1f} ms, p99 {ph.p99:.1f} ms, max {ph.max:.1f} ms,"
            f" failed {sum(ph.failures.values())}"
        )
        for k, n in list(ph.failures.items())[:3]:
            print(f"    {n}× {k}")
    print(
        f"  pull rate meanwhile: {bulk.pulled} hubs ({bulk.failed} failed) in {bulk.seconds:.2f} s: "
        f"{bulk.hubs_per_s:,.0f} hubs/s, {bulk.readings / bulk.seconds:,.0f} readings/s ingested"
    )
    print(
        f"  under load vs reference: p50 ×{loaded.p50 / reference.p50:.1f},"
        f" p99 ×{loaded.p99 / reference.p99:.1f}; "
        f"stored {stored} readings (expected {a.hubs * 96}), duplicate keys {duplicates}"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--api":
        serve_api(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        targets = [tuple(t) for t in json.loads(sys.argv[5])]
        out = asyncio.run(supplier_reads(sys.argv[2], sys.argv[3], targets, int(sys.argv[4])))  # type: ignore[arg-type]
        print(json.dumps(out), flush=True)
        return
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--hubs", type=int, default=2000)
    ap.add_argument("--processes", type=int, default=2, help="hub processes")
    ap.add_argument("--concurrency", type=int, default=128, help="pulls in flight")
    ap.add_argument("--users", type=int, default=4, help="API requests in flight")
    ap.add_argument("--reference-seconds", type=float, default=5.0)
    ap.add_argument("--db", default=None, help="store URL (default: PostgreSQL at 127.0.0.1, else SQLite)")
    ap.add_argument("--state", type=Path, default=None, help="certificates (reused between runs)")
    run(ap.parse_args())


if __name__ == "__main__":
    main()
