"""Optional export of the hub's figures to the home's MQTT broker, with Home Assistant discovery.

Off by default; the consumer turns it on at the IHD (broker, credentials, topic prefix), kept in
``mqtt.json`` beside the hub's other settings. When on, the hub connects with paho-mqtt (the
Eclipse client: MQTT 3.1.1/5, its own network thread, reconnects by itself) and:

* publishes, **retained**, one discovery config per entity on
  ``<discovery prefix>/<component>/<node id>/<object id>/config`` (Home Assistant's MQTT
  discovery): ``sensor`` for power (device_class power, W, state_class measurement), imported
  energy (energy, kWh, total_increasing), gas (gas, m³, total_increasing) and today's cost
  (monetary, GBP, state_class total), ``binary_sensor`` (device_class power) for each
  appliance's plug. Every config names the hub as one device and the availability topic;
* sets a **last will** of ``offline`` (retained) on ``<base>/status`` and publishes ``online``
  once connected, so Home Assistant greys the entities out when the hub drops off;
* publishes each entity's state on ``<base>/<object id>/state`` (retained, so a restarted
  Home Assistant sees the last value) whenever ``publish_states`` is called: on the injected
  clock's period by ``run``, and at once when an appliance switches.

The hub only *exports*: no command topics are subscribed, so the home's automation platform
sees the hub but cannot drive its plugs past the hub's schedules and demand-response limits.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from smarthub.clock import Clock
from smarthub.model import ObisCode
from smarthub.model.obis import GAS_VOLUME, IMPORT_ACTIVE_ENERGY, IMPORT_ACTIVE_POWER
from smarthub.model.reading import Reading, Unit

_NODE_ID = re.compile(r"^[A-Za-z0-9_-]+$")


class MqttConfigError(ValueError):
    pass


@dataclass(frozen=True)
class MqttSettings:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    discovery_prefix: str = "homeassistant"
    base_topic: str = ""  # default: smarthub/<node id>
    publish_every_s: int = 10

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MqttSettings:
        try:
            s = cls(
                enabled=bool(data.get("enabled", False)),
                host=str(data.get("host", "127.0.0.1")),
                port=int(data.get("port", 1883)),
                username=None if data.get("username") is None else str(data["username"]),
                password=None if data.get("password") is None else str(data["password"]),
                discovery_prefix=str(data.get("discovery_prefix", "homeassistant")).strip("/"),
                base_topic=str(data.get("base_topic", "")).strip("/"),
                publish_every_s=int(data.get("publish_every_s", 10)),
            )
        except (TypeError, ValueError) as err:
            raise MqttConfigError(f"MQTT settings: {err}") from None
        if not 1 <= s.port <= 65535:
            raise MqttConfigError(f"MQTT port {s.port} is outside 1..65535")
        if s.publish_every_s < 1:
            raise MqttConfigError("publish_every_s must be at least 1")
        for t in (s.discovery_prefix, s.base_topic):
            if any(c in t for c in "+#\0"):
                raise MqttConfigError(f"topic {t!r} may not contain wildcards")
        return s


class MqttSettingsStore:
    """The consumer's MQTT settings, replaced atomically (a power cut leaves old or new)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def load(self) -> MqttSettings:
        if not self.path.exists():
            return MqttSettings()
        return MqttSettings.from_dict(json.loads(self.path.read_text()))

    def save(self, settings: MqttSettings) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(settings), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


