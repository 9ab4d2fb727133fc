"""The pull log: one row per pull attempt of a hub (``seq`` numbers a hub's attempts), and the
operator page's per-hub status built on it.

``PullLog`` is the store's part that writes and reads it; the shared pull plan
(:mod:`smarthub.gdsc.pull.plan`) reads it to see whether a dead collector finished a pull.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Connection, DateTime, Integer, String, Table, Text, func, select, text
from sqlalchemy.exc import IntegrityError

from smarthub.gdsc.db.database import Database, metadata
from smarthub.gdsc.fleet.registry import hubs
from smarthub.gdsc.readings.tables import interval_blocks

# One row per pull attempt; `seq` numbers the attempts of one hub.
pull_log = Table(
    "pull_log",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("started", DateTime(timezone=True), nullable=False),
    Column("finished", DateTime(timezone=True), nullable=False),
    Column("ok", Integer, nullable=False),
    Column("readings", Integer, nullable=False),
    Column("inserted", Integer, nullable=False),
    Column("error", Text),
)


class PullLog(Database):
    """Pull attempts, logged and summed up (the pull-log part of the store)."""

    def log_pulls(self, entries: Sequence[dict[str, Any]]) -> None:
        """Several pulls' log rows (``log_pull``'s keyword arguments each) in one transaction."""
        if not entries:
            return
        for attempt in range(5):
            try:
                with self._write_lock, self.engine.begin() as conn:
                    if self.dialect == "postgresql":
                        self._pull_log_insert_pg(conn, entries)
                    else:
                        for e in entries:
                            conn.execute(self._pull_log_insert(**e))
                return
            except IntegrityError:  # another process logged a pull of the same hub at once
                if attempt == 4:
                    raise

    def _pull_log_insert_pg(self, conn: Connection, entries: Sequence[dict[str, Any]]) -> None:
        """Every row in one INSERT: each hub's next ``seq`` numbers follow its highest stored
        one, in the order the entries are given (a hub may appear more than once).

        The hubs' highest numbers are read first, one ``max(seq)`` per hub (an index probe each;
        on Citus a query routed to the hub's shard), pipelined in one round trip, and the numbers
        worked out here. One statement with a
        subquery per entry correlated with ``unnest`` is refused by Citus ("correlated subqueries
        are not supported when the FROM clause contains a set returning function"), and one
        grouped ``max`` over all the hubs reads every row of each hub's history. A concurrent
        logger of the same hub makes the INSERT fail on the primary key; :meth:`log_pulls` retries.
        """
        raw = conn.connection.driver_connection
        assert raw is not None
        hubs = sorted({e["hub_id"] for e in entries})
        top: dict[str, int] = {}
        with raw.cursor() as cur:
            cur.executemany(
                "SELECT %s::varchar, coalesce(max(seq), 0) FROM pull_log WHERE hub_id = %s",
                [(h, h) for h in hubs],
                returning=True,
            )
            while True:
                hub, seq = cur.fetchone()
                top[hub] = seq
                if not cur.nextset():
                    break
        seqs = []
        for e in entries:
            top[e["hub_id"]] += 1
            seqs.append(top[e["hub_id"]])
        cols: dict[str, list[Any]] = {
            k: [e[k] for e in entries]
            for k in ("hub_id", "window_start", "started", "finished", "readings", "inserted", "error")
        }
        cols["ok"] = [int(e["ok"]) for e in entries]
        cols["seq"] = seqs
        conn.execute(
            text(
                "INSERT INTO pull_log"
                " (hub_id, seq, window_start, started, finished, ok, readings, inserted, error) "
                "SELECT * FROM unnest(CAST(:hub_id AS varchar[]), CAST(:seq AS int4[]),"
                " CAST(:window_start AS timestamptz[]), CAST(:started AS timestamptz[]),"
                " CAST(:finished AS timestamptz[]), CAST(:ok AS int4[]), CAST(:readings AS int4[]),"
                " CAST(:inserted AS int4[]), CAST(:error AS text[]))"
            ),
            cols,
        )

    def _pull_log_insert(
        self,
        *,
        hub_id: str,
        window_start: datetime,
        started: datetime,
        finished: datetime,
        ok: bool,
        readings: int,
        inserted: int,
        error: str | None,
    ) -> Any:
        nxt = (
            select(func.coalesce(func.max(pull_log.c.seq), 0) + 1)
            .where(pull_log.c.hub_id == hub_id)
            .scalar_subquery()
        )
        return pull_log.insert().values(
            seq=nxt,
            hub_id=hub_id,
            window_start=window_start,
            started=started,
            finished=finished,
            ok=int(ok),
            readings=readings,
            inserted=inserted,
            error=error,
        )

    def log_pull(
        self,
        *,
        hub_id: str,
        window_start: datetime,
        started: datetime,
        finished: datetime,
        ok: bool,
        readings: int,
        inserted: int,
        error: str | None,
    ) -> None:
        self.log_pulls(
            [
                dict(
                    hub_id=hub_id,
                    window_start=window_start,
                    started=started,
                    finished=finished,
                    ok=ok,
                    readings=readings,
                    inserted=inserted,
                    error=error,
                )
            ]
        )

    def fleet_status(self) -> list[dict[str, object]]:
        """One row per hub for the operator page: last pull, readings stored, errors."""
        b = interval_blocks
        with self.engine.connect() as conn:
            counts = dict(conn.execute(select(b.c.hub_id, func.sum(b.c.n)).group_by(b.c.hub_id)).all())
            last = {
                r.hub_id: r
                for r in conn.execute(
                    select(
                        pull_log.c.hub_id,
                        func.max(pull_log.c.finished).label("last"),
                        func.sum(1 - pull_log.c.ok).label("errors"),
                        func.count().label("pulls"),
                    ).group_by(pull_log.c.hub_id)
                )
            }
            out = []
            for h in conn.execute(select(hubs).order_by(hubs.c.hub_id)):
                lp = last.get(h.hub_id)
                out.append(
                    {
                        "hub_id": h.hub_id,
                        "premises_id": h.premises_id,
                        "status": h.status,
                        "last_pull": _aware(lp.last) if lp else None,
                        "pulls": int(lp.pulls) if lp else 0,
                        "errors": int(lp.errors or 0) if lp else 0,
                        "readings": int(counts.get(h.hub_id) or 0),
                    }
                )
            return out


def last_answered(conn: Connection, hub_ids: set[str]) -> dict[str, datetime]:
    """The end of each hub's last successful pull (the hub answered then): what a command given
    up after the plan's tries waits for before it is queued again (the hub is back)."""
    if not hub_ids:
        return {}
    rows = conn.execute(
        select(pull_log.c.hub_id, func.max(pull_log.c.finished))
        .where(pull_log.c.hub_id.in_(sorted(hub_ids)), pull_log.c.ok == 1)
        .group_by(pull_log.c.hub_id)
    ).all()
    return {r[0]: t for r in rows if (t := _aware(r[1])) is not None}


def _aware(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)
