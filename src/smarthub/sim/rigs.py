"""Meter rigs: a simulated meter, the HAN path to the hub it belongs to, and the loop that
drives it (the meter pushing, or the hub polling). Each rig knows which interval channels
its meters must deliver, so the demo can count what is expected.

Every rig goes through the same production code as a real meter would: the hub's ports,
poll cycles and sans-I/O codecs; only the meter and the wire are simulated.
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from smarthub.clock import Clock
from smarthub.han import dlms_control
from smarthub.han.dlms_poll import dlms_cycle
from smarthub.han.iec_poll import iec_cycle
from smarthub.han.mbus_poll import mbus_cycle
from smarthub.han.p1 import P1Port
from smarthub.han.poll import PollLoop, SimulatedLink, simulated
from smarthub.han.ports import PortBatch
from smarthub.han.transport import SimulatedP1Transport
from smarthub.han.wmbus_port import WMBusPort
from smarthub.han.zigbee_port import ZigbeePort
from smarthub.hub.hub import SmartHub
from smarthub.meters.dlms.client import DlmsClient
from smarthub.meters.dlms.security import SecurityKeys
from smarthub.model import ObisCode
from smarthub.model.obis import (
    EXPORT_ACTIVE_ENERGY,
    GAS_VOLUME,
    IMPORT_ACTIVE_ENERGY,
    IMPORT_ACTIVE_POWER,
    WATER_VOLUME,
)
from smarthub.sim.appliance_profiles import ApplianceProfile
from smarthub.sim.dlms_meter import DlmsMeterSimulator
from smarthub.sim.dsmr_meter import DsmrMeterSimulator
from smarthub.sim.iec_meter import IecMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.mbus_meter import MBusMeterSimulator
from smarthub.sim.wmbus_meter import WMBusMeterSimulator
from smarthub.sim.zigbee_meter import ZigbeeMeterSimulator

MINUTE = timedelta(minutes=1)


@dataclass
class Rig:
    protocol: str
    meters: list[tuple[str, str]]  # (meter id as its protocol reports it, fuel)
    channels: list[tuple[str, ObisCode]]  # interval channels it must deliver
    loops: list[Any] = field(default_factory=list)  # objects with `async run(until)`
    supply: SupplyControl | None = None  # a meter with a breaker the hub can switch (DLMS class 70/71)

    def runs(self, until: datetime | None) -> list[Coroutine[Any, Any, None]]:
        return [loop.run(until) for loop in self.loops]

    @property
    def failures(self) -> int:
        return sum(getattr(loop, "failures", 0) for loop in self.loops)


@dataclass
class SupplyControl:
    """Connect/disconnect and power limit of one DLMS meter, sharing its poll loop's session."""

    meter: str
    link: SimulatedLink
    client: DlmsClient
    loop: PollLoop

    async def _run(self, op):  # type: ignore[no-untyped-def]
        async def session(t: datetime):  # type: ignore[no-untyped-def]
            self.link.t = t
            return await op()

        return await self.loop.exclusive(session)

    async def disconnect(self) -> dict[str, Any]:
        return _state(await self._run(lambda: dlms_control.disconnect(self.link, self.client)))

    async def reconnect(self) -> dict[str, Any]:
        return _state(await self._run(lambda: dlms_control.reconnect(self.link, self.client)))

    async def state(self) -> dict[str, Any]:
        return _state(await self._run(lambda: dlms_control.supply_state(self.link, self.client)))

    async def limit(self, watts: int) -> dict[str, Any]:
        written = await self._run(lambda: dlms_control.set_power_limit(self.link, self.client, watts))
        return {"watts": written.watts}


def _state(s) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {"connected": s.connected, "control_state": s.control_state.name.lower()}


def _sink(hub: SmartHub, port: str = "han"):  # type: ignore[no-untyped-def]
    def accept(batch: PortBatch, t: datetime) -> None:
        hub.accept(batch, t, port=port)

    return accept


