from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from smarthub.hub.mirror import DataMirror
from smarthub.model import ObisCode, Quality, Reading, Unit

T0 = datetime(2026, 3, 2, tzinfo=UTC)
GAS = ObisCode.parse("7-0:3.0.0")
GAS_FLOW = ObisCode.parse("7-0:43.0.0")
IMP = ObisCode.parse("1-0:1.8.0")
POWER = ObisCode.parse("1-0:1.7.0")


def test_flow_derived_from_a_volume_only_meter() -> None:
    m = DataMirror()
    m.update([Reading("G1", GAS, Decimal("100.000"), Unit.M3, T0)])
    assert m.latest("G1", GAS_FLOW) is None
    m.update([Reading("G1", GAS, Decimal("100.250"), Unit.M3, T0 + timedelta(minutes=15))])
    flow = m.latest("G1", GAS_FLOW)
    assert flow is not None and flow.value == Decimal("1.000") and flow.unit is Unit.M3_PER_H
    assert Quality.DERIVED in flow.quality


def test_power_derived_in_watts_but_never_over_a_measured_one() -> None:
    m = DataMirror()
    m.update([Reading("E1", IMP, Decimal("10.000"), Unit.KWH, T0)])
    m.update([Reading("E1", IMP, Decimal("10.100"), Unit.KWH, T0 + timedelta(minutes=6))])
    assert m.latest("E1", POWER).value == Decimal("1000.000")  # type: ignore[union-attr]
    m.update([Reading("E2", POWER, Decimal("0.42"), Unit.KW, T0)])
    m.update(
        [
            Reading("E2", IMP, Decimal("1.000"), Unit.KWH, T0),
            Reading("E2", IMP, Decimal("2.000"), Unit.KWH, T0 + timedelta(hours=1)),
        ]
    )
    assert m.latest("E2", POWER).value == Decimal("0.42")  # type: ignore[union-attr]


def test_older_reading_does_not_replace_newer() -> None:
    m = DataMirror()
    m.update([Reading("E1", IMP, Decimal("2"), Unit.KWH, T0 + timedelta(minutes=1))])
    assert m.update([Reading("E1", IMP, Decimal("1"), Unit.KWH, T0)]) == 0
    assert m.latest("E1", IMP).value == Decimal("2")  # type: ignore[union-attr]
