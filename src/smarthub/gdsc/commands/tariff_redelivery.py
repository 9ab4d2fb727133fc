"""Tariffs given up undelivered are sent again once the hub is back.

A ``tariff.update`` is queued once (:func:`smarthub.gdsc.commands.tariffs.distribute_tariff`, a
supplier's API request); the plan tries it a few times and then marks it failed. A hub away for
longer than those tries (a WAN outage of days, a hub off at the wall) then kept the old tariff
for good, pricing the home's display and its prepayment on it, while the GDSC's catalogue and the
supplier believed the new one in force (seen in the chaos run). As consents, vouchers, renewals
and recovery steps already are, the latest ``tariff.update`` of each hub and fuel that failed is
queued again — signed afresh, so with a counter the hub has not seen — once the hub has answered a
pull since the job ended; a later ``tariff.update`` of the same fuel, delivered or waiting,
supersedes it. The hub takes a version at most once (it refuses an older or equal one), so a
tariff that did arrive but whose answer was lost is refused harmlessly."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select

from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.registry import hubs
from smarthub.gdsc.pull.log import last_answered
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import FAILED, _aware, urgent_work
from smarthub.wan.contract.bodies import TariffUpdate

REDELIVERY_LOOKBACK = timedelta(days=30)
TYPE = "tariff.update"


@dataclass(frozen=True, slots=True)
class Redelivered:
    hub_id: str
    fuel: str
    tariff_id: str
    version: int
    job: int


def redeliver_tariffs(
    engine: Engine,
    plan: PullPlan,
    signer: CommandSigner,
    now: datetime,
    lookback: timedelta = REDELIVERY_LOOKBACK,
) -> list[Redelivered]:
    """Queue again each hub's latest failed ``tariff.update`` per fuel (queued within
    ``lookback``) if the hub is active and has answered a pull since that job ended (module
    docstring); what was queued."""
    u = urgent_work
    cols = (u.c.id, u.c.hub_id, u.c.state, u.c.finished, u.c.envelope)
    with engine.connect() as conn:
        given_up = conn.execute(
            select(*cols).where(u.c.command_type == TYPE, u.c.state == FAILED, u.c.queued >= now - lookback)
        ).all()
        if not given_up:
            return []
        later = conn.execute(
            select(*cols).where(
                u.c.command_type == TYPE,
                u.c.hub_id.in_(sorted({r.hub_id for r in given_up})),
                u.c.id > min(r.id for r in given_up),
            )
        ).all()
        latest = {}
        for r in sorted({*given_up, *later}, key=lambda r: r.id):
            body = _body(r.envelope)
            if body is not None:
                latest[(r.hub_id, body.fuel)] = (r, body)
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
        if r.hub_id not in active or back is None or back <= _aware(r.finished):
            continue  # ended, or not back yet: looked at again at the next run
        job = plan.queue_command(signer, r.hub_id, TYPE, body, now)
        out.append(Redelivered(r.hub_id, body.fuel, body.tariff.tariff_id, body.tariff.version, job))
    return out


def _body(envelope: str | None) -> TariffUpdate | None:
    try:
        return TariffUpdate.parse(json.loads(json.loads(envelope or "")["payload"])["body"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return None  # not ours to judge here: the job's own record says what it was
