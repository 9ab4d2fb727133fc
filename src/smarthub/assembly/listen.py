"""``smarthub listen``: what an installer needs before writing a hub's meters into its config.

For N seconds, on the transports of a hub.toml (or on one ``--transport``), every meter heard
is noted: its id as the hub will know it, manufacturer, medium, protocol, whether its frames
are encrypted and whether the key the hub holds works (``works``, ``wrong``, ``missing`` or
``not needed``), how many frames were good or bad and the last problem, and the values
decoded (translated to OBIS where the mapping table knows them, raw otherwise). Polled meters
named in the configuration are polled once.

The transports, ports and codecs are the hub's own (:mod:`.links`); the :class:`Listener`
stands in for the hub core: it takes what the ports decode and keeps an account per meter
instead of storing readings.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from smarthub.assembly.config import HubConfig, MeterConfig, TransportConfig, zone_of
from smarthub.assembly.links import ConnectContext, Connection, Connector, connect
from smarthub.clock import Clock, SystemClock
from smarthub.han.dlms_push import DlmsPushPort
from smarthub.han.p1 import P1Port
from smarthub.han.poll import PollLoop
from smarthub.han.ports import Port, PortBatch
from smarthub.han.wmbus_port import WMBusPort
from smarthub.meters import mbus
from smarthub.meters.errors import DecodeError, KeyMissing, UnknownLayout, WrongKey, classify
from smarthub.meters.mapping import MappingTable
from smarthub.meters.wmbus import detect_crc
from smarthub.model.datapoint import DataPoint

_MEDIUM_OF_OBIS_A = {1: "electricity", 6: "heat", 7: "gas", 8: "water", 9: "hot water"}
_SECONDARY = re.compile(r"^[A-Z@]{3}\d{8}$")


@dataclass
class Heard:
    """One meter as heard on a transport (see the module docstring)."""

    meter: str
    protocol: str
    transport: str
    manufacturer: str | None = None
    medium: str | None = None
    version: int | None = None
    encrypted: bool | None = None
    key: str = "not needed"
    frames: int = 0
    bad_frames: int = 0
    problem: str | None = None
    configured: bool = False
    values: dict[str, str] = field(default_factory=dict)
    first: datetime | None = None
    last: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "meter": self.meter,
            "protocol": self.protocol,
            "transport": self.transport,
            "manufacturer": self.manufacturer,
            "medium": self.medium,
            "version": self.version,
            "encrypted": self.encrypted,
            "key": self.key,
            "frames": self.frames,
            "bad_frames": self.bad_frames,
            "problem": self.problem,
            "configured": self.configured,
            "values": self.values,
        }


@dataclass(frozen=True)
class WMBusHeader:
    manufacturer: str
    ident: str
    version: int
    medium: str
    security_mode: int | None  # None: no transport header to say

    @property
    def meter(self) -> str:
        return f"{self.manufacturer}{self.ident}"


def wmbus_header(frame: bytes, has_crc: bool) -> WMBusHeader | None:
    """The link header of a wM-Bus frame (EN 13757-4: L C M M A A A A A A) and the security mode
    of its transport header (the configuration word's bits 8-12, EN 13757-7), read without
    decrypting: what a receiver can tell of a meter whose key it does not hold."""
    body: bytes | bytearray = frame
    if has_crc:  # format A: a first block of 10 bytes, then blocks of up to 16, each with a CRC
        body, pos = bytearray(frame[:10]), 12
        while pos < len(frame):
            chunk = frame[pos : pos + 18][:-2]
            body += chunk
            pos += len(chunk) + 2
    if len(body) < 11:
        return None
    manufacturer = mbus.decode_manufacturer(int.from_bytes(body[2:4], "little"))
    ident = body[4:8][::-1].hex().upper()
    mode: int | None = None
    pos = 10
    try:
        while body[pos] in (0x8C, 0x8D, 0x90):  # ELL I, ELL II, AFL: skip to the transport layer
            pos += {0x8C: 3, 0x8D: 9}.get(body[pos], 0) or 2 + body[pos + 1]
        ci = body[pos]
        if ci == 0x7A:
            mode = int.from_bytes(body[pos + 3 : pos + 5], "little") >> 8 & 0x1F
        elif ci == 0x72:
            mode = int.from_bytes(body[pos + 11 : pos + 13], "little") >> 8 & 0x1F
        elif ci == 0x78:
            mode = 0
    except IndexError:
        mode = None
    return WMBusHeader(manufacturer, ident, body[8], mbus.medium_name(body[9]), mode)


class Listener:
    """The hub core's stand-in for listening (``attach`` ports, ``accept`` batches)."""

    def __init__(self, clock: Clock, configured: Iterable[MeterConfig] = ()) -> None:
        self.clock = clock
        self.heard: dict[tuple[str, str], Heard] = {}
        self.ports: dict[str, Port] = {}
        self.mapping = MappingTable.default()
        self.configured = {m.id: m for m in configured if m.id}
        self.unattributed: list[str] = []  # errors no meter can be named for
        self.on_new: list[Callable[[Heard], None]] = []

    def _meter(self, meter: str, protocol: str, transport: str) -> Heard:
        key = (meter, protocol)
        h = self.heard.get(key)
        if h is None:
            h = self.heard[key] = Heard(meter, protocol, transport, configured=meter in self.configured)
            if _SECONDARY.match(meter):
                h.manufacturer = meter[:3]
            elif protocol == "dlms" and re.fullmatch(r"[0-9A-F]{16}", meter):
                flag = bytes.fromhex(meter[:6])
                if flag.isalpha() and flag.isupper():
                    h.manufacturer = flag.decode()  # a system title starts with the maker's flag id
            for new in self.on_new:
                new(h)
        return h

    # -- the hub's face ----------------------------------------------------------------------------
    def attach(self, port: Port) -> Port:
        self.ports[port.name] = port
        if isinstance(port, WMBusPort):
            self._wrap_radio(port)
        elif isinstance(port, DlmsPushPort | P1Port):
            self._wrap_stream(port)
        return port

    def accept(
        self, batch: PortBatch, received: datetime | None = None, *, port: str = "han"
    ) -> list[DecodeError]:
        now = received or self.clock.now()
        for meter, protocol in dict.fromkeys((p.meter, p.protocol) for p in batch.points):
            h = self._meter(meter, protocol, port)
            h.first = h.first or now
            h.last = now
            h.frames += 1
            self._values(h, batch.points, now)
        for err in batch.errors:
            who = getattr(err, "meter", None)
            if who is None:
                self.unattributed.append(str(err))
                continue
            h = self._meter(who, err.protocol, port)
            h.bad_frames += 1
            kind = classify(err)[1]
            h.problem = f"{kind}: {err}"
            if isinstance(err, UnknownLayout) and err.values:
                h.problem += f" (values: {', '.join(err.values)})"
            if isinstance(err, KeyMissing):
                h.encrypted, h.key = True, "missing"
            elif isinstance(err, WrongKey):
                h.encrypted, h.key = True, "wrong"
        return batch.errors

    def _values(self, h: Heard, points: list[DataPoint], now: datetime) -> None:
        mine = [p for p in points if p.meter == h.meter]
        translation = self.mapping.translate(mine, now)
        for r in translation.readings:
            h.values[str(r.obis)] = f"{r.value} {r.unit.value}"
            h.medium = h.medium or _MEDIUM_OF_OBIS_A.get(r.obis.a)
        for u in translation.unmapped:
            h.values[u.point.key] = f"{u.point.value} {u.point.unit or ''}".rstrip()
        if h.medium is None and mine and ":" in mine[0].key and h.protocol in ("mbus", "wmbus", "zigbee"):
            h.medium = mine[0].key.split(":", 1)[0]

    def _wrap_radio(self, radio: WMBusPort) -> None:
        receive = radio.receive

        def listened(data: bytes, **reception: float | None) -> PortBatch:
            has_crc = radio.has_crc
            if has_crc is None:
                try:
                    has_crc = detect_crc(data)[0]
                except DecodeError:
                    has_crc = False
            header = wmbus_header(data, has_crc)
            batch = receive(data, **reception)  # the receiver's level and sensitivity, if it gives them
            if header is not None:
                h = self._meter(header.meter, "wmbus", radio.name)
                h.manufacturer, h.version = header.manufacturer, header.version
                h.medium = header.medium
                if header.security_mode is not None:
                    h.encrypted = header.security_mode != 0
                if batch.points:
                    h.key = "works" if h.encrypted else "not needed"
                    h.problem = None
            return batch

        radio.receive = listened  # type: ignore[method-assign]

    def _wrap_stream(self, port: DlmsPushPort | P1Port) -> None:
        receive = port.receive

        def listened(data: bytes, **reception: float | None) -> PortBatch:
            batch = receive(data)
            ciphered = isinstance(port, DlmsPushPort) and b"\xdb\x08" in data  # general-glo-ciphering
            manufacturer = None
            if isinstance(port, P1Port) and (m := re.search(rb"/([A-Za-z]{3})\d", data)):
                manufacturer = m.group(1).decode().upper()  # the telegram's identification line
            for meter in {p.meter for p in batch.points}:
                h = self._meter(meter, port.protocol, port.name)
                if manufacturer:
                    h.manufacturer = manufacturer
                if ciphered:
                    h.encrypted, h.key = True, "works"
                elif isinstance(port, DlmsPushPort):
                    h.encrypted = False
            for err in batch.errors:
                if getattr(err, "meter", None) is None and isinstance(port, DlmsPushPort):
                    err.meter = "dlms HAN port"  # type: ignore[attr-defined]  # it names no meter yet
            return batch

        port.receive = listened  # type: ignore[method-assign]

    def report(self) -> list[Heard]:
        return sorted(self.heard.values(), key=lambda h: (h.protocol, h.meter))


async def listen(
    config: HubConfig,
    seconds: float,
    *,
    clock: Clock | None = None,
    connectors: dict[str, Connector] | None = None,
    on_new: Callable[[Heard], None] | None = None,
) -> Listener:
    """Listen on every transport of ``config`` for ``seconds``, polling its polled meters once."""
    clock = clock or SystemClock()
    listener = Listener(clock, config.meters)
    if on_new is not None:
        listener.on_new.append(on_new)
    table = {"serial": connect, "tcp": connect, "pipe": connect, **(connectors or {})}
    ctx = ConnectContext(listener, clock, config.hub_id, lambda m: ZoneInfo(zone_of(config, m)))  # type: ignore[arg-type]
    connections: list[Connection] = []
    for transport, meters in config.transports:
        connections += table[transport.kind](ctx, transport, meters)
    tasks = []
    for conn in connections:
        for loop in conn.loops:
            if isinstance(loop, PollLoop):
                tasks.append(asyncio.create_task(loop.poll_now()))
            else:
                tasks.append(asyncio.create_task(loop.run(None)))
    try:
        await asyncio.sleep(seconds)
    finally:
        for conn in connections:
            await conn.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return listener


def transport_spec(spec: str, protocol: str, *, receiver: str | None = None) -> TransportConfig:
    """``serial:DEVICE[:BAUD[:FORMAT]]``, ``tcp:HOST:PORT`` or ``pipe:PATH`` (``-`` for standard
    input) as a transport to listen on."""
    kind, _, rest = spec.partition(":")
    if kind == "serial" and rest:
        device, *more = rest.split(":")
        baud = int(more[0]) if more else None
        return TransportConfig(
            "serial",
            "listen",
            device=device,
            baud=baud,
            format=more[1] if len(more) > 1 else None,
            receiver=receiver,
        )
    if kind == "tcp" and rest.count(":") >= 1:
        host, _, port = rest.rpartition(":")
        return TransportConfig("tcp", "listen", host=host, port=int(port), receiver=receiver or "hex-lines")
    if kind == "pipe" or spec == "-":
        return TransportConfig("pipe", "listen", path=rest or "-", receiver="hex-lines")
    raise ValueError(f"--transport {spec!r}: serial:DEVICE[:BAUD[:FORMAT]], tcp:HOST:PORT or pipe:PATH")


def one_transport_config(
    spec: str, protocol: str, *, receiver: str | None = None, keys: dict[str, bytes] | None = None
) -> HubConfig:
    """A configuration for listening on one transport: meters named only by the keys given."""
    from pathlib import Path

    transport = transport_spec(spec, protocol, receiver=receiver)
    mode = "poll" if protocol in ("iec62056-21", "mbus") else "push"
    meters = [
        MeterConfig(protocol, transport, id=meter, mode=mode, key=key) for meter, key in (keys or {}).items()
    ]
    if not meters:
        # The one meter a polled bus or a probe answers for (M-Bus 254: any slave, IEC: any device).
        meters = [MeterConfig(protocol, transport, mode=mode, address=254 if protocol == "mbus" else None)]
    return HubConfig("LISTEN", Path("."), Path("."), Path("."), Path("."), meters=tuple(meters))
