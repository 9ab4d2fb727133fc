"""Benchmark: one collector pulling N hubs over real mutual TLS on loopback (issue 5).

N simulated hubs run in P hub processes, each hub a real :class:`HubWanServer` on its own port
with its own GDSC-issued certificate (provisioned by :func:`smarthub.sim.fleet.provision`) and a
:class:`MeteringSource` holding one day of electricity + gas half-hourly readings (96 readings).
One collector (this process) pulls them all with the real :class:`Collector` into PostgreSQL
(SQLite if PostgreSQL does not answer; the output says which).

Two passes: **cold** (the daily pull: no cached TLS session, no hub seen before, full handshakes,
the day's readings) and **warm** (every hub again at once: resumed TLS sessions, nothing new).

Reference measured in the same run: this machine's raw mutual-TLS handshake rate, full and
resumed, with the same collector and hub certificates and contexts, both ends in one process
on memory BIOs (no sockets, no HTTP: the cryptographic floor of a pull). Printed with ratios,
and a projection to 30 M homes in a 4-hour window.

    .venv/bin/python bench/pull.py --hubs 1000 [--processes 2] [--concurrency 128] [--db URL]

Goals (issue 5, 2 cores): ≥ 1,000 hubs/s, ≥ 300 k readings/s, ≤ 4 bytes per stored reading.
Goals (issue 17): GDSC CPU (collector + its PostgreSQL backends) ≤ 1.5 CPU-s per 1,000 hubs cold
and ≤ 0.8 warm, one request per hub per pull, the cold pull ≥ 60 % of the full-handshake rate.
``--profile`` prints cProfile's top functions of each pass (and inflates the CPU figures).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import math
import os
import pstats
import random
import resource
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smarthub.model import ObisCode

DAY = datetime(2026, 3, 2, tzinfo=UTC)
DAY_START = int(DAY.timestamp())
IMPORT = ObisCode.parse("1-0:1.8.0")
GAS = ObisCode.parse("7-0:3.0.0")
HOMES_UK = 30_000_000
WINDOW_S = 4 * 3600
PG_URL = os.environ.get("SMARTHUB_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
GOAL_HUBS_S, GOAL_READINGS_S, GOAL_BYTES = 1000, 300_000, 4.0
# Issue 17: the GDSC's CPU (collector + its PostgreSQL backends) per 1,000 hubs, one request per
# hub per pull, and the cold pull as a share of the same run's full-handshake rate.
GOAL_CPU_COLD, GOAL_CPU_WARM, GOAL_REQUESTS, GOAL_COLD_SHARE = 1.5, 0.8, 1.0, 0.60
# CPU of one reference full handshake (both ends) on this machine when quiet: 685/s on one core
# (README "Measured", the run the goals were set against). The CPU-s goals are expressed
# in that unit too, since absolute CPU seconds grow with the neighbours' load.
QUIET_FULL_HS_CPU = 1 / 685


@dataclass(frozen=True, slots=True)
class Row:
    start: int
    duration: int
    value: int
    quality: int


def day_rows(hub_id: str, meter: str) -> list[Row]:
    """The deterministic day a hub serves for one meter (Wh or litres per half-hour)."""
    rng = random.Random(f"{hub_id}/{meter}")
    return [Row(DAY_START + 1800 * k, 1800, rng.randrange(0, 2000), 1) for k in range(48)]


def meters_of(hub_id: str) -> dict[str, str]:
    return {f"E{hub_id}": "electricity", f"G{hub_id}": "gas"}


class DaySource:
    """A hub's MeteringSource holding one day per meter in memory (the server reads it as it
    reads the hub's history store)."""

    def __init__(self, hub_id: str) -> None:
        self._meters = meters_of(hub_id)
        self._rows = {m: day_rows(hub_id, m) for m in self._meters}
        self._obis = {m: IMPORT if f == "electricity" else GAS for m, f in self._meters.items()}

    def meters(self) -> dict[str, str]:
        return self._meters

    def channels(self, meter: str) -> list[ObisCode]:
        return [self._obis[meter]]

    def _select(self, meter: str, obis: ObisCode, start: int | None, end: int | None) -> list[Row]:
        if self._obis.get(meter) != obis:
            return []
        return [
            r
            for r in self._rows[meter]
            if (start is None or r.start >= start) and (end is None or r.start < end)
        ]

    def intervals(
        self,
        meter: str,
        obis: ObisCode,
        *,
        start: int | None = None,
        end: int | None = None,
        offset: int = 0,
        limit: int = 1000,
    ) -> Sequence[Row]:
        return self._select(meter, obis, start, end)[offset : offset + limit]

    def interval_count(
        self, meter: str, obis: ObisCode, *, start: int | None = None, end: int | None = None
    ) -> int:
        return len(self._select(meter, obis, start, end))

    def interval_days(self, meter: str, obis: ObisCode, *, start: int | None = None) -> list[int]:
        return sorted({r.start - r.start % 86400 for r in self._select(meter, obis, start, None)})


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- hub processes -----------------------------------------------------------------------------
async def serve(state: Path, hub_ids: list[str]) -> None:
    """Serve the given hubs until stdin closes; print one JSON line {hub_id: port} when ready."""
    from cryptography import x509

    from smarthub.gdsc.fleet.pki import lfdi
    from smarthub.wan.server.resources import HubWanServer
    from smarthub.wan.tls import server_context

    _raise_fd_limit()
    servers = []
    ports = {}
    for hub_id in hub_ids:
        d = state / "hubs" / hub_id
        cert = x509.load_pem_x509_certificate((d / "hub.pem").read_bytes())
        server = HubWanServer(hub_id, lfdi(cert), DaySource(hub_id), lambda: DAY_START + 86400)
        ctx = server_context(d / "hub.pem", d / "hub.key", state / "ca" / "ca.pem")
        ports[hub_id] = await server.start("127.0.0.1", 0, ctx)
        servers.append(server)
    print(json.dumps(ports), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for s in servers:
        await s.stop()


# -- the reference: raw mutual-TLS handshakes ---------------------------------------------------
def _handshake(client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, session: ssl.SSLSession | None):  # type: ignore[no-untyped-def]
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="127.0.0.1", session=session)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done_c = done_s = False
    while not (done_c and done_s):
        if not done_c:
            try:
                client.do_handshake()
                done_c = True
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        if not done_s:
            try:
                server.do_handshake()
                done_s = True
            except ssl.SSLWantReadError:
                pass
        c_in.write(s_out.read())
    # TLS 1.3 tickets follow the handshake: one application round trip delivers them.
    client.write(b"x")
    s_in.write(c_out.read())
    server.read(1)
    server.write(b"y")
    c_in.write(s_out.read())
    client.read(1)
    return client


