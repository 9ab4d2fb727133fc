from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from smarthub.clock import ManualClock
from smarthub.han.ports import PortBatch
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.meters.mapping import MappingError, MappingTable
from smarthub.model import ObisCode
from smarthub.model.datapoint import DataPoint

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def test_unknown_point_kept_raw_then_translated_after_a_live_table_update(tmp_path: Path) -> None:
    hub = SmartHub("HUB1", HistoryStore(tmp_path / "h.sqlite"), clock=ManualClock(T0))
    odd = DataPoint("KAM00000001", "wmbus", "water:volume/s2", Decimal("10.5"), "m3")
    hub.accept(PortBatch(points=[odd]))
    assert hub.stats.unmapped == 1
    assert hub.history.raw_points() == [
        ("KAM00000001", "wmbus", "water:volume/s2", "10.5", "m3", None, "no mapping for this key")
    ]
    assert ("KAM00000001", "wmbus", "water:volume/s2") in hub.raw_latest

    older = MappingTable.from_dict({**hub.mapping.to_dict(), "version": "2020.1"})
    with pytest.raises(MappingError, match="not newer"):
        hub.load_mapping(older)
    newer = hub.mapping.to_dict()
    newer["version"] = "2026.12.1"
    newer["entries"].append(
        {"protocol": "wmbus", "key": "water:volume/s2", "obis": "8-0:1.0.0*2", "unit": "m3"}
    )
    hub.load_mapping(MappingTable.from_dict(newer))
    hub.accept(PortBatch(points=[odd]))
    assert hub.stats.unmapped == 1  # the same point is now a reading
    r = hub.mirror.latest("KAM00000001", ObisCode(8, 0, 1, 0, 0, 2))
    assert r is not None and r.value == Decimal("10.5") and r.time == T0
