"""The appliance controller: cheapest placement, plugs switched at those instants on a manual
clock, schedules kept across a restart, re-placement on a tariff change."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from hub.test_automation import WASH, brute_force, go
from smarthub.clock import ManualClock
from smarthub.han.zigbee_port import ZigbeePort
from smarthub.hub.appliances import Appliance, ApplianceController, PlugError, RunState
from smarthub.hub.automation import ApplianceRun, NoFeasibleWindow, cheapest
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.model.obis import IMPORT_ACTIVE_ENERGY
from smarthub.model.tariff import RatePeriod, Tariff, TariffSchedule, TimeOfUse
from smarthub.sim.smart_plug import SimulatedPlugLink, SmartPlugSimulator, plug_loop

EVERY_DAY = {d: "all" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
PLUG = "00:0d:6f:00:0a:bc:de:01"
SMART_APPLIANCE = 1 << 7
# 18:30 BST on 1 July 2026: the washing is loaded, wanted by 08:00 BST.
LOADED = datetime(2026, 7, 1, 17, 30, tzinfo=UTC)
WANTED = datetime(2026, 7, 2, 7, 0, tzinfo=UTC)
WASH_W = [2000, 2000, 300, 300, 300, 500]  # the programme WASH's kWh come from, 15-min steps


def washer_plug(start: datetime = LOADED) -> SmartPlugSimulator:
    return SmartPlugSimulator(PLUG, WASH_W, timedelta(minutes=15), start)


def controller(
    path: Path, clock: ManualClock, plug: SmartPlugSimulator, schedule: TariffSchedule | None = None
):  # type: ignore[no-untyped-def]
    c = ApplianceController(path, clock, SimulatedPlugLink(clock, [plug]), schedule)
    c.add_appliance(Appliance("washing machine", PLUG, SMART_APPLIANCE))
    return c


async def until(cond: Callable[[], bool], spins: int = 200) -> None:
    """Let the controller's loop run (no wall time passes on a manual clock) until ``cond``."""
    for _ in range(spins):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def test_a_wash_is_placed_in_the_cheapest_window_and_the_plug_switches_then(tmp_path: Path) -> None:
    clock = ManualClock(LOADED)
    plug = washer_plug()
    c = controller(tmp_path / "appl.sqlite", clock, plug, go())
    r = c.request("washing machine", WASH, LOADED, WANTED)
    best = brute_force(WASH, go(), LOADED, WANTED)
    assert best is not None and (r.start, r.cost_p) == best
    assert r.start == datetime(2026, 7, 1, 23, 30, tzinfo=UTC)  # 00:30 BST, the night rate's first slot
    loop = asyncio.create_task(c.run_forever())
    try:
        await until(lambda: c.plug_states()["washing machine"] is False)  # made sure it is off
        clock.set(r.start - timedelta(seconds=1))
        for _ in range(50):
            await asyncio.sleep(0)
        assert not plug.on and plug.log == []
        clock.set(r.start)
        await until(lambda: plug.on)
        assert plug.log == [(r.start, True)]
        assert c.run(r.id).state is RunState.RUNNING
        end = r.start + WASH.duration
        clock.set(end - timedelta(minutes=1))
        for _ in range(50):
            await asyncio.sleep(0)
        assert plug.on
        clock.set(end)
        await until(lambda: not plug.on)
        assert plug.log == [(r.start, True), (end, False)]
        assert c.run(r.id).state is RunState.DONE
        # The plug metered the whole programme: 1.35 kWh, to the Wh.
        plug.advance(end)
        assert plug.energy_wh == int(sum(WASH.energy_kwh) * 1000) == 1350
    finally:
        loop.cancel()
    assert [(t, on) for t, _, on in c.switchings()] == [(LOADED, False), (r.start, True), (end, False)]


async def test_schedules_survive_a_restart(tmp_path: Path) -> None:
    clock = ManualClock(LOADED)
    plug = washer_plug()
    db = tmp_path / "appl.sqlite"
    first = controller(db, clock, plug, go())
    r = first.request("washing machine", WASH, LOADED, WANTED)
    first.close()  # the hub restarts before the run starts

    second = ApplianceController(db, clock, SimulatedPlugLink(clock, [plug]))  # tariff from its own store
    assert second.run(r.id) == r and second.appliances()["washing machine"].plug == PLUG
    clock.set(r.start)
    await second.step()
    assert plug.log == [(r.start, True)]
    clock.set(r.start + timedelta(minutes=40))
    second.close()  # ... and again mid-run: after the restart the plug is told to stay on

    third = ApplianceController(db, clock, SimulatedPlugLink(clock, [plug]))
    assert third.plug_states()["washing machine"] is None
    await third.step()
    assert plug.on and third.plug_states()["washing machine"] is True and len(plug.log) == 1
    clock.set(r.start + WASH.duration)
    await third.step()
    assert plug.log[-1] == (r.start + WASH.duration, False) and third.run(r.id).state is RunState.DONE


