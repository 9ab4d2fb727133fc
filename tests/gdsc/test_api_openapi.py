"""Issue 22: the data services API's OpenAPI document tells the truth, so clients generated from
it work. Each test here failed against the API before its fix: the document said one thing and
the server did another (or a 500)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from gdsc.api_world import DAY1, NOW, World, build, tariff_json
from smarthub.gdsc.api.schemas import TopUpIn
from smarthub.model.prepayment import Voucher
from smarthub.model.tariff import InvalidTariff, Tariff, make_tariff

TARIFF = TypeAdapter(Tariff)  # the API's view of the model

SERVED = ["half-hourly", "daily", "monthly"]
PROFILE_ENDPOINTS = [
    ("/v1/premises/{premises_id}/readings", {"meter_id": "E1"}, "C1"),
    ("/v1/premises/{premises_id}/readings/export", {"meter_id": "E1"}, "C1"),
    ("/v1/aggregates/readings", {"group": "G"}, "DNO"),
    ("/v1/portfolio/consumption", {}, "C1"),
]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = build(f"sqlite:///{tmp_path / 'api.sqlite'}", tmp_path / "state")
    yield w
    w.store.close()


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    with world.client() as c:
        yield c


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = spec["components"]["schemas"][name]
    return node


def parameter(spec: dict[str, Any], path: str, name: str, method: str = "get") -> dict[str, Any]:
    (p,) = [p for p in spec["paths"][path][method]["parameters"] if p["name"] == name]
    return resolve(spec, p["schema"])


# -- item 3: each endpoint's granularity enum is what it serves ---------------------------------


@pytest.mark.parametrize(("path", "extra", "who"), PROFILE_ENDPOINTS)
def test_profile_endpoints_publish_the_granularities_they_serve(
    world: World, client: TestClient, path: str, extra: dict[str, str], who: str
) -> None:
    spec = client.get("/openapi.json").json()
    assert parameter(spec, path, "granularity")["enum"] == SERVED
    for level in ("tariff-register", "none"):  # outside the enum: refused as the schema says
        r = client.get(
            path.format(premises_id="P1"),
            params={
                **extra,
                "start": DAY1.isoformat(),
                "end": (DAY1 + timedelta(days=1)).isoformat(),
                "granularity": level,
            },
            headers=world.auth(who),
        )
        assert r.status_code == 422 and "query.granularity" in r.json()["detail"], r.text


def test_a_consent_may_still_grant_every_granularity(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    body = resolve(spec, spec["components"]["schemas"]["ConsentIn"]["properties"]["granularity"])
    assert body["enum"] == [*SERVED, "tariff-register", "none"]


# -- item 1: the pricing tag is required, as the server requires it -------------------------------


def test_pricing_type_is_required_in_the_spec_and_by_the_server(world: World, client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for name, tag in (
        ("Flat", "flat"),
        ("TimeOfUse", "time_of_use"),
        ("Tiered", "tiered"),
        ("Dynamic", "dynamic"),
    ):
        assert "type" in schemas[name]["required"], name
        assert schemas[name]["properties"]["type"] == {"const": tag, "title": "Type", "type": "string"}, name
    body = {"meter_id": "E1", "tariff": tariff_json()}
    del body["tariff"]["pricing"]["type"]
    r = client.post("/v1/premises/P1/commands/tariff-update", json=body, headers=world.auth("S1"))
    assert r.status_code == 422 and "discriminator 'type'" in r.json()["detail"], r.text


# -- item 2: money and rates publish the rule the server enforces ---------------------------------

DECIMALISH = st.text(alphabet="0123456789.-+eE \n٣", max_size=9) | st.decimals(
    min_value=-1000, max_value=1000, places=3
).map(str)


def money_fields(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    s = spec["components"]["schemas"]
    return {
        "TopUpIn.amount": s["TopUpIn"]["properties"]["amount"],
        "Tariff.standing_charge_p_per_day": s["Tariff"]["properties"]["standing_charge_p_per_day"],
        "Tariff.vat_rate": s["Tariff"]["properties"]["vat_rate"],
        "Flat.unit_rate_p_per_kwh": s["Flat"]["properties"]["unit_rate_p_per_kwh"],
        "Tier.up_to_kwh": s["Tier"]["properties"]["up_to_kwh"]["anyOf"][0],
        "HalfHourlySeries.values": s["HalfHourlySeries"]["properties"]["values"]["items"],
    }


def test_money_and_rates_are_decimal_strings_with_their_rule_published(client: TestClient) -> None:
    """Before: ``anyOf: [number, string]`` with no pattern, places or upper bound."""
    fields = money_fields(client.get("/openapi.json").json())
    for where, schema in fields.items():
        assert schema["type"] == "string" and schema["format"] == "decimal", where
        assert schema["pattern"].startswith("^") and schema["pattern"].endswith("$"), where
        for example in schema["examples"]:
            assert re.fullmatch(schema["pattern"], example), where


@settings(max_examples=400, deadline=None, database=None)
@given(
    text=DECIMALISH | st.sampled_from(["0.00", "0.01", "500.00", "500.01", "499.99", "10", "1.5", "01.00"])
)
def test_a_top_up_amount_is_accepted_exactly_when_the_published_pattern_matches(text: str) -> None:
    """The published pattern is the whole rule: what it matches the server takes (and the voucher
    it becomes is valid), what it does not match is refused as a schema violation."""
    pattern = TopUpIn.model_json_schema()["properties"]["amount"]["pattern"]
    matches = re.fullmatch(pattern, text) is not None
    try:
        amount = TopUpIn.model_validate({"meter_id": "E1", "amount": text}).amount
    except ValidationError:
        assert not matches, text
        return
    assert matches, text
    Voucher("V" * 8, "H1", "electricity", amount, NOW)  # BadVoucher (a 400 after the 202 check) if not


@settings(max_examples=400, deadline=None, database=None)
@given(
    text=DECIMALISH, field=st.sampled_from(["standing_charge_p_per_day", "vat_rate", "unit_rate_p_per_kwh"])
)
def test_a_tariff_rate_is_accepted_exactly_when_the_published_pattern_matches(text: str, field: str) -> None:
    """By the API (pydantic, from the model's classes) and by the hub (the classes' own checks,
    no pydantic) alike: a tariff the GDSC takes is one every hub takes."""
    doc = tariff_json()
    spec = TARIFF.json_schema()
    if field == "unit_rate_p_per_kwh":
        doc["pricing"][field] = text
        pattern = spec["$defs"]["Flat"]["properties"][field]["pattern"]
    else:
        doc[field] = text
        pattern = spec["properties"][field]["pattern"]
    try:
        make_tariff(**doc)
        hub_takes = True
    except InvalidTariff:
        hub_takes = False
    try:
        TARIFF.validate_python(doc)
    except ValidationError:
        assert re.fullmatch(pattern, text) is None and not hub_takes, text
        return
    assert re.fullmatch(pattern, text) and hub_takes, text


def test_json_numbers_are_refused_for_money_as_the_spec_says(world: World, client: TestClient) -> None:
    for amount in (10, 10.5, 10.0):
        r = client.post(
            "/v1/premises/P1/commands/top-up",
            json={"meter_id": "E1", "amount": amount},
            headers=world.auth("S1"),
        )
        assert r.status_code == 422 and "not a decimal string" in r.json()["detail"], r.text
    r = client.post(
        "/v1/premises/P1/commands/top-up",
        json={"meter_id": "E1", "amount": "10.00"},
        headers=world.auth("S1"),
    )
    assert r.status_code == 202, r.text


# -- item 4: a 405 names every method the path serves ---------------------------------------------

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"}


def concrete(path: str) -> str:
    return path.replace("{premises_id}", "P1").replace("{consent_id}", "K1").replace("{job_id}", "1")


def test_a_405_allows_every_method_the_spec_lists_for_the_path(world: World, client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    checked = 0
    for path, ops in spec["paths"].items():
        if path.startswith("/oauth"):
            continue
        served = {m.upper() for m in ops}
        for method in sorted(METHODS - served):
            r = client.request(method, concrete(path), headers=world.auth("C1"))
            assert r.status_code == 405, (method, path, r.status_code)
            assert set(r.headers["allow"].split(", ")) == served, (method, path, r.headers["allow"])
            checked += 1
    assert checked > 50  # before: PUT/OPTIONS on …/consents said "Allow: GET" (POST is served too)


# -- item 5: the caller is authenticated before the body is read ----------------------------------

BAD_BODIES = [
    (b"{not json", "application/json"),
    (b'{"meter_id": 7}', "application/json"),
    (b"[]", "application/json"),
    (b"meter_id=E1", "application/x-www-form-urlencoded"),
    (b"", "application/json"),
]


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_no_valid_token_is_401_whatever_the_body(world: World, client: TestClient, token: str | None) -> None:
    spec = client.get("/openapi.json").json()
    posts = [p for p, ops in spec["paths"].items() if "post" in ops and not p.startswith("/oauth")]
    # four commands, on-demand reads, consents, edits, quarantine, topology upload; a data
    # service's application and the operator's decision on it; a transfer policy; a shipment
    # file and an installer's job; a demand-response event and its cancellation (issue 25)
    assert len(posts) == 16
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    for path in posts:
        for body, media in BAD_BODIES:
            r = client.post(concrete(path), content=body, headers={**headers, "Content-Type": media})
            assert r.status_code == 401, (path, body, r.status_code, r.text)
            assert r.headers["www-authenticate"].startswith('Bearer realm="smarthub GDSC"')
        # bad query parameters too (before: 422 for a malformed one, 401 for a missing one)
    r = client.get(
        "/v1/premises/P1/readings", params={"meter_id": "E1", "start": "yesterday"}, headers=headers
    )
    assert r.status_code == 401, r.text
    # With a valid token the same bodies are the client's error, named.
    r = client.post(
        "/v1/premises/P1/commands/top-up",
        content=b"{not json",
        headers={**world.auth("S1"), "Content-Type": "application/json"},
    )
    assert r.status_code == 422 and "JSON decode error" in r.json()["detail"]


# -- item 7: links from commands to their job, from a consent to its revocation -------------------


def follow(
    spec: dict[str, Any], link: dict[str, Any], path_params: dict[str, str], body: Any
) -> tuple[str, str]:
    """The request a link describes: (METHOD, path), its runtime expressions evaluated."""
    ((path, method),) = [
        (p, m)
        for p, ops in spec["paths"].items()
        for m, op in ops.items()
        if op["operationId"] == link["operationId"]
    ]
    for name, expr in link["parameters"].items():
        if expr.startswith("$response.body#/"):
            value = body[expr.removeprefix("$response.body#/")]
        else:
            value = path_params[expr.removeprefix("$request.path.")]
        path = path.replace("{" + name + "}", str(value))
    return method.upper(), path


COMMAND_BODIES = {
    "/v1/premises/{premises_id}/commands/tariff-update": {"meter_id": "E1", "tariff": tariff_json()},
    "/v1/premises/{premises_id}/commands/ihd-message": {"meter_id": "E1", "text": "hello"},
    "/v1/premises/{premises_id}/commands/top-up": {"meter_id": "E1", "amount": "5.00"},
    "/v1/premises/{premises_id}/commands/supply": {"meter_id": "E1", "state": "connect"},
    "/v1/premises/{premises_id}/on-demand-reads": {"meter_id": "E1"},
}


def test_every_command_links_to_its_job_and_the_link_leads_there(world: World, client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert sorted(
        p
        for p, ops in spec["paths"].items()
        if "202" in ops.get("post", {}).get("responses", {}) and "/demand-response/" not in p
    ) == sorted(COMMAND_BODIES)
    for path, body in COMMAND_BODIES.items():
        accepted = spec["paths"][path]["post"]["responses"]["202"]
        link = accepted["links"]["FollowJob"]
        r = client.post(concrete(path), json=body, headers=world.auth("S1"))
        assert r.status_code == 202, r.text
        method, target = follow(spec, link, {"premises_id": "P1"}, r.json())
        assert (method, target) == ("GET", r.headers["location"])
        assert re.fullmatch(accepted["headers"]["Location"]["schema"]["pattern"], r.headers["location"])
        job = client.request(method, target, headers=world.auth("S1"))
        assert job.status_code == 200 and job.json()["job_id"] == r.json()["job_id"]


def test_a_demand_response_event_links_to_itself_and_the_link_leads_there(
    world: World, client: TestClient
) -> None:
    """The one 202 that is not a job: an event is followed at its own resource (issue 25)."""
    spec = client.get("/openapi.json").json()
    path = "/v1/premises/{premises_id}/demand-response/events"
    accepted = spec["paths"][path]["post"]["responses"]["202"]
    grant = {
        "party_id": "TP",
        "data_kinds": ["demand-response"],
        "granularity": "none",
        "purpose": "demand response",
        "expires_at": (NOW + timedelta(days=30)).isoformat(),
    }
    r = client.post("/v1/premises/P1/consents", json=grant, headers=world.auth("C1"))
    assert r.status_code == 201, r.text
    event = {
        "meter_id": "E1",
        "start": (NOW + timedelta(hours=1)).isoformat(),
        "duration_minutes": 30,
        "device_categories": ["water-heater"],
        "load_reduction_percent": 50,
    }
    r = client.post(concrete(path), json=event, headers=world.auth("TP"))
    assert r.status_code == 202, r.text
    method, target = follow(spec, accepted["links"]["FollowEvent"], {"premises_id": "P1"}, r.json())
    assert (method, target) == ("GET", r.headers["location"])
    assert re.fullmatch(accepted["headers"]["Location"]["schema"]["pattern"], r.headers["location"])
    got = client.request(method, target, headers=world.auth("TP"))
    assert got.status_code == 200 and got.json()["event_id"] == r.json()["event_id"]
    assert got.json()["state"] == "queued" and got.json()["responses"] == []


def test_a_granted_consent_links_to_its_revocation(world: World, client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    link = spec["paths"]["/v1/premises/{premises_id}/consents"]["post"]["responses"]["201"]["links"][
        "RevokeConsent"
    ]
    grant = {
        "party_id": "TP",
        "data_kinds": ["readings"],
        "granularity": "daily",
        "purpose": "energy advice",
        "expires_at": (NOW + timedelta(days=30)).isoformat(),
    }
    r = client.post("/v1/premises/P1/consents", json=grant, headers=world.auth("C1"))
    assert r.status_code == 201, r.text
    method, target = follow(spec, link, {"premises_id": "P1"}, r.json())
    assert (method, target) == ("DELETE", f"/v1/premises/P1/consents/{r.json()['consent_id']}")
    assert client.request(method, target, headers=world.auth("C1")).status_code == 204
    (listed,) = client.get("/v1/premises/P1/consents", headers=world.auth("C1")).json()
    assert listed["revoked_at"] is not None


# -- found by the Schemathesis run: what the schema says a string is, the server takes as a string -


def test_dates_times_and_integers_in_bodies_are_not_coerced(world: World, client: TestClient) -> None:
    """``format: date-time`` and ``type: integer`` mean it: pydantic's lax mode took ``0`` as
    1970-01-01 and ``"2"`` as 2 (negative_data_rejection)."""
    bad = [
        ("ihd-message", {"meter_id": "E1", "text": "hi", "expires": 4102444800}, "body.expires"),
        ("ihd-message", {"meter_id": "E1", "text": "hi", "priority": "2"}, "body.priority"),
        ("ihd-message", {"meter_id": "E1", "text": " \u3000\x1c"}, "body.text"),  # blank to str.strip()
        (
            "tariff-update",
            {"meter_id": "E1", "tariff": {**tariff_json(), "version": "1"}},
            "body.tariff.version",
        ),
        (
            "tariff-update",
            {"meter_id": "E1", "tariff": {**tariff_json(), "effective_from": 0}},
            "effective_from",
        ),
        (
            "tariff-update",
            {"meter_id": "E1", "tariff": tariff_json(), "effective": 1788217200},
            "body.effective",
        ),
    ]
    # 2.0 *is* a JSON Schema integer (no fractional part): taken, as 2
    r = client.post(
        "/v1/premises/P1/commands/ihd-message",
        json={"meter_id": "E1", "text": "hi", "priority": 2.0},
        headers=world.auth("S1"),
    )
    assert r.status_code == 202, r.text
    for command, body, where in bad:
        r = client.post(f"/v1/premises/P1/commands/{command}", json=body, headers=world.auth("S1"))
        assert r.status_code == 422 and where in r.json()["detail"], (body, r.text)
    grant = {"party_id": "TP", "data_kinds": ["readings"], "granularity": "daily", "purpose": "x"}
    for wrong in ({"expires_at": 4102444800}, {"expires_at": "2100-01-01T00:00:00Z", "purpose": "\t "}):
        r = client.post("/v1/premises/P1/consents", json={**grant, **wrong}, headers=world.auth("C1"))
        assert r.status_code == 422, r.text


def test_query_instants_are_rfc3339_not_unix_times(world: World, client: TestClient) -> None:
    """pydantic took ``start=0`` (a string of digits) as 1970-01-01: the published format is RFC 3339."""
    for start in ("0", "1786316400", "2026-08-09 23:00:00+00:00"):
        r = client.get(
            "/v1/premises/P1/readings",
            params={"meter_id": "E1", "start": start, "end": "2026-08-11T00:00:00Z", "granularity": "daily"},
            headers=world.auth("C1"),
        )
        assert r.status_code == 422 and "query.start" in r.json()["detail"], (start, r.text)
    r = client.get(
        "/v1/premises/P1/readings",
        params={
            "meter_id": "E1",
            "start": "2026-08-09t23:00:00z",
            "end": "2026-08-11T00:00:00Z",
            "granularity": "daily",
        },
        headers=world.auth("C1"),
    )
    assert r.status_code == 200, r.text


E7 = {
    "type": "time_of_use",
    "rates": {"night": "13.20", "day": "27.10"},
    "day_types": {"all": [{"start": "00:30", "end": "07:30", "rate": "night"},
                          {"start": "07:30", "end": "00:30", "rate": "day"}]},
    "week": dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), "all"),
}  # fmt: skip
SERIES = {"start": "2026-09-01T00:00:00Z", "values": ["-1.5", "20"]}
TIERS = [
    {"name": "a", "up_to_kwh": "5", "unit_rate_p_per_kwh": "10"},
    {"name": "b", "up_to_kwh": None, "unit_rate_p_per_kwh": "20"},
]
PRICINGS: list[Any] = [
    E7,
    {**E7, "rates": {}},
    {**E7, "week": {"mon": "all"}},
    {**E7, "week": {**E7["week"], "someday": "all"}},
    {**E7, "bank_holidays": ["2026-12-25"]},
    {**E7, "bank_holiday_day_type": "all", "bank_holidays": ["2026-12-25", 20261226]},
    {**E7, "day_types": {"all": [{"start": "00:00", "end": "24:00", "rate": "day", "x": 1}]}},
    {**E7, "day_types": {"all": [{"start": "00:15", "end": "24:00", "rate": "day"}]}},
    {**E7, "day_types": {"": [{"start": "00:00", "end": "24:00", "rate": "day"}]}},
    {"type": "dynamic", "unit_rates_p_per_kwh": SERIES},
    {"type": "dynamic", "unit_rates_p_per_kwh": {**SERIES, "start": "2026-09-01T00:00:00"}},
    {"type": "dynamic", "unit_rates_p_per_kwh": {**SERIES, "start": "2026-09-01T00:10:00Z"}},
    {"type": "dynamic", "unit_rates_p_per_kwh": {**SERIES, "values": []}},
    {"type": "dynamic", "unit_rates_p_per_kwh": {**SERIES, "values": [1.5]}},
    {"type": "tiered", "block": "day", "tiers": TIERS},
    {"type": "tiered", "block": "week", "tiers": TIERS},
    {"type": "tiered", "block": "day", "tiers": TIERS[::-1]},
    {"type": "tiered", "block": "day", "tiers": [{**TIERS[0], "up_to_kwh": "0"}, TIERS[1]]},
    {"type": "tiered", "block": "day", "tiers": [{k: v for k, v in TIERS[1].items() if k != "up_to_kwh"}]},
    {"type": "flat", "unit_rate_p_per_kwh": "1", "extra": "x"},
    {"type": "flat"},
    {"type": "bogus"},
    {"unit_rate_p_per_kwh": "1"},
    "flat",
]
TOP: list[dict[str, Any]] = [
    {},
    {"version": 0},
    {"version": "2"},
    {"version": True},
    {"version": 2.0},
    {"version": 2.5},
    {"tariff_id": ""},
    {"tariff_id": "x" * 65},
    {"effective_from": "2026-02-30"},
    {"effective_from": 20260901},
    {"effective_from": "2026-09-01T00:00:00Z"},
    {"name": 7},
    {"vat_rate": "1"},
    {"vat_rate": "0.12345"},
    {"discount": "5"},
]


@pytest.mark.parametrize("pricing", PRICINGS, ids=range(len(PRICINGS)))
@pytest.mark.parametrize("top", TOP, ids=range(len(TOP)))
def test_the_api_and_the_hub_take_the_same_tariffs(pricing: Any, top: dict[str, Any]) -> None:
    """The API validates with pydantic (built from the model's classes), a hub with the classes'
    own checks and no pydantic: a document one takes and the other refuses would be a tariff
    the GDSC distributes and its hubs refuse (or the other way round)."""
    doc = {**tariff_json(), "pricing": pricing, **top}
    try:
        hub = make_tariff(**doc)
    except InvalidTariff:
        hub = None
    try:
        api = TARIFF.validate_python(doc)
    except ValidationError:
        api = None
    assert api == hub, (doc, api, hub)
    if hub is not None:  # and its JSON is the one both read back
        assert TARIFF.dump_python(hub, mode="json") == hub.to_json_dict()
        assert TARIFF.validate_json(hub.to_json()) == hub
