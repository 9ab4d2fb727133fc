"""Parties of the GDSC and the facts that entitle them to data: supply periods, tenancies, consents.

A party has one role. A supplier is entitled to a premises only for a fuel and for the supply
period in which it supplies it; a consumer only for the tenancy in which they occupy it; an
approved third-party data service only through a consent the occupant gave during their tenancy,
naming scope (meters, data kinds), granularity, purpose and expiry. An installer is entitled to
a premises only for the window of a site visit (appointment). Periods are half-open
``[start, end)``; ``end`` None means still open.

The tables hang on :data:`smarthub.gdsc.db.database.metadata` so one ``create_all`` (or, later, one
Alembic migration) covers the whole GDSC schema. :class:`PartyRepository` is the only code that
reads or writes them.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, overload

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    or_,
    select,
    update,
)

from smarthub.gdsc.governance.party_tables import appointments, consents, parties, supply_periods, tenancies

if TYPE_CHECKING:
    from smarthub.gdsc.governance.services import DataService


class Role(enum.StrEnum):
    SUPPLIER = "supplier"
    NETWORK_OPERATOR = "network-operator"
    THIRD_PARTY = "third-party"
    CONSUMER = "consumer"
    INSTALLER = "installer"
    OPERATOR = "operator"  # the GDSC's own operations staff
    HOUSING_PROVIDER = "housing-provider"  # a landlord billing heat and water over a building's flats


class Fuel(enum.StrEnum):
    """Fuels that have a licensed supplier (water and heat meters have none in this model)."""

    ELECTRICITY = "electricity"
    GAS = "gas"


# The media of a building's sub-meters, spelled as the wireless M-Bus device types (EN 13757-3
# Table 3, ``model.datapoint``): what a housing provider bills heating and water costs from.
SUBMETER_MEDIA = frozenset({"heat_cost_allocator", "heat", "water", "warm_water", "hot_water", "cold_water"})


class DataKind(enum.StrEnum):
    READINGS = "readings"
    EVENTS = "events"
    # Not data read but control given: the occupant lets a demand-response aggregator have the
    # GDSC send their hub DRLC events (issue 25); approved and consented to as a kind like the rest.
    DEMAND_RESPONSE = "demand-response"
    # Per-appliance consumption from smart plugs (issue 25: appliance health), never the
    # whole-home readings: a consent to this kind alone gives no supply meter's data.
    APPLIANCES = "appliances"
    # Not data read either: the occupant lets a service put messages on their in-home display
    # (issue 25: the tariff advisor's advice, appliance health's findings), shown as the service's,
    # never as the supplier's.
    IHD_MESSAGES = "ihd-messages"


class Granularity(enum.StrEnum):
    """How fine the consumption data a party may receive is.

    The shared values are spelled as in the hub's privacy filter (``hub.privacy.Granularity``) so a
    consent can be forwarded to the hub unchanged; ``tariff-register`` (cumulative totals per
    tariff register, no profile at all) is the coarsest level that still carries consumption.
    """

    HALF_HOURLY = "half-hourly"
    DAILY = "daily"
    MONTHLY = "monthly"
    TARIFF_REGISTER = "tariff-register"
    NONE = "none"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {
    Granularity.NONE: 0,
    Granularity.TARIFF_REGISTER: 1,
    Granularity.MONTHLY: 2,
    Granularity.DAILY: 3,
    Granularity.HALF_HOURLY: 4,
}


def _check_aware(**values: datetime | None) -> None:
    for name, v in values.items():
        if v is not None and v.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware, got naive {v.isoformat()}")


def _check_period(start: datetime, end: datetime | None) -> None:
    _check_aware(start=start, end=end)
    if end is not None and end <= start:
        raise ValueError(f"period end {end.isoformat()} is not after its start {start.isoformat()}")


@dataclass(frozen=True, slots=True)
class Party:
    party_id: str
    role: Role
    name: str = ""
    approved: bool = True  # third-party data services act only once the GDSC has approved them

    def __post_init__(self) -> None:
        if not self.party_id:
            raise ValueError("party_id must not be empty")
        object.__setattr__(self, "role", Role(self.role))


@dataclass(frozen=True, slots=True)
class SupplyPeriod:
    premises_id: str
    fuel: Fuel
    supplier_id: str
    start: datetime
    end: datetime | None = None

    def __post_init__(self) -> None:
        _check_period(self.start, self.end)
        object.__setattr__(self, "fuel", Fuel(self.fuel))


@dataclass(frozen=True, slots=True)
class Tenancy:
    tenancy_id: str
    premises_id: str
    consumer_id: str
    start: datetime
    end: datetime | None = None

    def __post_init__(self) -> None:
        _check_period(self.start, self.end)

    def covers(self, t: datetime) -> bool:
        return self.start <= t and (self.end is None or t < self.end)


@dataclass(frozen=True, slots=True)
class Appointment:
    """An installer's site visit: the only window in which it may act on the premises."""

    premises_id: str
    installer_id: str
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _check_period(self.start, self.end)


