"""Benchmark: one Smart Hub process with 100 meters of mixed protocols at their real reporting
rates, in real time, fed over its real transports by simulated meters in *another* process.
Prints the hub process's memory (RSS) and CPU, and the time from a reading arriving at the hub
to it being visible in the data mirror (issue 4 goals: RSS ≤ 64 MB, arrival → mirror ≤ 1 s).

Three processes, so the hub's figures are its own (no simulator or PKI code in its memory):

* **meters** (``--role meters``): the simulated meters behind their wires. A DSMR P1 meter (a
  telegram every second, electricity + gas = 2 meters) on a raw TCP stream, as a P1 dongle or
  ser2net republishes it; 60 wireless M-Bus meters (a T-mode frame every 30 s, AES mode 5) and
  11 ZigBee SE meters (a report every 30 s) through a radio-to-TCP bridge that frames each
  packet (see :class:`RadioFramer`), transmissions spread over the period as real battery
  meters' are; 20 wired M-Bus meters (polled every 5 min), 4 encrypted DLMS/COSEM meters on HDLC
  (every minute) and 3 IEC 62056-21 meters (every 5 min), each behind its own serial-to-TCP
  port. 99 devices, 100 meters.
* **hub** (``--role hub``): the hub ``smarthub hub`` runs, built by the same assembly
  (:func:`smarthub.assembly.hub.build_hub`: encrypted history, registry, diagnostics with
  repairs and housekeeping, management interface, privacy filter, firmware, the WAN server with
  mutual TLS) from a configuration of TCP transports: the production ports, poll loops and
  :class:`~smarthub.han.tcp.TcpStreamTransport` / :class:`~smarthub.han.tcp.TcpLink`, and the
  bench's radio bridge as a connector. It imports exactly :data:`HUB_IMPORTS`.
* **this process**: provisions keys and certificates, starts both, and half-way through pulls
  the hub once over its WAN face (a GDSC collector's DeviceCapability, UsagePointList and
  LogEventList) so the figures include a WAN server that has served.

Arrival → mirror, measured in the hub process on the system-wide monotonic clock: for a radio
packet from the instant the meters process wrote it to the bridge socket (the bridge's header
carries that time), for a P1 telegram from the instant its last bytes were read from the
socket, for a polled meter from the instant its last response arrived; until
``SmartHub.accept`` returns (mirror updated, history written). It includes the transfer,
the hub's event-loop queueing and the decoding.

Reference measured in the same run: the RSS of a bare Python interpreter, and of one that has
only imported :data:`HUB_IMPORTS` (what this hub pays before it holds a single meter), with the
import cost broken down by package.

    .venv/bin/python bench/hub.py [--seconds 330]      # the measurement (default 5.5 min)
    .venv/bin/python bench/hub.py --smoke              # 20 s smoke run
    .venv/bin/python bench/hub.py --pull-cpu-only      # the hub's CPU per GDSC pull alone

After the memory run it prints the hub's CPU time per GDSC pull (``bench/hub_pull.py``; issue 17
goal 4: ≤ 5 ms with a resumed TLS session).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

GOAL_RSS_MB = 64.0
TARIFF = Path(__file__).resolve().parents[1] / "examples" / "tariffs" / "night-saver.json"
MQTT_PORT = 1883
GOAL_LATENCY_S = 1.0
HOST = "127.0.0.1"
HUB_ID = "BENCH"

# What the hub process imports (and all it imports): the reference process imports the same.
HUB_IMPORTS = (
    "cryptography.x509",
    "smarthub.assembly.config",
    "smarthub.assembly.hub",
    "smarthub.assembly.links",
    "smarthub.clock",
    "smarthub.han.dlms_poll",
    "smarthub.han.iec_poll",
    "smarthub.han.mbus_poll",
    "smarthub.han.p1",
    "smarthub.han.poll",
    "smarthub.han.tcp",
    "smarthub.han.wmbus_port",
    "smarthub.han.zigbee_port",
    "smarthub.hub.diagnostics",
    "smarthub.hub.history",
    "smarthub.hub.hub",
    "smarthub.hub.management",
    "smarthub.hub.privacy",
    "smarthub.meters.dlms.client",
    "smarthub.meters.dlms.security",
    "smarthub.security.certificates",
    "smarthub.wan.server.resources",
    "smarthub.wan.tls",
)
# Import cost broken down in this order (each step: what it adds to the ones before).
BREAKDOWN = (
    ("cryptography (AES-GCM, x509)", ("cryptography.hazmat.primitives.ciphers.aead", "cryptography.x509")),
    ("lxml", ("lxml.etree",)),
    ("h11", ("h11",)),
    (
        "smarthub hub, han, meters",
        tuple(m for m in HUB_IMPORTS if not m.startswith(("smarthub.wan", "smarthub.assembly"))),
    ),
    (
        "smarthub.wan (server, httpd, sep2_xml, tls)",
        tuple(m for m in HUB_IMPORTS if not m.startswith("smarthub.assembly")),
    ),
    ("smarthub.assembly (the rest of a complete hub: firmware, registry, repairs, ...)", HUB_IMPORTS),
)
# What the complete hub (display, two screens, MQTT export) imports on top, step by step.
COMPLETE_BREAKDOWN = (
    ("smarthub.hub.tariffs (the tariff model, priced consumption)", ("smarthub.hub.tariffs",)),
    (
        "the display (smarthub.hub.ihd on the hub's own wan.httpd, its 2030.5 resources)",
        ("smarthub.hub.ihd.home", "smarthub.wan.server.ihd_resources"),
    ),
    ("paho-mqtt and smarthub.hub.mqtt_export", ("smarthub.hub.mqtt_export",)),
)
COMPLETE_IMPORTS = HUB_IMPORTS + tuple(m for _, ms in COMPLETE_BREAKDOWN for m in ms)
# Not on either hub's import path, measured for the record (each on top of HUB_IMPORTS).
NOT_LOADED = (("envoy-schema/pydantic-xml models (before wan.sep2_xml)", ("smarthub.wan.client.sep2",)),)


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def sqlite_memory_mb() -> float:
    """What SQLite holds in this process (page caches, schemas, statements), from
    ``sqlite3_memory_used`` of the library Python's sqlite3 module is linked to."""
    import ctypes
    import ctypes.util
    import sqlite3  # noqa: F401  (loads the library)

    name = ctypes.util.find_library("sqlite3")
    try:
        lib = ctypes.CDLL(name or "libsqlite3.so.0")
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        return float(lib.sqlite3_memory_used()) / 2**20
    except (OSError, AttributeError):
        return float("nan")


