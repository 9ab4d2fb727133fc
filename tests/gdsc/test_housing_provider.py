"""The housing provider's access to a building's flats (issue 21): sub-meter units per flat per
billing period, never the flats' electricity profiles; a change of tenant mid-period.

Flat B1-07 of building B1: tenant T_OLD until 15 March 2026 (move-out, interim reading), T_NEW since;
landlord L1 managed the building until 1 June 2026 (sold), L2 since. Requests on 15 July 2026.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from smarthub.gdsc.governance.access import AccessRequest, Action, TimeRange, decide
from smarthub.gdsc.governance.parties import Facts, Granularity, Management, Party, Role, Tenancy

FLAT = "B1-07"
JAN = datetime(2026, 1, 1, tzinfo=UTC)
MOVE = datetime(2026, 3, 15, tzinfo=UTC)
SALE = datetime(2026, 6, 1, tzinfo=UTC)
JUL = datetime(2026, 7, 1, tzinfo=UTC)
NOW = datetime(2026, 7, 15, tzinfo=UTC)
YEAR = TimeRange(JAN, JUL)  # the billing period asked for
FACTS = Facts(
    tenancies=(Tenancy("TEN1", FLAT, "T_OLD", JAN, MOVE), Tenancy("TEN2", FLAT, "T_NEW", MOVE)),
    managements=(Management(FLAT, "B1", "L1", JAN, SALE), Management(FLAT, "B1", "L2", SALE)),
)
L1 = Party("L1", Role.HOUSING_PROVIDER)


def ask(
    party: Party,
    fuel: str = "heat_cost_allocator",
    granularity: Granularity = Granularity.MONTHLY,
    action: Action = Action.READ_READINGS,
    premises: str = FLAT,
) -> AccessRequest:
    return AccessRequest(
        party, action, NOW, premises_id=premises, fuel=fuel, granularity=granularity, period=YEAR
    )


@pytest.mark.parametrize("fuel", ["heat_cost_allocator", "heat", "water", "warm_water"])
def test_provider_reads_submeters_monthly_while_it_managed_the_building(fuel: str) -> None:
    d = decide(ask(L1, fuel), FACTS)
    assert d.allow, d.reason
    assert d.ranges == (TimeRange(JAN, SALE),)  # up to the sale, across the change of tenant
    assert d.max_granularity is Granularity.MONTHLY
    d2 = decide(ask(Party("L2", Role.HOUSING_PROVIDER), fuel), FACTS)
    assert d2.allow and d2.ranges == (TimeRange(SALE, JUL),)  # the new landlord: from the sale only


@pytest.mark.parametrize("fuel", ["electricity", "gas"])
def test_provider_never_sees_the_flats_electricity_or_gas(fuel: str) -> None:
    d = decide(ask(L1, fuel, Granularity.TARIFF_REGISTER), FACTS)
    assert not d.allow
    assert f"not its {fuel}" in d.reason


@pytest.mark.parametrize("granularity", [Granularity.HALF_HOURLY, Granularity.DAILY])
def test_provider_gets_no_profile(granularity: Granularity) -> None:
    d = decide(ask(L1, "heat_cost_allocator", granularity), FACTS)
    assert not d.allow
    assert d.max_granularity is Granularity.MONTHLY  # says what it may ask for instead
    assert "monthly data at most" in d.reason


def test_provider_only_reads_and_exports() -> None:
    assert decide(ask(L1, action=Action.EXPORT), FACTS).allow
    on_demand = AccessRequest(L1, Action.ON_DEMAND_READ, NOW, premises_id=FLAT, fuel="heat_cost_allocator")
    assert not decide(on_demand, FACTS).allow


def test_provider_of_another_building_sees_nothing() -> None:
    d = decide(ask(Party("L9", Role.HOUSING_PROVIDER)), FACTS)
    assert not d.allow and "did not manage B1-07" in d.reason
    assert not decide(ask(L1, premises="B2-01"), FACTS).allow


def test_tenants_see_only_their_own_tenancy_of_the_period() -> None:
    """The bill's period spans the move: each tenant sees their own part, never the other's."""
    old = decide(ask(Party("T_OLD", Role.CONSUMER)), FACTS)
    new = decide(ask(Party("T_NEW", Role.CONSUMER)), FACTS)
    assert old.allow and old.ranges == (TimeRange(JAN, MOVE),)
    assert new.allow and new.ranges == (TimeRange(MOVE, JUL),)
    before = AccessRequest(
        Party("T_NEW", Role.CONSUMER),
        Action.READ_READINGS,
        NOW,
        premises_id=FLAT,
        fuel="heat_cost_allocator",
        granularity=Granularity.MONTHLY,
        period=TimeRange(JAN, MOVE),
    )
    assert not decide(before, FACTS).allow  # the previous tenant's months alone: refused


def test_management_period_is_checked() -> None:
    with pytest.raises(ValueError, match="not after its start"):
        Management(FLAT, "B1", "L1", SALE, JAN)
