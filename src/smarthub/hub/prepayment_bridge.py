"""Prepayment wiring: charge the ledger as intervals close, settle each day to its bill, and
switch the meter's breaker or valve as the ledger decides.

* **Per interval**: the interval's unrounded cost inc. VAT (the shared tariff calculation, via
  :class:`~smarthub.hub.consumption.HomeConsumption`) is charged under the key
  ``day/<fuel>/<local day>/energy/<start epoch>``: a re-delivered or replayed interval is not
  charged twice. A tiered tariff's intervals cost nothing here; their blocks are priced when
  the day is settled.
* **Per day**: once an interval of a later local day has closed (so the day is complete), the
  day's bill (`CostAccumulator.bill`: energy lines and the standing charge, each rounded, plus
  VAT) minus what the day's keys already took is charged (or given back) as
  ``day/<fuel>/<day>/settlement``, so the ledger's day total equals the day's bill exactly. The
  day's fixed debt recovery is taken at the same time. An interval arriving after its day was
  settled is charged but not re-settled (a known limit: corrections are the GDSC's to make).
* **Supply**: after each charge, top-up or consumer action the ledger's
  :meth:`~smarthub.hub.prepayment.PrepaymentLedger.supply_action` is applied through the
  meter's breaker/valve. The ledger already refuses to disconnect inside a friendly-credit
  period; the bridge checks the calendar again right before switching, since the command
  reaches the meter some time after the decision. Gas reconnects only after the consumer's
  confirmation at the IHD (the ledger answers AWAIT_CONFIRMATION until then).
* **The supplier's own commands** (:func:`supply_commands`, ``supply.disconnect`` /
  ``supply.reconnect`` / ``supply.state`` from the GDSC) go through the same ledger for a prepaid
  fuel. A remote disconnect switches off and **holds** the supply: no top-up or IHD confirmation
  reopens it until the supplier's remote reconnect (holds are kept in SQLite: give
  :class:`SupplyHolds` a file so a restart does not release them; the default is in memory).
  A remote reconnect of **gas** never opens the valve by itself: it releases
  the hold and *arms* the valve (the ledger's confirmation is reset, so one given earlier does not
  count); the valve opens when the consumer then confirms at the IHD that appliances are off
  (GB practice: the supplier arms, the consumer restores, at the meter or the IHD/PPMID; a DLMS
  valve in control_mode 1 would open on the remote reconnect, so the interlock lives here).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from smarthub.clock import Clock
from smarthub.hub import sqlite_files
from smarthub.hub.consumption import HomeConsumption, Supply
from smarthub.hub.prepayment import PrepaymentLedger, SupplyAction
from smarthub.model.tariff import TariffError
from smarthub.model.tariff_calc import IntervalConsumption, local_day
from smarthub.wan.contract.bodies import SupplyDisconnect, SupplyReconnect, SupplyState

log = logging.getLogger(__name__)


class Breaker(Protocol):
    """A meter's load switch as the hub reaches it (e.g. `smarthub.sim.rigs.SupplyControl`)."""

    def disconnect(self) -> Awaitable[dict[str, Any]]: ...

    def reconnect(self) -> Awaitable[dict[str, Any]]: ...


HOLDS_SCHEMA = sqlite_files.Schema(
    "supply holds",
    ["CREATE TABLE IF NOT EXISTS supply_holds (fuel TEXT PRIMARY KEY, since INTEGER NOT NULL);"],  # 1
)