def handshake_rates(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, seconds: float = 1.5
) -> tuple[float, float, str, float, float]:
    """(full/s, resumed/s, TLS version, CPU seconds per full and per resumed handshake): client
    and server both run here, as in the bench. The rates are wall-clock, the CPU seconds this
    thread's: on a loaded machine both slow down, the CPU figure by contention alone."""
    first = _handshake(client_ctx, server_ctx, None)
    session = first.session
    rates, cpu = [], []
    for resume in (False, True):
        n, t0, c0 = 0, time.perf_counter(), time.thread_time()
        while time.perf_counter() - t0 < seconds:
            c = _handshake(client_ctx, server_ctx, session if resume else None)
            if resume and not c.session_reused:
                raise RuntimeError("the reference handshake did not resume")
            n += 1
        rates.append(n / (time.perf_counter() - t0))
        cpu.append((time.thread_time() - c0) / n)
    return rates[0], rates[1], str(first.version()), cpu[0], cpu[1]


# -- the collector side -------------------------------------------------------------------------
@dataclass
class PassResult:
    name: str
    seconds: float
    pulled: int
    failed: int
    readings: int
    resumed: int
    requests: int
    body_bytes: int
    cpu_seconds: float
    hub_cpu_seconds: float = 0.0  # all hub processes together
    db_cpu_seconds: float | None = None  # the collector's PostgreSQL backends (None: not measured)
    store_busy_seconds: float = 0.0  # the collector's serial storage writes
    profile: str = ""  # cProfile's top functions (``--profile``; its overhead inflates the CPU figures)
    errors: list[str] = field(default_factory=list)

    @property
    def hubs_per_s(self) -> float:
        return self.pulled / self.seconds if self.seconds else 0.0

    @property
    def gdsc_cpu_seconds(self) -> float:
        """The GDSC's whole CPU for this pass: the collector process and its database backends."""
        return self.cpu_seconds + (self.db_cpu_seconds or 0.0)


