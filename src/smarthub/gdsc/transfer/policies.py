"""Transfer policies set by the GDSC, per hub or per group, and what they make of the pull plan.

A policy says how often a hub's data is retrieved (``half-hourly``: every window, near real
time; ``daily``: once a day inside the policy's time window; ``monthly``: once a month, on the
1st, inside it: the GB minimum for a home that opted out), the time window (minutes past UTC
midnight and its length), the aggregation the hub serves the GDSC's collection at (its privacy
filter enforces it: :mod:`smarthub.hub.transfer_policy`) and a priority (0 first) inside a
window. It is set for a **scope**; the most specific scope that covers a hub decides:

1. ``hub`` — one hub;
2. ``premises-class`` — the class of the hub's premises (``premises_groups``);
3. ``tariff`` — the tariff group of the hub's premises (``premises_groups``);
4. ``supplier`` — the current electricity supplier of the hub's premises (``supply_periods``);
5. ``default`` (key ``*``) — every hub.

A hub no policy covers is pulled every window at full detail, as before policies existed.
(A class before a tariff: a home that opted out stays monthly whatever its tariff.)

Setting a policy writes one row (:meth:`TransferPolicies.set`), whatever the number of hubs the
scope covers: changing 100,000 hubs is one statement. Nothing is sent to the hubs then. The pull
plan joins the policies when it plans a window (:meth:`TransferPolicies.planner`), so the plan
honours a change from the next window it plans; and after each successful pull the hub's
``transfer.policy`` command is queued if the policy in force for it is not the one last queued
(:meth:`TransferPolicies.after_pulls`): the change reaches each hub riding on its next pull, as
urgent work delivered in the same tick, signed with its own counter.

A daily or monthly hub's pull falls in one window of the policy's time window, chosen by a hash
of the hub id, so the hubs of a group spread over the whole time window rather than crowding its
first half-hour. Not done: a pull that fails in its window is retried until the window's plan
deadline only (two windows), then the hub waits for its next day (or month).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Table, and_, case, func, literal, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite

from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.db.database import lock_id
from smarthub.gdsc.fleet.registry import HubRecord, hubs
from smarthub.gdsc.governance.party_tables import supply_periods
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.scheduler import plan_window
from smarthub.gdsc.pull.tables import FAILED, urgent_work
from smarthub.gdsc.transfer.tables import hub_transfer_policy, premises_groups, transfer_policies
from smarthub.wan.contract.bodies import Granularity, TransferPolicy
from smarthub.wan.contract.bodies.transfer import AGGREGATIONS, DAY_MINUTES, FREQUENCIES, MAX_PRIORITY

log = logging.getLogger(__name__)

# The scopes, most specific first: the first that covers a hub decides its policy.
SCOPES = ("hub", "premises-class", "tariff", "supplier", "default")
DEFAULT_KEY = "*"


@dataclass(frozen=True, slots=True)
class Policy:
    """A transfer policy (the fields of :class:`TransferPolicy` but its per-hub version)."""

    frequency: str
    window_start: int = 0  # minutes past UTC midnight
    window_length: int = DAY_MINUTES
    aggregation: str = Granularity.HALF_HOURLY.value
    priority: int = 5

    def __post_init__(self) -> None:
        # The hub parses the command's body with the same rules: check them here, at the GDSC.
        TransferPolicy.parse({**self.fields(), "version": 0})
        if self.frequency not in FREQUENCIES or self.aggregation not in AGGREGATIONS:
            raise ValueError("unknown frequency or aggregation")  # parse has said which already
        if not 0 <= self.priority <= MAX_PRIORITY:
            raise ValueError(f"priority must be 0..{MAX_PRIORITY}")

    def fields(self) -> dict[str, Any]:
        return {
            "frequency": self.frequency,
            "window_start": self.window_start,
            "window_length": self.window_length,
            "aggregation": self.aggregation,
            "priority": self.priority,
        }

    def command(self, version: int) -> TransferPolicy:
        return TransferPolicy.parse({**self.fields(), "version": version})


@dataclass(frozen=True, slots=True)
class ScopedPolicy:
    """A policy row: its scope and key, the policy, its version, who set it and when."""

    scope: str
    key: str
    policy: Policy
    version: int
    set_by: str
    set_at: datetime

    @property
    def source(self) -> str:
        """What identifies this row's content: a hub whose source changes gets a new command."""
        return f"{self.scope}:{self.key}:{self.version}"


