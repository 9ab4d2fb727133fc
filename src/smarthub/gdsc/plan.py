"""The shared pull plan: what every collector process pulls or delivers, and when, in the database.

Three tables on ``smarthub.gdsc.store.metadata`` (so the Alembic migrations cover them):

``pull_plan``
    One row per (retrieval schedule, window, hub): its due time inside the window, its state
    (``pending`` → ``claimed`` → ``done`` or, after ``max_tries`` failures, ``failed``), the
    collector holding it and until when (its lease), and its tries. A window is planned once,
    by whichever collector reaches it first (an idempotent insert), so no hub is forgotten and
    none is planned twice.
``urgent_work``
    Work that jumps the bulk queue: signed management commands (prepayment top-up,
    disconnect/reconnect) and on-demand reads, claimed before any bulk pull, every tick.
``hub_errors``
    The error record a hub opens when it stays unreachable after ``max_tries`` (one open record
    per hub and kind; later failures count occurrences on it; a later success closes it). The
    central error log builds on this table.

Claiming is atomic. On PostgreSQL due rows are taken with ``SELECT … FOR UPDATE SKIP LOCKED``,
so several collectors claim disjoint work without waiting on each other; the ``wan_links`` rows
of the links involved are then locked (blocking, in name order so two claimers cannot deadlock)
so the count of pulls in flight per link is exact when the claim decides. On SQLite (the
embedded single-collector case) the claim runs in a ``BEGIN IMMEDIATE`` transaction: the
database's single write lock makes it atomic just the same.

A claim is a lease: the collector renews it while it works; a collector that dies stops
renewing, its lease runs out, and another collector takes the row over. Before pulling a
taken-over hub again, the new holder checks ``pull_log`` for a pull the dead one finished but
did not get to mark, so a hub is pulled once per window even across a SIGKILL. Every change of
a claimed row names its holder and claim time (a fencing token): a collector that lost its
lease cannot overwrite the new holder's result.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any, overload

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    and_,
    bindparam,
    case,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import aliased

from smarthub.gdsc.commands import CommandSigner
from smarthub.gdsc.store import HubRecord, Store, hubs, metadata, pull_log
from smarthub.wan.contract.commands import SignedCommand

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

# The hub leads the primary key, as in every per-hub table, so a sharded PostgreSQL can
# distribute the plan by hub id; lookups of one window go through ix_pull_plan_window.
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


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with "equal jitter": try k waits d/2 + U(0, d/2), d = base·factor^(k-1).

    The jitter spreads the retries of hubs that failed together (one WAN link down) so they do
    not come back as one burst; keeping half of the nominal step fixed means each wait is at
    least as long as the one before (until the cap), so a dead hub costs ever less.
    """

    base: timedelta = timedelta(seconds=30)
    factor: float = 2.0
    cap: timedelta = timedelta(minutes=30)

    def __post_init__(self) -> None:
        if self.base <= timedelta(0) or self.factor < 1 or self.cap < self.base:
            raise ValueError("backoff needs base > 0, factor >= 1 and cap >= base")

    def delay(self, failures: int, rng: random.Random) -> timedelta:
        if failures < 1:
            raise ValueError("a backoff follows at least one failure")
        nominal = min(self.base * self.factor ** (failures - 1), self.cap)
        return nominal / 2 + nominal / 2 * rng.random()


@dataclass(frozen=True, slots=True)
class BulkClaim:
    schedule: str
    window_start: datetime
    hub: HubRecord
    collector: str
    claimed: datetime
    failures: int

    @property
    def key(self) -> tuple[str, datetime, str]:
        return (self.schedule, self.window_start, self.hub.hub_id)


@dataclass(frozen=True, slots=True)
class UrgentClaim:
    id: int
    hub: HubRecord
    priority: Priority
    kind: str
    command_type: str | None
    envelope: bytes | None
    queued: datetime
    collector: str
    claimed: datetime
    failures: int


@dataclass(frozen=True, slots=True)
class Finished:
    """What became of a try: ``done``, ``retry`` (at ``next_try``), ``failed`` or ``lost`` (lease gone)."""

    state: str
    next_try: datetime | None = None
    error_opened: bool = False


