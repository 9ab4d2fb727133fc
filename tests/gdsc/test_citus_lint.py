"""Every statement the store's hot paths really send to PostgreSQL — ingest (new blocks and the
merge into stored ones), the pull log, the plan's claims, leases and finishes, urgent work — is
one Citus accepts, as far as :func:`~smarthub.gdsc.db.citus.citus_refusals` can tell: no row
lock on a table that is not coordinator-local, no subquery over a distributed table beside
``unnest`` in ``FROM``. And the lint catches the two queries issue 23 replaced."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from smarthub.gdsc.db.citus import citus_refusals
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.scheduler import plan_window
from smarthub.gdsc.readings.tables import StoredReading
from smarthub.gdsc.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from _old_queries import CORRELATED_PULL_LOG

WS = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
W = timedelta(minutes=30)
T0 = 1_772_409_600


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every statement psycopg sends (SQLAlchemy's and the store's own cursors alike),
    recorded on its way to the real server."""
    out: list[str] = []
    execute, executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany

    def _text(q: Any) -> str:
        return q if isinstance(q, str) else q.as_string(None) if hasattr(q, "as_string") else str(q)

    def rec(self: psycopg.Cursor[Any], query: Any, *a: Any, **k: Any) -> Any:
        out.append(_text(query))
        return execute(self, query, *a, **k)

    def rec_many(self: psycopg.Cursor[Any], query: Any, *a: Any, **k: Any) -> Any:
        out.append(_text(query))
        return executemany(self, query, *a, **k)

    monkeypatch.setattr(psycopg.Cursor, "execute", rec)
    monkeypatch.setattr(psycopg.Cursor, "executemany", rec_many)
    yield out


def _reading(hub: str, i: int) -> StoredReading:
    return StoredReading(hub, "E1", "1-0:1.8.0", T0 + 1800 * i, 1800, 100 + i, 0, 72, 1)


@pytest.mark.postgres
def test_the_stores_hot_paths_send_nothing_citus_refuses(pg_url: str, sent: list[str]) -> None:
    store = Store(pg_url)
    store.create_schema()
    for i in range(6):
        store.register_hub(
            hub_id=f"HUB{i}",
            premises_id=f"P{i}",
            url="https://127.0.0.1:1",
            lfdi="A" * 40,
            meters_by_fuel=[],
            wan_link="cell-1" if i % 2 else None,
        )
    plan = PullPlan(store, lease=timedelta(minutes=2))
    plan.create_schema()
    sent.clear()
    plan.ensure_window("every", WS, plan_window(WS, W, store.active_hubs()), WS + 2 * W)
    late = WS + W
    claims = plan.claim_bulk("A", late, 4)
    assert claims
    assert plan.renew_bulk(claims[0], late)
    plan.finish_bulk(claims[0], True, late)
    # Leases run out: the next claim takes the rest over and checks the pull log.
    taken = plan.claim_bulk("B", late + timedelta(minutes=5), 10)
    assert taken
    plan.enqueue_read("HUB1", late)
    assert plan.claim_urgent("A", late, 5)
    # Ingest: new blocks, then a merge into them; the pull log.
    store.ingest_many([(f"HUB{i}", [_reading(f"HUB{i}", j) for j in range(24)], {"c": 1}) for i in range(6)])
    store.ingest_many(
        [(f"HUB{i}", [_reading(f"HUB{i}", j) for j in range(20, 48)], {"c": 2}) for i in range(6)]
    )
    store.log_pulls(
        [
            dict(
                hub_id=f"HUB{i % 3}",
                window_start=WS,
                started=late,
                finished=late,
                ok=True,
                readings=48,
                inserted=48,
                error=None,
            )
            for i in range(5)
        ]
    )
    store.close()
    assert store.count_readings() == 6 * 48
    assert any("FOR UPDATE" in q.upper() for q in sent)  # the claims' locks were seen (and allowed)
    refused = {q: r for q in sent if (r := citus_refusals(q))}
    assert refused == {}
    assert any("pg_advisory_xact_lock(%s, k)" in q for q in sent)  # the merge ran


def test_the_lint_catches_the_replaced_queries() -> None:
    assert citus_refusals(CORRELATED_PULL_LOG) == ["subquery over pull_log beside unnest in FROM"]
    old_merge_read = (
        "SELECT b.hub_id, b.day, b.channel_no, b.block FROM interval_blocks b "
        "JOIN interval_blocks_staging s "
        "ON b.hub_id = s.hub_id AND b.day = s.day AND b.channel_no = s.channel_no "
        "FOR UPDATE OF b"
    )
    assert citus_refusals(old_merge_read) == ["row lock on interval_blocks (distributed)"]
    assert citus_refusals("SELECT * FROM premises WHERE premises_id = 'P' FOR SHARE") == [
        "row lock on premises (reference)"
    ]
    assert citus_refusals("SELECT * FROM pull_plan FOR UPDATE SKIP LOCKED") == []
