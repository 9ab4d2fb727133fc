"""Change of supplier and change of tenancy on SQLite and PostgreSQL, checked through the guard."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from smarthub.clock import ManualClock
from smarthub.gdsc.governance.access import Action, TimeRange
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.changes import LifecycleError, change_supplier, move_in, move_out
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.gdsc.governance.parties import (
    Consent,
    DataKind,
    Fuel,
    Granularity,
    Party,
    PartyRepository,
    Role,
    SupplyPeriod,
    Tenancy,
)
from smarthub.gdsc.store import Store

JAN = datetime(2026, 1, 1, tzinfo=UTC)
SWITCH = datetime(2026, 9, 1, tzinfo=UTC)
YEAR = TimeRange(JAN, datetime(2027, 1, 1, tzinfo=UTC))
ELEC = "electricity"


@dataclass
class World:
    repo: PartyRepository
    guard: AccessGuard
    clock: ManualClock


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    store = Store(db_url)
    store.create_schema()
    store.register_hub(
        hub_id="H1", premises_id="P1", url="https://h", lfdi="A" * 40, meters_by_fuel=[("E1", ELEC)]
    )
    repo = PartyRepository(store.engine)
    for p in (
        Party("S_OLD", Role.SUPPLIER),
        Party("S_NEW", Role.SUPPLIER),
        Party("C1", Role.CONSUMER),
        Party("C2", Role.CONSUMER),
        Party("TP", Role.THIRD_PARTY),
        Party("I1", Role.INSTALLER),
    ):
        repo.add_party(p)
    repo.add_supply_period(SupplyPeriod("P1", Fuel.ELECTRICITY, "S_OLD", JAN))
    repo.add_tenancy(Tenancy("T1", "P1", "C1", JAN))
    clock = ManualClock(SWITCH - timedelta(days=10))
    yield World(repo, AccessGuard(repo, AuditLog(store.engine), clock), clock)
    store.close()


def consent(
    cid: str, party: str, tenancy: str, granted: datetime, g: Granularity = Granularity.HALF_HOURLY
) -> Consent:
    return Consent(
        cid,
        party,
        "P1",
        tenancy,
        frozenset({DataKind.READINGS}),
        g,
        "tariff advice",
        granted,
        granted + timedelta(days=365),
    )


def can_command(w: World, supplier: str) -> bool:
    return w.guard.authorize(supplier, Action.TARIFF_UPDATE, premises_id="P1", fuel=ELEC).allow


def reads(w: World, party: str, g: Granularity = Granularity.MONTHLY) -> tuple[TimeRange, ...] | None:
    d = w.guard.authorize(
        party, Action.READ_READINGS, premises_id="P1", fuel=ELEC, granularity=g, period=YEAR
    )
    return d.ranges if d.allow else None


def test_change_of_supplier(world: World) -> None:
    w = world
    change = change_supplier(w.repo, "P1", Fuel.ELECTRICITY, "S_NEW", SWITCH)
    assert (change.old_supplier_id, change.new_supplier_id, change.effective) == ("S_OLD", "S_NEW", SWITCH)
    assert w.repo.supply_periods(["P1"]) == (
        SupplyPeriod("P1", Fuel.ELECTRICITY, "S_OLD", JAN, SWITCH),
        SupplyPeriod("P1", Fuel.ELECTRICITY, "S_NEW", SWITCH),
    )
    # Registered in advance: until the date nothing changes.
    assert can_command(w, "S_OLD") and not can_command(w, "S_NEW")
    w.clock.set(SWITCH - timedelta(microseconds=1))
    assert can_command(w, "S_OLD") and not can_command(w, "S_NEW")
    w.clock.set(SWITCH)
    assert not can_command(w, "S_OLD") and can_command(w, "S_NEW")
    # Each keeps exactly its own supply period's data.
    assert reads(w, "S_OLD") == (TimeRange(JAN, SWITCH),)
    assert reads(w, "S_NEW") == (TimeRange(SWITCH, YEAR.end),)
    # The occupant's half-hourly consent to the old supplier does not pass to the new one.
    assert reads(w, "S_NEW", Granularity.HALF_HOURLY) is None
    assert w.guard.audit.verify().ok


def test_supplier_consent_follows_the_party_not_the_premises(world: World) -> None:
    w = world
    w.repo.grant_consent(consent("K1", "S_OLD", "T1", JAN + timedelta(days=2)))
    assert reads(w, "S_OLD", Granularity.HALF_HOURLY) == (TimeRange(JAN, YEAR.end),)
    change_supplier(w.repo, "P1", Fuel.ELECTRICITY, "S_NEW", SWITCH)
    w.clock.set(SWITCH + timedelta(days=1))
    assert reads(w, "S_OLD", Granularity.HALF_HOURLY) == (TimeRange(JAN, SWITCH),)
    assert reads(w, "S_NEW", Granularity.HALF_HOURLY) is None


@pytest.mark.parametrize(
    ("supplier", "effective", "message"),
    [
        ("S_OLD", SWITCH, "already supplies"),
        ("S_NEW", JAN, "not after the current supply began"),
        ("C1", SWITCH, "not a supplier"),
    ],
)
def test_bad_supplier_changes_are_refused_and_change_nothing(
    world: World, supplier: str, effective: datetime, message: str
) -> None:
    with pytest.raises(LifecycleError, match=message):
        change_supplier(world.repo, "P1", Fuel.ELECTRICITY, supplier, effective)
    assert world.repo.supply_periods(["P1"]) == (SupplyPeriod("P1", Fuel.ELECTRICITY, "S_OLD", JAN),)


def test_first_supplier_of_a_new_fuel(world: World) -> None:
    change = change_supplier(world.repo, "P1", Fuel.GAS, "S_NEW", SWITCH)
    assert change.old_supplier_id is None
    assert SupplyPeriod("P1", Fuel.GAS, "S_NEW", SWITCH) in world.repo.supply_periods(["P1"])


def test_change_of_tenancy_resets_consents(world: World) -> None:
    w = world
    w.repo.grant_consent(consent("K1", "TP", "T1", JAN + timedelta(days=3)))
    assert reads(w, "TP", Granularity.HALF_HOURLY) == (TimeRange(JAN, YEAR.end),)
    assert reads(w, "C1", Granularity.HALF_HOURLY) == (TimeRange(JAN, YEAR.end),)

    move = SWITCH
    change = move_in(w.repo, "P1", "C2", "T2", move)
    assert change.ended == Tenancy("T1", "P1", "C1", JAN, move)
    assert change.started == Tenancy("T2", "P1", "C2", move)
    assert change.consents_revoked == 1
    (k1,) = w.repo.consents(["P1"])
    assert k1.revoked_at == move

    w.clock.set(move + timedelta(hours=1))
    assert reads(w, "TP", Granularity.HALF_HOURLY) is None  # the old occupant's consent is gone
    assert reads(w, "C2", Granularity.HALF_HOURLY) == (TimeRange(move, YEAR.end),)  # only from move-in
    assert reads(w, "C1", Granularity.HALF_HOURLY) == (TimeRange(JAN, move),)  # their own history
    assert not w.guard.authorize("C1", Action.MANAGE_CONSENT, premises_id="P1").allow
    assert w.guard.authorize("C2", Action.MANAGE_CONSENT, premises_id="P1").allow

    # The new occupant's own consent opens their data only, never the previous occupant's.
    w.repo.grant_consent(consent("K2", "TP", "T2", move + timedelta(minutes=30)))
    assert reads(w, "TP", Granularity.HALF_HOURLY) == (TimeRange(move, YEAR.end),)


def test_move_out_then_vacant_then_move_in(world: World) -> None:
    w = world
    w.repo.grant_consent(consent("K1", "TP", "T1", JAN + timedelta(days=3)))
    out = move_out(w.repo, "P1", SWITCH)
    assert out.ended is not None and out.ended.end == SWITCH and out.consents_revoked == 1
    with pytest.raises(LifecycleError, match="nobody occupies"):
        move_out(w.repo, "P1", SWITCH + timedelta(days=1))
    w.clock.set(SWITCH + timedelta(days=2))
    assert reads(w, "C1") == (TimeRange(JAN, SWITCH),)
    later = SWITCH + timedelta(days=14)
    change = move_in(w.repo, "P1", "C2", "T2", later)
    assert change.ended is None and change.consents_revoked == 0
    w.clock.set(later)
    assert reads(w, "C2") == (TimeRange(later, YEAR.end),)  # the vacant fortnight belongs to nobody


def test_bad_tenancy_changes_are_refused(world: World) -> None:
    with pytest.raises(LifecycleError, match="not before this move-in"):
        move_in(world.repo, "P1", "C2", "T2", JAN - timedelta(days=1))
    with pytest.raises(LifecycleError, match="already occupies"):
        move_in(world.repo, "P1", "C1", "T2", SWITCH)
    with pytest.raises(LifecycleError, match="timezone-aware"):
        move_out(world.repo, "P1", datetime(2026, 9, 1))
    # Every refusal left the tenancy as it was (each ran in one transaction).
    assert world.repo.tenancies(["P1"]) == (Tenancy("T1", "P1", "C1", JAN),)


def test_renewals_are_spread_over_the_lead_time_a_fixed_share_per_hub() -> None:
    """Hubs commissioned together fall due together; renew_spread gives each a fixed share of
    the spread (the same in every process), so a round is not one burst (issue 24)."""
    from smarthub.gdsc.fleet.lifecycle import renew_spread_of

    spread = timedelta(days=2)
    shares = [renew_spread_of(f"HUB{i:06d}", spread) for i in range(1000)]
    assert shares == [renew_spread_of(f"HUB{i:06d}", spread) for i in range(1000)]
    assert all(timedelta(0) <= s < spread for s in shares)
    quarters = [sum(1 for s in shares if q * spread / 4 <= s < (q + 1) * spread / 4) for q in range(4)]
    assert all(200 <= n <= 300 for n in quarters), quarters
    assert renew_spread_of("HUB000001", timedelta(0)) == timedelta(0)  # no spread: the lead time
