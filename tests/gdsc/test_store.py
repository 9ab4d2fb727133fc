"""The GDSC store on SQLite and on the real PostgreSQL server, through the same code."""

from __future__ import annotations

import pytest

from smarthub.gdsc.fleet.commissioning import CommissioningError, register_manifest
from smarthub.gdsc.readings.tables import StoredReading
from smarthub.gdsc.store import Store
from smarthub.model.identifiers import make_mpan

T0 = 1_772_409_600


def reading(
    i: int, value: int = 100, hub: str = "HUB1", meter: str = "E1", obis: str = "1-0:1.8.0"
) -> StoredReading:
    return StoredReading(hub, meter, obis, T0 + 1800 * i, 1800, value, 0, 72, 1)


@pytest.fixture
def store(db_url: str):  # type: ignore[no-untyped-def]
    s = Store(db_url)
    s.create_schema()
    s.register_hub(
        hub_id="HUB1",
        premises_id="P1",
        url="https://127.0.0.1:1",
        lfdi="A" * 40,
        meters_by_fuel=[("E1", "electricity"), ("G1", "gas")],
        mpan=make_mpan(12, 1),
    )
    yield s
    s.close()


def test_ingest_is_idempotent_and_advances_cursor(store: Store) -> None:
    r1 = store.ingest("HUB1", [reading(i) for i in range(48)], {"/upt/E1/mr/x": T0 + 48 * 1800})
    assert (r1.inserted, r1.already_stored, r1.conflicts) == (48, 0, 0)
    # The same pull again (a GDSC that crashed before it could record its progress elsewhere).
    r2 = store.ingest("HUB1", [reading(i) for i in range(40, 50)], {"/upt/E1/mr/x": T0 + 50 * 1800})
    assert (r2.inserted, r2.already_stored) == (2, 8)
    assert store.count_readings() == 50
    assert store.duplicate_keys() == 0
    assert store.cursors("HUB1") == {"/upt/E1/mr/x": T0 + 50 * 1800}


def test_cursor_never_moves_backwards(store: Store) -> None:
    store.ingest("HUB1", [], {"ch": 5000})
    store.ingest("HUB1", [], {"ch": 4000})
    assert store.cursors("HUB1") == {"ch": 5000}


def test_conflicting_resend_keeps_stored_value_and_is_counted(store: Store) -> None:
    store.ingest("HUB1", [reading(0, 100)], {})
    res = store.ingest("HUB1", [reading(0, 999), reading(1, 5)], {})
    assert (res.inserted, res.conflicts) == (1, 1)
    assert [r.value for r in store.readings_for("HUB1", "E1", "1-0:1.8.0")] == [100, 5]


def test_ingest_refuses_readings_of_another_hub(store: Store) -> None:
    with pytest.raises(ValueError, match="pulled hub"):
        store.ingest("HUB1", [reading(0, hub="HUB2")], {})
    assert store.count_readings() == 0


def test_channel_starts_and_fleet_status(store: Store) -> None:
    store.ingest("HUB1", [reading(i) for i in range(3)] + [reading(0, meter="G1", obis="7-0:3.0.0")], {})
    starts = store.channel_starts(T0, T0 + 86400)
    assert starts[("HUB1", "E1", "1-0:1.8.0")] == {T0, T0 + 1800, T0 + 3600}
    status = store.fleet_status()
    assert status[0]["hub_id"] == "HUB1" and status[0]["readings"] == 4


def test_commissioning_validates_before_writing(store: Store) -> None:
    good = {
        "hub_id": "HUB9",
        "premises_id": "P9",
        "url": "https://127.0.0.1:2",
        "lfdi": "b" * 40,
        "meters": [["E9", "electricity"]],
        "mpan": make_mpan(14, 99),
        "mprn": "1234567",
    }
    bad = {**good, "hub_id": "HUB10", "mpan": "1200023305968"}
    with pytest.raises(CommissioningError, match="check digit"):
        register_manifest(store, {"hubs": [good, bad]})
    assert [h.hub_id for h in store.active_hubs()] == ["HUB1"]  # nothing half-registered
    assert register_manifest(store, {"hubs": [good]}) == 1
    assert [h.hub_id for h in store.active_hubs()] == ["HUB1", "HUB9"]
    assert store.hub_meters("HUB9") == {"E9": "electricity"}


# -- the channel-day block layout -------------------------------------------------------


