"""A hub started from a hub.toml with one meter of every protocol, each on its own real transport,
the meter simulators on the other end; the GDSC pulls it and stores every meter's readings.

Real pieces: pseudo-terminals (``os.openpty``) opened by the hub's pyserial ports for the
serial meters (a DSMR P1 cable, a DLMS HAN port at 2400 8E1, an IEC 62056-21 optical probe that
signs on at 300 baud and must switch to the meter's 9600, an IMST iM871A stick speaking its HCI
framing, an SML optical head on a German meter); TCP gateways for the rest (a DLMS meter's TCP wrapper, polled, with its breaker; an
M-Bus master behind ser2net, the meter selected by its secondary address; a ZigBee coordinator
bridge); the configuration loaded from TOML; the hub built by the same assembly as ``smarthub
hub``; 2030.5 over mutual TLS; the GDSC's collector and store on SQLite and PostgreSQL. Time
runs accelerated so that two settlement half-hours pass in seconds; the meters stamp what they
send with that clock.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from smarthub.assembly.config import load_config
from smarthub.assembly.hub import build_hub
from smarthub.clock import AcceleratedClock
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.gdsc.service import GdscService
from smarthub.han.dlms_poll import complete_wrapper
from smarthub.han.mbus_poll import complete_mbus
from smarthub.meters.dlms.security import SecurityKeys
from smarthub.meters.iec62056_21 import decode_option_select
from smarthub.model.obis import GAS_VOLUME, IMPORT_ACTIVE_ENERGY, WATER_VOLUME
from smarthub.sim.dlms_meter import DlmsMeterSimulator
from smarthub.sim.dsmr_meter import DsmrMeterSimulator
from smarthub.sim.iec_meter import IecMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.mbus_meter import MBusMeterSimulator
from smarthub.sim.sml_meter import SmlMeterSimulator
from smarthub.sim.wires import Pty, answer_pty, im871a_frame, port_of, push_pty, push_tcp, serve_tcp
from smarthub.sim.wmbus_meter import WMBusMeterSimulator
from smarthub.sim.zigbee_meter import ZigbeeMeterSimulator
from smarthub.wan.contract.bodies import parse_body

T0 = datetime(2026, 3, 2, 9, 50, tzinfo=UTC)  # ten simulated minutes (2.5 s) to settle in
SPEED = 240.0  # simulated seconds per wall second: 09:50-11:02 in 18 s
END = datetime(2026, 3, 2, 11, 2, tzinfo=UTC)
MINUTE = timedelta(minutes=1)

DLMS_PUSH_TITLE = bytes.fromhex("4B464D1020000001")  # "KFM" + serial: a HAN port meter
DLMS_POLL_TITLE = bytes.fromhex("4C475A1020000002")  # "LGZ" + serial
PUSH_KEYS = SecurityKeys(bytes(range(16)), bytes(range(16, 32)))
POLL_KEYS = SecurityKeys(bytes(range(32, 48)), bytes(range(48, 64)))
WMBUS_KEY = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
NEIGHBOUR_KEY = bytes(16)
ZIGBEE_EUI = "00:0d:6f:00:00:00:00:01"
SML_ID = "0a01454d480000003039"  # an EMH meter's server id: 0A 01 "EMH" 00 serial 12345


def _certificates(state: Path, now: datetime) -> Path:
    ca = CertificateAuthority.create("GDSC CA", now)
    ca.save(state / "ca")
    gdsc = state / "gdsc"
    gdsc.mkdir()
    ca.issue(Role.COLLECTOR, "collector-1", now).save(gdsc, "collector")
    hub_dir = state / "hub"
    hub_dir.mkdir()
    ca.issue(Role.HUB, "HUB1", now, hosts=("127.0.0.1",)).save(hub_dir, "hub")
    return hub_dir


def _toml(hub_dir: Path, ca: Path, ptys: dict[str, Pty], ports: dict[str, int], key_dir: Path) -> str:
    """The installer's file: one meter of each protocol, on its own transport."""
    return f"""
[hub]
id = "HUB1"
state = "{hub_dir}"
ca = "{ca}"
timezone = "Europe/Amsterdam"   # the meters' wall clocks

[wan]
listen = "127.0.0.1"
port = 0

[privacy]
gdsc = "half-hourly"      # the household opted in

[transports.p1]
kind = "serial"
device = "{ptys["p1"].device}"

[transports.stick]
kind = "serial"
device = "{ptys["stick"].device}"
receiver = "im871a"

[[meters]]
id = "E0000000042"
protocol = "dsmr"
transport = "p1"

[[meters]]
id = "G0000000042"
protocol = "dsmr"
fuel = "gas"
transport = "p1"

[[meters]]
id = "{DLMS_PUSH_TITLE.hex().upper()}"
protocol = "dlms"
mode = "push"
transport = {{ kind = "serial", device = "{ptys["han"].device}", baud = 2400, format = "8E1" }}
key_file = "{key_dir / "han.ek"}"
authentication_key_file = "{key_dir / "han.ak"}"

[[meters]]
id = "{DLMS_POLL_TITLE.hex().upper()}"
protocol = "dlms"
mode = "poll"
framing = "wrapper"
transport = {{ kind = "tcp", host = "127.0.0.1", port = {ports["wrapper"]} }}
key = "{POLL_KEYS.encryption_key.hex()}"
authentication_key = "{POLL_KEYS.authentication_key.hex()}"
client_sap = 1
poll_every = "1m"
breaker = true

[[meters]]
id = "12345678"
protocol = "iec62056-21"
timezone = "Europe/London"      # this one was set up in Britain
transport = {{ kind = "serial", device = "{ptys["optical"].device}" }}
max_baud = 9600
poll_every = "1m"

[[meters]]
id = "KAM30000001"
protocol = "mbus"
fuel = "water"
secondary = "30000001"
transport = {{ kind = "tcp", host = "127.0.0.1", port = {ports["mbus"]} }}
poll_every = "1m"

[[meters]]
id = "LSE50000001"
protocol = "wmbus"
fuel = "gas"
transport = "stick"
key = "{WMBUS_KEY.hex()}"

[[meters]]
id = "{SML_ID}"
protocol = "sml"
transport = {{ kind = "serial", device = "{ptys["head"].device}" }}

[[meters]]
id = "{ZIGBEE_EUI}"
protocol = "zigbee"
transport = {{ kind = "tcp", host = "127.0.0.1", port = {ports["zigbee"]} }}
"""


