"""`smarthub gdsc data-quality`: the VEE figures of a state's store, as a table or JSON lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from smarthub.cli import app
from smarthub.gdsc.readings.tables import StoredReading
from smarthub.gdsc.readings.vee.store import VeeSettings
from smarthub.gdsc.service import open_store
from smarthub.sim.fleet import provision


def test_data_quality_command(tmp_path: Path) -> None:
    state = tmp_path / "state"
    provision(state, [], datetime.now(UTC) - timedelta(minutes=5))
    store = open_store(state)
    t0 = 20_500 * 86400
    store.enable_vee(VeeSettings(now=lambda: t0 + 2 * 86400))
    store.ingest(
        "H1",
        [
            StoredReading("H1", "E1", "1-0:1.8.0", t0 + 1800 * i, 1800, -1 if i == 4 else 9, 0, 72, 1)
            for i in range(48)
        ],
        {},
    )
    store.close()
    runner = CliRunner()
    r = runner.invoke(app, ["gdsc", "meter-model", "--state", str(state), "--hub", "H1", "--meter", "E1",
                            "--model", "E-100A"])  # fmt: skip
    assert r.exit_code == 0 and json.loads(r.output) == {"hub": "H1", "meter": "E1", "model": "E-100A"}
    r = runner.invoke(app, ["gdsc", "data-quality", "--state", str(state), "--by", "model", "--json"])
    assert r.exit_code == 0, r.output
    assert [json.loads(x) for x in r.output.splitlines()] == [
        {
            "model": "E-100A",
            "quarantined": 1,
            "flagged": 0,
            "estimated": 0,
            "estimates_replaced": 0,
            "rules": {"negative": 1},
        }
    ]
    r = runner.invoke(app, ["gdsc", "data-quality", "--state", str(state)])
    assert r.exit_code == 0 and "H1" in r.output and "negative 1" in r.output
    r = runner.invoke(app, ["gdsc", "data-quality", "--state", str(state), "--by", "colour"])
    assert r.exit_code == 2 and "hub, model or supplier" in r.output
