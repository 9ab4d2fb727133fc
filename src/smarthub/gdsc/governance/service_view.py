"""The household's data services sent to its display as ``ihd.services`` (issue 25 item 3).

The display cannot ask the GDSC (the hub is only ever called through the pull channel), and the
hub never sees the reads a service makes of the GDSC's copy of the data; so the GDSC sends each
home the view its occupant gets from the API
(:func:`~smarthub.gdsc.governance.service_activity.household_services`: which services hold
or held a consent of the current tenancy or read its data, their live consents and most recent
reads), whole, as a signed command queued in the shared plan.

:class:`ServiceViews` (an upkeep step) sends it when it changed: it follows the audit chain by
sequence number from the last entry it looked at, and a premises is sent its view again when a
third party read (or tried to read) its data, its occupant granted or revoked a consent, the GDSC
operator decided on a service that holds a consent there, or a new tenancy began (the new
occupant's view is empty: the display must stop showing the previous one's). Reads alone send it
at most once per :data:`READ_RESEND` (held until then), the others at once. The first run, with
no mark, looks back :data:`LOOKBACK`; sending a view again is harmless (the display keeps the
latest ``as_of``). A consent that merely expired needs no send: the display hides a consent past
its ``expires``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, and_, or_, select

from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.governance.access import Action, current_tenancy
from smarthub.gdsc.governance.audit import AuditLog, audit_log
from smarthub.gdsc.governance.consent_sync import active_hubs
from smarthub.gdsc.governance.parties import PartyRepository, Role
from smarthub.gdsc.governance.party_tables import parties, tenancies
from smarthub.gdsc.governance.service_activity import (
    HouseholdService,
    consenting_premises,
    household_services,
)
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import Priority
from smarthub.wan.contract.bodies.services import (
    MAX_CONSENTS,
    MAX_PERIODS,
    MAX_READS,
    MAX_SERVICES,
    IhdServices,
    ServiceConsent,
    ServiceReadSummary,
    ServiceSummary,
)

log = logging.getLogger(__name__)

LOOKBACK = timedelta(days=7)  # how far back the first run looks for changes
READ_RESEND = timedelta(hours=1)  # a view changed by reads alone is sent at most this often
_READS = frozenset(a.value for a in Action if a.data_kind is not None)
_DECISIONS = frozenset({"service-approve", "service-suspend", "service-resume", "service-revoke"})


def view_body(engine: Engine, audit: AuditLog, premises_id: str, now: datetime) -> IhdServices:
    """The premises' current occupant's data services as of ``now`` (empty when vacant)."""
    tenancy = current_tenancy(PartyRepository(engine).facts([premises_id]), premises_id, now)
    if tenancy is None:
        return IhdServices(now, ())
    found = household_services(engine, audit, tenancy, now, offered=False)
    # Those holding a consent first, then the latest readers; the display shows a bounded list.
    found.sort(key=lambda s: (not s.live_consents(now), -s.last_read_at.timestamp() if s.last_read_at else 0))
    return IhdServices(now, tuple(_summary(s, now) for s in found[:MAX_SERVICES]))


def _summary(s: HouseholdService, now: datetime) -> ServiceSummary:
    return ServiceSummary(
        service_id=s.party_id,
        organisation=s.organisation[:120],
        purpose=s.purpose[:200],
        status=s.status,
        consents=tuple(
            ServiceConsent(
                c.consent_id,
                tuple(sorted(k.value for k in c.data_kinds)),
                c.granularity.value,
                c.granted_at,
                c.expires_at,
            )
            for c in s.live_consents(now)[-MAX_CONSENTS:]
        ),
        reads=tuple(
            ServiceReadSummary(
                r.at,
                r.data_kind.value,
                None if r.granularity is None else r.granularity.value,
                r.meter_id,
                r.ranges[:MAX_PERIODS],
            )
            for r in s.reads[:MAX_READS]
        ),
        reads_total=s.reads_total,
        refused_total=s.refused_total,
        last_read=s.last_read_at,
    )


@dataclass
class ServiceViews:
    """Sends each home whose data services changed its new view (module docstring)."""

    engine: Engine
    audit: AuditLog
    plan: PullPlan
    signer: CommandSigner
    mark: int | None = None  # the last audit entry looked at
    since: datetime | None = None  # tenancies that began after this are new since the last run
    sent: dict[str, list[int]] = field(default_factory=dict)  # the last run's jobs, per premises
    last_sent: dict[str, datetime] = field(default_factory=dict)  # per premises
    held: set[str] = field(default_factory=set)  # views changed by reads, waiting for READ_RESEND

    def tick(self, now: datetime) -> dict[str, list[int]]:
        """Queue ``ihd.services`` for every active hub of each premises whose view changed since
        the last run; the jobs, per premises. A change by reads alone is sent at most once per
        :data:`READ_RESEND` per premises (a service reading a home every few minutes would
        otherwise cost it a command at every run); a consent, decision or tenancy change at once."""
        since = self.since or now - LOOKBACK
        urgent, read, mark = self._changed(since, now)
        waiting = self.held | read
        due = {
            p for p in waiting if now - self.last_sent.get(p, datetime.min.replace(tzinfo=UTC)) >= READ_RESEND
        }
        self.held = waiting - due - urgent
        self.sent = {}
        for premises_id in sorted(urgent | due):
            hubs = active_hubs(self.engine, premises_id)
            if not hubs:
                continue
            body = view_body(self.engine, self.audit, premises_id, now)
            self.sent[premises_id] = [
                self.plan.queue_command(self.signer, h, IhdServices.TYPE, body, now, Priority.BULK)
                for h in hubs
            ]
            self.last_sent[premises_id] = now
        self.mark, self.since = mark, now
        if self.sent:
            log.info("data services views sent to %d premises", len(self.sent))
        return self.sent

    def _changed(self, since: datetime, now: datetime) -> tuple[set[str], set[str], int | None]:
        """(premises changed by consents, decisions or tenancies; premises read; the new mark)."""
        t = audit_log
        after = t.c.seq > self.mark if self.mark is not None else t.c.at >= since.astimezone(UTC)
        q = select(t.c.seq, t.c.actor, t.c.action, t.c.premises_id, t.c.allow, t.c.body).where(after)
        changed: set[str] = set()
        read: set[str] = set()
        decided: set[str] = set()
        readers: dict[str, set[str]] = {}  # actor -> premises it read or tried to
        mark = self.mark
        with self.engine.connect() as conn:
            for r in conn.execute(q.order_by(t.c.seq)):
                mark = r.seq
                if r.action in _READS and r.premises_id is not None:
                    readers.setdefault(r.actor, set()).add(r.premises_id)
                elif r.action == Action.MANAGE_CONSENT.value and r.allow and r.premises_id is not None:
                    op = json.loads(r.body).get("detail", {}).get("detail", {}).get("op")
                    if op in ("grant", "revoke"):
                        changed.add(r.premises_id)
                elif r.action in _DECISIONS:
                    service = json.loads(r.body).get("detail", {}).get("service")
                    if isinstance(service, str):
                        decided.add(service)
            if readers:
                third = conn.execute(
                    select(parties.c.party_id).where(
                        parties.c.party_id.in_(sorted(readers)), parties.c.role == Role.THIRD_PARTY.value
                    )
                )
                for (party_id,) in third:
                    read |= readers[party_id]
            # A tenancy that began or ended: the new occupant's view (or a vacant home's) is empty.
            # Both bounds inclusive (a move at the instant of the last run is sent twice, which is
            # harmless); a move recorded later than it happened, back-dated before the last run,
            # is not seen here (the next change at the premises sends the view).
            ten, lo, hi = tenancies.c, since.astimezone(UTC), now.astimezone(UTC)
            moved = conn.execute(
                select(ten.premises_id).where(
                    or_(and_(ten.start >= lo, ten.start <= hi), and_(ten.end >= lo, ten.end <= hi))
                )
            )
            changed |= {p for (p,) in moved}
        changed |= consenting_premises(self.engine, decided)
        return changed, read, mark
