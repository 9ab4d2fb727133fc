"""Kill the GDSC (SIGKILL) mid-run and restart it: the next pulls fill the gap, no duplicates."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from smarthub.clock import AcceleratedClock
from smarthub.gdsc.store import Store
from smarthub.sim.fleet import Fleet, home_specs, provision

SIM_START = datetime(2026, 3, 2, tzinfo=UTC)
END = SIM_START + timedelta(days=1)
SECONDS_PER_DAY = 24.0


def _gdsc(state: Path, until: datetime) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "smarthub.cli", "gdsc", "--state", str(state), "--until", until.isoformat()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def _stored_something(db: Path, guard_s: float) -> int:
    """The readings the GDSC's store holds, once it holds any."""
    for _ in range(int(guard_s / 0.25)):
        if db.exists():
            store = Store(f"sqlite:///{db}")
            try:
                count = store.count_readings()
            except Exception:  # the schema is being created by the GDSC
                count = 0
            finally:
                store.close()
            if count > 0:
                return count
        await asyncio.sleep(0.25)
    raise AssertionError(f"the first GDSC stored nothing within {guard_s:g} s")


async def test_gdsc_killed_mid_run_restarts_and_fills_the_gap(tmp_path: Path) -> None:
    specs = home_specs(3, seed=11)
    creds = provision(tmp_path, specs, datetime.now(UTC))
    clock = AcceleratedClock(SIM_START, 86400 / SECONDS_PER_DAY)
    fleet = Fleet(tmp_path, specs, clock, SIM_START)
    await fleet.start_servers(creds.ca_pem)
    clock.rebase()
    fleet.write_manifest(
        {"sim_start": SIM_START.isoformat(), "speed": clock.speed, "wall_start": clock.wall_start}
    )
    last = END + timedelta(minutes=30)
    await fleet.start_meters(until=last)
    db = tmp_path / "gdsc" / "gdsc.sqlite"
    try:
        first = _gdsc(tmp_path, last)
        # Killed once it has stored a pull, and not before simulated 08:00 (a loaded machine
        # may take longer than that to start a process; the guard only stops a hung test).
        await clock.sleep_until(SIM_START + timedelta(hours=8))
        before = await _stored_something(db, guard_s=120)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        killed_at = clock.now()
        assert killed_at < END - timedelta(hours=4), "the first GDSC took most of the day to start"
        # Down for four simulated hours while the hubs keep metering.
        await clock.sleep_until(killed_at + timedelta(hours=4))
        second = _gdsc(tmp_path, last)
        rc = await asyncio.to_thread(second.wait, 120)
        assert rc == 0, second.stderr.read().decode()[-2000:] if second.stderr else rc
    finally:
        await fleet.stop()
    store = Store(f"sqlite:///{db}")
    start, end = int(SIM_START.timestamp()), int(END.timestamp())
    stored = store.channel_starts(start, end)
    expected = set(range(start, end, 1800))
    channels = fleet.expected_channels()
    for hub_id, meter, obis in channels:
        assert stored[(hub_id, meter, str(obis))] == expected, (hub_id, meter, str(obis))
    assert store.duplicate_keys() == 0
    assert store.count_readings(start, end) == len(channels) * 48
    assert store.count_readings() > before
    store.close()
