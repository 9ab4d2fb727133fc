"""Two GDSC collector processes share one plan on PostgreSQL; one is SIGKILLed mid-window.

Thirty real Smart Hubs serve 2030.5 over mutual TLS on loopback. Two ``smarthub gdsc``
processes pull them from one PostgreSQL database. While both are working, the first is
killed (SIGKILL, no chance to clean up) at a moment it holds claimed, unfinished pulls
(it is frozen with SIGSTOP while the test looks, so "holds" is certain, not a race). The
survivor takes that work over when its lease runs out, and at the end of the window every
hub has been pulled exactly once: one plan row done per hub, one successful pull logged.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from smarthub.clock import AcceleratedClock
from smarthub.gdsc.pull.log import pull_log
from smarthub.gdsc.pull.tables import CLAIMED, DONE, pull_plan
from smarthub.gdsc.store import Store
from smarthub.sim.fleet import Fleet, home_specs, provision

SIM_START = datetime(2026, 3, 2, tzinfo=UTC)  # the window under test starts here
WINDOW = timedelta(minutes=30)
# The collectors start 10 simulated minutes earlier, in the window before (which they pull
# too), so that both are up and running when the window under test opens.
CLOCK_START = SIM_START - timedelta(minutes=10)
SPEED = 120.0  # the half-hour window lasts 15 s of wall time; a lease (2 min) 1 s
HOMES = 30

pytestmark = pytest.mark.postgres


def _gdsc(state: Path, db: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "smarthub.cli",
            "gdsc",
            "--state",
            str(state),
            "--db",
            db,
            "--until",
            (SIM_START + WINDOW).isoformat(),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _rows(store: Store) -> list[Any]:
    with store.engine.connect() as conn:
        return conn.execute(select(pull_plan).where(pull_plan.c.window_start == SIM_START)).all()


async def test_two_collectors_one_killed_mid_window_every_hub_pulled_once(
    tmp_path: Path, pg_url: str
) -> None:
    specs = home_specs(HOMES, seed=17)
    creds = provision(tmp_path, specs, datetime.now(UTC))
    clock = AcceleratedClock(CLOCK_START, SPEED)
    fleet = Fleet(tmp_path, specs, clock, SIM_START)
    await fleet.start_servers(creds.ca_pem)
    clock.rebase()
    fleet.write_manifest(
        {"sim_start": CLOCK_START.isoformat(), "speed": SPEED, "wall_start": clock.wall_start}
    )
    store = Store(pg_url)
    store.create_schema()  # what the migrations do before any collector starts (plan tables included)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # Both start together: they register the same manifest and plan the same windows at once.
        first = _gdsc(tmp_path, pg_url)
        second = _gdsc(tmp_path, pg_url)
        procs += [first, second]
        name_a = f"{socket.gethostname()}-{first.pid}"[:64]
        name_b = f"{socket.gethostname()}-{second.pid}"[:64]

        def a_holds_work() -> bool:
            return any(r.collector == name_a and r.state == CLAIMED for r in _rows(store))

        # A pull takes tens of milliseconds, so catch the first collector in the act: when it
        # is seen holding work, freeze it (SIGSTOP) and look again, now without a race; kill it
        # if it still holds unfinished work, else let it run on. Leave room after the kill for
        # the lease to run out and the survivor to finish inside the window.
        while True:
            if clock.now() > SIM_START + WINDOW * 0.7:
                seen = Counter((r.collector, r.state) for r in _rows(store))
                raise AssertionError(f"never caught the first collector holding work: {seen}")
            if await asyncio.to_thread(a_holds_work):
                os.kill(first.pid, signal.SIGSTOP)
                if await asyncio.to_thread(a_holds_work):
                    break
                os.kill(first.pid, signal.SIGCONT)
            await asyncio.sleep(0.005)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        held = {r.hub_id for r in _rows(store) if r.collector == name_a and r.state == CLAIMED}
        killed_at = clock.now()
        assert held, "the killed collector held no unfinished work"
        rc = await asyncio.to_thread(second.wait, 120)
        assert rc == 0, second.stderr.read().decode()[-2000:] if second.stderr else rc
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        await fleet.stop()
    rows = _rows(store)
    assert sorted(r.hub_id for r in rows) == sorted(s.hub_id for s in specs)  # no hub forgotten
    assert all(r.state == DONE for r in rows)
    by_hub = {r.hub_id: r for r in rows}
    for hub_id in held:
        r = by_hub[hub_id]
        # Taken over after the dead collector's lease ran out, or found already pulled (the
        # dead one logged the pull but died before marking its row) and not pulled again.
        taken_over = r.collector == name_b and r.claims >= 2 and r.finished > killed_at
        assert taken_over or r.collector == name_a, (hub_id, r.collector, r.claims)
    with store.engine.connect() as conn:
        logged = conn.execute(
            select(pull_log.c.hub_id, pull_log.c.ok).where(pull_log.c.window_start == SIM_START)
        ).all()
    ok = Counter(h for h, o in logged if o)
    assert ok == Counter({s.hub_id: 1 for s in specs})  # each hub pulled exactly once
    assert all(o for _, o in logged)
    store.close()
