"""Benchmark: how many hub pulls per second the shared plan can hand out and close on PostgreSQL.

Plans one window of ``--hubs`` hubs, then ``--collectors`` threads (one database connection
each, as separate collector processes would have) claim due pulls in batches of ``--batch``
with ``SELECT … FOR UPDATE SKIP LOCKED`` and record each batch done in one transaction, as
the scheduler records a tick's ended pulls (no network: this
measures the plan alone, the upper bound it puts on a collector fleet). Prints plan rows
closed per second and, as the physical reference measured in the same run on the same
server, single-row UPDATE transactions per second (finishing a pull is one such transaction).

    .venv/bin/python bench/plan.py [--hubs 20000] [--collectors 2] [--db URL]
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from sqlalchemy import text

from smarthub.gdsc.fleet.registry import HubRecord, hubs, premises
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.scheduler import plan_window
from smarthub.gdsc.store import Store

WS = datetime(2026, 3, 2, 1, tzinfo=UTC)
W = timedelta(hours=4)


def reference_updates(store: Store, n: int) -> float:
    """Single-row UPDATE + COMMIT per second on the plan table (the cost floor of one finish)."""
    t0 = time.perf_counter()
    with store.engine.connect() as conn:
        for i in range(n):
            conn.execute(
                text("UPDATE pull_plan SET last_error = :e WHERE schedule = 'night' AND hub_id = :h"),
                {"e": None, "h": f"HUB{i:08d}"},
            )
            conn.commit()
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hubs", type=int, default=20000)
    ap.add_argument("--collectors", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--db", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = ap.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    conninfo = args.db.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    try:
        store = Store(f"{args.db}?options=-csearch_path%3D{schema}")
        store.create_schema()
        plan = PullPlan(store, lease=timedelta(minutes=10))
        plan.create_schema()
        ids = [f"HUB{i:08d}" for i in range(args.hubs)]
        with store.engine.begin() as conn:
            conn.execute(premises.insert(), [{"premises_id": h, "address": ""} for h in ids])
            conn.execute(
                hubs.insert(),
                [{"hub_id": h, "premises_id": h, "url": "https://x", "lfdi": "A" * 40} for h in ids],
            )
        records = [
            HubRecord(h, h, "https://x", "A" * 40, "active", f"cell-{i % 500}") for i, h in enumerate(ids)
        ]
        t0 = time.perf_counter()
        plan.ensure_window("night", WS, plan_window(WS, W, records), WS + 2 * W)
        planned_s = time.perf_counter() - t0
        plan.link_limit = 10**6  # measure the plan, not the link limit
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE wan_links SET max_in_flight = 1000000"))
        late = WS + W
        closed = [0] * args.collectors

        def collector(k: int) -> None:
            name = f"bench-{k}"
            while True:
                claims = plan.claim_bulk(name, late, args.batch)
                if not claims:
                    return
                # As the scheduler does: the pulls that ended since the last tick, in one transaction.
                plan.finish_bulk_many([(c, True, None) for c in claims], late)
                closed[k] += len(claims)

        threads = [threading.Thread(target=collector, args=(k,)) for k in range(args.collectors)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
        rate = sum(closed) / seconds
        states = plan.window_states("night", WS)
        ref = reference_updates(store, min(args.hubs, 3000))
        print(f"plan of {args.hubs} hubs written in {planned_s:.2f} s ({args.hubs / planned_s:,.0f} rows/s)")
        print(
            f"{args.collectors} claimers, batch {args.batch}: {sum(closed)} pulls closed in {seconds:.2f} s"
        )
        print(f"plan throughput: {rate:,.0f} pulls/s (per claimer {closed})   states: {states}")
        print(f"reference: single-row UPDATE transactions on this server: {ref:,.0f}/s")
        print(f"ratio plan/reference: {rate / ref:.2f}")
        store.close()
    finally:
        with psycopg.connect(conninfo, autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
