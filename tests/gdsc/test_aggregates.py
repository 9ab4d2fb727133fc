"""Issue 13 item 3: aggregates cannot be differenced to recover one home's series.

Before the fix the caller chose the premises of an aggregate and only the group's size was
checked: the sums over {P1..P6} and {P2..P6} subtracted to P1's half-hourly series, and P1's
access log showed nothing. Now aggregates are over groups the GDSC defined (one partition, whose
past membership never changes), each half-hour released once, and every read is listed in the
members' access logs (``smarthub.gdsc.governance.aggregates``). On SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gdsc.test_access_api import DAY1, JUL, NOW, app_for, build
from smarthub.clock import ManualClock
from smarthub.gdsc.governance.access import TimeRange
from smarthub.gdsc.governance.aggregates import AggregationGroups, MembershipRefused, UnknownGroup
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.gdsc.readings.tables import StoredReading
from smarthub.gdsc.store import Store

START = int(DAY1.timestamp())
P1_SERIES = [100 + i for i in range(48)]  # what build() stores for P1's first day


@pytest.fixture
def world(db_url: str) -> Iterator[tuple[Store, AccessGuard, ManualClock, TestClient]]:
    store, guard, clock = build(db_url)  # P1 (C1's home): 96 half-hours from DAY1
    for n in range(2, 8):  # P2..P7; P7's data arrives late (below)
        store.register_hub(
            hub_id=f"H{n}",
            premises_id=f"P{n}",
            url="https://h",
            lfdi="A" * 40,
            meters_by_fuel=[("E1", "electricity")],
        )
        if n < 7:
            store.ingest(f"H{n}", _day(f"H{n}", n), {})
    with TestClient(app_for(guard)) as client:
        yield store, guard, clock, client
    store.close()


def _day(hub: str, n: int, first: int = START) -> list[StoredReading]:
    return [
        StoredReading(hub, "E1", "1-0:1.8.0", first + 1800 * i, 1800, n * 10 + i % 3, 0, 72, 0)
        for i in range(48)
    ]


def _series(r: Any) -> list[int]:
    assert r.status_code == 200, r.text
    return [x["value"] for x in r.json()["readings"]]


def _recovered(a: Any, b: Any) -> bool:
    """Whether two answers subtract to P1's half-hourly series."""
    if a.status_code != 200 or b.status_code != 200:
        return False
    sa, sb = _series(a), _series(b)
    return len(sa) == len(sb) == 48 and [x - y for x, y in zip(sa, sb, strict=True)] == P1_SERIES


