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
        await clock.sleep_until(SIM_START + timedelta(hours=8))
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        store = Store(f"sqlite:///{db}")
        before = store.count_readings()
        store.close()
        assert before > 0, "the first GDSC stored nothing before it was killed"
        # Down for four simulated hours while the hubs keep metering.
        await clock.sleep_until(SIM_START + timedelta(hours=12))
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
