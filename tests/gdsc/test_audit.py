"""The hash-chained audit log on SQLite and PostgreSQL: tampering is detected, consumers see who looked."""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, delete, select, text, update
from sqlalchemy.exc import DBAPIError

from smarthub.clock import ManualClock
from smarthub.gdsc.access import Action, TimeRange
from smarthub.gdsc.audit import GENESIS, AuditLog, audit_log, canonical, entry_hash
from smarthub.gdsc.guard import AccessDenied, AccessGuard
from smarthub.gdsc.lifecycle import move_in
from smarthub.gdsc.parties import (
    Consent,
    DataKind,
    Fuel,
    Granularity,
    Party,
    PartyRepository,
    Role,
    SupplyPeriod,
    Tenancy,
)
from smarthub.gdsc.store import Store

T0 = datetime(2026, 8, 1, 9, tzinfo=UTC)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    s.create_schema()
    yield s
    s.close()


@pytest.fixture
def log(store: Store) -> AuditLog:
    a = AuditLog(store.engine)
    for i in range(5):
        a.append(
            at=T0 + timedelta(minutes=i),
            actor=f"S{i}",
            role="supplier",
            action="read-readings",
            premises_id="P1",
            allow=i % 2 == 0,
            reason=f"reason {i}",
            detail={"i": i, "note": "naïve café"},  # non-ASCII survives canonical serialisation
        )
    return a


def test_chain_links_and_verifies(log: AuditLog) -> None:
    entries = log.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    assert all(entry_hash(e.canonical()) == e.hash for e in entries)
    v = log.verify(expected_head=log.head())
    assert v.ok and v.entries == 5 and v.problems == () and v.head == entries[-1].hash


def test_empty_log_verifies(store: Store) -> None:
    v = AuditLog(store.engine).verify()
    assert v.ok and v.entries == 0 and v.head == GENESIS


@contextlib.contextmanager
def tampering(store: Store) -> Iterator[Connection]:
    """A transaction of someone with the database owner's rights: on PostgreSQL the
    append-only trigger must be switched off first (and is switched on again after)."""
    with store.engine.begin() as c:
        if store.dialect == "postgresql":
            c.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        yield c
        if store.dialect == "postgresql":
            c.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"))


@pytest.mark.postgres
def test_postgresql_refuses_updates_and_deletes_of_the_audit_log(pg_url: str) -> None:
    store = Store(pg_url)
    store.create_schema()
    log = AuditLog(store.engine)
    log.append(
        at=T0,
        actor="S1",
        role="supplier",
        action="read-readings",
        premises_id="P1",
        allow=True,
        reason="supplies P1",
        detail={},
    )
    try:
        for stmt in (update(audit_log).values(actor="x"), delete(audit_log)):
            with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as c:
                c.execute(stmt)
        assert log.verify().ok
    finally:
        store.close()


def _body(store: Store, seq: int) -> dict:
    with store.engine.connect() as c:
        return json.loads(c.execute(select(audit_log.c.body).where(audit_log.c.seq == seq)).scalar_one())


def test_modified_entry_is_detected(store: Store, log: AuditLog) -> None:
    body = _body(store, 3)
    body["allow"] = not body["allow"]
    with tampering(store) as c:
        c.execute(update(audit_log).where(audit_log.c.seq == 3).values(body=canonical(body).decode()))
    v = log.verify()
    assert not v.ok
    assert any("entry 3" in p and "modified" in p for p in v.problems), v.problems


def test_modified_entry_with_recomputed_hash_breaks_the_next_link(store: Store, log: AuditLog) -> None:
    """A forger who rewrites an entry and its hash still cannot make the next entry point at it."""
    body = _body(store, 3)
    body["actor"] = "SOMEONE_ELSE"
    raw = canonical(body)
    with tampering(store) as c:
        c.execute(
            update(audit_log)
            .where(audit_log.c.seq == 3)
            .values(body=raw.decode(), hash=entry_hash(raw), actor="SOMEONE_ELSE")
        )
    v = log.verify()
    assert not v.ok
    assert any("entry 4" in p and "link" in p for p in v.problems), v.problems


