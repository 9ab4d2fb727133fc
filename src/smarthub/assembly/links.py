"""From a configured transport and its meters to what the hub runs: ports, links, poll loops.

A :class:`Connection` is one device as the hub reaches it (a polled meter with its poll loop,
or a pushed stream with the meters heard on it): the meters it carries, the loops to run, and
what the hub's repairs and supply commands may act on. Real transports are connected here
(:func:`connect`); the simulated fleet brings its own connector for ``kind = "simulated"``
(``smarthub.sim.rigs``), and the assembly wires every connection the same way whichever made it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from smarthub.assembly.config import SERIAL_DEFAULTS, ConfigError, MeterConfig, TransportConfig, load_profiles
from smarthub.clock import Clock
from smarthub.han.dlms_control import SupplyControl
from smarthub.han.dlms_poll import DlmsPath, DlmsPaths
from smarthub.han.dlms_push import DlmsPushPort
from smarthub.han.iec_poll import iec_cycle
from smarthub.han.im871a import Im871aReceiver, ping
from smarthub.han.lines import PipeStream, WMBusLines, ZigbeeLines
from smarthub.han.mbus_poll import mbus_cycle
from smarthub.han.p1 import P1Port
from smarthub.han.poll import Cycle, Link, PollLoop
from smarthub.han.ports import HanPort, PortBatch
from smarthub.han.serial_port import SerialLink, SerialStream
from smarthub.han.sml_port import SmlPort
from smarthub.han.tcp import TcpLink, TcpStreamTransport
from smarthub.han.wmbus_port import WMBusPort
from smarthub.han.zigbee_port import ZigbeePort
from smarthub.hub.hub import SmartHub
from smarthub.hub.keys import KeyRing
from smarthub.hub.repairs import DlmsMeterAccess
from smarthub.meters.dlms.client import DlmsClient
from smarthub.meters.dlms.security import SecurityKeys
from smarthub.meters.errors import classify
from smarthub.model import ObisCode

log = logging.getLogger(__name__)

DEFAULT_DLMS_REGISTERS = (
    ObisCode.parse("1-0:1.8.0"),
    ObisCode.parse("1-0:2.8.0"),
    ObisCode.parse("1-0:1.7.0"),
)


@dataclass
class Connection:
    """One device as the hub reaches it. ``loops`` are objects with ``async run(until)`` (poll
    loops, a stream's reader); ``channels`` the interval channels it must deliver, where known
    (the simulated fleet counts them); ``supply`` a breaker the hub may switch; ``access`` what
    the repairs need of a DLMS meter (paths, keys); ``radio`` a wireless receiver's port."""

    protocol: str
    meters: list[tuple[str, str]]  # (meter id as its protocol reports it, fuel)
    channels: list[tuple[str, ObisCode]] = field(default_factory=list)
    loops: list[Any] = field(default_factory=list)
    supply: SupplyControl | None = None
    access: DlmsMeterAccess | None = None
    radio: WMBusPort | None = None
    period: timedelta | None = None  # how often the device is heard from, when fixed
    closers: list[Callable[[], Any]] = field(default_factory=list)

    def runs(self, until: datetime | None) -> list[Coroutine[Any, Any, None]]:
        return [loop.run(until) for loop in self.loops]

    @property
    def failures(self) -> int:
        return sum(getattr(loop, "failures", 0) for loop in self.loops)

    async def close(self) -> None:
        for close in self.closers:
            result = close()
            if inspect.isawaitable(result):
                with contextlib.suppress(OSError):
                    await result


@dataclass
class ConnectContext:
    hub: SmartHub
    clock: Clock
    hub_id: str
    zone: Callable[[MeterConfig], ZoneInfo]  # the zone of a meter's wall clock


class Connector(Protocol):
    def __call__(
        self, ctx: ConnectContext, transport: TransportConfig, meters: list[MeterConfig]
    ) -> list[Connection]: ...


def port_name(transport: TransportConfig, protocol: str) -> str:
    """A transport's name as the hub's ports and diagnostics know it."""
    if transport.name and not transport.name.startswith("meters["):
        return transport.name
    where = {"serial": transport.device, "tcp": f"{transport.host}:{transport.port}", "pipe": transport.path}
    return f"{protocol}@{where.get(transport.kind) or transport.name}"


class StreamRunner:
    """A pushed byte stream as a loop: runs the transport until stopped (``until`` is for the
    simulated loops; a real line runs until the hub stops). ``hello`` is written once the line
    is open (a stick's ping)."""

    def __init__(self, transport: Any, hello: bytes | None = None) -> None:
        self.transport = transport
        self.hello = hello
        self.failures = 0

    async def run(self, until: datetime | None = None) -> None:
        if self.hello is not None and hasattr(self.transport, "write"):
            task = asyncio.ensure_future(self.transport.run())
            if not await self.transport.write(self.hello):
                log.warning("%s: the line did not open to greet the receiver", self.transport)
            await task
        else:
            await self.transport.run()

    def stop(self) -> None:
        self.transport.stop()


def _stream(transport: TransportConfig, protocol: str, sink: Callable[[bytes], None]) -> Any:
    if transport.kind == "serial":
        baud, fmt = SERIAL_DEFAULTS[protocol]
        return SerialStream(
            str(transport.device), sink, baud=transport.baud or baud, format=transport.format or fmt
        )
    if transport.kind == "tcp":
        return TcpStreamTransport(str(transport.host), int(transport.port or 0), sink)
    if transport.kind == "pipe":
        return PipeStream(transport.path or "-", sink)
    raise ConfigError(f"no {transport.kind} transport for {protocol}", field=transport.name)


def _link(transport: TransportConfig, protocol: str) -> Link:
    if transport.kind == "serial":
        baud, fmt = SERIAL_DEFAULTS[protocol]
        return SerialLink(str(transport.device), baud=transport.baud or baud, format=transport.format or fmt)
    if transport.kind == "tcp":
        return TcpLink(str(transport.host), int(transport.port or 0))
    raise ConfigError(f"a polled {protocol} meter needs a serial or tcp transport", field=transport.name)


def dlms_keys(m: MeterConfig) -> SecurityKeys | None:
    if m.key is None:
        return None
    # Many HAN ports (and suite 0 meters without a separate AK) use one key for both.
    return SecurityKeys(m.key, m.authentication_key or m.key)


def client_title(hub_id: str) -> bytes:
    """The hub's DLMS system title when the configuration gives none: "SHB" and 5 bytes of the
    hub id's hash (the first three bytes name the maker, IEC 62056-5-3 §4.3.4)."""
    return b"SHB" + hashlib.sha256(hub_id.encode()).digest()[:5]


def connect(ctx: ConnectContext, transport: TransportConfig, meters: list[MeterConfig]) -> list[Connection]:
    """Real transports: serial, TCP and pipes."""
    if all(m.mode == "push" for m in meters):
        return [_push(ctx, transport, meters)]
    return _polled(ctx, transport, meters)


def _push(ctx: ConnectContext, transport: TransportConfig, meters: list[MeterConfig]) -> Connection:
    protocol = meters[0].protocol
    name = port_name(transport, protocol)
    tz = ctx.zone(meters[0])
    receive: Callable[[bytes], list[PortBatch]]
    port: HanPort
    radio = None
    hello = None
    if protocol == "dsmr":
        p1 = P1Port(name, tz=tz)
        port, receive = p1, lambda data: [p1.receive(data)]
    elif protocol == "dlms":
        if len(meters) > 1:
            raise ConfigError(
                f"{transport.describe()}: one DLMS HAN port pushes one meter's lists", field=transport.name
            )
        m = meters[0]
        profiles = load_profiles(m.list_profiles) if m.list_profiles is not None else None
        push = DlmsPushPort(name, dlms_keys(m), framing=m.framing, meter=m.id, profiles=profiles, tz=tz)  # type: ignore[arg-type]
        port, receive = push, lambda data: [push.receive(data)]
    elif protocol == "sml":
        sml = SmlPort(name)  # the meter names itself (its device id)
        port, receive = sml, lambda data: [sml.receive(data)]
    elif protocol == "wmbus":
        crc = {"auto": None, "present": True, "stripped": False}[transport.link_crc]
        radio = WMBusPort(name, KeyRing(), tz=tz, has_crc=crc)
        for m in meters:
            if m.id and m.key is not None:
                radio.keys[m.id] = m.key  # installed at commissioning
        port = radio
        if transport.kind != "pipe" and transport.receiver == "im871a":
            radio.has_crc = False  # the stick checks and strips the link CRCs
            stick = Im871aReceiver(radio)
            receive = stick.receive
            hello = ping()
        else:
            receive = WMBusLines(radio).receive
    elif protocol == "zigbee":
        zb = ZigbeePort(name)
        port, receive = zb, ZigbeeLines(zb).receive
    else:
        raise ConfigError(f"{protocol} has no port in this build", field=transport.name)
    ctx.hub.attach(port)
    hub = ctx.hub

    def sink(data: bytes) -> None:
        for batch in receive(data):
            for err in hub.accept(batch, port=name):
                log.info("%s: rejected frame (%s): %s", name, classify(err)[1], err)

    stream = _stream(transport, protocol, sink)
    runner = StreamRunner(stream, hello)
    return Connection(
        protocol,
        [(m.id, m.fuel) for m in meters if m.id],
        loops=[runner],
        radio=radio,
        closers=[stream.stop],
    )


def _polled(ctx: ConnectContext, transport: TransportConfig, meters: list[MeterConfig]) -> list[Connection]:
    protocol = meters[0].protocol
    name = port_name(transport, protocol)
    link = _link(transport, protocol)
    lock = asyncio.Lock()  # meters on one bus are polled one at a time
    hub = ctx.hub
    out = []
    for m in meters:
        tz = ctx.zone(m)
        supply = access = None
        cycle: Cycle
        if protocol == "iec62056-21":
            # A TCP gateway runs its serial side at one rate: the hub keeps the sign-on rate.
            max_baud = m.max_baud if transport.kind == "serial" else 300
            cycle = iec_cycle(link, address=m.device_address, meter_id=m.id, tz=tz, max_baud=max_baud)
            loop_name = f"iec:{m.id or m.device_address or name}"
        elif protocol == "mbus":
            cycle = mbus_cycle(
                link, m.address or 0, tz=tz, secondary=m.secondary, manufacturer=m.manufacturer
            )
            loop_name = f"mbus:{m.id or m.secondary or m.address}"
        elif protocol == "dlms":
            cycle, loop_name = _dlms_cycle_placeholder, f"dlms:{m.id}"
        else:
            raise ConfigError(f"{protocol} meters are not polled", field=transport.name)

        def sink(batch: PortBatch, t: datetime, port: str = name) -> None:
            for err in hub.accept(batch, t, port=port):
                log.info("%s: rejected answer (%s): %s", port, classify(err)[1], err)

        loop = PollLoop(loop_name, ctx.clock, _locked(lock, cycle), sink, period=m.poll_every)
        if protocol == "dlms":
            access, supply = _dlms(ctx, transport, link, m, loop, lock)
        out.append(
            Connection(
                protocol,
                [(m.id, m.fuel)] if m.id else [],
                loops=[loop],
                supply=supply,
                access=access,
                period=m.poll_every,
            )
        )
    closer = getattr(link, "close", None)
    if closer is not None and out:
        out[0].closers.append(closer)
    return out


async def _dlms_cycle_placeholder(t: datetime) -> PortBatch:  # replaced by the meter's paths
    raise RuntimeError("DLMS poll loop used before its paths were set")


def _locked(lock: asyncio.Lock, cycle: Cycle) -> Cycle:
    async def run(t: datetime) -> PortBatch:
        async with lock:
            return await cycle(t)

    return run


def _dlms(
    ctx: ConnectContext,
    transport: TransportConfig,
    link: Link,
    m: MeterConfig,
    loop: PollLoop,
    lock: asyncio.Lock,
) -> tuple[DlmsMeterAccess, SupplyControl | None]:
    """A polled DLMS meter: its client on the configured path (and the fallback's), the paths the
    loop polls through, its keys in a ring for the re-key repair, its breaker if it may be switched."""
    assert m.id is not None
    keys = dlms_keys(m)
    title = m.client_system_title or client_title(ctx.hub_id)

    def client(framing: str) -> DlmsClient:
        return DlmsClient(
            client_sap=m.client_sap,
            server_address=m.address if m.address is not None else 1,
            system_title=title,
            keys=keys,
            transport=framing,  # type: ignore[arg-type]
            server_physical=m.physical_address,
        )

    main = client(m.framing)
    paths = [DlmsPath(transport.kind, link, main)]
    if m.fallback is not None:
        framing = "wrapper" if m.fallback.kind == "tcp" else "hdlc"
        paths.append(DlmsPath(f"fallback-{m.fallback.kind}", _link(m.fallback, "dlms"), client(framing)))
    dlms_paths = DlmsPaths(m.id, paths, m.registers or DEFAULT_DLMS_REGISTERS)
    loop.cycle = _locked(lock, dlms_paths.cycle)
    ring: KeyRing[SecurityKeys] = KeyRing()
    if keys is not None:
        ring[m.id] = keys
    supply = SupplyControl(m.id, link, main, loop) if m.breaker else None
    return DlmsMeterAccess(dlms_paths, loop, ring), supply
