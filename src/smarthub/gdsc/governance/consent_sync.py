"""Consent changes pushed to the hub's privacy filter through the pull channel.

The GDSC's consent records (``smarthub.gdsc.governance.parties``) decide what the GDSC serves; the hub's
privacy filter (``smarthub.hub.privacy``) decides what leaves the home. When a consent is
granted or revoked at the GDSC, the hub must follow, so the change is sent to every active hub
of the premises as a signed ``consent.set`` command, queued in the shared plan and delivered at
the collector's next tick (the hub is never called out of the pull channel).

What is sent is the recipient's resulting *state*, not the change: the finest granularity any
consent of the current tenancy that covers readings allows the party at the instant of the
change, or, without one, the default (monthly for a supplier, nothing for anyone else). The
command carries ``version``, the instant of the change in microseconds since the epoch; the hub
ignores a command older than the state it holds. So sending the same state twice is harmless
(idempotent) and a command that arrives late cannot undo a later decision (the latest state
wins), whichever order the plan delivers them in.

The state carries the consents' *scope* too, so the hub enforces what the GDSC's access policy
does (``hub.privacy``, "Scope"): ``meters`` — each of the hub's meters the usable consents cover,
with the finest granularity one of them allows it (null when every consent covers every meter);
``data_from``/``data_until`` — the consenting occupant's tenancy in epoch seconds (null when no
consent is in effect: then the granularity is the default, or none); ``events`` — whether a
usable consent covers diagnosed events.

A push that never arrived is sent again (:meth:`ConsentSync.redeliver`, at every upkeep step):
a hub unreachable for longer than the plan's tries (a WAN outage of hours) leaves its
``consent.set`` failed, and a revocation that never reaches the home leaves the hub's privacy
filter letting out what the consumer withdrew. The latest job for a hub and party, when it
failed and the hub has answered a pull since, is queued again with the same body (same version:
idempotent at the hub, and a later decision still wins).

A repository that syncs: :class:`SyncingPartyRepository` is a :class:`PartyRepository` whose
``grant_consent``, ``revoke_consent`` and ``revoke_tenancy_consents`` push the new state once
their own transaction has committed; hand it to the services API's :class:`AccessGuard` and
every consent path of the API syncs. A caller that composes them into its own transaction
(``conn`` given) pushes after its commit with :meth:`ConsentSync.push`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, select

from smarthub.clock import Clock
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.registry import hubs, meters
from smarthub.gdsc.governance.access import SUPPLIER_DEFAULT, current_tenancy
from smarthub.gdsc.governance.parties import Consent, DataKind, Granularity, PartyRepository, Role, consents
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.redelivery import given_up
from smarthub.gdsc.pull.tables import Priority
from smarthub.gdsc.store import Store
from smarthub.wan.contract.bodies import ConsentScope, ConsentSet
from smarthub.wan.contract.bodies import Granularity as HubGranularity

# The hub's granularities (the WAN contract's; the GDSC spells the register-only consent in the
# singular).
HUB_GRANULARITY = {
    Granularity.HALF_HOURLY: HubGranularity.HALF_HOURLY,
    Granularity.DAILY: HubGranularity.DAILY,
    Granularity.MONTHLY: HubGranularity.MONTHLY,
    Granularity.TARIFF_REGISTER: HubGranularity.TARIFF_REGISTERS,
    Granularity.NONE: HubGranularity.NONE,
}


# How far back a failed consent.set is looked for (a hub away longer is recovered, not synced:
# its recovery replays the last consent.set per recipient, smarthub.gdsc.fleet.recovery).
REDELIVERY_LOOKBACK = timedelta(days=30)


def version_of(t: datetime) -> int:
    """The version of a consent decision taken at ``t``: microseconds since the epoch."""
    if t.tzinfo is None:
        raise ValueError("a consent decision's time must be timezone-aware")
    return int(t.timestamp()) * 1_000_000 + t.microsecond


@dataclass(frozen=True, slots=True)
class Pushed:
    hub_id: str
    job_id: int
    body: dict[str, object]


class ConsentSync:
    def __init__(
        self, parties: PartyRepository, plan: PullPlan, signer: CommandSigner, now: Callable[[], datetime]
    ) -> None:
        """``now``: the GDSC's clock (when a command is queued)."""
        self.parties = parties
        self.plan = plan
        self.signer = signer
        self.now = now

    def state(self, premises_id: str, party_id: str, at: datetime) -> Granularity:
        """What the hub should let ``party_id`` have at ``at``, from the GDSC's consents."""
        party = self.parties.party(party_id)
        facts = self.parties.facts([premises_id])
        tenancy = current_tenancy(facts, premises_id, at)
        usable = [
            c
            for c in facts.consents
            if tenancy is not None
            and c.party_id == party_id
            and c.tenancy_id == tenancy.tenancy_id
            and c.live_at(at)
            and DataKind.READINGS in c.data_kinds
        ]
        default = SUPPLIER_DEFAULT if party.role is Role.SUPPLIER else Granularity.NONE
        return max([default, *(c.granularity for c in usable)], key=lambda g: g.rank)

    def body(self, premises_id: str, party_id: str, at: datetime, meter_ids: list[str]) -> dict[str, object]:
        """The ``consent.set`` body's JSON (:meth:`command`)."""
        return self.command(premises_id, party_id, at, meter_ids).to_json()

    def command(self, premises_id: str, party_id: str, at: datetime, meter_ids: list[str]) -> ConsentSet:
        """The ``consent.set`` body for a hub with ``hub_meters``: the party's state at ``at``
        with its scope (module docstring)."""
        party = self.parties.party(party_id)
        facts = self.parties.facts([premises_id])
        tenancy = current_tenancy(facts, premises_id, at)
        live = [
            c
            for c in facts.consents
            if tenancy is not None
            and c.party_id == party_id
            and c.tenancy_id == tenancy.tenancy_id
            and c.live_at(at)
        ]
        usable = [c for c in live if DataKind.READINGS in c.data_kinds]
        default = SUPPLIER_DEFAULT if party.role is Role.SUPPLIER else Granularity.NONE
        granularity = max([default, *(c.granularity for c in usable)], key=lambda g: g.rank)
        # Appliance consents (issue 25): the plugs at their own granularity. The recipient's
        # granularity is raised to it if need be, and then the supply meters are listed with what
        # the readings consents give them (none: not listed), so appliances never open them.
        appliance_consents = [c for c in live if DataKind.APPLIANCES in c.data_kinds]
        appliances = max((c.granularity for c in appliance_consents), key=lambda g: g.rank, default=None)
        raised = appliances is not None and appliances.rank > granularity.rank
        meters: dict[str, HubGranularity] | None = None
        if raised or any(c.meters is not None for c in usable):
            named = set(meter_ids) | {m for c in usable for m in (c.meters or ())}
            per = {
                m: max(
                    [default, *(c.granularity for c in usable if c.meters is None or m in c.meters)],
                    key=lambda g: g.rank,
                )
                for m in sorted(named)
            }
            meters = {m: HUB_GRANULARITY[g] for m, g in per.items() if g is not Granularity.NONE}
        scoped = tenancy is not None and bool(usable or appliance_consents)
        scope = ConsentScope(
            meters,
            _epoch(tenancy.start) if scoped and tenancy is not None else None,
            _epoch(tenancy.end) if scoped and tenancy is not None and tenancy.end else None,
            any(DataKind.EVENTS in c.data_kinds for c in live),
            None if appliances is None else HUB_GRANULARITY[appliances],
        )
        if raised and appliances is not None:
            granularity = appliances
        return ConsentSet(party_id, HUB_GRANULARITY[granularity], version_of(at), scope)

    def push(self, premises_id: str, party_id: str, at: datetime) -> list[Pushed]:
        """Queue the party's state at ``at`` for every active hub of the premises (urgent: a
        revocation must reach the home before the next bulk pull)."""
        now = self.now()
        out = []
        for hub_id in active_hubs(self.parties.engine, premises_id):
            body = self.command(premises_id, party_id, at, hub_meters(self.parties.engine, hub_id))
            job = self.plan.queue_command(self.signer, hub_id, "consent.set", body, now, Priority.URGENT)
            out.append(Pushed(hub_id, job, body.to_json()))
        return out

    def push_expired(self, after: datetime, until: datetime) -> list[Pushed]:
        """Queue the state of every party whose consent expired in (``after``, ``until``]: an
        expiry is a change nobody makes, so no API call pushes it. The version is the expiry
        instant, so a later explicit decision still wins at the hub."""
        c = consents.c
        q = (
            select(c.premises_id, c.party_id, c.expires_at)
            .where(c.revoked_at.is_(None), c.expires_at > after, c.expires_at <= until)
            .order_by(c.expires_at)
        )
        with self.parties.engine.connect() as conn:
            rows = conn.execute(q).all()
        out: list[Pushed] = []
        for premises_id, party_id, expires_at in rows:
            at = expires_at if expires_at.tzinfo is not None else expires_at.replace(tzinfo=UTC)
            out += self.push(premises_id, party_id, at)
        return out

    def redeliver(self, now: datetime, lookback: timedelta = REDELIVERY_LOOKBACK) -> list[Pushed]:
        """Queue again each hub's latest ``consent.set`` for a party (queued within ``lookback``)
        that failed (undelivered after the plan's tries) if the hub is active and has answered a
        pull since that job ended (module docstring); what was queued."""
        out = []
        for hub_id, body in given_up(
            self.parties.engine, "consent.set", ConsentSet.parse, lambda b: b.recipient, now, lookback
        ):
            job = self.plan.queue_command(self.signer, hub_id, "consent.set", body, now, Priority.URGENT)
            out.append(Pushed(hub_id, job, body.to_json()))
        return out


