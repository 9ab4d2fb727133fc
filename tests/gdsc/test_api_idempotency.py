"""A top-up with an ``Idempotency-Key`` is made once however often it is asked for (issue 25 item 2:
a payment provider retries, a response is lost): the repeat answers the first job and voucher and
issues no voucher; the key with another request is 409; keys are per party. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from gdsc.api_world import World, build
from smarthub.gdsc.commands.desk import api_idempotency
from smarthub.gdsc.commands.vouchers import vouchers
from smarthub.gdsc.pull.plan import PullPlan

TOP_UP = "/v1/premises/P1/commands/top-up"


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    w = build(db_url, tmp_path / "state")
    yield w
    w.store.close()


def issued(w: World) -> int:
    with w.store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(vouchers)).scalar_one())


def test_a_repeated_top_up_is_made_once(world: World) -> None:
    client = world.client()
    key = {"Idempotency-Key": "pay-0001"}
    first = client.post(
        TOP_UP, json={"meter_id": "E1", "amount": "10.00"}, headers={**world.auth("S1"), **key}
    )
    assert first.status_code == 202, first.text
    again = client.post(
        TOP_UP, json={"meter_id": "E1", "amount": "10.00"}, headers={**world.auth("S1"), **key}
    )
    assert again.status_code == 202, again.text
    assert (again.json()["job_id"], again.json()["voucher_id"]) == (
        first.json()["job_id"],
        first.json()["voucher_id"],
    )
    assert issued(world) == 1

    other = client.post(
        TOP_UP, json={"meter_id": "E1", "amount": "20.00"}, headers={**world.auth("S1"), **key}
    )
    assert other.status_code == 409, other.text
    assert (
        other.json()["detail"] == "Idempotency-Key 'pay-0001' was used for another request (not this top-up)"
    )
    assert issued(world) == 1

    fresh = client.post(
        TOP_UP,
        json={"meter_id": "E1", "amount": "20.00"},
        headers={**world.auth("S1"), "Idempotency-Key": "pay-2"},
    )
    assert fresh.status_code == 202 and fresh.json()["job_id"] != first.json()["job_id"]
    plain = client.post(TOP_UP, json={"meter_id": "E1", "amount": "20.00"}, headers=world.auth("S1"))
    assert (
        plain.status_code == 202 and plain.json()["job_id"] != fresh.json()["job_id"]
    )  # no key: each counts
    assert issued(world) == 3


def test_the_key_is_checked_and_the_policy_still_decides(world: World) -> None:
    client = world.client()
    bad = client.post(
        TOP_UP,
        json={"meter_id": "E1", "amount": "5.00"},
        headers={**world.auth("S1"), "Idempotency-Key": "a b"},
    )
    assert bad.status_code == 422, bad.text
    # A party that may not top up is refused before its key is looked at, replay or not.
    refused = client.post(
        TOP_UP,
        json={"meter_id": "E1", "amount": "5.00"},
        headers={**world.auth("TP"), "Idempotency-Key": "k"},
    )
    assert refused.status_code == 403, refused.text
    assert issued(world) == 0


def test_a_top_up_that_fails_half_way_leaves_nothing_and_its_retry_is_made(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key, the voucher and the queued job are one transaction: a failure after the voucher
    is written (here the queue refuses the job) leaves no voucher and no key held "in progress",
    so the provider's retry with the same key is made, once."""
    client = world.client(raise_server_exceptions=False)
    key = {"Idempotency-Key": "pay-crash"}
    real = PullPlan.queue_command

    def refuse(*args: object, **kwargs: object) -> int:
        raise OperationalError("INSERT INTO urgent_work", {}, Exception("disk I/O error"))

    monkeypatch.setattr(PullPlan, "queue_command", refuse)
    failed = client.post(
        TOP_UP, json={"meter_id": "E1", "amount": "10.00"}, headers={**world.auth("S1"), **key}
    )
    assert failed.status_code == 500
    assert issued(world) == 0
    with world.store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(api_idempotency)).scalar_one() == 0
    monkeypatch.setattr(PullPlan, "queue_command", real)
    retried = client.post(
        TOP_UP, json={"meter_id": "E1", "amount": "10.00"}, headers={**world.auth("S1"), **key}
    )
    assert retried.status_code == 202, retried.text
    again = client.post(
        TOP_UP, json={"meter_id": "E1", "amount": "10.00"}, headers={**world.auth("S1"), **key}
    )
    assert again.json()["voucher_id"] == retried.json()["voucher_id"] and issued(world) == 1


def test_concurrent_requests_with_one_key_make_one_top_up(world: World) -> None:
    """A provider's retry racing its first request: one waits on the key's row and answers the
    other's job and voucher (no 409 "still in progress", no second voucher)."""
    from concurrent.futures import ThreadPoolExecutor

    client = world.client()
    headers = {**world.auth("S1"), "Idempotency-Key": "pay-race"}

    def post(_: int) -> tuple[int, str]:
        r = client.post(TOP_UP, json={"meter_id": "E1", "amount": "5.00"}, headers=headers)
        assert r.status_code == 202, r.text
        return r.json()["job_id"], r.json()["voucher_id"]

    with ThreadPoolExecutor(4) as pool:
        answers = set(pool.map(post, range(8)))
    assert len(answers) == 1 and issued(world) == 1
