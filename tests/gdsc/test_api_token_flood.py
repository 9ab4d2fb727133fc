"""Issue 13 item 6: a flood of bad client credentials at ``POST /oauth/token`` must not stall the
rest of the API. Before the fix the scrypt check ran on the event loop, for unknown client ids
too, with no limit: every bad-credential request held every other request.

The secret check is held open by a gate (a real registry whose ``authenticate`` waits for the test
to let it go): with the check on the event loop nothing else is answered while the gate is shut;
off the loop, in a bounded pool, another endpoint answers meanwhile, at most ``workers`` checks run
at once, requests beyond ``max_pending`` get 503 at once, and floods from one address or for one
client id get 429 with ``Retry-After``. Timeouts below only detect a stall; nothing is timed.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from gdsc.api_world import DAY1, World, build
from smarthub.gdsc.api import create_app
from smarthub.gdsc.api_clients import Client, ClientRegistry
from smarthub.gdsc.api_tokens import TokenStore
from smarthub.gdsc.oauth import ALL_SCOPES, TokenEndpoint

STALL = 10.0  # seconds: far beyond anything but a stalled loop
DAY = {
    "meter_id": "E1",
    "start": DAY1.isoformat(),
    "end": (DAY1 + timedelta(days=1)).isoformat(),
    "granularity": "half-hourly",
}


class GatedRegistry(ClientRegistry):
    """The real registry; each secret check first waits for the gate (and counts who is inside)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.inside = 0
        self.most_inside = 0
        self.calls = 0
        self._lock = threading.Lock()

    def authenticate(self, client_id: str, secret: str) -> Client | None:
        with self._lock:
            self.calls += 1
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        try:
            self.gate.wait(STALL)
            return super().authenticate(client_id, secret)
        finally:
            with self._lock:
                self.inside -= 1


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = build(f"sqlite:///{tmp_path / 'api.sqlite'}", tmp_path / "state")
    yield w
    w.store.close()


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def bad_token_request(client: TestClient, client_id: str) -> httpx.Response:
    return client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers=basic(client_id, "wrong")
    )


def wait_for(cond, what: str) -> None:  # type: ignore[no-untyped-def]
    done = threading.Event()
    for _ in range(int(STALL * 100)):
        if cond():
            return
        done.wait(0.01)
    raise AssertionError(f"stalled: {what}")


def test_bad_credential_flood_leaves_the_api_answering(world: World) -> None:
    registry = GatedRegistry(world.store.engine)
    registry.register("C1", ALL_SCOPES, world.clock.now())
    app = create_app(world.guard, TokenStore(world.store.engine), world.desk, clients=registry)
    answers: list[httpx.Response] = []
    got: list[httpx.Response] = []
    threads: list[threading.Thread] = []

    def start(fn) -> None:  # type: ignore[no-untyped-def]
        threads.append(threading.Thread(target=fn))
        threads[-1].start()

    with TestClient(app) as client:
        try:
            for i in range(20):  # unknown client ids, as an attacker sends them
                start(lambda i=i: answers.append(bad_token_request(client, f"c-x{i}")))
            wait_for(lambda: registry.inside >= 1, "no secret check started")
            # Checks are held open. Another endpoint answers meanwhile: the loop is not blocked.
            start(
                lambda: got.append(
                    client.get("/v1/premises/P1/readings", params=DAY, headers=world.auth("C1"))
                )
            )
            threads[-1].join(STALL)
            answered_while_held = bool(got)
            if answered_while_held:
                # The pool is bounded: 2 checks at once, 16 waiting or running, the rest refused now.
                wait_for(lambda: len(answers) >= 4, "requests beyond the pool's bound were not refused")
                held = (registry.inside, registry.most_inside, list(answers))
        finally:
            registry.gate.set()  # let everything finish before the client closes
            for t in threads:
                t.join(STALL)
        assert answered_while_held, "a readings request stalled behind the token checks"
        assert got[0].status_code == 200 and len(got[0].json()["readings"]) == 48
        inside, most_inside, refused = held
        assert inside == most_inside == 2
        assert len(refused) == 4 and all(r.status_code == 503 for r in refused)
        assert all(r.json()["error"] == "temporarily_unavailable" for r in refused)
        assert all(r.headers["retry-after"] == "1" for r in refused)
        assert len(answers) == 20 and registry.calls == 16
        assert sorted({r.status_code for r in answers}) == [401, 503]
        # An unknown id and a wrong secret of a known client get the same answer (and cost).
        unknown = bad_token_request(client, "c-nobody")
        known = bad_token_request(client, registry_client_id(registry))
        assert unknown.status_code == known.status_code == 401
        assert unknown.json()["error"] == known.json()["error"] == "invalid_client"
        assert registry.calls == 18  # both went through the secret check
        # The same address keeps flooding: 429 with Retry-After, and no further check is run.
        statuses = [bad_token_request(client, f"c-y{i}").status_code for i in range(40)]
        assert 429 in statuses
        limited = bad_token_request(client, "c-z")
        assert limited.status_code == 429 and limited.json()["error"] == "slow_down"
        assert int(limited.headers["retry-after"]) >= 1
        assert registry.calls < 18 + 40
        # Still answering everything else.
        assert client.get("/v1/jobs", headers=world.auth("C1")).status_code == 200


