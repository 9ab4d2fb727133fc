"""MQTT export with Home Assistant discovery, against the real Mosquitto on 127.0.0.1:1883:
retained discovery configs, states, availability with a last will, off by default."""

from __future__ import annotations

import json
import queue
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from smarthub.clock import ManualClock
from smarthub.hub.mirror import DataMirror
from smarthub.hub.mqtt_export import (
    MqttConfigError,
    MqttExporter,
    MqttSettings,
    MqttSettingsStore,
    hub_entities,
)
from smarthub.model import Reading
from smarthub.model.obis import GAS_VOLUME, IMPORT_ACTIVE_ENERGY, IMPORT_ACTIVE_POWER
from smarthub.model.reading import Unit

T0 = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)
BROKER = ("127.0.0.1", 1883)


def _broker_up() -> bool:
    try:
        socket.create_connection(BROKER, timeout=1).close()
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _broker_up(), reason="no MQTT broker on 127.0.0.1:1883")


class Listener:
    """A plain paho subscriber: every message on the topics, retained flag included."""

    def __init__(self, *topics: str) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
        subscribed = queue.Queue[bool]()
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_subscribe = lambda *a: subscribed.put(True)
        self.client.connect(*BROKER)
        self.client.loop_start()
        self.client.subscribe([(t, 1) for t in topics])
        subscribed.get(timeout=5)

    def until(self, topic: str, payload: str | None = None, timeout: float = 5.0) -> mqtt.MQTTMessage:
        """The next message on ``topic`` (with that payload, if given); earlier ones are skipped."""
        while True:
            m = self.messages.get(timeout=timeout)
            if m.topic == topic and (payload is None or m.payload.decode() == payload):
                return m

    def collect(self, prefix: str, n: int, timeout: float = 5.0) -> dict[str, mqtt.MQTTMessage]:
        out: dict[str, mqtt.MQTTMessage] = {}
        while len(out) < n:
            m = self.messages.get(timeout=timeout)
            if m.topic.startswith(prefix):
                out[m.topic] = m
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _clear_retained(topics: list[str]) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.connect(*BROKER)
    c.loop_start()
    for t in topics:
        c.publish(t, b"", qos=1, retain=True).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


@pytest.fixture
def hub_id() -> Iterator[str]:
    hid = f"HUB{uuid.uuid4().hex[:8].upper()}"
    yield hid
    node = hid
    _clear_retained(
        [f"homeassistant/{c}/{node}/{o}/config" for c, o in (
            ("sensor", "power"), ("sensor", "energy_import"), ("sensor", "gas"), ("sensor", "cost_today"),
            ("binary_sensor", "appliance_washing_machine"))]
        + [f"smarthub/{node}/{o}/state" for o in ("power", "energy_import", "gas", "cost_today",
                                                   "appliance_washing_machine")]
        + [f"smarthub/{node}/status"]
    )  # fmt: skip


def readings(t: datetime, watts: str, kwh: str, m3: str) -> list[Reading]:
    return [
        Reading("E1", IMPORT_ACTIVE_POWER, Decimal(watts), Unit.W, t),
        Reading("E1", IMPORT_ACTIVE_ENERGY, Decimal(kwh), Unit.KWH, t),
        Reading("G1", GAS_VOLUME, Decimal(m3), Unit.M3, t),
    ]


