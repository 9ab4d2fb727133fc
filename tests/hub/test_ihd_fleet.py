"""The simulated fleet wires the consumer side: a DLMS home prepays electricity through its
breaker (opened with a signed voucher), and a ZigBee home's smart plugs price its appliances."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from smarthub.clock import AcceleratedClock
from smarthub.hub.prepayment_bridge import day_prefix
from smarthub.sim.fleet import SimulatedHome, home_specs, provision

SIM_START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # Monday morning


async def test_fleet_homes_prepay_through_their_breaker_and_price_their_appliances(tmp_path: Path) -> None:
    specs = home_specs(4, seed=3)
    provision(tmp_path, specs, datetime.now(UTC))
    clock = AcceleratedClock(SIM_START, 3600.0)  # an hour of simulated time per wall second
    prepay = SimulatedHome(specs[1], tmp_path, clock, SIM_START, timedelta(seconds=60))
    plugs = SimulatedHome(specs[3], tmp_path, clock, SIM_START, timedelta(seconds=60), smart_plugs=True)
    assert specs[1].kind == "dlms+wmbus" and specs[3].kind == "zigbee"
    until = SIM_START + timedelta(hours=3)
    clock.rebase()
    tasks = [asyncio.create_task(run) for h in (prepay, plugs) for rig in h.rigs for run in rig.runs(until)]
    try:
        await asyncio.gather(*tasks)
        side = prepay.consumer
        assert side.ledger is not None and side.bridge is not None
        assert set(side.bridge.breakers) == {"electricity"} and side.bridge.fuels == {"electricity"}
        assert [t["voucher_id"] for t in side.ledger.top_ups()] == [f"OPEN-{specs[1].hub_id}"]
        charged = side.ledger.charged("electricity", day_prefix("electricity", SIM_START.date()))
        assert charged > 0
        assert side.ledger.balance("electricity").credit == Decimal("20.00") - charged
        assert side.ledger.charged("gas", "") == 0  # gas is billed, not prepaid, in this home
        assert plugs.consumer.ledger is None
        costs = plugs.consumer.consumption.appliance_costs(
            SIM_START.date(), SIM_START.date() + timedelta(days=1)
        )
        assert {a.name for a in costs} == set(plugs.appliances.values())
        fridge = next(a for a in costs if a.name == "Fridge freezer")
        assert Decimal("0.14") <= fridge.kwh <= Decimal("0.17")  # 55 W for 2.5-3 closed hours
    finally:
        for t in tasks:
            t.cancel()
        await prepay.stop()
        await plugs.stop()
