"""Meter rigs: a simulated meter, the HAN path to the hub it belongs to, and the loop that
drives it (the meter pushing, or the hub polling). Each rig knows which interval channels
its meters must deliver, so the demo can count what is expected.

Every rig goes through the same production code as a real meter would: the hub's ports,
poll cycles and sans-I/O codecs; only the meter and the wire are simulated.

:func:`simulated_connector` makes rigs for a hub configuration's ``kind = "simulated"``
transports, so a simulated home is built by the same assembly as ``smarthub hub``
(:mod:`smarthub.assembly`): the transport's ``options`` hold the simulator's settings (``seed``
and ``pv_kwp`` of the household, ``mode`` of the wM-Bus meters, a ``neighbour`` meter the radio
hears).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from smarthub.assembly.config import MeterConfig, TransportConfig
from smarthub.assembly.links import ConnectContext, Connection, Connector
from smarthub.clock import Clock
from smarthub.han.dlms_control import SupplyControl
from smarthub.han.dlms_poll import DlmsPath, DlmsPaths, dlms_cycle
from smarthub.han.iec_poll import iec_cycle
from smarthub.han.mbus_poll import mbus_cycle
from smarthub.han.p1 import P1Port
from smarthub.han.poll import PollLoop, SimulatedLink, simulated
from smarthub.han.ports import PortBatch
from smarthub.han.sml_port import SmlPort
from smarthub.han.transport import SimulatedP1Transport
from smarthub.han.wmbus_port import WMBusPort
from smarthub.han.zigbee_port import ZigbeePort
from smarthub.hub.hub import SmartHub
from smarthub.hub.keys import KeyRing
from smarthub.hub.repairs import DlmsMeterAccess
from smarthub.meters.dlms.client import DlmsClient
from smarthub.meters.dlms.security import SecurityKeys
from smarthub.model import ObisCode
from smarthub.model.obis import (
    EXPORT_ACTIVE_ENERGY,
    GAS_VOLUME,
    HCA_UNITS,
    HOT_WATER_VOLUME,
    IMPORT_ACTIVE_ENERGY,
    IMPORT_ACTIVE_POWER,
    WATER_VOLUME,
)
from smarthub.sim.appliance_profiles import APPLIANCES, ApplianceProfile
from smarthub.sim.dlms_meter import DlmsMeterSimulator
from smarthub.sim.dsmr_meter import DsmrMeterSimulator
from smarthub.sim.iec_meter import IecMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.mbus_meter import MBusMeterSimulator
from smarthub.sim.radio import RadioLink
from smarthub.sim.sml_meter import SmlMeterSimulator
from smarthub.sim.wmbus_meter import WMBusMeterSimulator
from smarthub.sim.wmbus_submeters import HcaSimulator, WaterMeterSimulator
from smarthub.sim.zigbee_meter import ZigbeeMeterSimulator

MINUTE = timedelta(minutes=1)


# A rig is a connection the simulated fleet makes (see smarthub.assembly.links.Connection).
Rig = Connection


def _sink(hub: SmartHub, port: str = "han"):
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
    radio: Mapping[str, RadioLink] | None = None,
) -> Rig:
    """``radio``: each meter's link (:mod:`smarthub.sim.radio`), where its frames get their
    received level and may be lost; a meter without one is heard perfectly."""
    port = ZigbeePort("zigbee")
    loops = []
    for eui, device_type in ((elec, "electric"), (gas, "gas")):
        meter = ZigbeeMeterSimulator(eui, device_type, profile, start=start)
        hub.accept(port.receive_frame(eui, meter.formatting_report()), start)  # sent once on joining

        link = (radio or {}).get(eui)

        async def report(
            t: datetime, meter: ZigbeeMeterSimulator = meter, eui: str = eui, link: RadioLink | None = link
        ) -> PortBatch:
            frame = meter.report_at(t)
            if link is None:
                return port.receive_frame(eui, frame)
            got = link.carry(frame)
            if got is None:
                return PortBatch()  # lost on the air: the hub hears nothing this time
            level, floor = got[1], link.medium.sensitivity_dbm
            return port.receive_frame(eui, got[0], rssi_dbm=level, sensitivity_dbm=floor)

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
    link: RadioLink | None = None,
) -> Rig:
    """A battery meter transmitting in T-mode every ``period`` (OMS: at most every 30 s on average);
    ``link``: its radio link (:mod:`smarthub.sim.radio`), else heard perfectly."""
    meter = WMBusMeterSimulator(ident, "LSE", medium, key, profile, start=start, mode=mode)
    port.keys[meter.meter_id] = key  # installed at commissioning

    async def transmit(t: datetime) -> PortBatch:
        frame = meter.frame_at(t)
        if link is None:
            return port.receive(frame)
        got = link.carry(frame)
        if got is None:
            return PortBatch()  # lost on the air (T-mode is one-way: no retry)
        return port.receive(got[0], rssi_dbm=got[1], sensitivity_dbm=link.medium.sensitivity_dbm)

    loop = PollLoop(f"wmbus:{ident}", clock, transmit, _sink(hub, port.name), period=period, start=start)
    return Rig("wmbus", [(meter.meter_id, medium)], [(meter.meter_id, _VOLUME_OBIS[medium])], [loop])


_VOLUME_OBIS = {"water": WATER_VOLUME, "gas": GAS_VOLUME}
# A flat's sub-meters (issue 21): the register each delivers as half-hourly intervals.
SUBMETER_OBIS = {"heat_cost_allocator": HCA_UNITS, "water": WATER_VOLUME, "warm_water": HOT_WATER_VOLUME}


def submeter_rig(
    hub: SmartHub,
    clock: Clock,
    start: datetime,
    profile: HouseholdProfile,
    port: WMBusPort,
    meter_id: str,
    medium: str,
    key: bytes,
    period: timedelta,
    *,
    radiator_share_permille: int = 200,
    persons: int = 2,
    silent_from: datetime | None = None,
) -> Rig:
    """A sub-meter of a flat radiating the frames of a widely deployed device (issue 21): a
    heat-cost allocator as the Qundis Q caloric (``QDS…``, OMS mode 5, EN 834 units), a cold or
    hot water meter as the Diehl HYDRUS (``DME…``, OMS mode 7 behind ELL and AFL); the frames
    decoded by the hub's wM-Bus port like a receiver stick's. ``silent_from``: the meter fails then
    (a dead battery: nothing more on the air)."""
    manufacturer, ident = meter_id[:3], int(meter_id[3:])
    meter: HcaSimulator | WaterMeterSimulator
    if medium == "heat_cost_allocator":
        meter = HcaSimulator(
            ident,
            key,
            profile,
            start,
            manufacturer=manufacturer,
            radiator_share_permille=radiator_share_permille,
        )
    elif medium in ("water", "warm_water"):
        meter = WaterMeterSimulator(
            ident, key, profile, start, medium=medium, manufacturer=manufacturer, persons=persons
        )
    else:
        raise ValueError(f"no sub-meter simulator for {medium!r}")
    if meter.meter_id != meter_id:
        raise ValueError(f"sub-meter id {meter_id!r}: three letters of its maker, then 8 digits")
    port.keys[meter_id] = key  # installed at commissioning

    async def transmit(t: datetime) -> PortBatch:
        if silent_from is not None and t >= silent_from:
            return PortBatch()
        return port.receive(meter.frame_at(t))

    loop = PollLoop(f"wmbus:{meter_id}", clock, transmit, _sink(hub, port.name), period=period, start=start)
    return Rig("wmbus", [(meter_id, medium)], [(meter_id, SUBMETER_OBIS[medium])], [loop])


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


def sml_rig(
    hub: SmartHub,
    clock: Clock,
    start: datetime,
    profile: HouseholdProfile,
    port_name: str,
    meter_id: str,
    period: timedelta = MINUTE,
) -> Rig:
    """A German meter's optical interface pushing an SML file every ``period``; ``meter_id`` is
    its server id in hex (0A 01, the maker's three letters, 00, the serial)."""
    raw = bytes.fromhex(meter_id)
    meter = SmlMeterSimulator(raw[2:5].decode(), int.from_bytes(raw[6:10], "big"), profile, start=start)
    port = hub.ports.get(port_name)
    if not isinstance(port, SmlPort):
        port = hub.attach(SmlPort(port_name))
    assert isinstance(port, SmlPort)

    async def push(t: datetime) -> PortBatch:
        assert isinstance(port, SmlPort)
        return port.receive(meter.file_at(t))

    loop = PollLoop(f"sml:{meter_id}", clock, push, _sink(hub, port_name), period=period, start=start)
    return Rig("sml", [(meter.meter_id, "electricity")], [(meter.meter_id, IMPORT_ACTIVE_ENERGY)], [loop])


# The registers the hub polls from its DLMS meters (as dlms_rig does).
DLMS_REGISTERS = (IMPORT_ACTIVE_ENERGY, EXPORT_ACTIVE_ENERGY, IMPORT_ACTIVE_POWER)


def dlms_access(meter: str, link: SimulatedLink, client: DlmsClient, loop: PollLoop) -> DlmsMeterAccess:
    """A simulated DLMS meter as the hub's repairs reach it: its HDLC port (the rig's link and
    client) and, as the fallback path, its TCP wrapper port, polled by ``loop`` on the active one;
    its suite 0 keys in a ring so a re-key can try another."""
    sim = link.meter
    assert hasattr(sim, "interface"), "a DLMS rig's link leads to a DlmsMeterSimulator"
    wrapper = DlmsClient(
        client_sap=client.client_sap,
        server_address=1,
        system_title=client.system_title,
        keys=client.keys,
        transport="wrapper",
    )
    paths = DlmsPaths(
        meter,
        [
            DlmsPath("hdlc", link, client),
            DlmsPath("wrapper", SimulatedLink(sim.interface("wrapper")), wrapper),
        ],
        DLMS_REGISTERS,
    )
    loop.cycle = paths.cycle
    ring: KeyRing[SecurityKeys] = KeyRing()
    if client.keys is not None:
        ring[meter] = client.keys
    return DlmsMeterAccess(paths, loop, ring)


_APPLIANCE = {a.name: a for a in APPLIANCES}


def simulated_connector(
    clock: Clock,
    start: datetime,
    telegram_period: timedelta,
    radio_links: Mapping[str, RadioLink] | None = None,
    households: dict[tuple[str, int, float], HouseholdProfile] | None = None,
) -> Connector:
    """Rigs for ``kind = "simulated"`` transports: the protocol's simulator behind a simulated
    wire, started at ``start`` on ``clock``. A P1 meter telegrams every ``telegram_period``; the
    others report or are polled every meter's ``poll_every``. One household profile per hub
    and seed, shared by its meters (their loads add up to one home). ``radio_links``: the radio links of
    meters placed in a home (by meter id), through which their frames travel. ``households``:
    where the profiles are kept, by (hub, seed, PV kWp), for the caller to reach them."""
    profiles: dict[tuple[str, int, float], HouseholdProfile] = {} if households is None else households

    def household(ctx: ConnectContext, options: dict[str, Any]) -> HouseholdProfile:
        key = (ctx.hub_id, int(options.get("seed", 0)), float(options.get("pv_kwp", 0.0)))
        if key not in profiles:
            profiles[key] = HouseholdProfile(key[1], pv_kwp=key[2])
        return profiles[key]

    def connect(ctx: ConnectContext, transport: TransportConfig, meters: list[MeterConfig]) -> list[Rig]:
        options = dict(transport.options)
        profile = household(ctx, options)
        hub, protocol = ctx.hub, meters[0].protocol
        by_fuel = {m.fuel: m.id for m in meters}
        if protocol == "dsmr":
            elec, gas = str(by_fuel["electricity"]), str(by_fuel["gas"])
            return [dsmr_rig(hub, clock, start, profile, elec, gas, telegram_period)]
        if protocol == "dlms":
            rigs = []
            for m in meters:
                title = bytes.fromhex(str(m.id))
                keys = SecurityKeys(m.key, m.authentication_key or m.key) if m.key else None
                rig = dlms_rig(hub, clock, start, profile, title, keys, m.poll_every)  # type: ignore[arg-type]
                assert rig.supply is not None
                rig.access = dlms_access(str(m.id), rig.supply.link, rig.supply.client, rig.loops[0])  # type: ignore[arg-type]
                if not m.breaker:
                    rig.supply = None
                rigs.append(rig)
            return rigs
        if protocol == "wmbus":
            radio = hub.attach(WMBusPort(transport.name, KeyRing(), tz=profile.tz))
            assert isinstance(radio, WMBusPort)
            if options.get("submeters"):
                # A flat's (or a basement's) sub-meters: allocators and water meters of real makes.
                shares = options.get("radiator_shares") or {}
                silent = {m: datetime.fromisoformat(t) for m, t in (options.get("silent_from") or {}).items()}
                return [
                    submeter_rig(
                        hub, clock, start, profile, radio, str(m.id), m.fuel, m.key, m.poll_every,  # type: ignore[arg-type]
                        radiator_share_permille=int(shares.get(str(m.id), 200)),
                        persons=1 if m.fuel == "warm_water" else 2,
                        silent_from=silent.get(str(m.id)),
                    )
                    for m in meters
                ]  # fmt: skip
            mode = int(options.get("mode", 5))
            rigs = [
                wmbus_rig(
                    hub, clock, start, profile, radio, int(str(m.id)[3:]), m.fuel, m.key,  # type: ignore[arg-type]
                    mode=mode, period=m.poll_every, link=(radio_links or {}).get(str(m.id)),
                )
                for m in meters
            ]  # fmt: skip
            rigs[0].radio = radio
            neighbour = options.get("neighbour")
            if neighbour is not None:
                # The next-door meter, whose frames this home's receiver hears too. Even with its
                # key known (the same installer fitted both) it is not commissioned here.
                rig = wmbus_rig(
                    hub, clock, start, HouseholdProfile(int(neighbour["seed"])), radio,
                    int(neighbour["ident"]), "water", bytes.fromhex(neighbour["key"]),
                    mode=5, period=meters[0].poll_every,
                )  # fmt: skip
                rigs.append(Rig("wmbus-neighbour", [], [], rig.loops))
            return rigs
        if protocol == "iec62056-21":
            return [iec_rig(hub, clock, start, profile, str(m.id), m.poll_every) for m in meters]
        if protocol == "mbus":
            return [
                mbus_rig(hub, clock, start, profile, m.address or 0, int(str(m.id)[3:]), m.fuel, m.poll_every)
                for m in meters
            ]
        if protocol == "zigbee":
            plugs = [(str(m.id), _APPLIANCE[str(m.appliance)]) for m in meters if m.appliance]
            if plugs:
                return [smart_plug_rig(hub, clock, start, plugs, meters[0].poll_every)]
            elec, gas = str(by_fuel["electricity"]), str(by_fuel["gas"])
            return [zigbee_rig(hub, clock, start, profile, elec, gas, meters[0].poll_every, radio_links)]
        if protocol == "sml":
            return [
                sml_rig(hub, clock, start, profile, transport.name, str(m.id), m.poll_every) for m in meters
            ]
        raise ValueError(f"no simulator for {protocol} meters")

    return connect
