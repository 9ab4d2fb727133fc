"""OAuth2 client credentials (RFC 6749 §4.4) against the data services API: tokens issued and used,
the §5.2 errors, revocation, expiry on the injected clock, scopes that narrow the access policy,
and the security schemes of the OpenAPI document. (Mutual TLS: ``test_api_auth_tls.py``.)"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote_plus

import pytest
from fastapi.testclient import TestClient

from gdsc.api_world import DAY1, World, api_routes, build
from smarthub.gdsc.api.app import create_app
from smarthub.gdsc.api.auth.clients import (
    ClientRegistry,
    api_access_tokens,
    api_clients,
    check_secret,
    hash_secret,
)
from smarthub.gdsc.api.auth.oauth import ALL_SCOPES, required_scope, route_scopes
from smarthub.gdsc.api.auth.tokens import TokenStore

READINGS = "/v1/premises/P1/readings"
Q = {
    "meter_id": "E1",
    "start": DAY1.isoformat(),
    "end": (DAY1 + timedelta(days=1)).isoformat(),
    "granularity": "half-hourly",
}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[World, TestClient, ClientRegistry]]:
    w = build(f"sqlite:///{tmp_path / 'api.sqlite'}", tmp_path / "state")
    app = create_app(w.guard, TokenStore(w.store.engine), w.desk, token_lifetime=timedelta(minutes=10))
    with TestClient(app) as client:
        yield w, client, ClientRegistry(w.store.engine)
    w.store.close()


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def token(client: TestClient, client_id: str, secret: str, **form: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/oauth/token", data={"grant_type": "client_credentials", **form}, headers=basic(client_id, secret)
    )


def bearer(t: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {t}"}


def test_token_issued_and_used(world) -> None:  # type: ignore[no-untyped-def]
    w, client, reg = world
    cid, secret = reg.register("C1", ALL_SCOPES, w.clock.now())
    r = token(client, cid, secret)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    assert set(body["scope"].split()) == ALL_SCOPES
    assert r.headers["cache-control"] == "no-store" and r.headers["pragma"] == "no-cache"  # §5.1
    r = client.get(READINGS, params=Q, headers=bearer(body["access_token"]))
    assert r.status_code == 200 and len(r.json()["readings"]) == 48
    last = w.guard.audit.entries()[-1]
    assert (last.actor, last.action, last.allow) == ("C1", "read-readings", True)
    # client_id/client_secret in the body (§2.3.1) work as well; only a hash of the token is stored
    r = client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret}
    )
    assert r.status_code == 200, r.text
    raw = (Path(w.store.engine.url.database or "")).read_bytes()
    assert body["access_token"].encode() not in raw and secret.encode() not in raw
    # the policy still decides: the supplier's client reads, a consumer-less third party is refused
    cid2, secret2 = reg.register("TP", ALL_SCOPES, w.clock.now())
    tp = token(client, cid2, secret2).json()["access_token"]
    r = client.get(READINGS, params=Q, headers=bearer(tp))
    assert r.status_code == 403 and "consent" in r.json()["detail"]


def test_secret_is_salted_scrypt_compared_in_constant_time() -> None:
    a, b = hash_secret("s3cret"), hash_secret("s3cret")
    assert a != b and a.startswith("scrypt$32768$8$1$")  # salted: same secret, different hashes
    assert check_secret("s3cret", a) and not check_secret("s3cret!", a)


@pytest.mark.parametrize(
    ("form", "auth", "status", "error"),
    [
        ({"grant_type": "client_credentials"}, "wrong", 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, "unknown", 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, "none", 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, "bearer", 401, "invalid_client"),
        (
            {"grant_type": "password", "username": "u", "password": "p"},
            "basic",
            400,
            "unsupported_grant_type",
        ),
        ({"grant_type": "authorization_code", "code": "x"}, "basic", 400, "unsupported_grant_type"),
        ({}, "basic", 400, "invalid_request"),
        ({"grant_type": "client_credentials", "scope": "readings:write"}, "basic", 400, "invalid_scope"),
        (
            {"grant_type": "client_credentials", "scope": "consents"},
            "basic",
            400,
            "invalid_scope",
        ),  # not registered
        ({"grant_type": "client_credentials", "scope": 'readings:read "x"'}, "basic", 400, "invalid_scope"),
        ({"grant_type": "client_credentials", "client_secret": "also"}, "basic", 400, "invalid_request"),
    ],
)
def test_token_errors_are_rfc6749_5_2(world, form, auth, status, error) -> None:  # type: ignore[no-untyped-def]
    w, client, reg = world
    cid, secret = reg.register("S1", frozenset({"readings:read", "commands:write"}), w.clock.now())
    headers = {
        "wrong": basic(cid, secret + "x"),
        "unknown": basic("c-nobody", secret),
        "none": {},
        "bearer": bearer(w.tokens["S1"]),
        "basic": basic(cid, secret),
    }[auth]
    r = client.post("/oauth/token", data=form, headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["error"] == error and r.json()["error_description"]
    assert r.headers["cache-control"] == "no-store"
    if status == 401:
        assert r.headers["www-authenticate"].startswith("Basic realm=")


def test_token_request_must_be_a_form(world) -> None:  # type: ignore[no-untyped-def]
    w, client, reg = world
    cid, secret = reg.register("S1", ALL_SCOPES, w.clock.now())
    r = client.post("/oauth/token", json={"grant_type": "client_credentials"}, headers=basic(cid, secret))
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    assert "application/x-www-form-urlencoded" in r.json()["error_description"]
    r = client.post(
        "/oauth/token",
        content="grant_type=client_credentials&grant_type=client_credentials",
        headers={**basic(cid, secret), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400 and "repeated" in r.json()["error_description"]


def test_unapproved_third_party_gets_invalid_grant(world) -> None:  # type: ignore[no-untyped-def]
    w, client, reg = world
    from smarthub.gdsc.governance.parties import Party, Role

    w.guard.parties.add_party(Party("TP2", Role.THIRD_PARTY, approved=False))
    cid, secret = reg.register("TP2", ALL_SCOPES, w.clock.now())
    r = token(client, cid, secret)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant" and "not approved" in r.text


def test_revoked_client_stops_its_tokens_at_once(world) -> None:  # type: ignore[no-untyped-def]
    w, client, reg = world
    cid, secret = reg.register("C1", ALL_SCOPES, w.clock.now())
    t = token(client, cid, secret).json()["access_token"]
    assert client.get(READINGS, params=Q, headers=bearer(t)).status_code == 200
    assert reg.revoke(cid, w.clock.now()) and not reg.revoke(cid, w.clock.now())
    r = client.get(READINGS, params=Q, headers=bearer(t))
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    r = token(client, cid, secret)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_token_expires_on_the_injected_clock(world) -> None:  # type: ignore[no-untyped-def]
    w, client, reg = world
    cid, secret = reg.register("C1", ALL_SCOPES, w.clock.now())
    t = token(client, cid, secret).json()["access_token"]
    w.clock.advance(timedelta(minutes=10) - timedelta(seconds=1))
    assert client.get(READINGS, params=Q, headers=bearer(t)).status_code == 200
    w.clock.advance(timedelta(seconds=1))  # exactly at expiry: gone
    r = client.get(READINGS, params=Q, headers=bearer(t))
    assert r.status_code == 401 and r.json()["detail"] == "no or unknown bearer token"
    assert "expired" in r.headers["www-authenticate"]
    # the `gdsc token` bearer tokens (no expiry) keep working beside it
    assert client.get(READINGS, params=Q, headers=bearer(w.tokens["C1"])).status_code == 200


def test_scope_narrows_and_never_widens(world) -> None:  # type: ignore[no-untyped-def]
    w, client, reg = world
    cid, secret = reg.register("S1", ALL_SCOPES, w.clock.now())
    reads = token(client, cid, secret, scope="readings:read").json()
    assert reads["scope"] == "readings:read"
    t = reads["access_token"]
    monthly = {**Q, "granularity": "monthly"}  # a supplier's default granularity
    assert client.get(READINGS, params=monthly, headers=bearer(t)).status_code == 200
    entries = len(w.guard.audit.entries())
    r = client.post("/v1/premises/P1/on-demand-reads", json={"meter_id": "E1"}, headers=bearer(t))
    assert r.status_code == 403 and "does not include commands:write" in r.json()["detail"]
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    assert 'scope="commands:write"' in r.headers["www-authenticate"]
    assert len(w.guard.audit.entries()) == entries  # refused before the policy was asked
    both = token(client, cid, secret, scope="commands:write commands:read").json()["access_token"]
    r = client.post("/v1/premises/P1/on-demand-reads", json={"meter_id": "E1"}, headers=bearer(both))
    assert r.status_code == 202, r.text
    assert client.get(r.headers["location"], headers=bearer(both)).status_code == 200
    # a scope never widens: the supplier's every-scope token is still refused what the policy refuses
    every = token(client, cid, secret).json()["access_token"]
    r = client.get("/v1/premises/P1/consents", headers=bearer(every))
    assert r.status_code == 403 and r.json()["detail"]


def test_every_route_needs_a_known_scope(world) -> None:  # type: ignore[no-untyped-def]
    _, client, _ = world
    routes = api_routes(client.app)
    # 21 + the network operator's 10 (outages, topology, DUoS, planning, quality) + 5 of data services
    # with issue 20's transfer policies (3 routes), shipments, installs; issue 21's building readings
    # and heat bill (readings:read); issue 25's tariff catalogue (tariffs:read), demand-response
    # events (send, follow, cancel: demand-response) and a premises' appliances (appliances:read);
    # issue 20's pending meters of a premises
    assert len(routes) == 49
    # Issue 20's operator and installer routes (transfer policies, a premises' transfer group,
    # shipment files, installs and the pending meters they follow) are not open to OAuth2 tokens at all: party credentials only.
    closed = {(m, p) for m, p in routes if required_scope(m, p) not in ALL_SCOPES}
    assert {p for _, p in closed} == {
        "/v1/transfer-policies",
        "/v1/premises/{premises_id}/transfer-group",
        "/v1/meter-shipments",
        "/v1/premises/{premises_id}/meter-installs",
        "/v1/premises/{premises_id}/pending-meters",
    }
    used = {s for m, p in routes if (m, p) not in closed for s in route_scopes(m, p)}
    assert used == ALL_SCOPES
    assert required_scope("GET", "/v1/something-new") not in ALL_SCOPES  # fails closed
    # Only an IHD message accepts a second scope: a data service's narrower one (issue 25).
    assert {(m, p): route_scopes(m, p)[1] for m, p in routes if len(route_scopes(m, p)) > 1} == {
        ("POST", "/v1/premises/{premises_id}/commands/ihd-message"): "ihd-messages"
    }


def test_openapi_declares_the_security_schemes(world) -> None:  # type: ignore[no-untyped-def]
    _, client, _ = world
    spec = client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["oauth2"]["flows"]["clientCredentials"]["tokenUrl"] == "/oauth/token"
    assert set(schemes["oauth2"]["flows"]["clientCredentials"]["scopes"]) == ALL_SCOPES
    assert schemes["mutualTLS"]["type"] == "mutualTLS"
    op = spec["paths"]["/v1/premises/{premises_id}/commands/top-up"]["post"]
    assert op["security"] == [{"bearer": []}, {"oauth2": ["commands:write"]}, {"mutualTLS": []}]
    token_spec = client.get("/oauth/openapi.json").json()
    assert (
        "application/x-www-form-urlencoded" in token_spec["paths"]["/token"]["post"]["requestBody"]["content"]
    )


def test_tables_hold_no_secret_in_clear(world) -> None:  # type: ignore[no-untyped-def]
    w, client, reg = world
    cid, secret = reg.register("C1", ALL_SCOPES, w.clock.now())
    t = token(client, cid, secret).json()["access_token"]
    with w.store.engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(api_clients.select())] + [
            tuple(r) for r in conn.execute(api_access_tokens.select())
        ]
    assert rows and not any(secret in str(v) or t in str(v) for row in rows for v in row)


def test_certificate_of_another_role_or_unbound_authenticates_nobody(world) -> None:  # type: ignore[no-untyped-def]
    """The checks behind mutual TLS, on the ASGI TLS extension the server fills in (the real TLS
    runs are in test_api_auth_tls.py)."""
    from smarthub.gdsc.api.auth.oauth import Authenticator, AuthFailed
    from smarthub.gdsc.fleet.pki import CertificateAuthority, Role

    w, _, reg = world
    ca = CertificateAuthority.load(w.state / "ca")
    auth = Authenticator(reg, TokenStore(w.store.engine), w.clock)

    def who(cert) -> str:  # type: ignore[no-untyped-def]
        return auth(None, {"client_cert_chain": [cert.cert_pem.decode()]}, "GET", "/v1/portfolio").party_id

    hub = ca.issue(Role.HUB, "H1", w.clock.now())
    with pytest.raises(AuthFailed, match="is for a hub, not a party"):
        who(hub)
    party = ca.issue(Role.PARTY, "C1", w.clock.now())
    with pytest.raises(AuthFailed, match="is not registered to any party"):
        who(party)
    reg.bind_certificate("C1", party.lfdi, party.certificate.serial_number, w.clock.now())
    assert who(party) == "C1"
    reg.unbind_certificate(party.lfdi, w.clock.now())
    with pytest.raises(AuthFailed, match="was revoked on"):
        who(party)


def test_cli_registers_a_client_whose_secret_is_shown_once(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from smarthub.cli import app as cli
    from smarthub.clock import ManualClock
    from smarthub.gdsc.api.app import app_from_state
    from smarthub.sim.fleet import provision

    state = tmp_path / "state"
    provision(state, [], DAY1)
    run = CliRunner().invoke
    assert (
        run(cli, ["gdsc", "token", "--state", str(state), "--party", "C1", "--role", "consumer"]).exit_code
        == 0
    )
    r = run(cli, ["gdsc", "client", "--state", str(state), "--party", "C1", "--scope", "readings:read"])
    assert r.exit_code == 0, r.output
    out = dict(line.split(": ", 1) for line in r.output.strip().splitlines())
    assert out["scope"] == "readings:read"
    r = run(cli, ["gdsc", "client", "--state", str(state), "--party", "C1", "--scope", "everything"])
    assert r.exit_code == 2 and "unknown scope everything" in r.output
    r = run(cli, ["gdsc", "client", "--state", str(state), "--party", "NOBODY"])
    assert r.exit_code == 2 and "NOBODY" in r.output
    with TestClient(app_from_state(state, ManualClock(DAY1))) as client:
        r = token(client, out["client_id"], out["client_secret"])
        assert r.status_code == 200 and r.json()["scope"] == "readings:read"
        assert client.get("/v1/portfolio", headers=bearer(r.json()["access_token"])).status_code == 200
        r = run(cli, ["gdsc", "client", "--state", str(state), "--revoke", out["client_id"]])
        assert r.exit_code == 0 and "revoked client" in r.output
        assert token(client, out["client_id"], out["client_secret"]).status_code == 401
