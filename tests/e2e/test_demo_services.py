"""``smarthub demo --services`` (issue 25): the demo's GDSC serves the data services API and the
example services run against it as outside programs — the tariff advisor the occupants consented
to through the API, reading their half-hours and the GDSC's tariff catalogue; the top-up provider
taking a card payment that the collector delivers and the meter credits."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from smarthub.cli import app
from smarthub.cli.demo import _demo
from smarthub.gdsc.api.auth.tokens import TokenStore
from smarthub.sim.demo import DemoConfig, setup, teardown
from smarthub.sim.services_demo import ADVISOR, start_services


async def _get(url: str, token: str) -> Any:
    """A GET in a thread: the API is served by this test's event loop."""

    def get() -> Any:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    return await asyncio.to_thread(get)


async def test_the_services_are_onboarded_consented_to_and_run_against_the_api(tmp_path: Path) -> None:
    """Without the day (fast): parties, catalogue, approval, consents through the API, one run of
    each service; what the advisor read is in the occupant's view of its services."""
    cfg = DemoConfig(homes=2, days=1, seconds_per_day=30, seed=4, state=tmp_path)
    run = await setup(cfg)
    services = None
    try:
        services = await start_services(run)
        assert sorted(services.consents) == ["P0000000", "P0000001"]
        assert [h.prepaid for h in services.homes] == [False, True]
        outcome = (await services.finish(cfg.end.date(), follow_s=0))["services"]
        advice = outcome["advice"]
        assert sorted(advice) == ["P0000000", "P0000001"]
        for a in advice.values():
            assert a["recommended"] in ("DEMO-FLAT", "DEMO-E7", "DEMO-PEAK"), a
            assert a["expected_half_hours"] == 17_520 and a["half_hours"] == 0  # no day run yet
            # The advice queued for the home's display as the advisor's message (issue 25).
            assert a["notified"] is True and a["notification"].startswith("queued for the display as job "), a
        (topup,) = outcome["topups"].values()
        assert topup["state"] == "delivered", topup  # queued at the GDSC; the meter's verdict comes later
        # The occupant sees the advisor, its consent and what it read (issue 25 item 3).
        token = TokenStore(run.store.engine).issue("C-P0000000", run.clock.now())
        view = await _get(f"{services.base}/v1/premises/P0000000/services", token)
        (adv,) = [s for s in view if s["service_id"] == ADVISOR]
        assert adv["consents"] == [services.consents["P0000000"]] and adv["reads_total"] >= 1
        assert adv["reads"][0]["granularity"] == "half-hourly"
        catalogue = await _get(f"{services.base}/v1/tariffs", token)
        assert sorted(e["tariff"]["tariff_id"] for e in catalogue) == ["DEMO-E7", "DEMO-FLAT", "DEMO-PEAK"]
    finally:
        if services is not None:
            await services.stop()
        await teardown(run)


@pytest.mark.slow
async def test_smarthub_demo_services_runs_them_through_a_day(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole `smarthub demo --services --headless`: the advisor advises on the day's half-hours,
    the top-up is credited by the prepaid meter, and nothing of the day is lost."""
    cfg = DemoConfig(homes=3, days=1, seconds_per_day=30, seed=1, state=tmp_path)
    result = await _demo(cfg, True, 0, services=True)
    assert result is not None and result.missing == 0 and result.duplicates == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    outcome = json.loads(lines[-1])["services"]
    assert outcome["consents"] == 3
    for a in outcome["advice"].values():
        assert a["half_hours"] > 0 and a["recommended"].startswith("DEMO-") and a["notified"] is True, a
    (topup,) = outcome["topups"].values()
    assert "credited to meter" in topup["receipt"], topup


def test_the_services_are_refused_with_the_building_demo(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--building", "--services", "--state", str(tmp_path)])
    assert result.exit_code == 2 and "Invalid value for --services" in result.output
