"""Self-repair against the simulated meters, real frames end to end: a fault is injected into the
meter or its wire, the hub's diagnostics raise the event from what the hub receives, and the
hub's own repair (clock re-sync, re-key, transport fallback) is judged by the meter's answers.
Each repair is shown succeeding and failing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from smarthub.clock import ManualClock
from smarthub.han.dlms_poll import DlmsPaths
from smarthub.han.poll import PollLoop, SimulatedLink
from smarthub.han.wmbus_port import WMBusPort
from smarthub.hub.diagnostics import (
    DiagnosedEvent,
    DiagnosisCode,
    Diagnostics,
    DiagnosticsLog,
    MeterProfile,
    RepairAction,
    RepairOutcome,
)
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.hub.keys import KeyRing
from smarthub.hub.registry import MeterRegistry
from smarthub.hub.repairs import DlmsMeterAccess, HubRepairs
from smarthub.meters.dlms.security import SecurityKeys
from smarthub.model.obis import IMPORT_ACTIVE_ENERGY, WATER_VOLUME
from smarthub.sim.dlms_meter import DlmsMeterSimulator
from smarthub.sim.fleet import dlms_access
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.rigs import dlms_rig
from smarthub.sim.wmbus_meter import WMBusMeterSimulator
from smarthub.wan.contract.bodies import MeterKey
from smarthub.wan.contract.events import event_detail

T0 = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)
KEYS = SecurityKeys(bytes(range(16)), bytes(range(16, 32)))
NEW_KEYS = SecurityKeys(bytes(range(100, 116)), bytes(range(16, 32)))
OTHER_KEYS = SecurityKeys(bytes(range(200, 216)), bytes(range(16, 32)))
TITLE = b"LGZ\x00\x00\x00\x00\x07"
METER = TITLE.hex().upper()


class CutWire:
    """A cable that has been cut: the meter never hears the request, nothing comes back."""

    def respond(self, request: bytes, t: datetime) -> bytes:
        return b""


@dataclass
class DlmsHome:
    clock: ManualClock
    hub: SmartHub
    diagnostics: Diagnostics
    access: DlmsMeterAccess
    meter: DlmsMeterSimulator

    @property
    def loop(self) -> PollLoop:
        return self.access.loop

    @property
    def paths(self) -> DlmsPaths:
        return self.access.paths

    async def poll(self, minutes: int = 5) -> bool:
        self.clock.advance(timedelta(minutes=minutes))
        return await self.loop.poll_now()

    def open(self, code: DiagnosisCode) -> list[DiagnosedEvent]:
        return [e for e in self.diagnostics.log.open_events() if e.code is code]

    def event(self, code: DiagnosisCode) -> DiagnosedEvent:
        (e,) = [e for e in self.diagnostics.log.events() if e.code is code]
        return e


@pytest.fixture
def home(tmp_path: Path) -> Iterator[DlmsHome]:
    """An encrypted DLMS meter on HDLC with a TCP wrapper module as its second path, polled every
    5 minutes, wired to the hub's diagnostics and repairs as the simulated fleet wires it."""
    clock = ManualClock(T0)
    repairs = HubRepairs()
    diagnostics = Diagnostics(DiagnosticsLog(tmp_path / "diagnostics.sqlite"), repairs)
    hub = SmartHub("HUB1", HistoryStore(tmp_path / "h.sqlite"), clock=clock, diagnostics=diagnostics)
    rig = dlms_rig(hub, clock, T0, HouseholdProfile(4), TITLE, KEYS, timedelta(minutes=5))
    assert rig.supply is not None
    loop = rig.loops[0]
    loop.observers.append(diagnostics.observe_poll_loop)
    access = dlms_access(rig.supply.meter, rig.supply.link, rig.supply.client, loop)
    repairs.add_dlms(access)
    diagnostics.set_profile(METER, MeterProfile(expected_period=timedelta(minutes=5)))
    meter = rig.supply.link.meter
    assert isinstance(meter, DlmsMeterSimulator)
    yield DlmsHome(clock, hub, diagnostics, access, meter)
    diagnostics.log.disconnect()
    hub.history.close()