@dataclass
class Report:
    hubs: int
    processes: int
    db: str
    db_note: str
    passes: list[PassResult]
    stored: int
    duplicates: int
    bytes_per_reading: float
    full_hs: float
    resumed_hs: float
    tls_version: str
    per_hub: dict[str, int]
    full_hs_cpu: float = 0.0  # CPU seconds of one reference handshake, both ends
    resumed_hs_cpu: float = 0.0


def start_hubs(state: Path, specs: list[Any], processes: int, procs: list[subprocess.Popen[str]]) -> None:
    """Serve ``specs``' hubs from ``processes`` processes of this script (appended to ``procs``
    as they start, so the caller stops them whatever happens) and write the commissioning
    manifest (``fleet.json``) the GDSC registers them from."""
    hub_ids = [s.hub_id for s in specs]
    for i in range(processes):
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "--serve", str(state), *hub_ids[i::processes]],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    ports: dict[str, int] = {}
    for p in procs:
        assert p.stdout is not None
        line = p.stdout.readline()
        if not line:
            raise RuntimeError("a hub process died while starting")
        ports.update(json.loads(line))

    from cryptography import x509

    from smarthub.gdsc.fleet.pki import lfdi

    hubs = [
        {
            "hub_id": s.hub_id,
            "premises_id": s.premises_id,
            "url": f"https://127.0.0.1:{ports[s.hub_id]}",
            "lfdi": lfdi(
                x509.load_pem_x509_certificate((state / "hubs" / s.hub_id / "hub.pem").read_bytes())
            ),
            "meters": [list(m) for m in meters_of(s.hub_id).items()],
        }
        for s in specs
    ]
    (state / "fleet.json").write_text(json.dumps({"hubs": hubs}))


def build_gdsc(state: Path, db_url: str) -> Any:
    """The GDSC ``smarthub gdsc`` runs (its composition root), over the bench's state and store.
    The hubs' event pulls are off: the passes measure the bulk pull alone."""
    from smarthub.clock import SystemClock
    from smarthub.gdsc.service import GdscConfig, GdscService

    return GdscService.build(GdscConfig(state, db_url, events_every=None), SystemClock())


def _pg_url() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_URL.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3):
            return PG_URL
    except Exception:  # any failure: PostgreSQL is not there; the report says so
        return None


def bench_schema(prefix: str) -> tuple[str, str] | None:
    """A fresh PostgreSQL schema for one bench run and a URL whose search_path (and application
    name, to find its backends) is that schema; None when PostgreSQL does not answer."""
    pg = _pg_url()
    if pg is None:
        return None
    import psycopg

    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    return schema, f"{pg}?options=-csearch_path%3D{schema}&application_name={schema}"


