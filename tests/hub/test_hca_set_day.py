"""A heat-cost allocator across its set day (EN 834) through a real hub: its units restart from
zero after 31 December, and the hub carries on building half-hours from the restart (their sum is
every unit it counted on both sides), with no "register going backwards" diagnosed; any other
register going backwards is still refused and diagnosed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from smarthub.clock import ManualClock
from smarthub.han.wmbus_port import WMBusPort
from smarthub.hub.diagnostics import DiagnosisCode, Diagnostics, DiagnosticsLog
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.hub.intervals import IntervalBuilder
from smarthub.hub.keys import KeyRing
from smarthub.model.obis import HCA_UNITS, WATER_VOLUME
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.wmbus_submeters import HcaSimulator

KEY = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
LONDON = ZoneInfo("Europe/London")
START = datetime(2025, 12, 29, tzinfo=UTC)


def test_an_allocator_restarting_after_its_set_day_keeps_its_half_hours_whole(tmp_path: Path) -> None:
    clock = ManualClock(START)
    diagnostics = Diagnostics(DiagnosticsLog(tmp_path / "d.sqlite"))
    hub = SmartHub("HUB1", HistoryStore(tmp_path / "history.sqlite"), clock=clock, diagnostics=diagnostics)
    port = hub.attach(WMBusPort("wmbus", KeyRing(), tz=LONDON))
    assert isinstance(port, WMBusPort)
    sim = HcaSimulator(
        71000001, KEY, HouseholdProfile(3, tz=LONDON), START, initial_units=900, radiator_share_permille=600
    )
    port.keys[sim.meter_id] = KEY
    counted = 0
    last = sim.registers.units
    t = START
    while t < START + timedelta(days=5):
        t += timedelta(minutes=30)
        clock.set(t)
        hub.accept(port.receive(sim.frame_at(t)), t, port="wmbus")
        units = sim.registers.units
        counted += units - last if units >= last else units  # the restart: counted from zero
        last = units
    assert (
        sim.registers.set_day_units > 900 and sim.registers.units < sim.registers.set_day_units
    )  # it restarted
    rows = hub.history.query(sim.meter_id, HCA_UNITS, limit=10_000)
    assert len(rows) == 5 * 48 - 1  # every half-hour from the first whole one
    assert sum(r.value for r in rows) == counted  # nothing lost or invented across the restart
    assert rows[-1].register_end == sim.registers.units  # the register as the allocator shows it
    assert not [e for e in diagnostics.log.open_events() if e.code == DiagnosisCode.REGISTER_BACKWARDS]


def test_other_registers_going_backwards_are_still_refused() -> None:
    b = IntervalBuilder()
    b.add("W1", WATER_VOLUME, 0, 1000, -3)
    b.add("W1", WATER_VOLUME, 1800, 1100, -3)
    assert b.add("W1", WATER_VOLUME, 3600, 50, -3) == [] and b.rejected("W1", WATER_VOLUME) == 1
    h = IntervalBuilder()
    h.add("H1", HCA_UNITS, 0, 1000, 0)
    (first,) = h.add("H1", HCA_UNITS, 1800, 1100, 0)
    (restart,) = h.add("H1", HCA_UNITS, 3600, 7, 0)  # the set day passed between the two
    assert (first.value, restart.value, restart.register_end) == (100, 7, 7)
    assert h.rejected("H1", HCA_UNITS) == 0