def test_differencing_two_aggregates_does_not_recover_a_home(world) -> None:  # type: ignore[no-untyped-def]
    store, guard, _clock, client = world
    day = {"start": DAY1.isoformat(), "end": (DAY1 + timedelta(days=1)).isoformat()}

    def agg(granularity: str = "half-hourly", **params: Any) -> Any:
        return client.get(
            "/v1/aggregates/readings",
            params={**day, "granularity": granularity, **params},
            headers={"Authorization": "Bearer tok-dno"},
        )

    # 1. The caller's own lists of premises (the attack as it worked before): not accepted.
    six = agg(premises=["P1", "P2", "P3", "P4", "P5", "P6"])
    five = agg(premises=["P2", "P3", "P4", "P5", "P6"])
    assert not _recovered(six, five)
    assert six.status_code == five.status_code == 422 and "query.group" in six.json()["detail"]

    # 2. Pre-defined groups: P1..P7 on one feeder (defined today, back-dated over the time they
    # were in no group). The sum over the six with data is released.
    groups = AggregationGroups(store.engine)
    groups.define("FEEDER-A", "LV feeder A", NOW)
    for n in range(1, 8):
        groups.assign(f"P{n}", "FEEDER-A", NOW, start=JUL)
    first = agg(group="FEEDER-A")
    whole = _series(first)
    assert len(whole) == 48 and {x["premises"] for x in first.json()["readings"]} == {6}
    assert whole[0] == 100 + sum(n * 10 for n in range(2, 7))
    # A second group of P2..P6 for the same data cannot be made: the past members are fixed.
    groups.define("FEEDER-B", "P2..P6", NOW)
    for n in range(2, 7):
        with pytest.raises(MembershipRefused, match="cannot change"):
            groups.assign(f"P{n}", "FEEDER-B", NOW, start=JUL)
    # Moved from now on, they are FEEDER-B's only for data recorded from now: nothing here.
    for n in range(2, 7):
        groups.assign(f"P{n}", "FEEDER-B", NOW)
    b = agg(group="FEEDER-B")
    assert b.status_code == 403 and b.json()["detail"].startswith("group FEEDER-B has 0 premises")
    assert not _recovered(first, b)
    # FEEDER-A's released figures do not change: not when its members moved, not when a member's
    # data arrives late (P7), not when a member leaves.
    store.ingest("H7", _day("H7", 7), {})
    groups.leave("P1", NOW)
    again = agg(group="FEEDER-A")
    assert again.json()["readings"] == first.json()["readings"]
    assert not _recovered(again, first)
    # Coarser buckets are sums of the released half-hours: nothing new in them.
    daily = agg("daily", group="FEEDER-A")
    assert [(x["value"], x["premises"]) for x in daily.json()["readings"]] == [(sum(whole), 6)]
    # An unknown group: 404; a group that is not a network operator's to ask: 403 for a consumer.
    assert agg(group="NO-SUCH").status_code == 404
    r = client.get(
        "/v1/aggregates/readings",
        params={**day, "granularity": "daily", "group": "FEEDER-A"},
        headers={"Authorization": "Bearer tok-c1"},
    )
    assert r.status_code == 403

    # 3. The occupant of P1 sees the feeder's reads in their access log; FEEDER-B's are not theirs.
    log = client.get(
        "/v1/premises/P1/access-log",
        params={"start": JUL.isoformat(), "end": (NOW + timedelta(days=1)).isoformat()},
        headers={"Authorization": "Bearer tok-c1"},
    )
    assert log.status_code == 200, log.text
    reads = [(e["actor"], e["action"], e["allow"]) for e in log.json()]
    assert reads.count(("DNO", "aggregate-query", True)) == 3  # first, again, daily
    assert ("DNO", "aggregate-query", False) not in reads  # FEEDER-B's refusal: no data of P1's
    assert ("C1", "aggregate-query", False) in reads  # attempts are listed too
    assert guard.audit.verify().ok


def test_a_half_hour_is_released_once_settled_and_never_revised(world) -> None:  # type: ignore[no-untyped-def]
    from smarthub.gdsc.governance.aggregates import SETTLE_AFTER, aggregate
    from smarthub.gdsc.governance.parties import Granularity

    store, _guard, _clock, _client = world
    groups = AggregationGroups(store.engine)
    groups.define("F", "feeder", NOW)
    for n in range(1, 8):
        groups.assign(f"P{n}", "F", NOW, start=JUL)
    yesterday = int((NOW - timedelta(days=1)).timestamp()) // 86400 * 86400
    for n in range(1, 7):
        store.ingest(f"H{n}" if n > 1 else "H1", _day(f"H{n}" if n > 1 else "H1", n, yesterday), {})
    span = TimeRange(NOW - timedelta(days=1, hours=12), NOW)
    got = aggregate(store.engine, "F", "electricity", "1-0:1.8.0", span, Granularity.HALF_HOURLY, NOW, 5)
    assert got == []  # not settled: data may still be arriving
    later = NOW + SETTLE_AFTER + timedelta(days=1)
    got = aggregate(store.engine, "F", "electricity", "1-0:1.8.0", span, Granularity.HALF_HOURLY, later, 5)
    assert len(got) == 48 and {b.premises for b in got} == {6}
    store.ingest("H7", _day("H7", 7, yesterday), {})  # late: after its half-hours were released
    again = aggregate(store.engine, "F", "electricity", "1-0:1.8.0", span, Granularity.HALF_HOURLY, later, 5)
    assert again == got
    # A released half-hour is served as released: k decides what is released, once.
    assert (
        aggregate(store.engine, "F", "electricity", "1-0:1.8.0", span, Granularity.HALF_HOURLY, later, 8)
        == got
    )