def test_modified_query_column_is_detected(store: Store, log: AuditLog) -> None:
    with tampering(store) as c:
        c.execute(update(audit_log).where(audit_log.c.seq == 2).values(premises_id="P9"))
    v = log.verify()
    assert not v.ok and any("entry 2: column premises_id" in p for p in v.problems), v.problems


def test_deleted_entry_is_detected(store: Store, log: AuditLog) -> None:
    with tampering(store) as c:
        c.execute(delete(audit_log).where(audit_log.c.seq == 3))
    v = log.verify()
    assert not v.ok
    assert any("seq 4 follows seq 2" in p for p in v.problems), v.problems
    assert any("entry 4" in p and "link" in p for p in v.problems), v.problems


def test_deleted_tail_is_detected_against_the_anchor(store: Store, log: AuditLog) -> None:
    anchor = log.head()
    with tampering(store) as c:
        c.execute(delete(audit_log).where(audit_log.c.seq == 5))
    assert log.verify().ok  # a shorter chain is still a chain: only the anchor can tell
    v = log.verify(expected_head=anchor)
    assert not v.ok and any("entries removed" in p for p in v.problems), v.problems


def test_reordered_entries_are_detected(store: Store, log: AuditLog) -> None:
    """Swap entries 2 and 3 by renumbering them (their contents and hashes unchanged)."""
    with tampering(store) as c:
        c.execute(update(audit_log).where(audit_log.c.seq == 2).values(seq=-2))
        c.execute(update(audit_log).where(audit_log.c.seq == 3).values(seq=2))
        c.execute(update(audit_log).where(audit_log.c.seq == -2).values(seq=3))
    v = log.verify()
    assert not v.ok
    assert any("moved" in p for p in v.problems), v.problems
    assert any("link" in p for p in v.problems), v.problems


