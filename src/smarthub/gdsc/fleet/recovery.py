"""Recovery of a replaced or wiped hub, the GDSC's side (issue 20, item 2).

**When.** A hub commissioned in place of another (``HubLifecycle`` replacement: its
``hub_commissioning.replaces``) gets a recovery from the hub it replaces as soon as the upkeep
sees it; a hub that reports its storage ``blank`` with a pull (:mod:`smarthub.wan.contract.storage`:
a factory reset, worn-out flash, a unit swapped under the same id) gets one from its own past.
A hub has at most one recovery running.

**What.** The restore is planned from what the GDSC holds about the source hub:

* the commands that set its state, as the hub applied them, signed again with the target
  hub's counters: the newest ``mapping.update``, a ``meter.add`` per meter its registry ended
  with (``meter.add``/``replace``/``remove`` applied in order), every ``tariff.update`` (each
  version, oldest first), the last ``consent.set`` per recipient (from the newest backup when
  there is one: it has the householder's own decisions too, with their versions), every
  ``supplier.keys``;
* a ``meter.key`` for each meter of that registry (and of the hub's premises) whose key the
  escrow holds (:mod:`smarthub.gdsc.fleet.key_escrow`: the newest key a hub applied for the
  meter, else its shipment key), opened from the escrow and signed for the target hub;
* its stored intervals of the last 13 months (:data:`HISTORY_SPAN`, what the hub itself keeps
  at half-hour resolution), as ``history.restore`` commands of up to ``MAX_ROWS`` intervals;
* its prepayment accounts from the newest backup (a ``recovery.snapshot`` verdict: the GDSC
  asks every prepayment hub for one each :data:`SNAPSHOT_EVERY`), as ``prepayment.restore``;
  the hub adds what it credited or charged since it came up blank (``PrepaymentLedger.restore``);
* a replaced hub's pending vouchers, issued again for the new hub (a voucher names its hub)
  and handed to the voucher courier; the old ones are settled ``moved``;

then ``recovery.complete`` once every other step has a verdict.

**Progress** is a job: ``hub_recoveries`` (one row per recovery: state, steps, applied, failed)
and ``hub_recovery_steps`` (each step's command type and current urgent job). Each upkeep run
advances it: a step whose command was applied is done; one that was not delivered, or whose
counter the hub took but whose verdict was lost (the hub killed while it ran: ``replay``), is
signed again and queued again — every restore handler on the hub is idempotent, so this is how
a recovery cut by a crash of either side resumes, and ends in the same state. A handler's refusal
(``failed``) is final for that step and counted; a ``tariff.update`` or ``mapping.update``
refused as not newer than what the hub holds counts as applied.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Integer,
    String,
    Table,
    Text,
    func,
    select,
    update,
)

from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.commands.vouchers import VoucherIssuer, vouchers
from smarthub.gdsc.db.database import metadata
from smarthub.gdsc.fleet.key_escrow import DELIVERED, EscrowKeyError, meter_key_escrow
from smarthub.gdsc.fleet.registry import hub_commissioning, hubs, meters
from smarthub.gdsc.governance.parties import utc
from smarthub.gdsc.pull.log import last_answered
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import DONE, FAILED, _aware, urgent_work
from smarthub.gdsc.readings.stored import decoded_readings
from smarthub.gdsc.readings.tables import interval_blocks
from smarthub.gdsc.store import Store
from smarthub.wan.contract import storage as storage_state
from smarthub.wan.contract.bodies import MeterKey, PrepaymentTopup, RecoveryComplete, RecoverySnapshot
from smarthub.wan.contract.bodies.recovery import MAX_ROWS

log = logging.getLogger(__name__)

_ID = BigInteger().with_variant(Integer, "sqlite")
_T = DateTime(timezone=True)

hub_recoveries = Table(
    "hub_recoveries",
    metadata,
    Column("recovery_id", _ID, primary_key=True, autoincrement=True),
    Column("hub_id", String(64), nullable=False, index=True),  # the hub being restored
    Column("source_hub_id", String(64), nullable=False),  # whose state is restored (itself if wiped)
    Column("premises_id", String(64), nullable=False),
    Column("reason", String(16), nullable=False),  # replaced / storage_lost / operator
    Column("storage_id", String(16)),  # the blank storage the hub reported, if it did
    Column("state", String(12), nullable=False),  # running / done
    Column("created", _T, nullable=False),
    Column("finished", _T),
    Column("steps", Integer, nullable=False),
    Column("applied", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("detail", Text, nullable=False),  # what was planned (JSON)
)

hub_recovery_steps = Table(
    "hub_recovery_steps",
    metadata,
    Column("recovery_id", _ID, primary_key=True, autoincrement=False),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("command_type", String(64), nullable=False),
    Column("job_id", BigInteger, nullable=False),  # the urgent job delivering it now
    Column("attempts", Integer, nullable=False),
    Column("state", String(12), nullable=False),  # queued / applied / failed
    Column("detail", Text),
)

RUNNING, DONE_STATE = "running", "done"
QUEUED, APPLIED, STEP_FAILED = "queued", "applied", "failed"
HISTORY_SPAN = timedelta(days=396)  # 13 months: the hub's own half-hour retention (hub.history)
SNAPSHOT_EVERY = timedelta(days=1)
MAX_ATTEMPTS = 20  # deliveries of one step before it is given up (a person looks then)
# The state-setting commands a recovery replays, as the source hub applied them.
REPLAYED = (
    "mapping.update",
    "meter.add",
    "meter.replace",
    "meter.remove",
    "tariff.update",
    "consent.set",
    "supplier.keys",
)


@dataclass(frozen=True, slots=True)
class Recovery:
    recovery_id: int
    hub_id: str
    source_hub_id: str
    premises_id: str
    reason: str
    storage_id: str | None
    state: str
    created: datetime
    finished: datetime | None
    steps: int
    applied: int
    failed: int
    queued: int
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "recovery": self.recovery_id,
            "hub_id": self.hub_id,
            "source_hub_id": self.source_hub_id,
            "premises_id": self.premises_id,
            "reason": self.reason,
            "storage_id": self.storage_id,
            "state": self.state,
            "created": self.created.isoformat(),
            "finished": None if self.finished is None else self.finished.isoformat(),
            "steps": self.steps,
            "applied": self.applied,
            "failed": self.failed,
            "queued": self.queued,
            "planned": self.detail,
        }


class RecoveryRefused(ValueError):
    """A recovery that cannot be planned (the hub is not active, say); the text says why."""


class HubRecoveries:
    """Plans, advances and reports hub recoveries (module docstring)."""

    def __init__(
        self,
        store: Store,
        signer: CommandSigner,
        plan: PullPlan | None = None,
        issuer: VoucherIssuer | None = None,
        *,
        history_span: timedelta = HISTORY_SPAN,
    ) -> None:
        self.store = store
        self.signer = signer
        self.plan = plan or PullPlan(store)
        self.issuer = issuer or VoucherIssuer(store, signer.private_key, signer.signer_pem)
        self.history_span = history_span
        self._known: set[str] = set()  # hubs whose storage state has a row already (this process)
        self._deferred: dict[str, str] = {}  # blank reports waiting for a running recovery to end

    # -- planning -------------------------------------------------------------------------
    def start(
        self,
        hub_id: str,
        now: datetime,
        *,
        source_hub_id: str | None = None,
        reason: str = "operator",
        storage_id: str | None = None,
    ) -> int:
        """Plan and queue a recovery of ``hub_id`` from ``source_hub_id`` (default: the hub it
        replaced, else itself); the recovery's id. A hub with a recovery running gets that one."""
        with self.store.engine.connect() as conn:
            hub = conn.execute(select(hubs).where(hubs.c.hub_id == hub_id)).first()
            if hub is None or hub.status != "active":
                raise RecoveryRefused(f"hub {hub_id!r} is not an active hub")
            running = self._running(conn, hub_id)
            if running is not None:
                return running
            if source_hub_id is None:
                source_hub_id = (
                    conn.execute(
                        select(hub_commissioning.c.replaces).where(hub_commissioning.c.hub_id == hub_id)
                    ).scalar()
                    or hub_id
                )
            fuels = {
                r.meter_id: r.fuel for r in conn.execute(select(meters).where(meters.c.hub_id == hub_id))
            }
        bodies: list[tuple[str, dict[str, Any]]] = []
        detail: dict[str, Any] = {}
        if reason != "new":  # a new hub: nothing to restore, only the complete step
            bodies, detail = self._bodies(hub_id, source_hub_id, fuels, now, storage_id)
        with self.store.engine.begin() as conn:
            rid = int(
                conn.execute(
                    hub_recoveries.insert().values(
                        hub_id=hub_id,
                        source_hub_id=source_hub_id,
                        premises_id=hub.premises_id,
                        reason=reason,
                        storage_id=storage_id,
                        state=RUNNING,
                        created=utc(now),
                        steps=len(bodies) + 1,  # and recovery.complete
                        applied=0,
                        failed=0,
                        detail=json.dumps(detail, sort_keys=True),
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
            )
        for seq, (ctype, body) in enumerate(bodies, start=1):
            job = self.plan.queue_command(self.signer, hub_id, ctype, body, now)
            with self.store.engine.begin() as conn:
                conn.execute(
                    hub_recovery_steps.insert().values(
                        recovery_id=rid, seq=seq, command_type=ctype, job_id=job, attempts=1, state=QUEUED
                    )
                )
        if source_hub_id != hub_id:
            self._move_vouchers(source_hub_id, hub_id, now, set(detail.get("credited") or ()))
        log.info(
            "recovery %d of %s from %s: %d steps (%s)", rid, hub_id, source_hub_id, len(bodies) + 1, reason
        )
        if not bodies:
            self.advance(now)  # nothing to restore: complete at once
        return rid

    def _bodies(
        self, hub_id: str, source: str, fuels: dict[str, str], now: datetime, storage_id: str | None
    ) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
        out: list[tuple[str, dict[str, Any]]] = []
        with self.store.engine.connect() as conn:
            found = self._snapshot(conn, source, None if source != hub_id else storage_id)
            snapshot, snapshot_counter = found if found is not None else (None, None)
            replayed = self._replayed(conn, source, snapshot, snapshot_counter)
            out += replayed
            registry = set(fuels) | {str(b["meter"]) for c, b in replayed if c == "meter.add"}
            keys, unreadable = self._keys(conn, registry)
            out += keys
            history = self._history(conn, source, fuels, now)
            out += history
        accounts = []
        if snapshot is not None:
            for acct in snapshot.get("prepayment") or []:
                if Decimal(acct["credit"]) or Decimal(acct["debt"]) or acct.get("topups"):
                    accounts.append(("prepayment.restore", {**acct, "as_of": snapshot["as_of"]}))
        out += accounts
        detail = {
            "commands": {t: sum(1 for c, _ in replayed if c == t) for t in REPLAYED},
            "meter_keys": len(keys),
            "meter_keys_unreadable": unreadable,
            "history_commands": len(history),
            "intervals": sum(len(b["rows"]) for _, b in history),
            "backup": None if snapshot is None else snapshot["as_of"],
            "prepayment_accounts": len(accounts),
            "credited": sorted(
                str(t[0])
                for acct in (snapshot or {}).get("prepayment") or []
                for t in acct.get("topups") or []
            ),
        }
        return out, detail

    def _keys(
        self, conn: Connection, meter_ids: set[str]
    ) -> tuple[list[tuple[str, dict[str, Any]]], str | None]:
        """A ``meter.key`` for each meter of the restored registry whose key the escrow holds: the
        newest key a hub applied for it, else its shipment key (:meth:`KeyEscrow.current`). Signed
        and queued for the hub being restored like every step, so they reach it as any
        ``meter.key`` does and the hub keeps them sealed (``hub.delivered_keys``). Besides the
        commands, why none could be read (a KEK that does not open them), or None."""
        escrow = self.store.key_escrow
        if escrow is None or not meter_ids:
            return [], None
        e, w = meter_key_escrow, urgent_work
        jobs = conn.execute(
            select(w.c.id, w.c.result)
            .join(e, e.c.job_id == w.c.id)
            .where(e.c.meter_id.in_(sorted(meter_ids)), e.c.source == DELIVERED, w.c.state == DONE)
        ).all()
        applied = {int(j.id) for j in jobs if j.result and json.loads(j.result).get("status") == "applied"}
        try:
            current = escrow.current(conn, meter_ids, applied)
        except EscrowKeyError as err:
            log.error("recovery: the escrowed meter keys are not restored: %s", err)
            return [], str(err)
        return [
            (MeterKey.TYPE, MeterKey(m, k.key, k.pending).to_json()) for m, k in sorted(current.items())
        ], None

    def _key_again(self, job: int) -> dict[str, Any] | None:
        """The ``meter.key`` body job ``job`` carried, from the escrow (its envelope is cleared)."""
        escrow = self.store.key_escrow
        if escrow is None:
            return None
        with self.store.engine.connect() as conn:
            found = escrow.of_job(conn, job)
        return None if found is None else MeterKey(found.meter_id, found.key, found.pending).to_json()

    @staticmethod
    def _applied(
        conn: Connection, hub_id: str, types: Iterable[str]
    ) -> list[tuple[str, dict[str, Any], int]]:
        """(type, body, counter) of the commands of ``types`` the hub applied, in counter order."""
        w = urgent_work
        rows = conn.execute(
            select(w.c.command_type, w.c.envelope, w.c.result, w.c.counter)
            .where(w.c.hub_id == hub_id, w.c.command_type.in_(list(types)), w.c.state == DONE)
            .order_by(w.c.counter)
        )
        out = []
        for ctype, envelope, result, counter in rows:
            if not envelope or not result or json.loads(result).get("status") != "applied":
                continue
            payload = json.loads(json.loads(envelope)["payload"])
            out.append((str(ctype), dict(payload["body"]), int(counter)))
        return out

    def _replayed(
        self, conn: Connection, source: str, snapshot: dict[str, Any] | None = None, after: int | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """The state those commands left, as commands: the newest mapping table, a ``meter.add``
        per meter the registry ended with (pairings, replacements and removals applied in
        order), every tariff version, the last consent per recipient, the supplier keys.

        The consents come from the backup (``snapshot``, taken by the command numbered ``after``)
        when there is one: it holds the hub's decisions with their versions, the householder's
        own at the display too; only ``consent.set`` commands applied after it are replayed."""
        mapping: dict[str, Any] | None = None
        registry: dict[str, dict[str, Any]] = {}
        tariffs: dict[tuple[str, str, int], dict[str, Any]] = {}
        consents: dict[str, dict[str, Any]] = {}
        keys: list[dict[str, Any]] = []
        if snapshot is not None and isinstance(snapshot.get("consents"), list):
            for c in snapshot["consents"]:
                consents[str(c["recipient"])] = dict(c)
        for ctype, body, counter in self._applied(conn, source, REPLAYED):
            if ctype == "consent.set" and after is not None and counter < after and consents:
                continue  # in the backup already, with the hub's version
            if ctype == "mapping.update":
                mapping = body
            elif ctype == "meter.add":
                registry[str(body["meter"])] = body
            elif ctype == "meter.replace":
                registry.pop(str(body["old"]), None)
                registry[str(body["new"])] = {k: body[k] for k in ("protocol", "fuel") if k in body} | {
                    "meter": body["new"]
                }
            elif ctype == "meter.remove":
                registry.pop(str(body["meter"]), None)
            elif ctype == "tariff.update":
                tariffs[
                    (str(body.get("fuel")), str(body["tariff"].get("tariff_id")), int(body["version"]))
                ] = body
            elif ctype == "consent.set":
                consents[str(body.get("recipient"))] = body  # the last one applied decides
            else:
                keys.append(body)
        out = [] if mapping is None else [("mapping.update", mapping)]
        out += [("meter.add", registry[m]) for m in sorted(registry)]
        out += [("tariff.update", tariffs[k]) for k in sorted(tariffs)]
        out += [("consent.set", consents[r]) for r in sorted(consents)]
        out += [("supplier.keys", b) for b in keys]
        return out

    def _history(
        self, conn: Connection, source: str, fuels: dict[str, str], now: datetime
    ) -> list[tuple[str, dict[str, Any]]]:
        start = int((now - self.history_span).timestamp())
        channels: dict[tuple[str, str, int, int], list[list[int]]] = {}
        for _h, meter, obis, duration, _uom, p10, t, value, quality in decoded_readings(
            conn, start, int(now.timestamp()), interval_blocks.c.hub_id == source
        ):
            channels.setdefault((meter, obis, duration, p10), []).append([t, value, quality])
        out = []
        for (meter, obis, duration, p10), rows in sorted(channels.items()):
            rows.sort()
            for i in range(0, len(rows), MAX_ROWS):
                out.append(
                    (
                        "history.restore",
                        {
                            "meter": meter,
                            "obis": obis,
                            "duration": duration,
                            "power_of_ten": p10,
                            "rows": rows[i : i + MAX_ROWS],
                            "fuel": fuels.get(meter, "electricity"),
                        },
                    )
                )
        return out

    @staticmethod
    def _snapshot(conn: Connection, source: str, lost: str | None) -> tuple[dict[str, Any], int] | None:
        """The newest backup of the source hub's own state: a ``recovery.snapshot`` verdict,
        not of the blank storage being restored (``lost`` names the storage that replaced the
        lost one: its snapshot restores nothing)."""
        w = urgent_work
        rows = conn.execute(
            select(w.c.result, w.c.counter)
            .where(w.c.hub_id == source, w.c.command_type == RecoverySnapshot.TYPE, w.c.state == DONE)
            .order_by(w.c.counter.desc())
        )
        for result, counter in rows:
            verdict = json.loads(result) if result else {}
            snap = verdict.get("result") if verdict.get("status") == "applied" else None
            if isinstance(snap, dict) and (snap.get("storage") or {}).get("id") != lost:
                return snap, int(counter)
        return None

    def _move_vouchers(self, old: str, new: str, now: datetime, credited: set[str]) -> None:
        """A replaced hub's pending vouchers, issued again for the new one (the courier delivers
        them); the old ones settle as ``moved``. One the old hub's backup lists as credited (its
        verdict never settled it) settles as credited instead: it is in the restored balance."""
        with self.store.engine.connect() as conn:
            pending = conn.execute(
                select(vouchers).where(vouchers.c.hub_id == old, vouchers.c.status == "pending")
            ).all()
        for v in pending:
            if v.voucher_id in credited:
                with self.store.engine.begin() as conn:
                    conn.execute(
                        update(vouchers)
                        .where(vouchers.c.hub_id == old, vouchers.c.voucher_id == v.voucher_id)
                        .values(
                            status="credited",
                            settled=utc(now),
                            verdict=json.dumps({"credited_per": "backup"}),
                        )
                    )
                continue
            again = self.issuer.issue(new, v.fuel, Decimal(v.amount), now)
            envelope = next(p.envelope for p in self.issuer.pending(new) if p.voucher_id == again.voucher_id)
            self.plan.queue_command(
                self.signer, new, "prepayment.topup", PrepaymentTopup.parse(envelope), now
            )
            with self.store.engine.begin() as conn:
                conn.execute(
                    update(vouchers)
                    .where(vouchers.c.hub_id == old, vouchers.c.voucher_id == v.voucher_id)
                    .values(
                        status="moved",
                        settled=utc(now),
                        verdict=json.dumps({"moved_to": new, "voucher_id": again.voucher_id}),
                    )
                )

    # -- triggers -------------------------------------------------------------------------
    def tick(self, reports: dict[str, str], now: datetime) -> None:
        """One upkeep run: new recoveries (replacements, blank hubs), progress, backups."""
        self.start_replacements(now)
        self.take_reports(reports, now)
        self.advance(now)
        self.snapshot_round(now)

    def take_reports(self, reports: dict[str, str], now: datetime) -> list[int]:
        """Act on the storage states the hubs gave with their pulls; the recoveries started.

        The first state the GDSC hears from a hub is recorded (a recovery row of no steps): a
        ``kept`` or ``restored`` storage as it is, a ``blank`` one of a hub never heard of before
        (a new hub) with a ``recovery.complete`` of no steps, so that it says ``restored`` from
        then on. A ``blank`` storage the GDSC has no row for, of a hub it has heard of (a row,
        or a backup taken from another storage), is a lost storage: restored from the hub's own
        past (a replacement's first one: from the hub it replaced, unless that recovery was
        planned at commissioning already). One reported while a recovery for another storage
        runs (the hub wiped again) is looked at again once that one has ended."""
        started = []
        # Blank reports of hubs whose recovery was running for another storage (wiped again
        # mid-recovery) wait for it to end: they are looked at again from the next run on.
        reports, self._deferred = {**self._deferred, **reports}, {}
        for hub_id, header in sorted(reports.items()):
            state = storage_state.parse(header)
            if state is None or (state.state != storage_state.BLANK and hub_id in self._known):
                continue
            r = hub_recoveries
            with self.store.engine.connect() as conn:
                rows = conn.execute(select(r.c.state, r.c.storage_id).where(r.c.hub_id == hub_id)).all()
                replaced = conn.execute(
                    select(hub_commissioning.c.replaces).where(hub_commissioning.c.hub_id == hub_id)
                ).scalar()
                known_storage = bool(rows) or self._backed_up_other(conn, hub_id, state.storage_id)
            if state.state != storage_state.BLANK:
                if not rows:
                    self._record_seen(hub_id, state.storage_id, now)
                self._known.add(hub_id)
                continue
            if any(row.storage_id == state.storage_id for row in rows):
                continue
            if any(row.state == RUNNING for row in rows):
                if all(row.storage_id is not None for row in rows if row.state == RUNNING):
                    self._deferred[hub_id] = header
                continue
            if replaced and not rows:
                source, reason = replaced, "replaced"
            elif known_storage:
                source, reason = hub_id, "storage_lost"
            else:
                source, reason = None, "new"
            try:
                started.append(
                    self.start(hub_id, now, source_hub_id=source, reason=reason, storage_id=state.storage_id)
                )
            except RecoveryRefused as err:
                log.warning("recovery of %s not started: %s", hub_id, err)
        return started

    @staticmethod
    def _backed_up_other(conn: Connection, hub_id: str, storage_id: str) -> bool:
        """Whether a backup of the hub came from another storage than ``storage_id`` (the GDSC
        knew the hub's storage before, though no pull had reported it yet)."""
        w = urgent_work
        for (result,) in conn.execute(
            select(w.c.result).where(
                w.c.hub_id == hub_id, w.c.command_type == RecoverySnapshot.TYPE, w.c.state == DONE
            )
        ):
            snap = (json.loads(result) if result else {}).get("result")
            if isinstance(snap, dict) and (snap.get("storage") or {}).get("id") not in (None, storage_id):
                return True
        return False

    def _record_seen(self, hub_id: str, storage_id: str, now: datetime) -> None:
        with self.store.engine.begin() as conn:
            premises = conn.execute(select(hubs.c.premises_id).where(hubs.c.hub_id == hub_id)).scalar()
            if premises is None:
                return
            conn.execute(
                hub_recoveries.insert().values(
                    hub_id=hub_id,
                    source_hub_id=hub_id,
                    premises_id=premises,
                    reason="seen",
                    storage_id=storage_id,
                    state=DONE_STATE,
                    created=utc(now),
                    finished=utc(now),
                    steps=0,
                    applied=0,
                    failed=0,
                    detail="{}",
                )
            )

    def start_replacements(self, now: datetime) -> list[int]:
        """A recovery for every active hub that replaced another and has had none."""
        c, r = hub_commissioning, hub_recoveries
        with self.store.engine.connect() as conn:
            todo = [
                row[0]
                for row in conn.execute(
                    select(c.c.hub_id)
                    .join(hubs, hubs.c.hub_id == c.c.hub_id)
                    .outerjoin(r, r.c.hub_id == c.c.hub_id)
                    .where(c.c.replaces.is_not(None), hubs.c.status == "active", r.c.recovery_id.is_(None))
                )
            ]
        return [self.start(h, now, reason="replaced") for h in sorted(todo)]

    def snapshot_round(self, now: datetime, every: timedelta = SNAPSHOT_EVERY) -> int:
        """Ask every active prepayment hub whose newest backup request is older than ``every``
        for a new one (``recovery.snapshot``); how many were queued."""
        w = urgent_work
        with self.store.engine.connect() as conn:
            last = dict(
                conn.execute(
                    select(w.c.hub_id, func.max(w.c.queued))
                    .where(w.c.command_type == RecoverySnapshot.TYPE)
                    .group_by(w.c.hub_id)
                ).all()
            )
            # Hubs on prepayment (a voucher issued through the GDSC): the rest keep nothing that
            # the GDSC does not hold already (their tariffs, consents and readings).
            active = [
                r[0]
                for r in conn.execute(
                    select(hubs.c.hub_id).where(
                        hubs.c.status == "active", hubs.c.hub_id.in_(select(vouchers.c.hub_id).distinct())
                    )
                )
            ]
        n = 0
        for hub_id in sorted(active):
            queued = last.get(hub_id)
            if queued is not None and now - utc(queued) < every:
                continue
            self.plan.queue_command(self.signer, hub_id, RecoverySnapshot.TYPE, RecoverySnapshot(), now)
            n += 1
        return n

    # -- progress -------------------------------------------------------------------------
    def advance(self, now: datetime) -> list[int]:
        """Move every running recovery on (module docstring); the ids that finished."""
        r = hub_recoveries
        with self.store.engine.connect() as conn:
            running = [
                (int(row.recovery_id), row.hub_id, row.storage_id, row.status)
                for row in conn.execute(
                    select(r.c.recovery_id, r.c.hub_id, r.c.storage_id, hubs.c.status)
                    .join(hubs, hubs.c.hub_id == r.c.hub_id)
                    .where(r.c.state == RUNNING)
                )
            ]
        finished = []
        for rid, hub_id, storage_id, status in running:
            if status != "active":  # revoked, decommissioned or replaced meanwhile: no one to restore
                self._end(rid, now, f"hub {status}")
                finished.append(rid)
            elif self._advance(rid, hub_id, storage_id, now):
                finished.append(rid)
        return finished

    def _end(self, rid: int, now: datetime, why: str) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(
                update(hub_recovery_steps)
                .where(hub_recovery_steps.c.recovery_id == rid, hub_recovery_steps.c.state == QUEUED)
                .values(state=STEP_FAILED, detail=why)
            )
            failed = conn.execute(
                select(func.count()).where(
                    hub_recovery_steps.c.recovery_id == rid, hub_recovery_steps.c.state == STEP_FAILED
                )
            ).scalar_one()
            conn.execute(
                update(hub_recoveries)
                .where(hub_recoveries.c.recovery_id == rid)
                .values(state=DONE_STATE, finished=utc(now), failed=failed)
            )

    def _advance(self, rid: int, hub_id: str, storage_id: str | None, now: datetime) -> bool:
        s, w = hub_recovery_steps, urgent_work
        with self.store.engine.connect() as conn:
            steps = conn.execute(
                select(s.c.seq, s.c.command_type, s.c.job_id, s.c.attempts, s.c.state,
                       w.c.state.label("job_state"), w.c.result, w.c.envelope, w.c.finished)
                .join(w, w.c.id == s.c.job_id)
                .where(s.c.recovery_id == rid)
                .order_by(s.c.seq)
            ).all()  # fmt: skip
            back = last_answered(conn, {hub_id}).get(hub_id)
        complete_seq = None
        for st in steps:
            if st.command_type == RecoveryComplete.TYPE:
                complete_seq = st.seq
            if st.state != QUEUED:
                continue
            outcome, reason = _outcome(st.job_state, st.result)
            if outcome is None:
                continue  # still on its way
            if (
                st.job_state == FAILED
                and st.finished is not None
                and (back is None or back <= _aware(st.finished))
            ):
                # Not delivered, and the hub has not answered a pull since: it is away (a WAN
                # outage, a power cut). Sent again once it is back, not every upkeep run
                # meanwhile, which spent the step's attempts in hours and failed it for good.
                continue
            if outcome == "again" and st.attempts < MAX_ATTEMPTS:
                if st.command_type == MeterKey.TYPE:  # its envelope is cleared: the escrow has the key
                    again = self._key_again(st.job_id)
                    if again is None:
                        self._step(rid, st.seq, state=STEP_FAILED, detail="the key is not in the escrow")
                        continue
                else:
                    again = json.loads(json.loads(st.envelope)["payload"])["body"]
                job = self.plan.queue_command(self.signer, hub_id, st.command_type, again, now)
                self._step(rid, st.seq, job_id=job, attempts=st.attempts + 1, detail=reason)
                continue
            self._step(rid, st.seq, state=APPLIED if outcome == APPLIED else STEP_FAILED, detail=reason)
        with self.store.engine.begin() as conn:
            counts: dict[str, int] = dict(
                conn.execute(
                    select(s.c.state, func.count()).where(s.c.recovery_id == rid).group_by(s.c.state)
                ).all()
            )
            applied, failed = int(counts.get(APPLIED, 0)), int(counts.get(STEP_FAILED, 0))
            conn.execute(
                update(hub_recoveries)
                .where(hub_recoveries.c.recovery_id == rid)
                .values(applied=applied, failed=failed)
            )
        if counts.get(QUEUED):
            return False
        if complete_seq is None:
            body = RecoveryComplete(rid, len(steps), storage_id or "")
            job = self.plan.queue_command(self.signer, hub_id, RecoveryComplete.TYPE, body, now)
            with self.store.engine.begin() as conn:
                conn.execute(
                    hub_recovery_steps.insert().values(
                        recovery_id=rid,
                        seq=len(steps) + 1,
                        command_type=RecoveryComplete.TYPE,
                        job_id=job,
                        attempts=1,
                        state=QUEUED,
                    )
                )
            return False
        with self.store.engine.begin() as conn:
            conn.execute(
                update(hub_recoveries)
                .where(hub_recoveries.c.recovery_id == rid)
                .values(state=DONE_STATE, finished=utc(now))
            )
        log.info("recovery %d of %s done: %d steps applied, %d failed", rid, hub_id, applied, failed)
        return True

    def _step(self, rid: int, seq: int, **values: Any) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(
                update(hub_recovery_steps)
                .where(hub_recovery_steps.c.recovery_id == rid, hub_recovery_steps.c.seq == seq)
                .values(**values)
            )

    # -- reading ---------------------------------------------------------------------------
    def get(self, recovery_id: int) -> Recovery | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(
                select(hub_recoveries).where(hub_recoveries.c.recovery_id == recovery_id)
            ).first()
            if row is None:
                return None
            queued = conn.execute(
                select(func.count())
                .select_from(hub_recovery_steps)
                .where(hub_recovery_steps.c.recovery_id == recovery_id, hub_recovery_steps.c.state == QUEUED)
            ).scalar_one()
        return Recovery(
            int(row.recovery_id),
            row.hub_id,
            row.source_hub_id,
            row.premises_id,
            row.reason,
            row.storage_id,
            row.state,
            utc(row.created),
            utc(row.finished),
            int(row.steps),
            int(row.applied),
            int(row.failed),
            int(queued),
            json.loads(row.detail),
        )

    def of_hub(self, hub_id: str) -> list[Recovery]:
        with self.store.engine.connect() as conn:
            ids = [
                int(r[0])
                for r in conn.execute(
                    select(hub_recoveries.c.recovery_id)
                    .where(hub_recoveries.c.hub_id == hub_id)
                    .order_by(hub_recoveries.c.recovery_id)
                )
            ]
        return [r for i in ids if (r := self.get(i)) is not None]

    def steps(self, recovery_id: int) -> list[dict[str, Any]]:
        s = hub_recovery_steps
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(s).where(s.c.recovery_id == recovery_id).order_by(s.c.seq)).all()
        return [
            {"seq": r.seq, "type": r.command_type, "job": r.job_id, "attempts": r.attempts, "state": r.state,
             "detail": r.detail}
            for r in rows
        ]  # fmt: skip

    @staticmethod
    def _running(conn: Connection, hub_id: str) -> int | None:
        rid = conn.execute(
            select(hub_recoveries.c.recovery_id).where(
                hub_recoveries.c.hub_id == hub_id, hub_recoveries.c.state == RUNNING
            )
        ).scalar()
        return None if rid is None else int(rid)


def _outcome(job_state: str, result: str | None) -> tuple[str | None, str | None]:
    """What a step's current job says: (APPLIED | STEP_FAILED | "again" | None, reason)."""
    if job_state == FAILED:
        return "again", "not delivered"
    if job_state != DONE:
        return None, None
    verdict = json.loads(result) if result else {}
    status, code, detail = verdict.get("status"), verdict.get("code"), str(verdict.get("detail") or "")
    if status == "applied":
        return APPLIED, None
    if status == "failed":
        if detail.startswith("StaleTariffVersion") or (
            detail.startswith("MappingError") and "not newer" in detail
        ):
            return APPLIED, "held already"  # the hub has this version or a newer one
        return STEP_FAILED, f"{code}: {detail}"[:500]
    # Refused (a replay: the hub took the counter, then died before its verdict was kept) or
    # no verdict at all: signed again under a new counter.
    return "again", f"{status}: {code}: {detail}"[:500]
