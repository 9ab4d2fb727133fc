"""The appliance controller: runs scheduled into the cheapest window, plugs switched on time.

The consumer (at the IHD) or a management command (``appliance.run``) asks for a *run*: an
appliance, its energy profile (kWh per step), the earliest start and the deadline. The
controller places it with :func:`smarthub.hub.automation.cheapest` on the tariff in force and
switches the appliance's smart plug (ZigBee On/Off cluster, through a :class:`PlugLink`) on at
the planned start and off at its end, on the injected clock.

* **Tariff changes**: every run not yet started is placed again (``update_tariff``).
* **Demand response** (:mod:`smarthub.hub.drlc`): a run not yet started is placed outside the
  windows of the events its appliance's device category follows, when it can still finish by
  its deadline; when it cannot, the deadline wins (the consumer's limit), it keeps its tariff
  placement and the event is told it was followed only in part. During an event an
  *interruptible* appliance (EV charger, immersion heater: the consumer says which) is
  duty-cycled to the event's load factor, never below the consumer's ``min_duty_percent``; an
  appliance that must not be interrupted (a washing machine mid-cycle) is never switched off
  early. The consumer can keep any appliance out of demand response (``dr_enabled``).
* **Making up**: a duty-cycled run is not shortened: it runs on after its planned end for as
  long as the events held it off (the EV still gets the charge asked for, the tank its heat),
  and never past its deadline (the consumer's limit: with no slack, what the event removed is
  not made up). The end is found by walking the run's on-time through the duty cycles of every
  event it followed (:meth:`DrlcClient.followed`: an event that is over still counts), so it
  stays a pure function of the runs, the events and the time.
* **Persistence**: appliances, runs and every switching are in SQLite (WAL,
  ``synchronous=FULL``). After a restart a plug's state is unknown, so the controller sends
  every plug the state it should have; a run whose start passed while the hub was down is
  placed again from now (or marked missed when it no longer fits before its deadline).

The plug state wanted at an instant is a pure function of the runs, the events and the time
(``wanted``); the loop only finds the next instant anything changes and makes the plugs agree.
"""

from __future__ import annotations

import asyncio
import enum
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from smarthub.clock import Clock
from smarthub.hub import sqlite_files
from smarthub.hub.automation import ApplianceRun, NoFeasibleWindow, Plan, cheapest
from smarthub.hub.drlc import DrlcClient, HeldEvent
from smarthub.meters.errors import DecodeError
from smarthub.meters.zigbee_se import (
    CMD_OFF,
    CMD_ON,
    ON_OFF_CLUSTER,
    STATUS_SUCCESS,
    decode_default_response,
    encode_on_off,
)
from smarthub.model.tariff import TariffSchedule, schedule_from_json
from smarthub.wan.contract.bodies import ApplianceRun as RunRequest

# A duty-cycled appliance is on for the first ``factor`` of each period from the event's start.
DUTY_CYCLE_PERIOD = timedelta(minutes=30)
# A run whose start is this late (the loop was busy, the clock accelerated) still starts;
# later than this, the hub was down at its start and places it again.
START_GRACE = timedelta(minutes=5)


class PlugError(RuntimeError):
    """A plug did not confirm a switching command."""


class PlugLink(Protocol):
    """The HAN path to a plug: send one ZCL frame on a cluster, get the plug's answer frame."""

    async def request(self, eui64: str, cluster_id: int, payload: bytes) -> bytes: ...


