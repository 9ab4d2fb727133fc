"""A data service's message on a home's in-home display (issue 25): how it is labelled and how
much of the display a service may take.

Whether a service may send one at all is the access policy's (``command:ihd-message``: an approval
covering ``ihd-messages`` and the current occupant's live consent to that kind,
:func:`smarthub.gdsc.governance.access.decide`). Once it may, three things keep its message from
misleading the household or crowding out the supplier's:

* **who it is from**: the ``ihd.message`` carries ``origin`` ``third-party`` and the service's
  name (the organisation of its approved application; else the party's registered name; else its
  id), which the display shows with a mark that it is not the energy supplier. The name is the
  GDSC's record, never the caller's word, so a service cannot pass itself off as the supplier;
* **its priority**: at most :data:`MAX_PRIORITY` (2030.5 TextMessage priority 1, normal); high and
  very high are left to the supplier's messages (a disconnection warning, an emergency credit
  notice), which the display lists first;
* **how many**: at most :data:`DAILY_LIMIT` messages per service and premises in any
  :data:`WINDOW` (a rolling day), counted from the jobs the GDSC queued (``api_jobs``); another is
  refused with 429 and the time the oldest of them leaves the window. The supplier's messages are
  not counted here: they are the supplier's licence obligations, limited as its other commands.
  The count is taken twice: before the policy is asked (so a request over the limit leaves no
  "allowed" entry in the audit log), and again in the transaction that queues the message, after
  the job is written: that transaction holds the hub's command counter row until it commits
  (:meth:`~smarthub.gdsc.pull.plan.PullPlan.queue_command`), so two requests at once for the same
  premises are counted one after the other and never both let through.

The size of a text is the same as the supplier's (the contract's 500 characters, a sender of 64).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, select

from smarthub.gdsc.commands.desk import api_jobs
from smarthub.gdsc.governance.access import Action
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.parties import Party, utc
from smarthub.gdsc.governance.services import DataServices
from smarthub.wan.contract.bodies.home import MAX_SENDER_NAME, MESSAGE_ORIGINS

MAX_PRIORITY = 1  # 2030.5 TextMessage priority: normal
DAILY_LIMIT = 3
WINDOW = timedelta(hours=24)
ORIGIN = MESSAGE_ORIGINS[1]  # "third-party"


class TooManyMessages(Exception):
    """The service has sent :data:`DAILY_LIMIT` messages to the premises within :data:`WINDOW`."""

    def __init__(self, party_id: str, premises_id: str, retry_after: timedelta) -> None:
        super().__init__(
            f"data service {party_id} has sent {DAILY_LIMIT} messages to {premises_id}'s display in "
            f"the last {WINDOW.total_seconds() / 3600:.0f} hours, the most it may"
        )
        self.retry_after = retry_after


def sender_name(engine: Engine, audit: AuditLog, party: Party) -> str:
    """The name the display shows for a data service: its approved organisation, else the
    party's registered name, else its id (the GDSC's records only)."""
    service = DataServices(engine, audit).find(party.party_id)
    if service is not None:
        return service.application.organisation.strip()[:MAX_SENDER_NAME]
    return (party.name.strip() or party.party_id)[:MAX_SENDER_NAME]


def check_quota(
    db: Engine | Connection, party_id: str, premises_id: str, now: datetime, *, queued: bool = False
) -> None:
    """Raise :class:`TooManyMessages` if another message now would exceed the limit; ``queued``:
    the message is already among the jobs (in ``db``'s transaction) and counts as sent."""
    if isinstance(db, Engine):
        with db.connect() as conn:
            return check_quota(conn, party_id, premises_id, now, queued=queued)
    q = (
        select(api_jobs.c.queued)
        .where(
            api_jobs.c.party_id == party_id,
            api_jobs.c.premises_id == premises_id,
            api_jobs.c.action == Action.IHD_MESSAGE.value,
            api_jobs.c.queued > utc(now) - WINDOW,
        )
        .order_by(api_jobs.c.queued)
    )
    sent = [utc(r[0]) for r in db.execute(q)]
    limit = DAILY_LIMIT + (1 if queued else 0)
    if len(sent) >= limit:
        oldest = sent[len(sent) - limit]  # when it leaves the window, there is room for one more
        raise TooManyMessages(party_id, premises_id, oldest + WINDOW - utc(now))
    return None
