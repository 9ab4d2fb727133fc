"""Third-party data services: their application to the GDSC and the operator's decisions on it.

A third party applies (organisation, purpose, and the data it asks for: data kinds, the finest
granularity, how long it keeps what it receives); the GDSC operator approves or refuses it with a
reason; an approved service may later be suspended (and resumed) or revoked (final). One
application per party (``data_services``, keyed by the party id): a refused party may apply again,
which replaces the refused application.

What an approval means to the access policy (:func:`smarthub.gdsc.governance.access.decide`): a
third party with an application acts only while it is ``approved``, only for the data kinds it was
approved for and never finer than the approved granularity, whatever consent an occupant gave it
(a consent is the occupant's permission; the approval is the GDSC's, and both are needed). The
party's ``approved`` flag follows the status, so the token endpoint stops issuing tokens to a
suspended or revoked service. Third parties registered before this existed (no application) are
decided on their ``approved`` flag alone, as before.

Every application and decision is appended to the audit log (``service-apply``,
``service-approve``, ...) with the reason and what was approved. :class:`DataServices` is the only
code that reads or writes the table; issuing the approved service's OAuth2 client is
:mod:`smarthub.gdsc.api.auth.onboarding`'s.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Engine, ForeignKey, Integer, String, Table, Text, select, update

from smarthub.gdsc.db.database import metadata
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.parties import DataKind, Granularity, Party, PartyRepository, Role, utc
from smarthub.gdsc.governance.party_tables import parties

data_services = Table(
    "data_services",
    metadata,
    Column("party_id", String(64), ForeignKey("parties.party_id"), primary_key=True),
    Column("organisation", Text, nullable=False),
    Column("purpose", Text, nullable=False),
    Column("data_kinds", Text, nullable=False),  # JSON list of DataKind values
    Column("granularity", String(16), nullable=False),  # the finest asked for (and approved)
    Column("retention_days", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=False, default=""),  # of the last decision
    Column("applied_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True)),
    Column("decided_by", String(64)),
    Column("client_id", String(64)),  # the OAuth2 client issued on approval
)


class Status(enum.StrEnum):
    APPLIED = "applied"
    APPROVED = "approved"
    REFUSED = "refused"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


class Decision(enum.StrEnum):
    APPROVE = "approve"
    REFUSE = "refuse"
    SUSPEND = "suspend"
    RESUME = "resume"
    REVOKE = "revoke"


# decision -> (the statuses it may be taken from, the status it leads to)
TRANSITIONS: dict[Decision, tuple[frozenset[Status], Status]] = {
    Decision.APPROVE: (frozenset({Status.APPLIED}), Status.APPROVED),
    Decision.REFUSE: (frozenset({Status.APPLIED}), Status.REFUSED),
    Decision.SUSPEND: (frozenset({Status.APPROVED}), Status.SUSPENDED),
    Decision.RESUME: (frozenset({Status.SUSPENDED}), Status.APPROVED),
    Decision.REVOKE: (frozenset({Status.APPROVED, Status.SUSPENDED}), Status.REVOKED),
}
MAX_RETENTION_DAYS = 3650


@dataclass(frozen=True, slots=True)
class Application:
    """What a third party asks the GDSC for."""

    organisation: str
    purpose: str
    data_kinds: frozenset[DataKind]
    granularity: Granularity
    retention_days: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_kinds", frozenset(DataKind(k) for k in self.data_kinds))
        object.__setattr__(self, "granularity", Granularity(self.granularity))
        if not self.organisation.strip():
            raise ValueError("an application must name the organisation")
        if not self.purpose.strip():
            raise ValueError("an application must state its purpose")
        if not self.data_kinds:
            raise ValueError("an application must ask for at least one data kind")
        if self.granularity is Granularity.NONE and self.data_kinds & {
            DataKind.READINGS,
            DataKind.APPLIANCES,
        }:
            raise ValueError("readings at granularity 'none' is no readings: ask for a granularity")
        if not 0 < self.retention_days <= MAX_RETENTION_DAYS:
            raise ValueError(f"retention must be 1 to {MAX_RETENTION_DAYS} days, got {self.retention_days}")


@dataclass(frozen=True, slots=True)
class DataService:
    """A third party's application and where it stands (what the access policy is told)."""

    party_id: str
    application: Application
    status: Status
    reason: str
    applied_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None
    client_id: str | None = None

    @property
    def approved(self) -> bool:
        return self.status is Status.APPROVED


class ServiceError(ValueError):
    """A decision that does not apply to the application as it stands (the API answers 409)."""


class UnknownService(LookupError):
    pass


