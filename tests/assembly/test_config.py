"""hub.toml: what it accepts, and for each mistake a message naming the line and the field."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from smarthub.assembly.config import ConfigError, load_config, parse_config

HUB = """\
[hub]
id = "HUB1"
state = "/var/lib/smarthub"
"""


def parse(text: str, base: Path | None = None):  # type: ignore[no-untyped-def]
    return parse_config(text, source="hub.toml", base=base)


def error(text: str, base: Path | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text, base)
    return info.value


def test_a_config_with_named_and_inline_transports_and_shared_links() -> None:
    cfg = parse(
        HUB
        + """
[transports.stick]
kind = "serial"
device = "/dev/ttyUSB1"
receiver = "im871a"

[[meters]]
id = "LSE50000001"
protocol = "wmbus"
fuel = "gas"
transport = "stick"
key = "000102030405060708090A0B0C0D0E0F"

[[meters]]
id = "LSE60000001"
protocol = "wmbus"
fuel = "water"
transport = "stick"

[[meters]]
protocol = "mbus"
address = 5
fuel = "heat"
transport = { kind = "serial", device = "/dev/ttyUSB2", baud = 2400, format = "8E1" }
poll_every = "15m"
"""
    )
    assert cfg.hub_id == "HUB1" and cfg.certificate == Path("/var/lib/smarthub/hub.pem")
    assert [m.protocol for m in cfg.meters] == ["wmbus", "wmbus", "mbus"]
    assert cfg.meters[0].key == bytes(range(16)) and cfg.meters[1].key is None
    assert cfg.meters[2].poll_every.total_seconds() == 900 and cfg.meters[2].transport.format == "8E1"
    links = cfg.transports
    assert len(links) == 2 and [len(ms) for _, ms in links] == [2, 1]  # two meters share the stick


@pytest.mark.parametrize(
    ("text", "line", "field", "says"),
    [
        (HUB + "port = 8443\n", 4, "hub.port", "unknown setting"),
        ('[hub]\nid = "H"\n', 1, "hub.state", "missing"),
        (HUB + "[wan]\nport = 70000\n", 5, "wan.port", "outside 0..65535"),
        (HUB + "[wan]\nprot = 8443\n", 5, "wan.prot", "did you mean 'port'"),
        (
            HUB
            + '[[meters]]\nprotocol = "dlms"\ntransport = { kind = "serial", device = "/dev/ttyS0", baud = 2401 }\n',
            6,
            "meters[0].transport.baud",
            "2401 is not a serial rate",
        ),
        (HUB + '[[meters]]\nprotocol = "dmsr"\n', 5, "meters[0].protocol", "did you mean 'dsmr'"),
        (
            HUB + '[[meters]]\nprotocol = "dsmr"\ntransport = "p1"\n',
            6,
            "meters[0].transport",
            "no transport named 'p1'",
        ),
        (
            HUB
            + '[[meters]]\nprotocol = "iec62056-21"\ntransport = { kind = "tcp", host = "gw", port = 4001 }\n'
            '[[meters]]\nprotocol = "mbus"\ntransport = { kind = "tcp", host = "gw", port = 4001 }\naddress = 1\n',
            7,
            "meters[1].transport",
            "one link speaks one protocol",
        ),
        (
            HUB
            + '[[meters]]\nprotocol = "wmbus"\ntransport = { kind = "serial", device = "/dev/ttyUSB0", receiver = "im871a" }\n',
            4,
            "meters[0].id",
            "a radio hears the neighbours",
        ),
        (
            HUB
            + '[[meters]]\nid = "X"\nprotocol = "wmbus"\ntransport = { kind = "serial", device = "/dev/ttyUSB0" }\n',
            4,
            "meters[0].transport.receiver",
            "im871a",
        ),
        (
            HUB + '[[meters]]\nprotocol = "mbus"\ntransport = { kind = "serial", device = "/dev/ttyUSB0" }\n',
            4,
            "meters[0].address",
            "primary address",
        ),
        (
            HUB
            + '[[meters]]\nprotocol = "iec62056-21"\ntransport = { kind = "serial", device = "/dev/ttyUSB0", baud = 9600 }\n',
            4,
            "meters[0].transport.baud",
            "300 baud 7E1",
        ),
        (
            HUB
            + '[[meters]]\nprotocol = "zigbee"\nid = "e"\ntransport = { kind = "serial", device = "/dev/x" }\n',
            4,
            "meters[0].transport",
            "cannot be read over a serial transport",
        ),
        (
            HUB
            + '[[meters]]\nprotocol = "dsmr"\nmode = "poll"\ntransport = { kind = "tcp", host = "h", port = 1 }\n',
            4,
            "meters[0].mode",
            "push, not poll",
        ),
        (
            HUB
            + '[[meters]]\nprotocol = "dlms"\nkey = "0011"\ntransport = { kind = "tcp", host = "h", port = 1 }\n',
            6,
            "meters[0].key",
            "16 bytes",
        ),
        (
            HUB
            + '[consumer]\nprepayment = ["electricity"]\n[consumer.electricity]\nmeter="E"\nsupplier="S"\n',
            6,
            "consumer.electricity.tariff",
            "missing",
        ),
        (HUB + "[hub\n", 4, "(syntax)", "not valid TOML"),
        (
            HUB
            + '[[meters]]\nprotocol = "dsmr"\ntransport = { kind = "tcp", host = "h", port = 1 }\npoll_every = "often"\n',
            7,
            "meters[0].poll_every",
            "duration",
        ),
    ],
)
def test_each_mistake_names_its_line_and_field(text: str, line: int, field: str, says: str) -> None:
    err = error(text)
    assert (err.line, err.field) == (line, field), str(err)
    assert says in str(err) and str(err).startswith(f"hub.toml line {line}: {field}: "), str(err)


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "meter.key"
    key.write_text("000102030405060708090A0B0C0D0E0F\n")
    text = (
        HUB
        + '[[meters]]\nid = "LSE1"\nprotocol = "wmbus"\nkey_file = "meter.key"\n'
        + 'transport = { kind = "pipe", path = "-" }\n'
    )
    key.chmod(0o644)
    err = error(text, base=tmp_path)
    assert err.line == 7 and err.field == "meters[0].key_file" and "chmod 600" in str(err)
    key.chmod(0o640)  # readable by the hub's group only
    assert parse(text, base=tmp_path).meters[0].key == bytes(range(16))


def test_prepayment_needs_a_meter_that_can_switch_the_supply(tmp_path: Path) -> None:
    tariff = tmp_path / "tariff.json"
    tariff.write_text("[]")
    text = HUB + (
        '[consumer]\nprepayment = ["electricity"]\n[consumer.electricity]\n'
        'meter = "E1"\nsupplier = "S"\ntariff = "tariff.json"\n'
    )
    err = error(text, base=tmp_path)
    assert err.field == "consumer.prepayment" and "breaker = true" in str(err)


def test_an_unreadable_file_and_a_missing_one_are_plain_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration"):
        load_config(tmp_path / "absent.toml")
    if os.getuid() != 0:  # root reads anything
        path = tmp_path / "hub.toml"
        path.write_text(HUB)
        path.chmod(0)
        with pytest.raises(ConfigError, match="cannot read"):
            load_config(path)


EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.toml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_the_shipped_examples_validate(example: Path) -> None:
    cfg = load_config(example)
    assert cfg.meters, example


def test_a_hub_behind_a_nat_names_the_gdsc_channel_endpoint_and_may_listen_on_nothing() -> None:
    cfg = parse(HUB + '[wan]\nlisten = "none"\nchannel = "[2001:db8::1]:4443"\n')
    assert cfg.channel == ("2001:db8::1", 4443) and cfg.wan.listen == "none"
    assert parse(HUB).channel is None
    err = error(HUB + '[wan]\nlisten = "none"\n')
    assert err.field == "wan.listen" and "give [wan] channel" in str(err), str(err)
    err = error(HUB + '[wan]\nchannel = "gdsc.example"\n')
    assert err.field == "wan.channel" and "host:port" in str(err), str(err)
