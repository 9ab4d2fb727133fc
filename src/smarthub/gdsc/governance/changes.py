"""Change of supplier and change of tenancy, as single transactions on the party tables.

Change of supplier: the current supply period of that fuel ends at the effective date and the new
supplier's begins at the same instant, so from that date the access policy refuses the old
supplier and admits the new one, with no gap and no overlap. Installing the new supplier's keys
on the hub and taking the opening read go through the command path:
:mod:`smarthub.gdsc.governance.supplier_change` does both in the same transaction as this change.

Change of tenancy: a move-out ends the tenancy and revokes every consent given during it; a
move-in ends any tenancy still open (a move-out nobody reported) the same way and opens the new
one. Consents therefore reset: the new occupant starts with none, and the policy in any case
never honours a consent of an earlier tenancy. The hubs must follow (their privacy filters still
let the old consents' recipients have their data): when ``repo`` is a
:class:`~smarthub.gdsc.governance.consent_sync.SyncingPartyRepository`, every party whose consent the move
revoked gets its resulting state queued as ``consent.set`` once the move has committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select

from smarthub.gdsc.governance.consent_sync import SyncingPartyRepository
from smarthub.gdsc.governance.parties import Fuel, PartyRepository, Role, SupplyPeriod, Tenancy, consents


class LifecycleError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class SupplierChange:
    premises_id: str
    fuel: Fuel
    old_supplier_id: str | None
    new_supplier_id: str
    effective: datetime


@dataclass(frozen=True, slots=True)
class TenancyChange:
    premises_id: str
    ended: Tenancy | None  # the tenancy that ended (None: the premises was vacant)
    started: Tenancy | None  # the new tenancy (None for a bare move-out)
    consents_revoked: int


def change_supplier(
    repo: PartyRepository, premises_id: str, fuel: Fuel, new_supplier_id: str, effective: datetime
) -> SupplierChange:
    """End the current supply of ``fuel`` at ``effective`` and start ``new_supplier_id``'s."""
    if effective.tzinfo is None:
        raise LifecycleError("effective date must be timezone-aware")
    with repo.engine.begin() as conn:
        return change_supplier_in(repo, conn, premises_id, fuel, new_supplier_id, effective)


def change_supplier_in(
    repo: PartyRepository,
    conn: Connection,
    premises_id: str,
    fuel: Fuel,
    new_supplier_id: str,
    effective: datetime,
) -> SupplierChange:
    """:func:`change_supplier` inside the caller's transaction ``conn``."""
    if effective.tzinfo is None:
        raise LifecycleError("effective date must be timezone-aware")
    fuel = Fuel(fuel)
    new = repo.party(new_supplier_id, conn)
    if new.role is not Role.SUPPLIER:
        raise LifecycleError(f"{new_supplier_id!r} is a {new.role.value}, not a supplier")
    current = repo.open_supply_period(premises_id, fuel, conn)
    if current is not None:
        if current.supplier_id == new_supplier_id:
            raise LifecycleError(f"{new_supplier_id!r} already supplies {fuel.value} at {premises_id!r}")
        if effective <= current.start:
            raise LifecycleError(
                f"effective date {effective.isoformat()} is not after the current supply began "
                f"({current.start.isoformat()})"
            )
        repo.end_supply_period(premises_id, fuel, current.start, effective, conn)
    else:
        # No open supply: the new period must not overlap a closed one.
        for sp in repo.supply_periods([premises_id], conn):
            if sp.fuel is fuel and sp.end is not None and effective < sp.end:
                raise LifecycleError(
                    f"effective date {effective.isoformat()} falls inside {sp.supplier_id!r}'s supply"
                )
    repo.add_supply_period(SupplyPeriod(premises_id, fuel, new_supplier_id, effective), conn)
    return SupplierChange(
        premises_id, fuel, current.supplier_id if current else None, new_supplier_id, effective
    )


def move_out(repo: PartyRepository, premises_id: str, at: datetime) -> TenancyChange:
    """The occupant leaves at ``at``: their tenancy ends and their consents are revoked from then."""
    if at.tzinfo is None:
        raise LifecycleError("move-out time must be timezone-aware")
    with repo.engine.begin() as conn:
        ended, revoked, parties = _end_current(repo, premises_id, at, conn)
        if ended is None:
            raise LifecycleError(f"nobody occupies {premises_id!r} at {at.isoformat()}")
    _push(repo, premises_id, parties, at)
    return TenancyChange(premises_id, ended, None, revoked)


def move_in(
    repo: PartyRepository, premises_id: str, consumer_id: str, tenancy_id: str, at: datetime
) -> TenancyChange:
    """A new occupant from ``at``; whoever was still recorded there moves out at the same instant."""
    if at.tzinfo is None:
        raise LifecycleError("move-in time must be timezone-aware")
    with repo.engine.begin() as conn:
        for t in repo.tenancies([premises_id], conn):
            if t.start >= at:
                raise LifecycleError(
                    f"tenancy {t.tenancy_id!r} starts at {t.start.isoformat()}, not before this move-in"
                )
        ended, revoked, parties = _end_current(repo, premises_id, at, conn)
        if ended is not None and ended.consumer_id == consumer_id:
            raise LifecycleError(f"{consumer_id!r} already occupies {premises_id!r}")
        started = Tenancy(tenancy_id, premises_id, consumer_id, at)
        repo.add_tenancy(started, conn)
    _push(repo, premises_id, parties, at)
    return TenancyChange(premises_id, ended, started, revoked)


def _end_current(
    repo: PartyRepository, premises_id: str, at: datetime, conn: Connection
) -> tuple[Tenancy | None, int, list[str]]:
    """End the tenancy current at ``at``: (it, consents revoked, parties whose consent it was)."""
    current = repo.tenancy_at(premises_id, at, conn)
    if current is None:
        return None, 0, []
    parties = sorted(
        {
            r[0]
            for r in conn.execute(
                select(consents.c.party_id).where(
                    consents.c.tenancy_id == current.tenancy_id, consents.c.revoked_at.is_(None)
                )
            )
        }
    )
    repo.end_tenancy(current.tenancy_id, at, conn)
    revoked = repo.revoke_tenancy_consents(current.tenancy_id, at, conn)
    ended = Tenancy(current.tenancy_id, current.premises_id, current.consumer_id, current.start, at)
    return ended, revoked, parties


def _push(repo: PartyRepository, premises_id: str, parties: list[str], at: datetime) -> None:
    """After the commit: the hubs' privacy filters follow the revoked consents."""
    if isinstance(repo, SyncingPartyRepository):
        for party_id in parties:
            repo.pushed += repo.sync.push(premises_id, party_id, at)