class DataServices:
    """Applications of third-party data services and the operator's decisions (module doc)."""

    def __init__(self, engine: Engine, audit: AuditLog | None = None) -> None:
        self.engine = engine
        self.audit = audit or AuditLog(engine)
        self.parties = PartyRepository(engine)

    def apply(self, party_id: str, application: Application, now: datetime, *, name: str = "") -> DataService:
        """Record ``party_id``'s application (creating the third-party party if it does not exist
        yet); the party is not approved until the operator decides. A party whose application is
        pending or decided (other than refused) cannot apply again (:class:`ServiceError`)."""
        now = utc(now)
        with self.engine.begin() as conn:
            try:
                party = self.parties.party(party_id, conn)
            except LookupError:
                party = Party(party_id, Role.THIRD_PARTY, name or application.organisation, approved=False)
                self.parties.add_party(party, conn)
            if party.role is not Role.THIRD_PARTY:
                raise ServiceError(
                    f"{party_id} is a {party.role.value}: only third parties apply as data services"
                )
            old = conn.execute(select(data_services).where(data_services.c.party_id == party_id)).first()
            if old is not None and old.status != Status.REFUSED:
                raise ServiceError(
                    f"{party_id} already has an application ({old.status}); it cannot apply again"
                )
            values = {
                "organisation": application.organisation,
                "purpose": application.purpose,
                "data_kinds": json.dumps(sorted(k.value for k in application.data_kinds)),
                "granularity": application.granularity.value,
                "retention_days": application.retention_days,
                "status": Status.APPLIED.value,
                "reason": "",
                "applied_at": now,
                "decided_at": None,
                "decided_by": None,
                "client_id": None,
            }
            if old is None:
                conn.execute(data_services.insert().values(party_id=party_id, **values))
            else:
                conn.execute(
                    update(data_services).where(data_services.c.party_id == party_id).values(**values)
                )
            conn.execute(update(parties).where(parties.c.party_id == party_id).values(approved=0))
        service = self.service(party_id)
        self._audit(
            now, party_id, Role.THIRD_PARTY.value, "service-apply", party_id, "application received", service
        )
        return service

    def decide(
        self,
        party_id: str,
        decision: Decision,
        reason: str,
        by: str,
        now: datetime,
        *,
        client_id: str | None = None,
    ) -> DataService:
        """Take ``decision`` on ``party_id``'s application, by operator ``by``, with ``reason``
        (required for every decision but an approval). The party's ``approved`` flag follows;
        ``client_id`` is the OAuth2 client issued with an approval."""
        now = utc(now)
        decision = Decision(decision)
        if decision is not Decision.APPROVE and not reason.strip():
            raise ValueError(f"a decision to {decision.value} must give its reason")
        allowed_from, to = TRANSITIONS[decision]
        with self.engine.begin() as conn:
            r = conn.execute(select(data_services).where(data_services.c.party_id == party_id)).first()
            if r is None:
                raise UnknownService(f"no application from {party_id!r}")
            if Status(r.status) not in allowed_from:
                raise ServiceError(
                    f"cannot {decision.value} {party_id}: its application is {r.status} "
                    f"(only from {', '.join(sorted(s.value for s in allowed_from))})"
                )
            values: dict[str, object] = {
                "status": to.value,
                "reason": reason.strip(),
                "decided_at": now,
                "decided_by": by,
            }
            if client_id is not None:
                values["client_id"] = client_id
            conn.execute(update(data_services).where(data_services.c.party_id == party_id).values(**values))
            conn.execute(
                update(parties)
                .where(parties.c.party_id == party_id)
                .values(approved=int(to is Status.APPROVED))
            )
        service = self.service(party_id)
        self._audit(
            now, by, Role.OPERATOR.value, f"service-{decision.value}", party_id, reason.strip(), service
        )
        return service

    def service(self, party_id: str) -> DataService:
        found = self.find(party_id)
        if found is None:
            raise UnknownService(f"no application from {party_id!r}")
        return found

    def find(self, party_id: str) -> DataService | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(data_services).where(data_services.c.party_id == party_id)).first()
        return None if r is None else _service(r)

    def all(self, status: Status | None = None) -> list[DataService]:
        q = select(data_services).order_by(data_services.c.applied_at, data_services.c.party_id)
        if status is not None:
            q = q.where(data_services.c.status == Status(status).value)
        with self.engine.connect() as conn:
            return [_service(r) for r in conn.execute(q)]

    def _audit(
        self, at: datetime, actor: str, role: str, action: str, party_id: str, reason: str, s: DataService
    ) -> None:
        a = s.application
        self.audit.append(
            at=at,
            actor=actor,
            role=role,
            action=action,
            premises_id=None,
            allow=True,
            reason=reason or action,
            detail={
                "service": party_id,
                "status": s.status.value,
                "organisation": a.organisation,
                "purpose": a.purpose,
                "data_kinds": sorted(k.value for k in a.data_kinds),
                "granularity": a.granularity.value,
                "retention_days": a.retention_days,
                "client_id": s.client_id,
            },
        )


def _service(r: Any) -> DataService:
    return DataService(
        party_id=r.party_id,
        application=Application(
            r.organisation,
            r.purpose,
            frozenset(DataKind(k) for k in json.loads(r.data_kinds)),
            Granularity(r.granularity),
            int(r.retention_days),
        ),
        status=Status(r.status),
        reason=r.reason or "",
        applied_at=utc(r.applied_at),
        decided_at=utc(r.decided_at),
        decided_by=r.decided_by,
        client_id=r.client_id,
    )
