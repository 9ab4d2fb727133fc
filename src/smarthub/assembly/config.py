"""The hub's configuration: typed, loaded from TOML (``smarthub hub --config hub.toml``) or built in
code (the simulated fleet), and validated with a message naming the line and the field.

A small schema of its own rather than pydantic: the hub process must stay small (pydantic and
its core add several MB to a hub that would otherwise never import them) and the checks that
matter here cross fields (a protocol on a transport it cannot use, a shared serial port with
two baud rates, a prepaid fuel with no meter that can switch its supply), which read more
plainly as code than as validators. ``tomllib`` parses; :mod:`.toml_lines` finds the lines.

The file, in short (the README's "Run a hub against your real meters" has one per protocol)::

    [hub]
    id = "HUB000001"
    state = "/var/lib/smarthub"         # hub.pem, hub.key, ca.pem and the hub's databases

    [wan]
    listen = "0.0.0.0"
    port = 8443
    alerts = "gdsc.example:4059"        # the GDSC's last-gasp endpoint (UDP), optional
    channel = "gdsc.example:4443"       # behind a NAT: keep a channel open to the GDSC, optional
                                        # (listen = "none": no inbound port at all)

    [power_quality]
    enabled = true                      # 10-minute voltage min/mean/max, sag/swell counts (optional)

    [demand_response]
    enabled = true                      # the 2030.5 DRLC client: drlc.event, drlc.responses

    [[appliance]]                       # an appliance the hub may switch (appliance.run, DR events)
    name = "ev charger"
    plug = "00:0d:6f:00:0a:bc:de:02"    # its smart plug: a zigbee [[meters]] id with appliance set
    category = "electric-vehicle"       # 2030.5 DeviceCategoryType name(s)
    interruptible = true                # duty-cycled during an event, not below min_duty_percent

    [transports.han]                   # a named transport, shared by the meters that name it
    kind = "serial"                    # serial | tcp | pipe | simulated
    device = "/dev/ttyUSB0"
    baud = 2400
    format = "8E1"

    [[meters]]
    id = "6970631400000000"
    protocol = "dlms"                  # dsmr | dlms | iec62056-21 | mbus | wmbus | zigbee | sml
    fuel = "electricity"
    transport = "han"                  # or an inline table
    mode = "push"
    key_file = "keys/han.key"          # never readable by others

Relative paths are relative to the configuration file's directory.
"""

from __future__ import annotations

import builtins
import logging
import os
import re
import stat
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from smarthub.assembly.toml_lines import LineIndex, dotted
from smarthub.model import ObisCode

log = logging.getLogger(__name__)

PROTOCOLS = ("dsmr", "dlms", "iec62056-21", "mbus", "wmbus", "zigbee", "sml")
FUELS = ("electricity", "gas", "water", "warm_water", "heat", "heat_cost_allocator", "other")
TRANSPORT_KINDS = ("serial", "tcp", "pipe", "simulated")
GRANULARITIES = ("half-hourly", "daily", "monthly", "tariff-registers", "none")