@dataclass(frozen=True, slots=True)
class Operation:
    """A network operator operating the part of the network a premises or a network node is on,
    for ``[start, end)``: from the operators' areas (``operator_areas``: a node and everything
    under it). It entitles the operator to the premises' DUoS data (electricity, half-hourly, for
    that period) and to the node's outages, topology and power quality."""

    subject: str  # a premises id or a network node id
    operator_id: str
    start: datetime
    end: datetime | None = None

    def __post_init__(self) -> None:
        _check_period(self.start, self.end)

    def covers(self, t: datetime) -> bool:
        return self.start <= t and (self.end is None or t < self.end)


@dataclass(frozen=True, slots=True)
class Management:
    """A housing provider managing (letting and billing) a flat of a building for ``[start, end)``:
    it entitles the provider to the flat's sub-meter readings (heat-cost allocators, heat and water
    meters) of that period, for the heating and water cost billing (HeizkostenV; EED Art. 9b-10a),
    never to the flat's electricity or gas, which are the tenant's and their supplier's."""

    premises_id: str  # the flat
    building_id: str
    provider_id: str
    start: datetime
    end: datetime | None = None

    def __post_init__(self) -> None:
        _check_period(self.start, self.end)


@dataclass(frozen=True, slots=True)
class Consent:
    """The occupant's permission for one party at one premises, bound to the occupant's tenancy.

    ``meters`` None means every meter of the premises.
    """

    consent_id: str
    party_id: str
    premises_id: str
    tenancy_id: str
    data_kinds: frozenset[DataKind]
    granularity: Granularity
    purpose: str
    granted_at: datetime
    expires_at: datetime
    meters: frozenset[str] | None = None
    revoked_at: datetime | None = None

    def __post_init__(self) -> None:
        _check_period(self.granted_at, self.expires_at)
        _check_aware(revoked_at=self.revoked_at)
        object.__setattr__(self, "data_kinds", frozenset(DataKind(k) for k in self.data_kinds))
        object.__setattr__(self, "granularity", Granularity(self.granularity))
        if not self.data_kinds:
            raise ValueError("a consent must name at least one data kind")
        if not self.purpose.strip():
            raise ValueError("a consent must state its purpose")

    def live_at(self, t: datetime) -> bool:
        """Granted, not expired and not revoked at ``t`` (revocation counts from its own instant)."""
        if not (self.granted_at <= t < self.expires_at):
            return False
        return self.revoked_at is None or t < self.revoked_at

    def covers(self, kind: DataKind, meter_id: str | None) -> bool:
        if kind not in self.data_kinds:
            return False
        # A consent limited to named meters says nothing about a request for "all meters".
        return self.meters is None or (meter_id is not None and meter_id in self.meters)


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything the access policy needs to know about one premises (or an aggregate group)."""

    supply_periods: tuple[SupplyPeriod, ...] = ()
    tenancies: tuple[Tenancy, ...] = ()
    consents: tuple[Consent, ...] = ()
    appointments: tuple[Appointment, ...] = field(default=())
    operations: tuple[Operation, ...] = ()  # network operators of the premises (or node) asked about
    # The asking third party's application and the GDSC's decision on it (None: registered before
    # applications existed, decided on ``Party.approved`` alone); see governance.services.
    service: DataService | None = None
    managements: tuple[Management, ...] = ()  # housing providers of the flat (buildings)


@overload
def utc(t: datetime) -> datetime: ...
@overload
def utc(t: None) -> None: ...
@overload
def utc(t: datetime | None) -> datetime | None: ...
def utc(t: datetime | None) -> datetime | None:
    """Normalise to UTC on the way in, and re-attach UTC to SQLite's naive values on the way out."""
    if t is None:
        return None
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


