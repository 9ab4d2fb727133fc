from __future__ import annotations

import multiprocessing
import os
import random
import signal
from pathlib import Path

import pytest

from smarthub.hub.history import HistoryStore
from smarthub.hub.intervals import IntervalRecord
from smarthub.model import ObisCode

OBIS = ObisCode.parse("7-0:3.0.0")
T0 = 1_772_409_600


def rec(i: int, value: int = 5) -> IntervalRecord:
    return IntervalRecord("G1", OBIS, T0 + 1800 * i, 1800, value, 1000 + i * value, -3, 1)


def test_append_is_idempotent_and_queryable(tmp_path: Path) -> None:
    h = HistoryStore(tmp_path / "h.sqlite")
    assert h.append([rec(i) for i in range(96)]) == 96
    assert h.append([rec(i) for i in range(90, 100)]) == 4  # replay after restart: only the new ones
    assert h.count("G1", OBIS) == 100
    assert [r.start for r in h.query("G1", OBIS, start=T0 + 1800 * 98)] == [T0 + 1800 * 98, T0 + 1800 * 99]
    assert h.days("G1", OBIS) == [T0, T0 + 86400, T0 + 2 * 86400]
    assert h.last("G1", OBIS) == rec(99)
    h.close()


def _writer(path: str, ack_path: str) -> None:
    h = HistoryStore(path)
    with open(ack_path, "a", buffering=1) as ack:
        for i in range(100_000):
            h.append([rec(i)])
            ack.write(f"{i}\n")  # written only after the commit returned: "acknowledged as stored"


def test_sigkill_during_writes_loses_nothing_acknowledged(tmp_path: Path) -> None:
    _kill_and_check(tmp_path, attempts=5)


@pytest.mark.slow
def test_sigkill_many_times(tmp_path: Path) -> None:
    """`make bench`: many more power cuts at random instants."""
    _kill_and_check(tmp_path, attempts=40)


def _kill_and_check(tmp_path: Path, attempts: int) -> None:
    rng = random.Random(attempts)
    for attempt in range(attempts):
        db, ack = tmp_path / f"h{attempt}.sqlite", tmp_path / f"ack{attempt}"
        ack.touch()
        p = multiprocessing.get_context("spawn").Process(target=_writer, args=(str(db), str(ack)))
        p.start()
        target = rng.randint(20, 400)  # a different instant every time
        while p.is_alive() and len(ack.read_text().splitlines()) < target:
            p.join(0.01)
        assert p.is_alive(), "the writer finished before it could be killed"
        os.kill(p.pid, signal.SIGKILL)  # type: ignore[arg-type]
        p.join()
        acked = [int(x) for x in ack.read_text().split()]
        h = HistoryStore(db)
        stored = {r.start for r in h.query("G1", OBIS, limit=1_000_000)}
        assert {T0 + 1800 * i for i in acked} <= stored
        h.close()


def test_values_are_sealed_and_tampering_is_detected(tmp_path: Path) -> None:
    import sqlite3

    import pytest

    from smarthub.hub.history import HistoryTampered
    from smarthub.hub.keys import KeyUnwrapError

    h = HistoryStore(tmp_path / "h.sqlite")
    h.append([rec(0, 123456789), rec(1, 5)])
    h.close()
    raw = (tmp_path / "h.sqlite").read_bytes()  # closing checkpointed the WAL into the file
    assert (123456789).to_bytes(8, "big") not in raw  # the value is not on disk in clear
    db = sqlite3.connect(tmp_path / "h.sqlite")
    # Move row 1's sealed value onto row 0: authenticated data binds it to its own row.
    db.execute(
        "UPDATE intervals SET sealed=(SELECT sealed FROM intervals WHERE start=?), "
        "nonce=(SELECT nonce FROM intervals WHERE start=?) WHERE start=?",
        (T0 + 1800, T0 + 1800, T0),
    )
    db.commit()
    db.close()
    h = HistoryStore(tmp_path / "h.sqlite")
    with pytest.raises(HistoryTampered, match="fails authentication"):
        h.query("G1", OBIS)
    h.close()
    with pytest.raises(KeyUnwrapError):
        HistoryStore(tmp_path / "h.sqlite", master_key=b"\x00" * 32).query("G1", OBIS)
    assert oct((tmp_path / "master.key").stat().st_mode & 0o777) == "0o600"


def test_retention_keeps_13_months_of_half_hours_and_day_totals_before(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from smarthub.hub.intervals import IntervalRecord

    h = HistoryStore(tmp_path / "h.sqlite")
    start = datetime(2025, 1, 1, tzinfo=UTC)  # GMT: local days are UTC days in January
    n = 48 * 425  # 425 days of half-hours
    h.append(
        [
            IntervalRecord(
                "E1",
                ObisCode.parse("1-0:1.8.0"),
                int(start.timestamp()) + 1800 * i,
                1800,
                7,
                7 * (i + 1),
                0,
                1,
            )
            for i in range(n)
        ]
    )
    now = start + timedelta(days=425)
    days = h.compact(now)
    obis = ObisCode.parse("1-0:1.8.0")
    raw = h.query("E1", obis, limit=10**6)
    daily = h.daily("E1", obis)
    assert days == len(daily) == 425 - 396
    assert raw[0].start == daily[-1].start + daily[-1].duration  # no gap, no overlap
    assert all(d.value == 7 * 48 for d in daily)  # day totals equal the half-hours they replace
    assert sum(d.value for d in daily) + sum(r.value for r in raw) == 7 * n  # nothing lost
    assert h.compact(now) == 0  # idempotent
    h.close()
