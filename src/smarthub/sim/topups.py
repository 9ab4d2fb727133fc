"""Top-ups still on their way when a simulated run's clock stops: delivered in the GDSC's next
windows before the run counts them.

A top-up is queued as an urgent command and delivered by the GDSC's scheduler; the voucher
courier re-sends one whose deliveries all failed once the hub has answered a pull again
(:mod:`smarthub.gdsc.commands.vouchers`). Nothing in that path gives a voucher up. But the
scheduler delivers only while its windows run, and a run's accelerated clock does not wait for a
starved process: on an overloaded machine a delivery's POST took 8-12 simulated hours (20-30
wall seconds of a starved event loop at 1,440x), the urgent slots went through a backlog of
renewals, snapshots and top-ups in batches, and the top-ups behind it were still ``pending`` in
the plan, never claimed, when the last window closed (a 20-home day: 8 of 15, each with a job
never tried). The run counted them as lost, though the GDSC held them and its next windows would
have sent them.

:func:`settle_top_ups` runs those next windows, condensed (as :func:`smarthub.sim.demo.sweep`
does for the readings), until every top-up due to a live hub is credited or the windows stop
making progress: ``topups_lost`` then counts what the hubs never credited even so (a voucher
given up, or one no delivery can credit), and ``topups_late`` what came only in these windows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import func, select

from smarthub.gdsc.pull.scheduler import window_start_for
from smarthub.gdsc.pull.tables import DONE, urgent_work
from smarthub.sim.demo import DemoRun

log = logging.getLogger(__name__)

# Windows in a row that deliver nothing before the settling gives up, and the most it runs.
PATIENCE = 3
MOST_WINDOWS = 48


async def settle_top_ups(
    run: DemoRun,
    undelivered: Callable[[], dict[str, str]],
    *,
    patience: int = PATIENCE,
    most: int = MOST_WINDOWS,
) -> int:
    """Run the GDSC's next windows (upkeep and voucher courier included, as ever) while
    ``undelivered()`` (voucher id -> hub, of the top-ups due to a live hub and not credited
    there) is not empty; stop after ``patience`` windows in a row that credited none of them and
    delivered no command to their hubs (a top-up waits behind its hub's earlier commands: a
    window delivering those is progress), or after ``most`` windows. Returns the windows run."""
    if patience < 1 or most < 0:
        raise ValueError("settling needs patience >= 1 and most >= 0")
    left = undelivered()
    idle = windows = 0
    while left and idle < patience and windows < most:
        # The window the clock is in: a starved run's clock is far past the last one planned,
        # and planning every window in between would only add bulk pulls nobody counts.
        first = window_start_for(run.clock.now(), run.cfg.window)
        delivered = _delivered_to(run, set(left.values()))
        await run.gdsc.run_windows(until=first + run.cfg.window, first_window=first)
        windows += 1
        now_left = undelivered()
        moved = len(now_left) < len(left) or _delivered_to(run, set(left.values())) > delivered
        idle = 0 if moved else idle + 1
        left = now_left
    if left:
        log.error("top-ups still not credited after %d more windows: %s", windows, sorted(left.items()))
    return windows


def _delivered_to(run: DemoRun, hubs: set[str]) -> int:
    """Urgent jobs delivered to these hubs so far."""
    u = urgent_work
    with run.store.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(u).where(u.c.hub_id.in_(sorted(hubs)), u.c.state == DONE)
            ).scalar_one()
        )


__all__ = ["MOST_WINDOWS", "PATIENCE", "settle_top_ups"]