def test_concurrent_appenders_keep_one_chain(store: Store) -> None:
    """Two AuditLog objects on two engines (as two GDSC processes would have) append at once."""
    other = Store(store.url)
    logs = [AuditLog(store.engine), AuditLog(other.engine)]
    errors: list[BaseException] = []

    def run(log: AuditLog, who: str) -> None:
        try:
            for i in range(25):
                log.append(
                    at=T0,
                    actor=who,
                    role="operator",
                    action="read-events",
                    premises_id="P1",
                    allow=True,
                    reason=str(i),
                )
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(lg, f"W{n}")) for n, lg in enumerate(logs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert errors == []
    v = logs[0].verify()
    assert v.ok and v.entries == 50, v.problems


def test_detail_must_be_plain_json(store: Store) -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        AuditLog(store.engine).append(
            at=T0,
            actor="X",
            role="operator",
            action="x",
            premises_id=None,
            allow=True,
            reason="r",
            detail={"v": float("nan")},
        )
    assert AuditLog(store.engine).verify().entries == 0


# -- through the guard: every decision is recorded; a consumer lists who accessed their data -----------

JUL = datetime(2026, 7, 1, tzinfo=UTC)
SEP = datetime(2026, 9, 1, tzinfo=UTC)


@pytest.fixture
def world(store: Store) -> tuple[AccessGuard, ManualClock, PartyRepository]:
    store.register_hub(
        hub_id="H1", premises_id="P1", url="https://h", lfdi="A" * 40, meters_by_fuel=[("E1", "electricity")]
    )
    store.register_hub(hub_id="H2", premises_id="P2", url="https://h", lfdi="B" * 40, meters_by_fuel=[])
    repo = PartyRepository(store.engine)
    for p in (
        Party("S1", Role.SUPPLIER),
        Party("C1", Role.CONSUMER),
        Party("C2", Role.CONSUMER),
        Party("TP", Role.THIRD_PARTY),
    ):
        repo.add_party(p)
    repo.add_supply_period(SupplyPeriod("P1", Fuel.ELECTRICITY, "S1", JUL))
    repo.add_tenancy(Tenancy("T1", "P1", "C1", JUL))
    repo.grant_consent(
        Consent(
            "K1",
            "TP",
            "P1",
            "T1",
            frozenset({DataKind.READINGS}),
            Granularity.DAILY,
            "tariff advice",
            JUL + timedelta(days=1),
            JUL + timedelta(days=365),
        )
    )
    clock = ManualClock(datetime(2026, 8, 10, 12, tzinfo=UTC))
    return AccessGuard(repo, AuditLog(store.engine), clock), clock, repo


def test_every_decision_and_command_is_recorded(
    world: tuple[AccessGuard, ManualClock, PartyRepository],
) -> None:
    guard, clock, _ = world
    period = TimeRange(JUL, clock.now())
    assert guard.authorize(
        "TP",
        Action.READ_READINGS,
        premises_id="P1",
        fuel="electricity",
        granularity=Granularity.DAILY,
        period=period,
    ).allow
    with pytest.raises(AccessDenied, match="allows only daily"):
        guard.require(
            "TP",
            Action.READ_READINGS,
            premises_id="P1",
            fuel="electricity",
            granularity=Granularity.HALF_HOURLY,
            period=period,
        )
    guard.require("S1", Action.TOP_UP, premises_id="P1", fuel="electricity", detail={"amount_pence": 2000})
    entries = guard.audit.entries()
    assert [(e.actor, e.action, e.allow) for e in entries] == [
        ("TP", "read-readings", True),
        ("TP", "read-readings", False),
        ("S1", "command:top-up", True),
    ]
    assert entries[2].detail["detail"] == {"amount_pence": 2000}
    assert entries[0].detail["ranges"] == [[JUL.isoformat(), clock.now().isoformat()]]
    assert guard.audit.verify().ok


def test_aggregate_entries_do_not_list_the_group(
    world: tuple[AccessGuard, ManualClock, PartyRepository],
) -> None:
    guard, _clock, repo = world
    repo.add_party(Party("DNO", Role.NETWORK_OPERATOR))
    group = frozenset({"P1", "P2", "P3", "P4"})
    d = guard.authorize(
        "DNO",
        Action.AGGREGATE_QUERY,
        group=group,
        group_id="FEEDER-1",
        granularity=Granularity.HALF_HOURLY,
        period=TimeRange(JUL, SEP),
    )
    assert not d.allow
    (e,) = guard.audit.entries()
    assert e.detail["group_size"] == 4 and "P1" not in json.dumps(e.detail)
    assert e.group_id == "FEEDER-1" and guard.audit.verify().ok  # the group, in the hashed entry


def test_consumer_lists_who_accessed_their_data_within_their_tenancy(
    world: tuple[AccessGuard, ManualClock, PartyRepository],
) -> None:
    guard, clock, repo = world
    aug = TimeRange(JUL, clock.now())
    guard.authorize(
        "S1",
        Action.READ_READINGS,
        premises_id="P1",
        fuel="electricity",
        granularity=Granularity.MONTHLY,
        period=aug,
    )
    clock.advance(timedelta(hours=1))
    guard.authorize(
        "TP",
        Action.READ_READINGS,
        premises_id="P1",
        fuel="electricity",
        granularity=Granularity.HALF_HOURLY,
        period=aug,
    )

    seen = guard.access_log("C1", "P1", TimeRange(JUL, SEP))
    assert [(e.actor, e.allow, e.at) for e in seen] == [
        ("S1", True, datetime(2026, 8, 10, 12, tzinfo=UTC)),
        ("TP", False, datetime(2026, 8, 10, 13, tzinfo=UTC)),  # attempts are shown too
    ]
    with pytest.raises(AccessDenied):
        guard.access_log("C2", "P1", TimeRange(JUL, SEP))  # not their premises

    # C2 moves in: they see accesses from their move-in only, never those during C1's tenancy.
    clock.advance(timedelta(days=5))
    move_in(repo, "P1", "C2", "T2", clock.now())
    clock.advance(timedelta(hours=2))
    guard.authorize(
        "S1",
        Action.READ_EVENTS,
        premises_id="P1",
        fuel="electricity",
        period=TimeRange(clock.now() - timedelta(hours=1), clock.now()),
    )
    mine = guard.access_log("C2", "P1", TimeRange(JUL, SEP))
    assert [(e.actor, e.action) for e in mine] == [("S1", "read-events")]
    # C1 still sees what happened during their own tenancy, nothing after.
    assert [e.actor for e in guard.access_log("C1", "P1", TimeRange(JUL, SEP))] == ["S1", "TP"]
    assert guard.audit.verify().ok
