"""[demand_response] and [[appliance]] in hub.toml: a hub started by ``smarthub hub`` holds the
GDSC's demand-response events (signed ``drlc.event``) and answers them, like the simulated homes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hub.test_appliances import LOADED, PLUG, washer_plug
from hub.test_drlc import NIGHT, event
from lxml import etree

from smarthub.assembly.config import ConfigError, parse_config
from smarthub.assembly.hub import build_hub, describe
from smarthub.clock import ManualClock
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.security.certificates import lfdi
from smarthub.sim.smart_plug import SimulatedPlugLink
from smarthub.wan.contract.drlc import DEVICE_CATEGORIES

HUB = """\
[hub]
id = "HUBDR"
state = "/var/lib/smarthub"
"""
PLUG_METER = f"""
[[meters]]
id = "{PLUG.upper()}"
protocol = "zigbee"
appliance = "washing machine"
transport = {{ kind = "tcp", host = "127.0.0.1", port = 1 }}
"""
SECTION = f"""
[demand_response]
enabled = true

[[appliance]]
name = "washing machine"
plug = "{PLUG}"
category = "smart-appliance"
"""


def test_the_section_gives_the_client_and_the_appliances() -> None:
    cfg = parse_config(
        HUB
        + PLUG_METER
        + SECTION
        + """
[[appliance]]
name = "ev charger"
plug = "00:0d:6f:00:0a:bc:de:02"
category = ["electric-vehicle", "ev-supply-equipment"]
interruptible = true
min_duty_percent = 20
demand_response = false

