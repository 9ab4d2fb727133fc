"""Pairing and asset changes: a radio hub keeps only its own meters; a replaced meter's successor takes over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from smarthub.clock import ManualClock
from smarthub.han.ports import PortBatch
from smarthub.han.wmbus_port import WMBusPort
from smarthub.hub.diagnostics import DiagnosisCode, Diagnostics, DiagnosticsLog
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.hub.registry import MeterRegistry, registry_commands
from smarthub.model import ObisCode
from smarthub.model.datapoint import DataPoint
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.wmbus_meter import WMBusMeterSimulator
from smarthub.wan.contract.bodies import parse_body

T0 = datetime(2026, 3, 2, tzinfo=UTC)
WATER = ObisCode.parse("8-0:1.0.0")


def water(meter: str, litres: int, protocol: str = "wmbus") -> PortBatch:
    key = "water:volume"
    return PortBatch(points=[DataPoint(meter, protocol, key, Decimal(litres) / 1000, "m3")])


@pytest.fixture
def rig(tmp_path: Path):  # type: ignore[no-untyped-def]
    clock = ManualClock(T0)
    registry = MeterRegistry(tmp_path / "meters.sqlite", clock)
    hub = SmartHub("HUB1", HistoryStore(tmp_path / "h.sqlite"), clock=clock, registry=registry)
    yield hub, registry, registry_commands(registry), clock
    registry.close()
    hub.history.close()


def test_neighbours_radio_meter_is_not_this_homes(rig) -> None:  # type: ignore[no-untyped-def]
    hub, _registry, cmd, _clock = rig
    cmd["meter.add"](parse_body("meter.add", {"meter": "LSE00000001", "protocol": "wmbus", "fuel": "water"}))
    hub.accept(water("LSE00000001", 1000), T0)
    hub.accept(water("LSE99999999", 5000), T0)  # next door, heard through the wall
    hub.accept(water("KAM00000002", 7000, protocol="mbus"), T0)  # on this home's wire: ours by construction
    assert hub.mirror.meters() == ["KAM00000002", "LSE00000001"]
    assert hub.stats.foreign == 1
    scan = {m["meter"]: m for m in cmd["diagnostic.han_scan"](parse_body("diagnostic.han_scan", {}))["heard"]}
    assert scan["LSE99999999"]["commissioned"] is False and scan["LSE99999999"]["rejected"] == 1
    assert scan["LSE00000001"]["commissioned"] is True
    assert scan["LSE99999999"]["ours"] is False and scan["KAM00000002"]["ours"] is True


def test_replacement_hands_over_and_keeps_the_record(rig, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hub, registry, cmd, clock = rig
    cmd["meter.add"](parse_body("meter.add", {"meter": "OLD", "protocol": "wmbus", "fuel": "water"}))
    hub.accept(water("OLD", 1000), T0)
    clock.advance(timedelta(hours=3))
    assert cmd["meter.replace"](
        parse_body("meter.replace", {"old": "OLD", "new": "NEW", "protocol": "wmbus", "fuel": "water"})
    ) == {
        "old": "OLD",
        "new": "NEW",
    }
    hub.accept(water("OLD", 1200), clock.now())  # the old meter, still transmitting from the skip
    hub.accept(water("NEW", 0), clock.now())
    latest_old = hub.mirror.latest("OLD", WATER)
    assert latest_old is not None and latest_old.value == Decimal("1.000")
    assert hub.mirror.latest("NEW", WATER) is not None
    entries = {e.meter: e for e in registry.entries()}
    assert entries["OLD"].replaced_by == "NEW" and entries["OLD"].removed == int(clock.now().timestamp())
    again = MeterRegistry(tmp_path / "meters.sqlite", clock)  # survives a restart
    assert again.is_active("NEW") and not again.is_active("OLD")
    again.close()
    with pytest.raises(KeyError, match="not commissioned"):
        cmd["meter.remove"](parse_body("meter.remove", {"meter": "OLD"}))


def test_diagnostics_watch_only_this_homes_meters(tmp_path: Path) -> None:
    """A neighbour's radio meter that moves out of range, or whose key this hub never had, raises
    nothing: diagnostics observe after the registry filter. Real OMS frames."""
    clock = ManualClock(T0)
    diagnostics = Diagnostics(DiagnosticsLog(tmp_path / "diagnostics.sqlite"))
    registry = MeterRegistry(tmp_path / "meters.sqlite", clock)
    hub = SmartHub(
        "HUB1", HistoryStore(tmp_path / "h.sqlite"), clock=clock, diagnostics=diagnostics, registry=registry
    )
    profile = HouseholdProfile(3)
    port = WMBusPort("wmbus", tz=profile.tz)
    hub.attach(port)
    ours = WMBusMeterSimulator(11111111, "LSE", "water", bytes(range(16)), profile, T0)
    theirs = WMBusMeterSimulator(22222222, "LSE", "water", bytes(range(1, 17)), profile, T0)
    unknown = WMBusMeterSimulator(33333333, "LSE", "gas", bytes(range(2, 18)), profile, T0)
    registry.add(ours.meter_id, "wmbus", "water")
    port.keys[ours.meter_id] = ours.key  # type: ignore[assignment]
    port.keys[theirs.meter_id] = theirs.key  # type: ignore[assignment]  # same installer: key known
    for meter in (ours, theirs, ours, theirs, unknown, unknown, unknown):
        clock.advance(timedelta(minutes=2))
        hub.receive("wmbus", meter.frame_at(clock.now()))
    assert hub.mirror.meters() == [ours.meter_id] and hub.stats.foreign > 0 and hub.stats.frame_errors == 3
    clock.advance(timedelta(hours=2))  # both go quiet: ours is a fault, the neighbour's is not ours
    diagnostics.tick(clock.now())
    opened = {(e.code, e.device) for e in diagnostics.log.open_events()}
    assert opened == {(DiagnosisCode.STALE_METER, ours.meter_id)}
    diagnostics.log.disconnect()
    registry.close()
    hub.history.close()
