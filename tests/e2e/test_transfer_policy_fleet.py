"""A transfer policy set at the GDSC reaches running hubs through their normal pulls (issue 20
item 3): the demo's fleet (simulated homes serving 2030.5 over mutual TLS on loopback) and the
GDSC service (scheduler, collectors, upkeep) on an accelerated clock. The policy is set in the
database only; the plan leaves out a hub whose policy says "not now", and a hub pulled gets its
signed ``transfer.policy`` through the same channel and serves the GDSC at the policy's
aggregation from then on.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from smarthub.gdsc.pull.tables import pull_plan, urgent_work
from smarthub.gdsc.transfer.policies import Policy, TransferPolicies
from smarthub.sim.demo import DemoConfig, setup, teardown
from smarthub.wan.contract.bodies import Granularity


async def test_a_policy_set_at_the_gdsc_reaches_the_hub_with_its_pulls_and_shapes_the_plan(
    tmp_path: Path,
) -> None:
    cfg = DemoConfig(homes=3, days=1, seconds_per_day=48 * 4, seed=5, state=tmp_path)
    run = await setup(cfg)
    try:
        run.clock.rebase()
        homes = {h.spec.hub_id: h for h in run.fleet.homes}
        daily_hub, night_hub, plain_hub = sorted(homes)
        window = cfg.sim_start + timedelta(minutes=30)
        policies = TransferPolicies(run.store.engine)
        # Pulled every window, but daily data only; pulled once a night between 01:00 and 05:00.
        policies.set("hub", daily_hub, Policy("half-hourly", aggregation="daily"), "OP", window)
        policies.set("hub", night_hub, Policy("daily", 60, 240, "monthly"), "OP", window)
        await run.fleet.start_meters(until=window + timedelta(hours=1))
        await run.gdsc.run_windows(until=window + timedelta(hours=1), first_window=window)
        with run.store.engine.connect() as conn:
            planned = {
                (r.hub_id, r.window_start.replace(tzinfo=None))
                for r in conn.execute(select(pull_plan.c.hub_id, pull_plan.c.window_start))
            }
            sent = [
                r.hub_id
                for r in conn.execute(
                    select(urgent_work.c.hub_id).where(
                        urgent_work.c.command_type == "transfer.policy", urgent_work.c.state == "done"
                    )
                )
            ]
        wins = {window.replace(tzinfo=None), (window + timedelta(minutes=30)).replace(tzinfo=None)}
        assert {(daily_hub, w) for w in wins} <= planned and {(plain_hub, w) for w in wins} <= planned
        assert not any(h == night_hub for h, _ in planned)  # 00:30-01:30: outside its night window
        assert sent == [daily_hub]  # it rode on the hub's pull; the others got nothing
        held = homes[daily_hub].assembly.transfer_policy.policy
        assert held is not None and held.aggregation is Granularity.DAILY
        # The hub's privacy filter now serves the GDSC days where it served half-hours.
        assert homes[plain_hub].privacy.granularity("gdsc") == "half-hourly"
        assert homes[daily_hub].privacy.granularity("gdsc") == "daily"
        assert homes[plain_hub].assembly.transfer_policy.policy is None
    finally:
        await teardown(run)
