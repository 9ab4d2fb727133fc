"""The real serial P1 transport (pyserial) against a pseudo-terminal standing in for the cable."""

from __future__ import annotations

import asyncio
import os
import tty
from datetime import UTC, datetime
from pathlib import Path

from smarthub.han.p1 import P1Port
from smarthub.han.transport import SerialP1Transport
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.model.obis import GAS_VOLUME, IMPORT_ACTIVE_ENERGY
from smarthub.sim.dsmr_meter import DsmrMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile

T0 = datetime(2026, 3, 2, tzinfo=UTC)


async def test_hub_reads_telegrams_from_a_serial_device(tmp_path: Path) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    hub = SmartHub("HUB1", HistoryStore(tmp_path / "h.sqlite"))
    hub.attach(P1Port("p1"))
    transport = SerialP1Transport(os.ttyname(slave), lambda data: hub.receive("p1", data))
    task = asyncio.create_task(transport.run())
    meter = DsmrMeterSimulator("E0042", "G0042", HouseholdProfile(1), start=T0)
    try:
        await asyncio.sleep(0.3)  # let the reader thread open the port
        os.write(master, meter.telegram_at(T0))
        for _ in range(100):
            if hub.stats.frames_ok:
                break
            await asyncio.sleep(0.05)
    finally:
        transport.stop()
        await task
        os.close(master)
        os.close(slave)
        hub.history.close()
    assert hub.stats.frames_ok == 1 and hub.stats.frame_errors == 0
    assert hub.mirror.latest("E0042", IMPORT_ACTIVE_ENERGY) is not None
    assert hub.mirror.latest("G0042", GAS_VOLUME) is not None