async def _iec_at_agreed_baud(request: bytes, pty: Pty) -> bool:
    """The meter answers the option select only once the hub's side runs at the rate agreed."""
    if request[:1] != b"\x06":
        return True
    want = {"5": 9600}[decode_option_select(request).baud_char]
    for _ in range(100):
        if pty.baud() == want:
            return True
        await asyncio.sleep(0.01)
    return False


async def test_a_hub_from_a_config_reads_every_protocol_on_real_transports_and_the_gdsc_stores_them(
    tmp_path: Path, db_url: str, wall_now: datetime
) -> None:
    clock = AcceleratedClock(T0, SPEED)
    hub_dir = _certificates(tmp_path, wall_now)
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    for name, key in (("han.ek", PUSH_KEYS.encryption_key), ("han.ak", PUSH_KEYS.authentication_key)):
        (keys / name).write_text(key.hex())
        (keys / name).chmod(0o600)

    profile = HouseholdProfile(7, pv_kwp=3.5)
    p1 = DsmrMeterSimulator("E0000000042", "G0000000042", profile, start=T0)
    han = DlmsMeterSimulator(DLMS_PUSH_TITLE, "HAN1", HouseholdProfile(8), start=T0, keys=PUSH_KEYS)
    wrapper = DlmsMeterSimulator(
        DLMS_POLL_TITLE, "POLL1", HouseholdProfile(9), start=T0, keys=POLL_KEYS, transport="wrapper"
    )
    optical = IecMeterSimulator("12345678", "LGZ", HouseholdProfile(10), start=T0)
    water = MBusMeterSimulator(5, 30000001, "KAM", "water", HouseholdProfile(11), start=T0)
    gas = WMBusMeterSimulator(50000001, "LSE", "gas", WMBUS_KEY, HouseholdProfile(12), start=T0, mode=5)
    neighbour = WMBusMeterSimulator(
        50000099, "LSE", "water", NEIGHBOUR_KEY, HouseholdProfile(13), start=T0, mode=5
    )
    zigbee = ZigbeeMeterSimulator(ZIGBEE_EUI, "electric", HouseholdProfile(14), start=T0)
    german = SmlMeterSimulator("EMH", 12345, HouseholdProfile(15), start=T0)

    sent: dict[datetime, int] = {}

    def telegram(t: datetime) -> bytes:
        data = p1.telegram_at(t)
        sent[t] = p1.registers.import_wh
        return data

    def stick(t: datetime) -> bytes:
        return im871a_frame(gas.frame_at(t)) + im871a_frame(neighbour.frame_at(t))

    first_report = True

    def bridge(t: datetime) -> bytes:
        nonlocal first_report
        lines = f"{ZIGBEE_EUI} {zigbee.report_at(t).hex()}\n"
        if first_report:  # the formatting attributes, reported once on joining
            lines = f"{ZIGBEE_EUI} {zigbee.formatting_report().hex()}\n" + lines
            first_report = False
        return lines.encode()

    ptys = {name: Pty() for name in ("p1", "han", "optical", "stick", "head")}
    wrapper_gw = await serve_tcp(wrapper, clock, complete_wrapper)
    mbus_gw = await serve_tcp(water, clock, complete_mbus)
    zigbee_gw, _ = await push_tcp(bridge, clock, MINUTE)
    ports = {"wrapper": port_of(wrapper_gw), "mbus": port_of(mbus_gw), "zigbee": port_of(zigbee_gw)}
    config_path = tmp_path / "hub.toml"
    config_path.write_text(_toml(hub_dir, tmp_path / "ca" / "ca.pem", ptys, ports, keys))
    config_path.chmod(0o600)  # it holds a key inline
    config = load_config(config_path)
    assert {m.protocol for m in config.meters} == {
        "dsmr",
        "dlms",
        "iec62056-21",
        "mbus",
        "wmbus",
        "zigbee",
        "sml",
    }

    wires = [
        asyncio.create_task(push_pty(ptys["p1"], telegram, clock, timedelta(seconds=10))),
        asyncio.create_task(push_pty(ptys["han"], han.push_at, clock, MINUTE)),
        asyncio.create_task(
            answer_pty(ptys["optical"], optical, clock, _iec_complete, check=_iec_at_agreed_baud)
        ),
        asyncio.create_task(push_pty(ptys["stick"], stick, clock, timedelta(minutes=2))),
        asyncio.create_task(push_pty(ptys["head"], german.file_at, clock, timedelta(seconds=10))),
    ]
    assembly = build_hub(config, clock=clock)
    service = None
    try:
        await assembly.start()
        assert assembly.url.startswith("https://127.0.0.1:")
        await _until(lambda: clock.now() >= END, "the simulated hour", 60)
        await asyncio.sleep(0.5)  # the last polls land

        hub = assembly.hub
        # The neighbour's meter is heard too; its frames cannot be decrypted here, and nothing of
        # it reaches the history. Every frame of this home's meters decoded.
        assert hub.stats.frame_errors > 0
        assert all("LSE50000099" in e for e in hub.stats.last_errors), hub.stats.last_errors
        assert "LSE50000099" not in hub.meters()
        loops = {loop.name: loop for c in assembly.connections for loop in c.loops if hasattr(loop, "cycles")}
        assert all(loop.failures == 0 and loop.cycles >= 50 for loop in loops.values()), {
            n: (loop.cycles, loop.failures) for n, loop in loops.items()
        }
        # The meter with a breaker answers the supply commands over its TCP wrapper.
        state = await assembly.management.handlers["supply.state"](
            parse_body("supply.state", {"meter": DLMS_POLL_TITLE.hex().upper()})
        )
        assert state["connected"] is True

        # The GDSC registers the hub and pulls it over mutual TLS into its store.
        manifest = {
            "hubs": [
                {
                    "hub_id": "HUB1",
                    "premises_id": "P1",
                    "url": assembly.url,
                    "lfdi": assembly.lfdi,
                    "meters": [[m.id, m.fuel] for m in config.meters],
                }
            ]
        }
        (tmp_path / "fleet.json").write_text(json.dumps(manifest))
        service = GdscService.from_state(tmp_path, clock, db_url)
        (record,) = service.store.active_hubs()
        result = await service.collector.pull(record, clock.now())
        assert result.ok, result.error
        channels = {
            "E0000000042": IMPORT_ACTIVE_ENERGY,
            "G0000000042": GAS_VOLUME,
            DLMS_PUSH_TITLE.hex().upper(): IMPORT_ACTIVE_ENERGY,
            DLMS_POLL_TITLE.hex().upper(): IMPORT_ACTIVE_ENERGY,
            "12345678": IMPORT_ACTIVE_ENERGY,
            "KAM30000001": WATER_VOLUME,
            "LSE50000001": GAS_VOLUME,
            ZIGBEE_EUI: IMPORT_ACTIVE_ENERGY,
            SML_ID: IMPORT_ACTIVE_ENERGY,
        }
        starts = {int((T0 + timedelta(minutes=10 + 30 * i)).timestamp()) for i in range(2)}
        for meter, obis in channels.items():
            stored = service.store.readings_for("HUB1", meter, str(obis))
            got = {r.interval_start for r in stored if r.duration == 1800}
            assert starts <= got, (meter, sorted(got))
        # The P1 meter stamps its telegrams: the stored half-hours are its register's advances.
        stored = {
            r.interval_start: r.value
            for r in service.store.readings_for("HUB1", "E0000000042", str(IMPORT_ACTIVE_ENERGY))
        }
        for start in starts:
            a = datetime.fromtimestamp(start, UTC)
            assert stored[start] == sent[a + timedelta(minutes=30)] - sent[a]
    finally:
        for w in wires:
            w.cancel()
        await asyncio.gather(*wires, return_exceptions=True)
        if service is not None:
            await service.collector.close()
            await service.scheduler.close()
            service.store.close()
        await assembly.stop()
        for server in (wrapper_gw, mbus_gw, zigbee_gw):
            server.close()
        for pty in ptys.values():
            pty.close()


def _iec_complete(buf: bytes) -> bool:
    return buf.endswith(b"\r\n")


async def _until(check: Callable[[], bool], what: str, wall_seconds: float) -> Any:
    for _ in range(int(wall_seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")
