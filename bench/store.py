"""Benchmark: the GDSC store ingesting a realistic day of elec + gas half-hourly data per hub.

Every hub serves two channels (electricity import in Wh, gas in dm³), 48 half-hours each,
a few estimated. Ingest goes through ``Store.ingest_many`` in batches, as the collector does,
from several processes (``--workers``, one per core by default) into PostgreSQL; then into
SQLite with one writer. Two days are ingested: day 1 meets hubs the store has never seen
(their channels are numbered), day 2 is the steady state of every night.

Printed: readings/s ingested, bytes per stored reading (``pg_total_relation_size`` of every
interval table, indexes and partitions included, / readings), and the ratios to references
measured in the same run, on the same readings and worker count:

* **old layout**: one row per reading keyed by strings, inserted with SQLAlchemy executemany
  (``INSERT … ON CONFLICT DO NOTHING``), the store before issue 5;
* **raw COPY**: one row per reading COPYed into a plain table without any index: the
  physical ceiling of getting these readings into PostgreSQL from Python at all.

Goals (issue 5): ≥ 300,000 readings/s into PostgreSQL, ≤ 4 bytes per stored reading.

    .venv/bin/python bench/store.py [--hubs 12000] [--workers 2] [--batch 500]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import random
import tempfile
import time
from pathlib import Path

import psycopg
from _old_queries import ForUpdateMergeStore  # type: ignore[import-not-found]
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import BigInteger, Column, Integer, MetaData, SmallInteger, String, create_engine, text
from sqlalchemy import Table as SqlTable
from sqlalchemy.dialects import postgresql

from smarthub.gdsc.readings.tables import StoredReading
from smarthub.gdsc.store import Store

PG_URL = os.environ.get("SMARTHUB_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DAY0 = 1_772_409_600  # 2026-03-02 00:00 UTC
GOAL_RATE = 300_000
GOAL_BYTES = 4.0
ESTIMATED = 0x08  # IEEE 2030.5 QualityFlags: estimated by linear interpolation

# Shape of a household's half-hourly electricity use (night, morning, day, evening peak).
ELEC_SHAPE = (
    [0.35] * 12 + [0.6, 0.9, 1.2, 1.1, 0.8, 0.7] + [0.6] * 14 + [1.4, 1.9, 2.2, 2.0, 1.6, 1.2] + [0.8] * 10
)
GAS_SHAPE = [0.0] * 11 + [0.3, 2.5, 3.0, 2.2, 1.0] + [0.2] * 16 + [0.6, 2.4, 2.8, 2.6, 1.8, 0.9] + [0.0] * 10

old_metadata = MetaData()
old_readings = SqlTable(
    "old_interval_readings",
    old_metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("meter_id", String(64), primary_key=True),
    Column("obis", String(32), primary_key=True),
    Column("interval_start", BigInteger, primary_key=True),
    Column("duration", Integer, nullable=False),
    Column("value", BigInteger, nullable=False),
    Column("power_of_ten", SmallInteger, nullable=False),
    Column("uom", SmallInteger, nullable=False),
    Column("quality", SmallInteger, nullable=False),
)


def hub_day(n: int, day: int, half: int | None = None) -> tuple[str, list[StoredReading], dict[str, int]]:
    """One hub's pull of one day: 48 half-hours of electricity (Wh) and gas (dm³); with
    ``half`` 0 or 1, only the first or the second 24 of each."""
    rnd = random.Random(n * 1009 + day)
    hub = f"HUB{n:09d}"
    start = DAY0 + day * 86400
    scale = rnd.uniform(80, 400)  # Wh per half hour at shape 1.0
    heat = rnd.uniform(50, 400)  # dm³ per half hour at shape 1.0
    out = []
    for i, k in enumerate(ELEC_SHAPE):
        q = ESTIMATED if rnd.random() < 0.005 else 1
        v = max(0, round(scale * k * rnd.uniform(0.7, 1.3)))
        out.append(StoredReading(hub, f"E{n:011d}", "1-0:1.8.0", start + 1800 * i, 1800, v, 0, 72, q))
    for i, k in enumerate(GAS_SHAPE):
        q = ESTIMATED if rnd.random() < 0.005 else 1
        v = max(0, round(heat * k * rnd.uniform(0.6, 1.4)))
        out.append(StoredReading(hub, f"G{n:011d}", "7-0:3.0.0", start + 1800 * i, 1800, v, -3, 42, q))
    if half is not None:
        out = [r for r in out if (r.interval_start - start) // 43200 == half]
    return hub, out, {f"/upt/1/mr/{n}": start + 86400, f"/upt/2/mr/{n}": start + 86400}


def _ingest(mode: str, url: str, items: list[tuple[str, list[StoredReading], dict[str, int]]]) -> None:
    if mode in ("store", "store-old"):
        _ingest.store.ingest_many(items)  # type: ignore[attr-defined]
    elif mode == "old":
        with _ingest.engine.begin() as conn:  # type: ignore[attr-defined]
            conn.execute(
                postgresql.insert(old_readings).on_conflict_do_nothing(),
                [
                    {
                        "hub_id": r.hub_id,
                        "meter_id": r.meter_id,
                        "obis": r.obis,
                        "interval_start": r.interval_start,
                        "duration": r.duration,
                        "value": r.value,
                        "power_of_ten": r.power_of_ten,
                        "uom": r.uom,
                        "quality": r.quality,
                    }
                    for _, rs, _ in items
                    for r in rs
                ],
            )
    else:  # raw COPY into the unindexed table
        conn = _ingest.raw  # type: ignore[attr-defined]
        with conn.transaction(), conn.cursor() as cur, cur.copy("COPY copy_ceiling FROM STDIN") as copy:
            for _, rs, _ in items:
                for r in rs:
                    copy.write_row(
                        (
                            r.hub_id,
                            r.meter_id,
                            r.obis,
                            r.interval_start,
                            r.duration,
                            r.value,
                            r.power_of_ten,
                            r.uom,
                            r.quality,
                        )
                    )


def worker(
    mode: str,
    url: str,
    hubs: range,
    day: int,
    batch: int,
    barrier,
    progress,  # type: ignore[no-untyped-def]
    half: int | None = None,
) -> tuple[int, float]:
    """Generate this worker's pulls, wait for the others, then ingest them; (readings, seconds)."""
    if mode == "store":
        _ingest.store = Store(url)  # type: ignore[attr-defined]
    elif mode == "store-old":
        _ingest.store = ForUpdateMergeStore(url)  # type: ignore[attr-defined]
    elif mode == "old":
        _ingest.engine = create_engine(url)  # type: ignore[attr-defined]
    else:
        _ingest.raw = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))  # type: ignore[attr-defined]
    batches = []
    for lo in range(hubs.start, hubs.stop, batch):
        batches.append([hub_day(n, day, half) for n in range(lo, min(lo + batch, hubs.stop))])
    readings = sum(len(rs) for b in batches for _, rs, _ in b)
    barrier.wait()
    started = time.perf_counter()
    for items in batches:
        _ingest(mode, url, items)
        progress.put(sum(len(rs) for _, rs, _ in items))
    seconds = time.perf_counter() - started
    return readings, seconds


