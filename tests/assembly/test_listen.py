"""`smarthub listen`: every meter heard, with what an installer needs to configure it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from smarthub.assembly.config import HubConfig, MeterConfig, TransportConfig
from smarthub.assembly.listen import listen
from smarthub.clock import AcceleratedClock
from smarthub.meters.dlms.security import SecurityKeys
from smarthub.sim.dlms_meter import DlmsMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.wires import Pty, im871a_frame, port_of, push_pty, push_tcp
from smarthub.sim.wmbus_meter import WMBusMeterSimulator

T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)
KEY = bytes(range(16))


def radio_meter(ident: int, key: bytes | None, mode: int = 5) -> WMBusMeterSimulator:
    return WMBusMeterSimulator(ident, "LSE", "water", key, HouseholdProfile(ident % 97), start=T0, mode=mode)


async def test_listening_on_a_stick_tells_each_meter_and_whether_its_key_works(tmp_path: Path) -> None:
    clock = AcceleratedClock(T0, 60.0)
    ours, wrong, plain, neighbour = (
        radio_meter(11111111, KEY),
        radio_meter(22222222, KEY),
        radio_meter(33333333, None, mode=0),
        radio_meter(44444444, bytes(16)),
    )
    pty = Pty()
    stick = TransportConfig("serial", "stick", device=pty.device, receiver="im871a")
    config = HubConfig(
        "HUB1", tmp_path, tmp_path, tmp_path, tmp_path,
        meters=(
            MeterConfig("wmbus", stick, id=ours.meter_id, fuel="water", key=KEY),
            MeterConfig("wmbus", stick, id=wrong.meter_id, fuel="water", key=bytes(range(1, 17))),
        ),
    )  # fmt: skip

    def frames(t: datetime) -> bytes:
        return b"".join(im871a_frame(m.frame_at(t)) for m in (ours, wrong, plain, neighbour))

    wire = asyncio.create_task(push_pty(pty, frames, clock, timedelta(seconds=30)))
    try:
        listener = await listen(config, 2.0, clock=clock)
    finally:
        wire.cancel()
        pty.close()
    heard = {h.meter: h for h in listener.report()}
    assert set(heard) == {m.meter_id for m in (ours, wrong, plain, neighbour)}
    assert (heard[ours.meter_id].key, heard[ours.meter_id].encrypted) == ("works", True)
    assert heard[ours.meter_id].values["8-0:1.0.0"].endswith("m3") and heard[ours.meter_id].configured
    assert heard[ours.meter_id].manufacturer == "LSE" and heard[ours.meter_id].medium == "water"
    assert (heard[wrong.meter_id].key, heard[wrong.meter_id].values) == ("wrong", {})
    assert heard[plain.meter_id].key == "not needed" and heard[plain.meter_id].encrypted is False
    assert heard[plain.meter_id].values and not heard[plain.meter_id].configured
    assert (heard[neighbour.meter_id].key, heard[neighbour.meter_id].encrypted) == ("missing", True)


async def test_listening_to_a_dlms_han_port_without_and_with_its_key(tmp_path: Path) -> None:
    clock = AcceleratedClock(T0, 60.0)
    keys = SecurityKeys(KEY, KEY)
    title = bytes.fromhex("4B464D1020000001")
    meter = DlmsMeterSimulator(title, "HAN", HouseholdProfile(3), start=T0, keys=keys)
    server, _ = await push_tcp(meter.push_at, clock, timedelta(seconds=10))
    try:
        han = TransportConfig("tcp", "han", host="127.0.0.1", port=port_of(server))
        results = []
        for key in (None, KEY):
            config = HubConfig(
                "HUB1", tmp_path, tmp_path, tmp_path, tmp_path,
                meters=(MeterConfig("dlms", han, id=title.hex().upper(), key=key),),
            )  # fmt: skip
            (h,) = (await listen(config, 1.5, clock=clock)).report()
            results.append(h)
    finally:
        server.close()
    without, with_key = results
    assert (without.key, without.encrypted, without.values) == ("missing", True, {})
    assert (with_key.key, with_key.encrypted, with_key.manufacturer) == ("works", True, "KFM")
    assert "1-0:1.8.0" in with_key.values


def test_smarthub_listen_reads_hex_lines_from_standard_input() -> None:
    ours, other = radio_meter(11111111, KEY), radio_meter(55555555, bytes(16))
    lines = "".join(
        f"{m.frame_at(T0 + timedelta(minutes=i)).hex()}\n" for i in range(2) for m in (ours, other)
    )
    run = subprocess.run(
        [sys.executable, "-m", "smarthub.cli", "listen", "--transport", "pipe:-", "--protocol", "wmbus",
         "--key", f"{ours.meter_id}={KEY.hex()}", "--seconds", "1"],
        input=lines, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    heard = {d["meter"]: d for d in map(json.loads, run.stdout.splitlines())}
    assert heard[ours.meter_id]["key"] == "works" and heard[ours.meter_id]["frames"] == 2
    assert heard[other.meter_id]["key"] == "missing" and heard[other.meter_id]["bad_frames"] == 2
    bad = subprocess.run(
        [sys.executable, "-m", "smarthub.cli", "listen", "--transport", "pipe:-", "--protocol", "wmbus",
         "--key", "X=00", "--seconds", "1"],
        input="", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "--key 'X=00'" in bad.stderr
