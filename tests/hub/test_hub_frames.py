"""Frames from a P1 port into the hub: good ones stored, bad ones refused with nothing stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from smarthub.han.p1 import P1Port
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.meters.errors import ChecksumError, TruncatedFrame
from smarthub.model.obis import GAS_VOLUME, IMPORT_ACTIVE_ENERGY
from smarthub.sim.dsmr_meter import DsmrMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile

T0 = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.fixture
def hub(tmp_path: Path) -> SmartHub:
    h = SmartHub("HUB1", HistoryStore(tmp_path / "history.sqlite"))
    h.attach(P1Port("p1"))
    return h


@pytest.fixture
def meter() -> DsmrMeterSimulator:
    return DsmrMeterSimulator("E0001", "G0001", HouseholdProfile(3, pv_kwp=3.5), start=T0)


def test_an_hour_of_telegrams_gives_exact_intervals(hub: SmartHub, meter: DsmrMeterSimulator) -> None:
    at_boundary = []
    for minute in range(0, 61):
        t = T0 + timedelta(minutes=minute)
        assert hub.receive("p1", meter.telegram_at(t)) == []
        if minute % 30 == 0:
            r = meter.registers
            at_boundary.append((r.import_t1_wh + r.import_t2_wh, r.gas_dm3))
    intervals = hub.history.query("E0001", IMPORT_ACTIVE_ENERGY)
    assert [r.start for r in intervals] == [int(T0.timestamp()), int(T0.timestamp()) + 1800]
    # Each interval is exactly the meter's own register advance over the half-hour, to the Wh / litre.
    assert [r.value for r in intervals] == [
        at_boundary[1][0] - at_boundary[0][0],
        at_boundary[2][0] - at_boundary[1][0],
    ]
    gas = hub.history.query("G0001", GAS_VOLUME)
    assert [r.value for r in gas] == [
        at_boundary[1][1] - at_boundary[0][1],
        at_boundary[2][1] - at_boundary[1][1],
    ]
    assert all(r.power_of_ten == -3 for r in gas)
    assert hub.mirror.latest("E0001", IMPORT_ACTIVE_ENERGY) is not None


def _corrupt_crc(frame: bytes) -> bytes:
    i = frame.rindex(b"!")
    crc = frame[i + 1 : i + 5]
    bad = b"0000" if crc != b"0000" else b"FFFF"
    return frame[: i + 1] + bad + frame[i + 5 :]


@pytest.mark.parametrize(
    ("mangle", "error", "text"),
    [
        (_corrupt_crc, ChecksumError, "CRC"),
        (lambda f: f[: len(f) // 2], TruncatedFrame, ""),
        (lambda f: f.replace(b"1-0:1.8.1(", b"1-0:1.8.1(9"), ChecksumError, "CRC"),
    ],
    ids=["wrong-crc", "truncated", "payload-altered"],
)
def test_bad_frame_is_refused_and_nothing_is_stored(
    hub: SmartHub,
    meter: DsmrMeterSimulator,
    mangle,
    error: type[Exception],
    text: str,  # type: ignore[no-untyped-def]
) -> None:
    hub.receive("p1", meter.telegram_at(T0))
    mirrored = hub.mirror.latest("E0001", IMPORT_ACTIVE_ENERGY)
    bad = mangle(meter.telegram_at(T0 + timedelta(minutes=30)))
    errors = hub.receive("p1", bad)
    if error is TruncatedFrame:
        # A stream cannot know a frame is cut until the next one starts; feeding it proves it.
        errors += hub.receive("p1", meter.telegram_at(T0 + timedelta(minutes=31)))
    assert len(errors) == 1 and isinstance(errors[0], error), errors
    assert text in str(errors[0])
    assert hub.stats.frame_errors == 1
    # Nothing of the bad telegram reached the mirror or the history.
    latest = hub.mirror.latest("E0001", IMPORT_ACTIVE_ENERGY)
    assert latest is not None and latest.time != T0 + timedelta(minutes=30)
    assert mirrored is not None
    if error is not TruncatedFrame:
        assert hub.history.count("E0001", IMPORT_ACTIVE_ENERGY) == 0
