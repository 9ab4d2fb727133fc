"""The authorization matrix of ``test_access_matrix.py`` replayed over HTTP: every API endpoint ×
every role × in/out × no/live/expired/revoked consent, against a real store, expecting 2xx exactly
where the table says allow and 403 elsewhere (404 for another party's job, as for a missing one),
and an audit entry naming the endpoint's action.

Each (in/out, consent) combination is its own premises with the facts of ``facts_for`` (so one
database holds all 8 scenarios); the premises' jobs were queued by each role's "in" party.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gdsc.api_world import api_routes, tariff_json
from gdsc.test_access_matrix import (
    ASKED,
    BUILDING_ENDPOINTS,
    CONSENTS,
    ENDPOINTS,
    GROUP_ID,
    JAN,
    JOB_OWNER,
    JUL,
    NOW,
    PARTY,
    expected,
    expected_submeter,
    facts_for,
)
from smarthub.clock import ManualClock
from smarthub.gdsc.api.app import create_app
from smarthub.gdsc.api.auth.tokens import TokenStore
from smarthub.gdsc.commands.demand_response import DemandResponse, EventRequest
from smarthub.gdsc.commands.desk import CommandDesk
from smarthub.gdsc.fleet.buildings import Building, BuildingMeter, BuildingRegistry, Flat
from smarthub.gdsc.governance.access import Action
from smarthub.gdsc.governance.aggregates import AggregationGroups
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.gdsc.governance.parties import Consent, Party, PartyRepository, Role
from smarthub.gdsc.outages.correlate import Change, Outage
from smarthub.gdsc.outages.store import OutageStore
from smarthub.gdsc.outages.topology import TopologyStore, parse_csv
from smarthub.gdsc.readings.tables import StoredReading
from smarthub.gdsc.readings.vee.store import VeeSettings
from smarthub.gdsc.store import Store
from smarthub.sim.fleet import provision

WHERE = ("in", "out")
EVENT = EventRequest(NOW + timedelta(hours=2), timedelta(hours=1), ("water-heater",), duty_cycle=50)
HELD = -5  # a negative reading of a meter that cannot export: quarantined
CSV_HEADER = "premises_id,phase,feeder,secondary_substation,primary_substation\n"
ALL_PREMISES = sorted(f"P-{w}-{c}" for w in WHERE for c in CONSENTS)


def party_id(role: Role, where: str) -> str:
    return PARTY.get((role, where), role.value.upper())


def premises(where: str, consent: str) -> str:
    return f"P-{where}-{consent}"


def building(where: str, consent: str) -> str:
    return f"B-{where}-{consent}"


# The heat bill asked of each building: 1-14 August (local days), its costs.
BILL = {
    "start": "2026-08-01",
    "end": "2026-08-14",
    "fuel_cost": "500.00",
    "fuel_kwh": "4000",
    "water_cost": "90.00",
}
BILL_FROM = datetime(2026, 7, 31, 22, tzinfo=UTC)  # an hour before the first local midnight
BILL_HALF_HOURS = 15 * 48


@dataclass
class Matrix:
    client: TestClient
    guard: AccessGuard
    tokens: dict[str, str]
    jobs: dict[tuple[str, str], int]  # (premises, owner) -> job id
    events: dict[str, str]  # premises -> the third party's demand-response event there


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    tmp = tmp_path_factory.mktemp("matrix")
    store = Store(f"sqlite:///{tmp / 'gdsc.sqlite'}")
    store.create_schema()
    store.enable_vee(VeeSettings(now=lambda: int(NOW.timestamp())))
    repo = PartyRepository(store.engine)
    ids = sorted({party_id(r, w) for r in Role for w in WHERE})
    roles = {party_id(r, w): r for r in Role for w in WHERE}
    for pid in ids:
        repo.add_party(Party(pid, roles[pid]))
    for where in WHERE:
        for consent in CONSENTS:
            p = premises(where, consent)
            store.register_hub(
                hub_id=f"H-{where}-{consent}",
                premises_id=p,
                url="https://h",
                lfdi="A" * 40,
                meters_by_fuel=[("E1", "electricity"), ("HCA1", "heat_cost_allocator")],
            )
            # The premises is the one flat of a building (its heat-cost allocator HCA1), let by
            # H_OLD until 1 July and by H_NOW since (facts_for's managements).
            buildings = BuildingRegistry(store.engine)
            b = building(where, consent)
            buildings.define(
                Building(
                    b,
                    b,
                    f"uplink-{b}",
                    2,
                    (Flat(p, "1", Decimal("60")),),
                    (BuildingMeter("HCA1", "heat_cost_allocator", p),),
                )
            )
            for m in facts_for("H_NOW", where, consent).managements:
                buildings.manage(b, m.provider_id, m.start)
            # Its units over the bill's days (local), a unit each half-hour.
            hca_from = int(BILL_FROM.timestamp())
            store.ingest(
                f"H-{where}-{consent}",
                [StoredReading(f"H-{where}-{consent}", "HCA1", "4-0:1.0.0", hca_from + 1800 * i, 1800, 1, 0, 0, 1)
                 for i in range(BILL_HALF_HOURS)],
                {},
            )  # fmt: skip
            # A day of readings for the edit endpoint, one of them held by the VEE gate (negative)
            # for the quarantine endpoints.
            start = int(ASKED.start.timestamp())
            store.ingest(
                f"H-{where}-{consent}",
                [
                    StoredReading(
                        f"H-{where}-{consent}",
                        "E1",
                        "1-0:1.8.0",
                        start + 1800 * i,
                        1800,
                        HELD if i == 47 else 100,
                        0,
                        72,
                        1,
                    )
                    for i in range(48)
                ],
                {},
            )
            for role in Role:  # every role's party holds this premises' consent (if any)
                facts = facts_for(party_id(role, where), where, consent)
                if role is Role.SUPPLIER:  # supply periods, tenancies, visits: once per premises
                    for sp in facts.supply_periods:
                        repo.add_supply_period(_at(sp, p))
                    for t in facts.tenancies:
                        repo.add_tenancy(_at(t, p, tenancy_id=f"{t.tenancy_id}-{p}"))
                    for ap in facts.appointments:
                        repo.add_appointment(_at(ap, p))
                for c in facts.consents:
                    repo.grant_consent(_consent(c, p, role))
    # The network: every premises on feeder F1 under S1 under PR1; N_OLD operated S1 until
    # 1 July, N_NOW since; one outage at F1.
    topo = TopologyStore(store.engine)
    topo.load(parse_csv(CSV_HEADER + "".join(f"{p},L1,F1,S1,PR1\n" for p in ALL_PREMISES)))
    topo.assign_area("N_OLD", "S1", JAN, JUL)
    topo.assign_area("N_NOW", "S1", JUL)
    outage = Outage(1, "feeder", "F1", NOW - timedelta(hours=1), len(ALL_PREMISES))
    OutageStore(store.engine).save([Change("opened", outage, NOW - timedelta(hours=1))])
    groups = AggregationGroups(store.engine)
    groups.define(GROUP_ID, "five of the matrix's premises", NOW)
    for p in ALL_PREMISES[:5]:
        groups.assign(p, GROUP_ID, NOW, start=JAN)
    provision(tmp / "state", [], NOW - timedelta(days=1))
    desk = CommandDesk.from_state(tmp / "state", store)
    jobs = {}
    events = {}
    for where in WHERE:
        for consent in CONSENTS:
            p = premises(where, consent)
            from smarthub.gdsc.readings.queries import find_meter

            meter = find_meter(store.engine, p, "E1")
            for owner in sorted({*JOB_OWNER.values(), "S_NOW"}):
                jobs[(p, owner)] = desk.read(owner, p, meter, Action.ON_DEMAND_READ.value, NOW)
            # A demand-response event the third party sent there (its GET is then decided).
            sent = DemandResponse(desk).dispatch(
                party_id(Role.THIRD_PARTY, where), p, meter, Action.DEMAND_RESPONSE.value, EVENT, NOW
            )
            events[p] = sent.event_id
    tokens = TokenStore(store.engine)
    issued = {pid: tokens.issue(pid, NOW) for pid in ids}
    guard = AccessGuard(repo, AuditLog(store.engine), ManualClock(NOW))
    with TestClient(create_app(guard, tokens, desk)) as client:
        yield Matrix(client, guard, issued, jobs, events)
    store.close()


def _at(obj: Any, p: str, **changes: Any) -> Any:
    from dataclasses import replace

    return replace(obj, premises_id=p, **changes)


def _consent(c: Consent, p: str, role: Role) -> Consent:
    from dataclasses import replace

    return replace(c, consent_id=f"K-{p}-{role.value}", premises_id=p, tenancy_id=f"{c.tenancy_id}-{p}")


def call(m: Matrix, endpoint: str, role: Role, where: str, consent: str) -> Any:
    method, path = endpoint.split(" ")
    p = premises(where, consent)
    span = {"start": ASKED.start.isoformat(), "end": ASKED.end.isoformat()}
    reads = {"meter_id": "E1", "granularity": "half-hourly", **span}
    owner = JOB_OWNER.get(role, "S_NOW")
    path = path.replace("{premises_id}", p).replace("{job_id}", str(m.jobs.get((p, owner), 0)))
    path = path.replace("{node_id}", "F1").replace("{outage_id}", "1").replace("{service_id}", "NO-SUCH")
    path = path.replace("{building_id}", building(where, consent)).replace("{event_id}", m.events[p])
    params: dict[str, Any] = {}
    body: dict[str, Any] | None = None
    content: str | None = None
    match endpoint.split(" ")[0] + " " + endpoint.split("/")[-1]:
        case "PUT {node_id}":
            body = {"kind": "feeder", "parent_id": "S1"}
        case "PUT {premises_id}":
            body = {"feeder_id": "F1", "phase": "L1"}
        case "POST topology":
            content = CSV_HEADER + f"{p},L1,F1,S1,PR1\n"
        case "GET events":
            params = {"follow": "false"}
        case "GET duos" | "GET planning" | "GET power-quality":
            params = span
    match endpoint.split("/")[-1]:
        case "readings" if "aggregates" not in endpoint:
            params = reads
        case "export":
            params = {**reads, "format": "csv"}
        case "readings":  # aggregates: a group of five of the eight premises, whichever scenario
            params = {"granularity": "half-hourly", **span, "group": GROUP_ID}
        case "tariff-update":
            body = {"meter_id": "E1", "tariff": tariff_json()}
        case "ihd-message":
            body = {"meter_id": "E1", "text": "hello"}
        case "top-up":
            body = {"meter_id": "E1", "amount": "5.00"}
        case "supply":
            body = {"meter_id": "E1", "state": "disconnect"}
        case "on-demand-reads":
            body = {"meter_id": "E1"}
        case "events" if method == "POST":
            body = {
                "meter_id": "E1",
                "start": (NOW + timedelta(hours=1)).isoformat(),
                "duration_minutes": 60,
                "device_categories": ["electric-vehicle"],
                "duty_cycle": 0,
            }
        case "heat-bill":
            params = BILL
        case "access-log":
            params = span
        case "appliances":
            params = {"granularity": "half-hourly", **span}
        case "consumption":
            params = {"granularity": "half-hourly", **span}
        case "edits":
            body = {
                "meter_id": "E1",
                "day": ASKED.start.date().isoformat(),
                "values": {"3": 77},
                "reason": "test",
            }
        case "versions":
            params = {"meter_id": "E1", "day": ASKED.start.date().isoformat()}
        case "quarantine" if method == "GET":
            params = {"meter_id": "E1"}
        case "quarantine":
            held_at = ASKED.start + timedelta(minutes=30 * 47)
            body = {
                "meter_id": "E1",
                "duration": 1800,
                "start": held_at.isoformat(),
                "rule": "negative",
                "value": HELD,
                "decision": "reject",
                "reason": "test",
            }
        case "data-quality":
            params = {"by": "model"}
        case "transfer-policies" if method == "POST":
            body = {"scope": "supplier", "key": "S_NOW", "frequency": "daily", "aggregation": "daily"}
        case "transfer-group":
            body = {"premises_class": "flat", "tariff": "agile"}
        case "meter-installs":
            body = {"meter_id": "W9", "replaces": "E1"}
        case "meter-shipments":
            content = "meter_id,manufacturer,protocol,fuel,key\nW9,LSE,wmbus,water,\n"
    headers = {"Authorization": f"Bearer {m.tokens[party_id(role, where)]}"}
    if content is not None:
        headers["Content-Type"] = "text/csv"
        return m.client.request(method, path, params=params, content=content, headers=headers)
    return m.client.request(method, path, params=params, json=body, headers=headers)


CASES = [
    pytest.param(endpoint, role, where, consent, id=f"{endpoint}-{role.value}-{where}-{consent}")
    for endpoint, action in ENDPOINTS.items()
    # consent changes (POST/DELETE) would change the very facts the matrix is about
    if not (action is Action.MANAGE_CONSENT and not endpoint.startswith("GET"))
    # the listing of a portfolio is open to every customer; its consumption is what the table says
    and endpoint != "GET /v1/portfolio"
    # applying and deciding change the third party's standing (test_services.py covers them by role)
    and endpoint not in ("POST /v1/services", "POST /v1/services/{service_id}/decisions")
    for role in Role
    for where in WHERE
    for consent in CONSENTS
]


BUILDING_CASES = [
    pytest.param(endpoint, role, where, consent, id=f"{endpoint}-{role.value}-{where}-{consent}")
    for endpoint in BUILDING_ENDPOINTS
    for role in Role
    for where in WHERE
    for consent in CONSENTS
]


@pytest.mark.parametrize(("endpoint", "role", "where", "consent"), CASES + BUILDING_CASES)
def test_api_matrix(matrix: Matrix, endpoint: str, role: Role, where: str, consent: str) -> None:
    action = ENDPOINTS.get(endpoint) or BUILDING_ENDPOINTS[endpoint]
    before = len(matrix.guard.audit.entries())
    r = call(matrix, endpoint, role, where, consent)
    # A building's endpoints decide its flats' sub-meters (test_access_matrix.SUBMETER_MATRIX).
    judge = expected if endpoint in ENDPOINTS else expected_submeter
    allow = judge(role, action, where, consent)
    if allow:
        assert r.status_code in (200, 202), r.text
    elif action is Action.READ_JOB:  # another party's job answers as a missing one (no enumeration)
        assert r.status_code == 404, r.text
        assert r.json()["detail"].startswith("no job ")
    else:
        assert r.status_code == 403, r.text
        assert r.json()["detail"]  # says why
    # The endpoint's own decision comes first (a DUoS data set then decides each premises, a
    # planning query each feeder's aggregate).
    first = matrix.guard.audit.entries()[before]
    assert (first.actor, first.action, first.allow) == (party_id(role, where), action.value, allow)


def test_every_endpoint_is_in_the_table(matrix: Matrix) -> None:
    """Every route of the API is decided by an action of the table (the job list shows the caller's
    own job ids only and needs no decision)."""
    routes = {f"{method} {path}" for method, path in api_routes(matrix.client.app)}
    assert routes == set(ENDPOINTS) | set(BUILDING_ENDPOINTS) | {"GET /v1/jobs"}
    assert len(CASES) == (len(ENDPOINTS) - 5) * len(Role) * 2 * len(CONSENTS) == 2296
    assert len(BUILDING_CASES) == 2 * len(Role) * 2 * len(CONSENTS) == 112
