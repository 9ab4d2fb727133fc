"""A supplier's opening read carries the supply's meters, never the home's appliance plugs.

Found by the 30-day chaos run (issue 24): a ZigBee home's opening read listed its smart plugs'
registers (sub-meters the hub keeps off the WAN) and named its electricity meter as missing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from smarthub.hub.history import HistoryStore
from smarthub.hub.intervals import IntervalRecord
from smarthub.hub.privacy import ConsentStore, HubPrivacy
from smarthub.model import ObisCode, Quality

EFF = datetime(2026, 9, 1, tzinfo=UTC)
IMPORT = ObisCode.parse("1-0:1.8.0")


def test_the_opening_read_leaves_the_appliance_plugs_at_home(tmp_path: Path) -> None:
    history = HistoryStore(tmp_path / "history.sqlite")
    t = int(EFF.timestamp()) - 1800
    for meter, register in (("E1", 4_321_000), ("PLUG-KETTLE", 12_345)):
        history.add_meter(meter, "electricity")
        history.append([IntervalRecord(meter, IMPORT, t, 1800, 250, register, 0, int(Quality.VALID))])
    consent = ConsentStore(tmp_path / "consent.sqlite")
    plugs = {"PLUG-KETTLE"}

    found, missing = HubPrivacy(consent, history, is_submeter=plugs.__contains__).opening_read(
        "electricity", EFF
    )
    assert [(r["meter"], r["obis"], r["value"]) for r in found] == [("E1", "1-0:1.8.0", 4_321_000)]
    assert missing == []
    # Without knowing its sub-meters the hub would hand the plug's register to the supplier.
    everything, _ = HubPrivacy(consent, history).opening_read("electricity", EFF)
    assert {r["meter"] for r in everything} == {"E1", "PLUG-KETTLE"}
