"""Consent revocations the consumer asked for at the home's display, applied at the GDSC.

The consumer taps "Stop sharing" on the in-home display; the hub keeps the request and the
collector reads it with its next pull (:mod:`smarthub.wan.contract.revocations`). Here each
request is decided and applied through the governance the services API's
``DELETE /v1/premises/{id}/consents/{consent_id}`` uses: the access guard decides and audits
``manage_consent`` with the *occupant* as the actor (the display is theirs: a screen paired at
their hub), then the party repository revokes the consent (a syncing repository queues the hub's
``consent.set``, and the upkeep sends the display its changed ``ihd.services`` view).

What the hub's identity is trusted for: the collector's mutual TLS names the hub (its pinned
LFDI), and the registry binds that hub to one premises. A request is applied only for a consent
of *that* premises' *current* tenancy; anything else (another premises' consent, a previous
occupant's, an unknown id, a hub no longer active) is refused, audited with the hub as the actor,
and logged: a compromised hub can withdraw its own occupant's consents, which the occupant could
do anyway, and nobody else's.

Idempotent: a consent already revoked (the answer to an earlier pull was lost, or the occupant
revoked it through the API meanwhile) is answered ``applied`` with the time it was revoked,
without a second revocation or audit entry.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from smarthub.gdsc.fleet.registry import hubs
from smarthub.gdsc.governance.access import Action, current_tenancy
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.wan.contract.revocations import APPLIED, REFUSED, RevocationAnswer, RevocationRequest

log = logging.getLogger(__name__)

HUB_ROLE = "hub"  # the audit's role for a request refused before any party acted


class HubRevocations:
    """``(hub id, requests) -> answers``: the collector's ``revocations`` (run in a worker thread)."""

    def __init__(self, guard: AccessGuard) -> None:
        self.guard = guard
        self.applied = 0
        self.refused = 0

    def __call__(self, hub_id: str, requests: Sequence[RevocationRequest]) -> list[RevocationAnswer]:
        now = self.guard.clock.now()
        premises_id = self._premises(hub_id)
        return [self._one(hub_id, premises_id, r, now) for r in requests]

    def _premises(self, hub_id: str) -> str | None:
        """The premises the registry binds an active hub to (None: unknown or not active)."""
        with self.guard.parties.engine.connect() as c:
            row = c.execute(select(hubs.c.premises_id, hubs.c.status).where(hubs.c.hub_id == hub_id)).first()
        return None if row is None or row.status != "active" else str(row.premises_id)

    def _one(
        self, hub_id: str, premises_id: str | None, r: RevocationRequest, now: datetime
    ) -> RevocationAnswer:
        detail: dict[str, Any] = {
            "op": "revoke",
            "consent_id": r.consent_id,
            "via": {
                "hub_id": hub_id,
                "request_id": r.request_id,
                "screen": r.screen,
                "requested_at": r.requested_at.isoformat(),
            },
        }
        if premises_id is None:
            return self._refuse(hub_id, None, r, now, f"hub {hub_id} is not an active hub", detail)
        parties = self.guard.parties
        facts = parties.facts([premises_id])
        tenancy = current_tenancy(facts, premises_id, now)
        consent = next(
            (
                c
                for c in facts.consents
                if c.consent_id == r.consent_id and tenancy is not None and c.tenancy_id == tenancy.tenancy_id
            ),
            None,
        )
        if tenancy is None or consent is None:
            return self._refuse(
                hub_id,
                premises_id,
                r,
                now,
                f"consent {r.consent_id!r} is not one of the current tenancy's at {premises_id}, the premises"
                f" of hub {hub_id}",
                detail,
            )
        if consent.revoked_at is not None:  # asked again (a lost answer), or revoked through the API
            return RevocationAnswer(r.request_id, APPLIED, consent.revoked_at)
        decision = self.guard.authorize(
            tenancy.consumer_id, Action.MANAGE_CONSENT, premises_id=premises_id, detail=detail
        )
        if not decision.allow:
            self.refused += 1
            return RevocationAnswer(r.request_id, REFUSED, now, decision.reason)
        if not parties.revoke_consent(consent.consent_id, now):  # revoked meanwhile: its first time
            again = next(c for c in parties.consents([premises_id]) if c.consent_id == consent.consent_id)
            assert again.revoked_at is not None
            return RevocationAnswer(r.request_id, APPLIED, again.revoked_at)
        self.applied += 1
        log.info(
            "consent %s at %s revoked as asked at the display of hub %s", r.consent_id, premises_id, hub_id
        )
        return RevocationAnswer(r.request_id, APPLIED, now)

    def _refuse(
        self,
        hub_id: str,
        premises_id: str | None,
        r: RevocationRequest,
        now: datetime,
        reason: str,
        detail: dict[str, Any],
    ) -> RevocationAnswer:
        """Refused before any party acted: audited with the hub as the actor, and logged."""
        self.refused += 1
        self.guard.audit.append(
            at=now,
            actor=hub_id,
            role=HUB_ROLE,
            action=Action.MANAGE_CONSENT.value,
            premises_id=premises_id,
            allow=False,
            reason=reason,
            detail=detail,
        )
        log.warning("revocation request %s of hub %s refused: %s", r.request_id, hub_id, reason)
        return RevocationAnswer(r.request_id, REFUSED, now, reason)