def _utc(t: datetime) -> datetime:
    out = utc(t)
    assert out is not None
    return out


class UnknownParty(LookupError):
    pass


class PartyRepository:
    """Reads and writes parties, supply periods, tenancies, consents and appointments.

    Methods that take a ``conn`` run inside the caller's transaction (the lifecycle operations
    compose several of them atomically); the others open their own.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- parties ------------------------------------------------------------------------------
    def add_party(self, party: Party, conn: Connection | None = None) -> None:
        row = dict(
            party_id=party.party_id, role=party.role.value, name=party.name, approved=int(party.approved)
        )
        self._run(conn, lambda c: c.execute(parties.insert().values(**row)))

    def party(self, party_id: str, conn: Connection | None = None) -> Party:
        def q(c: Connection) -> Party:
            r = c.execute(select(parties).where(parties.c.party_id == party_id)).first()
            if r is None:
                raise UnknownParty(f"no party {party_id!r}")
            return Party(r.party_id, Role(r.role), r.name, bool(r.approved))

        return self._run(conn, q)

    # -- supply periods -----------------------------------------------------------------------
    def add_supply_period(self, sp: SupplyPeriod, conn: Connection | None = None) -> None:
        def ins(c: Connection) -> None:
            self._require_role(c, sp.supplier_id, Role.SUPPLIER)
            c.execute(
                supply_periods.insert().values(
                    premises_id=sp.premises_id,
                    fuel=sp.fuel.value,
                    supplier_id=sp.supplier_id,
                    start=_utc(sp.start),
                    end=utc(sp.end),
                )
            )

        self._run(conn, ins)

    def supply_periods(
        self, premises_ids: Iterable[str], conn: Connection | None = None
    ) -> tuple[SupplyPeriod, ...]:
        t = supply_periods
        q = select(t).where(t.c.premises_id.in_(list(premises_ids))).order_by(t.c.premises_id, t.c.start)
        return self._run(
            conn,
            lambda c: tuple(
                SupplyPeriod(r.premises_id, Fuel(r.fuel), r.supplier_id, _utc(r.start), utc(r.end))
                for r in c.execute(q)
            ),
        )

    # -- tenancies ----------------------------------------------------------------------------
    def add_tenancy(self, tenancy: Tenancy, conn: Connection | None = None) -> None:
        def ins(c: Connection) -> None:
            self._require_role(c, tenancy.consumer_id, Role.CONSUMER)
            c.execute(
                tenancies.insert().values(
                    tenancy_id=tenancy.tenancy_id,
                    premises_id=tenancy.premises_id,
                    consumer_id=tenancy.consumer_id,
                    start=_utc(tenancy.start),
                    end=utc(tenancy.end),
                )
            )

        self._run(conn, ins)

    def tenancies(self, premises_ids: Iterable[str], conn: Connection | None = None) -> tuple[Tenancy, ...]:
        t = tenancies
        q = select(t).where(t.c.premises_id.in_(list(premises_ids))).order_by(t.c.premises_id, t.c.start)
        return self._run(
            conn,
            lambda c: tuple(
                Tenancy(r.tenancy_id, r.premises_id, r.consumer_id, _utc(r.start), utc(r.end))
                for r in c.execute(q)
            ),
        )

    # -- consents -----------------------------------------------------------------------------
    def grant_consent(self, consent: Consent, conn: Connection | None = None) -> None:
        def ins(c: Connection) -> None:
            ten = c.execute(select(tenancies).where(tenancies.c.tenancy_id == consent.tenancy_id)).first()
            if ten is None or ten.premises_id != consent.premises_id:
                raise ValueError(
                    f"consent {consent.consent_id!r}: tenancy {consent.tenancy_id!r} is not a tenancy of "
                    f"premises {consent.premises_id!r}"
                )
            tenancy = Tenancy(ten.tenancy_id, ten.premises_id, ten.consumer_id, _utc(ten.start), utc(ten.end))
            if not tenancy.covers(consent.granted_at):
                raise ValueError(
                    f"consent {consent.consent_id!r} granted at {consent.granted_at.isoformat()}, outside "
                    f"tenancy {consent.tenancy_id!r}"
                )
            self.party(consent.party_id, c)
            c.execute(
                consents.insert().values(
                    consent_id=consent.consent_id,
                    party_id=consent.party_id,
                    premises_id=consent.premises_id,
                    tenancy_id=consent.tenancy_id,
                    meters=None if consent.meters is None else json.dumps(sorted(consent.meters)),
                    data_kinds=json.dumps(sorted(k.value for k in consent.data_kinds)),
                    granularity=consent.granularity.value,
                    purpose=consent.purpose,
                    granted_at=_utc(consent.granted_at),
                    expires_at=_utc(consent.expires_at),
                    revoked_at=utc(consent.revoked_at),
                )
            )

        self._run(conn, ins)

    def revoke_consent(self, consent_id: str, at: datetime, conn: Connection | None = None) -> bool:
        """Revoke from ``at``; True if this call revoked it (False: unknown or already revoked)."""
        _check_aware(at=at)
        q = (
            update(consents)
            .where(and_(consents.c.consent_id == consent_id, consents.c.revoked_at.is_(None)))
            .values(revoked_at=_utc(at))
        )
        return self._run(conn, lambda c: c.execute(q).rowcount == 1)

    def revoke_tenancy_consents(self, tenancy_id: str, at: datetime, conn: Connection | None = None) -> int:
        """Revoke, from ``at``, every consent given during a tenancy that is still unrevoked."""
        q = (
            update(consents)
            .where(and_(consents.c.tenancy_id == tenancy_id, consents.c.revoked_at.is_(None)))
            .values(revoked_at=_utc(at))
        )
        return self._run(conn, lambda c: int(c.execute(q).rowcount))

    def consents(self, premises_ids: Iterable[str], conn: Connection | None = None) -> tuple[Consent, ...]:
        t = consents
        q = select(t).where(t.c.premises_id.in_(list(premises_ids))).order_by(t.c.granted_at, t.c.consent_id)
        return self._run(conn, lambda c: tuple(_consent(r) for r in c.execute(q)))

    # -- appointments -------------------------------------------------------------------------
    def add_appointment(self, appt: Appointment, conn: Connection | None = None) -> None:
        def ins(c: Connection) -> None:
            self._require_role(c, appt.installer_id, Role.INSTALLER)
            c.execute(
                appointments.insert().values(
                    premises_id=appt.premises_id,
                    installer_id=appt.installer_id,
                    start=_utc(appt.start),
                    end=_utc(appt.end),
                )
            )

        self._run(conn, ins)

    def appointments(
        self, premises_ids: Iterable[str], conn: Connection | None = None
    ) -> tuple[Appointment, ...]:
        t = appointments
        q = select(t).where(t.c.premises_id.in_(list(premises_ids))).order_by(t.c.start)
        return self._run(
            conn,
            lambda c: tuple(
                Appointment(r.premises_id, r.installer_id, _utc(r.start), _utc(r.end)) for r in c.execute(q)
            ),
        )

    # -- network operators ---------------------------------------------------------------------
    def operations(self, subjects: Iterable[str], conn: Connection | None = None) -> tuple[Operation, ...]:
        """Who operates the network above each premises or node (its own id, then its feeder,
        secondary and primary substation), from the operators' areas."""
        from smarthub.gdsc.outages.topology import operator_areas, premises_topology, topology_nodes

        def q(c: Connection) -> tuple[Operation, ...]:
            wanted = list(dict.fromkeys(subjects))
            if not wanted:
                return ()
            feeders = dict(
                c.execute(
                    select(premises_topology.c.premises_id, premises_topology.c.feeder_id).where(
                        premises_topology.c.premises_id.in_(wanted)
                    )
                ).all()
            )
            paths = {s: [s, *([feeders[s]] if s in feeders else [])] for s in wanted}
            frontier = {p[-1] for p in paths.values()}
            parents: dict[str, str | None] = {}
            for _ in range(4):  # feeder -> secondary -> primary (and a node's own id)
                ask = [n for n in frontier if n not in parents]
                if not ask:
                    break
                rows = c.execute(
                    select(topology_nodes.c.node_id, topology_nodes.c.parent_id).where(
                        topology_nodes.c.node_id.in_(ask)
                    )
                ).all()
                parents.update({n: None for n in ask})
                parents.update({r.node_id: r.parent_id for r in rows})
                frontier = {r.parent_id for r in rows if r.parent_id}
            for path in paths.values():
                while (up := parents.get(path[-1])) and up not in path:
                    path.append(up)
            nodes = {n for p in paths.values() for n in p}
            areas = c.execute(select(operator_areas).where(operator_areas.c.node_id.in_(sorted(nodes)))).all()
            return tuple(
                Operation(s, a.operator_id, _utc(a.start), utc(a.end))
                for s, path in paths.items()
                for a in areas
                if a.node_id in path
            )

        return self._run(conn, q)

    def areas_of(self, operator_id: str, conn: Connection | None = None) -> tuple[Operation, ...]:
        """The nodes a network operator operates (or did), as operations on those nodes."""
        from smarthub.gdsc.outages.topology import operator_areas

        t = operator_areas
        q = select(t).where(t.c.operator_id == operator_id).order_by(t.c.start)
        return self._run(
            conn,
            lambda c: tuple(
                Operation(r.node_id, r.operator_id, _utc(r.start), utc(r.end)) for r in c.execute(q)
            ),
        )

    # -- the policy's input -------------------------------------------------------------------
    def facts(self, premises_ids: Sequence[str], conn: Connection | None = None) -> Facts:
        from smarthub.gdsc.fleet.buildings import BuildingRegistry

        def q(c: Connection) -> Facts:
            return Facts(
                self.supply_periods(premises_ids, c),
                self.tenancies(premises_ids, c),
                self.consents(premises_ids, c),
                self.appointments(premises_ids, c),
                self.operations(premises_ids, c),
                managements=BuildingRegistry(self.engine).managements(premises_ids, c),
            )

        return self._run(conn, q)

    def open_supply_period(self, premises_id: str, fuel: Fuel, conn: Connection) -> SupplyPeriod | None:
        t = supply_periods
        r = conn.execute(
            select(t).where(and_(t.c.premises_id == premises_id, t.c.fuel == fuel.value, t.c.end.is_(None)))
        ).first()
        if r is None:
            return None
        return SupplyPeriod(r.premises_id, Fuel(r.fuel), r.supplier_id, _utc(r.start), utc(r.end))

    def end_supply_period(
        self, premises_id: str, fuel: Fuel, start: datetime, end: datetime, conn: Connection
    ) -> None:
        t = supply_periods
        conn.execute(
            update(t)
            .where(and_(t.c.premises_id == premises_id, t.c.fuel == fuel.value, t.c.start == _utc(start)))
            .values(end=_utc(end))
        )

    def tenancy_at(self, premises_id: str, at: datetime, conn: Connection) -> Tenancy | None:
        """The tenancy covering ``at`` (None: the premises is vacant then)."""
        t = tenancies
        rows = conn.execute(
            select(t).where(
                and_(
                    t.c.premises_id == premises_id,
                    t.c.start <= _utc(at),
                    or_(t.c.end.is_(None), t.c.end > _utc(at)),
                )
            )
        ).all()
        if not rows:
            return None
        r = rows[0]
        return Tenancy(r.tenancy_id, r.premises_id, r.consumer_id, _utc(r.start), utc(r.end))

    def end_tenancy(self, tenancy_id: str, end: datetime, conn: Connection) -> None:
        conn.execute(update(tenancies).where(tenancies.c.tenancy_id == tenancy_id).values(end=_utc(end)))

    # -- helpers ------------------------------------------------------------------------------
    def _require_role(self, conn: Connection, party_id: str, role: Role) -> None:
        p = self.party(party_id, conn)
        if p.role is not role:
            raise ValueError(f"party {party_id!r} has role {p.role.value}, not {role.value}")

    def _run(self, conn: Connection | None, fn):
        if conn is not None:
            return fn(conn)
        with self.engine.begin() as c:
            return fn(c)


def _consent(r) -> Consent:
    return Consent(
        consent_id=r.consent_id,
        party_id=r.party_id,
        premises_id=r.premises_id,
        tenancy_id=r.tenancy_id,
        meters=None if r.meters is None else frozenset(json.loads(r.meters)),
        data_kinds=frozenset(DataKind(k) for k in json.loads(r.data_kinds)),
        granularity=Granularity(r.granularity),
        purpose=r.purpose,
        granted_at=_utc(r.granted_at),
        expires_at=_utc(r.expires_at),
        revoked_at=utc(r.revoked_at),
    )
