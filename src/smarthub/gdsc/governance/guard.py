"""Access enforcement: load the facts, ask the policy, write the audit entry, return the decision.

The one door every data access and every command of the GDSC passes through (the services API
calls it before it touches the store or queues a command), so nothing is served or sent that was
not decided and recorded. Denials are recorded too: a consumer sees attempts as well as accesses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from smarthub.clock import Clock
from smarthub.gdsc.governance.access import (
    DEFAULT_POLICY,
    AccessRequest,
    Action,
    Decision,
    Policy,
    TimeRange,
    decide,
)
from smarthub.gdsc.governance.aggregates import memberships
from smarthub.gdsc.governance.audit import AuditEntry, AuditLog
from smarthub.gdsc.governance.parties import Facts, Granularity, PartyRepository, Role
from smarthub.gdsc.governance.services import DataServices

# Consent management, log look-ups and following one's own job are not access to the premises
# (the command a job carries was logged when it was queued).
_NOT_ACCESS = frozenset({Action.LIST_ACCESS_LOG.value, Action.MANAGE_CONSENT.value, Action.READ_JOB.value})


class AccessDenied(PermissionError):
    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


class AccessGuard:
    def __init__(
        self, parties: PartyRepository, audit: AuditLog, clock: Clock, policy: Policy = DEFAULT_POLICY
    ) -> None:
        self.parties = parties
        self.audit = audit
        self.clock = clock
        self.policy = policy

    def authorize(
        self,
        party_id: str,
        action: Action,
        *,
        premises_id: str | None = None,
        fuel: str | None = None,
        meter_id: str | None = None,
        granularity: Granularity | None = None,
        period: TimeRange | None = None,
        group: frozenset[str] = frozenset(),
        job_owner: str | None = None,
        group_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> Decision:
        """Decide and record. ``detail`` (e.g. a command's body) goes into the audit entry."""
        party = self.parties.party(party_id)
        request = AccessRequest(
            party,
            action,
            self.clock.now(),
            premises_id,
            fuel,
            meter_id,
            granularity,
            period,
            group,
            job_owner,
            group_id,
        )
        grouped = action in (Action.AGGREGATE_QUERY, Action.PORTFOLIO)
        premises = sorted(group) if grouped else [premises_id or ""]
        if action in (Action.NETWORK_READ, Action.NETWORK_EDIT, Action.DUOS_DATASET):
            # A node: who operates it (and above); no node: the areas the caller operates.
            ops = self.parties.operations([group_id]) if group_id else self.parties.areas_of(party_id)
            facts = Facts(operations=ops)
        else:
            facts = self.parties.facts(premises)
        if party.role is Role.THIRD_PARTY:  # what the GDSC approved it for (if it applied)
            facts = replace(facts, service=DataServices(self.parties.engine, self.audit).find(party_id))
        decision = decide(request, facts, self.policy)
        record: dict[str, Any] = {
            "fuel": fuel,
            "meter_id": meter_id,
            "granularity": granularity.value if granularity else None,
            "period": _range(period) if period else None,
            "max_granularity": decision.max_granularity.value,
            "ranges": [_range(r) for r in decision.ranges],
        }
        if grouped:
            record["group_size"] = len(group)  # not the members: the log itself must not de-anonymise
        if detail:
            record["detail"] = dict(detail)
        self.audit.append(
            at=request.at,
            actor=party.party_id,
            role=party.role.value,
            action=action.value,
            premises_id=premises_id,
            allow=decision.allow,
            reason=decision.reason,
            detail=record,
            group_id=group_id,  # the members' access logs list the read (access_log)
        )
        return decision

    def require(self, party_id: str, action: Action, **kwargs: Any) -> Decision:
        decision = self.authorize(party_id, action, **kwargs)
        if not decision.allow:
            raise AccessDenied(decision)
        return decision

    def access_log(self, party_id: str, premises_id: str, period: TimeRange) -> list[AuditEntry]:
        """Who accessed (or tried to access) a premises' data and when, as far as the asker may see:
        a consumer only for the time of their own tenancy."""
        decision = self.require(party_id, Action.LIST_ACCESS_LOG, premises_id=premises_id, period=period)
        ranges = [(r.start, r.end) for r in decision.ranges]
        # Aggregate reads of a group the premises belonged to while the data read was recorded.
        groups = [(m.group_id, m.start, m.end) for m in memberships(self.parties.engine, premises_id)]
        # Access to data and commands on the premises; consent management and log look-ups are not.
        return [e for e in self.audit.accesses_to(premises_id, ranges, groups) if e.action not in _NOT_ACCESS]


def _range(r: TimeRange) -> list[str]:
    return [_iso(r.start), _iso(r.end)]


def _iso(t: datetime) -> str:
    return t.isoformat()