class RunState(enum.StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"
    MISSED = "missed"  # could not be placed before its deadline (the hub was down at its start)


@dataclass(frozen=True)
class Appliance:
    name: str
    plug: str  # EUI-64 of its smart plug
    category: int  # 2030.5 DeviceCategoryType bits (e.g. 1 << 7 smart appliance, 1 << 16 EV)
    interruptible: bool = False
    dr_enabled: bool = True
    min_duty_percent: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.min_duty_percent <= 100:
            raise ValueError(f"{self.name}: min_duty_percent must be 0..100")
        if self.category <= 0:
            raise ValueError(f"{self.name}: give the appliance's 2030.5 device category bits")


@dataclass(frozen=True)
class ScheduledRun:
    id: int
    appliance: str
    run: ApplianceRun
    earliest: datetime
    deadline: datetime
    start: datetime | None
    cost_p: Decimal | None
    state: RunState

    @property
    def end(self) -> datetime | None:
        return None if self.start is None else self.start + self.run.duration


_SCHEMA = """
CREATE TABLE IF NOT EXISTS appliances (
    name TEXT PRIMARY KEY,
    plug TEXT NOT NULL UNIQUE,
    category INTEGER NOT NULL,
    interruptible INTEGER NOT NULL,
    dr_enabled INTEGER NOT NULL,
    min_duty_percent INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    appliance TEXT NOT NULL REFERENCES appliances(name),
    profile TEXT NOT NULL,          -- JSON list of kWh per step, as Decimal strings
    step INTEGER NOT NULL,          -- seconds
    earliest INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    start INTEGER,
    cost_p TEXT,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS switchings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    plug TEXT NOT NULL,
    on_ INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS controller_tariff (id INTEGER PRIMARY KEY CHECK (id = 1), schedule TEXT NOT NULL);
"""

# Migrations: 1 is the schema when versions began (its IF NOT EXISTS adopts an unversioned file).
SCHEMA = sqlite_files.Schema("appliance controller", [_SCHEMA])

_RUN_COLUMNS = "id, appliance, profile, step, earliest, deadline, start, cost_p, state"


class ApplianceController:
    def __init__(
        self,
        db_path: Path | str,
        clock: Clock,
        link: PlugLink,
        schedule: TariffSchedule | None = None,
        drlc: DrlcClient | None = None,
        start_grace: timedelta = START_GRACE,
    ) -> None:
        """``start_grace``: how late a run may still start (:data:`START_GRACE`; a hub on a clock
        accelerated thousands of times, whose event loop may answer a few hundred wall
        milliseconds late, needs that much simulated time)."""
        self.clock = clock
        self.link = link
        self.drlc = drlc
        self.start_grace = start_grace
        self._file = sqlite_files.open_database(db_path, SCHEMA)
        self._db, self._lock = self._file.connection, self._file.lock
        self._plug_state: dict[str, bool] = {}  # what each plug last confirmed (unknown after a restart)
        self._sequence = 0
        self._wake = asyncio.Event()
        self.listeners: list[Callable[[str, bool], object]] = []  # (appliance, on) after each switching
        if schedule is not None:
            self._store_tariff(schedule)
        row = self._db.execute("SELECT schedule FROM controller_tariff WHERE id = 1").fetchone()
        self._schedule: TariffSchedule | None = None if row is None else schedule_from_json(row[0])
        if drlc is not None:
            drlc.categories |= self._categories()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- the consumer's appliances -----------------------------------------------------------------

    def add_appliance(self, a: Appliance) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO appliances VALUES (?, ?, ?, ?, ?, ?)",
                (a.name, a.plug, a.category, int(a.interruptible), int(a.dr_enabled), a.min_duty_percent),
            )
        if self.drlc is not None:
            self.drlc.categories |= a.category
        self._wake.set()

    def appliances(self) -> dict[str, Appliance]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM appliances ORDER BY name").fetchall()
        return {r[0]: Appliance(r[0], r[1], r[2], bool(r[3]), bool(r[4]), r[5]) for r in rows}

    def _categories(self) -> int:
        out = 0
        for a in self.appliances().values():
            out |= a.category
        return out

    # -- runs ----------------------------------------------------------------------------------------

    def request(
        self, appliance: str, run: ApplianceRun, earliest: datetime, deadline: datetime
    ) -> ScheduledRun:
        """Place a run; raises :class:`NoFeasibleWindow` if it cannot finish by its deadline."""
        if appliance not in self.appliances():
            raise KeyError(f"no appliance {appliance!r} on this hub")
        now = self.clock.now()
        plan, limited = self._place(appliance, run, earliest, deadline, now)
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO runs(appliance, profile, step, earliest, deadline, start, cost_p, state)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    appliance,
                    json.dumps([str(e) for e in run.energy_kwh]),
                    int(run.step.total_seconds()),
                    _s(earliest),
                    _s(deadline),
                    _s(plan.start),
                    str(plan.cost_p),
                    RunState.SCHEDULED.value,
                ),
            )
            run_id = int(cur.lastrowid or 0)
        self._note_limits(limited, now)
        self._wake.set()
        return self.run(run_id)

    def cancel(self, run_id: int) -> ScheduledRun:
        r = self.run(run_id)
        if r.state not in (RunState.SCHEDULED, RunState.RUNNING):
            raise ValueError(f"run {run_id} is {r.state}; it cannot be cancelled")
        self._set_state(run_id, RunState.CANCELLED)
        self._wake.set()
        return self.run(run_id)

    def runs(self, states: tuple[RunState, ...] | None = None) -> list[ScheduledRun]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY id").fetchall()
        out = [_run_row(r) for r in rows]
        return out if states is None else [r for r in out if r.state in states]

    def run(self, run_id: int) -> ScheduledRun:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?",
                (run_id,),
            ).fetchone()
        if row is None:
            raise KeyError(f"no run {run_id}")
        return _run_row(row)

    def switchings(self) -> list[tuple[datetime, str, bool]]:
        with self._lock:
            rows = self._db.execute("SELECT at, plug, on_ FROM switchings ORDER BY id").fetchall()
        return [(_t(a), p, bool(o)) for a, p, o in rows]

    # -- placement ---------------------------------------------------------------------------------

    @property
    def schedule(self) -> TariffSchedule:
        if self._schedule is None:
            raise NoFeasibleWindow("no tariff is known yet: runs cannot be placed")
        return self._schedule

    def update_tariff(self, schedule: TariffSchedule) -> None:
        """A new tariff (version or prices): every run not yet started is placed again."""
        self._store_tariff(schedule)
        self._schedule = schedule
        self.replan()

    def _store_tariff(self, schedule: TariffSchedule) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO controller_tariff(id, schedule) VALUES (1, ?)", (schedule.to_json(),)
            )

    def replan(self) -> None:
        """Place every run not yet started again (tariff or demand-response events changed)."""
        now = self.clock.now()
        for r in self.runs((RunState.SCHEDULED,)):
            self._replan(r, now, now)
        self._wake.set()

    def _replan(self, r: ScheduledRun, earliest: datetime, now: datetime) -> None:
        try:
            plan, limited = self._place(r.appliance, r.run, max(r.earliest, earliest), r.deadline, now)
        except NoFeasibleWindow:
            self._set_state(r.id, RunState.MISSED)
            return
        with self._lock:
            self._db.execute(
                "UPDATE runs SET start = ?, cost_p = ? WHERE id = ?", (_s(plan.start), str(plan.cost_p), r.id)
            )
        self._note_limits(limited, now)

    def _events_for(self, appliance: Appliance) -> list[HeldEvent]:
        if self.drlc is None or not appliance.dr_enabled:
            return []
        return self.drlc.controls_for(appliance.category)

    def _place(
        self, appliance: str, run: ApplianceRun, earliest: datetime, deadline: datetime, now: datetime
    ) -> tuple[Plan, list[str]]:
        """The cheapest plan outside the appliance's demand-response windows, if one meets the
        deadline; else the cheapest plan at all, and the events it cannot follow."""
        earliest = max(earliest, now)
        free = cheapest(run, self.schedule, earliest, deadline)  # raises NoFeasibleWindow
        events = [e for e in self._events_for(self.appliances()[appliance]) if e.effective_end > earliest]
        if not events:
            return free, []
        a = self.appliances()[appliance]
        plans = []
        for lo, hi in _gaps(earliest, deadline, [(e.effective_start, e.effective_end) for e in events]):
            try:
                plans.append(cheapest(run, self.schedule, lo, hi))
            except NoFeasibleWindow:
                continue
        if plans:
            return min(plans, key=lambda p: (p.cost_p, p.start)), []
        end = free.start + run.duration
        overlapped = [e for e in events if e.effective_start < end and free.start < e.effective_end]
        if a.interruptible:
            # Duty-cycling through an event is following it; only the consumer's floor stops that.
            floor = a.min_duty_percent / 100
            overlapped = [e for e in overlapped if (e.control.load_factor() or 0.0) < floor]
        return free, [e.mrid for e in overlapped]

    def _note_limits(self, mrids: list[str], now: datetime) -> None:
        if self.drlc is not None:
            for m in mrids:
                self.drlc.note_limited(m, now)

    def _set_state(self, run_id: int, state: RunState) -> None:
        with self._lock:
            self._db.execute("UPDATE runs SET state = ? WHERE id = ?", (state.value, run_id))

    # -- time ----------------------------------------------------------------------------------------

    def _duty_windows(self, appliance: Appliance) -> list[_DutyWindow]:
        """The duty cycles an interruptible appliance follows: (from, to, on-fraction) of each
        event with a load factor it followed or will follow (none for any other appliance)."""
        if not appliance.interruptible or self.drlc is None or not appliance.dr_enabled:
            return []
        floor = appliance.min_duty_percent / 100
        return [
            (lo, hi, max(factor, floor))
            for lo, hi, ev in self.drlc.followed(appliance.category)
            if (factor := ev.control.load_factor()) is not None
        ]

    def run_end(self, r: ScheduledRun, appliance: Appliance) -> datetime:
        """When run ``r`` ends: once it has been on for its duration through the duty cycles it
        follows (module docstring, *Making up*), and at the latest at its deadline."""
        assert r.start is not None
        planned = r.start + r.run.duration
        windows = self._duty_windows(appliance)
        if not windows:
            return planned
        limit = max(r.deadline, planned)
        need, t = r.run.duration, r.start
        while t < limit:
            on, nxt = _duty(windows, t)
            nxt = limit if nxt is None else min(nxt, limit)
            if on:
                if t + need <= nxt:
                    return t + need
                need -= nxt - t
            t = nxt
        return limit

    def wanted(self, appliance: Appliance, t: datetime) -> bool:
        """Whether the appliance's plug should be on at ``t``."""
        for r in self.runs((RunState.SCHEDULED, RunState.RUNNING)):
            if r.appliance != appliance.name or r.start is None:
                continue
            if not r.start <= t < self.run_end(r, appliance):
                continue
            return _duty(self._duty_windows(appliance), t)[0]
        return False

    def next_change(self, now: datetime) -> datetime | None:
        """The next instant after ``now`` at which a run, an event or a duty cycle changes."""
        times: list[datetime] = []
        appliances = self.appliances()
        for r in self.runs((RunState.SCHEDULED, RunState.RUNNING)):
            if r.start is not None:
                times += [r.start, self.run_end(r, appliances[r.appliance])]
        if self.drlc is not None:
            nxt = self.drlc.next_change(now)
            if nxt is not None:
                times.append(nxt)
            for a in appliances.values():
                change = _duty(self._duty_windows(a), now)[1]
                if change is not None:
                    times.append(change)
        return min((t for t in times if t > now), default=None)

    async def step(self) -> None:
        """Bring runs, events and plugs up to the clock's now."""
        now = self.clock.now()
        if self.drlc is not None:
            self.drlc.tick(now)
        appliances = self.appliances()
        for r in self.runs((RunState.SCHEDULED, RunState.RUNNING)):
            assert r.start is not None
            end = self.run_end(r, appliances[r.appliance])
            if r.state is RunState.SCHEDULED and now >= r.start:
                if now - r.start > self.start_grace:  # the hub was down at its start
                    self._replan(r, now, now)
                    r = self.run(r.id)
                    if r.state is not RunState.SCHEDULED or r.start is None or now < r.start:
                        continue
                    end = self.run_end(r, appliances[r.appliance])
                self._set_state(r.id, RunState.RUNNING)
            if now >= end:
                self._set_state(r.id, RunState.DONE)
        for a in self.appliances().values():
            want = self.wanted(a, now)
            if self._plug_state.get(a.plug) is not want:
                await self.switch(a, want, now)

    async def switch(self, appliance: Appliance, on: bool, now: datetime) -> None:
        """Send On or Off to the appliance's plug; it must answer with a SUCCESS Default Response."""
        self._sequence = (self._sequence + 1) & 0xFF
        frame = encode_on_off("on" if on else "off", self._sequence)
        reply = await self.link.request(appliance.plug, ON_OFF_CLUSTER, frame)
        try:
            answer = decode_default_response(reply, ON_OFF_CLUSTER)
        except DecodeError as err:
            raise PlugError(f"plug {appliance.plug} ({appliance.name}) answered garbage: {err}") from err
        if answer.command_id != (CMD_ON if on else CMD_OFF) or answer.status != STATUS_SUCCESS:
            raise PlugError(
                f"plug {appliance.plug} ({appliance.name}) refused {'on' if on else 'off'}: "
                f"status 0x{answer.status:02X} for command 0x{answer.command_id:02X}"
            )
        self._plug_state[appliance.plug] = on
        with self._lock:
            self._db.execute(
                "INSERT INTO switchings(at, plug, on_) VALUES (?, ?, ?)", (_s(now), appliance.plug, int(on))
            )
        for listener in self.listeners:
            listener(appliance.name, on)

    def plug_states(self) -> dict[str, bool | None]:
        """Each appliance's plug as last confirmed (None: not since the hub started)."""
        return {name: self._plug_state.get(a.plug) for name, a in self.appliances().items()}

    def notify(self) -> None:
        """Something outside changed (a demand-response event arrived): re-place and look again."""
        self.replan()

    async def run_forever(self, until: datetime | None = None) -> None:
        """Step at every change instant (or when woken by a request) until ``until``."""
        while True:
            self._wake.clear()
            await self.step()
            now = self.clock.now()
            if until is not None and now >= until:
                return
            nxt = self.next_change(now)
            target = until if nxt is None else (nxt if until is None else min(nxt, until))
            sleeper = asyncio.ensure_future(
                self.clock.sleep_until(target) if target is not None else asyncio.Event().wait()
            )
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()


