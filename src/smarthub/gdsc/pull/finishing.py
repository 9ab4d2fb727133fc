"""Recording what became of a claimed try: done, retried after a backoff, or failed with an
error record opened; every change fenced by the holder and its claim time."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, select, update

from smarthub.gdsc.pull.claims import BulkClaim, UrgentClaim, _bulk_claim_key
from smarthub.gdsc.pull.tables import (
    _FINISH_OK,
    CLAIMED,
    DONE,
    FAILED,
    PENDING,
    SECRET_COMMANDS,
    PlanBase,
    _aware,
    _close_errors,
    hub_errors,
    pull_plan,
    urgent_work,
    utc,
)


@dataclass(frozen=True, slots=True)
class Finished:
    """What became of a try: ``done``, ``retry`` (at ``next_try``), ``failed`` or ``lost`` (lease gone)."""

    state: str
    next_try: datetime | None = None
    error_opened: bool = False


class PlanFinishing(PlanBase):
    """Finishing tries (a part of :class:`~smarthub.gdsc.pull.plan.PullPlan`)."""

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
