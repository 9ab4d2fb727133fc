"""The access policy's finer rules: granularity, time ranges, boundaries, scope, k-anonymity, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from smarthub.gdsc.access import AccessRequest, Action, Policy, TimeRange, decide
from smarthub.gdsc.parties import (
    Consent,
    DataKind,
    Facts,
    Fuel,
    Granularity,
    Party,
    Role,
    SupplyPeriod,
    Tenancy,
)

JAN = datetime(2026, 1, 1, tzinfo=UTC)
JUL = datetime(2026, 7, 1, tzinfo=UTC)
NOW = datetime(2026, 8, 15, 12, tzinfo=UTC)
YEAR = TimeRange(JAN, datetime(2027, 1, 1, tzinfo=UTC))
P = "P1"
S_OLD, S_NOW = Party("S_OLD", Role.SUPPLIER), Party("S_NOW", Role.SUPPLIER)
C_OLD, C_NOW = Party("C_OLD", Role.CONSUMER), Party("C_NOW", Role.CONSUMER)
TP = Party("TP", Role.THIRD_PARTY)
HH, DAILY, MONTHLY = Granularity.HALF_HOURLY, Granularity.DAILY, Granularity.MONTHLY


def consent(party: str = "TP", **kw) -> Consent:  # type: ignore[no-untyped-def]
    base = dict(
        consent_id="K1",
        party_id=party,
        premises_id=P,
        tenancy_id="TEN_NOW",
        data_kinds=frozenset({DataKind.READINGS}),
        granularity=HH,
        purpose="tariff advice",
        granted_at=JUL + timedelta(days=1),
        expires_at=datetime(2027, 1, 1, tzinfo=UTC),
    )
    base.update(kw)
    return Consent(**base)  # type: ignore[arg-type]


def facts(*consents: Consent) -> Facts:
    return Facts(
        supply_periods=(
            SupplyPeriod(P, Fuel.ELECTRICITY, "S_OLD", JAN, JUL),
            SupplyPeriod(P, Fuel.ELECTRICITY, "S_NOW", JUL),
            SupplyPeriod(P, Fuel.GAS, "S_OLD", JAN),  # S_OLD still supplies the gas
        ),
        tenancies=(Tenancy("TEN_OLD", P, "C_OLD", JAN, JUL), Tenancy("TEN_NOW", P, "C_NOW", JUL)),
        consents=consents,
    )


def read(
    party: Party, g: Granularity = MONTHLY, *, at: datetime = NOW, period: TimeRange = YEAR, **kw
) -> AccessRequest:  # type: ignore[no-untyped-def]
    kw.setdefault("fuel", "electricity")
    return AccessRequest(party, Action.READ_READINGS, at, premises_id=P, granularity=g, period=period, **kw)


# -- suppliers ------------------------------------------------------------------------------------


def test_supplier_sees_only_its_own_supply_period() -> None:
    old = decide(read(S_OLD), facts())
    new = decide(read(S_NOW), facts())
    assert old.allow and old.ranges == (TimeRange(JAN, JUL),)
    assert new.allow and new.ranges == (TimeRange(JUL, YEAR.end),)


def test_supplier_default_is_monthly_finer_needs_consent() -> None:
    d = decide(read(S_NOW, DAILY), facts())
    assert not d.allow and d.max_granularity is MONTHLY
    assert "consent" in d.reason
    with_daily = facts(consent("S_NOW", granularity=DAILY))
    assert decide(read(S_NOW, DAILY), with_daily).allow
    hh = decide(read(S_NOW, HH), with_daily)
    assert not hh.allow and hh.max_granularity is DAILY


def test_supplier_consented_detail_covers_only_the_consenting_tenancy() -> None:
    """S_OLD supplies gas through both tenancies; C_NOW's consent opens half-hourly data from July only."""
    f = facts(consent("S_OLD", granularity=HH))
    monthly = decide(read(S_OLD, MONTHLY, fuel="gas"), f)
    assert monthly.ranges == (TimeRange(JAN, YEAR.end),)
    hh = decide(read(S_OLD, HH, fuel="gas"), f)
    assert hh.allow and hh.ranges == (TimeRange(JUL, YEAR.end),)


def test_supplier_per_fuel() -> None:
    assert not decide(read(S_NOW, fuel="gas"), facts()).allow
    cmd = AccessRequest(S_OLD, Action.TOP_UP, NOW, premises_id=P, fuel="gas")
    assert decide(cmd, facts()).allow
    assert not decide(
        AccessRequest(S_OLD, Action.TOP_UP, NOW, premises_id=P, fuel="electricity"), facts()
    ).allow
    assert not decide(AccessRequest(S_NOW, Action.TOP_UP, NOW, premises_id=P, fuel="water"), facts()).allow


def test_supplier_loses_commands_at_the_instant_supply_ends() -> None:
    def cmd(party: Party, at: datetime) -> bool:
        req = AccessRequest(party, Action.CONNECT_DISCONNECT, at, premises_id=P, fuel="electricity")
        return decide(req, facts()).allow

    tick = timedelta(microseconds=1)
    assert cmd(S_OLD, JUL - tick) and not cmd(S_NOW, JUL - tick)
    assert not cmd(S_OLD, JUL) and cmd(S_NOW, JUL)


# -- third parties --------------------------------------------------------------------------------