class SupplyHolds:
    """Fuels the supplier switched off remotely: kept off until the supplier's reconnect."""

    def __init__(self, path: Path | str = ":memory:") -> None:
        self._file = sqlite_files.open_database(path, HOLDS_SCHEMA)
        self._db, self._lock = self._file.connection, self._file.lock

    def hold(self, fuel: str, at: datetime) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO supply_holds VALUES (?, ?)", (fuel, int(at.timestamp())))

    def release(self, fuel: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM supply_holds WHERE fuel = ?", (fuel,)).rowcount == 1

    def held(self, fuel: str) -> bool:
        with self._lock:
            return (
                self._db.execute("SELECT 1 FROM supply_holds WHERE fuel = ?", (fuel,)).fetchone() is not None
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()


def day_prefix(fuel: str, day: date) -> str:
    return f"day/{fuel}/{day.isoformat()}/"


class PrepaymentBridge:
    def __init__(
        self,
        ledger: PrepaymentLedger,
        consumption: HomeConsumption,
        clock: Clock,
        breakers: Mapping[str, Breaker] | None = None,
        *,
        since: datetime | None = None,
        fuels: Iterable[str] | None = None,
        holds: SupplyHolds | None = None,
    ) -> None:
        """``since``: when this home went onto prepayment; earlier intervals (replayed from the
        history after a restart) are not charged. ``fuels``: the fuels paid in advance (default:
        every supply; a home may prepay electricity and be billed for gas)."""
        self.ledger = ledger
        self.consumption = consumption
        self.clock = clock
        self.breakers = dict(breakers or {})
        self.holds = holds or SupplyHolds()
        self.since = since
        self.fuels = set(consumption.supplies if fuels is None else fuels)
        if unknown := self.fuels - set(consumption.supplies):
            raise ValueError(f"prepaid fuels {sorted(unknown)} have no supply meter")
        self._open_days: dict[str, set[date]] = {f: set() for f in self.fuels}
        self._pending: set[asyncio.Task[Any]] = set()
        self.errors: list[str] = []
        consumption.observers.append(self.on_interval)

    # -- charging ---------------------------------------------------------------------------
    def on_interval(self, supply: Supply, c: IntervalConsumption, cost: Decimal) -> None:
        if supply.fuel not in self.fuels or (self.since is not None and c.start < self.since):
            return
        now = self.clock.now()
        day = c.day
        self.ledger.charge(
            supply.fuel, f"{day_prefix(supply.fuel, day)}energy/{int(c.start.timestamp())}", cost, now
        )
        self._open_days[supply.fuel].add(day)
        for d in sorted(x for x in self._open_days[supply.fuel] if x < day):
            if self.settle_day(supply, d, now):
                self._open_days[supply.fuel].discard(d)
        self.schedule_supply_check(supply.fuel)

    def charge_after_backup(self, as_of: datetime) -> int:
        """A recovery (``smarthub.hub.recovery``) restored a backup of the account taken at
        ``as_of``: charge the restored half-hours that had not closed by then, up to when this
        hub took over (``since``); the old hub charged them after its backup, and that was lost
        with it. Keyed as ``on_interval`` keys them, so nothing is charged twice. How many were
        charged now."""
        now, n = self.clock.now(), 0
        for fuel in sorted(self.fuels):
            supply = self.consumption.supplies[fuel]
            for c in supply.accumulator.intervals():
                if c.start + c.duration <= as_of or (self.since is not None and c.start >= self.since):
                    continue
                cost = self.consumption.cost(supply, c)
                key = f"{day_prefix(fuel, c.day)}energy/{int(c.start.timestamp())}"
                if cost is not None and self.ledger.charge(fuel, key, cost, now):
                    n += 1
            if n:
                self.schedule_supply_check(fuel)
        return n

    def settle_day(self, supply: Supply, day: date, now: datetime) -> bool:
        """Charge ``day``'s rounding settlement once; False if its bill cannot be worked out yet."""
        try:
            bill = supply.accumulator.bill(day, day + timedelta(days=1))
        except TariffError as err:  # a price not yet published, or no tariff in force that day
            self.errors.append(f"{supply.fuel} {day}: {err}")
            return False
        prefix = day_prefix(supply.fuel, day)
        key = f"{prefix}settlement"
        charged = self.ledger.charged(supply.fuel, prefix)
        self.ledger.adjust(supply.fuel, key, bill.total - charged, now)
        self.ledger.recover_debt(supply.fuel, day, now)
        return True

    # -- supply -----------------------------------------------------------------------------
    def schedule_supply_check(self, fuel: str) -> None:
        """Apply the ledger's supply decision soon (from synchronous code on the event loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a replay at start-up): the next check applies it
        task = loop.create_task(self.apply_supply(fuel))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def apply_supply(self, fuel: str) -> SupplyAction:
        """Do what the ledger says to ``fuel``'s breaker/valve now; returns what was done."""
        now = self.clock.now()
        action = self.ledger.supply_action(fuel, now)
        breaker = self.breakers.get(fuel)
        if action in (SupplyAction.NONE, SupplyAction.AWAIT_CONFIRMATION):
            return action
        if action is SupplyAction.RECONNECT and self.holds.held(fuel):
            return SupplyAction.NONE  # the supplier switched it off: only its reconnect releases it
        if breaker is None:
            self.errors.append(
                f"{fuel}: the ledger says {action.value} but the hub controls no breaker/valve"
            )
            return SupplyAction.NONE
        if action is SupplyAction.DISCONNECT:
            if self.ledger.config[fuel].friendly.is_friendly(self.clock.now()):
                return SupplyAction.NONE  # the period began while deciding: never cut off inside one
            return await self._switch(fuel, "off", breaker.disconnect, "credit exhausted")
        return await self._switch(fuel, "on", breaker.reconnect, "credit restored")

    async def _switch(
        self, fuel: str, state: str, op: Callable[[], Awaitable[dict[str, Any]]], reason: str
    ) -> SupplyAction:
        try:
            result = await op()
        except Exception as err:  # the meter did not answer: keep the ledger's state, retry later
            self.errors.append(f"{fuel} supply {state}: {type(err).__name__}: {err}")
            log.warning("prepayment: switching %s %s failed: %s", fuel, state, err)
            return SupplyAction.NONE
        if "connected" in result and bool(result["connected"]) != (state == "on"):
            self.errors.append(f"{fuel} supply {state}: meter reports connected={result['connected']}")
            return SupplyAction.NONE
        self.ledger.supply_changed(fuel, state, self.clock.now(), reason)
        return SupplyAction.DISCONNECT if state == "off" else SupplyAction.RECONNECT

    async def check_all(self) -> dict[str, SupplyAction]:
        """Every fuel's supply decision applied (after a top-up, at start-up, periodically)."""
        return {fuel: await self.apply_supply(fuel) for fuel in sorted(self.fuels)}

    async def settled(self) -> None:
        """Wait for the supply switches already scheduled (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    def today(self) -> date:
        return local_day(self.clock.now())

    # -- the supplier's commands ------------------------------------------------------------
    async def remote_disconnect(
        self, fuel: str, reason: str = "the supplier's remote disconnect"
    ) -> dict[str, Any]:
        """Switch ``fuel`` off now and hold it off until :meth:`remote_reconnect`."""
        breaker = self._breaker(fuel)
        self.holds.hold(fuel, self.clock.now())
        result = await breaker.disconnect()
        if not result.get("connected", False):
            self.ledger.supply_changed(fuel, "off", self.clock.now(), reason)
        return {**result, "held": True}

    async def remote_reconnect(self, fuel: str) -> dict[str, Any]:
        """Release the supplier's hold. Electricity switches on (if the ledger allows); gas is
        armed and opens only after the consumer's confirmation at the IHD."""
        self._breaker(fuel)
        self.holds.release(fuel)
        now = self.clock.now()
        if self.ledger.balance(fuel).supply == "off":
            if fuel == "gas":  # a confirmation given before the arm does not count
                self.ledger.supply_changed(fuel, "off", now, "armed by the supplier: awaiting the consumer")
            action = await self.apply_supply(fuel)
            return {
                "connected": action is SupplyAction.RECONNECT,
                "armed": fuel == "gas",
                "supply_action": self.ledger.supply_action(fuel, now).value,
            }
        return {**await self.breakers[fuel].reconnect(), "armed": False}

    def _breaker(self, fuel: str) -> Breaker:
        if fuel not in self.fuels:
            raise ValueError(f"{fuel} is not paid in advance here: the prepayment bridge does not switch it")
        breaker = self.breakers.get(fuel)
        if breaker is None:
            raise ValueError(f"the hub controls no {fuel} breaker/valve")
        return breaker


class StatefulBreaker(Breaker, Protocol):
    def state(self) -> Awaitable[dict[str, Any]]: ...


def supply_commands(
    bridge: PrepaymentBridge, meters: Mapping[str, tuple[str, StatefulBreaker]]
) -> dict[str, Any]:
    """``supply.disconnect`` / ``supply.reconnect`` / ``supply.state`` for prepaid meters (meter id ->
    (fuel, its breaker/valve)), through the bridge's hold and gas interlock (module docstring)."""

    def pick(body: SupplyDisconnect | SupplyReconnect | SupplyState) -> tuple[str, StatefulBreaker]:
        meter = body.meter
        if meter not in meters:
            raise ValueError(f"{meter!r} has no breaker or valve this hub controls")
        return meters[meter]

    async def disconnect(body: SupplyDisconnect) -> dict[str, Any]:
        return await bridge.remote_disconnect(pick(body)[0])

    async def reconnect(body: SupplyReconnect) -> dict[str, Any]:
        return await bridge.remote_reconnect(pick(body)[0])

    async def state(body: SupplyState) -> dict[str, Any]:
        fuel, breaker = pick(body)
        return {**await breaker.state(), "held": bridge.holds.held(fuel)}

    return {"supply.disconnect": disconnect, "supply.reconnect": reconnect, "supply.state": state}