async def test_a_start_missed_while_the_hub_was_down_is_placed_again_or_marked_missed(tmp_path: Path) -> None:
    clock = ManualClock(LOADED)
    plug = washer_plug()
    db = tmp_path / "appl.sqlite"
    c = controller(db, clock, plug, go())
    r = c.request("washing machine", WASH, LOADED, WANTED)
    tight = c.request("washing machine", WASH, LOADED, r.start + WASH.duration + timedelta(minutes=30))
    c.close()
    clock.set(r.start + timedelta(hours=1))  # down across both starts
    c2 = ApplianceController(db, clock, SimulatedPlugLink(clock, [plug]))
    await c2.step()
    again = c2.run(r.id)
    expected = cheapest(WASH, go(), clock.now(), WANTED)
    # Still inside the night rate: placed again at once, and started.
    assert (again.start, again.cost_p) == (expected.start, expected.cost_p) and again.start == clock.now()
    assert again.state is RunState.RUNNING and plug.log == [(clock.now(), True)]
    assert c2.run(tight.id).state is RunState.MISSED


def cheap_afternoon() -> TariffSchedule:
    """A tariff with its cheap hours at 13:00-15:00 local."""
    return TariffSchedule(
        [
            Tariff(
                tariff_id="sunny",
                version=1,
                effective_from=date(2026, 1, 1),
                standing_charge_p_per_day=Decimal("40"),
                pricing=TimeOfUse(
                    rates={"cheap": Decimal("5.00"), "day": Decimal("30.00")},
                    day_types={
                        "all": (
                            RatePeriod(start="00:00", end="13:00", rate="day"),
                            RatePeriod(start="13:00", end="15:00", rate="cheap"),
                            RatePeriod(start="15:00", end="00:00", rate="day"),
                        )
                    },
                    week=EVERY_DAY,  # type: ignore[arg-type]
                ),
            )
        ]
    )


async def test_a_tariff_change_places_waiting_runs_again_but_not_running_ones(tmp_path: Path) -> None:
    morning = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
    clock = ManualClock(morning)
    plug = washer_plug(morning)
    c = controller(tmp_path / "appl.sqlite", clock, plug, go())
    ev = SmartPlugSimulator("00:0d:6f:00:0a:bc:de:02", [7000], timedelta(minutes=30), morning)
    c.link.plugs[ev.eui64] = ev  # type: ignore[attr-defined]
    c.add_appliance(Appliance("ev charger", ev.eui64, 1 << 16, interruptible=True))
    charge = ApplianceRun.constant("ev charger", Decimal("7"), timedelta(hours=1))
    later, by = morning + timedelta(hours=1), datetime(2026, 7, 1, 22, 0, tzinfo=UTC)
    w = c.request("washing machine", WASH, later, by)
    assert w.start == later
    e = c.request("ev charger", charge, morning, morning + timedelta(hours=2))
    assert e.start == morning  # flat day rate: the earliest of equal costs
    await c.step()
    assert ev.on and c.run(e.id).state is RunState.RUNNING
    c.update_tariff(cheap_afternoon())
    moved = c.run(w.id)
    best = brute_force(WASH, cheap_afternoon(), later, by)
    assert best is not None and (moved.start, moved.cost_p) == best
    assert moved.start == datetime(2026, 7, 1, 12, 0, tzinfo=UTC)  # 13:00 BST
    assert c.run(e.id).start == morning  # a running run is not moved


async def test_a_run_that_cannot_fit_is_refused_and_a_plug_that_refuses_is_an_error(tmp_path: Path) -> None:
    clock = ManualClock(LOADED)
    plug = washer_plug()
    c = controller(tmp_path / "appl.sqlite", clock, plug, go())
    with pytest.raises(NoFeasibleWindow, match="does not fit"):
        c.request("washing machine", WASH, LOADED, LOADED + timedelta(hours=1))
    with pytest.raises(KeyError, match="dryer"):
        c.request("dryer", WASH, LOADED, WANTED)

    class Refusing(SimulatedPlugLink):
        async def request(self, eui64: str, cluster_id: int, payload: bytes) -> bytes:
            return await super().request(eui64, 0x0702, payload)  # lands on the wrong cluster

    bad = ApplianceController(tmp_path / "b.sqlite", clock, Refusing(clock, [plug]), go())
    bad.add_appliance(Appliance("washing machine", PLUG, SMART_APPLIANCE))
    with pytest.raises(PlugError, match="refused off"):
        await bad.step()


async def test_a_plug_meters_into_the_hub_as_a_sub_meter(tmp_path: Path) -> None:
    clock = ManualClock(LOADED)
    plug = washer_plug()
    history = HistoryStore(tmp_path / "history.sqlite")
    hub = SmartHub("HUB1", history, clock=clock)
    port = hub.attach(ZigbeePort("zigbee"))
    loop = plug_loop(hub, port, clock, plug, LOADED, timedelta(minutes=1))
    plug.handle(0x0006, bytes.fromhex("010a01"), LOADED)  # On, from the hub
    await loop.poll_now()
    clock.set(LOADED + timedelta(minutes=30))
    await loop.poll_now()
    reading = hub.mirror.latest(PLUG, IMPORT_ACTIVE_ENERGY)
    assert reading is not None and reading.value == Decimal("1.000")  # 2 kW for half an hour, in kWh
    history.close()