# -- clock re-sync ---------------------------------------------------------------------------


async def test_clock_drift_is_repaired_by_setting_the_meter_clock(home: DlmsHome) -> None:
    assert await home.poll()
    home.meter.clock_offset = timedelta(minutes=7)  # the meter's clock has run 7 minutes fast
    assert await home.poll()
    (drift,) = home.open(DiagnosisCode.CLOCK_DRIFT)
    assert drift.device == METER and drift.numbers["drift_s"] == 420
    (done,) = await home.diagnostics.repair_pending(home.clock.now())
    assert done.resolution == "repaired" and done.repair is RepairAction.RESYNC_CLOCK
    assert done.outcome is RepairOutcome.SUCCEEDED
    assert "read back" in done.attempts[0].detail and "+420 s off" in done.attempts[0].detail
    assert abs(home.meter.clock_offset.total_seconds()) < 1  # the meter's clock was really set
    assert event_detail(done)["attempts"][0]["detail"] == done.attempts[0].detail  # for the GDSC
    assert await home.poll()
    assert home.open(DiagnosisCode.CLOCK_DRIFT) == []


async def test_clock_that_does_not_take_the_set_is_a_failed_repair(home: DlmsHome) -> None:
    home.meter.clock_offset = timedelta(minutes=-10)
    home.meter.clock_stuck = True  # accepts the SET, keeps its time: a failed real-time clock
    assert await home.poll()
    (done,) = await home.diagnostics.repair_pending(home.clock.now())
    assert done.is_open and done.outcome is RepairOutcome.FAILED
    assert "reads back" in done.attempts[0].detail and "(-600 s)" in done.attempts[0].detail
    assert done.recommendation.startswith("site visit: set meter clock")


async def test_meter_refusing_the_clock_set_gets_the_recommended_action(home: DlmsHome) -> None:
    home.meter.clock_offset = timedelta(minutes=3)
    home.meter.clock_settable = False
    assert await home.poll()
    (done,) = await home.diagnostics.repair_pending(home.clock.now())
    assert done.is_open and done.outcome is RepairOutcome.UNSUPPORTED
    assert "read-write-denied" in done.attempts[0].detail
    assert done.recommendation.startswith("site visit: set meter clock")
    assert home.meter.clock_offset == timedelta(minutes=3)
    assert await home.poll()  # the refused SET left the association usable


async def test_clock_of_a_meter_without_dlms_cannot_be_set(home: DlmsHome) -> None:
    t = home.clock.now()
    home.diagnostics.observe_clock("E-DSMR", t + timedelta(minutes=5), t)
    (done,) = await home.diagnostics.repair_pending(t)
    assert done.outcome is RepairOutcome.UNSUPPORTED and "not a DLMS meter" in done.attempts[0].detail


# -- re-key: DLMS suite 0 --------------------------------------------------------------------


async def test_dlms_rekey_adopts_the_staged_key_the_meter_switched_to(home: DlmsHome) -> None:
    assert home.access.keys is not None
    home.access.keys.stage(METER, NEW_KEYS)  # a key change the hub learnt of before the meter made it
    assert await home.poll()  # the meter still uses the old key: the hub keeps using it
    home.meter.keys = NEW_KEYS  # now it has switched
    assert not await home.poll()
    assert await home.diagnostics.repair_pending(home.clock.now()) == []  # one failure: wait
    assert not await home.poll()
    (event,) = home.open(DiagnosisCode.DECRYPTION_FAILURES)
    assert event.device == METER and event.count == 2 and "refused the ciphered association" in event.evidence
    (done,) = await home.diagnostics.repair_pending(home.clock.now())
    assert done.resolution == "repaired" and done.repair is RepairAction.REKEY
    assert "other key 1 of 1" in done.attempts[0].detail
    assert home.access.keys[METER] == NEW_KEYS and home.access.keys.candidates(METER) == [KEYS]
    before = home.hub.mirror.latest(METER, IMPORT_ACTIVE_ENERGY)
    assert await home.poll()
    after = home.hub.mirror.latest(METER, IMPORT_ACTIVE_ENERGY)
    assert before is not None and after is not None and after.time > before.time


