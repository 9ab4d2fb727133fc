"""Claiming work from the shared pull plan: urgent jobs first, then due bulk pulls within each
WAN link's limit, as leases (see :mod:`smarthub.gdsc.pull.plan`).

The choice inside a bulk claim — one pull per hub, earliest due first, within each link's room,
a dead holder's finished pull resolved — is the pure :func:`choose_bulk`; the claim around it
reads the due rows and the links' room under lock and writes what was chosen.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, and_, case, exists, func, or_, select, update
from sqlalchemy.orm import aliased

from smarthub.gdsc.fleet.registry import HubRecord, hubs
from smarthub.gdsc.pull.log import pull_log
from smarthub.gdsc.pull.tables import (
    _CLAIM,
    CLAIMED,
    DONE,
    FAILED,
    PENDING,
    SECRET_COMMANDS,
    PlanBase,
    Priority,
    _aware,
    _bulk_key,
    pull_plan,
    urgent_work,
    utc,
    wan_links,
)


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


class DueRow(Protocol):
    """What the choice reads of a due ``pull_plan`` row."""

    @property
    def hub_id(self) -> str: ...
    @property
    def window_start(self) -> datetime: ...
    @property
    def wan_link(self) -> str | None: ...
    @property
    def state(self) -> str: ...


R = TypeVar("R", bound=DueRow)


def one_per_hub(rows: Sequence[R]) -> tuple[list[R], list[R]]:
    """(each hub's latest due row, the hub's other due rows): pulls are incremental, so the pull
    of the latest window brings everything the earlier ones would have."""
    latest: dict[str, R] = {}
    for r in rows:
        if r.hub_id not in latest or r.window_start > latest[r.hub_id].window_start:
            latest[r.hub_id] = r
    return [r for r in rows if latest[r.hub_id] is r], [r for r in rows if latest[r.hub_id] is not r]


def choose_bulk(
    rows: Sequence[R], room: Mapping[str, int], limit: int, finished: Collection[tuple[str, datetime]]
) -> tuple[list[R], list[R]]:
    """Which due bulk rows a claim takes, and which it marks done without a pull; pure.

    ``rows`` are due rows, earliest due first; ``room`` the free pull slots per WAN link;
    ``finished`` the (hub, window) of rows whose expired holder finished the pull unmarked.
    One pull per hub (:func:`one_per_hub`), earliest due first, at most ``limit``, within each
    link's room; a finished row is resolved, not pulled again; a hub's other due rows are
    resolved by the pull taken for it.
    """
    latest, covered = one_per_hub(rows)
    free = dict(room)
    taken: list[R] = []
    resolved: list[R] = []
    for r in latest:
        if len(taken) >= limit:
            break
        if r.state == CLAIMED and (r.hub_id, r.window_start) in finished:
            resolved.append(r)  # the dead holder finished the pull but did not mark it
            continue
        if r.wan_link:
            if free[r.wan_link] <= 0:
                continue
            free[r.wan_link] -= 1
        taken.append(r)
    taken_hubs = {r.hub_id for r in taken}
    resolved += [r for r in covered if r.hub_id in taken_hubs]
    return taken, resolved


class PlanClaims(PlanBase):
    """Claims and lease renewals (a part of :class:`~smarthub.gdsc.pull.plan.PullPlan`)."""

    # -- claiming ---------------------------------------------------------------------------
    def claim_urgent(self, collector: str, now: datetime, limit: int) -> list[UrgentClaim]:
        """Claim up to ``limit`` due urgent jobs, most urgent first.

        Commands for one hub go in counter order (the hub refuses a counter below one it has
        accepted), so a command waits while one with a lower counter for the same hub is still
        open. Counter order is queue order, except where a top-up overtook queued ones
        (:meth:`~smarthub.gdsc.pull.plan.PullPlan.queue_command`).

        A command holding up more urgent ones of its hub is claimed at the most urgent
        priority among them (priority inheritance: Sha, Rajkumar and Lehoczky, "Priority
        Inheritance Protocols", IEEE Trans. Computers 39(9), 1990): a weekly comparison for
        the display (bulk priority) that a stream of urgent work elsewhere kept from its turn
        held its hub's top-ups for days in the 30-day chaos run.
        """
        if limit <= 0:
            return []
        t = utc(now)
        u = urgent_work
        earlier = aliased(urgent_work)
        claimable = or_(u.c.state == PENDING, and_(u.c.state == CLAIMED, u.c.lease_until < t))
        blocked = exists().where(
            earlier.c.hub_id == u.c.hub_id,
            earlier.c.counter < u.c.counter,
            earlier.c.kind == "command",
            earlier.c.state.in_((PENDING, CLAIMED)),
        )
        later = aliased(urgent_work)
        inherited = (
            select(func.min(later.c.priority))
            .where(
                later.c.hub_id == u.c.hub_id,
                later.c.counter >= u.c.counter,
                later.c.kind == "command",
                later.c.state.in_((PENDING, CLAIMED)),
            )
            .scalar_subquery()
        )
        priority = case((u.c.kind == "command", func.coalesce(inherited, u.c.priority)), else_=u.c.priority)
        q = (
            select(u)
            .where(claimable, u.c.next_try <= t, or_(u.c.kind != "command", ~blocked))
            .order_by(priority, u.c.id)
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
            # A row whose lease ran out may have been pulled by its dead holder, unmarked.
            finished = {
                (r.hub_id, r.window_start)
                for r in one_per_hub(rows)[0]
                if r.state == CLAIMED and self._pulled_since(conn, r.hub_id, r.window_start, r.claimed)
            }
            taken, resolved = choose_bulk(rows, room, limit, finished)
            self.takeovers += sum(1 for r in taken if r.state == CLAIMED)
            self.takeovers_found_done += len(resolved)
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

    # -- a claim whose hub is gone --------------------------------------------------------
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

    # -- leases ----------------------------------------------------------------------------
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


def _bulk_claim_key(c: BulkClaim) -> Any:
    p = pull_plan
    return and_(
        p.c.schedule == c.schedule,
        p.c.window_start == utc(c.window_start),
        p.c.hub_id == c.hub.hub_id,
        p.c.collector == c.collector,
        p.c.claimed == c.claimed,
    )