def test_revocation_is_effective_at_its_instant() -> None:
    revoked = NOW - timedelta(minutes=5)
    f = facts(consent(revoked_at=revoked))
    assert decide(read(TP, HH, at=revoked - timedelta(microseconds=1)), f).allow
    assert not decide(read(TP, HH, at=revoked), f).allow


def test_expiry_boundary() -> None:
    f = facts(consent(expires_at=NOW))
    assert decide(read(TP, HH, at=NOW - timedelta(microseconds=1)), f).allow
    assert not decide(read(TP, HH, at=NOW), f).allow


def test_third_party_only_to_the_granularity_consented() -> None:
    f = facts(consent(granularity=DAILY))
    hh = decide(read(TP, HH), f)
    assert not hh.allow and hh.max_granularity is DAILY
    daily = decide(read(TP, DAILY), f)
    assert daily.allow and daily.ranges == (TimeRange(JUL, YEAR.end),)  # never the previous occupant's


def test_third_party_consent_scope_meters_and_kinds() -> None:
    f = facts(consent(meters=frozenset({"E1"})))
    assert decide(read(TP, meter_id="E1"), f).allow
    assert not decide(read(TP, meter_id="E2"), f).allow
    assert not decide(read(TP), f).allow  # "all meters" is more than E1
    events = AccessRequest(TP, Action.READ_EVENTS, NOW, premises_id=P, fuel="electricity", period=YEAR)
    assert not decide(events, f).allow  # readings only


def test_unapproved_third_party_gets_nothing_even_with_consent() -> None:
    rogue = Party("TP", Role.THIRD_PARTY, approved=False)
    d = decide(read(rogue), facts(consent()))
    assert not d.allow and "approved" in d.reason


def test_consent_of_another_party_does_not_help() -> None:
    assert not decide(read(TP), facts(consent(party="OTHER"))).allow


# -- consumers ------------------------------------------------------------------------------------


def test_new_occupant_never_sees_previous_occupants_data() -> None:
    new = decide(read(C_NOW, HH), facts())
    assert new.allow and new.ranges == (TimeRange(JUL, YEAR.end),)
    before = decide(read(C_NOW, HH, period=TimeRange(JAN, JUL)), facts())
    assert not before.allow


def test_previous_occupant_keeps_their_own_history_but_not_the_new_one() -> None:
    old = decide(read(C_OLD, HH), facts())
    assert old.allow and old.ranges == (TimeRange(JAN, JUL),)
    manage = AccessRequest(C_OLD, Action.MANAGE_CONSENT, NOW, premises_id=P)
    assert not decide(manage, facts()).allow


def test_consumer_of_another_premises_sees_nothing() -> None:
    req = AccessRequest(
        C_NOW, Action.READ_READINGS, NOW, premises_id="P2", fuel="electricity", granularity=HH, period=YEAR
    )
    assert not decide(req, facts()).allow


# -- aggregates -----------------------------------------------------------------------------------


def aggregate(n: int) -> AccessRequest:
    group = frozenset(f"P{i}" for i in range(n))
    return AccessRequest(
        Party("DNO", Role.NETWORK_OPERATOR),
        Action.AGGREGATE_QUERY,
        NOW,
        group=group,
        granularity=HH,
        period=YEAR,
        group_id="FEEDER-1",
    )


def test_aggregate_needs_k_premises() -> None:
    assert not decide(aggregate(4), Facts()).allow
    assert (
        decide(aggregate(4), Facts()).reason
        == "group FEEDER-1 has 4 premises in the period; at least 5 are required"
    )
    assert decide(aggregate(5), Facts()).allow
    assert not decide(aggregate(5), Facts(), Policy(k_anonymity=10)).allow
    assert decide(aggregate(10), Facts(), Policy(k_anonymity=10)).allow


def test_k_below_two_is_refused() -> None:
    with pytest.raises(ValueError, match="k_anonymity"):
        Policy(k_anonymity=1)


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(action=Action.READ_READINGS, premises_id=P, fuel="electricity", granularity=HH), "period"),
        (dict(action=Action.READ_READINGS, premises_id=P, fuel="electricity", period=YEAR), "granularity"),
        (
            dict(
                action=Action.READ_READINGS,
                premises_id=P,
                fuel="electricity",
                period=YEAR,
                granularity=Granularity.NONE,
            ),
            "not 'none'",
        ),
        (dict(action=Action.READ_READINGS, premises_id=P, granularity=HH, period=YEAR), "fuel"),
        (dict(action=Action.TOP_UP, fuel="electricity"), "premises"),
        (dict(action=Action.AGGREGATE_QUERY, granularity=HH, period=YEAR), "group"),
        # A list of premises chosen by the caller is not a group (issue 13: differencing).
        (
            dict(action=Action.AGGREGATE_QUERY, granularity=HH, period=YEAR, group=frozenset({"P1", "P2"})),
            "pre-defined group",
        ),
        (dict(action="read-everything", premises_id=P), "read-everything"),
    ],
)
def test_malformed_requests_are_refused_with_a_specific_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AccessRequest(S_NOW, at=NOW, **kwargs)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        AccessRequest(S_NOW, Action.TOP_UP, datetime(2026, 8, 15), premises_id=P, fuel="electricity")
    with pytest.raises(ValueError, match="timezone-aware"):
        TimeRange(datetime(2026, 1, 1), datetime(2026, 2, 1))
    with pytest.raises(ValueError, match="not after"):
        TimeRange(JUL, JAN)