async def test_dlms_rekey_fails_when_no_held_key_fits(home: DlmsHome) -> None:
    assert home.access.keys is not None
    home.access.keys.stage(METER, OTHER_KEYS)
    home.meter.keys = NEW_KEYS  # re-keyed with a key the hub was never given
    for _ in range(2):
        assert not await home.poll()
    (done,) = await home.diagnostics.repair_pending(home.clock.now())
    assert done.is_open and done.outcome is RepairOutcome.FAILED
    assert "none of the 1 other keys" in done.attempts[0].detail
    assert home.access.keys[METER] == KEYS and home.paths.path.client.keys == KEYS  # unchanged
    home.meter.keys = KEYS  # the meter's key restored on site: polling works again
    assert await home.poll()


async def test_dlms_rekey_on_a_dead_link_keeps_the_key_in_use(home: DlmsHome) -> None:
    assert home.access.keys is not None
    home.access.keys.stage(METER, NEW_KEYS)
    home.meter.keys = NEW_KEYS
    for _ in range(2):
        assert not await home.poll()
    hdlc = home.paths.paths[0].link
    assert isinstance(hdlc, SimulatedLink)
    hdlc.meter = CutWire()  # the cable goes before the repair runs: the key cannot be tried
    (done,) = await home.diagnostics.repair_pending(home.clock.now())
    assert done.is_open and done.outcome is RepairOutcome.FAILED
    assert done.attempts[0].detail.startswith("trying other key 1: ")
    assert home.access.keys[METER] == KEYS and home.paths.path.client.keys == KEYS


async def test_dlms_rekey_without_another_key_is_unsupported(home: DlmsHome) -> None:
    home.meter.keys = NEW_KEYS
    for _ in range(2):
        assert not await home.poll()
    (done,) = await home.diagnostics.repair_pending(home.clock.now())
    assert done.is_open and done.outcome is RepairOutcome.UNSUPPORTED
    assert done.recommendation.startswith("re-issue the meter key")


# -- re-key: wM-Bus / OMS --------------------------------------------------------------------


@pytest.fixture
def radio(tmp_path: Path) -> Iterator[tuple[SmartHub, WMBusPort, Diagnostics, ManualClock]]:
    clock = ManualClock(T0)
    repairs = HubRepairs()
    diagnostics = Diagnostics(DiagnosticsLog(tmp_path / "diagnostics.sqlite"), repairs)
    registry = MeterRegistry(tmp_path / "meters.sqlite", clock)
    hub = SmartHub(
        "HUB1", HistoryStore(tmp_path / "h.sqlite"), clock=clock, diagnostics=diagnostics, registry=registry
    )
    port = WMBusPort("wmbus", KeyRing(), tz=HouseholdProfile(2).tz)  # the meters' wall-clock zone
    hub.attach(port)
    repairs.add_radio(port)
    yield hub, port, diagnostics, clock
    diagnostics.log.disconnect()
    registry.close()
    hub.history.close()


OLD_KEY = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
NEW_KEY = bytes.fromhex("F0E0D0C0B0A090807060504030201000")


