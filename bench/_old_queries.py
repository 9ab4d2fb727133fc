"""The single-server queries issue 23 replaced (they fail on Citus), kept as the same-run
reference for ``bench/store.py`` (the merge into stored blocks) and ``bench/pull.py`` (the pull
log's numbering): each is timed beside its replacement on the same data and server.

* :class:`ForUpdateMergeStore`: the store whose merge locks the stored blocks with ``SELECT …
  JOIN interval_blocks_staging … FOR UPDATE OF b`` and writes them back with ``UPDATE … FROM``
  the staging table (replaced by per-hub advisory locks, the staging table read in subqueries).
* :data:`CORRELATED_PULL_LOG`: the pull-log INSERT numbering each entry with a subquery
  correlated with ``unnest`` (replaced by pipelined per-hub ``max(seq)`` reads).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from smarthub.gdsc.readings import interval_block
from smarthub.gdsc.readings.grouping import Tally, count_inserted
from smarthub.gdsc.readings.ingest import _copy_blocks
from smarthub.gdsc.readings.tables import DAY, BlockKey
from smarthub.gdsc.store import Store

CORRELATED_PULL_LOG = (
    "INSERT INTO pull_log"
    " (hub_id, seq, window_start, started, finished, ok, readings, inserted, error) "
    "SELECT v.hub_id, coalesce((SELECT max(p.seq) FROM pull_log p WHERE p.hub_id = v.hub_id), 0)"
    " + row_number() OVER (PARTITION BY v.hub_id ORDER BY v.ord),"
    " v.window_start, v.started, v.finished, v.ok, v.readings, v.inserted, v.error "
    "FROM unnest(CAST(:hub_id AS varchar[]), CAST(:window_start AS timestamptz[]),"
    " CAST(:started AS timestamptz[]), CAST(:finished AS timestamptz[]), CAST(:ok AS int4[]),"
    " CAST(:readings AS int4[]), CAST(:inserted AS int4[]), CAST(:error AS text[]))"
    " WITH ORDINALITY"
    " AS v(hub_id, window_start, started, finished, ok, readings, inserted, error, ord)"
)


class ForUpdateMergeStore(Store):
    """The store with the merge as it was before issue 23 (verbatim but for the hub column:
    ``hub_id`` since migration 0019)."""

    def _write_blocks_pg(
        self,
        conn: Connection,
        pending: dict[BlockKey, tuple[dict[int, tuple[int, int]], int | dict[int, int]]],
        durations: dict[BlockKey, int],
        tallies: list[Tally],
    ) -> None:
        """COPY the new blocks into a staging table, insert those whose key is new, then lock,
        merge and write back those that already existed."""
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS interval_blocks_staging "
                "(hub_id text, day int4, n int4, channel_no int2, block bytea) ON COMMIT DELETE ROWS"
            )
            _copy_blocks(
                cur,
                (
                    (key, len(slots), interval_block.encode(DAY // durations[key], slots))
                    for key, (slots, _) in pending.items()
                ),
            )
            # Insert the blocks whose key is new; what stays in staging already existed.
            cur.execute(
                "WITH ins AS (INSERT INTO interval_blocks (hub_id, day, n, channel_no, block) "
                "SELECT hub_id, day, n, channel_no, block FROM interval_blocks_staging "
                "ON CONFLICT DO NOTHING RETURNING hub_id, day, channel_no) "
                "DELETE FROM interval_blocks_staging s USING ins "
                "WHERE s.hub_id = ins.hub_id AND s.day = ins.day AND s.channel_no = ins.channel_no"
            )
            stored: dict[BlockKey, bytes] = {}
            if cur.rowcount < len(pending):
                cur.execute(
                    "SELECT b.hub_id, b.day, b.channel_no, b.block FROM interval_blocks b "
                    "JOIN interval_blocks_staging s "
                    "ON b.hub_id = s.hub_id AND b.day = s.day AND b.channel_no = s.channel_no "
                    "FOR UPDATE OF b"
                )
                stored = {(hub, day, no): bytes(block) for hub, day, no, block in cur.fetchall()}
            changed = []
            for key, (slots, owner) in pending.items():
                if key not in stored:
                    count_inserted(slots, owner, tallies)
                    continue
                merged = self._merge(key, stored[key], slots, owner, durations[key], tallies)
                if merged is not None:
                    changed.append((key, merged[0], merged[1]))
            cur.execute("TRUNCATE interval_blocks_staging")
            if changed:
                _copy_blocks(cur, changed)
                cur.execute(
                    "UPDATE interval_blocks b SET n = s.n, block = s.block FROM interval_blocks_staging s "
                    "WHERE b.hub_id = s.hub_id AND b.day = s.day AND b.channel_no = s.channel_no"
                )
                cur.execute("TRUNCATE interval_blocks_staging")


def pull_log_ratio(url: str, hubs: int = 500, history: int = 480, rounds: int = 5) -> tuple[float, float]:
    """Seconds per INSERT of one pull per hub for ``hubs`` hubs each holding ``history`` past
    pulls (10 days of half-hour windows by default): (replacement, old correlated query), best of
    ``rounds`` each, alternated, every INSERT rolled back."""
    store = Store(url)
    store.create_schema()
    t = datetime(2026, 3, 2, tzinfo=UTC)
    ids = [f"LOGHUB{n:06d}" for n in range(hubs)]
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO pull_log (hub_id, seq, window_start, started, finished, ok, readings, inserted) "
                "SELECT h, s, :t, :t, :t, 1, 96, 96 FROM unnest(CAST(:ids AS varchar[])) h, "
                "generate_series(1, :n) s"
            ),
            {"ids": ids, "n": history, "t": t},
        )
        conn.execute(text("ANALYZE pull_log"))
    entries = [
        dict(
            hub_id=h,
            window_start=t,
            started=t,
            finished=t + timedelta(seconds=1),
            ok=True,
            readings=96,
            inserted=96,
            error=None,
        )
        for h in ids
    ]
    cols: dict[str, list[Any]] = {
        k: [e[k] for e in entries]
        for k in ("hub_id", "window_start", "started", "finished", "readings", "inserted", "error")
    }
    cols["ok"] = [1] * len(entries)
    new, old = float("inf"), float("inf")
    for _ in range(rounds):
        with store.engine.connect() as conn:
            t0 = time.perf_counter()
            store._pull_log_insert_pg(conn, entries)
            new = min(new, time.perf_counter() - t0)
            conn.rollback()
            t0 = time.perf_counter()
            conn.execute(text(CORRELATED_PULL_LOG), cols)
            old = min(old, time.perf_counter() - t0)
            conn.rollback()
    store.close()
    return new, old
