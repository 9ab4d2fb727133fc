"""VEE in the store, on SQLite and PostgreSQL: quarantine beside good data, registers,
estimates replaced by actuals, edits with versions, data-quality figures."""

from __future__ import annotations

import dataclasses

import pytest

from smarthub.gdsc.readings.tables import StoredReading
from smarthub.gdsc.readings.vee import rules
from smarthub.gdsc.readings.vee.store import VeeSettings
from smarthub.gdsc.store import Store

DAY = 86400
D0 = 20_500
T0 = D0 * DAY
HUB = "HUB1"


@pytest.fixture
def store(db_url: str):
    s = Store(db_url)
    s.create_schema()
    now = [T0 + 10 * DAY]
    s.enable_vee(VeeSettings(now=lambda: now[0], models={"E-100A": rules.electricity_profile("E-100A")}))
    s.clock = now  # type: ignore[attr-defined]
    yield s
    s.close()


def pull(
    day: int,
    values: list[int | None],
    register_end: int | None,
    register_start: int | None = None,
    quality: int = 1,
) -> list[StoredReading]:
    start = T0 + day * DAY
    out = [
        StoredReading(HUB, "E1", "1-0:1.8.0", start + 1800 * i, 1800, v, 0, 72, quality)
        for i, v in enumerate(values)
        if v is not None
    ]
    if register_start is not None:
        out.append(StoredReading(HUB, "E1", "1-0:1.8.0", start, 0, register_start, 0, 72, 1))
    if register_end is not None:
        out.append(StoredReading(HUB, "E1", "1-0:1.8.0", start + DAY, 0, register_end, 0, 72, 1))
    return out


def test_bad_readings_are_quarantined_and_good_ones_land(store: Store) -> None:
    store.set_meter_models([(HUB, "E1", "E-100A")])
    vals = [100] * 48
    vals[7] = 999_999  # a spike
    r = store.ingest(HUB, pull(0, vals, None, None), {})
    assert (r.inserted, r.quarantined) == (47, 1)
    held = store.findings(HUB, status="held")
    assert [(f["rule"], f["value"]) for f in held] == [("spike", 999_999)]
    assert "capacity" in held[0]["evidence"]
    assert len(store.readings_for(HUB, "E1", "1-0:1.8.0")) == 47
    # Re-sent with another value: the stored one stays, the new one is held with evidence.
    r2 = store.ingest(HUB, [StoredReading(HUB, "E1", "1-0:1.8.0", T0 + 1800, 1800, 555, 0, 72, 1)], {})
    assert (r2.inserted, r2.conflicts, r2.quarantined) == (0, 1, 1)
    (dup,) = [f for f in store.findings(HUB, status="held") if f["rule"] == "duplicate_differs"]
    assert dup["value"] == 555 and "holds 100" in dup["evidence"]


def test_interval_sum_checked_across_pulls_and_swapped_day_held(store: Store) -> None:
    r = store.ingest(HUB, pull(0, [100] * 48, 10_000 + 4800, 10_000), {})
    assert (r.inserted, r.registers, r.quarantined) == (48, 2, 0)
    r = store.ingest(HUB, pull(1, [250] * 48, 10_000 + 9600), {})  # swapped: the register says 4800
    assert (r.inserted, r.quarantined) == (0, 48)
    assert {f["rule"] for f in store.findings(HUB)} == {"interval_sum"}
    # The day after, good again, is checked against the (good) register of day 1's end.
    r = store.ingest(HUB, pull(2, [100] * 48, 10_000 + 14_400), {})
    assert (r.inserted, r.quarantined) == (48, 0)


