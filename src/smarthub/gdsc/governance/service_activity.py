"""The household's view of third-party data services (issue 25 item 3): which services hold a
consent from the current occupant, and what each has read, from the GDSC's own records.

The source document asks that consumers can see who accessed their data and when (§2.5 "access
and privacy controls", §8: the consumer's right to know the recipients); the GDSC already keeps
every access decision in the hash-chained audit log (:mod:`smarthub.gdsc.governance.audit`). This
module reads that log back per household and per service, so the answer is the record itself,
not a counter kept beside it: a read is an audit entry by a third party about the premises whose
action carries a data kind (``read-readings``, ``export``, ``read-events``), and what it read is
the entry's detail — the meter, the granularity asked for and the ranges the policy served
(``ranges``: the period clipped to the consenting tenancy). Refused attempts are counted too.

The messages a service put on the household's display (``command:ihd-message`` entries the policy
allowed it: an ``ihd-messages`` consent, issue 25) are counted beside its reads: not a read of
the household's data, but what it did with the consent.

Only the current occupant's tenancy is looked at (entries from its start until now): the next
occupant must not learn which services the previous one used, nor what they read.

:func:`household_services` is what the services API answers the occupant
(``GET /v1/premises/{id}/services``) and what the GDSC sends the home's display as an
``ihd.services`` command (:mod:`smarthub.gdsc.governance.service_view`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select

from smarthub.gdsc.governance.access import Action
from smarthub.gdsc.governance.audit import AuditEntry, AuditLog
from smarthub.gdsc.governance.parties import (
    Consent,
    DataKind,
    Granularity,
    PartyRepository,
    Role,
    Tenancy,
    UnknownParty,
)
from smarthub.gdsc.governance.parties import (
    consents as consent_rows,
)
from smarthub.gdsc.governance.services import DataService, DataServices, Status

READS_SHOWN = 10  # the most recent reads listed per service (the totals count them all)
NOT_APPLIED = "registered"  # a third party registered before applications existed (no application)
_TICK = timedelta(microseconds=1)  # the audit log's resolution
_READ_ACTIONS = frozenset(a.value for a in Action if a.data_kind is not None)


@dataclass(frozen=True, slots=True)
class ServiceRead:
    """One read a service made of the household's data, as the audit entry records it."""

    seq: int  # the audit entry's sequence number (the consumer can find it in the access log)
    at: datetime
    data_kind: DataKind
    action: str  # read-readings, export, read-events
    meter_id: str | None
    granularity: Granularity | None  # as asked (never finer than the policy allowed: it was served)
    ranges: tuple[tuple[datetime, datetime], ...]  # the data periods served

    @classmethod
    def from_entry(cls, e: AuditEntry) -> ServiceRead:
        d = e.detail
        g = d.get("granularity")
        return cls(
            seq=e.seq,
            at=e.at,
            data_kind=_kind(e.action),
            action=e.action,
            meter_id=d.get("meter_id"),
            granularity=None if g is None else Granularity(g),
            ranges=tuple(
                (datetime.fromisoformat(s), datetime.fromisoformat(u)) for s, u in d.get("ranges") or ()
            ),
        )


@dataclass(frozen=True, slots=True)
class HouseholdService:
    """A third party as the occupant sees it: the GDSC's approval, their consents, its reads."""

    party_id: str
    organisation: str
    purpose: str
    status: str  # the application's status (services.Status), or NOT_APPLIED
    data_kinds: frozenset[DataKind]  # approved (asked for, if not approved yet)
    granularity: Granularity  # the finest approved (asked for); the finest consented if NOT_APPLIED
    retention_days: int | None  # None: no application states one
    consents: tuple[Consent, ...]  # the current occupant's consents to it, live or ended
    reads: tuple[ServiceRead, ...]  # the most recent first, at most READS_SHOWN
    reads_total: int
    refused_total: int  # attempts the policy refused (no consent, too fine, suspended, ...)
    last_read_at: datetime | None
    messages_total: int = 0  # messages it had the GDSC put on the household's display
    last_message_at: datetime | None = None

    def live_consents(self, now: datetime) -> tuple[Consent, ...]:
        return tuple(c for c in self.consents if c.live_at(now))


