"""Top-ups on their way when a chaos run's clock stops are delivered before the run counts them.

On an overloaded machine the run's accelerated clock ran past the last window while top-ups were
still ``pending`` in the plan (never claimed: the scheduler was behind) or had failed their tries
and waited for the voucher courier's re-send: ``topups_lost`` counted them although the GDSC held
them and its next window would have sent them (1, 10 and 43 "lost" in runs under load). Both
states are made here deterministically, on a real fleet over real mutual TLS: a top-up queued and
never reached, and one whose only try failed behind a cut link.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from smarthub.gdsc.commands.vouchers import VoucherIssuer
from smarthub.gdsc.pull.tables import FAILED, urgent_work
from smarthub.sim.chaos import Chaos
from smarthub.sim.demo import DemoConfig, teardown
from smarthub.sim.topups import settle_top_ups


def _states(chaos: Chaos) -> list[str]:
    assert chaos.run is not None
    u = urgent_work
    with chaos.run.store.engine.connect() as conn:
        return [
            r.state for r in conn.execute(select(u.c.state).where(u.c.command_type == "prepayment.topup"))
        ]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_top_ups_the_scheduler_had_not_delivered_are_delivered_before_the_count(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    db = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    cfg = DemoConfig(homes=4, days=1, seconds_per_day=12, seed=7, state=tmp_path, db_url=db)
    chaos = Chaos(cfg)
    run = await chaos.start()
    # The run's renewal plan (Chaos.run_all): the short-lived certificates are not renewed at
    # every upkeep step.
    run.gdsc.upkeep.renew_before, run.gdsc.upkeep.renew_spread = chaos.renew_before, chaos.renew_spread
    try:
        hub = next(h.spec.hub_id for h in run.fleet.homes if h.consumer.ledger is not None)
        issuer: VoucherIssuer = chaos._issuer()
        # One whose only try fails: the hub's link cut, one try allowed (the plan gives up; the
        # courier re-sends it once the hub has answered a pull again).
        run.gdsc.plan.max_tries = 1
        chaos.links[hub].cut()
        failed = chaos._top_up(issuer, hub, Decimal("10.00"), run.clock.now())
        await run.gdsc.run_windows(until=run.clock.now() + run.cfg.window)
        assert _states(chaos) == [FAILED]
        chaos.links[hub].restore()
        # One queued as the clock stopped: the scheduler never claimed it.
        queued = chaos._top_up(issuer, hub, Decimal("5.00"), run.clock.now())
        assert sorted(_states(chaos)) == sorted([FAILED, "pending"])

        # Counted now, as the run used to, both are "lost" although the GDSC holds them.
        assert chaos._count_top_ups() == (2, 0, 0)
        assert set(chaos._undelivered_top_ups()) == {failed, queued}

        windows = await settle_top_ups(run, chaos._undelivered_top_ups)

        assert chaos._undelivered_top_ups() == {}
        assert chaos._count_top_ups() == (2, 2, 0)  # each credited once at the hub
        assert windows >= 2  # the failed one is re-sent only after a pull the hub answered
        # At its next step the GDSC settles both from the hubs' verdicts: nothing left to re-send.
        await run.gdsc.upkeep.run_once()
        assert issuer.pending() == []
    finally:
        await teardown(run)


async def test_a_top_up_no_window_can_credit_is_left_to_the_count(tmp_path: Path) -> None:
    """A hub that never comes back: the settling stops once its windows deliver nothing, and the
    top-up stays uncredited for ``topups_lost`` to report (no waiting for ever, no hidden loss)."""
    cfg = DemoConfig(homes=4, days=1, seconds_per_day=12, seed=7, state=tmp_path)
    chaos = Chaos(cfg)
    run = await chaos.start()
    # The run's renewal plan (Chaos.run_all): the short-lived certificates are not renewed at
    # every upkeep step.
    run.gdsc.upkeep.renew_before, run.gdsc.upkeep.renew_spread = chaos.renew_before, chaos.renew_spread
    try:
        hub = next(h.spec.hub_id for h in run.fleet.homes if h.consumer.ledger is not None)
        chaos.links[hub].cut()
        voucher = chaos._top_up(chaos._issuer(), hub, Decimal("5.00"), run.clock.now())
        windows = await settle_top_ups(run, chaos._undelivered_top_ups, patience=2)
        assert windows == 2  # gave up once two windows delivered nothing to that hub
        assert chaos._undelivered_top_ups() == {voucher: hub}
        assert chaos._count_top_ups() == (1, 0, 0)

        # As a daily top-up: judged where the run's own windows ended, not after the catch-up.
        ended = run.clock.now() - timedelta(days=1)
        chaos.daily = [(hub, 0, voucher, ended - timedelta(hours=2))]
        assert chaos._top_up_days_missed(ended=ended) == 0  # not a day old then: lost, not missed
        assert chaos._top_up_days_missed() == 1  # judged after the catch-up's simulated day
        chaos.daily = [(hub, 0, voucher, ended - timedelta(hours=25))]
        assert chaos._top_up_days_missed(ended=ended) == 1  # a day old and more: missed
    finally:
        await teardown(run)


def test_settling_needs_patience() -> None:
    with pytest.raises(ValueError, match="patience"):
        asyncio.run(settle_top_ups(None, dict, patience=0))  # type: ignore[arg-type]