def test_gaps_are_estimated_flagged_and_replaced_by_actuals(store: Store) -> None:
    for d in range(0, 8):
        vals: list[int | None] = [100] * 48
        if d == 7:
            vals[10:13] = [None] * 3  # short gap
            vals[20:40] = [None] * 20  # long gap
        store.ingest(HUB, pull(d, vals, 10_000 + 4800 * (d + 1), 10_000 if d == 0 else None), {})
    store.clock[0] = T0 + 10 * DAY  # type: ignore[attr-defined]
    n = store.estimate_gaps(T0 + 10 * DAY)
    assert n == 23
    assert store.estimate_counts() == (23, 0)
    rows = {r.interval_start: r for r in store.readings_for(HUB, "E1", "1-0:1.8.0")}
    if True:
        est = rows[T0 + 7 * DAY + 10 * 1800]
        assert est.quality & rules.ESTIMATED_LINEAR_INTERPOLATION
        assert rows[T0 + 7 * DAY + 25 * 1800].quality & rules.ESTIMATED_REFERENCE_DAY
        assert sum(r.value for r in rows.values() if r.interval_start // DAY == D0 + 7) == 4800
    # The hub's actual readings arrive later: they replace the estimates.
    late = [
        StoredReading(HUB, "E1", "1-0:1.8.0", T0 + 7 * DAY + 1800 * i, 1800, 100, 0, 72, 1)
        for i in [*range(10, 13), *range(20, 40)]
    ]
    r = store.ingest(HUB, late, {})
    assert r.replaced_estimates == 23 and r.conflicts == 0
    assert store.estimate_counts() == (23, 23)


def test_hub_interpolated_readings_replace_the_gdscs_estimates_not_the_hubs(store: Store) -> None:
    """A hub pulled late serves intervals it interpolated itself (flagged estimated, as the
    GDSC's own estimates are): they replace the GDSC's estimates of that gap. A hub estimate
    stored earlier and re-sent with another value stays a differing duplicate."""
    interpolated = rules.VALID | rules.ESTIMATED_LINEAR_INTERPOLATION
    for d in range(0, 8):
        vals: list[int | None] = [100] * 48
        if d == 7:
            vals[20:30] = [None] * 10
        store.ingest(HUB, pull(d, vals, None), {})
    assert store.estimate_gaps(T0 + 10 * DAY) == 10
    gap = [T0 + 7 * DAY + 1800 * i for i in range(20, 30)]
    late = [StoredReading(HUB, "E1", "1-0:1.8.0", t, 1800, 101, 0, 72, interpolated) for t in gap]
    r = store.ingest(HUB, late, {})
    assert (r.replaced_estimates, r.conflicts) == (10, 0)
    assert store.estimate_counts() == (10, 10)
    rows = {r.interval_start: r for r in store.readings_for(HUB, "E1", "1-0:1.8.0")}
    assert [(rows[t].value, rows[t].quality) for t in gap] == [(101, interpolated)] * 10
    assert not store.findings(HUB, status="held")
    # The hub's own estimate, stored first, re-sent with another value: not the GDSC's, refused.
    own = StoredReading(HUB, "E1", "1-0:1.8.0", T0 + 8 * DAY, 1800, 80, 0, 72, interpolated)
    store.ingest(HUB, [own], {})
    r = store.ingest(HUB, [dataclasses.replace(own, value=81)], {})
    assert (r.replaced_estimates, r.conflicts) == (0, 1)
    assert store.readings_for(HUB, "E1", "1-0:1.8.0")[-1].value == 80


def test_edit_keeps_versions(store: Store) -> None:
    store.ingest(HUB, pull(0, [100] * 48, None), {})
    v = store.edit_day(
        HUB, "E1", "1-0:1.8.0", D0, {3: 120}, actor="op1", reason="meter test", now=T0 + 3 * DAY
    )
    assert v == 2
    v = store.edit_day(
        HUB, "E1", "1-0:1.8.0", D0, {4: 80}, actor="op2", reason="second look", now=T0 + 4 * DAY
    )
    assert v == 3
    versions = store.day_versions(HUB, "E1", "1-0:1.8.0", D0)
    assert [x["version"] for x in versions] == [1, 2]
    assert versions[0]["slots"][3] == (100, 1) and versions[1]["slots"][3][0] == 120
    assert versions[1]["edited_by"] == "op2" and versions[1]["reason"] == "second look"
    with pytest.raises(ValueError, match="reason"):
        store.edit_day(HUB, "E1", "1-0:1.8.0", D0, {4: 80}, actor="op", reason=" ", now=T0)
    # An edited reading is not overwritten by the hub re-sending its value.
    r = store.ingest(HUB, [StoredReading(HUB, "E1", "1-0:1.8.0", T0 + 3 * 1800, 1800, 100, 0, 72, 1)], {})
    assert r.conflicts == 1


def test_quality_figures_by_hub_and_model(store: Store) -> None:
    store.set_meter_models([(HUB, "E1", "E-100A")])
    vals = [100] * 48
    vals[1] = -1
    store.ingest(HUB, pull(0, vals, None), {})
    store.ingest(HUB, pull(1, [0] * 48, None), {})
    by_hub = store.quality_figures("hub")
    assert by_hub == [
        {
            "hub": HUB,
            "quarantined": 1,
            "flagged": 48,
            "estimated": 0,
            "estimates_replaced": 0,
            "rules": {"negative": 1, "stuck_suspected": 48},
        }
    ]
    assert store.quality_figures("model")[0]["model"] == "E-100A"
    assert store.quality_figures("supplier")[0]["supplier"] == "unknown"
    with pytest.raises(ValueError):
        store.quality_figures("colour")


def test_a_late_day_is_checked_on_both_sides_and_a_clock_jump_is_held(store: Store) -> None:
    store.vee_checked_days = set()
    store.ingest(HUB, pull(0, [100] * 48, 14_800, 10_000), {})
    jumped = [
        StoredReading(*r.key()[:3], r.interval_start + 30 * DAY, *_rest(r))
        for r in pull(1, [100] * 48, 19_600)
    ]
    r = store.ingest(HUB, jumped, {})
    assert (r.inserted, r.quarantined) == (0, 49)  # 48 intervals and the register, all in the future
    store.ingest(HUB, pull(2, [100] * 48, 24_400), {})
    assert (HUB, "E1", "1-0:1.8.0", D0 + 2) not in store.vee_checked_days  # day 1 unknown yet
    store.clock[0] = T0 + 20 * DAY  # type: ignore[attr-defined]
    r = store.ingest(HUB, pull(1, [100] * 48, 19_600), {})  # the hub's clock fixed: re-sent
    assert (r.inserted, r.quarantined) == (48, 0)
    assert {d for _, _, _, d in store.vee_checked_days} == {D0, D0 + 1, D0 + 2}
    # Late data that does not fit the next stored register is held.
    r = store.ingest(
        HUB,
        [
            StoredReading(HUB, "E1", "1-0:1.8.0", T0 + 3 * DAY, 0, 24_400 + 4800, 0, 72, 1),
            *pull(3, [100] * 47 + [900], None),
        ],
        {},
    )
    assert r.quarantined == 0  # nothing after day 3 is stored: nothing to contradict
    assert r.inserted == 48


def _rest(r: StoredReading) -> tuple[int, int, int, int, int, int]:
    return (r.duration, r.value, r.power_of_ten, r.uom, r.quality)  # type: ignore[return-value]


def test_held_readings_are_released_or_rejected(store: Store) -> None:
    from smarthub.gdsc.readings.vee import edits

    future = T0 + 20 * DAY  # the store's clock is T0 + 10 days: a register read in the future
    r = store.ingest(
        HUB,
        [
            StoredReading(HUB, "E1", "1-0:1.8.0", future, 0, 50_000, 0, 72, 1),
            *pull(0, [100] * 47 + [-4], None),
        ],
        {},
    )
    assert r.quarantined == 2
    held = {f["rule"]: f for f in edits.held(store.engine, [HUB])}
    assert set(held) == {"timestamp", "negative"}
    reg = (HUB, "E1", "1-0:1.8.0", 0, future, "timestamp", 50_000)
    assert (
        edits.resolve(store.engine, reg, decision="release", actor="op", reason="clock checked", now=T0)
        is None
    )
    neg = (HUB, "E1", "1-0:1.8.0", 1800, T0 + 47 * 1800, "negative", -4)
    with pytest.raises(ValueError, match="released or rejected"):
        edits.resolve(store.engine, neg, decision="keep", actor="op", reason="x", now=T0)
    assert edits.resolve(store.engine, neg, decision="reject", actor="op", reason="noise", now=T0) is None
    with pytest.raises(LookupError):
        edits.resolve(store.engine, neg, decision="release", actor="op", reason="again", now=T0)
    assert edits.held(store.engine, [HUB]) == []
    statuses = {f["rule"]: (f["status"], f["resolved_by"]) for f in store.findings(HUB)}
    assert statuses == {"timestamp": ("released", "op"), "negative": ("rejected", "op")}
    assert len(store.readings_for(HUB, "E1", "1-0:1.8.0")) == 47  # the rejected one stays out
    # A held interval of a day the store has nothing of cannot be released (nothing to edit).
    store.ingest(HUB, pull(5, [-1] + [None] * 47, None), {})
    lone = (HUB, "E1", "1-0:1.8.0", 1800, T0 + 5 * DAY, "negative", -1)
    with pytest.raises(ValueError, match="holds no"):
        edits.resolve(store.engine, lone, decision="release", actor="op", reason="x", now=T0)


@pytest.mark.postgres
def test_gap_estimation_waits_for_the_hubs_merge_lock(pg_url: str) -> None:
    """An ingest merging into the hub's blocks holds the hub's merge lock; the estimation's
    write-back of the same blocks waits for it (else one of the two writes would be lost)."""
    import threading

    import psycopg

    from smarthub.gdsc.readings.tables import HUB_LOCKS, LOCK_HUBS

    s = Store(pg_url)
    s.create_schema()
    s.enable_vee(VeeSettings(now=lambda: T0 + 10 * DAY, models={}))
    try:
        for d in range(0, 8):
            vals: list[int | None] = [100] * 48
            if d == 7:
                vals[10:13] = [None] * 3
            s.ingest(HUB, pull(d, vals, None), {})
        conninfo = pg_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(conninfo) as ingest:  # an ingest's transaction, holding HUB1's lock
            ingest.execute(LOCK_HUBS, (HUB_LOCKS, [HUB]))
            done: list[int] = []
            t = threading.Thread(target=lambda: done.append(s.estimate_gaps(T0 + 10 * DAY)))
            t.start()
            t.join(1.5)
            assert t.is_alive() and not done  # waiting on the lock, nothing written
            ingest.rollback()
        t.join(30)
        assert done == [3]
    finally:
        s.close()