def run_phase(
    console: Console,
    label: str,
    mode: str,
    url: str,
    hubs: int,
    day: int,
    workers: int,
    batch: int,
    half: int | None = None,
    first: int = 0,
) -> tuple[int, float]:
    """Readings ingested and wall seconds from the moment every worker was ready."""
    ctx = mp.get_context("spawn")
    manager = ctx.Manager()
    barrier = manager.Barrier(workers + 1)
    queue = manager.Queue()
    share = math.ceil(hubs / workers)
    ranges = [range(first + i * share, first + min(hubs, (i + 1) * share)) for i in range(workers)]
    total = hubs * (96 if half is None else 48)
    with (
        ctx.Pool(workers) as pool,
        Progress(
            TextColumn("{task.description:<34}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as bar,
    ):
        task = bar.add_task(f"{label} (generating)", total=total)
        pending = pool.starmap_async(
            worker, [(mode, url, r, day, batch, barrier, queue, half) for r in ranges]
        )
        barrier.wait()
        started = time.perf_counter()
        bar.update(task, description=label)
        done = 0
        while done < total:
            done += queue.get()
            bar.update(task, completed=done)
        results = pending.get()
        wall = time.perf_counter() - started
    manager.shutdown()
    return sum(r for r, _ in results), wall


def pg_bytes(conninfo: str, schema: str, tables: list[str]) -> int:
    """pg_total_relation_size of the tables, their indexes and all their partitions."""
    with psycopg.connect(conninfo) as conn:
        return int(
            conn.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace ns ON ns.oid = c.relnamespace "
                "WHERE ns.nspname = %s AND c.relkind IN ('r', 'p') AND (c.relname = ANY(%s) "
                "OR c.oid IN (SELECT inhrelid FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent "
                "WHERE p.relname = ANY(%s) AND p.relnamespace = ns.oid))",
                (schema, tables, tables),
            ).fetchone()[0]  # type: ignore[index]
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hubs", type=int, default=12000, help="hubs ingested into PostgreSQL per day")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="ingesting processes")
    ap.add_argument("--batch", type=int, default=500, help="hubs per ingest_many transaction")
    ap.add_argument("--ref-hubs", type=int, default=0, help="hubs for the references (default hubs/4)")
    ap.add_argument("--sqlite-hubs", type=int, default=0, help="hubs for SQLite (default hubs/6)")
    args = ap.parse_args()
    ref_hubs = args.ref_hubs or max(1, args.hubs // 4)
    sqlite_hubs = args.sqlite_hubs or max(1, args.hubs // 6)
    console = Console()
    conninfo = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    schema = f"bench_store_{os.getpid()}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
    console.print(
        f"[bold]bench/store.py[/]: {args.hubs} hubs x 2 channels x 48 half-hours per day into PostgreSQL, "
        f"{args.workers} workers, {args.batch} hubs per transaction; references on {ref_hubs} hubs"
    )
    rows: list[tuple[str, int, float, float | None]] = []
    try:
        store = Store(url)
        store.create_schema()
        n1, s1 = run_phase(
            console, "PG store, day 1 (new hubs)", "store", url, args.hubs, 0, args.workers, args.batch
        )
        n2, s2 = run_phase(
            console, "PG store, day 2 (steady state)", "store", url, args.hubs, 1, args.workers, args.batch
        )
        stored = store.count_readings()
        assert stored == n1 + n2, (stored, n1, n2)
        blocks = pg_bytes(conninfo, schema, ["interval_blocks"])
        # Day 3: the first half-day stored, then the second merged into the stored blocks (what
        # every pull after the first of a day does), by the store and by the FOR UPDATE merge it
        # replaced (issue 23), each on its own half of the hubs, alternated.
        run_phase(
            console, "PG store, day 3 first halves", "store", url, args.hubs, 2, args.workers, args.batch, 0
        )
        q = args.hubs // 4
        merge_runs: dict[str, list[float]] = {"store": [], "store-old": []}
        for k, mode in enumerate(("store", "store-old", "store-old", "store")):  # ABBA against drift
            how = "per-hub advisory locks" if mode == "store" else "FOR UPDATE, old"
            nm, sm = run_phase(
                console, f"PG merge ({how})", mode, url, q, 2, args.workers, args.batch, 1, k * q
            )
            merge_runs[mode].append(nm / sm)
        assert store.count_readings() == n1 + n2 + args.hubs * 48 + 4 * q * 48, "the merge lost readings"
        store.close()
        meta = pg_bytes(conninfo, schema, ["interval_channels"])
        engine = create_engine(url)
        old_metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE copy_ceiling (LIKE old_interval_readings)"))
        engine.dispose()
        no, so = run_phase(
            console, "reference: old layout, executemany", "old", url, ref_hubs, 0, args.workers, args.batch
        )
        nc, sc = run_phase(
            console, "reference: raw COPY, no index", "copy", url, ref_hubs, 0, args.workers, args.batch
        )
        old_bytes = pg_bytes(conninfo, schema, ["old_interval_readings"]) / no
        copy_bytes = pg_bytes(conninfo, schema, ["copy_ceiling"]) / nc
        rows = [
            ("PG store, day 1 (new hubs)", n1, n1 / s1, None),
            ("PG store, day 2 (steady state)", n2, n2 / s2, (blocks + meta) / stored),
            ("reference: old layout, executemany", no, no / so, old_bytes),
            ("reference: raw COPY, no index", nc, nc / sc, copy_bytes),
        ]
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "gdsc.sqlite"
        lite = Store(f"sqlite:///{db}")
        lite.create_schema()
        lite.close()
        l1, t1 = run_phase(
            console, "SQLite store, day 1", "store", f"sqlite:///{db}", sqlite_hubs, 0, 1, args.batch
        )
        l2, t2 = run_phase(
            console, "SQLite store, day 2", "store", f"sqlite:///{db}", sqlite_hubs, 1, 1, args.batch
        )
        lite = Store(f"sqlite:///{db}")
        with lite.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.exec_driver_sql("VACUUM")
        lite.close()
        rows += [
            ("SQLite store, day 1 (1 writer)", l1, l1 / t1, None),
            ("SQLite store, day 2 (1 writer)", l2, l2 / t2, db.stat().st_size / (l1 + l2)),
        ]

    table = Table(title="GDSC store ingest")
    for col in ("run", "readings", "readings/s", "bytes/reading"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for name, n, rate, size in rows:
        table.add_row(name, f"{n:,}", f"{rate:,.0f}", "" if size is None else f"{size:.2f}")
    console.print(table)
    steady = rows[1][2]
    per_reading = blocks / stored
    year = (blocks / stored) + meta / (stored / 2 * 365)
    console.print(
        f"PostgreSQL bytes/reading: blocks {per_reading:.2f} (heap + primary key, all partitions); "
        f"with the channels for these 2 days {(blocks + meta) / stored:.2f}; "
        f"amortised over a year of days {year:.2f}"
    )
    console.print(
        f"ratios (steady state): {steady / rows[2][2]:.1f}x the old layout's rate, "
        f"{steady / rows[3][2]:.2f}x raw COPY's rate; "
        f"{old_bytes / per_reading:.0f}x smaller than the old layout"
    )
    merge_new = sum(merge_runs["store"]) / 2
    merge_old = sum(merge_runs["store-old"]) / 2
    console.print(
        f"merge into stored blocks (day 3's second halves, {q:,} hubs per run, ABBA): "
        f"{merge_new:,.0f} readings/s under per-hub advisory locks (no FOR UPDATE), "
        f"{merge_old:,.0f} with the FOR UPDATE merge it replaced: ratio {merge_new / merge_old:.2f}"
    )
    ok_rate = "[green]met[/]" if steady >= GOAL_RATE else "[red]NOT met[/]"
    ok_size = "[green]met[/]" if year <= GOAL_BYTES else "[red]NOT met[/]"
    console.print(
        f"goals: ≥ {GOAL_RATE:,} readings/s into PostgreSQL: {steady:,.0f} ({ok_rate}); "
        f"≤ {GOAL_BYTES} bytes/reading (a year of days): {year:.2f} ({ok_size})"
    )


if __name__ == "__main__":
    main()
