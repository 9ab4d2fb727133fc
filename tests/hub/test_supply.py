"""Remote disconnect/reconnect and power limit of a DLMS meter, through the hub's supply commands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from smarthub.clock import ManualClock
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.meters.dlms.security import SecurityKeys
from smarthub.model.obis import IMPORT_ACTIVE_ENERGY
from smarthub.sim.fleet import supply_commands
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.rigs import dlms_rig
from smarthub.wan.contract.bodies import parse_body

T0 = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)  # evening: the household is using power


async def test_disconnect_stops_the_register_and_reconnect_restores_it(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    hub = SmartHub("HUB1", HistoryStore(tmp_path / "h.sqlite"), clock=clock)
    title = b"LGZ\x00\x00\x00\x00\x09"
    rig = dlms_rig(
        hub,
        clock,
        T0,
        HouseholdProfile(4),
        title,
        SecurityKeys(bytes(16), bytes(range(16))),
        timedelta(minutes=5),
    )
    assert rig.supply is not None
    loop = rig.loops[0]
    cmd = supply_commands({rig.supply.meter: rig.supply})

    async def run_until(t: datetime) -> None:
        clock.set(t)
        await loop.run(until=t)

    await run_until(T0 + timedelta(minutes=30))
    assert (await cmd["supply.state"](parse_body("supply.state", {"meter": rig.supply.meter})))[
        "connected"
    ] is True
    clock.set(T0 + timedelta(minutes=31))
    off = await cmd["supply.disconnect"](parse_body("supply.disconnect", {"meter": rig.supply.meter}))
    assert off == {"connected": False, "control_state": "disconnected"}
    await run_until(T0 + timedelta(hours=1, minutes=30))
    clock.set(T0 + timedelta(hours=1, minutes=31))
    on = await cmd["supply.reconnect"](parse_body("supply.reconnect", {"meter": rig.supply.meter}))
    assert on == {"connected": True, "control_state": "connected"}
    await run_until(T0 + timedelta(hours=2, minutes=30))
    assert loop.failures == 0
    values = {
        r.start - int(T0.timestamp()): r.value
        for r in hub.history.query(title.hex().upper(), IMPORT_ACTIVE_ENERGY)
    }
    assert values[0] > 0  # supplied
    assert values[3600] == 0  # 19:00-19:30, wholly disconnected: no energy flows
    assert values[5400] > 0  # 19:30-20:00: reconnected at 19:31
    limited = await cmd["supply.limit"](parse_body("supply.limit", {"meter": rig.supply.meter, "watts": 100}))
    assert limited == {"watts": 100}
    hub.history.close()
