"""A prepayment top-up queued during a bulk window reaches its hub within one scheduling tick.

Real pieces throughout: a Smart Hub serving 2030.5 and ``/mgmt`` over mutual TLS on loopback,
the GDSC collector and courier, the shared plan on SQLite and PostgreSQL. The bulk backlog is
2,000 hub records all due at once (served by the same real hub, so each bulk pull is a real
pull); the collector has four bulk slots, so a first-come-first-served queue would reach the
top-up only after 500 ticks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from smarthub.clock import ManualClock
from smarthub.gdsc.fleet.registry import hubs, premises
from smarthub.gdsc.pull.backoff import Backoff
from smarthub.gdsc.pull.collector import Collector
from smarthub.gdsc.pull.courier import CommandCourier
from smarthub.gdsc.pull.log import pull_log
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.scheduler import Scheduler
from smarthub.gdsc.pull.tables import CLAIMED, DONE, PENDING, Priority
from smarthub.gdsc.service import queue_command
from smarthub.gdsc.store import Store
from smarthub.sim.chaos import kill_connections
from smarthub.sim.fleet import SimulatedHome, home_specs, provision
from smarthub.wan.contract.bodies import PrepaymentTopup

VOUCHER = PrepaymentTopup(voucher='{"pence": 2000}', signature="", signer="")

WS = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
W = timedelta(minutes=30)
TICK = timedelta(seconds=10)
BACKLOG = 2000


async def _until(check: Any, what: str, wall_seconds: float = 60.0) -> None:
    """Wait (in real time, the clock standing still) until ``check()`` holds."""
    for _ in range(int(wall_seconds / 0.05)):
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def _pulls_logged(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(pull_log)).scalar_one())


async def test_top_up_during_bulk_backlog_is_delivered_within_one_tick(
    db_url: str, tmp_path: Path, wall_now: datetime
) -> None:
    specs = home_specs(1, seed=21)
    spec = specs[0]
    creds = provision(tmp_path, specs, wall_now)
    clock = ManualClock(WS + timedelta(minutes=29))  # late in the window: the whole plan is due
    home = SimulatedHome(spec, tmp_path, clock, WS, timedelta(seconds=60))
    credited: list[dict[str, Any]] = []

    def top_up(body: PrepaymentTopup) -> dict[str, Any]:
        # The hub's prepayment account is another issue's work; here the hub records the credit
        # (the voucher unsigned: only the delivery is under test).
        credited.append(json.loads(body.voucher))
        return {"credit_pence": sum(int(b["pence"]) for b in credited)}

    home.management.register("prepayment.topup", top_up)
    url = await home.start_server(creds.ca_pem)
    store = Store(db_url)
    store.create_schema()
    store.register_hub(
        hub_id=spec.hub_id, premises_id=spec.premises_id, url=url, lfdi=home.lfdi, meters_by_fuel=home.meters
    )
    with store.engine.begin() as conn:
        conn.execute(
            premises.insert(), [{"premises_id": f"PB{i:05d}", "address": ""} for i in range(BACKLOG)]
        )
        conn.execute(
            hubs.insert(),
            [
                {"hub_id": f"BULK{i:05d}", "premises_id": f"PB{i:05d}", "url": url, "lfdi": home.lfdi}
                for i in range(BACKLOG)
            ],
        )
    ctx = creds.collector_context()
    collector = Collector(store, ctx, clock)
    scheduler = Scheduler(
        collector,
        clock,
        store.active_hubs,
        window=W,
        max_concurrency=4,
        tick=TICK,
        courier=CommandCourier(ctx),
        name="collector-1",
    )
    plan = scheduler.plan
    assert isinstance(plan, PullPlan)
    run = asyncio.create_task(scheduler.run(until=WS + W, first_window=WS))
    try:
        # First tick: the window is planned and the first four bulk pulls go out.
        await _until(lambda: sum(plan.window_states("every", WS).values()) == BACKLOG + 1, "the plan")
        await _until(lambda: _pulls_logged(store) >= 4, "the first bulk pulls")
        queued = clock.now()
        job = await asyncio.to_thread(
            queue_command, tmp_path, spec.hub_id, "prepayment.topup", VOUCHER, queued, db_url
        )
        assert plan.urgent_job(job)["priority"] == Priority.URGENT
        clock.advance(TICK)  # one tick, and the clock stands still after it
        await _until(lambda: plan.urgent_job(job)["state"] == DONE, "the top-up's delivery")
        delivered = plan.urgent_job(job)
        assert delivered["finished"] <= queued + TICK
        assert delivered["collector"] == "collector-1" and delivered["claims"] == 1
        assert '"status": "applied"' in delivered["result"]
        assert credited == [{"pence": 2000}]
        (last,) = home.management.log(limit=1)
        assert last[2:4] == ("prepayment.topup", "applied")
        # It jumped the queue: almost all of the bulk backlog is still waiting.
        waiting = plan.window_states("every", WS)
        assert waiting.get(PENDING, 0) + waiting.get(CLAIMED, 0) >= BACKLOG + 1 - 8
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        await scheduler.close()
        await collector.close()
        await home.stop()
        store.close()


async def test_on_demand_read_is_pulled_at_the_next_tick_and_a_dead_hub_opens_one_error(
    db_url: str, tmp_path: Path, wall_now: datetime
) -> None:
    specs = home_specs(1, seed=22)
    spec = specs[0]
    creds = provision(tmp_path, specs, wall_now)
    clock = ManualClock(WS + timedelta(minutes=29))
    home = SimulatedHome(spec, tmp_path, clock, WS, timedelta(seconds=60))
    url = await home.start_server(creds.ca_pem)
    store = Store(db_url)
    store.create_schema()
    store.register_hub(
        hub_id=spec.hub_id, premises_id=spec.premises_id, url=url, lfdi=home.lfdi, meters_by_fuel=home.meters
    )
    # A second hub whose address answers nothing: its command can never be delivered.
    store.register_hub(
        hub_id="DEAD", premises_id="PDEAD", url="https://127.0.0.1:9", lfdi=home.lfdi, meters_by_fuel=[]
    )
    ctx = creds.collector_context()
    collector = Collector(store, ctx, clock)
    told: list[tuple[str, str]] = []
    scheduler = Scheduler(
        collector,
        clock,
        store.active_hubs,
        window=W,
        tick=TICK,
        courier=CommandCourier(ctx),
        max_tries=2,
        on_unreachable=lambda hub, _t, err: told.append((hub, err)),
    )
    plan = scheduler.plan
    assert isinstance(plan, PullPlan)
    plan.backoff = Backoff(TICK, 2.0, TICK * 2)
    run = asyncio.create_task(scheduler.run(until=WS + W, first_window=WS))
    try:
        await _until(lambda: _pulls_logged(store) >= 2, "the bulk pulls")
        read = plan.enqueue_read(spec.hub_id, clock.now())
        reconnect = await asyncio.to_thread(
            queue_command, tmp_path, "DEAD", "supply.reconnect", {"meter": "E1"}, clock.now(), db_url
        )
        clock.advance(TICK)
        await _until(lambda: plan.urgent_job(read)["state"] == DONE, "the on-demand read")
        assert '"readings"' in plan.urgent_job(read)["result"]
        # The undeliverable command: its first try fails, and its retry is due one backoff later.
        await _until(lambda: plan.urgent_job(reconnect)["failures"] == 1, "the first delivery attempt")
        await _until(lambda: plan.urgent_job(reconnect)["state"] == PENDING, "the retry to be booked")
        clock.set(plan.urgent_job(reconnect)["next_try"] + TICK)
        await _until(lambda: plan.urgent_job(reconnect)["state"] == "failed", "the second attempt")
        job = plan.urgent_job(reconnect)
        assert (job["state"], job["failures"]) == ("failed", 2)
        (error,) = [e for e in plan.open_errors("DEAD") if e["kind"] == "command_undelivered"]
        assert error["tries"] == 2 and error["occurrences"] == 1
        # Its bulk pull failed twice as well (one backoff apart): one "unreachable" record, and
        # the error-log hook told once.
        for _ in range(3):  # pulls that ended are recorded at the next tick
            clock.advance(TICK)
            with contextlib.suppress(AssertionError):
                await _until(lambda: len(told) == 1, "the bulk pull's last try", wall_seconds=5)
        assert len(told) == 1
        assert told[0][0] == "DEAD" and told[0][1]
        (unreachable,) = [e for e in plan.open_errors("DEAD") if e["kind"] == "unreachable"]
        assert unreachable["tries"] == 2
        assert [e["hub_id"] for e in plan.open_errors()] == ["DEAD", "DEAD"]
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        await scheduler.close()
        await collector.close()
        await home.stop()
        store.close()


async def test_a_command_meeting_another_certificate_tells_the_upkeep_what_the_hub_presents(
    db_url: str, tmp_path: Path, wall_now: datetime
) -> None:
    """A hub that installed a renewal whose answer was lost presents a certificate the GDSC
    does not pin yet: a command's delivery that meets it tells the collector's ``presented``
    (which the upkeep adopts from, ``HubLifecycle.adopt_renewed``), as a pull's handshake does,
    instead of failing every try until the next pull."""
    specs = home_specs(1, seed=23)
    spec = specs[0]
    creds = provision(tmp_path, specs, wall_now)
    clock = ManualClock(WS + timedelta(minutes=29))
    home = SimulatedHome(spec, tmp_path, clock, WS, timedelta(seconds=60))
    url = await home.start_server(creds.ca_pem)
    store = Store(db_url)
    store.create_schema()
    pinned = "0" * 40  # the certificate before the renewal
    store.register_hub(
        hub_id=spec.hub_id, premises_id=spec.premises_id, url=url, lfdi=pinned, meters_by_fuel=home.meters
    )
    ctx = creds.collector_context()
    collector = Collector(store, ctx, clock)
    scheduler = Scheduler(  # no bulk pulls: only the command meets the hub
        collector, clock, lambda: [], window=W, tick=TICK, courier=CommandCourier(ctx), max_tries=2
    )
    plan = scheduler.plan
    assert isinstance(plan, PullPlan)
    run = asyncio.create_task(scheduler.run(until=WS + W, first_window=WS))
    try:
        job = await asyncio.to_thread(
            queue_command, tmp_path, spec.hub_id, "diagnostic.ping", {}, clock.now(), db_url
        )
        clock.advance(TICK)
        await _until(lambda: plan.urgent_job(job)["failures"] == 1, "the first delivery attempt")
        assert "peer certificate has LFDI" in plan.urgent_job(job)["last_error"]
        assert collector.presented == {spec.hub_id: home.lfdi.upper()}
        assert _pulls_logged(store) == 0
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        await scheduler.close()
        await collector.close()
        await home.stop()
        store.close()


@pytest.mark.postgres
async def test_a_verdict_is_recorded_though_a_database_restart_killed_the_connections(
    pg_url: str, tmp_path: Path, wall_now: datetime
) -> None:
    """The hub applies a command while the GDSC's database connections are terminated (a
    database restart, as the chaos run injects): the verdict is still recorded, once. Before,
    the first write on a dead pooled connection raised, the delivery task crashed, and the job
    stayed claimed to be delivered again at its lease's end, when the hub answered the replayed
    counter with a refusal (a firmware roll-out on PostgreSQL halted on that, not on the hub's
    ``rolled_back``)."""
    app = f"gdsc-test-{uuid.uuid4().hex[:12]}"
    gdsc_url = f"{pg_url}&application_name={app}"
    specs = home_specs(1, seed=21)
    spec = specs[0]
    creds = provision(tmp_path, specs, wall_now)
    clock = ManualClock(WS)
    home = SimulatedHome(spec, tmp_path, clock, WS, timedelta(seconds=60))
    admin = create_engine(pg_url)
    killed: list[int] = []

    def top_up(body: PrepaymentTopup) -> dict[str, Any]:
        killed.append(kill_connections(admin, app))  # the database restarts as the hub applies it
        return {"credit_pence": 2000}

    home.management.register("prepayment.topup", top_up)
    url = await home.start_server(creds.ca_pem)
    store = Store(gdsc_url)
    store.create_schema()
    store.register_hub(
        hub_id=spec.hub_id, premises_id=spec.premises_id, url=url, lfdi=home.lfdi, meters_by_fuel=home.meters
    )
    ctx = creds.collector_context()
    collector = Collector(store, ctx, clock)
    scheduler = Scheduler(
        collector,
        clock,
        store.active_hubs,
        window=W,
        tick=TICK,
        courier=CommandCourier(ctx),
        name="collector-1",
    )
    plan = scheduler.plan
    assert isinstance(plan, PullPlan)
    try:
        job = await asyncio.to_thread(
            queue_command, tmp_path, spec.hub_id, "prepayment.topup", VOUCHER, clock.now(), gdsc_url
        )
        await scheduler._dispatch(clock.now())  # the job claimed, its delivery under way
        for _ in range(600):
            if not scheduler._urgent:
                break
            clock.advance(timedelta(seconds=5))  # the retries' waits
            await asyncio.sleep(0.05)
        assert killed and killed[0] >= 1  # the GDSC's pooled connections were terminated
        delivered = plan.urgent_job(job)
        assert delivered["state"] == DONE and delivered["claims"] == 1
        assert '"status": "applied"' in delivered["result"]
        assert scheduler.delivered == 1
    finally:
        await scheduler.close()
        await collector.close()
        await home.stop()
        store.close()
        admin.dispose()