def household_services(
    engine: Engine,
    audit: AuditLog,
    tenancy: Tenancy,
    now: datetime,
    *,
    offered: bool = True,
) -> list[HouseholdService]:
    """The third parties that hold (or held) a consent from ``tenancy`` or accessed its data, in
    the order of their ids; with ``offered``, every approved service besides (the occupant may
    grant it a consent). ``now`` bounds the entries read (a tenancy with no end)."""
    parties = PartyRepository(engine)
    services = DataServices(engine, audit)
    mine = [
        c
        for c in parties.consents([tenancy.premises_id])
        if c.tenancy_id == tenancy.tenancy_id and _is_third_party(parties, c.party_id)
    ]
    # Up to and including ``now`` (a read in the same instant as the question is already in the log).
    until = now + _TICK if tenancy.end is None or tenancy.end > now else tenancy.end
    logged = [
        e
        for e in audit.accesses_to(tenancy.premises_id, [(tenancy.start, until)])
        if e.role == Role.THIRD_PARTY.value
    ]
    entries = [e for e in logged if e.action in _READ_ACTIONS]
    messages = [e for e in logged if e.action == Action.IHD_MESSAGE.value and e.allow]
    ids = {c.party_id for c in mine} | {e.actor for e in entries}
    known = {s.party_id: s for s in services.all()}
    if offered:
        ids |= {p for p, s in known.items() if s.status is Status.APPROVED}
    return [
        _service(
            parties,
            p,
            known.get(p),
            [c for c in mine if c.party_id == p],
            [e for e in entries if e.actor == p],
            [e for e in messages if e.actor == p],
        )
        for p in sorted(ids)
    ]


def _service(
    parties: PartyRepository,
    party_id: str,
    service: DataService | None,
    consents: Sequence[Consent],
    entries: Sequence[AuditEntry],
    messages: Sequence[AuditEntry] = (),
) -> HouseholdService:
    allowed = [e for e in entries if e.allow]
    if service is not None:
        a = service.application
        organisation, purpose, status = a.organisation, a.purpose, service.status.value
        kinds, finest, retention = a.data_kinds, a.granularity, a.retention_days
    else:  # a third party without an application: what the occupant consented to is all there is
        try:
            organisation = parties.party(party_id).name or party_id
        except UnknownParty:
            organisation = party_id
        purpose, status = "; ".join(sorted({c.purpose for c in consents})), NOT_APPLIED
        kinds = frozenset(k for c in consents for k in c.data_kinds)
        finest = max((c.granularity for c in consents), key=lambda g: g.rank, default=Granularity.NONE)
        retention = None
    return HouseholdService(
        party_id=party_id,
        organisation=organisation,
        purpose=purpose,
        status=status,
        data_kinds=kinds,
        granularity=finest,
        retention_days=retention,
        consents=tuple(consents),
        reads=tuple(ServiceRead.from_entry(e) for e in reversed(allowed[-READS_SHOWN:])),
        reads_total=len(allowed),
        refused_total=len(entries) - len(allowed),
        last_read_at=allowed[-1].at.astimezone(UTC) if allowed else None,
        messages_total=len(messages),
        last_message_at=messages[-1].at.astimezone(UTC) if messages else None,
    )


def _is_third_party(parties: PartyRepository, party_id: str) -> bool:
    try:
        return parties.party(party_id).role is Role.THIRD_PARTY
    except UnknownParty:
        return False


def _kind(action: str) -> DataKind:
    kind = Action(action).data_kind
    assert kind is not None  # only entries of _READ_ACTIONS are read
    return kind


def consenting_premises(engine: Engine, party_ids: Iterable[str]) -> set[str]:
    """The premises whose occupants (any tenancy) consented to any of ``party_ids``."""
    ids = sorted(set(party_ids))
    if not ids:
        return set()
    with engine.connect() as conn:
        q = select(consent_rows.c.premises_id).where(consent_rows.c.party_id.in_(ids)).distinct()
        return {r[0] for r in conn.execute(q)}