def drop_schema(schema: str) -> None:
    """Drop a schema :func:`bench_schema` made, with everything in it."""
    import psycopg

    with psycopg.connect(PG_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
        c.execute(f"DROP SCHEMA {schema} CASCADE")


def _bytes_per_reading(store: Any, count: int) -> float:
    """Interval blocks with their indexes and partitions, per stored reading (what bench/store.py
    reports too; the channel and hub-key rows are printed separately, they amortise over years)."""
    return float(store.table_bytes(["interval_blocks"])) / count if count else float("nan")


def _cpu_of(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (Linux /proc)."""
    return sum(_cpu_by_pid(pids).values())


def _cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each of these processes still alive (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone, or PostgreSQL runs on another host
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return out


class DbBackends:
    """CPU of the PostgreSQL backends serving the collector (found by application_name), so
    the GDSC's cost per hub includes its database when both run on this machine. A backend
    that ends within a pass loses its share (the store's pool keeps its connections open)."""

    def __init__(self, conninfo: str, application_name: str) -> None:
        self.conninfo = conninfo
        self.application_name = application_name

    def pids(self) -> list[int]:
        import psycopg

        with psycopg.connect(self.conninfo, autocommit=True) as c:
            rows = c.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (self.application_name,)
            ).fetchall()
        return [int(r[0]) for r in rows]

    def snapshot(self) -> dict[int, float]:
        return _cpu_by_pid(self.pids())


def _db_cpu(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


class Profiles:
    """cProfile of the collector's whole work in a pass: the event loop's thread and the worker
    threads its storage writes and cursor reads hop to (cProfile follows one thread only), each
    timed by its thread's CPU clock: on a loaded machine wall time would charge a function with
    the time others ran, and a thread waiting for PostgreSQL with the wait.
    The wrapped store calls are those of ``Collector.writes`` and ``Collector.cursor_reads``."""

    def __init__(self, collector: Any) -> None:
        self.loop = cProfile.Profile(time.thread_time)
        self._threads: list[cProfile.Profile] = []
        self._local = threading.local()
        w, r = collector.writes, collector.cursor_reads
        w.write_ingests, w.write_logs = self._wrap(w.write_ingests), self._wrap(w.write_logs)
        r.read = self._wrap(r.read)
        self.active = False

    def _wrap(self, fn: Any) -> Any:
        def profiled(*args: Any) -> Any:
            if not self.active:
                return fn(*args)
            prof = getattr(self._local, "prof", None)
            if prof is None:
                prof = self._local.prof = cProfile.Profile(time.thread_time)
                self._threads.append(prof)
            prof.enable()
            try:
                return fn(*args)
            finally:
                prof.disable()

        return profiled

    def start(self) -> None:
        self.active = True
        self.loop.enable()

    def stop(self, top: int = 22) -> str:
        """The pass's top functions by own time, both threads together; then resets."""
        self.loop.disable()
        self.active = False
        out = io.StringIO()
        stats = pstats.Stats(self.loop, stream=out)
        for prof in self._threads:
            stats.add(prof)
        stats.sort_stats("tottime").print_stats(top)
        self.loop = cProfile.Profile(time.thread_time)
        self._threads.clear()
        self._local = threading.local()
        return out.getvalue()


async def _pass(
    name: str,
    collector: Any,
    hubs: list[Any],
    concurrency: int,
    progress: Any,
    hub_pids: list[int],
    db: DbBackends | None = None,
    profiles: Profiles | None = None,
) -> PassResult:
    sem = asyncio.Semaphore(concurrency)
    res = PassResult(name, 0.0, 0, 0, 0, 0, 0, 0, 0.0)
    task = progress.add_task(f"{name} pass", total=len(hubs)) if progress else None

    async def one(hub: Any) -> None:
        async with sem:
            out = await collector.pull(hub, DAY)
        if out.ok:
            res.pulled += 1
            res.readings += out.readings
            res.resumed += int(out.resumed)
            res.requests += out.requests
            res.body_bytes += out.body_bytes
        else:
            res.failed += 1
            res.errors.append(f"{hub.hub_id}: {out.error}")
        if progress is not None:
            progress.update(task, advance=1)

    busy0 = collector.writes.busy_seconds
    db0 = db.snapshot() if db is not None else {}
    hub0, cpu0, t0 = _cpu_of(hub_pids), time.process_time(), time.perf_counter()
    if profiles is not None:
        profiles.start()
    await asyncio.gather(*(one(h) for h in hubs))
    res.seconds = time.perf_counter() - t0
    if profiles is not None:
        res.profile = profiles.stop()
    res.cpu_seconds = time.process_time() - cpu0
    res.hub_cpu_seconds = _cpu_of(hub_pids) - hub0
    if db is not None:
        res.db_cpu_seconds = _db_cpu(db0, db.snapshot())
    res.store_busy_seconds = collector.writes.busy_seconds - busy0
    return res


def run(
    hubs: int,
    processes: int = 2,
    concurrency: int = 128,
    db_url: str | None = None,
    state: Path | None = None,
    show_progress: bool = True,
    reference_seconds: float = 1.5,
    profile: bool = False,
) -> Report:
    """Provision, start the hub processes, pull every hub twice, measure; returns the figures."""
    from smarthub.gdsc.service import settle_gc
    from smarthub.sim.fleet import home_specs, provision
    from smarthub.wan.tls import server_context

    _raise_fd_limit()
    state = state or Path(os.environ.get("TMPDIR", "/tmp")) / "smarthub-bench-pull"
    specs = home_specs(hubs, seed=5)
    creds = provision(state, specs, datetime.now(UTC))  # certificates: checked against wall time
    hub_ids = [s.hub_id for s in specs]

    schema = None
    db_note = ""
    db: DbBackends | None = None
    if db_url is None:
        made = bench_schema("bench_pull")
        if made is not None:
            schema, db_url = made
            db = DbBackends(PG_URL.replace("postgresql+psycopg://", "postgresql://"), schema)
        else:
            db_url = f"sqlite:///{state / f'gdsc-{uuid.uuid4().hex[:8]}.sqlite'}"
            db_note = f"PostgreSQL did not answer at {PG_URL}: fell back to SQLite"
    procs: list[subprocess.Popen[str]] = []
    threshold = gc.get_threshold()
    gdsc = None
    try:
        start_hubs(state, specs, processes, procs)
        gdsc = build_gdsc(state, db_url)
        # What `smarthub gdsc` does before its run loop (GdscService.run): without it the bench
        # measured GC costs the service does not pay (settle_gc says which).
        gc.collect()
        settle_gc()
        store = gdsc.store
        records = store.active_hubs()

        client_ctx = creds.collector_context()
        d0 = state / "hubs" / hub_ids[0]
        full_hs, resumed_hs, version, full_cpu, resumed_cpu = handshake_rates(
            client_ctx, server_context(d0 / "hub.pem", d0 / "hub.key", creds.ca_pem), reference_seconds
        )

        pids = [p.pid for p in procs]

        async def pull_all() -> list[PassResult]:
            collector = gdsc.collector
            profiles = Profiles(collector) if profile else None
            progress = None
            if show_progress:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

                progress = Progress(
                    "[progress.description]{task.description}",
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                )
                progress.start()
            try:
                cold = await _pass("cold", collector, records, concurrency, progress, pids, db, profiles)
                warm = await _pass("warm", collector, records, concurrency, progress, pids, db, profiles)
            finally:
                if progress is not None:
                    progress.stop()
                await collector.close()
            return [cold, warm]

        passes = asyncio.run(pull_all())
        stored = store.count_readings()
        per_hub: dict[str, int] = {}
        for r in store.readings():
            per_hub[r.hub_id] = per_hub.get(r.hub_id, 0) + 1
        report = Report(
            hubs,
            processes,
            store.dialect,
            db_note,
            passes,
            stored,
            store.duplicate_keys(),
            _bytes_per_reading(store, stored),
            full_hs,
            resumed_hs,
            version,
            {k: int(v) for k, v in per_hub.items()},
            full_cpu,
            resumed_cpu,
        )
    finally:
        for p in procs:
            if p.stdin is not None:
                p.stdin.close()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        gc.unfreeze()  # a caller in the same process (the tests) collects these again
        gc.set_threshold(*threshold)
        if gdsc is not None:
            gdsc.store.close()
        if schema is not None:
            drop_schema(schema)
    return report


def print_report(r: Report) -> None:
    cold, warm = r.passes
    cores = os.cpu_count() or 1
    print(
        f"bench/pull.py: {r.hubs} hubs in {r.processes} hub processes, one collector, {cores} cores, "
        f"store {r.db}{' (' + r.db_note + ')' if r.db_note else ''}, TLS {r.tls_version}"
    )
    for p in r.passes:
        print(
            f"  {p.name:4} pass: {p.pulled} pulled, {p.failed} failed in {p.seconds:.2f} s: "
            f"{p.hubs_per_s:,.0f} hubs/s, {p.readings / p.seconds:,.0f} readings/s ingested, "
            f"{p.requests / max(p.pulled, 1):.2f} requests/hub, "
            f"{p.body_bytes / max(p.pulled, 1):,.0f} body bytes/hub, "
            f"{p.resumed} resumed; CPU: collector {p.cpu_seconds:.2f} s, "
            f"{'' if p.db_cpu_seconds is None else f'its PostgreSQL backends {p.db_cpu_seconds:.2f} s, '}"
            f"hubs {p.hub_cpu_seconds:.2f} s; "
            f"store writes busy {p.store_busy_seconds:.2f} s"
        )
        for e in p.errors[:3]:
            print(f"    error: {e}")
    print(
        f"  stored: {r.stored} readings (expected {r.hubs * 96}), duplicate keys {r.duplicates}, "
        f"{r.bytes_per_reading:.1f} bytes per stored reading (interval blocks + indexes)"
    )
    print(
        f"  reference (same run, same certificates, both ends in-process): "
        f"{r.full_hs:,.0f} full / {r.resumed_hs:,.0f} resumed mutual-TLS handshakes/s on one core, "
        f"{r.full_hs_cpu * 1e3:.2f} / {r.resumed_hs_cpu * 1e3:.2f} ms of CPU each (both ends)"
    )
    print(
        f"  ratios: cold pull {cold.hubs_per_s / r.full_hs:.1%} of the full-handshake rate, "
        f"warm pull {warm.hubs_per_s / r.resumed_hs:.1%} of the resumed-handshake rate"
    )
    per_machine = cold.hubs_per_s * WINDOW_S
    print(
        f"  projection, 30 M homes in a 4-hour window: {HOMES_UK / WINDOW_S:,.0f} hubs/s needed; at this "
        f"run's cold rate ({cold.hubs_per_s:,.0f}/s with the hubs on the same machine) "
        f"{math.ceil(HOMES_UK / per_machine)} machines like this one"
    )
    if cold.cpu_seconds:
        per_core = cold.pulled / cold.cpu_seconds
        print(
            f"    collector alone: {per_core:,.0f} hubs per collector CPU-second → "
            f"{math.ceil(HOMES_UK / (per_core * cores * WINDOW_S))} {cores}-core collector machines "
            f"(database and hubs elsewhere)"
        )
    if cold.db_cpu_seconds is not None and cold.pulled:
        # The honest capacity figure when the hubs share the machine: what the GDSC itself spends.
        for p in r.passes:
            per_1000 = p.gdsc_cpu_seconds / p.pulled * 1000
            db_1000 = (p.db_cpu_seconds or 0.0) / p.pulled * 1000
            print(
                f"    GDSC CPU ({p.name}): {per_1000:.2f} CPU-s per 1,000 hubs (collector "
                f"{p.cpu_seconds / p.pulled * 1000:.2f} + PostgreSQL {db_1000:.2f})"
                f" → {1000 / per_1000:,.0f} hubs/s per GDSC core, {cores * 1000 / per_1000:,.0f} hubs/s "
                f"on {cores} cores without the hubs"
            )
        per_core = cold.pulled / cold.gdsc_cpu_seconds
        print(
            f"    projection from the cold GDSC CPU: 30 M homes in 4 h need "
            f"{HOMES_UK / (per_core * WINDOW_S):,.1f} GDSC cores (collector + PostgreSQL, "
            f"{math.ceil(HOMES_UK / (per_core * cores * WINDOW_S))} {cores}-core machines)"
        )
    verdict = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    print(
        f"  goals (issue 5): ≥ {GOAL_HUBS_S:,} hubs/s {verdict(cold.hubs_per_s >= GOAL_HUBS_S)}, "
        f"≥ {GOAL_READINGS_S:,} readings/s {verdict(cold.readings / cold.seconds >= GOAL_READINGS_S)}, "
        f"≤ {GOAL_BYTES:g} bytes/reading {verdict(r.bytes_per_reading <= GOAL_BYTES)}"
    )
    share = cold.hubs_per_s / r.full_hs
    goals = [
        f"cold pull ≥ {GOAL_COLD_SHARE:.0%} of the full-handshake rate: {share:.1%} "
        f"{verdict(share >= GOAL_COLD_SHARE)}"
    ]
    for p in r.passes:
        per_hub = p.requests / max(p.pulled, 1)
        goals.append(
            f"{p.name} {per_hub:.2f} requests/hub (goal {GOAL_REQUESTS:g}) "
            f"{verdict(per_hub <= GOAL_REQUESTS)}"
        )
    if cold.db_cpu_seconds is not None and cold.pulled and warm.pulled:
        for p, goal in ((cold, GOAL_CPU_COLD), (warm, GOAL_CPU_WARM)):
            per_1000 = p.gdsc_cpu_seconds / p.pulled * 1000
            goals.append(
                f"GDSC CPU {p.name} {per_1000:.2f} CPU-s/1,000 hubs (goal ≤ {goal:g}) "
                f"{verdict(per_1000 <= goal)}"
            )
        if r.full_hs_cpu:
            # Load-independent: the GDSC's CPU per hub counted in reference handshakes measured
            # in the same run (contention slows both alike); the goals in the same unit, taken
            # at the quiet machine's reference (QUIET_FULL_HS_CPU).
            units = [p.gdsc_cpu_seconds / p.pulled / r.full_hs_cpu for p in (cold, warm)]
            goal_units = [g / 1000 / QUIET_FULL_HS_CPU for g in (GOAL_CPU_COLD, GOAL_CPU_WARM)]
            goals.append(
                "in full mutual-TLS handshakes' CPU (both ends, same run) per hub: "
                + ", ".join(
                    f"{p.name} {u:.2f} (goal ≤ {g:.2f}) {verdict(u <= g)}"
                    for p, u, g in zip((cold, warm), units, goal_units, strict=True)
                )
            )
    else:
        goals.append("GDSC CPU not measured (PostgreSQL's backends not on this machine, or SQLite)")
    print("  goals (issue 17): " + "; ".join(goals))
    load = os.getloadavg()
    print(
        f"  load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {cores} cores "
        "(CPU seconds grow under contention; the ratios are measured in the same run)"
    )


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        asyncio.run(serve(Path(sys.argv[2]), sys.argv[3:]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hubs", type=int, default=1000)
    ap.add_argument("--processes", type=int, default=2, help="hub processes")
    ap.add_argument("--concurrency", type=int, default=128, help="pulls in flight")
    ap.add_argument("--db", default=None, help="store URL (default: PostgreSQL at 127.0.0.1, else SQLite)")
    ap.add_argument("--state", type=Path, default=None, help="certificates (reused between runs)")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="cProfile the collector (loop and storage threads) in each pass and print the top functions",
    )
    a = ap.parse_args()
    report = run(a.hubs, a.processes, a.concurrency, a.db, a.state, profile=a.profile)
    print_report(report)
    for p in report.passes:
        if p.profile:
            print(f"\n--- cProfile, {p.name} pass (collector process, by own time) ---")
            print(p.profile)
    print_pull_log_ratio(a.hubs)


def print_pull_log_ratio(hubs: int, history: int = 480) -> None:
    """The pull log's numbering INSERT (issue 23: per-hub ``max(seq)`` reads, pipelined) against
    the correlated query it replaced (refused by Citus), same run, same server, on a pull log whose
    hubs hold ``history`` past pulls each; PostgreSQL only."""
    import psycopg
    from _old_queries import pull_log_ratio  # type: ignore[import-not-found]

    url = _pg_url()
    if url is None:
        return
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    schema = f"bench_pull_log_{os.getpid()}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        n = min(hubs, 500)
        new, old = pull_log_ratio(
            f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}", n, history
        )
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    print(
        f"  pull-log numbering, {n} pulls in one INSERT, {history} past pulls per hub: {new * 1e3:.1f} ms "
        f"(per-hub max(seq), pipelined) vs {old * 1e3:.1f} ms (the correlated query it replaced, refused "
        f"by Citus): ratio {old / new:.2f} (>1: the new one is faster)"
    )


if __name__ == "__main__":
    main()