_DutyWindow = tuple[datetime, datetime, float]  # (from, to, the on-fraction of each period)


def _duty(windows: list[_DutyWindow], t: datetime) -> tuple[bool, datetime | None]:
    """Whether the duty cycles let the appliance be on at ``t`` (on for the first fraction of
    each :data:`DUTY_CYCLE_PERIOD` from a window's start; off if any window in effect says so),
    and the next instant that may change (None: none after ``t``)."""
    on, nxt = True, None
    for lo, hi, factor in windows:
        if lo <= t < hi:
            phase = (t - lo) % DUTY_CYCLE_PERIOD
            cycle = t - phase
            if phase < DUTY_CYCLE_PERIOD * factor:
                change = min(cycle + DUTY_CYCLE_PERIOD * factor, hi)
            else:
                on, change = False, min(cycle + DUTY_CYCLE_PERIOD, hi)
        elif lo > t:
            change = lo
        else:
            continue
        nxt = change if nxt is None else min(nxt, change)
    return on, nxt


def _gaps(
    lo: datetime, hi: datetime, busy: list[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    """The parts of [lo, hi] outside every busy interval."""
    out, t = [], lo
    for s, e in sorted(busy):
        if s > t:
            out.append((t, min(s, hi)))
        t = max(t, e)
        if t >= hi:
            break
    if t < hi:
        out.append((t, hi))
    return [(a, b) for a, b in out if a < b]


def _run_row(r: tuple[Any, ...]) -> ScheduledRun:
    run = ApplianceRun(r[1], tuple(Decimal(e) for e in json.loads(r[2])), timedelta(seconds=r[3]))
    return ScheduledRun(
        r[0],
        r[1],
        run,
        _t(r[4]),
        _t(r[5]),
        None if r[6] is None else _t(r[6]),
        None if r[7] is None else Decimal(r[7]),
        RunState(r[8]),
    )


def _s(t: datetime) -> int:
    if t.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return int(t.timestamp())


def _t(s: int) -> datetime:
    return datetime.fromtimestamp(s, UTC)


def appliance_commands(controller: ApplianceController) -> dict[str, Any]:
    """Management handler ``appliance.run``: {"appliance", "kwh": [per step], "step_minutes",
    "earliest", "deadline" (ISO 8601 with offset)} -> the placed run."""

    def request(body: RunRequest) -> dict[str, Any]:
        appliance, step = body.appliance, timedelta(minutes=body.step_minutes)
        r = controller.request(
            appliance, ApplianceRun(appliance, body.kwh, step), body.earliest, body.deadline
        )
        return {"run": r.id, "start": r.start.isoformat() if r.start else None, "cost_p": str(r.cost_p)}

    return {"appliance.run": request}
