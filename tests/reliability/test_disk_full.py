"""Disk full on the hub: a clear error, a diagnosed event, no corruption, nothing lost.

Two real full conditions: the history capped with SQLite's ``PRAGMA max_page_count`` (SQLite
answers SQLITE_FULL, "database or disk is full", the code ENOSPC reaches it as), and, where the
test runs as root, a real 256 KiB tmpfs filled to ENOSPC. Readings keep arriving while full; once
space returns every interval is stored and served by the hub, none twice.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from smarthub.clock import ManualClock
from smarthub.hub.diagnostics import DiagnosisCode, Diagnostics, DiagnosticsLog
from smarthub.hub.history import HistoryStore, StorageFull
from smarthub.hub.hub import SmartHub
from smarthub.hub.intervals import IntervalRecord
from smarthub.model import ObisCode, Reading, Unit
from smarthub.model.obis import IMPORT_ACTIVE_ENERGY

T0 = datetime(2026, 3, 2, tzinfo=UTC)
STEP = timedelta(minutes=5)
METERS = [f"E{i:03d}" for i in range(20)]


class Home:
    """A hub with 20 electricity meters read every 5 minutes (register = 7 Wh per minute per meter)."""

    def __init__(self, history: HistoryStore, events: Path) -> None:
        self.clock = ManualClock(T0)
        self.diagnostics = Diagnostics(DiagnosticsLog(events))
        self.hub = SmartHub("HUB000001", history, clock=self.clock, diagnostics=self.diagnostics)
        self.t = T0

    def read(self, steps: int) -> None:
        for _ in range(steps):
            minutes = int((self.t - T0).total_seconds() // 60)
            self.clock.set(self.t)
            self.hub.ingest(
                Reading(m, IMPORT_ACTIVE_ENERGY, Decimal(1000 * i + 7 * minutes), Unit.WH, self.t)
                for i, m in enumerate(METERS)
            )
            self.t += STEP

    def storage_events(self) -> list:
        return [e for e in self.diagnostics.log.events() if e.code is DiagnosisCode.STORAGE_FULL]

    def check_everything_served(self) -> None:
        """Every half-hour up to the last reading, for every meter: once, with its true value."""
        halves = int((self.t - STEP - T0).total_seconds() // 1800)
        for i, m in enumerate(METERS):
            got: list[IntervalRecord] = self.hub.intervals(m, IMPORT_ACTIVE_ENERGY, limit=10_000)
            assert [r.start for r in got] == [int(T0.timestamp()) + 1800 * k for k in range(halves)], m
            assert {r.value for r in got} == {7 * 30}, m
            assert got[-1].register_end == 1000 * i + 7 * 30 * halves
            assert self.hub.interval_count(m, IMPORT_ACTIVE_ENERGY) == halves


def integrity(path: Path | str) -> str:
    db = sqlite3.connect(str(path))
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def test_a_full_history_holds_readings_reports_and_stores_them_when_space_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    history = HistoryStore(tmp_path / "history.sqlite")
    home = Home(history, tmp_path / "diagnostics.sqlite")
    home.read(13)  # an hour of readings stored normally
    stored_before = history.count(METERS[0], IMPORT_ACTIVE_ENERGY)
    assert stored_before == 2

    history.limit_size(0)  # the history may not grow any more: the next page it needs fails
    with caplog.at_level(logging.ERROR, logger="smarthub.hub.hub"):
        home.read(12 * 12)  # twelve hours keep arriving while it is full
    assert history.full is not None and history.pending > 0
    assert home.hub.stats.storage_full > 0
    # A clear, specific error, logged once (not once per write).
    errors = [r.getMessage() for r in caplog.records if "is full" in r.getMessage()]
    assert len(errors) == 1 and "database or disk is full" in errors[0] and "held in memory" in errors[0]
    (event,) = home.storage_events()
    assert event.is_open and event.device == history.path and "database or disk is full" in event.evidence
    assert event.numbers["pending"] > 0 and event.numbers["dropped"] == 0
    # No corruption, and what was stored before is still served while the disk is full.
    assert integrity(history.path) == "ok"
    assert history.count(METERS[0], IMPORT_ACTIVE_ENERGY) < 24
    assert len(home.hub.intervals(METERS[0], IMPORT_ACTIVE_ENERGY)) >= stored_before

    history.limit_size(None)  # space returns
    assert home.hub.flush_storage() > 0
    assert history.full is None and history.pending == 0
    home.read(6)
    home.check_everything_served()
    (event,) = home.storage_events()
    assert not event.is_open
    assert integrity(history.path) == "ok"
    served = home.hub.interval_count(METERS[-1], IMPORT_ACTIVE_ENERGY)
    history.close()
    # The recovered history reopens whole.
    again = HistoryStore(tmp_path / "history.sqlite")
    assert again.count(METERS[-1], IMPORT_ACTIVE_ENERGY) == served
    again.close()


def test_what_is_held_in_memory_is_bounded_and_the_loss_is_counted(tmp_path: Path) -> None:
    history = HistoryStore(tmp_path / "history.sqlite", max_pending=100)
    history.limit_size(0)
    obis = ObisCode.parse("1-0:1.8.0")
    start = int(T0.timestamp())
    records = [
        IntervalRecord(f"M{i}", obis, start + 1800 * k, 1800, 1, k, 0, 1)
        for i in range(20)
        for k in range(48)
    ]
    with pytest.raises(StorageFull, match="database or disk is full") as full:
        history.append(records)
    assert full.value.pending == 100 and full.value.dropped == len(records) - 100
    assert "oldest dropped" in str(full.value)
    history.limit_size(None)
    assert history.flush() == 100  # the newest 100, in one transaction
    assert history.flush() == 0
    history.close()


@contextlib.contextmanager
def tiny_disk(where: Path, size: str = "256k") -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill needs root; the max_page_count test covers SQLITE_FULL")
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path) -> int:
    """Write a filler file until the file system says ENOSPC; returns its size."""
    chunk, size = b"\0" * 4096, 0
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                size += f.write(chunk)
            except OSError as err:
                assert err.errno == errno.ENOSPC
                return size


def test_a_really_full_disk_enospc(tmp_path: Path) -> None:
    with tiny_disk(tmp_path / "disk") as disk:
        history = HistoryStore(disk / "history.sqlite")
        home = Home(history, tmp_path / "diagnostics.sqlite")  # the event log on another disk
        home.read(13)
        assert fill(disk / "filler") > 0
        home.read(12 * 12)
        assert history.full is not None and history.pending > 0, "the disk never filled up"
        assert any(e.is_open for e in home.storage_events())
        assert integrity(history.path) == "ok"
        (disk / "filler").unlink()  # space returns
        home.read(6)
        assert history.full is None and history.pending == 0
        home.check_everything_served()
        assert not any(e.is_open for e in home.storage_events())
        history.close()
        assert integrity(disk / "history.sqlite") == "ok"