def test_discovery_states_and_availability_on_the_real_broker(hub_id: str) -> None:
    clock = ManualClock(T0)
    mirror = DataMirror()
    mirror.update(readings(T0, "1234", "4321.125", "1500.020"))
    plugs: dict[str, bool | None] = {"washing machine": False}
    exporter = MqttExporter(hub_id, MqttSettings(enabled=True, publish_every_s=1), clock)
    hub_entities(exporter, mirror.latest, "E1", "G1", lambda: Decimal("1.37"), lambda: dict(plugs))
    listener = Listener("homeassistant/+/" + hub_id + "/+/config", f"smarthub/{hub_id}/#")
    try:
        assert exporter.start()
        configs = listener.collect("homeassistant/", 5)
        listener.until(f"smarthub/{hub_id}/status", "online")
        power = json.loads(configs[f"homeassistant/sensor/{hub_id}/power/config"].payload)
        assert power["device_class"] == "power" and power["unit_of_measurement"] == "W"
        assert power["state_class"] == "measurement"
        assert power["state_topic"] == f"smarthub/{hub_id}/power/state"
        assert power["availability_topic"] == f"smarthub/{hub_id}/status"
        assert power["device"]["identifiers"] == [f"smarthub_{hub_id}"]
        energy = json.loads(configs[f"homeassistant/sensor/{hub_id}/energy_import/config"].payload)
        assert (energy["device_class"], energy["unit_of_measurement"], energy["state_class"]) == (
            "energy", "kWh", "total_increasing")  # fmt: skip
        gas = json.loads(configs[f"homeassistant/sensor/{hub_id}/gas/config"].payload)
        assert (gas["device_class"], gas["unit_of_measurement"], gas["state_class"]) == (
            "gas", "m³", "total_increasing")  # fmt: skip
        cost = json.loads(configs[f"homeassistant/sensor/{hub_id}/cost_today/config"].payload)
        assert (cost["device_class"], cost["unit_of_measurement"]) == ("monetary", "GBP")
        washer = json.loads(
            configs[f"homeassistant/binary_sensor/{hub_id}/appliance_washing_machine/config"].payload
        )
        assert washer["device_class"] == "power" and washer["payload_on"] == "ON"
        assert len({json.loads(m.payload)["unique_id"] for m in configs.values()}) == 5

        assert listener.until(f"smarthub/{hub_id}/power/state").payload == b"1234"
        assert listener.until(f"smarthub/{hub_id}/energy_import/state").payload == b"4321.125"
        assert listener.until(f"smarthub/{hub_id}/gas/state").payload == b"1500.02"
        assert listener.until(f"smarthub/{hub_id}/appliance_washing_machine/state").payload == b"OFF"

        # New readings and a switched plug: only what changed is published again.
        mirror.update(readings(T0 + timedelta(seconds=10), "2500", "4321.130", "1500.020"))
        plugs["washing machine"] = True
        assert exporter.publish_states() == 3  # power, energy, washer; gas and cost unchanged
        assert listener.until(f"smarthub/{hub_id}/power/state").payload == b"2500"
        assert listener.until(f"smarthub/{hub_id}/appliance_washing_machine/state").payload == b"ON"

        # A later subscriber (Home Assistant restarting) gets configs and states retained.
        late = Listener(f"homeassistant/sensor/{hub_id}/power/config", f"smarthub/{hub_id}/power/state")
        try:
            assert late.until(f"homeassistant/sensor/{hub_id}/power/config").retain
            assert late.until(f"smarthub/{hub_id}/power/state").payload == b"2500"
        finally:
            late.close()

        # The hub drops off without a DISCONNECT: the broker publishes its will.
        client = exporter._client
        assert client is not None
        sock = client.socket()
        assert sock is not None
        client.loop_stop()
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        assert listener.until(f"smarthub/{hub_id}/status", "offline", timeout=10).payload == b"offline"
        exporter._client = None
    finally:
        exporter.stop()
        listener.close()


def test_a_clean_stop_says_offline(hub_id: str) -> None:
    exporter = MqttExporter(hub_id, MqttSettings(enabled=True), ManualClock(T0))
    listener = Listener(f"smarthub/{hub_id}/status")
    try:
        exporter.start()
        listener.until(f"smarthub/{hub_id}/status", "online")
        exporter.stop()
        assert listener.until(f"smarthub/{hub_id}/status", "offline").retain is False  # live delivery
    finally:
        listener.close()


def test_export_is_off_until_the_consumer_turns_it_on(tmp_path: Path, hub_id: str) -> None:
    store = MqttSettingsStore(tmp_path / "mqtt.json")
    assert store.load() == MqttSettings() and not store.load().enabled
    exporter = MqttExporter(hub_id, store.load(), ManualClock(T0))
    assert exporter.start() is False and not exporter.connected and exporter.publish_states() == 0
    store.save(MqttSettings(enabled=True, host="127.0.0.1", username="home", password="pw"))
    assert store.load().enabled and store.load().username == "home"
    with pytest.raises(MqttConfigError, match=r"outside 1\.\.65535"):
        MqttSettings.from_dict({"port": 70000})
    with pytest.raises(MqttConfigError, match="wildcards"):
        MqttSettings.from_dict({"base_topic": "home/#"})