def at(
    start: int, value: int, *, duration: int = 1800, p10: int = 0, quality: int = 1, hub: str = "HUB1"
) -> StoredReading:
    return StoredReading(hub, "E1", "1-0:1.8.0", start, duration, value, p10, 72, quality)


def test_pulls_within_a_day_merge_into_the_stored_block(store: Store) -> None:
    first = store.ingest("HUB1", [reading(i, 100 + i) for i in range(10)], {})
    second = store.ingest("HUB1", [reading(i, 100 + i) for i in range(5, 20)], {})
    assert (first.inserted, second.inserted, second.already_stored, second.conflicts) == (10, 10, 5, 0)
    assert [(r.interval_start, r.value) for r in store.readings_for("HUB1", "E1", "1-0:1.8.0")] == [
        (T0 + 1800 * i, 100 + i) for i in range(20)
    ]


def test_half_hourly_and_daily_readings_of_the_same_start_coexist(store: Store) -> None:
    res = store.ingest("HUB1", [at(T0, 7), at(T0 + 1800, 8), at(T0, 15, duration=86400)], {})
    assert (res.inserted, res.conflicts) == (3, 0)
    got = [(r.interval_start, r.duration, r.value) for r in store.readings_for("HUB1", "E1", "1-0:1.8.0")]
    assert got == [(T0, 1800, 7), (T0, 86400, 15), (T0 + 1800, 1800, 8)]
    assert store.channel_starts(T0, T0 + 86400, duration=86400) == {("HUB1", "E1", "1-0:1.8.0"): {T0}}
    assert store.count_readings() == 3 and store.duplicate_keys() == 0


def test_a_resend_in_another_power_of_ten_is_a_conflict_not_a_second_copy(store: Store) -> None:
    store.ingest("HUB1", [at(T0, 1500)], {})
    res = store.ingest("HUB1", [at(T0, 15, p10=2), at(T0 + 1800, 16, p10=2)], {})
    # The key held in the first channel stays; the new half hour opens the second channel.
    assert (res.inserted, res.already_stored, res.conflicts) == (1, 1, 1)
    assert [(r.value, r.power_of_ten) for r in store.readings_for("HUB1", "E1", "1-0:1.8.0")] == [
        (1500, 0),
        (16, 2),
    ]
    assert store.duplicate_keys() == 0


def test_ingest_many_counts_each_pull_as_if_ingested_in_turn(store: Store) -> None:
    results = store.ingest_many(
        [
            ("HUB1", [at(T0, 1), at(T0 + 1800, 2)], {"a": 10}),
            ("HUB2", [at(T0, 9, hub="HUB2")], {"b": 20}),
            ("HUB1", [at(T0, 1), at(T0 + 1800, 3), at(T0 + 3600, 4)], {"a": 30}),
        ]
    )
    assert [(r.received, r.inserted, r.already_stored, r.conflicts) for r in results] == [
        (2, 2, 0, 0),
        (1, 1, 0, 0),
        (3, 1, 2, 1),
    ]
    assert [r.value for r in store.readings_for("HUB1", "E1", "1-0:1.8.0")] == [1, 2, 4]
    assert store.cursors("HUB1") == {"a": 30} and store.cursors("HUB2") == {"b": 20}
    assert {h["hub_id"]: h["readings"] for h in store.fleet_status()} == {"HUB1": 3}  # HUB2 is not registered


def test_counts_across_midnight_match_the_readings(store: Store) -> None:
    # Three days, some half hours missing, some estimated (quality bit 0x08).
    readings = [at(T0 - 86400 + 1800 * i, i, quality=8 if i % 7 == 0 else 1) for i in range(0, 144) if i % 5]
    store.ingest("HUB1", readings, {})
    starts = [r.interval_start for r in readings]
    for lo, hi in [
        (T0 - 86400, T0 + 2 * 86400),
        (T0 - 900, T0 + 86400 + 5400),
        (T0 + 100, T0 + 3700),
        (T0, T0),
    ]:
        assert store.count_readings(lo, hi) == sum(lo <= s < hi for s in starts), (lo, hi)
        assert store.count_estimated(lo, hi) == sum(
            lo <= r.interval_start < hi and r.quality == 8 for r in readings
        )
    assert store.count_readings() == len(readings)
    assert store.channel_starts(T0, T0 + 86400)[("HUB1", "E1", "1-0:1.8.0")] == {
        s for s in starts if T0 <= s < T0 + 86400
    }


