"""[mqtt] in hub.toml: the assembled hub announces itself to the home's broker (the real
Mosquitto on 127.0.0.1:1883) with Home Assistant discovery, and says offline when it stops."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from smarthub.assembly.config import parse_config
from smarthub.assembly.hub import build_hub
from smarthub.gdsc.pki import CertificateAuthority, Role

from .test_mqtt_export import Listener, _broker_up, _clear_retained

pytestmark = pytest.mark.skipif(not _broker_up(), reason="no MQTT broker on 127.0.0.1:1883")


async def test_the_mqtt_part_announces_the_configured_meters(tmp_path: Path, wall_now: datetime) -> None:
    ca = CertificateAuthority.create("GDSC CA", wall_now)
    ca.save(tmp_path / "ca")
    ca.issue(Role.HUB, "HUBMQTT", wall_now, hosts=("127.0.0.1",)).save(tmp_path, "hub")
    prefix, base = f"ha{uuid.uuid4().hex[:8]}", f"sh{uuid.uuid4().hex[:8]}"
    config = parse_config(f"""
[hub]
id = "HUBMQTT"
state = "{tmp_path}"
ca = "{tmp_path / "ca" / "ca.pem"}"

[mqtt]
host = "127.0.0.1"
discovery_prefix = "{prefix}"
base_topic = "{base}"

[[meters]]
id = "E1"
protocol = "dsmr"
transport = {{ kind = "tcp", host = "127.0.0.1", port = 1 }}

[[meters]]
id = "G1"
protocol = "dsmr"
fuel = "gas"
transport = {{ kind = "tcp", host = "127.0.0.1", port = 1 }}
""")
    assembly = build_hub(config)
    listener = Listener(f"{prefix}/+/HUBMQTT/+/config", f"{base}/status")
    topics = [f"{prefix}/sensor/HUBMQTT/{o}/config" for o in ("power", "energy_import", "gas")]
    try:
        await assembly.start(["mqtt"])
        configs = listener.collect(prefix, 3)
        assert sorted(configs) == sorted(topics)
        gas = json.loads(configs[f"{prefix}/sensor/HUBMQTT/gas/config"].payload)
        assert gas["device_class"] == "gas" and gas["state_topic"] == f"{base}/gas/state"
        listener.until(f"{base}/status", "online")
        await assembly.stop()
        listener.until(f"{base}/status", "offline")
    finally:
        await assembly.stop()
        listener.close()
        _clear_retained([*topics, f"{base}/status"])
