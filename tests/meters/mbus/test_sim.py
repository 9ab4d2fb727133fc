"""The M-Bus and wM-Bus simulators against our codecs: registers decode exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from smarthub.meters import mbus, wmbus
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.mbus_meter import MBusMeterSimulator, WaterDraw
from smarthub.sim.wmbus_meter import WMBusMeterSimulator

T0 = datetime(2024, 1, 15, 5, 0, tzinfo=UTC)
KEY = bytes.fromhex("000102030405060708090A0B0C0D0E0F")


def _read_all(sim: MBusMeterSimulator, t: datetime) -> mbus.MultiTelegramRead:
    assert sim.respond(mbus.snd_nke(sim.primary_address), t) == b"\xe5"
    read = mbus.MultiTelegramRead(sim.primary_address)
    req: bytes | None = read.start()
    while req is not None:
        answer = sim.respond(req, t)
        assert answer is not None
        req = read.feed(answer)
    return read


@pytest.mark.parametrize("medium", ["water", "gas", "heat", "electricity"])
@pytest.mark.parametrize("per_telegram", [None, 2])
def test_wired_read_decodes_to_registers(medium: str, per_telegram: int | None) -> None:
    profile = HouseholdProfile(3)
    sim = MBusMeterSimulator(
        5, 12345678, "KAM", medium, profile, T0, records_per_telegram=per_telegram, initial_volume_dm3=1000
    )
    t = T0 + timedelta(hours=4, minutes=7)
    read = _read_all(sim, t)
    assert len(read.telegrams) == (1 if per_telegram is None else len(read.telegrams))
    if per_telegram:
        assert len(read.telegrams) > 1 and not read.telegrams[-1].more_follows
        assert all(tg.more_follows for tg in read.telegrams[:-1])
    r = sim.registers
    pts = {p.key: p for p in read.data_points(tz=profile.tz)}
    prefix = {"water": "water", "gas": "gas", "heat": "heat", "electricity": "electricity"}[medium]
    if medium != "electricity":
        assert pts[f"{prefix}:volume"].value == Decimal(r.volume_dm3) / 1000
    if medium in ("heat", "electricity"):
        assert pts[f"{prefix}:energy"].value == r.energy_wh and pts[f"{prefix}:energy"].unit == "Wh"
    assert all(p.meter == "KAM12345678" for p in pts.values())
    assert all(p.time == t.replace(second=0) for p in pts.values())


def test_wired_registers_advance_and_fcb_repeat() -> None:
    sim = MBusMeterSimulator(1, 11112222, "ABB", "water", HouseholdProfile(9), T0)
    sim.respond(mbus.snd_nke(1), T0)
    a1 = sim.respond(mbus.request_ud2(1, True), T0 + timedelta(hours=3))
    again = sim.respond(mbus.request_ud2(1, True), T0 + timedelta(hours=3))
    assert a1 == again  # same FCB: the master missed the answer, the slave repeats it
    v1 = sim.registers.volume_dm3
    a2 = sim.respond(mbus.request_ud2(1, False), T0 + timedelta(hours=14))
    assert a2 != a1 and sim.registers.volume_dm3 > v1
    assert sim.respond(mbus.request_ud2(2, True), T0 + timedelta(hours=15)) is None  # other address
    assert sim.respond(b"\x10\x5b\x01\x00\x16", T0 + timedelta(hours=15)) is None  # bad checksum
    with pytest.raises(ValueError, match="backwards"):
        sim.advance(T0)


def test_secondary_addressing() -> None:
    sim = MBusMeterSimulator(0, 12345678, "KAM", "heat", HouseholdProfile(1), T0)
    t = T0 + timedelta(hours=1)
    assert sim.respond(mbus.request_ud2(0xFD, True), t) is None  # not selected yet
    assert sim.respond(mbus.select_secondary(87654321), t) is None
    assert sim.respond(mbus.select_secondary("1234FFFF", "KAM", None, 0x04), t) == b"\xe5"
    answer = sim.respond(mbus.request_ud2(0xFD, True), t)
    assert answer is not None and mbus.decode_telegram(answer).meter == "KAM12345678"
    assert sim.respond(mbus.snd_nke(0xFD), t) == b"\xe5"  # deselects
    assert sim.respond(mbus.request_ud2(0xFD, False), t) is None


def test_water_draw_is_deterministic_and_plausible() -> None:
    a, b = WaterDraw(4, persons=3), WaterDraw(4, persons=3)
    day = datetime(2024, 6, 1, tzinfo=UTC)
    total = a.between(day, day + timedelta(days=7))
    assert total == b.between(day, day + timedelta(days=7))
    assert 0.8 * 3 * 140_000 * 7 <= total <= 1.2 * 3 * 140_000 * 7
    split = sum(a.between(day + timedelta(hours=h), day + timedelta(hours=h + 1)) for h in range(24))
    assert split == a.between(day, day + timedelta(days=1))


@pytest.mark.parametrize("mode", [0, 5, 7])
@pytest.mark.parametrize("fmt", ["A", "B"])
@pytest.mark.parametrize("medium", ["water", "gas"])
def test_wmbus_frames_decode_to_registers(mode: int, fmt: str, medium: str) -> None:
    profile = HouseholdProfile(5)
    sim = WMBusMeterSimulator(
        87654321, "LAS", medium, KEY if mode else None, profile, T0, mode=mode, frame_format=fmt
    )
    keys = {sim.meter_id: KEY}
    last_access = None
    for minutes in (1, 95, 600, 1440, 3000):
        t = T0 + timedelta(minutes=minutes, seconds=16)
        frame = sim.frame_at(t)
        f = wmbus.decode_frame(frame, keys, frame_format=fmt)
        assert f.c == 0x44 and f.security_mode == mode
        assert f.header is not None and f.header.access_no == sim.registers.access_no
        assert f.header.access_no != last_access
        last_access = f.header.access_no
        pts = {p.key: p for p in wmbus.data_points(f, tz=profile.tz)}
        assert pts[f"{medium}:volume"].value == Decimal(sim.registers.volume_dm3) / 1000
        assert pts[f"{medium}:volume"].time == t.replace(second=0)
        if mode:
            with pytest.raises(wmbus.DecryptionError):
                wmbus.decode_frame(frame, {sim.meter_id: bytes(16)}, frame_format=fmt)
    assert sim.registers.volume_dm3 > 0
