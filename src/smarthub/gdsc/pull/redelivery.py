"""Commands given up undelivered, found again once their hub is back.

The plan tries a command a few times and then marks its job failed; a hub away for longer (a
WAN outage of days, a hub off at the wall) would never get it. For the commands whose latest
state matters (a consent decision per party, a tariff per fuel), the latest such job per hub and
subject is queued again — by its owner, signed afresh — once the hub has answered a pull since
the job ended; a later job for the same subject, delivered or waiting, supersedes it. Used by
:meth:`smarthub.gdsc.governance.consent_sync.ConsentSync.redeliver` and
:func:`smarthub.gdsc.commands.tariff_redelivery.redeliver_tariffs`."""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import Engine, select

from smarthub.gdsc.fleet.registry import hubs
from smarthub.gdsc.pull.log import last_answered
from smarthub.gdsc.pull.tables import FAILED, _aware, urgent_work

B = TypeVar("B")


def given_up(
    engine: Engine,
    command_type: str,
    parse: Callable[[dict[str, object]], B],
    subject: Callable[[B], Hashable],
    now: datetime,
    lookback: timedelta,
) -> list[tuple[str, B]]:
    """(hub id, body) of the latest ``command_type`` job per hub and ``subject(body)`` queued
    within ``lookback`` that failed, whose hub is active and has answered a pull since the job
    ended. A body ``parse`` refuses (``ValueError``) is passed over."""
    u = urgent_work
    cols = (u.c.id, u.c.hub_id, u.c.state, u.c.finished, u.c.envelope)
    with engine.connect() as conn:
        failed_jobs = conn.execute(
            select(*cols).where(
                u.c.command_type == command_type, u.c.state == FAILED, u.c.queued >= now - lookback
            )
        ).all()
        if not failed_jobs:
            return []
        # The jobs queued since for those hubs: a later one for the same subject supersedes.
        later = conn.execute(
            select(*cols).where(
                u.c.command_type == command_type,
                u.c.hub_id.in_(sorted({r.hub_id for r in failed_jobs})),
                u.c.id > min(r.id for r in failed_jobs),
            )
        ).all()
        latest = {}
        for r in sorted({*failed_jobs, *later}, key=lambda r: r.id):
            body = _body(r.envelope, parse)
            if body is not None:
                latest[(r.hub_id, subject(body))] = (r, body)
        failed = [(r, b) for r, b in latest.values() if r.state == FAILED and r.finished is not None]
        if not failed:
            return []
        hub_ids = {r.hub_id for r, _ in failed}
        answered = last_answered(conn, hub_ids)
        active = {
            h
            for (h,) in conn.execute(
                select(hubs.c.hub_id).where(hubs.c.hub_id.in_(sorted(hub_ids)), hubs.c.status == "active")
            )
        }
    out = []
    for r, body in failed:
        back = answered.get(r.hub_id)
        if r.hub_id in active and back is not None and back > _aware(r.finished):
            out.append((r.hub_id, body))  # else ended, or not back yet: looked at again next time
    return out


def _body(envelope: str | None, parse: Callable[[dict[str, object]], B]) -> B | None:
    try:
        return parse(json.loads(json.loads(envelope or "")["payload"])["body"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return None  # not ours to judge here: the job's own record says what it was


__all__ = ["given_up"]