def test_misaligned_or_odd_intervals_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="start on its own grid"):
        store.ingest("HUB1", [at(T0 + 900, 1)], {})
    with pytest.raises(ValueError, match="divide the day"):
        store.ingest("HUB1", [at(T0, 1, duration=7)], {})
    assert store.count_readings() == 0


def test_a_failed_transaction_leaves_nothing_half_written(store: Store) -> None:
    store.ingest("HUB1", [at(T0, 1)], {"a": 5})
    # The out-of-range cursor fails in the database after the blocks were written.
    with pytest.raises(Exception, match=r"(?i)out of range|too large"):
        store.ingest_many(
            [
                ("HUB1", [at(T0 + 1800, 2)], {"a": 6}),
                ("HUB2", [at(T0, 3, hub="HUB2")], {"b": 2**70}),
            ]
        )
    assert [r.value for r in store.readings_for("HUB1", "E1", "1-0:1.8.0")] == [1]
    assert store.readings_for("HUB2", "E1", "1-0:1.8.0") == []
    assert store.cursors("HUB1") == {"a": 5} and store.cursors("HUB2") == {}
    # The hub key allocated by the failed transaction was not kept: HUB2 ingests cleanly now.
    assert store.ingest("HUB2", [at(T0, 3, hub="HUB2")], {"b": 1}).inserted == 1
    assert store.count_readings() == 2


def test_a_corrupt_stored_block_is_reported_with_its_key(store: Store) -> None:
    from sqlalchemy import update

    from smarthub.gdsc.readings.interval_block import BlockError
    from smarthub.gdsc.readings.tables import interval_blocks

    store.ingest("HUB1", [at(T0, 1)], {})
    with store.engine.begin() as conn:
        conn.execute(update(interval_blocks).values(block=b"\x11\x01"))
    with pytest.raises(BlockError, match=r"stored block \('HUB1', 20514, 1\).*truncated varint"):
        store.ingest("HUB1", [at(T0 + 1800, 2)], {})


@pytest.mark.postgres
def test_day_partitions_are_created_on_demand(pg_url: str) -> None:
    store = Store(pg_url)
    store.create_schema()
    assert store.partitions() == []
    store.ingest("HUB1", [at(T0 - 1800, 1), at(T0, 2), at(T0 + 86400, 3)], {})
    assert store.partitions() == [
        "interval_blocks_20260301",
        "interval_blocks_20260302",
        "interval_blocks_20260303",
    ]
    # Another process, which has not seen them, finds them already there.
    other = Store(pg_url)
    assert other.ingest("HUB1", [at(T0 + 1800, 4)], {}).inserted == 1
    assert len(other.partitions()) == 3
    # A scheduler can create the partition of a coming window ahead of it.
    other.ensure_day_partitions([20520])
    assert other.partitions()[-1] == "interval_blocks_20260308"
    other.close()
    store.close()


