from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from smarthub.meters.mapping import MappingError, MappingTable
from smarthub.model import ObisCode, Quality, Unit
from smarthub.model.datapoint import DataPoint

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


def dp(protocol: str, key: str, value: str | Decimal, unit: str | None, **kw) -> DataPoint:  # type: ignore[no-untyped-def]
    v = Decimal(value) if isinstance(value, str) and value[:1].isdigit() else value
    return DataPoint("M1", protocol, key, v, unit, **kw)


def test_default_table_translates_each_protocol() -> None:
    t = MappingTable.default()
    res = t.translate(
        [
            dp("wmbus", "water:volume", "123.456", "m3"),
            dp("mbus", "gas:volume", "1500", "l"),  # litres into m3, exactly
            dp("zigbee", "electric:CurrentSummationDelivered", "4500", "Wh"),
            dp("iec62056-21", "1.8.0", "00012.345", "kWh"),
            dp("dlms", "1-0:1.8.0", "12345", "Wh"),  # OBIS-native: passes through
            dp("mbus", "heat:energy", "7.5", "MWh"),  # unknown unit: kept raw
        ],
        NOW,
    )
    got = [(str(r.obis), r.value, r.unit) for r in res.readings]
    assert got == [
        ("8-0:1.0.0", Decimal("123.456"), Unit.M3),
        ("7-0:3.0.0", Decimal("1.500"), Unit.M3),
        ("1-0:1.8.0", Decimal("4.500"), Unit.KWH),
        ("1-0:1.8.0", Decimal("12.345"), Unit.KWH),
        ("1-0:1.8.0", Decimal("12345"), Unit.WH),
    ]
    assert [(u.point.key, u.reason) for u in res.unmapped] == [("heat:energy", "unknown unit 'MWh'")]
    assert all(r.time == NOW for r in res.readings)


def test_unknown_and_non_numeric_points_are_kept_with_a_reason() -> None:
    t = MappingTable.default()
    res = t.translate(
        [dp("mbus", "water:fabrication_no", "ABC", None), dp("zigbee", "gas:attr_0x0999", "5", None)], NOW
    )
    assert res.readings == []
    assert [u.reason for u in res.unmapped] == ["no mapping for this key", "no mapping for this key"]


def test_incompatible_unit_is_not_forced() -> None:
    t = MappingTable.default()
    res = t.translate([dp("zigbee", "gas:CurrentSummationDelivered", "5", "kWh")], NOW)
    assert res.unmapped[0].reason == "unit 'kWh' cannot be expressed in 'm3'"


def test_flags_lower_quality() -> None:
    t = MappingTable.default()
    r = t.translate([dp("wmbus", "water:volume", "1", "m3", flags=frozenset({"error"}))], NOW).readings[0]
    assert Quality.QUESTIONABLE in r.quality and Quality.VALID not in r.quality


def test_load_json_and_yaml_and_refuse_older_versions(tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = MappingTable.default()
    newer = {**base.to_dict(), "version": "2026.12.0"}
    newer["entries"].append(
        {"protocol": "mbus", "key": "water:volume/s2", "obis": "8-0:1.0.0*2", "unit": "m3"}
    )
    (tmp_path / "t.json").write_text(json.dumps(newer))
    (tmp_path / "t.yaml").write_text(
        "version: '2026.12.0'\nentries:\n  - {protocol: zigbee, key: 'x:y', obis: '1-0:1.8.0', unit: kWh}\n"
    )
    j = MappingTable.load(tmp_path / "t.json")
    y = MappingTable.load(tmp_path / "t.yaml")
    base.check_upgrade(j)
    assert j.entries[("mbus", "water:volume/s2")].obis == ObisCode(8, 0, 1, 0, 0, 2)
    assert y.entries[("zigbee", "x:y")].unit is Unit.KWH
    with pytest.raises(MappingError, match="not newer"):
        j.check_upgrade(base)
    with pytest.raises(MappingError, match="not newer"):
        j.check_upgrade(j)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("[]", "object"),
        ('{"entries": []}', "version"),
        ('{"version": "1.x", "entries": []}', "dot-separated"),
        (
            '{"version": "1", "entries": [{"protocol": "modbus", "key": "a", "obis": "1-0:1.8.0", "unit": "Wh"}]}',
            "protocol",
        ),
        (
            '{"version": "1", "entries": [{"protocol": "mbus", "key": "a", "obis": "1.8.0", "unit": "Wh"}]}',
            "OBIS",
        ),
        (
            '{"version": "1", "entries": [{"protocol": "mbus", "key": "a", "obis": "1-0:1.8.0", "unit": "furlong"}]}',
            "unit",
        ),
        ('{"version": "1", "entries": [{"protocol": "mbus", "key": "a"}]}', "entry 0"),
        ("{not json", "not valid JSON"),
    ],
)
def test_malformed_tables_are_refused_with_the_reason(doc: str, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        MappingTable.from_text(doc)