def _epoch(t: datetime) -> int:
    return int((t if t.tzinfo is not None else t.replace(tzinfo=UTC)).timestamp())


def hub_meters(engine: Engine, hub_id: str) -> list[str]:
    with engine.connect() as c:
        return [r[0] for r in c.execute(select(meters.c.meter_id).where(meters.c.hub_id == hub_id))]


def active_hubs(engine: Engine, premises_id: str, conn: Connection | None = None) -> list[str]:
    q = select(hubs.c.hub_id).where(hubs.c.premises_id == premises_id, hubs.c.status == "active")
    if conn is not None:
        return [r[0] for r in conn.execute(q.order_by(hubs.c.hub_id))]
    with engine.connect() as c:
        return [r[0] for r in c.execute(q.order_by(hubs.c.hub_id))]


class SyncingPartyRepository(PartyRepository):
    """A :class:`PartyRepository` that pushes every consent change it commits to the hubs."""

    def __init__(self, engine: Engine, sync: Callable[[PartyRepository], ConsentSync]) -> None:
        super().__init__(engine)
        self.sync = sync(self)
        self.pushed: list[Pushed] = []  # what this repository queued (the latest last)

    def grant_consent(self, consent: Consent, conn: Connection | None = None) -> None:
        super().grant_consent(consent, conn)
        if conn is None:
            self.pushed += self.sync.push(consent.premises_id, consent.party_id, consent.granted_at)

    def revoke_consent(self, consent_id: str, at: datetime, conn: Connection | None = None) -> bool:
        revoked = super().revoke_consent(consent_id, at, conn)
        if revoked and conn is None:
            c = self._consent(consent_id)
            self.pushed += self.sync.push(c.premises_id, c.party_id, at)
        return revoked

    def revoke_tenancy_consents(self, tenancy_id: str, at: datetime, conn: Connection | None = None) -> int:
        if conn is not None:
            return super().revoke_tenancy_consents(tenancy_id, at, conn)
        with self.engine.connect() as c:
            affected = c.execute(
                select(consents.c.premises_id, consents.c.party_id)
                .where(consents.c.tenancy_id == tenancy_id, consents.c.revoked_at.is_(None))
                .distinct()
            ).all()
        n = super().revoke_tenancy_consents(tenancy_id, at)
        for premises_id, party_id in sorted(affected):
            self.pushed += self.sync.push(premises_id, party_id, at)
        return n

    def _consent(self, consent_id: str) -> Consent:
        with self.engine.connect() as c:
            row = c.execute(select(consents.c.premises_id).where(consents.c.consent_id == consent_id)).one()
        return next(c for c in self.consents([row.premises_id]) if c.consent_id == consent_id)


def syncing_parties(store: Store, signer: CommandSigner, clock: Clock) -> SyncingPartyRepository:
    """The party repository for the services API when it has the operator's signing key: every
    consent grant or revocation it commits queues ``consent.set`` for the premises' hubs."""
    plan = PullPlan(store)
    return SyncingPartyRepository(store.engine, lambda repo: ConsentSync(repo, plan, signer, clock.now))


__all__ = [
    "HUB_GRANULARITY",
    "REDELIVERY_LOOKBACK",
    "ConsentSync",
    "Pushed",
    "SyncingPartyRepository",
    "active_hubs",
    "syncing_parties",
    "version_of",
]