def key(i: int) -> bytes:
    return hashlib.sha256(f"bench/{i}".encode()).digest()[:16]


def meter_plan() -> dict[str, Any]:
    """Which meters, with their ids, keys, reporting periods (s) and load-profile seeds."""
    return {
        "p1": {"elec": "E00000000001", "gas": "G00000000001", "seed": 1, "period": 1},
        "wmbus": [
            {
                "ident": 10000000 + i,
                "medium": "gas" if i % 2 else "water",
                "key": key(i).hex(),
                "seed": 100 + i,
                "period": 30,
            }
            for i in range(60)
        ],
        "zigbee": [
            {"eui": f"00:0d:6f:00:00:00:{i:02x}:01", "seed": 300 + i, "period": 30} for i in range(11)
        ],
        "mbus": [
            {"address": 1 + i, "ident": 20000000 + i, "medium": "water", "seed": 200 + i, "period": 300}
            for i in range(20)
        ],
        "dlms": [
            {
                "title": (b"LGZ" + (0x50000000 + i).to_bytes(5, "big")).hex(),
                "ek": key(1000 + i).hex(),
                "ak": key(2000 + i).hex(),
                "seed": 400 + i,
                "period": 60,
            }
            for i in range(4)
        ],
        "iec": [{"serial": f"{80000000 + i:08d}", "seed": 500 + i, "period": 300} for i in range(3)],
    }