@dataclass(frozen=True, slots=True)
class Effective:
    """The policy in force for a hub (None: no policy covers it) and where it comes from."""

    hub: HubRecord
    policy: ScopedPolicy | None


def check_scope(scope: str, key: str) -> None:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    if scope == "default" and key != DEFAULT_KEY:
        raise ValueError(f"the default scope's key is {DEFAULT_KEY!r}")
    if not 0 < len(key) <= 64:
        raise ValueError("a scope key has 1 to 64 characters")


def _micros(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def _row(r: Any) -> ScopedPolicy:
    p = Policy(r.frequency, r.window_start, r.window_length, r.aggregation, r.priority)
    set_at = r.set_at if r.set_at.tzinfo else r.set_at.replace(tzinfo=UTC)
    return ScopedPolicy(r.scope, r.scope_key, p, int(r.version), r.set_by, set_at)


def _slot(hub_id: str, slots: int) -> int:
    """A stable slot in [0, slots) from the hub id (spreads a group over its time window)."""
    return int.from_bytes(hashlib.sha256(hub_id.encode()).digest()[:8], "big") % slots


def due_in(policy: Policy | None, hub_id: str, window_start: datetime, period: timedelta) -> bool:
    """Whether a hub under ``policy`` is pulled in the plan's window starting ``window_start``
    (windows every ``period``). Pure: the planner's rule, testable without a database."""
    if policy is None or policy.frequency == "half-hourly":
        return True
    step = max(1, int(period.total_seconds() // 60))
    ws = window_start.astimezone(UTC)
    if step >= DAY_MINUTES:  # the plan's windows are a day or longer: each one holds the time window
        return policy.frequency == "daily" or ws.day == 1
    minute = ws.hour * 60 + ws.minute
    into = (minute - policy.window_start) % DAY_MINUTES  # how far into the policy's time window
    if into >= policy.window_length:
        return False
    slots = max(1, policy.window_length // step)
    if into // step != _slot(hub_id, slots):
        return False
    if policy.frequency == "monthly":
        opened = ws - timedelta(minutes=into)  # the day the time window opened (it may wrap midnight)
        return opened.day == 1
    return True


class TransferPolicies:
    """The GDSC's transfer policies over ``store``'s database (module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    def _insert(self, table: Table) -> Any:
        return (sqlite.insert if self.dialect == "sqlite" else postgresql.insert)(table)

    # -- setting ------------------------------------------------------------------------------
    def set(self, scope: str, key: str, policy: Policy, actor: str, now: datetime) -> ScopedPolicy:
        """Set (or replace) the policy of one scope: one row, whatever the hubs it covers.

        Its version is the instant of the change in microseconds, above every version held, so
        the newest change is always the highest version (taken under a lock on PostgreSQL)."""
        check_scope(scope, key)
        tp = transfer_policies
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_id("transfer-policies")})
            held = conn.execute(select(func.max(tp.c.version))).scalar()
            version = max(_micros(now), int(held or 0) + 1)
            values = {**policy.fields(), "version": version, "set_by": actor, "set_at": now.astimezone(UTC)}
            ins = self._insert(tp).values(scope=scope, scope_key=key, **values)
            conn.execute(ins.on_conflict_do_update(index_elements=["scope", "scope_key"], set_=values))
        return ScopedPolicy(scope, key, policy, version, actor, now.astimezone(UTC))

    def policies(self) -> list[ScopedPolicy]:
        with self.engine.connect() as conn:
            return self._policies(conn)

    def _policies(self, conn: Connection) -> list[ScopedPolicy]:
        tp = transfer_policies
        order = case({s: i for i, s in enumerate(SCOPES)}, value=tp.c.scope)
        return [_row(r) for r in conn.execute(select(tp).order_by(order, tp.c.scope_key))]

    def assign(self, premises_id: str, premises_class: str | None, tariff: str | None) -> None:
        """Put a premises in a premises class and a tariff group (None: in none)."""
        self.assign_many([(premises_id, premises_class, tariff)])

    def assign_many(self, rows: Iterable[tuple[str, str | None, str | None]]) -> int:
        """:meth:`assign` for many premises in one transaction; how many."""
        values = [{"premises_id": p, "premises_class": c, "tariff": t} for p, c, t in rows]
        if not values:
            return 0
        ins = self._insert(premises_groups)
        stmt = ins.on_conflict_do_update(
            index_elements=["premises_id"],
            set_={"premises_class": ins.excluded.premises_class, "tariff": ins.excluded.tariff},
        )
        with self.engine.begin() as conn:
            for i in range(0, len(values), 5000):
                conn.execute(stmt, values[i : i + 5000])
        return len(values)

    def group_of(self, premises_id: str) -> tuple[str | None, str | None]:
        g = premises_groups
        with self.engine.connect() as conn:
            row = conn.execute(
                select(g.c.premises_class, g.c.tariff).where(g.c.premises_id == premises_id)
            ).one_or_none()
        return (None, None) if row is None else (row.premises_class, row.tariff)

    # -- what is in force ---------------------------------------------------------------------
    def _effective_query(
        self, now: datetime, hub_ids: Sequence[str] | None = None, minute: int | None = None
    ) -> Any:
        """Every active hub (or those of ``hub_ids``) with the key of the policy in force: one
        query, each scope a left join, the most specific that matched winning. With ``minute``
        (past UTC midnight), only the hubs whose policy's time window holds that minute (and
        those pulled every window): the database drops the rest of a daily group."""
        tp, h, g = transfer_policies, hubs, premises_groups
        t = now.astimezone(UTC)
        # The premises' current electricity supplier (supply periods of one fuel do not overlap).
        sp = supply_periods.alias("current_supply")
        current = and_(
            sp.c.premises_id == h.c.premises_id,
            sp.c.fuel == "electricity",
            sp.c.start <= t,
            or_(sp.c.end.is_(None), sp.c.end > t),
        )
        joins = {s: tp.alias(f"p_{i}") for i, s in enumerate(SCOPES)}
        keys = {
            "hub": h.c.hub_id,
            "premises-class": g.c.premises_class,
            "tariff": g.c.tariff,
            "supplier": sp.c.supplier_id,
            "default": literal(DEFAULT_KEY),
        }
        src: Any = h.outerjoin(g, g.c.premises_id == h.c.premises_id).outerjoin(sp, current)
        for s, a in joins.items():
            src = src.outerjoin(a, and_(a.c.scope == s, a.c.scope_key == keys[s]))

        def first(col: str) -> Any:
            return func.coalesce(*(a.c[col] for a in joins.values()))

        # Only which row decides (its key): the rows themselves are few, read once by the caller.
        cols = ["scope", "scope_key"]
        q = select(
            h.c.hub_id, h.c.premises_id, h.c.url, h.c.lfdi, h.c.status, h.c.wan_link,
            *(first(c).label(c) for c in cols),
        ).select_from(src).where(h.c.status == "active")  # fmt: skip
        if minute is not None:
            freq, start, length = first("frequency"), first("window_start"), first("window_length")
            into = (literal(minute) - start + DAY_MINUTES) % DAY_MINUTES
            q = q.where(or_(freq.is_(None), freq == "half-hourly", into < length))
        if hub_ids is not None:
            q = q.where(h.c.hub_id.in_(list(hub_ids)))
        return q.order_by(h.c.hub_id)

    def effective(
        self, now: datetime, hub_ids: Sequence[str] | None = None, minute: int | None = None
    ) -> list[Effective]:
        """The policy in force for every active hub (or those of ``hub_ids``), by hub id (with
        ``minute``: only hubs that may be due then, :meth:`_effective_query`)."""
        with self.engine.connect() as conn:
            rows_of = {(p.scope, p.key): p for p in self._policies(conn)}
            rows = conn.execute(self._effective_query(now, hub_ids, minute)).all()
        return [
            Effective(
                HubRecord(r.hub_id, r.premises_id, r.url, r.lfdi, r.status, r.wan_link),
                None if r.scope is None else rows_of.get((r.scope, r.scope_key)),
            )
            for r in rows
        ]

    def covered(self, scope: str, key: str, now: datetime) -> int:
        """How many active hubs the policy of ``scope``/``key`` is in force for now (a more
        specific scope overrides it for some): counted in the database."""
        q = self._effective_query(now).order_by(None).subquery()
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(q).where(q.c.scope == scope, q.c.scope_key == key)
                ).scalar_one()
            )

    def any(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(transfer_policies.c.scope).limit(1)).first() is not None

    # -- the plan -----------------------------------------------------------------------------
    def plan(
        self, window_start: datetime, window: timedelta, period: timedelta | None = None
    ) -> list[tuple[datetime, HubRecord]]:
        """(due time, hub) for the hubs the policies put in the window starting ``window_start``:
        spread over the window as :func:`plan_window` does, lower priority numbers first."""
        period = period or window
        if not self.any():  # no policy at all: every active hub, every window (as before policies)
            with self.engine.connect() as conn:
                rows = conn.execute(select(hubs).where(hubs.c.status == "active").order_by(hubs.c.hub_id))
                active = [
                    HubRecord(r.hub_id, r.premises_id, r.url, r.lfdi, r.status, r.wan_link) for r in rows
                ]
            return plan_window(window_start, window, active)
        ws = window_start.astimezone(UTC)
        minute = ws.hour * 60 + ws.minute if period < timedelta(days=1) else None
        due = [
            e
            for e in self.effective(window_start, minute=minute)
            if due_in(None if e.policy is None else e.policy.policy, e.hub.hub_id, window_start, period)
        ]
        placed = plan_window(window_start, window, [e.hub for e in due])
        prio = {e.hub.hub_id: 5 if e.policy is None else e.policy.policy.priority for e in due}
        times = [t for t, _ in placed]
        ordered = sorted((h for _, h in placed), key=lambda h: prio[h.hub_id])  # stable: keeps the spread
        return list(zip(times, ordered, strict=True))

    def planner(self, period: timedelta) -> Callable[[datetime, timedelta], list[tuple[datetime, HubRecord]]]:
        """The plan of a retrieval schedule whose windows start every ``period``."""
        return lambda ws, window: self.plan(ws, window, period)

    # -- the hubs' commands -------------------------------------------------------------------
    def stale(self, hub_ids: Sequence[str], now: datetime) -> list[Effective]:
        """Of ``hub_ids``, the hubs whose policy in force is not the one last queued for them
        (or whose last command failed for good)."""
        if not hub_ids or not self.any():  # no policy at all: nothing to send (the usual case)
            return []
        found = {e.hub.hub_id: e for e in self.effective(now, hub_ids) if e.policy is not None}
        if not found:
            return []
        s, u = hub_transfer_policy, urgent_work
        with self.engine.connect() as conn:
            sent = {
                r.hub_id: (r.source, r.state)
                for r in conn.execute(
                    select(s.c.hub_id, s.c.source, u.c.state)
                    .select_from(s.outerjoin(u, u.c.id == s.c.job_id))
                    .where(s.c.hub_id.in_(list(found)))
                )
            }
        out = []
        for hub_id, e in sorted(found.items()):
            assert e.policy is not None
            held = sent.get(hub_id)
            if held is None or held[0] != e.policy.source or held[1] == FAILED:
                out.append(e)
        return out

    def after_pulls(
        self, plan: PullPlan, signer: CommandSigner, hub_ids: Sequence[str], now: datetime
    ) -> list[int]:
        """Queue ``transfer.policy`` for each of ``hub_ids`` (hubs just pulled) whose policy in
        force was not queued for it yet; the job ids. The command's version is the instant of
        queueing (above the one queued before), so a hub moved to a group whose row is older
        still takes it (the hub keeps only a version above the one it holds)."""
        jobs = []
        for e in self.stale(hub_ids, now):
            assert e.policy is not None
            jobs.append(self._queue(plan, signer, e.hub.hub_id, e.policy, now))
        return jobs

    def _queue(
        self, plan: PullPlan, signer: CommandSigner, hub_id: str, sp: ScopedPolicy, now: datetime
    ) -> int:
        s = hub_transfer_policy
        with self.engine.begin() as conn:
            held = conn.execute(select(s.c.version).where(s.c.hub_id == hub_id)).scalar()
            version = max(_micros(now), int(held or 0) + 1)
            body = sp.policy.command(version)
            job = plan.queue_command(signer, hub_id, "transfer.policy", body, now, conn=conn)
            values = {
                "version": version,
                "source": sp.source,
                "job_id": job,
                "queued_at": now.astimezone(UTC),
            }
            ins = self._insert(hub_transfer_policy).values(hub_id=hub_id, **values)
            conn.execute(ins.on_conflict_do_update(index_elements=["hub_id"], set_=values))
        return job


__all__ = ["DEFAULT_KEY", "SCOPES", "Effective", "Policy", "ScopedPolicy", "TransferPolicies", "due_in"]
