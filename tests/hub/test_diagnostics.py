"""Diagnostics: one injected fault per diagnosis, the repair paths, dedup and persistence."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest

from smarthub.hub.diagnostics import (
    CallbackRepairs,
    DiagnosedEvent,
    DiagnosisCode,
    Diagnostics,
    DiagnosticsLog,
    DiagnosticsTampered,
    MeterProfile,
    RepairAction,
    RepairOutcome,
    Severity,
)
from smarthub.hub.intervals import IntervalBuilder, IntervalRecord
from smarthub.meters.errors import ChecksumError
from smarthub.meters.wmbus import DecryptionError
from smarthub.model import ObisCode, Quality, Reading, Unit
from smarthub.model.datapoint import DataPoint

T0 = datetime(2026, 3, 2, tzinfo=UTC)
IMPORT = ObisCode.parse("1-0:1.8.0")
EXPORT = ObisCode.parse("1-0:2.8.0")
GAS = ObisCode.parse("7-0:3.0.0")


def dp(meter: str = "E1", key: str = "1-0:1.8.0", value: object = Decimal("1.0"), **kw: object) -> DataPoint:
    return DataPoint(meter, kw.pop("protocol", "dsmr"), key, value, kw.pop("unit", "kWh"), **kw)  # type: ignore[arg-type]


@pytest.fixture
def diag(tmp_path: Path) -> Diagnostics:
    return Diagnostics(DiagnosticsLog(tmp_path / "diagnostics.sqlite"))


def only(d: Diagnostics, code: DiagnosisCode) -> DiagnosedEvent:
    events = [e for e in d.log.open_events() if e.code == code]
    assert len(events) == 1, d.log.open_events()
    return events[0]


class FakeRepairs:
    def __init__(self, **outcomes: RepairOutcome) -> None:
        self.outcomes = outcomes
        self.calls: list[tuple[str, str]] = []

    async def _do(self, name: str, event: DiagnosedEvent) -> RepairOutcome:
        self.calls.append((name, event.device))
        return self.outcomes.get(name, RepairOutcome.UNSUPPORTED)

    async def repoll(self, event: DiagnosedEvent) -> RepairOutcome:
        return await self._do("repoll", event)

    async def resync_clock(self, event: DiagnosedEvent) -> RepairOutcome:
        return await self._do("resync_clock", event)

    async def rekey(self, event: DiagnosedEvent) -> RepairOutcome:
        return await self._do("rekey", event)

    async def fallback_transport(self, event: DiagnosedEvent) -> RepairOutcome:
        return await self._do("fallback_transport", event)


# -- one test per diagnosis -------------------------------------------------------------------


def test_silent_meter_is_stale_after_three_expected_periods(diag: Diagnostics) -> None:
    for i in range(6):
        diag.observe_points("p1", [dp()], T0 + timedelta(seconds=10 * i))
    last = T0 + timedelta(seconds=50)
    assert diag.tick(last + timedelta(seconds=30)) == []  # exactly 3 periods: not yet
    events = diag.tick(last + timedelta(seconds=600))
    assert [e.code for e in events] == [DiagnosisCode.STALE_METER]
    e = only(diag, DiagnosisCode.STALE_METER)
    assert e.device == "E1" and e.device_kind == "meter" and e.severity is Severity.MAJOR
    assert e.numbers["silent_s"] == 600 and e.numbers["stale_after_s"] == 30
    assert "no data point for 600 s" in e.evidence and "expected every 10 s" in e.evidence
    assert e.recommendation.startswith("site visit")
    diag.observe_points("p1", [dp()], last + timedelta(seconds=620))
    assert diag.log.open_events() == []
    assert diag.log.get(e.id).resolution == "cleared"


def test_configured_stale_after_per_meter(diag: Diagnostics) -> None:
    diag.set_profile("G1", MeterProfile(stale_after=timedelta(hours=2)))
    diag.observe_points("mbus", [dp("G1", "gas:volume", protocol="mbus", unit="m3")], T0)
    assert diag.tick(T0 + timedelta(hours=1)) == []
    assert [e.device for e in diag.tick(T0 + timedelta(hours=3))] == ["G1"]


def test_port_with_20_percent_crc_errors(diag: Diagnostics) -> None:
    for i in range(200):
        t = T0 + timedelta(seconds=i)
        if i % 5 == 4:
            diag.observe_errors("p1", [ChecksumError("dsmr", "CRC mismatch")], t)
        else:
            diag.observe_points("p1", [dp()], t)
    e = only(diag, DiagnosisCode.HAN_DECODE_ERRORS)
    assert e.device == "p1" and e.device_kind == "port"
    assert e.numbers["checksum"] == 40 and e.numbers["frames"] == 200 and e.numbers["rate"] == 0.2
    assert "40 CRC errors in 200 frames" in e.evidence
    assert "optical head" in e.recommendation
    for i in range(200):  # the link recovers: the window fills with good frames
        diag.observe_points("p1", [dp()], T0 + timedelta(seconds=300 + i))
    assert diag.log.get(e.id).closed is not None


def test_few_crc_errors_are_not_a_diagnosis(diag: Diagnostics) -> None:
    for i in range(100):
        t = T0 + timedelta(seconds=i)
        if i % 50 == 0:
            diag.observe_errors("p1", [ChecksumError("dsmr", "CRC mismatch")], t)
        else:
            diag.observe_points("p1", [dp()], t)
    assert diag.log.open_events() == []


def test_poll_failures_from_a_poll_loop(diag: Diagnostics) -> None:
    loop = SimpleNamespace(name="dlms-E2", cycles=0, failures=0)
    for i in range(5):
        loop.cycles += 1
        loop.failures += i >= 2  # the last three cycles fail
        diag.observe_poll_loop(loop, T0 + timedelta(minutes=15 * i))  # type: ignore[arg-type]
    e = only(diag, DiagnosisCode.HAN_POLL_FAILURES)
    assert e.device == "dlms-E2" and e.numbers["consecutive"] == 3 and e.numbers["failed"] == 3
    assert "3 consecutive poll failures" in e.evidence
    loop.cycles += 1
    diag.observe_poll_loop(loop, T0 + timedelta(minutes=90))  # type: ignore[arg-type]
    assert diag.log.open_events() == []


def test_weak_radio_signal_from_rssi_points_and_port_level(diag: Diagnostics) -> None:
    for i in range(5):
        pts = [
            dp("W1", "water:volume", protocol="wmbus", unit="m3"),
            dp("W1", "water:rssi", Decimal(-101), unit="dBm"),
        ]
        diag.observe_points("wmbus", pts, T0 + timedelta(minutes=i))
    e = only(diag, DiagnosisCode.HAN_WEAK_SIGNAL)
    assert e.device == "W1" and e.numbers["rssi_dbm"] == -101.0
    assert "-101.0 dBm" in e.evidence and "repeater" in e.recommendation
    # The radio's level for a frame from one meter is that meter's (a radio port hears several)...
    diag.observe_points("zb", [dp("Z1", "electric:InstantaneousDemand", protocol="zigbee")], T0, rssi_dbm=-99)
    assert {e.device for e in diag.log.open_events()} == {"W1", "Z1"}
    # ... a batch of several meters' points is the port's; judged against the receiver when known.
    two = [dp(m, "electric:InstantaneousDemand", protocol="zigbee") for m in ("Z2", "Z3")]
    diag.observe_points("zb", two, T0, rssi_dbm=-80, sensitivity_dbm=-85)
    assert {e.device for e in diag.log.open_events()} == {"W1", "Z1", "zb"}


def test_register_going_backwards(diag: Diagnostics) -> None:
    diag.observe_readings([Reading("E1", IMPORT, Decimal(1234), Unit.KWH, T0)])
    events = diag.observe_readings(
        [Reading("E1", IMPORT, Decimal(1200), Unit.KWH, T0 + timedelta(seconds=10))]
    )
    assert [e.code for e in events] == [DiagnosisCode.REGISTER_BACKWARDS]
    e = only(diag, DiagnosisCode.REGISTER_BACKWARDS)
    assert "register 1-0:1.8.0 went from 1234 to 1200 kWh" in e.evidence
    assert e.numbers["registers"] == [{"obis": "1-0:1.8.0", "from": 1234, "to": 1200, "unit": "kWh"}]
    assert "re-baseline" in e.recommendation
    diag.observe_readings([Reading("E1", IMPORT, Decimal(1201), Unit.KWH, T0 + timedelta(seconds=20))])
    assert only(diag, DiagnosisCode.REGISTER_BACKWARDS).count == 2  # still below the high-water mark
    diag.observe_readings([Reading("E1", IMPORT, Decimal(1235), Unit.KWH, T0 + timedelta(seconds=30))])
    assert diag.log.open_events() == []


def test_50_kw_spike_beyond_the_rating(diag: Diagnostics) -> None:
    start = int(T0.timestamp())
    spike = IntervalRecord("E1", IMPORT, start, 1800, 25_000, 1_025_000, 0, int(Quality.VALID))
    diag.observe_interval(spike)
    e = only(diag, DiagnosisCode.CONSUMPTION_SPIKE)
    assert e.numbers["average_w"] == 50_000 and e.numbers["rating_w"] == 24_000
    assert "25000 Wh in 30 min = 50.0 kW average, above the 24.0 kW rating" in e.evidence
    normal = IntervalRecord("E1", IMPORT, start + 1800, 1800, 500, 1_025_500, 0, int(Quality.VALID))
    diag.observe_interval(normal)
    assert diag.log.open_events() == []


def test_gas_flow_beyond_the_maximum(diag: Diagnostics) -> None:
    # 5000 l in half an hour = 10 m3/h, above a G4 meter's 6 m3/h.
    diag.observe_interval(
        IntervalRecord("G1", GAS, int(T0.timestamp()), 1800, 5000, 9000, -3, int(Quality.VALID))
    )
    e = only(diag, DiagnosisCode.CONSUMPTION_SPIKE)
    assert e.numbers["flow_m3h"] == 10.0 and e.numbers["max_flow_m3h"] == 6.0
    diag.set_profile("G2", MeterProfile(max_flow_m3h=16.0))  # a G10 meter
    diag.observe_interval(
        IntervalRecord("G2", GAS, int(T0.timestamp()), 1800, 5000, 9000, -3, int(Quality.VALID))
    )
    assert [e.device for e in diag.log.open_events()] == ["G1"]


def test_export_on_a_meter_not_registered_as_generator(diag: Diagnostics) -> None:
    diag.set_profile("PV1", MeterProfile(generator=True))
    for meter in ("E1", "PV1"):
        diag.observe_readings([Reading(meter, EXPORT, Decimal("100.000"), Unit.KWH, T0)])
        diag.observe_readings(
            [Reading(meter, EXPORT, Decimal("100.500"), Unit.KWH, T0 + timedelta(minutes=5))]
        )
    e = only(diag, DiagnosisCode.REVERSE_FLOW)
    assert e.device == "E1" and e.numbers["from"] == 100 and e.numbers["to"] == 100.5
    assert "export register 1-0:2.8.0 advanced from 100.000 to 100.500 kWh" in e.evidence
    assert "generation" in e.recommendation
    diag.tick(T0 + timedelta(minutes=30))
    assert diag.log.open_events() != []
    diag.tick(T0 + timedelta(hours=2))  # no export advance for over an hour
    assert diag.log.open_events() == []


def test_export_interval_on_non_generator(diag: Diagnostics) -> None:
    start = int(T0.timestamp())
    diag.observe_interval(IntervalRecord("E1", EXPORT, start, 1800, 300, 1300, 0, int(Quality.VALID)))
    assert only(diag, DiagnosisCode.REVERSE_FLOW).numbers["export_wh"] == 300
    diag.observe_interval(IntervalRecord("E1", EXPORT, start + 1800, 1800, 0, 1300, 0, int(Quality.VALID)))
    assert diag.log.open_events() == []


@pytest.mark.parametrize(
    ("flag", "code", "recommendation"),
    [
        ("tamper", DiagnosisCode.TAMPER, "site visit: tamper inspection"),
        ("low_battery", DiagnosisCode.LOW_BATTERY, "replace battery"),
        ("power_low", DiagnosisCode.LOW_BATTERY, "replace battery"),
        ("error", DiagnosisCode.METER_ERROR, "site visit: meter reports an error; replace if persistent"),
        ("power_failure", DiagnosisCode.POWER_FAILURE, "none: supply interruption recorded"),
    ],
)
def test_status_flags(diag: Diagnostics, flag: str, code: DiagnosisCode, recommendation: str) -> None:
    pts = [
        dp("Z1", "electric:CurrentSummationDelivered", protocol="zigbee", flags=frozenset({flag})),
        dp("Z1", "electric:InstantaneousDemand", protocol="zigbee", unit="W", flags=frozenset({flag})),
    ]
    diag.observe_points("zb", pts, T0)
    e = only(diag, code)
    assert e.device == "Z1" and e.recommendation == recommendation
    assert f"'{flag}' on 2 of 2 data points" in e.evidence and e.numbers["flags"] == [flag]
    diag.observe_points("zb", [dp("Z1", "electric:CurrentSummationDelivered", protocol="zigbee")], T0)
    assert diag.log.open_events() == []


def test_five_minute_clock_offset(diag: Diagnostics) -> None:
    received = T0 + timedelta(hours=10)
    diag.observe_points("p1", [dp(time=received + timedelta(minutes=5))], received)
    e = only(diag, DiagnosisCode.CLOCK_DRIFT)
    assert e.numbers["drift_s"] == 300 and e.numbers["limit_s"] == 60
    assert "meter clock 300 s ahead of the hub" in e.evidence
    diag.observe_points("p1", [dp(time=received + timedelta(seconds=20))], received + timedelta(seconds=10))
    assert diag.log.open_events() == []


def test_clock_drift_from_a_dlms_clock_object(diag: Diagnostics) -> None:
    received = T0 + timedelta(hours=1)
    clock = dp("E2", "0-0:1.0.0", (received - timedelta(minutes=5)).isoformat(), protocol="dlms", unit=None)
    diag.observe_points("dlms-E2", [clock], received)
    e = only(diag, DiagnosisCode.CLOCK_DRIFT)
    assert e.numbers["drift_s"] == -300 and "behind" in e.evidence


def test_gas_capture_times_are_not_clock_drift(diag: Diagnostics) -> None:
    # DSMR gas values carry their (older) capture time: not the meter's clock.
    diag.observe_points("p1", [dp("G1", "0-1:24.2.1", unit="m3", time=T0 - timedelta(hours=1))], T0)
    assert diag.log.open_events() == []


def gap_filled_records() -> list[IntervalRecord]:
    b = IntervalBuilder()
    t0 = int(T0.timestamp())
    out: list[IntervalRecord] = []
    samples = [(t0 + 300 * i, 1000 + 10 * i) for i in range(7)]  # to 00:30
    samples += [(t0 + 7200 + 300 * i, 1240 + 10 * i) for i in range(13)]  # silent 00:30-02:00
    for t, v in samples:
        out += b.add("E1", IMPORT, t, v, 0)
    return out


def test_gap_filled_intervals(diag: Diagnostics) -> None:
    records = gap_filled_records()
    estimated = [r for r in records if Quality.ESTIMATED_LINEAR_INTERPOLATION in Quality(r.quality)]
    assert len(estimated) == 3
    for r in records[:-2]:
        diag.observe_interval(r)
    e = only(diag, DiagnosisCode.MISSING_INTERVALS)
    assert e.numbers["estimated"] == {"1-0:1.8.0": 3}
    assert "1-0:1.8.0: 3 intervals estimated by linear interpolation from 2026-03-02T00:30:00Z" in e.evidence
    assert e.recommendation.startswith("none")
    for r in records[-2:]:  # valid intervals again
        diag.observe_interval(r)
    assert diag.log.get(e.id).resolution == "cleared"


def test_channel_without_intervals_for_n_periods(diag: Diagnostics) -> None:
    t0 = int(T0.timestamp())
    diag.observe_interval(IntervalRecord("E1", IMPORT, t0, 1800, 500, 1500, 0, int(Quality.VALID)))
    assert diag.tick(T0 + timedelta(hours=1, minutes=30)) == []  # 2 periods: within N = 2
    diag.tick(T0 + timedelta(hours=2, minutes=1))
    e = only(diag, DiagnosisCode.MISSING_INTERVALS)
    assert e.numbers["overdue_periods"] == {"1-0:1.8.0": 3} and "no interval for 3 periods" in e.evidence
    diag.observe_interval(IntervalRecord("E1", IMPORT, t0 + 1800, 1800, 500, 2000, 0, int(Quality.VALID)))
    assert diag.log.open_events() == []


def test_decryption_failures_raise_a_security_event(diag: Diagnostics) -> None:
    for i in range(3):
        diag.observe_errors(
            "wmbus", [DecryptionError("AFL MAC does not verify", meter="12345678")], T0 + timedelta(seconds=i)
        )
    e = only(diag, DiagnosisCode.DECRYPTION_FAILURES)
    assert e.device == "12345678" and e.count == 3 and e.numbers["failures"] == 3
    assert "3 decryption failures in 3 frames" in e.evidence
    assert not [x for x in diag.log.open_events() if x.code == DiagnosisCode.HAN_DECODE_ERRORS]
    diag.observe_points(
        "wmbus", [dp("12345678", "water:volume", protocol="wmbus", unit="m3")], T0 + timedelta(minutes=1)
    )
    assert diag.log.open_events() == []


# -- repairs --------------------------------------------------------------------------------


def stale(diag: Diagnostics) -> DiagnosedEvent:
    diag.observe_points("dlms-E2", [dp("E2", protocol="dlms")], T0)
    (e,) = diag.tick(T0 + timedelta(hours=2))
    return e


async def test_repair_succeeded_closes_the_event(tmp_path: Path) -> None:
    repairs = FakeRepairs(repoll=RepairOutcome.SUCCEEDED)
    diag = Diagnostics(DiagnosticsLog(tmp_path / "d.sqlite"), repairs)
    e = stale(diag)
    done = await diag.repair(e, T0 + timedelta(hours=2))
    assert repairs.calls == [("repoll", "E2")]
    assert done.closed is not None and done.resolution == "repaired"
    assert done.repair is RepairAction.REPOLL and done.outcome is RepairOutcome.SUCCEEDED
    assert diag.log.open_events() == []


async def test_repair_failed_stays_open_then_falls_back(tmp_path: Path) -> None:
    repairs = FakeRepairs(repoll=RepairOutcome.FAILED, fallback_transport=RepairOutcome.FAILED)
    diag = Diagnostics(DiagnosticsLog(tmp_path / "d.sqlite"), repairs)
    stale(diag)
    (done,) = await diag.repair_pending(T0 + timedelta(hours=2))
    assert [c for c, _ in repairs.calls] == ["repoll", "fallback_transport"]
    assert done.is_open and done.outcome is RepairOutcome.FAILED
    assert done.repair is RepairAction.FALLBACK_TRANSPORT
    assert await diag.repair_pending(T0 + timedelta(hours=2, minutes=30)) == []  # not yet retried
    (again,) = await diag.repair_pending(T0 + timedelta(hours=3))
    assert len(again.attempts) == 4


async def test_repair_unsupported_by_default(diag: Diagnostics) -> None:
    received = T0 + timedelta(hours=1)
    diag.observe_points(
        "iec",
        [
            dp(
                "E3",
                "0-0:1.0.0",
                (received + timedelta(minutes=5)).isoformat(),
                protocol="iec62056-21",
                unit=None,
            )
        ],
        received,
    )
    (done,) = await diag.repair_pending(received)
    assert done.code is DiagnosisCode.CLOCK_DRIFT and done.is_open
    assert done.repair is RepairAction.RESYNC_CLOCK and done.outcome is RepairOutcome.UNSUPPORTED
    assert await diag.repair_pending(received + timedelta(days=1)) == []  # unsupported is not retried


async def test_rekey_on_decryption_failure_via_callbacks(tmp_path: Path) -> None:
    asked: list[str] = []

    async def rekey(event: DiagnosedEvent) -> bool:
        asked.append(event.device)
        return True

    diag = Diagnostics(DiagnosticsLog(tmp_path / "d.sqlite"), CallbackRepairs(on_rekey=rekey))
    diag.observe_errors("wmbus", [DecryptionError("wrong key", meter="W9")], T0)
    assert await diag.repair_pending(T0) == [] and asked == []  # one bad frame may be just that
    diag.observe_errors("wmbus", [DecryptionError("wrong key", meter="W9")], T0 + timedelta(seconds=30))
    (done,) = await diag.repair_pending(T0 + timedelta(seconds=30))
    assert asked == ["W9"] and done.resolution == "repaired" and done.repair is RepairAction.REKEY


async def test_repair_that_raises_counts_as_failed(tmp_path: Path) -> None:
    async def broken(event: DiagnosedEvent) -> bool:
        raise OSError("serial port gone")

    diag = Diagnostics(DiagnosticsLog(tmp_path / "d.sqlite"), CallbackRepairs(on_repoll=broken))
    e = stale(diag)
    done = await diag.repair(e, T0 + timedelta(hours=2))
    assert done.is_open and done.attempts[0].outcome is RepairOutcome.FAILED
    assert done.attempts[1].action is RepairAction.FALLBACK_TRANSPORT
    assert done.attempts[1].outcome is RepairOutcome.UNSUPPORTED
    assert done.outcome is RepairOutcome.FAILED


async def test_no_local_repair_for_tamper(diag: Diagnostics) -> None:
    diag.observe_points("zb", [dp("Z1", "electric:x", protocol="zigbee", flags=frozenset({"tamper"}))], T0)
    (done,) = await diag.repair_pending(T0)
    assert done.repair is RepairAction.NONE and done.outcome is RepairOutcome.UNSUPPORTED and done.is_open
    assert done.recommendation == "site visit: tamper inspection"


async def test_successful_repair_resets_the_link_window(tmp_path: Path) -> None:
    diag = Diagnostics(
        DiagnosticsLog(tmp_path / "d.sqlite"), FakeRepairs(fallback_transport=RepairOutcome.SUCCEEDED)
    )
    for i in range(40):
        diag.observe_errors("p1", [ChecksumError("dsmr", "bad")], T0 + timedelta(seconds=i))
    (done,) = await diag.repair_pending(T0 + timedelta(minutes=1))
    assert done.resolution == "repaired"
    diag.observe_points("p1", [dp()], T0 + timedelta(minutes=2))
    assert diag.log.open_events() == []


# -- dedup and persistence -----------------------------------------------------------------


def test_same_condition_100_times_is_one_event(diag: Diagnostics) -> None:
    for i in range(100):
        pts = [dp("Z1", "electric:x", protocol="zigbee", flags=frozenset({"tamper"}))]
        diag.observe_points("zb", pts, T0 + timedelta(minutes=i))
    (e,) = diag.log.open_events()
    assert e.code is DiagnosisCode.TAMPER and e.count == 100
    assert e.first_seen == T0 and e.last_seen == T0 + timedelta(minutes=99)
    diag.observe_points("zb", [dp("Z1", "electric:x", protocol="zigbee")], T0 + timedelta(minutes=100))
    assert diag.log.open_events() == []
    (closed,) = diag.log.events()
    assert closed.closed == T0 + timedelta(minutes=100) and closed.count == 100
    # The condition returning is a new event.
    diag.observe_points(
        "zb",
        [dp("Z1", "electric:x", protocol="zigbee", flags=frozenset({"tamper"}))],
        T0 + timedelta(hours=3),
    )
    assert [e.id for e in diag.log.events()] == [closed.id, closed.id + 1]


def test_events_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "diagnostics.sqlite"
    diag = Diagnostics(DiagnosticsLog(path))
    diag.observe_readings([Reading("E1", IMPORT, Decimal(1234), Unit.KWH, T0)])
    diag.observe_readings([Reading("E1", IMPORT, Decimal(1200), Unit.KWH, T0 + timedelta(seconds=10))])
    diag.observe_points(
        "zb", [dp("Z1", "electric:x", protocol="zigbee", flags=frozenset({"low_battery"}))], T0
    )
    diag.log.shutdown()

    log = DiagnosticsLog(path)
    events = log.events()
    assert [e.code for e in events] == [DiagnosisCode.REGISTER_BACKWARDS, DiagnosisCode.LOW_BATTERY]
    assert "went from 1234 to 1200" in events[0].evidence
    assert log.events(after_id=events[0].id) == events[1:]
    assert [e.id for e in log.changes(after_seq=events[0].seq)] == [events[1].id]
    # A restarted hub keeps the open events and closes them when the condition clears.
    again = Diagnostics(log)
    again.observe_points("zb", [dp("Z1", "electric:x", protocol="zigbee")], T0 + timedelta(days=1))
    assert [e.code for e in log.open_events()] == [DiagnosisCode.REGISTER_BACKWARDS]
    assert log.changes(after_seq=events[1].seq)[0].resolution == "cleared"


def test_evidence_is_sealed_at_rest(tmp_path: Path) -> None:
    path = tmp_path / "diagnostics.sqlite"
    diag = Diagnostics(DiagnosticsLog.beside(tmp_path / "history.sqlite"))
    assert Path(diag.log.path) == path and (tmp_path / "master.key").exists()
    diag.observe_readings([Reading("E1", IMPORT, Decimal(1234), Unit.KWH, T0)])
    diag.observe_readings([Reading("E1", IMPORT, Decimal(1200), Unit.KWH, T0 + timedelta(seconds=10))])
    diag.log.shutdown()
    assert b"1234" not in path.read_bytes()
    db = sqlite3.connect(path)
    db.execute("UPDATE diagnostic_events SET device='E2'")
    db.commit()
    db.close()
    with pytest.raises(DiagnosticsTampered):
        DiagnosticsLog(path).events()
