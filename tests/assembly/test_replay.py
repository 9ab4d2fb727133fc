"""Replaying a capture log into a hub: the frames through the hub's ports, at their original times."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from smarthub.gdsc.pki import CertificateAuthority, Role
from smarthub.hub.history import HistoryStore
from smarthub.meters.capture_log import format_capture_line
from smarthub.model.obis import IMPORT_ACTIVE_ENERGY, WATER_VOLUME
from smarthub.sim.dsmr_meter import DsmrMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.wmbus_meter import WMBusMeterSimulator

_spec = importlib.util.spec_from_file_location(
    "real_captures", Path(__file__).resolve().parents[1] / "meters" / "real_captures.py"
)
assert _spec is not None and _spec.loader is not None
c = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(c)

T0 = datetime(2025, 11, 3, 6, 0, tzinfo=UTC)  # a capture made months ago
KEY = bytes(range(16))


def test_a_capture_log_replayed_into_the_hub_with_its_original_times(
    tmp_path: Path, wall_now: datetime
) -> None:
    ca = CertificateAuthority.create("GDSC CA", wall_now)
    state = tmp_path / "hub"
    state.mkdir()
    ca.issue(Role.HUB, "HUB1", wall_now, hosts=("127.0.0.1",)).save(state, "hub")
    ca.save(tmp_path / "ca")
    (state / "ca.pem").write_bytes((tmp_path / "ca" / "ca.pem").read_bytes())
    p1 = DsmrMeterSimulator("E0000000042", "G0000000042", HouseholdProfile(4), start=T0)
    water = WMBusMeterSimulator(12345678, "LSE", "water", KEY, HouseholdProfile(5), start=T0, mode=5)
    lines = ["# a night's traffic on a Dutch P1 port and a water meter's radio, and a HAN capture"]
    for i in range(0, 6 * 65):  # every 10 s for 65 minutes
        t = T0 + timedelta(seconds=10 * i)
        lines.append(format_capture_line(t, "dsmr", p1.telegram_at(t)))
        if i % 12 == 0:
            lines.append(format_capture_line(t, "wmbus", water.frame_at(t)))
    lines.append(format_capture_line(T0, "dlms", c.AIDON_NO_3PHASE))  # published, Aidon (Norway)
    log = tmp_path / "capture.log"
    log.write_text("\n".join(lines) + "\n")
    config = tmp_path / "hub.toml"
    config.write_text(f"""
[hub]
id = "HUB1"
state = "{state}"

[[meters]]
id = "E0000000042"
protocol = "dsmr"
transport = {{ kind = "tcp", host = "127.0.0.1", port = 1 }}   # not opened to replay

[[meters]]
id = "{water.meter_id}"
protocol = "wmbus"
fuel = "water"
key = "{KEY.hex()}"
transport = {{ kind = "pipe", path = "-" }}
""")
    config.chmod(0o600)
    run = subprocess.run(
        [sys.executable, "-m", "smarthub.cli", "hub", "--config", str(config), "--replay", str(log)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["frames"] == len(lines) - 1 and result["decoded"] == result["frames"]
    assert result["problems"] == {} and result["first"] == T0.isoformat()
    history = HistoryStore(state / "history.sqlite")
    try:
        elec = history.query("E0000000042", IMPORT_ACTIVE_ENERGY)
        assert [r.start for r in elec] == [int((T0 + timedelta(minutes=30 * k)).timestamp()) for k in (0, 1)]
        water_starts = [r.start for r in history.query(water.meter_id, WATER_VOLUME)]
        assert water_starts == [int((T0 + timedelta(minutes=30 * k)).timestamp()) for k in (0, 1)]
    finally:
        history.close()
    # A damaged log: the line is named, nothing is half-replayed into a surprise.
    log.write_text(lines[1] + "\nyesterday dsmr 0011\n")
    bad = subprocess.run(
        [sys.executable, "-m", "smarthub.cli", "hub", "--config", str(config), "--replay", str(log)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "line 2" in bad.stderr and "ISO-8601" in bad.stderr