def dsmr_rig(
    hub: SmartHub,
    clock: Clock,
    start: datetime,
    profile: HouseholdProfile,
    elec: str,
    gas: str,
    period: timedelta = MINUTE,
) -> Rig:
    meter = DsmrMeterSimulator(elec, gas, profile, start=start)
    port = P1Port("p1")
    hub.attach(port)

    def deliver(data: bytes) -> None:
        # Stamp with the simulated send time: event-loop lag under an accelerated clock is
        # not the meter's clock drifting.
        hub.accept(port.receive(data), transport.sending_at, port="p1")

    transport = SimulatedP1Transport(meter, clock, deliver, period=period, start=start)
    return Rig(
        "dsmr",
        [(elec, "electricity"), (gas, "gas")],
        [(elec, IMPORT_ACTIVE_ENERGY), (elec, EXPORT_ACTIVE_ENERGY), (gas, GAS_VOLUME)],
        [transport],
    )


def iec_rig(
    hub: SmartHub,
    clock: Clock,
    start: datetime,
    profile: HouseholdProfile,
    serial: str,
    period: timedelta = MINUTE,
) -> Rig:
    meter = IecMeterSimulator(serial, "LGZ", profile, start=start)
    link = SimulatedLink(meter)
    loop = PollLoop(
        f"iec:{serial}",
        clock,
        simulated(link, iec_cycle(link)),
        _sink(hub, f"iec:{serial}"),
        period=period,
        start=start,
    )
    return Rig(
        "iec62056-21",
        [(serial, "electricity")],
        [(serial, IMPORT_ACTIVE_ENERGY), (serial, EXPORT_ACTIVE_ENERGY)],
        [loop],
    )


def zigbee_rig(
    hub: SmartHub,
    clock: Clock,
    start: datetime,
    profile: HouseholdProfile,
    elec: str,
    gas: str,
    period: timedelta = MINUTE,
) -> Rig:
    port = ZigbeePort("zigbee")
    loops = []
    for eui, device_type in ((elec, "electric"), (gas, "gas")):
        meter = ZigbeeMeterSimulator(eui, device_type, profile, start=start)
        hub.accept(port.receive_frame(eui, meter.formatting_report()), start)  # sent once on joining

        async def report(t: datetime, meter: ZigbeeMeterSimulator = meter, eui: str = eui) -> PortBatch:
            return port.receive_frame(eui, meter.report_at(t))

        loops.append(
            PollLoop(f"zigbee:{eui}", clock, report, _sink(hub, "zigbee"), period=period, start=start)
        )
    return Rig(
        "zigbee",
        [(elec, "electricity"), (gas, "gas")],
        [(elec, IMPORT_ACTIVE_ENERGY), (elec, EXPORT_ACTIVE_ENERGY), (gas, GAS_VOLUME)],
        loops,
    )


def mbus_rig(
    hub: SmartHub,
    clock: Clock,
    start: datetime,
    profile: HouseholdProfile,
    address: int,
    ident: int,
    medium: str = "water",
    period: timedelta = MINUTE,
) -> Rig:
    meter = MBusMeterSimulator(address, ident, "KAM", medium, profile, start=start, records_per_telegram=2)
    link = SimulatedLink(meter)
    cycle = mbus_cycle(link, address, tz=profile.tz)
    loop = PollLoop(
        f"mbus:{ident}",
        clock,
        simulated(link, cycle),
        _sink(hub, f"mbus:{address}"),
        period=period,
        start=start,
    )
    meter_id = f"KAM{ident:08d}"
    return Rig("mbus", [(meter_id, medium)], [(meter_id, _VOLUME_OBIS[medium])], [loop])


def wmbus_rig(
    hub: SmartHub,
    clock: Clock,
    start: datetime,
    profile: HouseholdProfile,
    port: WMBusPort,
    ident: int,
    medium: str,
    key: bytes,
    mode: int,
    period: timedelta = timedelta(seconds=30),
) -> Rig:
    """A battery meter transmitting in T-mode every ``period`` (OMS: at most every 30 s on average)."""
    meter = WMBusMeterSimulator(ident, "LSE", medium, key, profile, start=start, mode=mode)
    port.keys[meter.meter_id] = key  # installed at commissioning

    async def transmit(t: datetime) -> PortBatch:
        return port.receive(meter.frame_at(t))

    loop = PollLoop(f"wmbus:{ident}", clock, transmit, _sink(hub, port.name), period=period, start=start)
    return Rig("wmbus", [(meter.meter_id, medium)], [(meter.meter_id, _VOLUME_OBIS[medium])], [loop])