def registry_client_id(registry: ClientRegistry) -> str:
    from sqlalchemy import select

    from smarthub.gdsc.api_clients import api_clients

    with registry.engine.connect() as conn:
        return str(conn.execute(select(api_clients.c.client_id)).scalar_one())


def test_per_client_limit_holds_across_addresses_and_a_good_client_elsewhere_is_served(world: World) -> None:
    # Imported here so the first test runs (and shows the stall) against code without the limits.
    from smarthub.gdsc.oauth_limits import CheckPool, Limit

    registry = ClientRegistry(world.store.engine)
    cid, secret = registry.register("C1", ALL_SCOPES, world.clock.now())
    t = [0.0]
    endpoint = TokenEndpoint(
        registry,
        world.clock,
        per_client=Limit(burst=3, per_minute=6),
        per_source=Limit(burst=5, per_minute=60),
        pool=CheckPool(workers=1, max_pending=4),
        monotonic=lambda: t[0],
    )
    app = create_app(world.guard, TokenStore(world.store.engine), world.desk, token_endpoint=endpoint)
    for n, addr in enumerate(("192.0.2.1", "192.0.2.2")):  # the attacker moves address: the id is held
        with TestClient(app, client=(addr, 40000)) as c:
            codes = [bad_token_request(c, cid).status_code for _ in range(2)]
            assert codes == ([401, 401] if n == 0 else [401, 429])
    with TestClient(app, client=("192.0.2.3", 40000)) as c:
        r = c.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=basic(cid, secret))
        assert r.status_code == 429 and r.headers["retry-after"] == "10"  # one token per 10 s
        t[0] += 10  # the bucket refills: the real client gets its token
        r = c.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=basic(cid, secret))
        assert r.status_code == 200, r.text
        # Per address: 5 at once, whatever the ids.
        codes = [bad_token_request(c, f"c-{i}").status_code for i in range(5)]
        assert codes == [401, 401, 401, 401, 429]
    assert endpoint.rate_limited == 3


def test_buckets_are_bounded_and_ipv6_is_limited_by_its_64() -> None:
    from smarthub.gdsc.oauth_limits import CheckPool, KeyedBuckets, Limit, source_key

    t = [0.0]
    b = KeyedBuckets(Limit(burst=1, per_minute=60), max_keys=3, monotonic=lambda: t[0])
    assert [b.take(k) for k in ("a", "b", "c", "d")] == [0, 0, 0, 0]
    assert len(b) == 3  # "a" was dropped: the least recently seen
    assert b.take("d") == 1.0  # one a second
    t[0] += 1
    assert b.take("d") == 0
    assert source_key("2001:db8:1:2:aaaa::1") == source_key("2001:db8:1:2:bbbb::7") == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:3::1") != source_key("2001:db8:1:2::1")
    assert source_key("192.0.2.7") == "192.0.2.7" and source_key(None) == "unknown"
    with pytest.raises(ValueError):
        Limit(burst=0, per_minute=1)
    with pytest.raises(ValueError):
        CheckPool(workers=3, max_pending=2)