class RadioFramer:
    """The radio-to-TCP bridge's framing (bench only): ``u16 length | f64 sent | u8 n | EUI-64
    (n ASCII bytes, empty for wM-Bus) | packet``. ``sent`` is the sender's ``time.monotonic()``,
    which on Linux is one clock for every process of the machine."""

    HEAD = struct.Struct(">Hd")

    @classmethod
    def pack(cls, packet: bytes, eui: str = "") -> bytes:
        e = eui.encode()
        body = struct.pack(">dB", time.monotonic(), len(e)) + e + packet
        return struct.pack(">H", len(body)) + body

    def __init__(self, on_packet: Callable[[float, str, bytes], None]) -> None:
        self.on_packet = on_packet
        self.buf = bytearray()

    def feed(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 2:
            n = int.from_bytes(self.buf[:2], "big")
            if len(self.buf) < 2 + n:
                return
            body = bytes(self.buf[2 : 2 + n])
            del self.buf[: 2 + n]
            sent, elen = struct.unpack_from(">dB", body)
            self.on_packet(sent, body[9 : 9 + elen].decode(), body[9 + elen :])


# -- the meters process ----------------------------------------------------------------------
async def meters_role(state: Path, seconds: float) -> None:
    from smarthub.clock import SystemClock
    from smarthub.meters.dlms.security import SecurityKeys
    from smarthub.sim.dlms_meter import DlmsMeterSimulator
    from smarthub.sim.dsmr_meter import DsmrMeterSimulator
    from smarthub.sim.iec_meter import IecMeterSimulator
    from smarthub.sim.load_profile import HouseholdProfile
    from smarthub.sim.mbus_meter import MBusMeterSimulator
    from smarthub.sim.wmbus_meter import WMBusMeterSimulator
    from smarthub.sim.zigbee_meter import ZigbeeMeterSimulator

    plan = json.loads((state / "plan.json").read_text())
    clock = SystemClock()
    start = clock.now()
    ports: dict[str, Any] = {}
    sent = {"p1": 0, "wmbus": 0, "zigbee": 0}

    async def broadcast_server(name: str) -> set[asyncio.StreamWriter]:
        clients: set[asyncio.StreamWriter] = set()

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            clients.add(writer)
            try:
                await reader.read()  # until the hub hangs up
            finally:
                clients.discard(writer)

        server = await asyncio.start_server(on_client, HOST, 0)
        ports[name] = server.sockets[0].getsockname()[1]
        return clients

    def send(clients: set[asyncio.StreamWriter], data: bytes) -> None:
        for w in list(clients):
            w.write(data)

    async def every(period: float, offset: float, emit: Callable[[datetime], None]) -> None:
        """``emit`` at ``offset`` past each multiple of ``period`` (wall clock), until the end."""
        t0 = time.time()
        n = int((t0 - offset) // period) + 1
        while True:
            due = n * period + offset
            await asyncio.sleep(max(0.0, due - time.time()))
            emit(datetime.fromtimestamp(due, UTC))
            n += 1

    tasks: list[asyncio.Future[Any]] = []
    p1_clients = await broadcast_server("p1")
    radio_clients = await broadcast_server("wmbus")
    zigbee_clients = await broadcast_server("zigbee")

    p = plan["p1"]
    dsmr = DsmrMeterSimulator(p["elec"], p["gas"], HouseholdProfile(p["seed"]), start=start)

    def p1_emit(t: datetime) -> None:
        send(p1_clients, dsmr.telegram_at(t))
        sent["p1"] += 1

    tasks.append(asyncio.ensure_future(every(p["period"], 0.0, p1_emit)))
    for i, m in enumerate(plan["wmbus"]):
        wm = WMBusMeterSimulator(
            m["ident"],
            "LSE",
            m["medium"],
            bytes.fromhex(m["key"]),
            HouseholdProfile(m["seed"]),
            start=start,
            mode=5,
        )

        def wm_emit(t: datetime, wm: WMBusMeterSimulator = wm) -> None:
            send(radio_clients, RadioFramer.pack(wm.frame_at(t)))
            sent["wmbus"] += 1

        offset = m["period"] * i / len(plan["wmbus"])
        tasks.append(asyncio.ensure_future(every(m["period"], offset, wm_emit)))
    zigbee = []
    for i, m in enumerate(plan["zigbee"]):
        zm = ZigbeeMeterSimulator(m["eui"], "electric", HouseholdProfile(m["seed"]), start=start)
        zigbee.append((m["eui"], zm))

        def zb_emit(t: datetime, zm: ZigbeeMeterSimulator = zm, eui: str = m["eui"]) -> None:
            send(zigbee_clients, RadioFramer.pack(zm.report_at(t), eui))
            sent["zigbee"] += 1

        offset = m["period"] * (i + 0.5) / len(plan["zigbee"])
        tasks.append(asyncio.ensure_future(every(m["period"], offset, zb_emit)))

    async def serve_polled(name: str, meter: Any) -> None:
        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(4096):
                answer = meter.respond(data, clock.now())
                if answer:
                    writer.write(answer)

        server = await asyncio.start_server(on_client, HOST, 0)
        ports[name] = server.sockets[0].getsockname()[1]

    for m in plan["mbus"]:
        sim = MBusMeterSimulator(
            m["address"], m["ident"], "KAM", m["medium"], HouseholdProfile(m["seed"]), start=start,
            records_per_telegram=2,
        )  # fmt: skip
        await serve_polled(f"mbus:{m['ident']}", sim)
    for m in plan["dlms"]:
        title = bytes.fromhex(m["title"])
        keys = SecurityKeys(bytes.fromhex(m["ek"]), bytes.fromhex(m["ak"]))
        sim = DlmsMeterSimulator(
            title, title.hex().upper(), HouseholdProfile(m["seed"]), start=start, keys=keys
        )
        await serve_polled(f"dlms:{m['title']}", sim)
    for m in plan["iec"]:
        await serve_polled(
            f"iec:{m['serial']}",
            IecMeterSimulator(m["serial"], "LGZ", HouseholdProfile(m["seed"]), start=start),
        )

    # The hub's ZigBee coordinator learns each meter's formatting when it joins: sent on connect.
    async def join_reports() -> None:
        while not zigbee_clients:
            await asyncio.sleep(0.05)
        for eui, zm in zigbee:
            send(zigbee_clients, RadioFramer.pack(zm.formatting_report(), eui))

    tasks.append(asyncio.ensure_future(join_reports()))
    tmp = state / "ports.json.tmp"
    tmp.write_text(json.dumps(ports))
    tmp.rename(state / "ports.json")
    cpu0, wall0 = time.process_time(), time.monotonic()
    stop = asyncio.Event()  # SIGTERM from the orchestrator once the hub is done
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    for t in tasks:
        t.cancel()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    print(json.dumps({"sent": sent, "cpu_percent": 100 * cpu / wall, "rss_mb": rss_mb()}), flush=True)


# -- the hub process -------------------------------------------------------------------------
async def hub_role(state: Path, seconds: float, complete: bool = False) -> dict[str, Any]:
    """The hub as ``smarthub hub`` builds it (:func:`smarthub.assembly.hub.build_hub`) from a
    configuration of TCP transports; the radio bridge (bench framing, with the sender's time) is
    the one transport of the bench's own, given to the assembly as a connector. ``complete``:
    also the consumer side (electricity and gas priced), the in-home display and the MQTT
    export to the broker at 127.0.0.1:1883, as a household runs it; two screens are paired
    (their session tokens go to ``hub.json`` for this bench's screens to use)."""
    import importlib

    for name in COMPLETE_IMPORTS if complete else HUB_IMPORTS:
        importlib.import_module(name)
    from smarthub.assembly import links
    from smarthub.assembly.config import (
        ConsumerConfig,
        HubConfig,
        MeterConfig,
        MqttConfig,
        ServeConfig,
        SupplyConfig,
        TransportConfig,
    )
    from smarthub.assembly.hub import build_hub
    from smarthub.assembly.links import ConnectContext, Connection, StreamRunner
    from smarthub.han.poll import PollLoop
    from smarthub.han.ports import PortBatch
    from smarthub.han.tcp import TcpStreamTransport
    from smarthub.han.wmbus_port import WMBusPort
    from smarthub.han.zigbee_port import ZigbeePort
    from smarthub.meters import mbus

    rss_imports = rss_mb()
    plan = json.loads((state / "plan.json").read_text())
    ports = json.loads((state / "ports.json").read_text())
    latencies: dict[str, list[float]] = {}
    arrived: list[float | None] = [None]  # when the bytes being handled now were read

    class TimedStream(TcpStreamTransport):
        """Notes when each read's bytes arrived: a P1 telegram's arrival."""

        def __init__(self, host: str, port: int, sink: Callable[[bytes], None], **kw: Any) -> None:
            def timed(data: bytes) -> None:
                arrived[0] = time.monotonic()
                sink(data)

            super().__init__(host, port, timed, **kw)

    links.TcpStreamTransport = TimedStream  # type: ignore[misc]

    def radio(ctx: ConnectContext, transport: TransportConfig, meters: list[MeterConfig]) -> list[Connection]:
        """The bench's radio-to-TCP bridge (RadioFramer), to the hub's own radio ports."""
        hub = ctx.hub
        if transport.name == "wmbus":
            port: Any = hub.attach(WMBusPort("wmbus"))
            for m in meters:  # installed at commissioning
                port.keys[str(m.id)] = m.key
        else:
            port = hub.attach(ZigbeePort("zigbee"))

        def on_packet(sent: float, eui: str, packet: bytes) -> None:
            arrived[0] = sent
            batch = port.receive_frame(eui, packet) if eui else port.receive(packet)
            hub.accept(batch, port=port.name)

        stream = TcpStreamTransport(HOST, ports[transport.name], RadioFramer(on_packet).feed)
        heard = [(str(m.id), m.fuel) for m in meters]  # commissioned: the radio hears neighbours too
        return [Connection(port.protocol, heard, loops=[StreamRunner(stream)], closers=[stream.stop])]

    def tcp(name: str) -> TransportConfig:
        return TransportConfig("tcp", name, host=HOST, port=ports[name])

    wmbus_link, zigbee_link = (
        TransportConfig("bench-radio", "wmbus"),
        TransportConfig("bench-radio", "zigbee"),
    )
    p1 = tcp("p1")
    meters = [
        MeterConfig("dsmr", p1, id=plan["p1"]["elec"]),
        MeterConfig("dsmr", p1, id=plan["p1"]["gas"], fuel="gas"),
        *(
            MeterConfig(
                "wmbus", wmbus_link, id=mbus.meter_id("LSE", m["ident"], b""), fuel=m["medium"],
                key=bytes.fromhex(m["key"]),
            )
            for m in plan["wmbus"]
        ),
        *(MeterConfig("zigbee", zigbee_link, id=m["eui"]) for m in plan["zigbee"]),
        *(
            MeterConfig(
                "mbus", tcp(f"mbus:{m['ident']}"), mode="poll", address=m["address"], fuel=m["medium"],
                poll_every=timedelta(seconds=m["period"]),
            )
            for m in plan["mbus"]
        ),
        *(
            MeterConfig(
                "dlms", tcp(f"dlms:{m['title']}"), id=m["title"].upper(), mode="poll",
                key=bytes.fromhex(m["ek"]), authentication_key=bytes.fromhex(m["ak"]),
                client_system_title=b"SHB" + bytes.fromhex(m["title"])[3:],
                poll_every=timedelta(seconds=m["period"]),
            )
            for m in plan["dlms"]
        ),
        *(
            MeterConfig("iec62056-21", tcp(f"iec:{m['serial']}"), id=m["serial"], mode="poll",
                        poll_every=timedelta(seconds=m["period"]))
            for m in plan["iec"]
        ),
    ]  # fmt: skip
    extra: dict[str, Any] = {}
    if complete:
        tariff = TARIFF.read_text()
        extra = {
            "consumer": ConsumerConfig(
                (
                    SupplyConfig("electricity", plan["p1"]["elec"], "Bench Energy", tariff, "180"),
                    SupplyConfig("gas", plan["p1"]["gas"], "Bench Energy", tariff, "200"),
                )
            ),
            "ihd": ServeConfig(HOST, 0),
            "mqtt": MqttConfig(HOST, MQTT_PORT, publish_every_s=10),
        }
    config = HubConfig(
        HUB_ID, state, state / "hub.pem", state / "hub.key", state / "ca.pem",
        meters=tuple(meters), wan=ServeConfig(HOST, 0), **extra,
    )  # fmt: skip
    assembly = build_hub(config, connectors={"bench-radio": radio})
    hub = assembly.hub
    accept = hub.accept
    kinds = {"p1": "dsmr", "wmbus": "wmbus", "zigbee": "zigbee"}

    def timed_accept(batch: PortBatch, received: datetime | None = None, *, port: str = "han") -> list[Any]:
        out = accept(batch, received, port=port)
        t0 = getattr(batch, "arrived", None) or arrived[0]
        if batch.points and t0 is not None:
            kind = kinds.get(port) or port.split(":", 1)[0].split("@", 1)[0]
            latencies.setdefault("iec" if kind == "iec62056-21" else kind, []).append(time.monotonic() - t0)
        arrived[0] = None
        return out

    hub.accept = timed_accept  # type: ignore[method-assign]
    loops = [loop for c in assembly.connections for loop in c.loops if isinstance(loop, PollLoop)]
    for loop in loops:  # a polled meter's readings arrive with its last answer: the cycle's end
        cycle = loop.cycle

        async def timed(t: datetime, cycle: Any = cycle) -> PortBatch:
            batch = await cycle(t)
            batch.arrived = time.monotonic()  # type: ignore[attr-defined]
            return batch

        loop.cycle = timed
    rss_samples: list[float] = []

    async def sample_rss() -> None:
        while True:
            await asyncio.sleep(seconds / 20)
            rss_samples.append(rss_mb())

    cpu0, wall0 = time.process_time(), time.monotonic()
    await assembly.start()
    ready: dict[str, Any] = {"wan_port": int(assembly.url.rsplit(":", 1)[1])}
    if complete:
        side = assembly.consumer
        now = assembly.clock.now()
        ready["ihd_url"] = side.url
        ready["screens"] = [
            side.store.pair(side.store.new_pairing_code(now), now, f"bench screen {i}") for i in (1, 2)
        ]
    (state / "hub.json").write_text(json.dumps(ready))
    sampler = asyncio.ensure_future(sample_rss())
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    rss_end, rss_peak = rss_mb(), rss_mb("VmHWM")
    sqlite_mb = sqlite_memory_mb()
    sampler.cancel()
    requests = assembly.server.requests
    mqtt = None
    if assembly.mqtt is not None:
        mqtt = {"connected": assembly.mqtt.connected, "states": len(assembly.mqtt.states())}
    await assembly.stop()
    return {
        "complete": complete,
        "loaded": {name: name in sys.modules for name in ("aiohttp", "pydantic")},
        "mqtt": mqtt,
        "meters": len(hub.mirror.meters()),
        "frames": {k: len(v) for k, v in sorted(latencies.items())},
        "latency_ms": {k: sorted(1000 * x for x in v) for k, v in latencies.items()},
        "frame_errors": hub.stats.frame_errors,
        "last_errors": hub.stats.last_errors,
        "poll_failures": sum(loop.failures for loop in loops),
        "requests": requests,
        "rss_imports_mb": rss_imports,
        "rss_mb": rss_end,
        "rss_max_sampled_mb": max([*rss_samples, rss_end]),
        "rss_trend_mb": rss_samples[4::5],
        "rss_peak_mb": rss_peak,
        "sqlite_mb": sqlite_mb,
        "cpu_percent": 100 * cpu / wall,
        "wall_s": wall,
    }


# -- this process ----------------------------------------------------------------------------
def provision(state: Path) -> None:
    """The GDSC's CA, the hub's certificate and a collector's (the PKI stays out of the hub)."""
    from smarthub.gdsc.fleet.pki import CertificateAuthority, Role

    now = datetime.now(UTC)
    ca = CertificateAuthority.create("bench CA", now)
    ca.save(state)
    ca.issue(Role.HUB, HUB_ID, now, hosts=(HOST,)).save(state, "hub")
    ca.issue(Role.COLLECTOR, "gdsc", now).save(state, "collector")


async def pull_once(state: Path, port: int) -> int:
    """One GDSC collector visit over mutual TLS: DeviceCapability, UsagePointList, LogEventList."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from envoy_schema.server.schema.sep2.log_events import LogEventList

    from smarthub.security.certificates import lfdi_from_der
    from smarthub.wan.client import sep2
    from smarthub.wan.client.hub_client import HubClient
    from smarthub.wan.tls import client_context

    ctx = client_context(state / "collector.pem", state / "collector.key", state / "ca.pem")
    hub_cert = x509.load_pem_x509_certificate((state / "hub.pem").read_bytes())
    lfdi = lfdi_from_der(hub_cert.public_bytes(Encoding.DER))
    client = HubClient(f"https://{HOST}:{port}", ctx, lfdi)
    try:
        await client.get("/dcap", sep2.DeviceCapabilityResponse)
        upts = await client.get("/upt", sep2.UsagePointListResponse, {"s": 0, "l": 1000})
        await client.get("/edev/0/lel", LogEventList, {"s": 0, "l": 100})
        return len(upts.UsagePoint_ or [])
    finally:
        await client.close()


def _rss_after(modules: tuple[str, ...]) -> float:
    code = (
        f"import importlib\nfor m in {modules!r}: importlib.import_module(m)\n"
        "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS:')) / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout)


def references() -> dict[str, Any]:
    """Bare Python, Python + the hub's imports (bare and complete), and the import cost package
    by package."""
    steps: list[tuple[str, float]] = []
    loaded: tuple[str, ...] = ()
    for label, modules in BREAKDOWN:
        loaded += modules
        steps.append((label, _rss_after(loaded)))
    complete_steps: list[tuple[str, float]] = []
    loaded = HUB_IMPORTS
    for label, modules in COMPLETE_BREAKDOWN:
        loaded += modules
        complete_steps.append((label, _rss_after(loaded)))
    extra = [(label, _rss_after(HUB_IMPORTS + modules)) for label, modules in NOT_LOADED]
    return {
        "bare": _rss_after(()),
        "hub_imports": _rss_after(HUB_IMPORTS),
        "complete_imports": _rss_after(COMPLETE_IMPORTS),
        "steps": steps,
        "complete_steps": complete_steps,
        "extra": extra,
    }


class Screens:
    """Two paired in-home display screens, as a household has them (a wall display and a
    phone): each loads the dashboard, keeps its live-power stream (Server-Sent Events) open for
    the whole run and reloads the dashboard every minute. In a thread of this process."""

    def __init__(self, url: str, tokens: list[str]) -> None:
        import threading

        self.url, self.tokens = url, tokens
        self.events = [0] * len(tokens)
        self.pages = [0] * len(tokens)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _screen(self, i: int, token: str) -> None:
        import aiohttp

        async with aiohttp.ClientSession(cookies={"ihd_session": token}) as s:

            async def stream() -> None:
                async with s.get(self.url + "/events", timeout=aiohttp.ClientTimeout(total=None)) as r:
                    if r.status != 200:
                        raise RuntimeError(f"/events answered {r.status}")
                    async for line in r.content:
                        if line.startswith(b"data:"):
                            self.events[i] += 1

            task = asyncio.create_task(stream())
            try:
                while not self._stop.is_set():
                    async with s.get(self.url + "/") as r:
                        await r.read()
                        if r.status != 200:
                            raise RuntimeError(f"the dashboard answered {r.status}")
                        self.pages[i] += 1
                    for _ in range(600):
                        if self._stop.is_set() or task.done():
                            break
                        await asyncio.sleep(0.1)
                    if task.done():
                        task.result()
            finally:
                task.cancel()

    async def _run(self) -> None:
        results = await asyncio.gather(
            *(self._screen(i, t) for i, t in enumerate(self.tokens)), return_exceptions=True
        )
        self.errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(timeout=30)
        return {"live_events": self.events, "dashboard_loads": self.pages, "errors": self.errors}


def _pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def run(seconds: float, state: Path, complete: bool = False) -> dict[str, Any]:
    """Run the three processes for ``seconds``; the hub's figures, the meters' and the pull's.
    ``complete``: the hub with the display, two screens on it and the MQTT export."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    (state / "plan.json").write_text(json.dumps(meter_plan()))
    provision(state)
    me = [sys.executable, __file__]
    meters = subprocess.Popen(
        [*me, "--role", "meters", "--state", str(state), "--seconds", str(seconds + 30)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while not (state / "ports.json").exists():
            if meters.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the meters process did not start")
            time.sleep(0.05)
        hub = subprocess.Popen(
            [
                *me,
                "--role",
                "hub",
                "--state",
                str(state),
                "--seconds",
                str(seconds),
                *(["--complete"] if complete else []),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        while not (state / "hub.json").exists():
            if hub.poll() is not None:
                raise RuntimeError("the hub process did not start")
            time.sleep(0.05)
        time.sleep(0.2)  # hub.json is written whole, but give the writer its close
        ready = json.loads((state / "hub.json").read_text())
        screens = Screens(ready["ihd_url"], ready["screens"]) if complete else None
        time.sleep(seconds / 2)
        pulled = asyncio.run(pull_once(state, ready["wan_port"]))
        time.sleep(max(0.0, seconds / 2 - 15))
        screened = screens.stop() if screens is not None else None
        out, _ = hub.communicate(timeout=seconds + 120)
        if hub.returncode:
            raise RuntimeError(f"the hub process failed ({hub.returncode})")
        result = json.loads(out.strip().splitlines()[-1])
    finally:
        meters.terminate()
        m_out, _ = meters.communicate(timeout=30)
    result["usage_points_pulled"] = pulled
    result["screens"] = screened
    result["meters_process"] = json.loads(m_out.strip().splitlines()[-1]) if m_out.strip() else None
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    # Long enough for every meter to report at least once (the slowest are polled every 5 min).
    ap.add_argument("--seconds", type=float, default=330.0, help="how long the hub runs (default 330)")
    ap.add_argument("--smoke", action="store_true", help="a 20 s smoke run")
    ap.add_argument("--pull-cpu-only", action="store_true", help="only the hub's CPU per GDSC pull")
    ap.add_argument("--pulls", type=int, default=200, help="pulls of each kind for the hub's CPU per pull")
    ap.add_argument(
        "--only", choices=("bare", "complete"), help="one configuration (default: bare, then complete)"
    )
    ap.add_argument("--complete", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--role", choices=("meters", "hub"), help=argparse.SUPPRESS)
    ap.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    seconds = 20.0 if args.smoke else args.seconds
    if args.role == "meters":
        asyncio.run(meters_role(args.state, seconds))
        return
    if args.role == "hub":
        print(json.dumps(asyncio.run(hub_role(args.state, seconds, args.complete))), flush=True)
        return
    sys.path.insert(0, str(Path(__file__).parent))
    import hub_pull  # bench/hub_pull.py (not in the hub process: its imports are HUB_IMPORTS)

    if args.pull_cpu_only:
        print("\n".join(hub_pull.measure(args.pulls).lines()))
        return
    configurations = [args.only] if args.only else ["bare", "complete"]
    results = {}
    for name in configurations:
        what = "" if name == "bare" else " with the display (2 screens, live) and the MQTT export"
        print(f"a hub with 100 meters (99 devices){what} in real time for {seconds:.0f} s ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="smarthub-bench-hub-") as tmp:
            results[name] = run(seconds, Path(tmp), complete=name == "complete")
    ref = references()
    for name, r in results.items():
        report(name, r, ref)
    print(f"reference (same run)      bare Python {ref['bare']:.1f} MB")
    prev = ref["bare"]
    for label, mb in ref["steps"]:
        print(f"  import cost             + {mb - prev:5.1f} MB  {label}")
        prev = mb
    print(f"  = Python + the bare hub's imports {ref['hub_imports']:.1f} MB; the complete hub adds:")
    prev = ref["hub_imports"]
    for label, mb in ref["complete_steps"]:
        print(f"  import cost             + {mb - prev:5.1f} MB  {label}")
        prev = mb
    print(f"  = Python + the complete hub's imports {ref['complete_imports']:.1f} MB")
    for label, mb in ref["extra"]:
        print(f"  not loaded by either    + {mb - ref['hub_imports']:5.1f} MB  {label}")
    print("\n".join(hub_pull.measure(args.pulls).lines()))  # bench/hub_pull.py


def report(name: str, r: dict[str, Any], ref: dict[str, Any]) -> None:
    lat = sorted(x for xs in r["latency_ms"].values() for x in xs)
    imports = ref["complete_imports" if r["complete"] else "hub_imports"]
    print(f"== {name} hub" + (": display with 2 screens live, MQTT export" if r["complete"] else ""))
    print(
        f"meters in the mirror      {r['meters']} "
        f"(usage points served to the GDSC's pull half-way: {r['usage_points_pulled']})"
    )
    print(
        f"readings batches          {len(lat)} in {r['wall_s']:.0f} s: "
        + ", ".join(f"{k} {v}" for k, v in r["frames"].items())
        + f"; frame errors {r['frame_errors']}, poll failures {r['poll_failures']}, "
        f"WAN requests {r['requests']}"
    )
    if r["complete"]:
        sc = r["screens"] or {}
        print(
            f"display and MQTT          screens: live-power events {sc.get('live_events')}, dashboard "
            f"loads {sc.get('dashboard_loads')}, errors {sc.get('errors') or 'none'}; "
            f"MQTT {r['mqtt']}"
        )
    loaded = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in r["loaded"].items())
    print(f"loaded in the hub process {loaded}")
    verdict = "met" if r["rss_mb"] <= GOAL_RSS_MB else "NOT met"
    print(
        f"hub RSS                   {r['rss_mb']:.1f} MB at the end "
        f"(goal ≤ {GOAL_RSS_MB:.0f} MB: {verdict}); "
        f"max sampled {r['rss_max_sampled_mb']:.1f} MB, peak (VmHWM) {r['rss_peak_mb']:.1f} MB"
    )
    print(f"of which SQLite           {r['sqlite_mb']:.1f} MB (page caches, schemas, statements)")
    trend = " → ".join(f"{x:.1f}" for x in [r["rss_imports_mb"], *r["rss_trend_mb"], r["rss_mb"]])
    print(f"hub RSS over the run      {trend} MB (after imports, each quarter, at the end)")
    print(
        f"reference                 Python + this hub's imports {imports:.1f} MB; hub / reference = "
        f"{r['rss_mb'] / imports:.2f} (the hub's own data: {r['rss_mb'] - imports:+.1f} MB)"
    )
    print(f"hub CPU                   {r['cpu_percent']:.1f} % of one core")
    if r["meters_process"]:
        print(
            f"(meters process           {r['meters_process']['cpu_percent']:.1f} % of one core, "
            "not the hub's)"
        )
    verdict = "met" if lat and lat[-1] <= GOAL_LATENCY_S * 1000 else "NOT met"
    print(
        f"arrival → mirror          p50 {_pct(lat, 0.5):.2f} ms, p99 {_pct(lat, 0.99):.2f} ms, "
        f"max {lat[-1] if lat else float('nan'):.2f} ms (goal ≤ {GOAL_LATENCY_S * 1000:.0f} ms: {verdict})"
    )
    for kind, xs in sorted(r["latency_ms"].items()):
        print(f"  {kind:<8} n={len(xs):<5} p50 {statistics.median(xs):.2f} ms, max {xs[-1]:.2f} ms")


if __name__ == "__main__":
    main()