@pytest.mark.postgres
def test_concurrent_ingest_of_the_same_hub_loses_nothing(pg_url: str) -> None:
    import threading

    a, b = Store(pg_url), Store(pg_url)
    a.create_schema()
    results: dict[str, int] = {}
    barrier = threading.Barrier(2)

    def run(name: str, s: Store, offset: int) -> None:
        inserted = 0
        for day in range(5):
            barrier.wait()
            base = T0 + day * 86400
            pull = [at(base + 1800 * i, i) for i in range(offset, offset + 30)]
            inserted += s.ingest("HUB1", pull, {}).inserted
        results[name] = inserted

    threads = [
        threading.Thread(target=run, args=("a", a, 0)),
        threading.Thread(target=run, args=("b", b, 18)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Each day: slots 0..29 and 18..47 overlap on 12; every slot is stored once.
    assert a.count_readings() == 5 * 48
    assert results["a"] + results["b"] == 5 * 48
    assert a.duplicate_keys() == 0
    a.close()
    b.close()


@pytest.mark.postgres
def test_concurrent_merges_into_existing_blocks_lose_nothing(pg_url: str) -> None:
    """Both writers meet blocks that already exist (the merge path, serialised by the hubs'
    advisory locks rather than FOR UPDATE): each day's block ends with every slot of both."""
    import threading

    a, b = Store(pg_url), Store(pg_url)
    a.create_schema()
    days, hubs_ = 12, ("HUB1", "HUB2", "HUB3")
    for h in hubs_:
        a.ingest(h, [at(T0 + d * 86400 + 1800 * 47, 47, hub=h) for d in range(days)], {})
    results: dict[str, int] = {}
    barrier = threading.Barrier(2)

    def run(name: str, s: Store, slots: range, order: tuple[str, ...]) -> None:
        inserted = 0
        for day in range(days):
            barrier.wait()
            base = T0 + day * 86400
            items = [(h, [at(base + 1800 * i, i, hub=h) for i in slots], {}) for h in order]
            inserted += sum(r.inserted for r in s.ingest_many(items))
        results[name] = inserted

    threads = [
        threading.Thread(target=run, args=("a", a, range(0, 30), hubs_)),
        threading.Thread(target=run, args=("b", b, range(20, 47), hubs_[::-1])),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert a.count_readings() == len(hubs_) * days * 48
    assert results["a"] + results["b"] == len(hubs_) * days * 47
    assert a.duplicate_keys() == 0
    a.close()
    b.close()


@pytest.mark.postgres
def test_an_operator_edit_waits_for_the_hubs_merge_lock(pg_url: str) -> None:
    """An edit of a stored block reads and writes it back under the hub's merge lock, as an
    ingest's merge does: while another transaction holds that lock the edit waits (seen in
    pg_locks), and goes through once it is released."""
    import threading
    import time

    import psycopg

    from smarthub.gdsc.readings.tables import HUB_LOCKS, LOCK_HUBS

    store = Store(pg_url)
    store.create_schema()
    store.ingest("HUB1", [at(T0 + 1800 * i, 100) for i in range(40)], {})
    holder = store.engine.raw_connection()
    cur = holder.cursor()
    cur.execute(LOCK_HUBS, (HUB_LOCKS, ["HUB1"]))  # as a merging ingest holds it
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    done: list[int] = []
    editor = threading.Thread(
        target=lambda: done.append(
            store.edit_day("HUB1", "E1", "1-0:1.8.0", T0 // 86400, {3: 120}, actor="op", reason="r", now=T0)
        )
    )
    editor.start()
    conninfo = pg_url.replace("postgresql+psycopg://", "postgresql://").split("?")[0]
    waiting = False
    with psycopg.connect(conninfo) as watch:
        for _ in range(200):  # until the editor's backend waits on the advisory lock
            row = watch.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND classid = %s AND objid = (hashtext(%s)::int8 & 4294967295)::oid AND pid <> %s",
                (HUB_LOCKS, "HUB1", pid),
            ).fetchone()
            if row and row[0]:
                waiting = True
                break
            if done:
                break
            time.sleep(0.05)
    assert waiting and not done, "the edit did not wait for the hub's merge lock"
    holder.commit()  # the holder's merge is done: the edit goes through
    holder.close()
    editor.join()
    assert done == [2]
    assert store.count_readings() == 40
    store.close()


def test_table_bytes_counts_the_stored_blocks(store: Store) -> None:
    empty = store.table_bytes()
    store.ingest_many([(f"HUB{n}", [reading(i, hub=f"HUB{n}") for i in range(48)], {}) for n in range(300)])
    assert store.table_bytes() > empty


def test_channels_are_numbered_per_hub_once(db_url: str) -> None:
    """Each hub's channels are numbered from 1 under its own hub id (the interval tables'
    key since migration 0019); a hub met again by a fresh process keeps its numbers."""
    from sqlalchemy import select

    from smarthub.gdsc.readings.tables import interval_channels

    for hub in ("HUB1", "HUB2", "HUB1", "HUB3"):
        s = Store(db_url)  # a fresh process: nothing cached
        s.create_schema()
        s.ingest(hub, [at(T0, 1, hub=hub)], {})
        s.ingest(hub, [StoredReading(hub, "G1", "7-0:3.0.0", T0, 1800, 2, -3, 42, 1)], {})
        s.close()
    s = Store(db_url)
    c = interval_channels
    with s.engine.connect() as conn:
        got = conn.execute(
            select(c.c.hub_id, c.c.meter_id, c.c.channel_no).order_by(c.c.hub_id, c.c.channel_no)
        )
        assert [tuple(r) for r in got] == [
            (h, m, no) for h in ("HUB1", "HUB2", "HUB3") for m, no in (("E1", 1), ("G1", 2))
        ]
    assert s.readings("HUB1")[0].hub_id == "HUB1"
    assert s.count_readings() == 6
    assert s.ingest_many([]) == []
    s.close()


def test_cursors_of_many_hubs_in_one_read(store: Store) -> None:
    store.ingest("HUB1", [reading(0)], {"a": 10, "b": 20})
    store.ingest("HUB2", [reading(1, hub="HUB2")], {"a": 30})
    assert store.cursors_many(["HUB2", "HUB1", "NOPE"]) == {
        "HUB1": {"a": 10, "b": 20},
        "HUB2": {"a": 30},
        "NOPE": {},
    }
    assert store.cursors_many([]) == {}


def test_pull_log_rows_of_one_call_number_each_hubs_attempts_in_order(store: Store) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import select

    from smarthub.gdsc.pull.log import pull_log

    t = datetime(2026, 3, 2, tzinfo=UTC)

    def entry(hub: str, readings: int, error: str | None = None) -> dict[str, object]:
        return dict(
            hub_id=hub,
            window_start=t,
            started=t,
            finished=t,
            ok=error is None,
            readings=readings,
            inserted=0,
            error=error,
        )

    store.log_pull(**entry("HUB1", 1))  # type: ignore[arg-type]
    store.log_pulls([entry("HUB1", 2), entry("HUB2", 3, "refused"), entry("HUB1", 4)])
    store.log_pulls([])
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(
                pull_log.c.hub_id, pull_log.c.seq, pull_log.c.readings, pull_log.c.ok, pull_log.c.error
            ).order_by(pull_log.c.hub_id, pull_log.c.seq)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("HUB1", 1, 1, 1, None),
        ("HUB1", 2, 2, 1, None),
        ("HUB1", 3, 4, 1, None),
        ("HUB2", 1, 3, 0, "refused"),
    ]


def test_readings_may_come_as_plain_tuples_in_field_order(store: Store) -> None:
    import dataclasses

    rows = [dataclasses.astuple(reading(i)) for i in range(48)]
    r1 = store.ingest("HUB1", rows, {"a": 1})  # type: ignore[arg-type]
    assert (r1.received, r1.inserted) == (48, 48)
    assert store.readings("HUB1") == [reading(i) for i in range(48)]
    r2 = store.ingest("HUB1", [reading(i) for i in range(40, 50)], {})
    assert (r2.inserted, r2.already_stored) == (2, 8)
    with pytest.raises(ValueError, match="all StoredReading or all 9-field tuples"):
        store.ingest("HUB1", [dataclasses.astuple(reading(60)), reading(61)], {})  # type: ignore[list-item]


def test_the_printed_database_url_masks_its_password() -> None:
    """`smarthub gdsc` prints where it stores: never the PostgreSQL password in the URL."""
    from smarthub.gdsc.db.database import Database

    db = Database("postgresql+psycopg://gdsc:s3cret-pw@db.example:5432/gdsc")
    assert "s3cret-pw" not in db.display_url and db.display_url.startswith("postgresql+psycopg://gdsc:***@")
    db.engine.dispose()


def test_reading_the_manifest_again_does_not_bring_a_revoked_hub_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A GDSC restarted on the same state re-reads its fleet manifest: a hub revoked meanwhile
    stays revoked (it was made active again, and pulled, before)."""
    from datetime import UTC, datetime

    from smarthub.gdsc.fleet.commissioning import register_manifest
    from smarthub.gdsc.fleet.lifecycle import HubLifecycle
    from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
    from smarthub.gdsc.pull.plan import PullPlan

    now = datetime.now(UTC)
    ca = CertificateAuthority.create("test GDSC CA", now)
    ca.save(tmp_path / "ca")
    cert = ca.issue(Role.HUB, "HUB7", now, hosts=("127.0.0.1",))
    manifest = {
        "hubs": [
            {"hub_id": "HUB7", "premises_id": "P7", "url": "https://127.0.0.1:1", "lfdi": cert.lfdi,
             "meters": [["E7", "electricity"]]},
        ]
    }  # fmt: skip
    store = Store(f"sqlite:///{tmp_path / 'gdsc.sqlite'}")
    store.create_schema()
    register_manifest(store, manifest)
    assert [h.hub_id for h in store.active_hubs()] == ["HUB7"]
    HubLifecycle(store, ca, PullPlan(store), None).revoke_hub(
        "HUB7", now, serial=cert.certificate.serial_number
    )
    assert store.active_hubs() == []
    register_manifest(store, manifest)  # the GDSC restarts
    assert store.active_hubs() == []
    store.close()