_VOLUME_OBIS = {"water": WATER_VOLUME, "gas": GAS_VOLUME}


def dlms_rig(
    hub: SmartHub,
    clock: Clock,
    start: datetime,
    profile: HouseholdProfile,
    system_title: bytes,
    keys: SecurityKeys,
    period: timedelta = MINUTE,
) -> Rig:
    """An encrypted (suite 0) DLMS/COSEM meter on HDLC, polled for its registers."""
    meter = DlmsMeterSimulator(system_title, system_title.hex().upper(), profile, start=start, keys=keys)
    return dlms_meter_rig(
        meter,
        hub,
        clock,
        start,
        system_title,
        keys,
        polled=(IMPORT_ACTIVE_ENERGY, EXPORT_ACTIVE_ENERGY, IMPORT_ACTIVE_POWER),
        channels=(IMPORT_ACTIVE_ENERGY, EXPORT_ACTIVE_ENERGY),
        fuel="electricity",
        period=period,
    )


def dlms_meter_rig(
    meter: DlmsMeterSimulator,
    hub: SmartHub,
    clock: Clock,
    start: datetime,
    system_title: bytes,
    keys: SecurityKeys,
    *,
    polled: tuple[ObisCode, ...],
    channels: tuple[ObisCode, ...],
    fuel: str,
    period: timedelta = MINUTE,
    name: str = "dlms",
) -> Rig:
    """A simulated DLMS meter on HDLC wired to ``hub``: polled for ``polled``, its half-hourly
    ``channels`` expected of it, its disconnect control (class 70) the rig's ``supply``."""
    link = SimulatedLink(meter)
    client = DlmsClient(client_sap=1, server_address=1, system_title=b"SHB" + system_title[3:], keys=keys)
    loop = PollLoop(
        f"{name}:{system_title.hex()}",
        clock,
        simulated(link, dlms_cycle(link, client, polled)),
        _sink(hub, "dlms"),
        period=period,
        start=start,
    )
    meter_id = system_title.hex().upper()
    return Rig(
        "dlms",
        [(meter_id, fuel)],
        [(meter_id, obis) for obis in channels],
        [loop],
        supply=SupplyControl(meter_id, link, client, loop),
    )


def smart_plug_rig(
    hub: SmartHub,
    clock: Clock,
    start: datetime,
    plugs: list[tuple[str, ApplianceProfile]],
    period: timedelta = MINUTE,
) -> Rig:
    """ZigBee SE smart plugs (one appliance each) reporting to the hub's ZigBee port."""
    port = hub.ports.get("zigbee")
    if not isinstance(port, ZigbeePort):
        port = hub.attach(ZigbeePort("zigbee"))
    assert isinstance(port, ZigbeePort)
    loops = []
    for eui, profile in plugs:
        # An ApplianceProfile has the methods the simulator asks of a household profile.
        meter = ZigbeeMeterSimulator(eui, "electric", profile, start=start, initial_wh=0)  # type: ignore[arg-type]
        hub.accept(port.receive_frame(eui, meter.formatting_report()), start, port="zigbee")

        async def report(t: datetime, meter: ZigbeeMeterSimulator = meter, eui: str = eui) -> PortBatch:
            assert isinstance(port, ZigbeePort)
            return port.receive_frame(eui, meter.report_at(t))

        loops.append(PollLoop(f"plug:{eui}", clock, report, _sink(hub, "zigbee"), period=period, start=start))
    meters = [(eui, "electricity") for eui, _ in plugs]
    return Rig("zigbee", meters, [(eui, IMPORT_ACTIVE_ENERGY) for eui, _ in plugs], loops)
