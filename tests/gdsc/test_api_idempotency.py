"""A top-up with an ``Idempotency-Key`` is made once however often it is asked for (issue 25 item 2:
a payment provider retries, a response is lost): the repeat answers the first job and voucher and
issues no voucher; the key with another request is 409; keys are per party. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gdsc.api_world import World, build
from smarthub.gdsc.commands.vouchers import vouchers

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