[[meters]]
id = "00:0d:6f:00:0a:bc:de:02"
protocol = "zigbee"
appliance = "ev charger"
transport = { kind = "tcp", host = "127.0.0.1", port = 1 }
"""
    )
    assert cfg.demand_response
    washer, ev = cfg.appliances
    assert (washer.name, washer.plug, washer.category) == ("washing machine", PLUG, 1 << 7)
    assert not washer.interruptible and washer.dr_enabled and washer.min_duty_percent == 0
    assert ev.category == DEVICE_CATEGORIES["electric-vehicle"] | DEVICE_CATEGORIES["ev-supply-equipment"]
    assert ev.interruptible and not ev.dr_enabled and ev.min_duty_percent == 20
    assert not parse_config(HUB).demand_response and parse_config(HUB).appliances == ()


@pytest.mark.parametrize(
    ("section", "field", "says"),
    [
        ("[demand_response]\nenabled = 1\n", "demand_response.enabled", "expected true or false"),
        ("[demand_response]\nenable = true\n", "demand_response.enable", "did you mean 'enabled'"),
        ('[[appliance]]\nplug = "x"\ncategory = "sauna"\n', "appliance[0].name", "missing"),
        ('[[appliance]]\nname = "w"\ncategory = "sauna"\n', "appliance[0].plug", "missing"),
        (f'[[appliance]]\nname = "w"\nplug = "{PLUG}"\n', "appliance[0].category", "missing"),
        (
            f'[[appliance]]\nname = "w"\nplug = "{PLUG}"\ncategory = "smart-appliences"\n',
            "appliance[0].category",
            "did you mean 'smart-appliance'",
        ),
        (
            f'[[appliance]]\nname = "w"\nplug = "{PLUG}"\ncategory = "sauna"\ninterruptible = true\n'
            "min_duty_percent = 101\n",
            "appliance[0].min_duty_percent",
            "outside 0..100",
        ),
        (
            f'[[appliance]]\nname = "w"\nplug = "{PLUG}"\ncategory = "sauna"\nmin_duty_percent = 10\n',
            "appliance[0].min_duty_percent",
            "only an interruptible appliance",
        ),
        (
            '[[appliance]]\nname = "w"\nplug = "00:0d:6f:00:0a:bc:de:09"\ncategory = "sauna"\n',
            "appliance[0].plug",
            "not a smart plug of [[meters]]",
        ),
        (
            f'[[appliance]]\nname = "w"\nplug = "{PLUG}"\ncategory = "sauna"\n'
            f'[[appliance]]\nname = "w"\nplug = "{PLUG}"\ncategory = "sauna"\n',
            "appliance[1].name",
            "also appliance[0]",
        ),
        (
            f'[[appliance]]\nname = "w"\nplug = "{PLUG}"\ncategory = "sauna"\n'
            f'[[appliance]]\nname = "v"\nplug = "{PLUG}"\ncategory = "sauna"\n',
            "appliance[1].plug",
            "already switches appliance[0]",
        ),
        (
            f'[[appliance]]\nname = "w"\nplug = "{PLUG}"\ncategory = "sauna"\ncolour = 1\n',
            "appliance[0].colour",
            "unknown",
        ),
    ],
)
def test_each_mistake_in_the_section_is_named(section: str, field: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(HUB + PLUG_METER + section, source="hub.toml")
    assert info.value.field == field, str(info.value)
    assert says in info.value.message and info.value.line is not None, str(info.value)


@pytest.fixture
def pki(tmp_path: Path, wall_now: datetime) -> Iterator[tuple[Path, CommandSigner]]:
    ca = CertificateAuthority.create("GDSC CA", wall_now - timedelta(days=1))
    ca.save(tmp_path / "ca")
    ca.issue(Role.HUB, "HUBDR", wall_now - timedelta(days=1), hosts=("127.0.0.1",)).save(tmp_path, "hub")
    op = ca.issue(Role.OPERATOR, "operator", wall_now - timedelta(days=1))
    assert op.private_key is not None
    counter = iter(range(1, 100))
    yield tmp_path, CommandSigner(op.private_key, op.cert_pem, lambda hub: next(counter))


def hub_toml(state: Path, section: str) -> str:
    return (
        f'[hub]\nid = "HUBDR"\nstate = "{state}"\nca = "{state / "ca" / "ca.pem"}"\n'
        + '\n[wan]\nlisten = "127.0.0.1"\nport = 0\n'
        + PLUG_METER
        + section
    )


async def test_a_hub_built_from_hub_toml_answers_a_signed_drlc_event(
    pki: tuple[Path, CommandSigner], wall_now: datetime
) -> None:
    state, signer = pki
    (state / "hub.toml").write_text(hub_toml(state, SECTION))
    a = build_hub(parse_config((state / "hub.toml").read_text()), clock=ManualClock(LOADED))

    async def send(ctype: str, body: dict[str, object]) -> dict[str, object]:
        envelope = signer.command("HUBDR", ctype, body, wall_now).envelope()
        verdict = json.loads((await a.management.handle(envelope)).to_json())
        assert verdict["status"] == "applied", verdict
        return verdict["result"]  # type: ignore[no-any-return]

    try:
        assert {"drlc.event", "drlc.responses", "appliance.run"} <= set(describe(a)["commands"])
        ev = event(61, NIGHT, 60)
        assert (await send("drlc.event", {"xml": ev.to_xml().decode()}))["status_name"] == "received"
        assert a.demand_response is not None and a.demand_response.drlc is not None
        assert [e.mrid for e in a.demand_response.drlc.events()] == [ev.mrid]
        pulled = await send("drlc.responses", {"after": 0})
        doc = etree.fromstring(str(pulled["xml"]).encode())
        ns = {"s": "urn:ieee:std:2030.5:ns"}
        assert [e.text for e in doc.findall("s:Response/s:status", ns)] == ["1"]  # received
        hub_lfdi = lfdi(x509_of(state / "hub.pem"))
        assert {e.text for e in doc.findall("s:Response/s:endDeviceLFDI", ns)} == {hub_lfdi.upper()}
        # No plug path in this build's ZigBee bridges: the controller's loop is not started.
        await a.start(["demand_response"])
        assert a.parts["demand_response"].tasks == []
    finally:
        await a.stop()


async def test_without_the_section_there_is_no_drlc_client(pki: tuple[Path, CommandSigner]) -> None:
    state, _ = pki
    a = build_hub(parse_config(hub_toml(state, "")))
    try:
        assert "demand_response" not in a.parts
        assert "drlc.event" not in describe(a)["commands"]
    finally:
        await a.stop()


async def test_with_a_plug_path_the_controller_switches_the_configured_plug(
    pki: tuple[Path, CommandSigner],
) -> None:
    state, _ = pki
    clock = ManualClock(LOADED)
    link = SimulatedPlugLink(clock, [washer_plug()])
    a = build_hub(parse_config(hub_toml(state, SECTION)), clock=clock, plug_link=link)
    try:
        await a.start(["demand_response"], until=LOADED)
        await asyncio.wait_for(asyncio.gather(*a.parts["demand_response"].tasks), 5)
        # After a start a plug's state is unknown: the controller tells it (Off, nothing planned).
        assert link.frames == 1
        assert a.demand_response is not None
        assert a.demand_response.controller.switchings() == [(LOADED, PLUG, False)]
    finally:
        await a.stop()


def x509_of(path: Path):  # type: ignore[no-untyped-def]
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes())
