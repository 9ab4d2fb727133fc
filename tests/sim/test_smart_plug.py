"""A simulated smart plug asked about an instant it has passed (a poll loop trailing the
accelerated clock of ``smarthub demo``) answers with its registers as they were then, so its
half-hours hold what it drew in them (the demo's EV plug once put a day's charge in one)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from smarthub.meters.zigbee_se import ON_OFF_CLUSTER, encode_on_off
from smarthub.sim.smart_plug import SmartPlugSimulator

T0 = datetime(2026, 3, 2, 16, tzinfo=UTC)


def switch(plug: SmartPlugSimulator, on: bool, minutes: int) -> None:
    plug.handle(
        ON_OFF_CLUSTER, encode_on_off("on" if on else "off", minutes), T0 + timedelta(minutes=minutes)
    )


def test_registers_at_a_passed_instant_are_those_of_that_instant() -> None:
    plug = SmartPlugSimulator("00:0d:6f:0e:00:00:00:01", [7000, 3600], timedelta(minutes=30), T0)
    switch(plug, True, 10)  # 7 kW for 30 powered minutes, then 3.6 kW
    switch(plug, False, 50)  # on 40 minutes: 3.5 kWh + 10 min at 3.6 kW = 0.6 kWh
    switch(plug, True, 70)
    plug.advance(T0 + timedelta(minutes=80))  # the plug is now at 16:80 = 17:20
    assert plug.energy_wh == 3500 + 600 + 600
    at = {m: plug.registers_at(T0 + timedelta(minutes=m)) for m in (0, 10, 20, 40, 45, 50, 60, 75)}
    assert at == {
        0: (0, 0),
        10: (0, 0),
        20: (7000 // 6, 7000),
        40: (3500, 3600),
        45: (3500 + 300, 3600),
        50: (4100, 0),
        60: (4100, 0),
        75: (4100 + 300, 3600),
    }
    # A report never takes the summation back, whatever instant it is asked about.
    plug.metering_report(T0 + timedelta(minutes=80))
    plug.metering_report(T0 + timedelta(minutes=20))
    assert plug._reported_wh == plug.energy_wh
