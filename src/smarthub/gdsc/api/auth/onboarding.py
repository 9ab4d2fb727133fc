"""Onboarding of an approved third-party data service: the operator's decisions
(:class:`~smarthub.gdsc.governance.services.DataServices`) together with the service's OAuth2
client (:class:`~smarthub.gdsc.api.auth.clients.ClientRegistry`).

* **approve**: the service gets an OAuth2 client whose scopes are only what it was approved for
  (:func:`scopes_for`: ``readings:read`` for readings, ``demand-response`` for demand-response
  control, ``appliances:read`` for appliance data, ``ihd-messages`` and ``commands:read`` for
  messages on the occupant's display and following their delivery, ``services`` to follow its own
  application, ``tariffs:read`` for the tariff catalogue); its secret is returned once, to be
  handed to the service. The access policy then also holds every read to the approved data kinds
  and granularity.
* **suspend** / **resume**: the client is kept; while suspended the token endpoint issues no token
  (the party is not approved) and every request with a token already issued is refused with 403
  by the access policy (``data service X is suspended: <reason>``), recorded in the audit log.
* **revoke** (final): the client is revoked as well, so its secret and every token it was issued
  stop working at the next request (401 ``invalid_token``, RFC 6750 §3.1); any other credential
  the party holds (a ``smarthub gdsc token`` bearer token, a bound certificate) gets 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from smarthub.gdsc.api.auth.clients import ClientRegistry
from smarthub.gdsc.governance.parties import DataKind
from smarthub.gdsc.governance.services import (
    Application,
    DataService,
    DataServices,
    Decision,
    ServiceError,
    Status,
)

SERVICE_SCOPE = "services"
# The data kinds an approval grants and the API scope that reads them (events have no endpoint yet).
_KIND_SCOPES = {
    DataKind.READINGS: "readings:read",
    DataKind.DEMAND_RESPONSE: "demand-response",
    DataKind.APPLIANCES: "appliances:read",
    DataKind.IHD_MESSAGES: "ihd-messages",  # POST …/commands/ihd-message, and no other command
}


JOBS_SCOPE = "commands:read"
TARIFFS_SCOPE = "tariffs:read"  # the tariff catalogue: suppliers' published terms, no household data


def scopes_for(application: Application) -> frozenset[str]:
    """The OAuth2 scopes an approved application gets: what reads its data kinds, ``services`` and
    the tariff catalogue."""
    kinds = (s for k in application.data_kinds if (s := _KIND_SCOPES.get(k)))
    # A message is a queued job: the service follows its own to see it delivered (GET /v1/jobs/…;
    # the policy shows a party only the jobs it queued).
    follow = (JOBS_SCOPE,) if DataKind.IHD_MESSAGES in application.data_kinds else ()
    return frozenset({SERVICE_SCOPE, TARIFFS_SCOPE, *kinds, *follow})


@dataclass(frozen=True, slots=True)
class Credentials:
    client_id: str
    client_secret: str  # shown once; only its scrypt hash is kept
    scopes: frozenset[str]


class Onboarding:
    def __init__(self, services: DataServices, clients: ClientRegistry) -> None:
        self.services = services
        self.clients = clients

    def decide(
        self, party_id: str, decision: Decision, reason: str, by: str, now: datetime
    ) -> tuple[DataService, Credentials | None]:
        """Take the decision; an approval also registers the service's client (its credentials
        returned), a revocation revokes it."""
        decision = Decision(decision)
        if decision is Decision.APPROVE:
            service = self.services.service(party_id)
            if service.status is not Status.APPLIED:  # before a client exists (decide checks again)
                raise ServiceError(f"cannot approve {party_id}: its application is {service.status.value}")
            scopes = scopes_for(service.application)
            client_id, secret = self.clients.register(party_id, scopes, now)
            try:
                done = self.services.decide(party_id, Decision.APPROVE, reason, by, now, client_id=client_id)
            except Exception:
                self.clients.revoke(client_id, now)  # decided otherwise meanwhile: no stray client
                raise
            return done, Credentials(client_id, secret, scopes)
        service = self.services.decide(party_id, decision, reason, by, now)
        if decision is Decision.REVOKE and service.client_id is not None:
            self.clients.revoke(service.client_id, now)
        return service, None