@dataclass(frozen=True)
class Entity:
    component: str  # "sensor" or "binary_sensor"
    object_id: str
    name: str
    read: Callable[[], object]  # the state now (None: unknown, not published)
    device_class: str | None = None
    unit: str | None = None
    state_class: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class MqttExporter:
    def __init__(self, hub_id: str, settings: MqttSettings, clock: Clock) -> None:
        self.node_id = re.sub(r"[^A-Za-z0-9_-]", "_", hub_id)
        if not _NODE_ID.match(self.node_id):
            raise MqttConfigError(f"hub id {hub_id!r} gives no usable node id")
        self.hub_id = hub_id
        self.settings = settings
        self.clock = clock
        self.base = settings.base_topic or f"smarthub/{self.node_id}"
        self.entities: dict[str, Entity] = {}
        self._client: mqtt.Client | None = None
        self._last: dict[str, str] = {}

    @property
    def availability_topic(self) -> str:
        return f"{self.base}/status"

    def state_topic(self, object_id: str) -> str:
        return f"{self.base}/{object_id}/state"

    def config_topic(self, e: Entity) -> str:
        return f"{self.settings.discovery_prefix}/{e.component}/{self.node_id}/{e.object_id}/config"

    def add(self, entity: Entity) -> None:
        if not _NODE_ID.match(entity.object_id):
            raise MqttConfigError(f"object id {entity.object_id!r}: letters, digits, _ and - only")
        self.entities[entity.object_id] = entity
        if self._client is not None:
            self._publish_config(entity)

    def discovery_config(self, e: Entity) -> dict[str, Any]:
        config: dict[str, Any] = {
            "name": e.name,
            "unique_id": f"smarthub_{self.node_id}_{e.object_id}",
            "object_id": f"smarthub_{self.node_id}_{e.object_id}",
            "state_topic": self.state_topic(e.object_id),
            "availability_topic": self.availability_topic,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": {
                "identifiers": [f"smarthub_{self.node_id}"],
                "name": f"Smart Hub {self.hub_id}",
                "manufacturer": "smarthub",
                "model": "Smart Hub",
            },
        }
        if e.device_class:
            config["device_class"] = e.device_class
        if e.unit:
            config["unit_of_measurement"] = e.unit
        if e.state_class:
            config["state_class"] = e.state_class
        if e.component == "binary_sensor":
            config["payload_on"], config["payload_off"] = "ON", "OFF"
        config.update(e.extra)
        return config

    # -- connection ---------------------------------------------------------------------------------

    def start(self) -> bool:
        """Connect if the consumer enabled the export (returns whether it did)."""
        if not self.settings.enabled:
            return False
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"smarthub-{self.node_id}")
        if self.settings.username is not None:
            client.username_pw_set(self.settings.username, self.settings.password)
        client.will_set(self.availability_topic, "offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.reconnect_delay_set(1, 60)
        self._client = client
        client.connect_async(self.settings.host, self.settings.port, keepalive=30)
        client.loop_start()
        return True

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: Any, props: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            return  # paho retries; nothing is published until the broker accepts us
        for e in self.entities.values():
            self._publish_config(e)
        client.publish(self.availability_topic, "online", qos=1, retain=True)
        self._last.clear()  # after a reconnect, publish every state again
        self.publish_states()

    def _publish_config(self, e: Entity) -> None:
        assert self._client is not None
        self._client.publish(self.config_topic(e), json.dumps(self.discovery_config(e)), qos=1, retain=True)

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected()

    def stop(self) -> None:
        """A clean stop: say offline (a clean disconnect does not fire the will), then disconnect."""
        if self._client is None:
            return
        if self._client.is_connected():
            self._client.publish(self.availability_topic, "offline", qos=1, retain=True).wait_for_publish(5)
        self._client.disconnect()
        self._client.loop_stop()
        self._client = None

    # -- states ------------------------------------------------------------------------------------

    def states(self) -> dict[str, str]:
        out = {}
        for oid, e in self.entities.items():
            value = e.read()
            if value is None:
                continue
            if isinstance(value, bool):
                out[oid] = "ON" if value else "OFF"
            elif isinstance(value, Decimal):
                out[oid] = format(value, "f")  # never "1E+3": Home Assistant wants plain numbers
            else:
                out[oid] = str(value)
        return out

    def publish_states(self, *, changed_only: bool = True) -> int:
        """Publish each entity's state (those that changed, by default); the number published."""
        if self._client is None or not self._client.is_connected():
            return 0
        n = 0
        for oid, payload in self.states().items():
            if changed_only and self._last.get(oid) == payload:
                continue
            self._client.publish(self.state_topic(oid), payload, qos=1, retain=True)
            self._last[oid] = payload
            n += 1
        return n

    async def run(self, until: datetime | None = None) -> None:
        """Publish changed states every ``publish_every_s`` of the injected clock."""
        every = timedelta(seconds=self.settings.publish_every_s)
        t = self.clock.now()
        while until is None or t <= until:
            await self.clock.sleep_until(t)
            self.publish_states()
            t += every


# -- the hub's standard entities -------------------------------------------------------------------


def _value(reading: Reading | None, unit: Unit) -> Decimal | None:
    """A mirror reading in ``unit`` (W, kWh or m3), or None if there is none yet."""
    if reading is None:
        return None
    base, base_unit = reading.in_base_unit()
    if unit is Unit.KWH and base_unit is Unit.WH:
        return (base / 1000).normalize()
    if base_unit is not unit:
        return None
    return base.normalize()


def hub_entities(
    exporter: MqttExporter,
    latest: Callable[[str, ObisCode], Reading | None],
    electricity_meter: str | None,
    gas_meter: str | None = None,
    cost_today: Callable[[], Decimal | None] | None = None,
    appliances: Callable[[], dict[str, bool | None]] | None = None,
) -> None:
    """Register the mirror's power and energy, gas, today's cost and the appliances' plugs."""
    if electricity_meter is not None:
        m = electricity_meter

        def power() -> Decimal | None:
            return _value(latest(m, IMPORT_ACTIVE_POWER), Unit.W)

        def energy() -> Decimal | None:
            return _value(latest(m, IMPORT_ACTIVE_ENERGY), Unit.KWH)

        exporter.add(Entity("sensor", "power", "Power", power, "power", "W", "measurement"))
        exporter.add(
            Entity(
                "sensor", "energy_import", "Electricity imported", energy, "energy", "kWh", "total_increasing"
            )
        )
    if gas_meter is not None:
        g = gas_meter

        def gas() -> Decimal | None:
            return _value(latest(g, GAS_VOLUME), Unit.M3)

        exporter.add(Entity("sensor", "gas", "Gas", gas, "gas", "m³", "total_increasing"))
    if cost_today is not None:
        exporter.add(Entity("sensor", "cost_today", "Cost today", cost_today, "monetary", "GBP", "total"))
    if appliances is not None:
        for name in appliances():
            oid = re.sub(r"[^A-Za-z0-9_-]", "_", name.lower())

            def state(name: str = name) -> bool | None:
                return appliances().get(name)

            exporter.add(Entity("binary_sensor", f"appliance_{oid}", name.capitalize(), state, "power"))
