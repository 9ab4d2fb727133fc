"""The shared pull plan: what every collector process pulls or delivers, and when, in the database.

Three tables on ``smarthub.gdsc.db.database.metadata`` (so the Alembic migrations cover them):

``pull_plan``
    One row per (retrieval schedule, window, hub): its due time inside the window, its state
    (``pending`` → ``claimed`` → ``done`` or, after ``max_tries`` failures, ``failed``), the
    collector holding it and until when (its lease), and its tries. A window is planned once,
    by whichever collector reaches it first (an idempotent insert), so no hub is forgotten and
    none is planned twice.
``urgent_work``
    Work that jumps the bulk queue: signed management commands (prepayment top-up,
    disconnect/reconnect) and on-demand reads, claimed before any bulk pull, every tick.
``hub_errors``
    The error record a hub opens when it stays unreachable after ``max_tries`` (one open record
    per hub and kind; later failures count occurrences on it; a later success closes it). The
    central error log builds on this table.

Claiming is atomic. On PostgreSQL due rows are taken with ``SELECT … FOR UPDATE SKIP LOCKED``,
so several collectors claim disjoint work without waiting on each other; the ``wan_links`` rows
of the links involved are then locked (blocking, in name order so two claimers cannot deadlock)
so the count of pulls in flight per link is exact when the claim decides. On SQLite (the
embedded single-collector case) the claim runs in a ``BEGIN IMMEDIATE`` transaction: the
database's single write lock makes it atomic just the same.

On Citus the plan's tables (``pull_plan``, ``wan_links``, ``urgent_work``, ``hub_errors``) stay
on the coordinator (:mod:`smarthub.gdsc.db.placement`): Citus refuses ``FOR UPDATE`` over several
shards, and a coordinator-local table has one. Every claim then runs on the coordinator, which
bounds the claim rate (``bench/plan.py`` measures it on one PostgreSQL server); the rows a claim
reads elsewhere (``hubs``, ``pull_log``) are read without locks.

A claim is a lease: the collector renews it while it works; a collector that dies stops
renewing, its lease runs out, and another collector takes the row over. Before pulling a
taken-over hub again, the new holder checks ``pull_log`` for a pull the dead one finished but
did not get to mark, so a hub is pulled once per window even across a SIGKILL. Every change of
a claimed row names its holder and claim time (a fencing token): a collector that lost its
lease cannot overwrite the new holder's result.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select, update

from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.registry import HubRecord
from smarthub.gdsc.pull.backoff import Backoff
from smarthub.gdsc.pull.claims import PlanClaims
from smarthub.gdsc.pull.finishing import PlanFinishing
from smarthub.gdsc.pull.tables import (
    CLAIMED,
    PENDING,
    URGENT_COMMANDS,
    Priority,
    _aware,
    _chunks,
    hub_errors,
    pull_plan,
    urgent_work,
    utc,
    wan_links,
)
from smarthub.gdsc.store import Store
from smarthub.wan.contract.bodies import CommandBody, MeterKey
from smarthub.wan.contract.commands import Command, MalformedCommand, SignedCommand

# Commands that overtake the queued commands a hub was never sent (PullPlan._overtake).
OVERTAKING = frozenset({"prepayment.topup"})


@dataclass
class PullPlan(PlanClaims, PlanFinishing):
    store: Store
    max_tries: int = 5
    backoff: Backoff = field(default_factory=Backoff)
    lease: timedelta = timedelta(minutes=2)
    link_limit: int = 4  # pulls in flight per WAN link, unless the link's wan_links row says otherwise
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_tries < 1:
            raise ValueError("max_tries must be at least 1")
        if self.link_limit < 1:
            raise ValueError("link_limit must be at least 1")
        self._rng = random.Random(self.seed)
        # Bulk rows this process claimed after another holder's lease ran out, and rows such a
        # dead holder had pulled that were marked done instead (the metrics' lease takeovers).
        self.takeovers = 0
        self.takeovers_found_done = 0

    def create_schema(self) -> None:
        """The plan's tables come with the store's migrations (``Store.create_schema``)."""
        self.store.create_schema()

    # -- planning -------------------------------------------------------------------------
    def ensure_window(
        self,
        schedule: str,
        window_start: datetime,
        plan: Sequence[tuple[datetime, HubRecord]],
        deadline: datetime,
    ) -> int:
        """Write a window's plan unless some collector already did; the number of rows it has.

        Idempotent and safe to race: rows are inserted with ON CONFLICT DO NOTHING on the
        (schedule, window, hub) key, so two collectors reaching the window together plan it once.
        """
        ws = utc(window_start)
        rows = [
            {
                "schedule": schedule,
                "window_start": ws,
                "hub_id": h.hub_id,
                "wan_link": h.wan_link,
                "due": utc(t),
                "deadline": utc(deadline),
                "state": PENDING,
                "claims": 0,
                "failures": 0,
                "next_try": utc(t),
            }
            for t, h in plan
        ]
        links = sorted({h.wan_link for _, h in plan if h.wan_link})
        with self._engine.begin() as conn:
            for chunk in _chunks(rows, 1000):
                conn.execute(self.store._insert(pull_plan).on_conflict_do_nothing(), chunk)
            if links:
                conn.execute(
                    self.store._insert(wan_links).on_conflict_do_nothing(),
                    [{"wan_link": link, "max_in_flight": self.link_limit} for link in links],
                )
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(pull_plan)
                    .where(pull_plan.c.schedule == schedule, pull_plan.c.window_start == ws)
                ).scalar_one()
            )

    def set_link_limit(self, wan_link: str, max_in_flight: int) -> None:
        if max_in_flight < 1:
            raise ValueError("a WAN link must allow at least one pull in flight")
        ins = self.store._insert(wan_links).values(wan_link=wan_link, max_in_flight=max_in_flight)
        with self._engine.begin() as conn:
            conn.execute(
                ins.on_conflict_do_update(index_elements=["wan_link"], set_={"max_in_flight": max_in_flight})
            )

    # -- urgent work ------------------------------------------------------------------------
    def queue_command(
        self,
        signer: CommandSigner,
        hub_id: str,
        type_: str,
        body: CommandBody | dict[str, Any],
        now: datetime,
        priority: Priority | None = None,
        conn: Connection | None = None,
    ) -> int:
        """Sign a command and queue it in one transaction (``conn``'s, if given: with what the
        caller writes beside it); its job id.

        The hub refuses a counter below one it has accepted, and commands for one hub are
        delivered in job order. Taking the counter and inserting the job in one transaction
        (the counter row stays locked until commit) makes job order equal counter order even
        when several GDSC processes queue commands for the same hub at once; signing outside
        it could let a later counter be queued first and the earlier one refused as a replay.
        """
        if conn is None:
            with self._engine.begin() as own:
                return self.queue_command(signer, hub_id, type_, body, now, priority, own)
        counter = self.store.next_command_counter(hub_id, conn)
        if type_ in OVERTAKING:
            counter = self._overtake(signer, hub_id, counter, conn)
        signed = signer.command(hub_id, type_, body, now, counter=counter)
        job = self._enqueue_signed(signed, now, priority, conn)
        escrow = self.store.key_escrow
        if type_ == MeterKey.TYPE and escrow is not None:
            # The envelope is cleared once delivered (SECRET_COMMANDS): the escrow keeps the
            # key, sealed, for a recovery of the hub (smarthub.gdsc.fleet.key_escrow).
            try:
                sent = MeterKey.parse(body.to_json() if isinstance(body, CommandBody) else body)
            except MalformedCommand:
                return job  # no key to keep: the hub refuses it as malformed
            escrow.deposit_delivery(conn, hub_id, sent.meter, sent.key, sent.pending, job, now)
        return job

    def _overtake(self, signer: CommandSigner, hub_id: str, counter: int, conn: Connection) -> int:
        """The counter a top-up (:data:`OVERTAKING`: a household's supply may depend on it)
        takes, given the next one, ``counter``: that of the first of the hub's queued commands
        it may overtake, which move up one place each, signed again.

        The hub takes counters in rising order only (``hub.management``: a counter below one it
        accepted is a replay), so a hub's commands are delivered in counter order
        (:meth:`claim_urgent`), and a top-up queued behind a certificate renewal, a firmware
        package or a backup request waited for each of them: hours on a loaded GDSC, a day
        in the 30-day chaos run. It may overtake the queued commands that are not urgent and
        were never claimed (never sent: the hub has not seen their counters), as long as they
        are the last of the hub's open commands; a command that was claimed may have reached
        the hub (its answer lost), so its counter stays, and the urgent ones (top-ups, a
        disconnect, a reconnect) keep their order among themselves. A voucher stands alone
        (its own id, credited once whenever it comes), so nothing it overtakes depends on it.
        Each command overtaken keeps its job, type, body and time of issue,
        and is signed again with the next counter (in the transaction that holds the hub's
        counter row, so no other process queues or renumbers meanwhile; the rows are locked
        against a claim on PostgreSQL)."""
        u = urgent_work
        open_jobs = conn.execute(
            select(u.c.id, u.c.counter, u.c.command_type, u.c.state, u.c.claims, u.c.envelope)
            .where(
                u.c.hub_id == hub_id,
                u.c.kind == "command",
                u.c.state.in_((PENDING, CLAIMED)),
                u.c.counter.is_not(None),
            )
            .order_by(u.c.counter)
            .with_for_update()
        ).all()
        tail: list[Any] = []
        for job in reversed(open_jobs):
            if (
                job.state != PENDING
                or job.claims
                or job.command_type in URGENT_COMMANDS
                or job.envelope is None
                or job.counter >= counter
            ):
                break
            tail.insert(0, job)
        if not tail:
            return counter
        counters = [int(j.counter) for j in tail[1:]] + [counter]
        for job, moved in zip(tail, counters, strict=True):
            old = Command.from_payload(SignedCommand.from_envelope(job.envelope.encode()).payload)
            again = signer.sign(Command(old.hub_id, moved, old.type, old.body, old.issued))
            conn.execute(
                update(u).where(u.c.id == job.id).values(counter=moved, envelope=again.envelope().decode())
            )
        return int(tail[0].counter)

    def enqueue_command(self, signed: SignedCommand, now: datetime, priority: Priority | None = None) -> int:
        """Queue a command signed earlier; its job id. Prefer :meth:`queue_command`, which
        keeps job order equal to counter order across processes."""
        with self._engine.begin() as conn:
            return self._enqueue_signed(signed, now, priority, conn)

    def _enqueue_signed(
        self, signed: SignedCommand, now: datetime, priority: Priority | None, conn: Connection
    ) -> int:
        command = json.loads(signed.payload)
        ctype = str(command["type"])
        if priority is None:
            priority = Priority.URGENT if ctype in URGENT_COMMANDS else Priority.ON_DEMAND
        return self._enqueue(
            hub_id=str(command["hub_id"]),
            priority=int(priority),
            kind="command",
            command_type=ctype,
            counter=int(command["counter"]),
            envelope=signed.envelope().decode(),
            now=now,
            conn=conn,
        )

    def enqueue_read(self, hub_id: str, now: datetime) -> int:
        """Queue an on-demand read of one hub (a pull outside its windows); its job id."""
        with self._engine.begin() as conn:
            return self._enqueue(
                hub_id=hub_id, priority=int(Priority.ON_DEMAND), kind="read", now=now, conn=conn
            )

    def _enqueue(self, *, now: datetime, conn: Connection, **values: Any) -> int:
        t = utc(now)
        res = conn.execute(
            urgent_work.insert().values(queued=t, state=PENDING, claims=0, failures=0, next_try=t, **values)
        )
        key = res.inserted_primary_key
        if key is None:
            raise RuntimeError("the urgent-work insert returned no key")
        return int(key[0])

    # -- reading the plan -------------------------------------------------------------------
    def window_states(self, schedule: str, window_start: datetime) -> dict[str, int]:
        p = pull_plan
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(p.c.state, func.count())
                .where(p.c.schedule == schedule, p.c.window_start == utc(window_start))
                .group_by(p.c.state)
            ).all()
        return {state: int(n) for state, n in rows}

    def urgent_job(self, job_id: int) -> dict[str, Any]:
        with self._engine.connect() as conn:
            row = conn.execute(select(urgent_work).where(urgent_work.c.id == job_id)).one()
        out = dict(row._mapping)
        for k in ("queued", "next_try", "claimed", "lease_until", "finished"):
            out[k] = _aware(out[k])
        return out

    def last_job(self) -> int:
        """The id of the newest urgent job (0 if there is none)."""
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(urgent_work.c.id), 0))).scalar_one())

    def hubs_queued_after(self, job: int, command_type: str) -> list[str]:
        """The hubs a ``command_type`` command was queued for after job ``job``, by hub id."""
        u = urgent_work
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(u.c.hub_id).where(u.c.id > job, u.c.command_type == command_type).order_by(u.c.hub_id)
            )
            return [r.hub_id for r in rows]

    def open_errors(self, hub_id: str | None = None) -> list[dict[str, Any]]:
        e = hub_errors
        q = select(e).where(e.c.closed.is_(None)).order_by(e.c.id)
        if hub_id is not None:
            q = q.where(e.c.hub_id == hub_id)
        with self._engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def next_due(self, now: datetime) -> datetime | None:
        """The earliest time any pending work becomes due (for sleeping until then, not longer)."""
        t = utc(now)
        with self._engine.connect() as conn:
            a = conn.execute(
                select(func.min(pull_plan.c.next_try)).where(
                    pull_plan.c.state == PENDING, pull_plan.c.deadline > t
                )
            ).scalar_one()
            b = conn.execute(
                select(func.min(urgent_work.c.next_try)).where(urgent_work.c.state == PENDING)
            ).scalar_one()
        found = [_aware(x) for x in (a, b) if x is not None]
        return min(found) if found else None
