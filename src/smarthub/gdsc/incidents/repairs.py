"""The GDSC's housekeeping loop: review the error log, turn queued remote repairs into commands.

Every ``every`` (on the injected clock) the error log escalates incidents that have waited
long enough (:meth:`~smarthub.gdsc.incidents.error_log.ErrorLog.review`), and each remote repair it
queued is signed with the operator key and put in the shared pull plan as urgent work, so the
scheduler delivers it at its next tick like any other command.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from smarthub.clock import Clock
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.incidents.error_log import ErrorLog
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import Priority
from smarthub.wan.contract.bodies import parse_body
from smarthub.wan.contract.commands import MalformedCommand

log = logging.getLogger(__name__)


def dispatch_repairs(error_log: ErrorLog, signer: CommandSigner, plan: PullPlan, now: datetime) -> int:
    """Queue every repair the error log decided on; how many were queued."""
    queued = 0
    for r in error_log.queued_repairs():
        try:  # stored as the contract's JSON (ErrorLog._repair_body)
            body = parse_body(r.command, r.body)
        except MalformedCommand as err:  # (a row written before the bodies were typed)
            log.warning("repair %d for hub %s not sent: %s", r.repair_id, r.hub_id, err)
            error_log.repair_sent(
                r.repair_id, {"status": "refused", "code": "malformed", "detail": str(err)}, now
            )
            continue
        job = plan.queue_command(signer, r.hub_id, r.command, body, now, Priority.ON_DEMAND)
        error_log.repair_queued(r.repair_id, job, now)
        queued += 1
    return queued


async def run_operations(
    error_log: ErrorLog,
    signer: CommandSigner,
    plan: PullPlan,
    clock: Clock,
    until: datetime,
    every: timedelta = timedelta(minutes=15),
) -> None:
    t = clock.now()
    while t < until:
        await clock.sleep_until(t)
        try:
            await asyncio.to_thread(error_log.review, t)
            n = await asyncio.to_thread(dispatch_repairs, error_log, signer, plan, t)
            if n:
                log.info("queued %d remote repairs", n)
        except Exception:  # the loop must outlive a database hiccup; the next round retries
            log.exception("error-log housekeeping failed at %s", t)
        t += every