@dataclass
class PullPlan:
    store: Store
    max_tries: int = 5
    backoff: Backoff = field(default_factory=Backoff)
    lease: timedelta = timedelta(minutes=2)
    link_limit: int = 4  # pulls in flight per WAN link, unless the link's wan_links row says otherwise
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_tries < 1:
            raise ValueError("max_tries must be at least 1")
        if self.link_limit < 1:
            raise ValueError("link_limit must be at least 1")
        self._rng = random.Random(self.seed)

    @property
    def _engine(self):
        return self.store.engine

    def create_schema(self) -> None:
        """The plan's tables come with the store's migrations (``Store.create_schema``)."""
        self.store.create_schema()

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

    # -- planning -------------------------------------------------------------------------
    def ensure_window(
        self,
        schedule: str,
        window_start: datetime,
        plan: Sequence[tuple[datetime, HubRecord]],
        deadline: datetime,
    ) -> int:
        """Write a window's plan unless some collector already did; the number of rows it has.

        Idempotent and safe to race: rows are inserted with ON CONFLICT DO NOTHING on the
        (schedule, window, hub) key, so two collectors reaching the window together plan it once.
        """
        ws = utc(window_start)
        rows = [
            {
                "schedule": schedule,
                "window_start": ws,
                "hub_id": h.hub_id,
                "wan_link": h.wan_link,
                "due": utc(t),
                "deadline": utc(deadline),
                "state": PENDING,
                "claims": 0,
                "failures": 0,
                "next_try": utc(t),
            }
            for t, h in plan
        ]
        links = sorted({h.wan_link for _, h in plan if h.wan_link})
        with self._engine.begin() as conn:
            for chunk in _chunks(rows, 1000):
                conn.execute(self.store._insert(pull_plan).on_conflict_do_nothing(), chunk)
            if links:
                conn.execute(
                    self.store._insert(wan_links).on_conflict_do_nothing(),
                    [{"wan_link": link, "max_in_flight": self.link_limit} for link in links],
                )
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(pull_plan)
                    .where(pull_plan.c.schedule == schedule, pull_plan.c.window_start == ws)
                ).scalar_one()
            )

    def set_link_limit(self, wan_link: str, max_in_flight: int) -> None:
        if max_in_flight < 1:
            raise ValueError("a WAN link must allow at least one pull in flight")
        ins = self.store._insert(wan_links).values(wan_link=wan_link, max_in_flight=max_in_flight)
        with self._engine.begin() as conn:
            conn.execute(
                ins.on_conflict_do_update(index_elements=["wan_link"], set_={"max_in_flight": max_in_flight})
            )

    # -- urgent work ------------------------------------------------------------------------
    def queue_command(
        self,
        signer: CommandSigner,
        hub_id: str,
        type_: str,
        body: dict[str, Any],
        now: datetime,
        priority: Priority | None = None,
    ) -> int:
        """Sign a command and queue it in one transaction; its job id.

        The hub refuses a counter below one it has accepted, and commands for one hub are
        delivered in job order. Taking the counter and inserting the job in one transaction
        (the counter row stays locked until commit) makes job order equal counter order even
        when several GDSC processes queue commands for the same hub at once; signing outside
        it could let a later counter be queued first and the earlier one refused as a replay.
        """
        with self._engine.begin() as conn:
            counter = self.store.next_command_counter(hub_id, conn)
            signed = signer.command(hub_id, type_, body, now, counter=counter)
            return self._enqueue_signed(signed, now, priority, conn)

    def enqueue_command(self, signed: SignedCommand, now: datetime, priority: Priority | None = None) -> int:
        """Queue a command signed earlier; its job id. Prefer :meth:`queue_command`, which
        keeps job order equal to counter order across processes."""
        with self._engine.begin() as conn:
            return self._enqueue_signed(signed, now, priority, conn)

    def _enqueue_signed(
        self, signed: SignedCommand, now: datetime, priority: Priority | None, conn: Connection
    ) -> int:
        command = json.loads(signed.payload)
        ctype = str(command["type"])
        if priority is None:
            priority = Priority.URGENT if ctype in URGENT_COMMANDS else Priority.ON_DEMAND
        return self._enqueue(
            hub_id=str(command["hub_id"]),
            priority=int(priority),
            kind="command",
            command_type=ctype,
            counter=int(command["counter"]),
            envelope=signed.envelope().decode(),
            now=now,
            conn=conn,
        )

    def enqueue_read(self, hub_id: str, now: datetime) -> int:
        """Queue an on-demand read of one hub (a pull outside its windows); its job id."""
        with self._engine.begin() as conn:
            return self._enqueue(
                hub_id=hub_id, priority=int(Priority.ON_DEMAND), kind="read", now=now, conn=conn
            )

    def _enqueue(self, *, now: datetime, conn: Connection, **values: Any) -> int:
        t = utc(now)
        res = conn.execute(
            urgent_work.insert().values(queued=t, state=PENDING, claims=0, failures=0, next_try=t, **values)
        )
        key = res.inserted_primary_key
        if key is None:
            raise RuntimeError("the urgent-work insert returned no key")
        return int(key[0])

    # -- claiming ---------------------------------------------------------------------------
    def claim_urgent(self, collector: str, now: datetime, limit: int) -> list[UrgentClaim]:
        """Claim up to ``limit`` due urgent jobs, most urgent first.

        Commands for one hub go in queue order (their counters rise in that order and the hub
        refuses a counter below one it has accepted), so a command waits while an earlier one
        for the same hub is still open.
        """
        if limit <= 0:
            return []
        t = utc(now)
        u = urgent_work
        earlier = aliased(urgent_work)
        claimable = or_(u.c.state == PENDING, and_(u.c.state == CLAIMED, u.c.lease_until < t))
        blocked = exists().where(
            earlier.c.hub_id == u.c.hub_id,
            earlier.c.id < u.c.id,
            earlier.c.kind == "command",
            earlier.c.state.in_((PENDING, CLAIMED)),
        )
        q = (
            select(u)
            .where(claimable, u.c.next_try <= t, or_(u.c.kind != "command", ~blocked))
            .order_by(u.c.priority, u.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=u)
        )
        with self._claim_tx() as conn:
            rows = conn.execute(q).all()
            for r in rows:
                conn.execute(
                    update(u)
                    .where(u.c.id == r.id)
                    .values(
                        state=CLAIMED,
                        collector=collector,
                        claimed=t,
                        lease_until=t + self.lease,
                        claims=r.claims + 1,
                    )
                )
            records = self._hubs(conn, {r.hub_id for r in rows})
        out = []
        for r in rows:
            hub = records.get(r.hub_id)
            if hub is None:  # decommissioned since it was queued: nothing to deliver to
                self.finish_urgent_gone(r.id, collector, t)
                continue
            out.append(
                UrgentClaim(
                    r.id,
                    hub,
                    Priority(r.priority),
                    r.kind,
                    r.command_type,
                    r.envelope.encode() if r.envelope is not None else None,
                    _aware(r.queued),
                    collector,
                    t,
                    r.failures,
                )
            )
        return out

    def claim_bulk(self, collector: str, now: datetime, limit: int) -> list[BulkClaim]:
        """Claim up to ``limit`` due bulk pulls, earliest due first, within every WAN link's limit."""
        if limit <= 0:
            return []
        t = utc(now)
        p = pull_plan
        claimable = or_(p.c.state == PENDING, and_(p.c.state == CLAIMED, p.c.lease_until < t))
        taken: list[Any] = []
        resolved: list[Any] = []
        with self._claim_tx() as conn:
            # Leave out links already at their limit (a hint read without locks; the locked
            # count below decides), and look past the first `limit` rows, so that a saturated
            # link's backlog does not starve the hubs behind other links.
            full = self._full_links(conn, t)
            # A hub being pulled (any window, any schedule, any collector) is not pulled again
            # meanwhile: the pull in flight brings everything up to now anyway, and a second
            # one would hold a slot of the hub's WAN link for nothing.
            busy_hub = aliased(p)
            in_flight = (
                select(busy_hub.c.hub_id)
                .where(
                    busy_hub.c.hub_id == p.c.hub_id,
                    busy_hub.c.state == CLAIMED,
                    busy_hub.c.lease_until >= t,
                )
                .exists()
            )
            q = (
                select(p)
                .where(claimable, p.c.next_try <= t, p.c.due <= t, p.c.deadline > t, ~in_flight)
                .order_by(p.c.due)
                .limit(limit * 4)
                .with_for_update(skip_locked=True)
            )
            if full:
                q = q.where(or_(p.c.wan_link.is_(None), p.c.wan_link.not_in(full)))
            rows = conn.execute(q).all()
            room = self._link_room(conn, sorted({r.wan_link for r in rows if r.wan_link}), t)
            # One pull per hub: its latest due row is pulled, the hub's other due rows in this
            # batch are covered by that pull (pulls are incremental: it brings everything).
            latest: dict[str, Any] = {}
            for r in rows:
                if r.hub_id not in latest or r.window_start > latest[r.hub_id].window_start:
                    latest[r.hub_id] = r
            covered = [r for r in rows if latest[r.hub_id] is not r]
            rows = [r for r in rows if latest[r.hub_id] is r]
            for r in rows:
                if len(taken) >= limit:
                    break
                if r.state == CLAIMED and self._pulled_since(conn, r.hub_id, r.window_start, r.claimed):
                    resolved.append(r)  # the dead holder finished the pull but did not mark it
                    continue
                if r.wan_link:
                    if room[r.wan_link] <= 0:
                        continue
                    room[r.wan_link] -= 1
                taken.append(r)
            taken_hubs = {r.hub_id for r in taken}
            resolved += [r for r in covered if r.hub_id in taken_hubs]
            for r in resolved:
                conn.execute(
                    update(p)
                    .where(_bulk_key(r))
                    .values(state=DONE, finished=t, lease_until=None)  # it stays the puller's row
                )
            if taken:  # one statement, executed for many rows (a pipeline on PostgreSQL)
                conn.execute(
                    _CLAIM,
                    [
                        {
                            "k_schedule": r.schedule,
                            "k_ws": r.window_start,
                            "k_hub": r.hub_id,
                            "k_collector": collector,
                            "k_claimed": t,
                            "k_lease": t + self.lease,
                        }
                        for r in taken
                    ],
                )
            records = self._hubs(conn, {r.hub_id for r in taken})
        out = []
        for r in taken:
            hub = records.get(r.hub_id)
            if hub is None:  # decommissioned since the window was planned
                self._finish_bulk_row(
                    r.schedule, _aware(r.window_start), r.hub_id, collector, t, DONE, "hub gone"
                )
                continue
            out.append(BulkClaim(r.schedule, _aware(r.window_start), hub, collector, t, r.failures))
        return out

    def _full_links(self, conn: Connection, t: datetime) -> list[str]:
        p = pull_plan
        busy = conn.execute(
            select(p.c.wan_link, func.count())
            .where(p.c.wan_link.is_not(None), p.c.state == CLAIMED, p.c.lease_until >= t)
            .group_by(p.c.wan_link)
        ).all()
        if not busy:
            return []
        limits = dict(
            conn.execute(
                select(wan_links.c.wan_link, wan_links.c.max_in_flight).where(
                    wan_links.c.wan_link.in_([link for link, _ in busy])
                )
            ).all()
        )
        return sorted(link for link, n in busy if n >= limits.get(link, self.link_limit))

    def _link_room(self, conn: Connection, links: list[str], t: datetime) -> dict[str, int]:
        """Free pull slots per link; the links' rows stay locked until the claim commits."""
        if not links:
            return {}
        limits = dict(
            conn.execute(
                select(wan_links.c.wan_link, wan_links.c.max_in_flight)
                .where(wan_links.c.wan_link.in_(links))
                .order_by(wan_links.c.wan_link)
                .with_for_update()
            ).all()
        )
        p = pull_plan
        busy: dict[str, int] = dict(
            conn.execute(
                select(p.c.wan_link, func.count())
                .where(p.c.wan_link.in_(links), p.c.state == CLAIMED, p.c.lease_until >= t)
                .group_by(p.c.wan_link)
            ).all()
        )
        return {link: limits.get(link, self.link_limit) - busy.get(link, 0) for link in links}

    def _pulled_since(
        self, conn: Connection, hub_id: str, window_start: datetime, since: datetime | None
    ) -> bool:
        if since is None:
            return False
        q = select(func.count()).where(
            pull_log.c.hub_id == hub_id,
            pull_log.c.window_start == window_start,
            pull_log.c.started >= since,
            pull_log.c.ok == 1,
        )
        return bool(conn.execute(q).scalar_one())

    def _hubs(self, conn: Connection, ids: set[str]) -> dict[str, HubRecord]:
        if not ids:
            return {}
        rows = conn.execute(select(hubs).where(hubs.c.hub_id.in_(sorted(ids)), hubs.c.status == "active"))
        return {
            r.hub_id: HubRecord(r.hub_id, r.premises_id, r.url, r.lfdi, r.status, r.wan_link) for r in rows
        }

    # -- leases -----------------------------------------------------------------------------
    def renew_bulk(self, claim: BulkClaim, now: datetime) -> bool:
        """Extend a held lease; False if it was lost (another collector took the row over)."""
        p = pull_plan
        with self._engine.begin() as conn:
            res = conn.execute(
                update(p)
                .where(_bulk_claim_key(claim), p.c.state == CLAIMED)
                .values(lease_until=utc(now) + self.lease)
            )
            return res.rowcount == 1

    def renew_urgent(self, claim: UrgentClaim, now: datetime) -> bool:
        u = urgent_work
        with self._engine.begin() as conn:
            res = conn.execute(
                update(u)
                .where(
                    u.c.id == claim.id,
                    u.c.collector == claim.collector,
                    u.c.claimed == claim.claimed,
                    u.c.state == CLAIMED,
                )
                .values(lease_until=utc(now) + self.lease)
            )
            return res.rowcount == 1

    # -- finishing --------------------------------------------------------------------------
    def finish_bulk(self, claim: BulkClaim, ok: bool, now: datetime, error: str | None = None) -> Finished:
        """Record one try: done, retry after a backoff, or failed with an error record opened."""
        return self.finish_bulk_many([(claim, ok, error)], now)[0]

    def finish_bulk_many(
        self, results: Sequence[tuple[BulkClaim, bool, str | None]], now: datetime
    ) -> list[Finished]:
        """Record many tries in one transaction (one commit for a tick's worth of pulls)."""
        t = utc(now)
        good = [c for c, ok, _ in results if ok]
        with self._engine.begin() as conn:
            recorded: set[str] = set()
            if good:
                # The common case in few statements: per-row statements cost more than the commit.
                keys = [
                    {
                        "k_schedule": c.schedule,
                        "k_ws": utc(c.window_start),
                        "k_hub": c.hub.hub_id,
                        "k_collector": c.collector,
                        "k_claimed": c.claimed,
                        "k_t": t,
                    }
                    for c in good
                ]
                conn.execute(_FINISH_OK, keys)
                p = pull_plan
                hub_ids = sorted({c.hub.hub_id for c in good})
                recorded = {
                    f"{r.schedule}|{_aware(r.window_start)}|{r.hub_id}|{r.collector}"
                    for r in conn.execute(
                        select(p.c.schedule, p.c.window_start, p.c.hub_id, p.c.collector).where(
                            p.c.hub_id.in_(hub_ids), p.c.state == DONE, p.c.finished == t
                        )
                    )
                }
                e = hub_errors
                conn.execute(
                    update(e)
                    .where(e.c.hub_id.in_(hub_ids), e.c.kind == "unreachable", e.c.closed.is_(None))
                    .values(closed=t)
                )
            out = []
            for claim, ok, error in results:
                if ok:
                    key = f"{claim.schedule}|{utc(claim.window_start)}|{claim.hub.hub_id}|{claim.collector}"
                    out.append(Finished(DONE) if key in recorded else Finished("lost"))
                else:
                    out.append(self._finish_bulk_in(conn, claim, ok, t, error))
            return out

    def _finish_bulk_in(
        self, conn: Connection, claim: BulkClaim, ok: bool, t: datetime, error: str | None
    ) -> Finished:
        p = pull_plan
        if ok:
            res = conn.execute(
                update(p)
                .where(_bulk_claim_key(claim), p.c.state == CLAIMED)
                .values(state=DONE, finished=t, lease_until=None, last_error=None)
            )
            if res.rowcount != 1:
                return Finished("lost")
            _close_errors(conn, claim.hub.hub_id, "unreachable", t)
            return Finished(DONE)
        failures = claim.failures + 1
        if failures >= self.max_tries:
            res = conn.execute(
                update(p)
                .where(_bulk_claim_key(claim), p.c.state == CLAIMED)
                .values(state=FAILED, failures=failures, finished=t, lease_until=None, last_error=error)
            )
            if res.rowcount != 1:
                return Finished("lost")
            context = f"{claim.schedule} window {claim.window_start.isoformat()}"
            self._open_error(conn, claim.hub.hub_id, "unreachable", t, failures, context, error)
            return Finished(FAILED, error_opened=True)
        retry = t + self.backoff.delay(failures, self._rng)
        res = conn.execute(
            update(p)
            .where(_bulk_claim_key(claim), p.c.state == CLAIMED)
            .values(state=PENDING, failures=failures, next_try=retry, lease_until=None, last_error=error)
        )
        return Finished("retry", retry) if res.rowcount == 1 else Finished("lost")

    def _finish_bulk_row(
        self,
        schedule: str,
        window_start: datetime,
        hub_id: str,
        collector: str,
        t: datetime,
        state: str,
        why: str,
    ) -> None:
        p = pull_plan
        with self._engine.begin() as conn:
            conn.execute(
                update(p)
                .where(
                    p.c.schedule == schedule,
                    p.c.window_start == window_start,
                    p.c.hub_id == hub_id,
                    p.c.collector == collector,
                )
                .values(state=state, finished=t, lease_until=None, last_error=why)
            )

    def finish_urgent(
        self,
        claim: UrgentClaim,
        ok: bool,
        now: datetime,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> Finished:
        t = utc(now)
        u = urgent_work
        mine = and_(
            u.c.id == claim.id,
            u.c.collector == claim.collector,
            u.c.claimed == claim.claimed,
            u.c.state == CLAIMED,
        )
        # A command carrying a secret (a meter's new key) keeps it only while it may be sent.
        spent = {"envelope": None} if claim.command_type in SECRET_COMMANDS else {}
        if ok:
            with self._engine.begin() as conn:
                res = conn.execute(
                    update(u)
                    .where(mine)
                    .values(
                        state=DONE,
                        finished=t,
                        lease_until=None,
                        result=json.dumps(result) if result is not None else None,
                        **spent,
                    )
                )
            if spent:
                self.store.scrub_wal()
            return Finished(DONE) if res.rowcount == 1 else Finished("lost")
        with self._engine.begin() as conn:
            failures = claim.failures + 1
            if failures >= self.max_tries:
                res = conn.execute(
                    update(u)
                    .where(mine)
                    .values(
                        state=FAILED,
                        failures=failures,
                        finished=t,
                        lease_until=None,
                        last_error=error,
                        **spent,
                    )
                )
                if res.rowcount != 1:
                    return Finished("lost")
                kind = "command_undelivered" if claim.kind == "command" else "unreachable"
                context = f"{claim.kind} {claim.command_type or ''} job {claim.id}".replace("  ", " ")
                self._open_error(conn, claim.hub.hub_id, kind, t, failures, context, error)
            else:
                retry = t + self.backoff.delay(failures, self._rng)
                res = conn.execute(
                    update(u)
                    .where(mine)
                    .values(
                        state=PENDING, failures=failures, next_try=retry, lease_until=None, last_error=error
                    )
                )
                return Finished("retry", retry) if res.rowcount == 1 else Finished("lost")
        if spent:
            self.store.scrub_wal()
        return Finished(FAILED, error_opened=True)

    def finish_urgent_gone(self, job_id: int, collector: str, t: datetime) -> None:
        u = urgent_work
        with self._engine.begin() as conn:
            conn.execute(
                update(u)
                .where(u.c.id == job_id, u.c.collector == collector)
                .values(
                    state=FAILED,
                    finished=t,
                    lease_until=None,
                    last_error="hub not registered or not active",
                    envelope=case((u.c.command_type.in_(SECRET_COMMANDS), None), else_=u.c.envelope),
                )
            )

    def _open_error(
        self,
        conn: Connection,
        hub_id: str,
        kind: str,
        t: datetime,
        tries: int,
        context: str,
        error: str | None,
    ) -> None:
        e = hub_errors
        ins = self.store._insert(e).values(
            hub_id=hub_id,
            kind=kind,
            opened=t,
            last_seen=t,
            occurrences=1,
            tries=tries,
            context=context,
            last_error=error,
        )
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=["hub_id", "kind"],
                index_where=e.c.closed.is_(None),
                set_={
                    "last_seen": t,
                    "occurrences": e.c.occurrences + 1,
                    "tries": e.c.tries + tries,
                    "context": context,
                    "last_error": error,
                },
            )
        )

    # -- reading the plan -------------------------------------------------------------------
    def window_states(self, schedule: str, window_start: datetime) -> dict[str, int]:
        p = pull_plan
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(p.c.state, func.count())
                .where(p.c.schedule == schedule, p.c.window_start == utc(window_start))
                .group_by(p.c.state)
            ).all()
        return {state: int(n) for state, n in rows}

    def urgent_job(self, job_id: int) -> dict[str, Any]:
        with self._engine.connect() as conn:
            row = conn.execute(select(urgent_work).where(urgent_work.c.id == job_id)).one()
        out = dict(row._mapping)
        for k in ("queued", "next_try", "claimed", "lease_until", "finished"):
            out[k] = _aware(out[k])
        return out

    def open_errors(self, hub_id: str | None = None) -> list[dict[str, Any]]:
        e = hub_errors
        q = select(e).where(e.c.closed.is_(None)).order_by(e.c.id)
        if hub_id is not None:
            q = q.where(e.c.hub_id == hub_id)
        with self._engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def next_due(self, now: datetime) -> datetime | None:
        """The earliest time any pending work becomes due (for sleeping until then, not longer)."""
        t = utc(now)
        with self._engine.connect() as conn:
            a = conn.execute(
                select(func.min(pull_plan.c.next_try)).where(
                    pull_plan.c.state == PENDING, pull_plan.c.deadline > t
                )
            ).scalar_one()
            b = conn.execute(
                select(func.min(urgent_work.c.next_try)).where(urgent_work.c.state == PENDING)
            ).scalar_one()
        found = [_aware(x) for x in (a, b) if x is not None]
        return min(found) if found else None


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


def _bulk_claim_key(c: BulkClaim) -> Any:
    p = pull_plan
    return and_(
        p.c.schedule == c.schedule,
        p.c.window_start == utc(c.window_start),
        p.c.hub_id == c.hub.hub_id,
        p.c.collector == c.collector,
        p.c.claimed == c.claimed,
    )


def _close_errors(conn: Connection, hub_id: str, kind: str, t: datetime) -> None:
    e = hub_errors
    conn.execute(
        update(e).where(e.c.hub_id == hub_id, e.c.kind == kind, e.c.closed.is_(None)).values(closed=t)
    )


def _chunks(rows: list[dict[str, Any]], n: int) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(rows), n):
        yield rows[i : i + n]


__all__ = [
    "Backoff",
    "BulkClaim",
    "Finished",
    "Priority",
    "PullPlan",
    "UrgentClaim",
    "hub_errors",
    "pull_plan",
    "urgent_work",
    "wan_links",
]