# Which transports each protocol can run on, and whether the meter pushes or is polled.
TRANSPORTS_FOR: dict[str, tuple[str, ...]] = {
    "dsmr": ("serial", "tcp", "simulated"),
    "dlms": ("serial", "tcp", "simulated"),
    "iec62056-21": ("serial", "tcp", "simulated"),
    "mbus": ("serial", "tcp", "simulated"),
    "wmbus": ("serial", "tcp", "pipe", "simulated"),
    "zigbee": ("tcp", "pipe", "simulated"),
    "sml": ("serial", "tcp", "simulated"),
}
MODES: dict[str, tuple[str, ...]] = {
    "dsmr": ("push",),
    "dlms": ("push", "poll"),
    "iec62056-21": ("poll",),
    "mbus": ("poll",),
    "wmbus": ("push",),
    "zigbee": ("push",),
    "sml": ("push",),
}
# The serial settings a protocol's port uses unless the file says otherwise: DSMR 4/5 P1 115200
# 8N1 (DSMR 2/3: 9600 7E1); DLMS HAN ports 2400 8N1 (Aidon, Kaifa: 2400 8E1; Kamstrup 2400 8N1;
# Austrian and Swiss meters 9600 or 115200 8N1); IEC 62056-21 mode C starts at 300 7E1; wired
# M-Bus masters 2400 8E1; the iM871A stick 57600 8N1; SML optical heads 9600 8N1.
SERIAL_DEFAULTS: dict[str, tuple[int, str]] = {
    "dsmr": (115200, "8N1"),
    "dlms": (2400, "8N1"),
    "iec62056-21": (300, "7E1"),
    "mbus": (2400, "8E1"),
    "wmbus": (57600, "8N1"),
    "sml": (9600, "8N1"),
}
BAUDS = (300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
FORMATS = ("8N1", "8E1", "8O1", "7E1", "7O1", "8N2")  # data bits, parity, stop bits
WMBUS_RECEIVERS = ("im871a", "hex-lines")
DLMS_FRAMINGS = ("hdlc", "wrapper")
LINK_CRC = ("auto", "present", "stripped")
DEFAULT_REGISTERS = ("1-0:1.8.0", "1-0:2.8.0", "1-0:1.7.0")


# The zone of a meter's wall clock when neither the meter nor [hub] names one: DSMR meters are
# Dutch, Belgian or Luxembourgish (one zone); the others as in Great Britain.
DEFAULT_ZONES = {"dsmr": "Europe/Amsterdam"}
DEFAULT_ZONE = "Europe/London"


def zone_of(config: HubConfig, meter: MeterConfig) -> str:
    """The zone a meter's local timestamps are in: the meter's, else the hub's, else by protocol."""
    return meter.tz or config.timezone or DEFAULT_ZONES.get(meter.protocol, DEFAULT_ZONE)


class ConfigError(ValueError):
    """A mistake in the hub's configuration: ``str()`` names the file, line and field."""

    def __init__(self, message: str, *, source: str = "", line: int | None = None, field: str = "") -> None:
        self.source = source
        self.line = line
        self.field = field
        self.message = message
        where = source + (f" line {line}" if line is not None else "")
        super().__init__(": ".join(p for p in (where, field, message) if p))


# -- the typed configuration ------------------------------------------------------------------


@dataclass(frozen=True)
class TransportConfig:
    """Where a meter's bytes come from. Meters naming the same transport share one link."""

    kind: str  # serial | tcp | pipe | simulated
    name: str = ""  # as named under [transports], or "meters[N].transport"
    device: str | None = None  # serial
    baud: int | None = None  # serial; None: the protocol's default
    format: str | None = None  # serial: "8N1", "8E1", "7E1", ... (data bits, parity, stop bits)
    host: str | None = None  # tcp
    port: int | None = None  # tcp
    path: str | None = None  # pipe: a FIFO or file of lines; "-" standard input
    receiver: str | None = None  # wmbus: "im871a" (the stick's HCI) or "hex-lines"
    link_crc: str = "auto"  # wmbus: are the link-layer CRCs still in the frames?
    options: Mapping[str, Any] = field(default_factory=dict)  # simulated: the simulator's settings

    @property
    def identity(self) -> tuple[Any, ...]:
        """What makes two transports the same physical link."""
        if self.kind == "serial":
            return ("serial", self.device)
        if self.kind == "tcp":
            return ("tcp", self.host, self.port)
        if self.kind == "pipe":
            return ("pipe", self.path)
        return ("simulated", self.name)

    def describe(self) -> str:
        if self.kind == "serial":
            return f"serial {self.device} {self.baud or ''} {self.format or ''}".rstrip()
        if self.kind == "tcp":
            return f"tcp {self.host}:{self.port}"
        if self.kind == "pipe":
            return "standard input" if self.path == "-" else f"pipe {self.path}"
        return f"simulated {self.name}"


@dataclass(frozen=True)
class MeterConfig:
    protocol: str
    transport: TransportConfig
    id: str | None = None  # as the protocol reports it; radio meters must have one
    fuel: str = "electricity"
    mode: str = "push"  # push | poll
    key: bytes | None = None  # AES-128: wM-Bus/OMS key, DLMS encryption key (EK)
    authentication_key: bytes | None = None  # DLMS AK (default: the key)
    poll_every: timedelta = timedelta(minutes=5)
    framing: str = "hdlc"  # dlms: hdlc | wrapper
    list_profiles: Path | None = None  # dlms push: more list layouts (JSON), over the shipped table
    address: int | None = None  # mbus primary address; dlms server logical address
    physical_address: int | None = None  # dlms HDLC physical address (RS-485 multidrop)
    secondary: str | None = None  # mbus secondary address: 8 BCD digits, F a wildcard
    manufacturer: str | None = None  # mbus secondary address: the manufacturer (3 letters)
    device_address: str = ""  # iec62056-21: the device address in the request (empty: any)
    max_baud: int = 19200  # iec62056-21 mode C: cap the rate the meter proposes
    client_sap: int = 1  # dlms poll
    client_system_title: bytes | None = None  # dlms poll with keys (default: from the hub id)
    registers: tuple[ObisCode, ...] = ()  # dlms poll
    breaker: bool = False  # dlms poll: the hub may switch this meter's supply (class 70 / 71)
    fallback: TransportConfig | None = None  # dlms poll: a second path (e.g. a TCP wrapper)
    appliance: str | None = None  # a sub-meter (smart plug): the appliance it measures
    generator: bool = False  # registered generation: export is expected
    stale_after: timedelta | None = None  # diagnostics: silent this long is a fault
    tz: str | None = None  # the meter's wall-clock zone (default: the hub's)
    line: int | None = None  # where it was declared

    @property
    def label(self) -> str:
        return f"{self.protocol} meter {self.id}" if self.id else f"{self.protocol} meter"


@dataclass(frozen=True)
class SupplyConfig:
    fuel: str
    meter: str
    supplier: str
    tariff_json: str  # a list of tariff versions (smarthub.model.tariff)
    co2_g_per_kwh: str = "0"


@dataclass(frozen=True)
class ConsumerConfig:
    """The consumer side: priced consumption and the IHD, prepayment for the fuels named."""

    supplies: tuple[SupplyConfig, ...]
    prepayment: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServeConfig:
    listen: str = "0.0.0.0"
    port: int = 0


@dataclass(frozen=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    discovery_prefix: str = "homeassistant"
    base_topic: str = ""
    publish_every_s: int = 10


@dataclass(frozen=True)
class ApplianceConfig:
    """An appliance the hub may switch (``[[appliance]]``), as :class:`smarthub.hub.appliances.
    Appliance` takes it: its smart plug is a ZigBee sub-meter of ``[[meters]]``."""

    name: str
    plug: str  # the plug's EUI-64: the id of a ZigBee meter with ``appliance`` set
    category: int  # 2030.5 DeviceCategoryType bits (IEEE 2030.5 §B, DeviceCategoryType)
    interruptible: bool = False  # may be duty-cycled during an event (an EV charger, a heater)
    dr_enabled: bool = True  # the consumer may keep it out of demand response
    min_duty_percent: int = 0  # never duty-cycled below this share of each period
    line: int | None = None


@dataclass(frozen=True)
class HubConfig:
    hub_id: str
    state: Path
    certificate: Path
    private_key: Path
    ca: Path
    meters: tuple[MeterConfig, ...] = ()
    wan: ServeConfig = ServeConfig(port=8443)
    consumer: ConsumerConfig | None = None
    ihd: ServeConfig | None = None  # serve the IHD on the home network (needs [consumer])
    mqtt: MqttConfig | None = None
    gdsc_granularity: str | None = None  # recorded at first start when no consent is held yet
    timezone: str | None = None  # the meters' wall-clock zone (default: per protocol, see zone_of)
    firmware_probation: timedelta = timedelta(seconds=60)
    source: str = ""  # the file it came from
    # The GDSC's alert endpoint (host, UDP port) for last-gasp and restoration datagrams
    # (smarthub.wan.contract.alerts); None: this hub sends none.
    alerts: tuple[str, int] | None = None
    # The GDSC's channel endpoint (host, TCP port) for a hub it cannot dial
    # (smarthub.wan.contract.channel); None: the GDSC dials this hub.
    channel: tuple[str, int] | None = None
    # Keep 10-minute voltage statistics and sag/swell counts for the network operator
    # (smarthub.hub.power_quality); off unless asked for.
    power_quality: bool = False
    # The IEEE 2030.5 DRLC client (drlc.event, drlc.responses; smarthub.hub.drlc) and the
    # appliances its events may act on (appliance.run; smarthub.hub.appliances).
    demand_response: bool = False
    appliances: tuple[ApplianceConfig, ...] = ()

    @property
    def transports(self) -> list[tuple[TransportConfig, list[MeterConfig]]]:
        """Each distinct link with the meters on it, in the order of first use."""
        groups: dict[tuple[Any, ...], tuple[TransportConfig, list[MeterConfig]]] = {}
        for m in self.meters:
            groups.setdefault(m.transport.identity, (m.transport, []))[1].append(m)
        return list(groups.values())


def hub_config(
    hub_id: str,
    state: Path,
    *,
    certificate: Path | None = None,
    private_key: Path | None = None,
    ca: Path | None = None,
    **fields: Any,
) -> HubConfig:
    """A configuration built in code (the fleet, the legacy ``--serial``/``--tcp`` options),
    checked like one read from a file."""
    config = HubConfig(
        hub_id,
        Path(state),
        certificate or Path(state) / "hub.pem",
        private_key or Path(state) / "hub.key",
        ca or Path(state) / "ca.pem",
        **fields,
    )
    check(config)
    return config


# -- reading a file ---------------------------------------------------------------------------


def load_config(path: Path | str) -> HubConfig:
    """Read and check ``path``; a :class:`ConfigError` names the line and field of any mistake."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read the configuration: {err.strerror or err}", source=str(path)) from None
    return parse_config(text, source=str(path), base=path.parent)


def parse_config(text: str, *, source: str = "hub.toml", base: Path | None = None) -> HubConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        m = re.search(r"\(at line (\d+), column \d+\)", str(err))
        raise ConfigError(
            f"not valid TOML: {re.sub(r' ?[(]at line.*', '', str(err))}",
            source=source,
            line=int(m.group(1)) if m else None,
            field="(syntax)",
        ) from None
    reader = _Reader(LineIndex(text), source, base or Path.cwd())
    config = reader.hub(data)
    if reader.inline_secrets:
        _warn_if_readable(source, "holds a key or password inline")
    try:
        check(config)
    except ConfigError as err:
        if err.source:
            raise
        raise ConfigError(err.message, source=source, line=err.line, field=err.field) from None
    return config


def _warn_if_readable(source: str, what: str) -> None:
    try:
        mode = os.stat(source).st_mode
    except OSError:
        return
    if mode & stat.S_IROTH:
        log.warning("%s %s and is readable by every user: chmod o-r %s", source, what, source)


class _Table:
    """One TOML table being read: typed getters that record which keys were used."""

    def __init__(self, reader: _Reader, data: Mapping[str, Any], path: tuple[str | int, ...]) -> None:
        self.r = reader
        self.data = data
        self.path = path
        self.used: set[str] = set()

    def fail(self, key: str | None, message: str) -> ConfigError:
        path = (*self.path, key) if key is not None else self.path
        return ConfigError(message, source=self.r.source, line=self.r.lines.line(path), field=dotted(path))

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def str(self, key: str, default: Any = None, *, choices: Iterable[str] | None = None) -> Any:
        v = self.raw(key)
        if v is None:
            return default
        if not isinstance(v, str):
            raise self.fail(key, f"expected a string, got {_kind(v)} {v!r}")
        if choices is not None and v not in choices:
            raise self.fail(key, f"{v!r} is not one of {', '.join(choices)}{_suggest(v, choices)}")
        return v

    def int(
        self,
        key: builtins.str,
        default: Any = None,
        *,
        lo: builtins.int | None = None,
        hi: builtins.int | None = None,
    ) -> Any:
        v = self.raw(key)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(key, f"expected a whole number, got {_kind(v)} {v!r}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.fail(key, f"{v} is outside {lo}..{hi}")
        return v

    def bool(self, key: builtins.str, default: bool = False) -> bool:
        v = self.raw(key)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise self.fail(key, f"expected true or false, got {_kind(v)} {v!r}")
        return v

    def duration(self, key: builtins.str, default: Any = None) -> Any:
        """Seconds as a number, or a string such as ``"30s"``, ``"5m"``, ``"1h"``."""
        v = self.raw(key)
        if v is None:
            return default
        if isinstance(v, int | float) and not isinstance(v, bool):
            seconds = float(v)
        elif isinstance(v, str) and (m := re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", v)):
            seconds = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        else:
            raise self.fail(key, f'expected a duration (seconds, or e.g. "30s", "5m", "1h"), got {v!r}')
        if seconds <= 0:
            raise self.fail(key, "a duration must be positive")
        return timedelta(seconds=seconds)

    def path_(self, key: builtins.str, default: Any = None) -> Any:
        v = self.str(key)
        if v is None:
            return default
        p = Path(v).expanduser()
        return p if p.is_absolute() else self.r.base / p

    def table(self, key: builtins.str) -> _Table | None:
        v = self.raw(key)
        if v is None:
            return None
        if not isinstance(v, dict):
            raise self.fail(key, f"expected a table, got {_kind(v)} {v!r}")
        return _Table(self.r, v, (*self.path, key))

    def secret(self, key: builtins.str, *, hex_bytes: builtins.int | None = 16) -> Any:
        """``key`` inline (hex), or ``key_file`` naming a file no other user may read."""
        inline, file_key = self.raw(key), f"{key}_file"
        ref = self.raw(file_key)
        if inline is not None and ref is not None:
            raise self.fail(file_key, f"give {key} or {file_key}, not both")
        if inline is None and ref is None:
            return None
        if inline is not None:
            if not isinstance(inline, str):
                raise self.fail(key, f"expected a string, got {_kind(inline)}")
            self.r.inline_secrets = True
            text, where = inline, key
        else:
            path = self.path_(file_key)
            try:
                st = path.stat()
                text = path.read_text()
            except OSError as err:
                raise self.fail(file_key, f"cannot read {path}: {err.strerror or err}") from None
            if st.st_mode & (stat.S_IROTH | stat.S_IWOTH):
                raise self.fail(
                    file_key,
                    f"{path} is readable or writable by every user (mode {stat.S_IMODE(st.st_mode):o}); "
                    f"a key file must not be: chmod 600 {path}",
                )
            where = file_key
        if hex_bytes is None:
            return text.strip()
        cleaned = "".join(text.split())
        try:
            value = bytes.fromhex(cleaned)
        except ValueError:
            raise self.fail(where, "not a hex key (32 hex digits for AES-128)") from None
        if len(value) != hex_bytes:
            raise self.fail(
                where, f"an AES-128 key is {hex_bytes} bytes ({2 * hex_bytes} hex digits), got {len(value)}"
            )
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            k = unknown[0]
            raise self.fail(k, f"unknown setting{_suggest(k, self.used | _KNOWN.get(self.kind_name, set()))}")

    @property
    def kind_name(self) -> builtins.str:
        if self.path[:1] == ("transports",) or self.path[-1:] in (("transport",), ("fallback",)):
            return "transport"
        return next((p for p in reversed(self.path) if isinstance(p, str)), "")


# Keys read conditionally per table, offered as suggestions for typos.
_KNOWN: dict[str, set[str]] = {
    "transport": {
        "kind", "device", "baud", "format", "host", "port", "path", "receiver", "link_crc", "options",
    },
    "meters": {
        "id", "protocol", "fuel", "transport", "mode", "key", "key_file", "authentication_key",
        "authentication_key_file", "poll_every", "framing", "address", "list_profiles",
        "physical_address", "secondary", "manufacturer", "device_address", "max_baud", "client_sap",
        "client_system_title", "registers", "breaker", "fallback", "appliance", "generator",
        "stale_after", "timezone",
    },
    "appliance": {
        "name", "plug", "category", "interruptible", "demand_response", "min_duty_percent",
    },
}  # fmt: skip


_KINDS = {str: "a string", int: "a number", float: "a number", bool: "true/false", dict: "a table"}


def _kind(v: Any) -> str:
    return _KINDS.get(type(v), type(v).__name__)


def _suggest(word: str, options: Iterable[str]) -> str:
    import difflib  # only for a configuration with a mistake in it

    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _host_port(text: str) -> tuple[str, int] | None:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


class _Reader:
    def __init__(self, lines: LineIndex, source: str, base: Path) -> None:
        self.lines = lines
        self.source = source
        self.base = base
        self.inline_secrets = False
        self.named: dict[str, TransportConfig] = {}

    def hub(self, data: dict[str, Any]) -> HubConfig:
        top = _Table(self, data, ())
        hub = top.table("hub")
        if hub is None:
            raise top.fail("hub", "missing: the [hub] table with the hub's id and state directory")
        hub_id = hub.str("id")
        if not hub_id:
            raise hub.fail("id", "missing: this hub's id as registered at the GDSC")
        state = hub.path_("state")
        if state is None:
            raise hub.fail("state", "missing: the directory of the hub's certificates and databases")
        certificate = hub.path_("certificate", state / "hub.pem")
        private_key = hub.path_("private_key", state / "hub.key")
        ca = hub.path_("ca", state / "ca.pem")
        timezone = hub.str("timezone")
        probation = hub.duration("firmware_probation", timedelta(seconds=60))
        hub.done()

        wan_table = top.table("wan")
        alerts = None
        if wan_table is not None and (target := wan_table.str("alerts")) is not None:
            alerts = _host_port(target)
            if alerts is None:
                raise wan_table.fail(
                    "alerts", f"expected host:port (the GDSC's alert endpoint), got {target!r}"
                )
        channel = None
        if wan_table is not None and (target := wan_table.str("channel")) is not None:
            channel = _host_port(target)
            if channel is None:
                raise wan_table.fail(
                    "channel", f"expected host:port (the GDSC's channel endpoint), got {target!r}"
                )
        wan = self.serve(wan_table, 8443) or ServeConfig(port=8443)
        if wan.listen == "none" and channel is None and wan_table is not None:
            raise wan_table.fail(
                "listen", '"none" leaves the GDSC no way to reach the hub: give [wan] channel'
            )
        ihd = self.serve(top.table("ihd"), 8080)
        privacy = top.table("privacy")
        granularity = None
        if privacy is not None:
            granularity = privacy.str("gdsc", choices=GRANULARITIES)
            privacy.done()
        consumer = self.consumer(top.table("consumer"))
        mqtt = self.mqtt(top.table("mqtt"))
        demand_response = False
        dr_table = top.table("demand_response")
        if dr_table is not None:
            demand_response = dr_table.bool("enabled")
            dr_table.done()
        appliances_raw = top.raw("appliance") or []
        if not isinstance(appliances_raw, list):
            raise top.fail("appliance", "expected [[appliance]] tables")
        appliances = []
        for i, entry in enumerate(appliances_raw):
            if not isinstance(entry, dict):
                raise top.fail("appliance", f"entry {i} is {_kind(entry)}, not a table")
            appliances.append(self.appliance(_Table(self, entry, ("appliance", i))))
        pq_table = top.table("power_quality")
        power_quality = False
        if pq_table is not None:
            power_quality = pq_table.bool("enabled")
            pq_table.done()

        transports = top.table("transports")
        if transports is not None:
            for name in transports.data:
                t = transports.table(name)
                assert t is not None
                self.named[name] = self.transport(t, name)
            transports.done()
        meters_raw = top.raw("meters")
        if meters_raw is None:
            meters_raw = []
        if not isinstance(meters_raw, list):
            raise top.fail("meters", "expected [[meters]] tables")
        meters = []
        for i, m in enumerate(meters_raw):
            if not isinstance(m, dict):
                raise top.fail("meters", f"entry {i} is {_kind(m)}, not a table")
            meters.append(self.meter(_Table(self, m, ("meters", i))))
        top.done()
        return HubConfig(
            hub_id=hub_id,
            state=state,
            certificate=certificate,
            private_key=private_key,
            ca=ca,
            meters=tuple(meters),
            wan=wan,
            consumer=consumer,
            ihd=ihd,
            mqtt=mqtt,
            gdsc_granularity=granularity,
            timezone=timezone,
            firmware_probation=probation,
            source=self.source,
            alerts=alerts,
            channel=channel,
            power_quality=power_quality,
            demand_response=demand_response,
            appliances=tuple(appliances),
        )

    def appliance(self, t: _Table) -> ApplianceConfig:
        from smarthub.wan.contract.drlc import DEVICE_CATEGORIES

        name, plug = t.str("name"), t.str("plug")
        if not name:
            raise t.fail("name", "missing: the appliance's name, as appliance.run names it")
        if not plug:
            raise t.fail("plug", "missing: the EUI-64 of its smart plug (a ZigBee meter's id in [[meters]])")
        raw = t.raw("category")
        names = [raw] if isinstance(raw, str) else raw
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise t.fail("category", 'missing: a 2030.5 device category, e.g. "smart-appliance"')
        category = 0
        for n in names:
            if n not in DEVICE_CATEGORIES:
                raise t.fail(
                    "category", f"{n!r} is not a 2030.5 device category{_suggest(n, DEVICE_CATEGORIES)}"
                )
            category |= DEVICE_CATEGORIES[n]
        interruptible = t.bool("interruptible")
        min_duty = t.int("min_duty_percent", 0, lo=0, hi=100)
        if min_duty and not interruptible:
            raise t.fail("min_duty_percent", "only an interruptible appliance is duty-cycled")
        out = ApplianceConfig(
            name=name,
            plug=plug.lower(),
            category=category,
            interruptible=interruptible,
            dr_enabled=t.bool("demand_response", True),
            min_duty_percent=min_duty,
            line=self.lines.line(t.path),
        )
        t.done()
        return out

    def serve(self, t: _Table | None, default_port: int) -> ServeConfig | None:
        if t is None:
            return None
        out = ServeConfig(t.str("listen", "0.0.0.0"), t.int("port", default_port, lo=0, hi=65535))
        t.done()
        return out

    def mqtt(self, t: _Table | None) -> MqttConfig | None:
        if t is None:
            return None
        out = MqttConfig(
            host=t.str("host", "127.0.0.1"),
            port=t.int("port", 1883, lo=1, hi=65535),
            username=t.str("username"),
            password=t.secret("password", hex_bytes=None),
            discovery_prefix=t.str("discovery_prefix", "homeassistant"),
            base_topic=t.str("base_topic", ""),
            publish_every_s=int(t.duration("publish_every", timedelta(seconds=10)).total_seconds()),
        )
        for key in ("discovery_prefix", "base_topic"):
            if any(c in getattr(out, key) for c in "+#\0"):
                raise t.fail(key, "a topic may not contain MQTT wildcards (+ or #)")
        t.done()
        return out

    def consumer(self, t: _Table | None) -> ConsumerConfig | None:
        if t is None:
            return None
        supplies: list[SupplyConfig] = []
        prepayment = t.raw("prepayment") or []
        if not isinstance(prepayment, list) or not all(isinstance(f, str) for f in prepayment):
            raise t.fail("prepayment", 'expected a list of fuels, e.g. ["electricity"]')
        for f in prepayment:
            if f not in ("electricity", "gas"):
                raise t.fail("prepayment", f"{f!r}: prepayment is for electricity or gas")
        file = t.path_("file")
        if file is not None:
            try:
                supplies += consumer_json(file)
            except OSError as err:
                raise t.fail("file", f"cannot read {file}: {err.strerror or err}") from None
            except ValueError as err:
                raise t.fail("file", f"{file}: {err}") from None
        for fuel in ("electricity", "gas"):
            s = t.table(fuel)
            if s is None:
                continue
            tariff = s.path_("tariff")
            if tariff is None:
                raise s.fail("tariff", "missing: a JSON file with the tariff's versions")
            try:
                tariff_json = tariff.read_text()
            except OSError as err:
                raise s.fail("tariff", f"cannot read {tariff}: {err.strerror or err}") from None
            meter, supplier = s.str("meter"), s.str("supplier")
            if not meter or not supplier:
                raise s.fail("meter" if not meter else "supplier", "missing")
            co2 = s.raw("co2_g_per_kwh")
            co2_text = str(co2 if co2 is not None else 0)
            supplies.append(SupplyConfig(fuel, meter, supplier, tariff_json, co2_text))
            s.done()
        if not supplies:
            raise t.fail(None, 'give file = "consumer.json" or [consumer.electricity] / [consumer.gas]')
        t.done()
        return ConsumerConfig(tuple(supplies), tuple(prepayment))

    def transport(self, t: _Table, name: str) -> TransportConfig:
        kind = t.str("kind", choices=TRANSPORT_KINDS)
        if kind is None:
            raise t.fail("kind", f"missing: one of {', '.join(TRANSPORT_KINDS)}")
        out = TransportConfig(kind=kind, name=name)
        if kind == "serial":
            device = t.str("device")
            if not device:
                raise t.fail("device", "missing: the serial device, e.g. /dev/ttyUSB0")
            baud = t.int("baud")
            if baud is not None and baud not in BAUDS:
                raise t.fail("baud", f"{baud} is not a serial rate ({', '.join(map(str, BAUDS))})")
            out = replace(out, device=device, baud=baud, format=t.str("format", choices=FORMATS))
        elif kind == "tcp":
            host, port = t.str("host"), t.int("port", lo=1, hi=65535)
            if not host:
                raise t.fail("host", "missing: the gateway's address (ser2net, a P1 dongle, a TCP wrapper)")
            if port is None:
                raise t.fail("port", "missing: the gateway's TCP port")
            out = replace(out, host=host, port=port)
        elif kind == "pipe":
            out = replace(out, path=t.str("path", "-"))
        else:
            options = t.raw("options") or {}
            if not isinstance(options, dict):
                raise t.fail("options", "expected a table of the simulator's settings")
            out = replace(out, options=options)
        receiver = t.str("receiver", choices=WMBUS_RECEIVERS)
        out = replace(out, receiver=receiver, link_crc=t.str("link_crc", "auto", choices=LINK_CRC))
        t.done()
        return out

    def transport_ref(self, m: _Table, key: str, index: int) -> TransportConfig | None:
        v = m.data.get(key)
        if v is None:
            m.used.add(key)
            return None
        if isinstance(v, str):
            m.used.add(key)
            if v not in self.named:
                raise m.fail(key, f"no transport named {v!r} under [transports]{_suggest(v, self.named)}")
            return self.named[v]
        t = m.table(key)
        assert t is not None
        return self.transport(t, f"meters[{index}].{key}")

    def profiles(self, m: _Table) -> Path | None:
        path = m.path_("list_profiles")
        if path is not None:
            try:
                load_profiles(path)
            except OSError as err:
                raise m.fail("list_profiles", f"cannot read {path}: {err.strerror or err}") from None
            except ValueError as err:
                raise m.fail("list_profiles", f"{path}: {err}") from None
        return path

    def meter(self, m: _Table) -> MeterConfig:
        index = m.path[-1]
        assert isinstance(index, int)
        protocol = m.str("protocol", choices=PROTOCOLS)
        if protocol is None:
            raise m.fail("protocol", f"missing: one of {', '.join(PROTOCOLS)}")
        transport = self.transport_ref(m, "transport", index)
        if transport is None:
            raise m.fail("transport", "missing: a transport name or an inline table")
        mode = m.str("mode", MODES[protocol][0], choices=("push", "poll"))
        registers_raw = m.raw("registers")
        registers: tuple[ObisCode, ...] = ()
        if registers_raw is not None:
            if not isinstance(registers_raw, list) or not all(isinstance(r, str) for r in registers_raw):
                raise m.fail("registers", 'expected a list of OBIS codes, e.g. ["1-0:1.8.0"]')
            try:
                registers = tuple(ObisCode.parse(r) for r in registers_raw)
            except ValueError as err:
                raise m.fail("registers", str(err)) from None
        title = m.str("client_system_title")
        client_title = None
        if title is not None:
            try:
                client_title = bytes.fromhex(title)
            except ValueError:
                raise m.fail("client_system_title", "not hex") from None
            if len(client_title) != 8:
                raise m.fail("client_system_title", "a system title is 8 bytes (16 hex digits)")
        address_raw = m.raw("address")
        if protocol == "iec62056-21" and address_raw is not None:
            raise m.fail("address", "an IEC 62056-21 meter's address is device_address (a string)")
        address = m.int("address", lo=0, hi=0x3FFF)
        out = MeterConfig(
            protocol=protocol,
            transport=transport,
            id=m.str("id"),
            fuel=m.str("fuel", "electricity", choices=FUELS),
            mode=mode,
            key=m.secret("key"),
            authentication_key=m.secret("authentication_key"),
            poll_every=m.duration("poll_every", timedelta(minutes=5)),
            framing=m.str("framing", "hdlc", choices=DLMS_FRAMINGS),
            list_profiles=self.profiles(m),
            address=address,
            physical_address=m.int("physical_address", lo=0, hi=0x3FFF),
            secondary=m.str("secondary"),
            manufacturer=m.str("manufacturer"),
            device_address=m.str("device_address", ""),
            max_baud=m.int("max_baud", 19200),
            client_sap=m.int("client_sap", 1, lo=0, hi=0x7F),
            client_system_title=client_title,
            registers=registers,
            breaker=m.bool("breaker"),
            fallback=self.transport_ref(m, "fallback", index),
            appliance=m.str("appliance"),
            generator=m.bool("generator"),
            stale_after=m.duration("stale_after"),
            tz=m.str("timezone"),
            line=self.lines.line(m.path),
        )
        m.done()
        return out


def load_profiles(path: Path) -> Any:
    """The shipped DLMS list profiles with those of ``path`` added (a meter model the table does
    not know yet, :mod:`smarthub.meters.dlms.profiles`); a ``ValueError`` names what is wrong."""
    import json

    from smarthub.meters.dlms.profiles import SHIPPED, ListProfiles

    shipped = json.loads(SHIPPED.read_text("utf-8"))
    extra = json.loads(path.read_text("utf-8"))
    if not isinstance(extra, dict) or not isinstance(extra.get("profiles"), list):
        raise ValueError('expected {"profiles": [...]} as in smarthub/meters/list_profiles.json')
    return ListProfiles.from_dict({**shipped, "profiles": [*shipped["profiles"], *extra["profiles"]]})


def consumer_json(path: Path) -> list[SupplyConfig]:
    """The supplies of a consumer file (``smarthub hub --consumer``): per fuel ``meter``,
    ``supplier``, ``tariff`` (a list of tariff versions) and ``co2_g_per_kwh``."""
    import json

    try:
        data = json.loads(path.read_text())
        return [
            SupplyConfig(
                fuel,
                str(c["meter"]),
                str(c["supplier"]),
                json.dumps(c["tariff"]),
                str(c.get("co2_g_per_kwh", "0")),
            )
            for fuel, c in sorted(data.items())
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{type(err).__name__}: {err}") from None


# -- checks across fields -----------------------------------------------------------------------


def _meter_field(config: HubConfig, index: int, key: str, message: str) -> ConfigError:
    m = config.meters[index]
    return ConfigError(message, line=m.line, field=f"meters[{index}].{key}")


def check(config: HubConfig) -> None:
    """What a file cannot say wrongly without the hub failing later, said now."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        if config.timezone is not None:
            ZoneInfo(config.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {config.timezone!r}", field="hub.timezone") from None
    links: dict[tuple[Any, ...], tuple[int, TransportConfig, str]] = {}
    ids: dict[str, int] = {}
    for i, m in enumerate(config.meters):
        t = m.transport
        if t.kind not in TRANSPORTS_FOR[m.protocol]:
            raise _meter_field(
                config, i, "transport",
                f"a {m.protocol} meter cannot be read over a {t.kind} transport "
                f"({', '.join(TRANSPORTS_FOR[m.protocol])})",
            )  # fmt: skip
        if m.mode not in MODES[m.protocol]:
            raise _meter_field(
                config, i, "mode", f"a {m.protocol} meter is {' or '.join(MODES[m.protocol])}, not {m.mode}"
            )
        seen = links.get(t.identity)
        if seen is not None:
            j, other, protocol = seen
            if protocol != m.protocol:
                raise _meter_field(
                    config, i, "transport",
                    f"{t.describe()} already carries meters[{j}] ({protocol}); one link speaks one protocol",
                )  # fmt: skip
            if replace(other, name="") != replace(t, name=""):
                raise _meter_field(
                    config, i, "transport",
                    f"{t.describe()} is also meters[{j}]'s, with other settings: name it once under "
                    "[transports] and refer to it by name",
                )  # fmt: skip
        else:
            links[t.identity] = (i, t, m.protocol)
        if m.id is not None:
            if m.id in ids:
                raise _meter_field(config, i, "id", f"{m.id!r} is also meters[{ids[m.id]}]")
            ids[m.id] = i
        if m.protocol == "dlms" and m.mode == "poll" and not m.id:
            raise _meter_field(
                config,
                i,
                "id",
                "missing: a polled DLMS meter's id (its serial or system title, as it reports)",
            )
        if m.protocol in ("wmbus", "zigbee") and not m.id:
            raise _meter_field(
                config, i, "id",
                "missing: a radio hears the neighbours' meters too, so each of this home's must be "
                "named (`smarthub listen` prints the ids heard)",
            )  # fmt: skip
        if m.protocol == "wmbus" and t.kind in ("serial", "tcp") and t.receiver is None:
            raise _meter_field(
                config, i, "transport.receiver",
                "missing: im871a (an IMST iM871A stick's HCI frames) or hex-lines (a frame in hex a line)",
            )  # fmt: skip
        if m.protocol == "wmbus" and t.kind == "pipe" and t.receiver not in (None, "hex-lines"):
            raise _meter_field(config, i, "transport.receiver", "a pipe carries hex lines")
        if m.protocol == "iec62056-21":
            if t.kind == "serial" and (t.baud not in (None, 300) or t.format not in (None, "7E1")):
                raise _meter_field(
                    config, i, "transport.baud",
                    "IEC 62056-21 mode C signs on at 300 baud 7E1 and switches to the rate the meter "
                    "proposes; cap it with max_baud on the meter",
                )  # fmt: skip
            if m.max_baud not in BAUDS or m.max_baud > 19200:
                raise _meter_field(config, i, "max_baud", "a mode C rate: 300 .. 19200")
        if m.protocol == "mbus":
            if (m.address is None) == (m.secondary is None):
                raise _meter_field(
                    config, i, "address",
                    "give a primary address (0-250) or a secondary address (secondary = \"12345678\")",
                )  # fmt: skip
            if m.address is not None and m.address > 250:
                raise _meter_field(config, i, "address", "an M-Bus primary address is 0-250")
            if m.secondary is not None and not re.fullmatch(r"[0-9Ff]{8}", m.secondary):
                raise _meter_field(config, i, "secondary", "8 BCD digits, F a wildcard digit")
        if m.protocol == "wmbus" and m.key is None:
            log.info("%s has no key: only unencrypted frames decode", m.label)
        if m.breaker and not (m.protocol == "dlms" and m.mode == "poll"):
            raise _meter_field(
                config, i, "breaker", "only a polled DLMS meter's disconnect control can switch the supply"
            )
        if m.fallback is not None and not (m.protocol == "dlms" and m.mode == "poll"):
            raise _meter_field(config, i, "fallback", "a second path is for polled DLMS meters")
        if m.appliance is not None and m.protocol != "zigbee":
            raise _meter_field(config, i, "appliance", "sub-meters (smart plugs) are ZigBee devices")
        if m.list_profiles is not None and not (m.protocol == "dlms" and m.mode == "push"):
            raise _meter_field(config, i, "list_profiles", "list profiles are for DLMS push meters")
        if m.tz is not None:
            try:
                ZoneInfo(m.tz)
            except (ZoneInfoNotFoundError, ValueError):
                raise _meter_field(config, i, "timezone", f"unknown time zone {m.tz!r}") from None
    plugs = {str(m.id).lower() for m in config.meters if m.protocol == "zigbee" and m.appliance and m.id}
    names: dict[str, int] = {}
    plugged: dict[str, int] = {}
    for i, a in enumerate(config.appliances):
        where = f"appliance[{i}]"
        if a.plug not in plugs:
            raise ConfigError(
                f"{a.plug!r} is not a smart plug of [[meters]] (a zigbee meter with this id and "
                "appliance set): the hub switches only plugs it meters",
                line=a.line, field=f"{where}.plug",
            )  # fmt: skip
        if a.name in names:
            raise ConfigError(
                f"{a.name!r} is also appliance[{names[a.name]}]", line=a.line, field=f"{where}.name"
            )
        if a.plug in plugged:
            raise ConfigError(
                f"{a.plug} already switches appliance[{plugged[a.plug]}]", line=a.line, field=f"{where}.plug"
            )
        names[a.name], plugged[a.plug] = i, i
    if config.consumer is not None:
        breakers = {m.fuel for m in config.meters if m.breaker}
        for fuel in config.consumer.prepayment:
            if fuel not in breakers:
                raise ConfigError(
                    f"{fuel} on prepayment needs a meter that can switch its supply "
                    f"(a polled DLMS {fuel} meter with breaker = true)",
                    field="consumer.prepayment",
                )
    elif config.ihd is not None:
        raise ConfigError(
            "the in-home display needs [consumer] (the supplies and tariffs it shows)", field="ihd"
        )
