"""The shared pull plan's tables and row states (the plan itself: :mod:`smarthub.gdsc.pull.plan`).

``pull_plan`` (bulk retrieval per schedule, window and hub), ``wan_links`` (pulls in flight per
link), ``urgent_work`` (commands and on-demand reads ahead of bulk), ``hub_errors`` (the error
record of a hub that stays unreachable). :class:`PlanBase` is what the plan's parts share.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import TYPE_CHECKING, Any, overload

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    and_,
    bindparam,
    update,
)

from smarthub.gdsc.db.database import metadata

if TYPE_CHECKING:
    import random

    from smarthub.gdsc.pull.backoff import Backoff
    from smarthub.gdsc.store import Store

# Row states.
PENDING, CLAIMED, DONE, FAILED = "pending", "claimed", "done", "failed"


# Command types whose body is a secret (a meter's new encryption key): the queue clears the
# signed envelope once the job is finished, so the key does not stay at rest in the database.
SECRET_COMMANDS = frozenset({"meter.key"})


class Priority(IntEnum):
    """Lower runs first. Bulk retrieval is the ``pull_plan``; everything above it is urgent work."""

    URGENT = 0  # prepayment top-up, disconnect/reconnect: a household's supply depends on it
    ON_DEMAND = 1  # an on-demand read (a customer or supplier is waiting for it)
    BULK = 2


# Which commands are urgent; any other command type is queued at ON_DEMAND.
URGENT_COMMANDS = frozenset({"prepayment.topup", "supply.disconnect", "supply.reconnect", "supply.limit"})

_ID = BigInteger().with_variant(Integer, "sqlite")
_T = DateTime(timezone=True)

# The hub leads the primary key; lookups of one window go through ix_pull_plan_window. On Citus
# the plan stays on the coordinator (claimed FOR UPDATE SKIP LOCKED: smarthub.gdsc.db.placement).
pull_plan = Table(
    "pull_plan",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("schedule", String(32), primary_key=True),
    Column("window_start", _T, primary_key=True),
    Column("wan_link", String(64)),
    Column("due", _T, nullable=False),
    Column("deadline", _T, nullable=False),  # not claimed after this: the next window covers it
    Column("state", String(12), nullable=False),
    Column("claims", SmallInteger, nullable=False),
    Column("failures", SmallInteger, nullable=False),
    Column("next_try", _T, nullable=False),
    Column("collector", String(64)),
    Column("claimed", _T),
    Column("lease_until", _T),
    Column("finished", _T),
    Column("last_error", Text),
    Index("ix_pull_plan_due", "state", "due"),
    Index("ix_pull_plan_window", "schedule", "window_start"),
    Index("ix_pull_plan_link", "wan_link", "state"),
)

# Per-link limit on pulls in flight, across all collectors; a link missing here has the plan's default.
wan_links = Table(
    "wan_links",
    metadata,
    Column("wan_link", String(64), primary_key=True),
    Column("max_in_flight", Integer, nullable=False),
)

urgent_work = Table(
    "urgent_work",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("hub_id", String(64), nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("kind", String(12), nullable=False),  # "command" or "read"
    Column("command_type", String(64)),
    Column("counter", BigInteger),
    Column("envelope", Text),
    Column("queued", _T, nullable=False),
    Column("state", String(12), nullable=False),
    Column("claims", SmallInteger, nullable=False),
    Column("failures", SmallInteger, nullable=False),
    Column("next_try", _T, nullable=False),
    Column("collector", String(64)),
    Column("claimed", _T),
    Column("lease_until", _T),
    Column("finished", _T),
    Column("result", Text),  # the hub's verdict (JSON) for a command
    Column("last_error", Text),
    Index("ix_urgent_work_due", "state", "priority", "next_try"),
    Index("ix_urgent_work_hub", "hub_id", "id"),
)

hub_errors = Table(
    "hub_errors",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("hub_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),  # "unreachable", "command_undelivered"
    Column("opened", _T, nullable=False),
    Column("last_seen", _T, nullable=False),
    Column("occurrences", Integer, nullable=False),
    Column("tries", Integer, nullable=False),
    Column("context", Text, nullable=False),  # which window or job it was
    Column("last_error", Text),
    Column("closed", _T),
)
# One open record per hub and kind, even with several collectors failing it at once.
Index(
    "uq_hub_errors_open",
    hub_errors.c.hub_id,
    hub_errors.c.kind,
    unique=True,
    postgresql_where=hub_errors.c.closed.is_(None),
    sqlite_where=hub_errors.c.closed.is_(None),
)


def utc(t: datetime) -> datetime:
    """Aware UTC (SQLite keeps no zone: every time goes in as UTC and comes back as UTC)."""
    if t.tzinfo is None:
        raise ValueError("plan times must be timezone-aware")
    return t.astimezone(UTC)


@overload
def _aware(t: datetime) -> datetime: ...
@overload
def _aware(t: None) -> None: ...
def _aware(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


_PLAN_ROW = and_(
    pull_plan.c.schedule == bindparam("k_schedule"),
    pull_plan.c.window_start == bindparam("k_ws"),
    pull_plan.c.hub_id == bindparam("k_hub"),
)
_CLAIM = (
    update(pull_plan)
    .where(_PLAN_ROW)
    .values(
        state=CLAIMED,
        collector=bindparam("k_collector"),
        claimed=bindparam("k_claimed"),
        lease_until=bindparam("k_lease"),
        claims=pull_plan.c.claims + 1,
    )
)
# Done only if the row is still this collector's claim (the fencing token: holder + claim time).
_FINISH_OK = (
    update(pull_plan)
    .where(
        _PLAN_ROW,
        pull_plan.c.collector == bindparam("k_collector"),
        pull_plan.c.claimed == bindparam("k_claimed"),
        pull_plan.c.state == CLAIMED,
    )
    .values(state=DONE, finished=bindparam("k_t"), lease_until=None, last_error=None)
)


def _bulk_key(r: Any) -> Any:
    p = pull_plan
    return and_(p.c.schedule == r.schedule, p.c.window_start == r.window_start, p.c.hub_id == r.hub_id)


def _close_errors(conn: Connection, hub_id: str, kind: str, t: datetime) -> None:
    e = hub_errors
    conn.execute(
        update(e).where(e.c.hub_id == hub_id, e.c.kind == kind, e.c.closed.is_(None)).values(closed=t)
    )


def _chunks(rows: list[dict[str, Any]], n: int) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(rows), n):
        yield rows[i : i + n]


class PlanBase:
    """The state and transaction helpers the plan's parts (claims, finishing) share."""

    store: Store
    max_tries: int
    backoff: Backoff
    lease: timedelta
    link_limit: int
    _rng: random.Random
    takeovers: int
    takeovers_found_done: int

    @property
    def _engine(self) -> Engine:
        return self.store.engine

    @contextmanager
    def _claim_tx(self) -> Iterator[Connection]:
        """A transaction in which a read-then-update claim is atomic on either database."""
        with self._engine.connect() as conn:
            if self.store.dialect == "sqlite":
                # Take the write lock up front: no other connection can claim between our read
                # and our update (pysqlite would only begin at the first UPDATE).
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
