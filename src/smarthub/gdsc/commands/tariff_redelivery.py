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

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine

from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.redelivery import given_up
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
    out = []
    for hub_id, body in given_up(engine, TYPE, TariffUpdate.parse, lambda b: b.fuel, now, lookback):
        job = plan.queue_command(signer, hub_id, TYPE, body, now)
        out.append(Redelivered(hub_id, body.fuel, body.tariff.tariff_id, body.tariff.version, job))
    return out