@pytest.mark.parametrize("mode", [5, 7])
@pytest.mark.parametrize("staged_fits", [True, False])
async def test_wmbus_rekey_tries_the_staged_key_on_the_meters_frame(
    radio: tuple[SmartHub, WMBusPort, Diagnostics, ManualClock], mode: int, staged_fits: bool
) -> None:
    hub, port, diagnostics, clock = radio
    assert hub.registry is not None
    meter = WMBusMeterSimulator(12345678, "LSE", "water", OLD_KEY, HouseholdProfile(2), T0, mode=mode)
    hub.registry.add(meter.meter_id, "wmbus", "water")
    port.keys[meter.meter_id] = OLD_KEY

    def transmit() -> None:
        clock.advance(timedelta(minutes=2))
        hub.receive("wmbus", meter.frame_at(clock.now()))

    transmit()
    assert hub.mirror.latest(meter.meter_id, WATER_VOLUME) is not None
    staged = NEW_KEY if staged_fits else bytes(16)
    cmd = hub.command_handlers()["meter.key"]
    assert cmd(MeterKey(meter.meter_id, staged, pending=True))["pending"] is True
    meter.key = NEW_KEY  # the meter is re-keyed
    transmit()
    transmit()
    (event,) = [e for e in diagnostics.log.open_events() if e.code is DiagnosisCode.DECRYPTION_FAILURES]
    assert event.device == meter.meter_id and event.count == 2
    (done,) = await diagnostics.repair_pending(clock.now())
    assert done.repair is RepairAction.REKEY
    if staged_fits:
        assert done.resolution == "repaired" and "decrypts the meter's last frame" in done.attempts[0].detail
        assert port.keys[meter.meter_id] == NEW_KEY
        assert isinstance(port.keys, KeyRing) and port.keys.candidates(meter.meter_id) == [OLD_KEY]
        before = hub.stats.readings
        transmit()
        assert hub.stats.readings > before
    else:
        assert done.is_open and done.outcome is RepairOutcome.FAILED
        assert port.keys[meter.meter_id] == OLD_KEY


# -- transport fallback ----------------------------------------------------------------------


async def test_cut_hdlc_cable_falls_back_to_the_tcp_wrapper(home: DlmsHome) -> None:
    assert await home.poll()
    hdlc = home.paths.paths[0].link
    assert isinstance(hdlc, SimulatedLink)
    hdlc.meter = CutWire()
    for _ in range(3):
        assert not await home.poll()
    (event,) = home.open(DiagnosisCode.HAN_POLL_FAILURES)
    assert event.device == home.loop.name
    (done,) = await home.diagnostics.repair_pending(home.clock.now())
    assert [(a.action, a.outcome) for a in done.attempts] == [
        (RepairAction.REPOLL, RepairOutcome.FAILED),
        (RepairAction.FALLBACK_TRANSPORT, RepairOutcome.SUCCEEDED),
    ]
    assert done.resolution == "repaired"
    assert f"switched {METER} from hdlc to wrapper" in done.attempts[1].detail
    assert home.paths.path.name == "wrapper"
    before = home.hub.mirror.latest(METER, IMPORT_ACTIVE_ENERGY)
    failures = home.loop.failures
    assert await home.poll(30)  # ciphered polls go on over the wrapper, counters still rising
    after = home.hub.mirror.latest(METER, IMPORT_ACTIVE_ENERGY)
    assert home.loop.failures == failures
    assert before is not None and after is not None and after.value > before.value


async def test_fallback_fails_when_no_path_answers(home: DlmsHome) -> None:
    for path in home.paths.paths:
        assert isinstance(path.link, SimulatedLink)
        path.link.meter = CutWire()
    for _ in range(3):
        assert not await home.poll()
    (done,) = await home.diagnostics.repair_pending(home.clock.now())
    assert done.is_open and done.outcome is RepairOutcome.FAILED
    assert done.attempts[-1].action is RepairAction.FALLBACK_TRANSPORT
    assert "no other path" in done.attempts[-1].detail and "staying on hdlc" in done.attempts[-1].detail
    assert home.paths.path.name == "hdlc"


async def test_radio_meter_has_no_second_path(
    radio: tuple[SmartHub, WMBusPort, Diagnostics, ManualClock],
) -> None:
    _hub, _port, diagnostics, clock = radio
    diagnostics.observe_poll("wmbus:1", False, clock.now(), error="timeout")
    for _ in range(2):
        diagnostics.observe_poll("wmbus:1", False, clock.now(), error="timeout")
    (done,) = await diagnostics.repair_pending(clock.now())
    assert [a.outcome for a in done.attempts] == [RepairOutcome.UNSUPPORTED, RepairOutcome.UNSUPPORTED]
    assert "no second path" in done.attempts[1].detail
