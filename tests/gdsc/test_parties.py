"""Parties, supply periods, tenancies, consents and appointments stored on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from smarthub.gdsc.governance.parties import (
    Appointment,
    Consent,
    DataKind,
    Fuel,
    Granularity,
    Party,
    PartyRepository,
    Role,
    SupplyPeriod,
    Tenancy,
    UnknownParty,
)
from smarthub.gdsc.store import Store

JAN = datetime(2026, 1, 1, tzinfo=UTC)
JUL = datetime(2026, 7, 1, tzinfo=UTC)


@pytest.fixture
def repo(db_url: str) -> Iterator[PartyRepository]:
    store = Store(db_url)
    store.create_schema()
    for p in ("P1", "P2"):
        store.register_hub(hub_id=f"H{p}", premises_id=p, url="https://h", lfdi="A" * 40, meters_by_fuel=[])
    r = PartyRepository(store.engine)
    for party in (
        Party("S1", Role.SUPPLIER, "Supplier One"),
        Party("C1", Role.CONSUMER),
        Party("C2", Role.CONSUMER),
        Party("TP", Role.THIRD_PARTY, "Tariff Advice Ltd", approved=False),
        Party("I1", Role.INSTALLER),
    ):
        r.add_party(party)
    yield r
    store.close()


def k1(**kw) -> Consent:  # type: ignore[no-untyped-def]
    base = dict(
        consent_id="K1",
        party_id="TP",
        premises_id="P1",
        tenancy_id="T1",
        data_kinds=frozenset({DataKind.READINGS, DataKind.EVENTS}),
        granularity=Granularity.DAILY,
        purpose="tariff advice",
        granted_at=JAN + timedelta(days=3),
        expires_at=JAN + timedelta(days=365),
        meters=frozenset({"E1", "G1"}),
    )
    base.update(kw)
    return Consent(**base)  # type: ignore[arg-type]


def test_round_trip_of_every_fact(repo: PartyRepository) -> None:
    assert repo.party("TP") == Party("TP", Role.THIRD_PARTY, "Tariff Advice Ltd", approved=False)
    repo.add_supply_period(SupplyPeriod("P1", Fuel.ELECTRICITY, "S1", JAN, JUL))
    repo.add_supply_period(SupplyPeriod("P1", Fuel.GAS, "S1", JAN))
    repo.add_tenancy(Tenancy("T1", "P1", "C1", JAN))
    repo.add_tenancy(Tenancy("T2", "P2", "C2", JUL))
    # A consent given in another time zone comes back as the same instant.
    bst = timezone(timedelta(hours=1))
    repo.grant_consent(k1(granted_at=datetime(2026, 1, 4, 1, 30, tzinfo=bst)))
    repo.grant_consent(k1(consent_id="K2", meters=None, granularity=Granularity.TARIFF_REGISTER))
    repo.add_appointment(Appointment("P1", "I1", JUL, JUL + timedelta(hours=4)))

    f = repo.facts(["P1"])
    assert f.supply_periods == (
        SupplyPeriod("P1", Fuel.ELECTRICITY, "S1", JAN, JUL),
        SupplyPeriod("P1", Fuel.GAS, "S1", JAN),
    )
    assert f.tenancies == (Tenancy("T1", "P1", "C1", JAN),)
    assert f.consents == (
        k1(consent_id="K2", meters=None, granularity=Granularity.TARIFF_REGISTER),
        k1(granted_at=datetime(2026, 1, 4, 0, 30, tzinfo=UTC)),
    )
    assert all(c.granted_at.tzinfo is not None for c in f.consents)
    assert f.appointments == (Appointment("P1", "I1", JUL, JUL + timedelta(hours=4)),)
    assert repo.facts(["P2"]).tenancies == (Tenancy("T2", "P2", "C2", JUL),)


def test_revocation_is_stored_once(repo: PartyRepository) -> None:
    repo.add_tenancy(Tenancy("T1", "P1", "C1", JAN))
    repo.grant_consent(k1())
    at = JUL + timedelta(minutes=7)
    assert repo.revoke_consent("K1", at) is True
    assert repo.revoke_consent("K1", at + timedelta(days=1)) is False  # the first revocation stands
    assert repo.revoke_consent("nope", at) is False
    (c,) = repo.consents(["P1"])
    assert c.revoked_at == at and not c.live_at(at) and c.live_at(at - timedelta(microseconds=1))


def test_roles_are_enforced(repo: PartyRepository) -> None:
    with pytest.raises(ValueError, match="'C1' has role consumer, not supplier"):
        repo.add_supply_period(SupplyPeriod("P1", Fuel.ELECTRICITY, "C1", JAN))
    with pytest.raises(ValueError, match="not consumer"):
        repo.add_tenancy(Tenancy("T9", "P1", "S1", JAN))
    with pytest.raises(ValueError, match="has role supplier, not installer"):
        repo.add_appointment(Appointment("P1", "S1", JAN, JUL))
    with pytest.raises(UnknownParty, match="'ghost'"):
        repo.party("ghost")


def test_consent_must_belong_to_a_tenancy_of_that_premises(repo: PartyRepository) -> None:
    repo.add_tenancy(Tenancy("T1", "P1", "C1", JAN, JUL))
    with pytest.raises(ValueError, match="not a tenancy of premises 'P2'"):
        repo.grant_consent(k1(premises_id="P2"))
    with pytest.raises(ValueError, match="outside tenancy 'T1'"):
        repo.grant_consent(k1(granted_at=JUL + timedelta(days=1)))
    with pytest.raises(UnknownParty):
        repo.grant_consent(k1(party_id="ghost"))
    assert repo.consents(["P1", "P2"]) == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(data_kinds=frozenset()), "at least one data kind"),
        (dict(purpose="  "), "purpose"),
        (dict(expires_at=JAN), "not after its start"),
        (dict(granted_at=datetime(2026, 1, 2)), "timezone-aware"),
        (dict(granularity="hourly"), "'hourly' is not a valid Granularity"),
        (dict(data_kinds=frozenset({"gossip"})), "'gossip' is not a valid DataKind"),
    ],
)
def test_malformed_consents_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        k1(**kwargs)


def test_granularity_order() -> None:
    order = [
        Granularity.NONE,
        Granularity.TARIFF_REGISTER,
        Granularity.MONTHLY,
        Granularity.DAILY,
        Granularity.HALF_HOURLY,
    ]
    assert sorted(Granularity, key=lambda g: g.rank) == order
