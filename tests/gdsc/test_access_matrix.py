"""The full authorization matrix: every role × every action × in/out of its relation to the premises
× no/live/expired/revoked consent, each cell with its expected allow or deny.

The expectations are written out below as a table, one row per role and one column per action, so
the policy is checked against a specification a reader can audit at a glance, not against itself.

Scenario (premises P1, electricity): the previous occupant C_OLD lived there from 1 January to
1 July 2026, the current occupant C_NOW since 1 July. S_OLD supplied electricity until 1 July,
S_NOW since. Installer I_NOW is on site now; I_OLD's visit was on 1 August. Requests are made on
15 August 2026 at 12:00 for data of 1-15 August at half-hourly granularity (the finest).

"in" means the party's own relation covers now and the data asked for (current supplier, current
occupant, consent given in the current tenancy, installer on site); "out" means it has ended
(previous supplier, previous occupant, consent given in the previous tenancy, past visit).

The job asked about (read-job) was queued by the "in" party of the asker's role where that role
can queue work (S_NOW, C_NOW, I_NOW, the operator), else by S_NOW: so "in" asks about its own job,
"out" about someone else's. A portfolio is the asker's own sites (here P1) with the same period.

Each API endpoint is decided by one action (``ENDPOINTS`` below); ``test_api_matrix.py`` replays
this table over HTTP for the endpoints of the data services API.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from smarthub.gdsc.governance.access import AccessRequest, Action, TimeRange, decide
from smarthub.gdsc.governance.parties import (
    Appointment,
    Consent,
    DataKind,
    Facts,
    Fuel,
    Granularity,
    Management,
    Operation,
    Party,
    Role,
    SupplyPeriod,
    Tenancy,
)

JAN = datetime(2026, 1, 1, tzinfo=UTC)
JUL = datetime(2026, 7, 1, tzinfo=UTC)
AUG1 = datetime(2026, 8, 1, tzinfo=UTC)
NOW = datetime(2026, 8, 15, 12, tzinfo=UTC)
ASKED = TimeRange(AUG1, datetime(2026, 8, 15, tzinfo=UTC))
P = "P1"
GROUP = frozenset({"P1", "P2", "P3", "P4", "P5"})  # exactly k = 5 premises
GROUP_ID = "FEEDER-1"  # aggregates are over groups the GDSC defined, never a caller's list

# Columns, in order:
ACTIONS = [
    Action.READ_READINGS,
    Action.READ_EVENTS,
    Action.EXPORT,
    Action.TARIFF_UPDATE,
    Action.IHD_MESSAGE,
    Action.TOP_UP,
    Action.CONNECT_DISCONNECT,
    Action.ON_DEMAND_READ,
    Action.AGGREGATE_QUERY,
    Action.LIST_ACCESS_LOG,
    Action.MANAGE_CONSENT,
    Action.READ_JOB,
    Action.PORTFOLIO,
    Action.EDIT_READINGS,
    Action.DATA_QUALITY,
    Action.NETWORK_READ,
    Action.NETWORK_EDIT,
    Action.DUOS_DATASET,
    Action.SERVICE_APPLICATION,
    Action.SERVICE_ADMIN,
    Action.TRANSFER_POLICY,
    Action.METER_SHIPMENT,
    Action.METER_INSTALL,
    Action.TARIFF_CATALOGUE,
    Action.DEMAND_RESPONSE,
    Action.READ_APPLIANCES,
]
# I = allowed iff "in";  C = allowed iff "in" and the consent is live;  A = always;  - = never.
MATRIX = {
    #                        read  events export tariff ihd  top-up c/d  on-dem aggr  log  consent job portf edit dq net-r net-e duos  apply admin xfer ship inst tariffs dr   appl
    Role.SUPPLIER: "          C     I      C      I      I     I      I     I      -     -     -      I    -     -    -   -     -     -    -     -     -     -    -    A  -    -",
    Role.THIRD_PARTY: "       C     C      C      -      C     -      -     -      -     -     -      -    -     -    -   -     -     -    A     -     -     -    -    A  C    C",
    Role.CONSUMER: "          I     I      I      -      -     -      -     I      -     I     I      I    I     -    -   -     -     -    -     -     -     -    -    A  -    I",
    Role.INSTALLER: "         -     I      -      -      -     -      -     I      -     -     -      I    -     -    -   -     -     -    -     -     -     -    I    -  -    -",
    Role.NETWORK_OPERATOR: "  I     -      I      -      -     -      -     -      A     -     -      -    -     -    -   I     I     I    -     -     -     -    -    -  -    -",
    Role.OPERATOR: "          -     A      -      -      -     -      -     A      A     A     -      A    -     A    A   A     A     -    -     A     A     A    A    A  -    -",
    Role.HOUSING_PROVIDER: "  -     -      -      -      -     -      -     -      -     -     -      -    -     -    -   -     -     -    -     -     -     -    -    -  -    -",
}
# Appliance data (issue 25, the last column) is a data service's with a consent covering it (the
# consent below covers readings, events, demand-response, appliances and ihd-messages) and the
# occupant's; nobody else's, the supplier's neither.
# An IHD message is the supplier's command, or a data service's message with the current
# occupant's live consent to ihd-messages (issue 25: the advisor's advice, appliance health's
# findings on the display); never the occupant's own, an installer's or the operator's.
# A network operator reads (and exports) a premises' electricity readings as DUoS data: "in" is
# the operator of the premises' substation now (N_NOW, since 1 July), "out" the one before (N_OLD).
# A housing provider sees no electricity at all (its row is all "-"): "in" is the landlord of P1's
# building now (H_NOW, since 1 July), "out" the one before (H_OLD); SUBMETER_MATRIX below is what
# every role sees of P1's heat-cost allocator.

# The API endpoints and the action that decides each (every endpoint that touches a premises).
ENDPOINTS = {
    "GET /v1/premises/{premises_id}/readings": Action.READ_READINGS,
    "GET /v1/premises/{premises_id}/readings/export": Action.EXPORT,
    "POST /v1/premises/{premises_id}/commands/tariff-update": Action.TARIFF_UPDATE,
    "POST /v1/premises/{premises_id}/commands/ihd-message": Action.IHD_MESSAGE,
    "POST /v1/premises/{premises_id}/commands/top-up": Action.TOP_UP,
    "POST /v1/premises/{premises_id}/commands/supply": Action.CONNECT_DISCONNECT,
    "POST /v1/premises/{premises_id}/on-demand-reads": Action.ON_DEMAND_READ,
    "GET /v1/aggregates/readings": Action.AGGREGATE_QUERY,
    "GET /v1/premises/{premises_id}/access-log": Action.LIST_ACCESS_LOG,
    "GET /v1/premises/{premises_id}/consents": Action.MANAGE_CONSENT,
    "POST /v1/premises/{premises_id}/consents": Action.MANAGE_CONSENT,
    "DELETE /v1/premises/{premises_id}/consents/{consent_id}": Action.MANAGE_CONSENT,
    "GET /v1/premises/{premises_id}/services": Action.MANAGE_CONSENT,
    "GET /v1/jobs/{job_id}": Action.READ_JOB,
    "GET /v1/portfolio": Action.PORTFOLIO,
    "GET /v1/portfolio/consumption": Action.PORTFOLIO,
    "POST /v1/premises/{premises_id}/readings/edits": Action.EDIT_READINGS,
    "GET /v1/premises/{premises_id}/readings/versions": Action.EDIT_READINGS,
    "GET /v1/premises/{premises_id}/readings/quarantine": Action.EDIT_READINGS,
    "POST /v1/premises/{premises_id}/readings/quarantine": Action.EDIT_READINGS,
    "GET /v1/data-quality": Action.DATA_QUALITY,
    "GET /v1/outages": Action.NETWORK_READ,
    "GET /v1/outages/events": Action.NETWORK_READ,
    "GET /v1/outages/{outage_id}": Action.NETWORK_READ,
    "GET /v1/network/topology": Action.NETWORK_READ,
    "GET /v1/network/nodes/{node_id}/planning": Action.NETWORK_READ,
    "GET /v1/network/nodes/{node_id}/power-quality": Action.NETWORK_READ,
    "PUT /v1/network/nodes/{node_id}": Action.NETWORK_EDIT,
    "PUT /v1/network/premises/{premises_id}": Action.NETWORK_EDIT,
    "POST /v1/network/topology": Action.NETWORK_EDIT,
    "GET /v1/network/duos": Action.DUOS_DATASET,
    "POST /v1/services": Action.SERVICE_APPLICATION,
    "GET /v1/services/mine": Action.SERVICE_APPLICATION,
    "GET /v1/services": Action.SERVICE_ADMIN,
    "POST /v1/services/{service_id}/decisions": Action.SERVICE_ADMIN,
    "POST /v1/transfer-policies": Action.TRANSFER_POLICY,
    "GET /v1/transfer-policies": Action.TRANSFER_POLICY,
    "PUT /v1/premises/{premises_id}/transfer-group": Action.TRANSFER_POLICY,
    "POST /v1/meter-shipments": Action.METER_SHIPMENT,
    "POST /v1/premises/{premises_id}/meter-installs": Action.METER_INSTALL,
    "GET /v1/premises/{premises_id}/pending-meters": Action.METER_INSTALL,
    "GET /v1/tariffs": Action.TARIFF_CATALOGUE,
    "POST /v1/premises/{premises_id}/demand-response/events": Action.DEMAND_RESPONSE,
    "GET /v1/premises/{premises_id}/demand-response/events/{event_id}": Action.DEMAND_RESPONSE,
    "POST /v1/premises/{premises_id}/demand-response/events/{event_id}/cancellation": Action.DEMAND_RESPONSE,
    "GET /v1/premises/{premises_id}/appliances": Action.READ_APPLIANCES,
}
# Who queued the job each role asks about (see the module docstring).
JOB_OWNER = {
    Role.SUPPLIER: "S_NOW",
    Role.CONSUMER: "C_NOW",
    Role.INSTALLER: "I_NOW",
    Role.OPERATOR: "OPERATOR",
}

PARTY = {
    (Role.SUPPLIER, "in"): "S_NOW",
    (Role.SUPPLIER, "out"): "S_OLD",
    (Role.CONSUMER, "in"): "C_NOW",
    (Role.CONSUMER, "out"): "C_OLD",
    (Role.INSTALLER, "in"): "I_NOW",
    (Role.INSTALLER, "out"): "I_OLD",
    (Role.NETWORK_OPERATOR, "in"): "N_NOW",
    (Role.NETWORK_OPERATOR, "out"): "N_OLD",
    (Role.HOUSING_PROVIDER, "in"): "H_NOW",
    (Role.HOUSING_PROVIDER, "out"): "H_OLD",
}
NODE = "F1"  # the feeder P1 is on (under secondary S1): network data is asked about it
CONSENTS = ["none", "live", "expired", "revoked"]


def expected(role: Role, action: Action, where: str, consent: str) -> bool:
    code = MATRIX[role].split()[ACTIONS.index(action)]
    return {
        "A": True,
        "-": False,
        "I": where == "in",
        "C": where == "in" and consent == "live",
    }[code]


def facts_for(party_id: str, where: str, consent: str) -> Facts:
    tenancy = "TEN_NOW" if where == "in" else "TEN_OLD"
    granted = (JUL if where == "in" else JAN) + timedelta(days=1)
    consents: tuple[Consent, ...] = ()
    if consent != "none":
        consents = (
            Consent(
                consent_id="K1",
                party_id=party_id,
                premises_id=P,
                tenancy_id=tenancy,
                data_kinds=frozenset(
                    {
                        DataKind.READINGS,
                        DataKind.EVENTS,
                        DataKind.DEMAND_RESPONSE,
                        DataKind.APPLIANCES,
                        DataKind.IHD_MESSAGES,
                    }
                ),
                granularity=Granularity.HALF_HOURLY,
                purpose="tariff advice",
                granted_at=granted,
                expires_at=datetime(2026, 8, 10, tzinfo=UTC)
                if consent == "expired"
                else datetime(2027, 1, 1, tzinfo=UTC),
                revoked_at=datetime(2026, 8, 14, tzinfo=UTC) if consent == "revoked" else None,
            ),
        )
    return Facts(
        supply_periods=(
            SupplyPeriod(P, Fuel.ELECTRICITY, "S_OLD", JAN, JUL),
            SupplyPeriod(P, Fuel.ELECTRICITY, "S_NOW", JUL),
        ),
        tenancies=(Tenancy("TEN_OLD", P, "C_OLD", JAN, JUL), Tenancy("TEN_NOW", P, "C_NOW", JUL)),
        consents=consents,
        appointments=(
            Appointment(P, "I_NOW", NOW - timedelta(hours=3), NOW + timedelta(hours=5)),
            Appointment(P, "I_OLD", AUG1 + timedelta(hours=9), AUG1 + timedelta(hours=17)),
        ),
        operations=tuple(
            Operation(subject, who, start, end)
            for subject in (P, NODE)
            for who, start, end in (("N_OLD", JAN, JUL), ("N_NOW", JUL, None))
        ),
        managements=(Management(P, "B1", "H_OLD", JAN, JUL), Management(P, "B1", "H_NOW", JUL)),
    )


def request(party: Party, action: Action) -> AccessRequest:
    if action is Action.AGGREGATE_QUERY:
        return AccessRequest(
            party,
            action,
            NOW,
            group=GROUP,
            granularity=Granularity.HALF_HOURLY,
            period=ASKED,
            group_id=GROUP_ID,
        )
    if action is Action.PORTFOLIO:
        return AccessRequest(
            party, action, NOW, group=frozenset({P}), granularity=Granularity.HALF_HOURLY, period=ASKED
        )
    if action is Action.READ_JOB:
        return AccessRequest(party, action, NOW, premises_id=P, job_owner=JOB_OWNER.get(party.role, "S_NOW"))
    if action in (Action.NETWORK_READ, Action.NETWORK_EDIT):
        return AccessRequest(party, action, NOW, group_id=NODE)
    if action is Action.DUOS_DATASET:
        return AccessRequest(party, action, NOW, period=ASKED)
    if action in (
        Action.DATA_QUALITY,
        Action.SERVICE_APPLICATION,
        Action.SERVICE_ADMIN,
        Action.TRANSFER_POLICY,
        Action.METER_SHIPMENT,
        Action.TARIFF_CATALOGUE,
    ):
        return AccessRequest(party, action, NOW)
    needs_period = action in (
        Action.READ_READINGS,
        Action.READ_EVENTS,
        Action.EXPORT,
        Action.LIST_ACCESS_LOG,
        Action.DEMAND_RESPONSE,  # the event's interval
        Action.READ_APPLIANCES,
    )
    reads = action in (Action.READ_READINGS, Action.EXPORT, Action.READ_APPLIANCES)
    return AccessRequest(
        party,
        action,
        NOW,
        premises_id=P,
        fuel="electricity",
        meter_id=None if action is Action.READ_APPLIANCES else "E1",  # the plugs: every one of them
        granularity=Granularity.HALF_HOURLY if reads else None,
        period=ASKED if needs_period else None,
    )


CELLS = [
    pytest.param(role, action, where, consent, id=f"{role.value}-{action.value}-{where}-{consent}")
    for role in Role
    for action in ACTIONS
    for where in ("in", "out")
    for consent in CONSENTS
]


@pytest.mark.parametrize(("role", "action", "where", "consent"), CELLS)
def test_authorization_matrix(role: Role, action: Action, where: str, consent: str) -> None:
    party_id = PARTY.get((role, where), role.value.upper())
    party = Party(party_id, role)
    decision = decide(request(party, action), facts_for(party_id, where, consent))
    assert decision.allow is expected(role, action, where, consent), decision.reason
    assert decision.reason  # every answer, allow or deny, says why
    if not decision.allow:
        assert decision.ranges == ()
    elif action.data_kind is not None or action in (
        Action.AGGREGATE_QUERY,
        Action.LIST_ACCESS_LOG,
        Action.PORTFOLIO,
        Action.DUOS_DATASET,
    ):
        # Every "in" relation here covers the whole of 1-15 August.
        assert decision.ranges == (ASKED,)
    if decision.allow and action in (Action.READ_READINGS, Action.EXPORT, Action.PORTFOLIO):
        assert decision.max_granularity is Granularity.HALF_HOURLY
    if decision.allow and action is Action.PORTFOLIO:
        assert decision.sites == ((P, (ASKED,)),)


def test_matrix_covers_every_role_and_action() -> None:
    assert set(MATRIX) == set(Role)
    assert set(ACTIONS) == set(Action)
    assert all(len(row.split()) == len(ACTIONS) for row in MATRIX.values())
    assert len(CELLS) == len(Role) * len(Action) * 2 * len(CONSENTS) == 1456
    assert set(ENDPOINTS.values()) == set(Action) - {Action.READ_EVENTS}  # events: no API endpoint yet


# What each role may read (and export) of P1's heat-cost allocator, monthly (a billing period's
# units): the codes as in MATRIX, columns read-readings and export.
SUBMETER_MATRIX = {
    Role.SUPPLIER: "- -",  # supplies no heat or water (no supply period for them)
    Role.THIRD_PARTY: "C C",
    Role.CONSUMER: "I I",  # the tenant, within their own tenancy
    Role.INSTALLER: "- -",
    Role.NETWORK_OPERATOR: "- -",  # DUoS data is electricity only
    Role.OPERATOR: "- -",
    Role.HOUSING_PROVIDER: "I I",  # the landlord of the building, while it is
}
# A building's endpoints (issue 21) decide each of its flats' sub-meters by the read action on
# their medium: what SUBMETER_MATRIX's read column says (test_api_matrix.py replays it over HTTP
# for a building whose one flat is P1).
BUILDING_ENDPOINTS = {
    "GET /v1/buildings/{building_id}/readings": Action.READ_READINGS,
    "GET /v1/buildings/{building_id}/heat-bill": Action.READ_READINGS,
}


def expected_submeter(role: Role, action: Action, where: str, consent: str) -> bool:
    code = SUBMETER_MATRIX[role].split()[[Action.READ_READINGS, Action.EXPORT].index(action)]
    return {"-": False, "I": where == "in", "C": where == "in" and consent == "live"}[code]


SUBMETER_CELLS = [
    pytest.param(role, action, where, consent, id=f"{role.value}-{action.value}-{where}-{consent}")
    for role in Role
    for action in (Action.READ_READINGS, Action.EXPORT)
    for where in ("in", "out")
    for consent in CONSENTS
]


@pytest.mark.parametrize(("role", "action", "where", "consent"), SUBMETER_CELLS)
def test_submeter_matrix(role: Role, action: Action, where: str, consent: str) -> None:
    party_id = PARTY.get((role, where), role.value.upper())
    ask = AccessRequest(
        Party(party_id, role),
        action,
        NOW,
        premises_id=P,
        fuel="heat_cost_allocator",
        meter_id="HCA1",
        granularity=Granularity.MONTHLY,
        period=ASKED,
    )
    decision = decide(ask, facts_for(party_id, where, consent))
    allow = expected_submeter(role, action, where, consent)
    assert decision.allow is allow, decision.reason
    assert decision.reason
    assert decision.ranges == ((ASKED,) if allow else ())


def test_submeter_matrix_covers_every_role() -> None:
    assert set(SUBMETER_MATRIX) == set(Role)


@pytest.mark.parametrize(
    ("kinds", "readings", "appliances"),
    [
        ({DataKind.READINGS}, True, False),  # the tariff advisor's consent: no appliance data
        ({DataKind.APPLIANCES}, False, True),  # appliance health's: never the whole-home readings
        ({DataKind.READINGS, DataKind.APPLIANCES}, True, True),
    ],
)
def test_appliance_data_and_readings_need_each_their_own_consent(
    kinds: set[DataKind], readings: bool, appliances: bool
) -> None:
    """Issue 25: appliance data is a data kind of its own for a data service, both ways."""
    facts = facts_for("THIRD_PARTY", "in", "live")
    consent = facts.consents[0]
    only = Facts(
        supply_periods=facts.supply_periods,
        tenancies=facts.tenancies,
        consents=(
            Consent(
                consent.consent_id, consent.party_id, P, consent.tenancy_id, frozenset(kinds),
                Granularity.DAILY, "appliance health", consent.granted_at, consent.expires_at,
            ),
        ),
    )  # fmt: skip
    party = Party("THIRD_PARTY", Role.THIRD_PARTY)
    for action, allowed in ((Action.READ_READINGS, readings), (Action.READ_APPLIANCES, appliances)):
        meter = None if action is Action.READ_APPLIANCES else "E1"
        ask = AccessRequest(
            party, action, NOW, premises_id=P, fuel="electricity", meter_id=meter,
            granularity=Granularity.DAILY, period=ASKED,
        )  # fmt: skip
        decision = decide(ask, only)
        assert decision.allow is allowed, (action, decision.reason)
        finer = decide(
            AccessRequest(party, action, NOW, premises_id=P, fuel="electricity", meter_id=meter,
                          granularity=Granularity.HALF_HOURLY, period=ASKED),
            only,
        )  # fmt: skip
        assert not finer.allow  # the consent is daily: half-hours are refused either way


@pytest.mark.parametrize(
    ("approved", "consented", "why"),
    [
        ({DataKind.READINGS, DataKind.IHD_MESSAGES}, {DataKind.IHD_MESSAGES}, None),
        # the advisor's readings consent alone does not open the display
        ({DataKind.READINGS, DataKind.IHD_MESSAGES}, {DataKind.READINGS}, "no live consent"),
        # a consent beyond the approval (given before the API checked) is not enough either
        ({DataKind.READINGS}, {DataKind.READINGS, DataKind.IHD_MESSAGES}, "approved for readings only"),
    ],
)
def test_a_service_message_needs_both_the_approval_and_the_consent_to_ihd_messages(
    approved: set[DataKind], consented: set[DataKind], why: str | None
) -> None:
    """Issue 25: a data service's message on the display needs the GDSC's approval for the
    ``ihd-messages`` kind and the current occupant's live consent to it; suspension refuses it."""
    from dataclasses import replace

    from smarthub.gdsc.governance.services import Application, DataService, Status

    facts = facts_for("THIRD_PARTY", "in", "live")
    consent = replace(facts.consents[0], data_kinds=frozenset(consented))
    application = Application("Advisor Ltd", "tariff advice", frozenset(approved), Granularity.DAILY, 30)
    service = DataService("THIRD_PARTY", application, Status.APPROVED, "", JUL)
    ask = AccessRequest(
        Party("THIRD_PARTY", Role.THIRD_PARTY), Action.IHD_MESSAGE, NOW, premises_id=P, fuel="electricity",
        meter_id="E1",
    )  # fmt: skip
    decision = decide(ask, replace(facts, consents=(consent,), service=service))
    assert decision.allow is (why is None), decision.reason
    assert why is None or why in decision.reason
    suspended = replace(service, status=Status.SUSPENDED, reason="complaint")
    decision = decide(ask, replace(facts, consents=(consent,), service=suspended))
    assert not decision.allow and decision.reason == "data service THIRD_PARTY is suspended: complaint"
    # A consent naming another meter does not cover a message through this one.
    other = replace(consent, meters=frozenset({"G1"}))
    assert not decide(ask, replace(facts, consents=(other,), service=service)).allow
