"""Pull scheduling: a capacity plan per retrieval window, urgent work first, retries with backoff.

Retrieval schedules say when hubs are pulled: e.g. every hub's half-hourly data once a day
inside a night window (``RetrievalSchedule("night", period=1 day, offset=1 h, length=4 h)``)
plus frequent pulls (``RetrievalSchedule("every", period=30 min)``). For each window,
`plan_window` (pure: no clock, no I/O) places every hub at its own due time, evenly spaced so
the load on collectors and the WAN is flat instead of a thundering herd at the window start;
hubs behind one WAN link are spread across the whole window rather than bunched. The first
and last 5 % of a window are left free: at the start hubs are still closing the interval that
just ended, at the end a slow pull would spill into the next window.

The plan lives in the database (`smarthub.gdsc.pull.plan`), so any number of `Scheduler`s in any
number of collector processes share it. Every tick (``tick``, on the injected clock) a
scheduler

1. claims due urgent work (prepayment top-up, disconnect/reconnect, on-demand read) into its
   own pool of ``urgent_concurrency`` slots, which bulk pulls never occupy, so urgent work
   queued during a bulk window reaches its hub within one tick whatever the bulk backlog;
2. claims due bulk pulls into its ``max_concurrency`` slots, within each WAN link's limit of
   pulls in flight (across all collectors);
3. hands each pull to ``Collector.pull(hub, window_start)`` and each command to the courier,
   renewing its lease while they run, and records the pulls that ended at the next tick, in
   one transaction. A failed try is retried after an exponential backoff
   with jitter; after ``max_tries`` failures the hub opens an error record.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import socket
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import DBAPIError

from smarthub.clock import Clock
from smarthub.gdsc.fleet.registry import HubRecord
from smarthub.gdsc.pull.backoff import Backoff
from smarthub.gdsc.pull.claims import BulkClaim, UrgentClaim
from smarthub.gdsc.pull.collector import Collector, PullOutcome
from smarthub.gdsc.pull.courier import CommandCourier
from smarthub.gdsc.pull.finishing import Finished
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import DONE, FAILED
from smarthub.wan.client.hub_client import PullError
from smarthub.wan.tls import PeerMismatch

log = logging.getLogger(__name__)

MARGIN = 0.05
# A lease must outlast a pull plus a renewal, which take real (wall) time whatever the clock
# says: under an accelerated clock one wall second is `speed` simulated seconds.
MIN_LEASE_WALL_S = 2.0
MIN_TICK_WALL_S = 0.02
# Tries at recording an urgent job's outcome while the database is away (a restart): the hub's
# verdict is known only to this process until it is written (Scheduler._finish_urgent).
FINISH_TRIES = 5


def _wall_seconds(clock: Clock, seconds: float) -> timedelta:
    return timedelta(seconds=seconds * float(getattr(clock, "speed", 1.0)))


def _rank(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _unit(key: str) -> float:
    """A stable number in [0, 1) from a name (the phase of a WAN link inside the window)."""
    return int.from_bytes(_rank(key)[:8], "big") / 2**64


def plan_window(
    window_start: datetime, window: timedelta, hubs: Sequence[HubRecord]
) -> list[tuple[datetime, HubRecord]]:
    """(due time, hub) for every hub, in due order, inside [start + 5 %, start + 95 %).

    Due times are evenly spaced. The order is a stable hash order, except that the hubs behind
    one WAN link are spread evenly across the window (hub i of a link's n sits near (i + φ)/n,
    φ a per-link phase) so one cell is never asked for many hubs in a row.
    """
    by_link: dict[str, list[HubRecord]] = {}
    for h in hubs:
        by_link.setdefault(h.wan_link or "", []).append(h)
    keyed: list[tuple[float, bytes, HubRecord]] = []
    for link, members in by_link.items():
        members.sort(key=lambda h: _rank(h.hub_id))
        if not link:  # hubs with no shared link: plain hash order across the window
            keyed += [(i / len(members), _rank(h.hub_id), h) for i, h in enumerate(members)]
            continue
        phase = _unit(link)
        keyed += [(((i + phase) / len(members)) % 1.0, _rank(h.hub_id), h) for i, h in enumerate(members)]
    keyed.sort(key=lambda k: (k[0], k[1]))
    n = len(keyed)
    span = window * (1 - 2 * MARGIN)
    return [(window_start + window * MARGIN + span * (i / n), h) for i, (_, _, h) in enumerate(keyed)]


def window_start_for(t: datetime, window: timedelta) -> datetime:
    epoch = t.timestamp()
    w = window.total_seconds()
    return datetime.fromtimestamp(epoch - epoch % w, t.tzinfo)


@dataclass(frozen=True)
class RetrievalSchedule:
    """Windows of ``length`` starting every ``period`` at ``offset`` past each epoch-aligned period.

    ``hubs`` picks which hubs the schedule pulls (None: every hub the scheduler knows).
    ``planner``, given, plans each window instead (window start, window length → due times
    and hubs): the transfer policies' plan (:mod:`smarthub.gdsc.transfer.policies`), which
    puts in a window only the hubs their policy makes due in it.
    """

    name: str
    period: timedelta
    length: timedelta | None = None
    offset: timedelta = timedelta(0)
    hubs: Callable[[], Sequence[HubRecord]] | None = None
    planner: Callable[[datetime, timedelta], Sequence[tuple[datetime, HubRecord]]] | None = None

    def __post_init__(self) -> None:
        if self.period <= timedelta(0):
            raise ValueError(f"schedule {self.name!r}: period must be positive")
        if not timedelta(0) < self.window <= self.period:
            raise ValueError(f"schedule {self.name!r}: length must be positive and at most the period")
        if not timedelta(0) <= self.offset < self.period:
            raise ValueError(f"schedule {self.name!r}: offset must lie inside the period")
        if not 0 < len(self.name) <= 32:
            raise ValueError("a schedule name has 1 to 32 characters")

    @property
    def window(self) -> timedelta:
        return self.length or self.period

    def start_at_or_before(self, t: datetime) -> datetime:
        return window_start_for(t - self.offset, self.period) + self.offset

    def starts_between(self, first: datetime, last: datetime) -> list[datetime]:
        """Starts of the windows that are open at ``first`` or open after it, up to ``last``."""
        ws = self.start_at_or_before(first)
        if ws + self.window <= first:
            ws += self.period
        out = []
        while ws <= last:
            out.append(ws)
            ws += self.period
        return out


@dataclass
class WindowProgress:
    window_start: datetime
    planned: int
    done: int = 0
    failed: int = 0
    readings: int = 0
    inserted: int = 0
    schedule: str = "every"


def _default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"[:64]


@dataclass
class Scheduler:
    """One collector process's scheduler over the shared plan (see the module docstring).

    ``window`` defines the default schedule (every hub once per ``window``) when ``schedules``
    is empty; ``retry_after`` is the first backoff step. ``tick`` defaults to 1/60 of the
    window (at least 20 wall ms) and the lease to 1/15 of it (at least two wall seconds).
    """

    collector: Collector
    clock: Clock
    hubs: Callable[[], Sequence[HubRecord]]
    window: timedelta = timedelta(minutes=30)
    retry_after: timedelta = timedelta(seconds=20)
    max_concurrency: int = 64
    seed: int = 0
    on_progress: Callable[[WindowProgress], None] | None = None
    windows: list[WindowProgress] = field(default_factory=list)
    pull_errors: int = 0
    plan: PullPlan | None = None
    schedules: Sequence[RetrievalSchedule] = ()
    courier: CommandCourier | None = None
    name: str = field(default_factory=_default_name)
    tick: timedelta | None = None
    urgent_concurrency: int = 8
    max_tries: int = 5
    # Told (hub id, time, last error) when a hub stays unreachable after ``max_tries``, beside
    # the plan's own error record: where the central error log hooks in.
    on_unreachable: Callable[[str, datetime, str], object] | None = None
    # Told (hub ids, time) of the bulk pulls that succeeded, once they are recorded, in a worker
    # thread: where the transfer policies queue a hub's changed policy, riding on its pull.
    after_pulls: Callable[[Sequence[str], datetime], object] | None = None

    def __post_init__(self) -> None:
        if self.max_concurrency < 1 or self.urgent_concurrency < 1:
            raise ValueError("a scheduler needs at least one bulk and one urgent slot")
        if not self.schedules:
            self.schedules = (RetrievalSchedule("every", self.window),)
        if self.tick is None:
            # Under a fast simulated clock a tick of 1/60 window would be a few wall milliseconds:
            # claims would then eat the CPU the simulated hubs need.
            self.tick = max(self.window / 60, _wall_seconds(self.clock, MIN_TICK_WALL_S))
        if self.plan is None:
            self.plan = PullPlan(
                self.collector.store,
                max_tries=self.max_tries,
                backoff=Backoff(self.retry_after, 2.0, max(self.window, self.retry_after)),
                lease=max(self.window / 15, _wall_seconds(self.clock, MIN_LEASE_WALL_S)),
                seed=self.seed,
            )
            self.plan.create_schema()
        if self.tick * 2 > self.plan.lease:
            # A pull that ended is recorded at the next tick, under the lease it still holds.
            raise ValueError(
                f"the tick ({self.tick}) must be at most half the plan's lease ({self.plan.lease})"
            )
        if self.courier is None:
            self.courier = CommandCourier(self.collector.ssl_context, channels=self.collector.channels)
        self._bulk: set[asyncio.Task[None]] = set()
        self._urgent: set[asyncio.Task[None]] = set()
        self._planned: dict[tuple[str, datetime], WindowProgress] = {}
        self.delivered = 0  # urgent jobs this scheduler completed
        self._ended: list[tuple[BulkClaim, bool, str | None, PullOutcome | None]] = []

    def in_flight(self) -> tuple[int, int]:
        """Bulk pulls and urgent deliveries in flight now."""
        return len(self._bulk), len(self._urgent)

    @property
    def _plan(self) -> PullPlan:
        assert self.plan is not None
        return self.plan

    # -- the loop ---------------------------------------------------------------------------
    async def run(self, until: datetime, first_window: datetime | None = None) -> None:
        """Run from the window containing now (or ``first_window``) until the end of the last
        window of the first schedule that starts before ``until``."""
        main = self.schedules[0]
        start = first_window or main.start_at_or_before(self.clock.now())
        if until <= start:
            return
        try:
            stop = start + main.period * math.ceil((until - start) / main.period)
        except OverflowError:  # no end the calendar can hold (``datetime.max``: run until stopped)
            stop = until
        assert self.tick is not None
        try:
            while True:
                now = self.clock.now()
                try:
                    await self._record_ended()
                    await self._plan_open_windows(start, min(now, stop - self.tick / 2))
                    await self._dispatch(now)
                except DBAPIError as err:
                    # The database is away (restart, failover): the plan is safe in it, so
                    # keep the pulls in flight and try again next tick.
                    log.error("%s: plan not reachable this tick: %s", self.name, err)
                # The last tick runs at (or, on a busy loop, after) the end: pulls that fell due
                # since the tick before are dispatched, not left for a run that may never come.
                if now >= stop:
                    break
                await self.clock.sleep_until(min(now + self.tick, stop))
        finally:
            await self.drain()

    async def run_window(self, window_start: datetime) -> WindowProgress:
        await self.run(window_start + self.schedules[0].period, window_start)
        return self._planned[(self.schedules[0].name, window_start)]

    async def drain(self) -> None:
        """Wait for every pull and delivery this scheduler has in flight."""
        while self._bulk or self._urgent:
            await asyncio.gather(*self._bulk, *self._urgent, return_exceptions=True)
        await self._record_ended()

    async def close(self) -> None:
        await self.drain()
        if self.courier is not None:
            await self.courier.close()

    async def _plan_open_windows(self, first: datetime, now: datetime) -> None:
        for schedule in self.schedules:
            for ws in schedule.starts_between(first, now):
                if (schedule.name, ws) not in self._planned:
                    await self._plan_one(schedule, ws)

    async def _plan_one(self, schedule: RetrievalSchedule, ws: datetime) -> None:
        def work() -> int:
            states = self._plan.window_states(schedule.name, ws)
            if states:  # another collector (or an earlier run of this one) planned it already
                return sum(states.values())
            if schedule.planner is not None:
                planned = schedule.planner(ws, schedule.window)
            else:
                planned = plan_window(ws, schedule.window, (schedule.hubs or self.hubs)())
            return self._plan.ensure_window(schedule.name, ws, planned, ws + 2 * schedule.window)

        planned = await asyncio.to_thread(work)
        progress = WindowProgress(ws, planned, schedule=schedule.name)
        self._planned[(schedule.name, ws)] = progress
        self.windows.append(progress)

    async def _dispatch(self, now: datetime) -> None:
        free_urgent = self.urgent_concurrency - len(self._urgent)
        free_bulk = self.max_concurrency - len(self._bulk)

        def claim() -> tuple[list[UrgentClaim], list[BulkClaim]]:
            # Urgent first, always: it has its own slots, so no bulk backlog can hold it back.
            urgent = self._plan.claim_urgent(self.name, now, free_urgent)
            return urgent, self._plan.claim_bulk(self.name, now, free_bulk)

        urgent, bulk = await asyncio.to_thread(claim)
        for u in urgent:
            self._spawn(self._urgent, self._deliver(u))
        for b in bulk:
            self._spawn(self._bulk, self._pull(b))

    def _spawn(self, pool: set[asyncio.Task[None]], work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        pool.add(task)
        task.add_done_callback(pool.discard)
        task.add_done_callback(_log_crash)

    async def _keep_lease(self, renew: Callable[[datetime], bool]) -> None:
        """Renew a claim's lease every third of it while the work runs."""
        step = self._plan.lease / 3
        while True:
            await self.clock.sleep_until(self.clock.now() + step)
            try:
                held = await asyncio.to_thread(renew, self.clock.now())
            except DBAPIError as err:  # the database away a moment (a restart): renew next time
                log.warning("%s could not renew a lease: %s", self.name, err)
                continue
            if not held:
                log.warning("%s lost a lease it still held; another collector has the work", self.name)
                return

    # -- the work ---------------------------------------------------------------------------
    async def _pull(self, claim: BulkClaim) -> None:
        keeper = asyncio.create_task(self._keep_lease(lambda t: self._plan.renew_bulk(claim, t)))
        try:
            outcome = await self.collector.pull(claim.hub, claim.window_start)
            ok, error = outcome.ok, outcome.error
        except Exception as err:  # a bug or an unexpected failure in one pull must not stop the others
            log.exception("pull of %s raised", claim.hub.hub_id)
            ok, error, outcome = False, f"{type(err).__name__}: {err}", None
        finally:
            keeper.cancel()
        if not ok:
            self.pull_errors += 1
        # Recorded in the plan at the next tick, with every other pull that ended meanwhile, in
        # one transaction: a commit per pull would cap a collector at the database's commit rate.
        # Until then the row stays claimed under this collector's lease (ticks are shorter).
        self._ended.append((claim, ok, error, outcome))

    async def _record_ended(self) -> None:
        ended, self._ended = self._ended, []
        if not ended:
            return
        try:
            finished = await asyncio.to_thread(
                self._plan.finish_bulk_many, [(c, ok, err) for c, ok, err, _ in ended], self.clock.now()
            )
        except BaseException:
            self._ended = ended + self._ended  # try again next tick
            raise
        pulled = [
            c.hub.hub_id
            for (c, ok, _, _), fin in zip(ended, finished, strict=True)
            if ok and fin.state == DONE
        ]
        if pulled and self.after_pulls is not None:
            try:
                await asyncio.to_thread(self.after_pulls, pulled, self.clock.now())
            except Exception:  # the pulls are recorded; what rides on them is tried at the next pull
                log.exception("%s: after-pull work for %d hubs failed", self.name, len(pulled))
        for (claim, ok, error, outcome), fin in zip(ended, finished, strict=True):
            if fin.state == FAILED and self.on_unreachable is not None:
                await asyncio.to_thread(self.on_unreachable, claim.hub.hub_id, self.clock.now(), error or "")
            progress = self._planned.get((claim.schedule, claim.window_start))
            if progress is None or fin.state not in (DONE, FAILED):
                continue
            progress.done += 1
            progress.failed += 0 if ok else 1
            if outcome is not None:
                progress.readings += outcome.readings
                progress.inserted += outcome.inserted
            if self.on_progress is not None:
                self.on_progress(progress)

    async def _deliver(self, claim: UrgentClaim) -> None:
        keeper = asyncio.create_task(self._keep_lease(lambda t: self._plan.renew_urgent(claim, t)))
        result: dict[str, Any] | None = None
        try:
            if claim.kind == "command":
                assert self.courier is not None and claim.envelope is not None
                result = await self.courier.deliver(claim.hub, claim.envelope)
                ok, error = True, None
            else:
                outcome = await self.collector.pull(claim.hub, window_start_for(claim.queued, self.window))
                ok, error = outcome.ok, outcome.error
                result = {"readings": outcome.readings, "inserted": outcome.inserted}
        except PullError as err:
            ok, error = False, str(err)
            found = PeerMismatch.found_in(error)
            if found is not None:  # perhaps its renewed certificate (HubLifecycle.adopt_renewed)
                # Told as a pull's handshake tells it: a renewal whose answer was lost left the
                # hub's commands failing on its new certificate until the next pull (hours
                # apart in a long run) revealed it; its top-ups waited meanwhile.
                self.collector.presented[claim.hub.hub_id] = found
        except Exception as err:
            log.exception("urgent job %d for %s raised", claim.id, claim.hub.hub_id)
            ok, error = False, f"{type(err).__name__}: {err}"
        except BaseException:
            keeper.cancel()
            raise
        if not ok:
            self.pull_errors += 1
            log.info("urgent %s %d for %s failed: %s", claim.kind, claim.id, claim.hub.hub_id, error)
        try:
            finished = await self._finish_urgent(claim, ok, result, error)
        finally:
            keeper.cancel()
        if finished.state == DONE:
            self.delivered += 1

    async def _finish_urgent(
        self, claim: UrgentClaim, ok: bool, result: dict[str, Any] | None, error: str | None
    ) -> Finished:
        """Record the job's outcome; if the database is away (a restart killed the connection),
        try again a few times, the lease still renewed meanwhile. The hub's verdict exists only
        here: lost, the job would be delivered again at its lease's end and a command the hub
        has applied answered as a replay (a firmware roll-out halted on a "refused" instead of
        the hub's ``rolled_back``, in a chaos run on PostgreSQL)."""
        delay = self.retry_after
        for attempt in range(1, FINISH_TRIES + 1):
            try:
                return await asyncio.to_thread(
                    lambda: self._plan.finish_urgent(claim, ok, self.clock.now(), result=result, error=error)
                )
            except DBAPIError as err:
                if attempt == FINISH_TRIES:
                    raise
                log.warning(
                    "%s: urgent job %d for %s not recorded (%s); trying again",
                    self.name,
                    claim.id,
                    claim.hub.hub_id,
                    err,
                )
                await self.clock.sleep_until(self.clock.now() + min(delay, self._plan.lease / 3))
                delay *= 2
        raise AssertionError("unreachable")


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("scheduler task crashed", exc_info=task.exception())


__all__ = ["RetrievalSchedule", "Scheduler", "WindowProgress", "plan_window", "window_start_for"]