def test_membership_is_one_partition_whose_past_never_changes(world) -> None:  # type: ignore[no-untyped-def]
    store, _guard, _clock, _client = world
    g = AggregationGroups(store.engine)
    with pytest.raises(UnknownGroup):
        g.assign("P1", "NOPE", NOW)
    g.define("A", "a", NOW)
    g.define("B", "b", NOW)
    g.assign("P1", "A", NOW, start=JUL)  # first membership: may reach back
    assert g.assign("P1", "A", NOW).start == JUL.astimezone(JUL.tzinfo)  # already there: unchanged
    with pytest.raises(MembershipRefused):
        g.assign("P1", "B", NOW, start=NOW - timedelta(seconds=1))  # a move in the past
    g.assign("P1", "B", NOW + timedelta(days=1))  # a move from tomorrow
    held = g.memberships_of("P1")
    assert [(m.group_id, m.start, m.end) for m in held] == [
        ("A", JUL, NOW + timedelta(days=1)),
        ("B", NOW + timedelta(days=1), None),
    ]
    with pytest.raises(MembershipRefused):
        g.leave("P1", NOW, NOW - timedelta(hours=1))
    # Never in two groups at once: at any instant a premises has at most one membership.
    for t in (JUL, NOW, NOW + timedelta(days=1), NOW + timedelta(days=400)):
        assert sum(m.overlaps(t, t + timedelta(seconds=1)) for m in held) <= 1


def test_gdsc_group_command(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    from datetime import UTC, datetime

    from typer.testing import CliRunner

    from smarthub.cli import app
    from smarthub.sim.fleet import provision

    state = tmp_path / "state"
    provision(state, [], datetime.now(UTC) - timedelta(minutes=5))
    since = ["--from", "2020-01-01T00:00:00+00:00"]

    def run(*args: str) -> Any:
        return CliRunner().invoke(app, ["gdsc", "group", "--state", str(state), *args])

    r = run(
        "--group", "FEEDER-7", "--description", "LV feeder 7", "--premises", "P1", "--premises", "P2", *since
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"group": "FEEDER-7", "premises": ["P1", "P2"]}
    r = run("--group", "FEEDER-8", "--premises", "P3", "--premises", "P2", *since)
    assert r.exit_code == 2 and "premises P2 is in group FEEDER-7" in r.stderr
    store = Store(f"sqlite:///{state / 'gdsc' / 'gdsc.sqlite'}")
    try:
        assert [
            m.group_id for m in AggregationGroups(store.engine).memberships_of("P3")
        ] == []  # all or nothing
    finally:
        store.close()
    assert run("--group", "FEEDER-8", "--premises", "P2").exit_code == 0  # moved from now on


def test_mixed_units_in_a_group_answer_400_and_release_nothing(world) -> None:  # type: ignore[no-untyped-def]
    """Issue 22 item 6: one member's meter reports the OBIS code in another unit (Wh, not W): the
    aggregate answers 400 naming the units, as the portfolio does, where it raised a 500; no
    half-hour is released, so the group's figures are not fixed on a wrong sum."""
    store, _guard, _clock, client = world
    store.register_hub(
        hub_id="H8", premises_id="P8", url="https://h", lfdi="B" * 40, meters_by_fuel=[("E1", "electricity")]
    )
    store.ingest(
        "H8",
        [StoredReading("H8", "E1", "1-0:1.8.0", START + 1800 * i, 1800, 5, 0, 38, 0) for i in range(48)],
        {},
    )
    groups = AggregationGroups(store.engine)
    groups.define("MIXED", "mixed units", NOW)
    for n in (1, 2, 3, 4, 5, 8):
        groups.assign(f"P{n}", "MIXED", NOW, start=JUL)
    day = {"start": DAY1.isoformat(), "end": (DAY1 + timedelta(days=1)).isoformat()}
    for granularity in ("half-hourly", "daily"):
        r = client.get(
            "/v1/aggregates/readings",
            params={**day, "granularity": granularity, "group": "MIXED"},
            headers={"Authorization": "Bearer tok-dno"},
        )
        assert r.status_code == 400, r.text
        assert "different units" in r.json()["detail"] and "72 and 38" in r.json()["detail"]
    from smarthub.gdsc.governance.aggregates import aggregate_releases

    with store.engine.connect() as conn:
        assert conn.execute(aggregate_releases.select()).fetchall() == []
