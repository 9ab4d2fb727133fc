"""Home automation in a whole simulated home: a signed ``appliance.run`` from the GDSC's
operator, the plug switched on the home's clock and metered into its hub, the state on MQTT."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from hub.test_appliances import LOADED, PLUG, SMART_APPLIANCE, WANTED, until, washer_plug
from hub.test_automation import WASH, go
from hub.test_mqtt_export import Listener, _broker_up, _clear_retained
from smarthub.clock import ManualClock
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.hub.appliances import Appliance, RunState
from smarthub.hub.mqtt_export import MqttSettings
from smarthub.model.obis import IMPORT_ACTIVE_ENERGY
from smarthub.sim.fleet import SimulatedHome, home_specs, provision
from smarthub.sim.home_automation import add_home_automation


@pytest.mark.skipif(not _broker_up(), reason="no MQTT broker on 127.0.0.1:1883")
async def test_a_signed_run_request_switches_the_plug_meters_it_and_shows_on_mqtt(tmp_path: Path) -> None:
    (spec,) = home_specs(1, seed=5)
    provision(tmp_path, [spec], datetime.now(UTC) - timedelta(days=1))
    clock = ManualClock(LOADED)
    home = SimulatedHome(spec, tmp_path, clock, LOADED, timedelta(minutes=1))
    auto = add_home_automation(
        home,
        go(),
        [(Appliance("washing machine", PLUG, SMART_APPLIANCE), washer_plug())],
        mqtt=MqttSettings(enabled=True, base_topic=f"test/{spec.hub_id}", discovery_prefix="test-ha"),
    )
    counter = iter(range(1, 100))
    gdsc = tmp_path / "gdsc"
    signer = CommandSigner.from_files(
        str(gdsc / "operator.pem"), str(gdsc / "operator.key"), lambda hub: next(counter)
    )
    listener = Listener(f"test/{spec.hub_id}/#")
    try:
        body = {"appliance": "washing machine", "kwh": [str(e) for e in WASH.energy_kwh], "step_minutes": 15,
                "earliest": LOADED.isoformat(), "deadline": WANTED.isoformat()}  # fmt: skip
        envelope = signer.command(spec.hub_id, "appliance.run", body, datetime.now(UTC)).envelope()
        verdict = json.loads((await home.management.handle(envelope)).to_json())
        assert verdict["status"] == "applied", verdict
        start = datetime.fromisoformat(verdict["result"]["start"])
        assert start == datetime(2026, 7, 1, 23, 30, tzinfo=UTC)
        auto.start()
        await asyncio.to_thread(listener.until, f"test/{spec.hub_id}/appliance_washing_machine/state", "OFF")
        clock.set(start)
        await asyncio.to_thread(listener.until, f"test/{spec.hub_id}/appliance_washing_machine/state", "ON")
        plug = auto.plugs["washing machine"]
        assert plug.log == [(start, True)]
        for minute in range(1, 91):  # the plug reports every minute through the hub's ZigBee port
            clock.set(start + timedelta(minutes=minute))
            for _ in range(5):
                await asyncio.sleep(0)
        await until(lambda: not plug.on)  # the clock stands at the run's end until the plug is off
        meter = auto.metering[0]  # the plug's report loop catches up, a minute at a time
        await until(lambda: meter.next_time is not None and meter.next_time > clock.now(), spins=50_000)
        assert plug.log == [(start, True), (start + WASH.duration, False)]
        assert auto.controller.runs()[0].state is RunState.DONE
        reading = home.hub.mirror.latest(PLUG, IMPORT_ACTIVE_ENERGY)
        assert reading is not None and reading.value == Decimal("1.350")
        await asyncio.to_thread(listener.until, f"test/{spec.hub_id}/appliance_washing_machine/state", "OFF")
    finally:
        listener.close()
        await auto.stop()
        await home.stop()
        _clear_retained(
            [f"test-ha/{c}/{spec.hub_id}/{o}/config" for c, o in (
                ("sensor", "power"), ("sensor", "energy_import"), ("sensor", "gas"),
                ("binary_sensor", "appliance_washing_machine"))]
            + [f"test/{spec.hub_id}/{o}/state" for o in ("power", "energy_import", "gas", "appliance_washing_machine")]
            + [f"test/{spec.hub_id}/status"]
        )  # fmt: skip
