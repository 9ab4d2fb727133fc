"""One code path: ``smarthub hub`` and the simulated fleet build the same hub from the same config."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

from smarthub.assembly.hub import describe
from smarthub.cli.hub import assemble
from smarthub.clock import ManualClock
from smarthub.sim.fleet import KINDS, SimulatedHome, home_specs, provision

SIM_START = datetime(2026, 3, 2, tzinfo=UTC)


async def test_the_cli_and_the_fleet_build_the_same_parts_for_the_same_config(
    tmp_path: Path, wall_now: datetime
) -> None:
    specs = home_specs(len(KINDS), seed=5)  # one home of each kind: every protocol, plugs, a breaker
    provision(tmp_path, specs, wall_now)
    clock = ManualClock(SIM_START)
    seen = set()
    for spec in specs:
        home = SimulatedHome(spec, tmp_path, clock, SIM_START, timedelta(seconds=60))
        # The same configuration through the command's path (its own databases, same certificates).
        config = dataclasses.replace(home.config, state=tmp_path / "cli" / spec.hub_id)
        built = assemble(config)
        try:
            fleet, command = describe(home.assembly), describe(built)
            assert fleet == command, spec.kind
            seen |= set(fleet["parts"])
            assert "diagnostic.link_test" in fleet["commands"] and "meter.replace" in fleet["commands"]
            assert fleet["repairs"], spec.kind  # repairs reach the meters
        finally:
            await built.stop()
            await home.stop()
    assert seen == {
        "history", "registry", "diagnostics", "mains", "core", "meters", "management", "privacy", "supply",
        "firmware", "consumer", "recovery", "wan", "housekeeping",
    }  # fmt: skip
