"""Home automation wired into a simulated home: smart plugs on the HAN, the appliance controller,
the DRLC client and (if the consumer turned it on) the MQTT export, sharing the home's hub.

Kept out of ``sim/fleet.py`` so the fleet's default homes (and the demo's expected reading
counts) do not change: a test or a demo adds automation to the homes it wants.

The plugs meter into the hub through their own ZigBee port (each is a sub-meter the mirror
and history see by its EUI-64); the controller switches them over the ZCL On/Off cluster; the
management interface gains ``appliance.run``, ``drlc.event`` and ``drlc.responses``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from smarthub.assembly.hub import wire_demand_response
from smarthub.han.poll import PollLoop
from smarthub.han.zigbee_port import ZigbeePort
from smarthub.hub.appliances import START_GRACE, Appliance, ApplianceController
from smarthub.hub.drlc import DrlcClient
from smarthub.hub.mqtt_export import MqttExporter, MqttSettings, hub_entities
from smarthub.model.tariff import TariffSchedule
from smarthub.sim.smart_plug import SimulatedPlugLink, SmartPlugSimulator, plug_loop

if TYPE_CHECKING:
    from smarthub.sim.fleet import SimulatedHome


@dataclass
class HomeAutomation:
    controller: ApplianceController
    drlc: DrlcClient
    link: SimulatedPlugLink
    plugs: dict[str, SmartPlugSimulator]  # by appliance name
    metering: list[PollLoop]
    exporter: MqttExporter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, until: datetime | None = None) -> None:
        self.tasks = [asyncio.create_task(self.controller.run_forever(until))]
        self.tasks += [asyncio.create_task(loop.run(until)) for loop in self.metering]
        if self.exporter is not None:
            self.exporter.start()
            self.tasks.append(asyncio.create_task(self.exporter.run(until)))

    async def stop(self) -> None:
        pending = set(self.tasks)
        while pending:
            # Cancel again until they end: on Python 3.11 asyncio.wait_for (inside a poll cycle)
            # can swallow a cancellation that lands as its inner call completes.
            for t in pending:
                t.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.5)
        if self.exporter is not None:
            self.exporter.stop()
        self.controller.close()
        self.drlc.close()


def add_home_automation(
    home: SimulatedHome,
    schedule: TariffSchedule,
    appliances: Sequence[tuple[Appliance, SmartPlugSimulator]],
    *,
    mqtt: MqttSettings | None = None,
    start: datetime | None = None,
    report_every: timedelta = timedelta(minutes=1),
    start_grace: timedelta = START_GRACE,
) -> HomeAutomation:
    """``start_grace``: the controller's (how late a run may still start)."""
    clock = home.clock
    start = start or clock.now()
    port = home.hub.attach(ZigbeePort("plugs"))
    plugs = {a.name: plug for a, plug in appliances}
    link = SimulatedPlugLink(clock, list(plugs.values()))
    # The same wiring as a hub configured with [demand_response] and [[appliance]] (the assembly's).
    dr = wire_demand_response(
        home.assembly, link, [a for a, _ in appliances], schedule, start_grace=start_grace
    )
    controller, drlc = dr.controller, dr.drlc
    assert drlc is not None
    for appliance, plug in appliances:
        if not home.registry.is_active(plug.eui64):  # the installer pairs the plug like a meter
            home.registry.add(plug.eui64, "zigbee", "electricity")
        if home.consumer is not None:
            # A sub-meter, named as the occupant named it: it stays home unless they consent to
            # appliance data (hub.privacy), like the plugs of the hub's configuration.
            home.consumer.consumption.set_appliance(plug.eui64, appliance.name)
    metering = [plug_loop(home.hub, port, clock, plug, start, report_every) for plug in plugs.values()]
    exporter = None
    if mqtt is not None:
        exporter = exp = MqttExporter(home.spec.hub_id, mqtt, clock)
        electricity = next((m for m, fuel in home.meters if fuel == "electricity"), None)
        gas = next((m for m, fuel in home.meters if fuel == "gas"), None)
        hub_entities(exp, home.hub.mirror.latest, electricity, gas, None, controller.plug_states)
        controller.listeners.append(lambda name, on: exp.publish_states())  # at once, not next period
    return HomeAutomation(controller, drlc, link, plugs, metering, exporter)
