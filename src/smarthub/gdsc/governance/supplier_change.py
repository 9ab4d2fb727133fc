"""Change of supplier end to end: supply periods, the supplier's keys on the hub, the opening read.

:meth:`SupplierChanges.change`, in one transaction, ends the old supplier's supply period and
starts the new one's at the effective instant (:mod:`smarthub.gdsc.governance.changes`, so the GDSC's
access policy refuses the old supplier and admits the new one from that instant) and records
the change in ``opening_reads``. Then it signs a ``supplier.keys`` command (fuel, the new
supplier's party id and certificate LFDI, the effective instant) and queues it in the shared
plan at urgent priority: the hub receives it at the collector's next tick, persists it, and
switches its privacy filter atomically at the effective instant on its own (see
:mod:`smarthub.hub.privacy`), so the switch does not depend on a message arriving on the day.

The opening read is the value of each of the meter's energy registers (import and export, or
the gas volume) at the effective instant. The hub's interval builder fixes every register's
value at each half-hour boundary (:mod:`smarthub.hub.intervals`), so the hub knows it exactly
once the half-hour ending at the effective instant is complete. The GDSC asks for it by sending
the same ``supplier.keys`` command again once the instant has passed (:meth:`SupplierChanges.tick`,
run on the GDSC's scheduling ticks): installing it is idempotent, and its result then carries
the read. It is stored once, in ``opening_reads``, and served identically to the old supplier
(its closing read) and the new one (its opening read) — the access policy decides, through
the guard, whether the asker supplied that fuel there on either side of the instant. The
command is signed when it falls due, not in advance, because commands for a hub are delivered
in counter order and a command waiting for a date would hold back every later one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    and_,
    select,
    update,
)

from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.db.database import metadata
from smarthub.gdsc.governance.access import Action, TimeRange, deny
from smarthub.gdsc.governance.changes import LifecycleError, SupplierChange, change_supplier_in
from smarthub.gdsc.governance.consent_sync import active_hubs
from smarthub.gdsc.governance.guard import AccessDenied, AccessGuard
from smarthub.gdsc.governance.parties import Fuel, Granularity, PartyRepository
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import DONE, FAILED, Priority
from smarthub.wan.contract.bodies import SupplierKeys

_T = DateTime(timezone=True)
SETTLEMENT_PERIOD = timedelta(minutes=30)

opening_reads = Table(
    "opening_reads",
    metadata,
    Column("premises_id", String(64), ForeignKey("premises.premises_id"), primary_key=True),
    Column("fuel", String(16), primary_key=True),
    Column("effective", _T, primary_key=True),
    Column("hub_id", String(64)),  # the premises' hub at the change (None: no hub yet)
    Column("old_supplier_id", String(64)),
    Column("new_supplier_id", String(64), nullable=False),
    Column("new_supplier_lfdi", String(40), nullable=False),
    Column("keys_job", BigInteger().with_variant(Integer, "sqlite")),  # supplier.keys at the change
    Column("read_job", BigInteger().with_variant(Integer, "sqlite")),  # supplier.keys after the instant
    Column("read_due", _T, nullable=False),  # when to ask the hub for the read (again)
    Column("read_tries", SmallInteger, nullable=False),
    Column("registers", Text),  # JSON list of {meter, obis, value, power_of_ten, quality}
    Column("missing", Text),  # JSON list of "meter obis" the hub could not give
    Column("taken", _T),
)


@dataclass(frozen=True, slots=True)
class RegisterRead:
    meter: str
    obis: str
    value: int  # in units of 10**power_of_ten of the channel's unit (Wh, m3)
    power_of_ten: int
    quality: int


@dataclass(frozen=True, slots=True)
class OpeningRead:
    premises_id: str
    fuel: Fuel
    effective: datetime
    old_supplier_id: str | None
    new_supplier_id: str
    registers: tuple[RegisterRead, ...]
    missing: tuple[str, ...]  # channels the hub had no boundary value for when the read was closed
    taken: datetime


class OpeningReadPending(LookupError):
    """The change is recorded but its opening read has not come back from the hub yet."""


@dataclass
class SupplierChanges:
    parties: PartyRepository
    plan: PullPlan
    signer: CommandSigner
    retry: timedelta = timedelta(minutes=30)  # until the hub holds the boundary of every channel
    max_read_tries: int = 6

    # -- the change -------------------------------------------------------------------------
    def change(
        self,
        premises_id: str,
        fuel: Fuel,
        new_supplier_id: str,
        new_supplier_lfdi: str,
        effective: datetime,
        now: datetime,
    ) -> SupplierChange:
        """Register a change of supplier and queue the new supplier's keys for the hub."""
        if effective.tzinfo is None:
            raise LifecycleError("effective date must be timezone-aware")
        if int(effective.timestamp()) % 1800 or effective.microsecond:
            raise LifecycleError(
                f"effective date {effective.isoformat()} is not on a settlement-period (half-hour) boundary"
            )
        lfdi = new_supplier_lfdi.upper()
        if len(lfdi) != 40 or any(c not in "0123456789ABCDEF" for c in lfdi):
            raise LifecycleError(f"{new_supplier_lfdi!r} is not an LFDI (40 hex digits)")
        with self.parties.engine.begin() as conn:
            change = change_supplier_in(self.parties, conn, premises_id, fuel, new_supplier_id, effective)
            hub_ids = active_hubs(self.parties.engine, premises_id, conn)
            conn.execute(
                opening_reads.insert().values(
                    premises_id=premises_id,
                    fuel=change.fuel.value,
                    effective=effective.astimezone(UTC),
                    hub_id=hub_ids[0] if hub_ids else None,
                    old_supplier_id=change.old_supplier_id,
                    new_supplier_id=new_supplier_id,
                    new_supplier_lfdi=lfdi,
                    read_due=effective.astimezone(UTC),
                    read_tries=0,
                )
            )
        self._send(change.premises_id, change.fuel, effective, "keys_job", now)
        return change

    def tick(self, now: datetime) -> int:
        """Advance every open change: keys not yet queued (a crash after the change committed),
        reads due, reads that came back. The number of commands queued or reads stored."""
        done = 0
        o = opening_reads
        with self.plan.store.engine.connect() as conn:
            rows = conn.execute(select(o).where(o.c.taken.is_(None), o.c.hub_id.is_not(None))).all()
        for r in rows:
            eff = _aware(r.effective)
            if r.keys_job is None:
                self._send(r.premises_id, Fuel(r.fuel), eff, "keys_job", now)
                done += 1
            if r.read_job is not None:
                done += self._collect(r, now)
            elif _aware(r.read_due) <= now:
                self._send(r.premises_id, Fuel(r.fuel), eff, "read_job", now)
                done += 1
        return done

    def _send(self, premises_id: str, fuel: Fuel, effective: datetime, column: str, now: datetime) -> None:
        o = opening_reads
        key = and_(
            o.c.premises_id == premises_id, o.c.fuel == fuel.value, o.c.effective == effective.astimezone(UTC)
        )
        with self.plan.store.engine.connect() as conn:
            r = conn.execute(select(o).where(key)).one()
        if r.hub_id is None:
            return
        body = SupplierKeys(r.fuel, r.new_supplier_id, r.new_supplier_lfdi, _aware(r.effective))
        job = self.plan.queue_command(self.signer, r.hub_id, "supplier.keys", body, now, Priority.URGENT)
        values: dict[str, Any] = {column: job}
        if column == "read_job":
            values["read_tries"] = o.c.read_tries + 1
        with self.plan.store.engine.begin() as conn:
            conn.execute(update(o).where(key).values(**values))

    def _collect(self, r: Any, now: datetime) -> int:
        """Store the read if the job brought it back complete; else ask again after ``retry``
        (closing the read with what came back once ``max_read_tries`` are spent)."""
        job = self.plan.urgent_job(int(r.read_job))
        if job["state"] not in (DONE, FAILED):
            return 0
        verdict = json.loads(job["result"]) if job["state"] == DONE and job["result"] else {}
        result = verdict.get("result") if verdict.get("status") == "applied" else None
        found = result.get("opening_read") if isinstance(result, dict) else None
        missing = result.get("missing", []) if isinstance(result, dict) else []
        o = opening_reads
        key = and_(o.c.premises_id == r.premises_id, o.c.fuel == r.fuel, o.c.effective == r.effective)
        values: dict[str, Any]
        if found is not None and (not missing or r.read_tries >= self.max_read_tries):
            values = {"registers": json.dumps(found), "missing": json.dumps(missing), "taken": now}
        elif r.read_tries >= self.max_read_tries:
            values = {
                "registers": json.dumps([]),
                "missing": json.dumps(["no answer from the hub"]),
                "taken": now,
            }
        else:
            values = {"read_job": None, "read_due": now + self.retry}
        with self.plan.store.engine.begin() as conn:
            conn.execute(update(o).where(key).values(**values))
        return 1 if "taken" in values else 0

    # -- serving the read ---------------------------------------------------------------------
    def opening_read(
        self, guard: AccessGuard, party_id: str, premises_id: str, fuel: Fuel, effective: datetime
    ) -> OpeningRead:
        """The opening read of a change, for a party the access policy lets read the meter's
        data on either side of the instant (the old supplier, the new one, the occupant).

        Decided and audited by the guard as a read of the settlement period either side of the
        instant, at the supplier default granularity; raises ``AccessDenied`` otherwise."""
        fuel = Fuel(fuel)
        eff = effective.astimezone(UTC)
        decision = guard.require(
            party_id,
            Action.READ_READINGS,
            premises_id=premises_id,
            fuel=fuel.value,
            granularity=Granularity.MONTHLY,
            period=TimeRange(eff - SETTLEMENT_PERIOD, eff + SETTLEMENT_PERIOD),
            detail={"opening_read": eff.isoformat()},
        )
        if not any(rg.start <= eff <= rg.end for rg in decision.ranges):
            raise AccessDenied(
                deny(f"{party_id}'s data at {premises_id} does not reach the instant {eff.isoformat()}")
            )
        o = opening_reads
        with self.plan.store.engine.connect() as conn:
            r = conn.execute(
                select(o).where(o.c.premises_id == premises_id, o.c.fuel == fuel.value, o.c.effective == eff)
            ).first()
        if r is None:
            raise LookupError(f"no change of {fuel.value} supplier at {premises_id!r} on {eff.isoformat()}")
        if r.taken is None:
            raise OpeningReadPending(
                f"the opening read of {premises_id!r} {fuel.value} on {eff.isoformat()} is not in yet"
            )
        return OpeningRead(
            r.premises_id,
            fuel,
            eff,
            r.old_supplier_id,
            r.new_supplier_id,
            tuple(
                RegisterRead(
                    x["meter"], x["obis"], int(x["value"]), int(x["power_of_ten"]), int(x["quality"])
                )
                for x in json.loads(r.registers)
            ),
            tuple(json.loads(r.missing or "[]")),
            _aware(r.taken),
        )

    def keys_job(self, premises_id: str, fuel: Fuel, effective: datetime) -> int | None:
        o = opening_reads
        with self.plan.store.engine.connect() as conn:
            return conn.execute(
                select(o.c.keys_job).where(
                    o.c.premises_id == premises_id,
                    o.c.fuel == Fuel(fuel).value,
                    o.c.effective == effective.astimezone(UTC),
                )
            ).scalar_one()


def _aware(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


__all__ = [
    "OpeningRead",
    "OpeningReadPending",
    "RegisterRead",
    "SupplierChanges",
    "opening_reads",
]
