"""Commands through the data services API: decided, audited, signed and queued in the shared plan.

The API never talks to a hub. A command request passes the access policy (the premises' current
supplier for the meter's fuel; an on-demand read also the occupant, an installer on site and the
GDSC operator), is recorded in the audit chain with its body, is signed with the GDSC operator key
(:class:`~smarthub.gdsc.commands.signer.CommandSigner`, counters from the store) and is queued as urgent
work in the shared pull plan (:class:`~smarthub.gdsc.pull.plan.PullPlan`), which every GDSC collector
process drains ahead of bulk pulls (DESIGN §3, command path). The caller gets ``202 Accepted`` with
a job id and follows the job at ``GET /v1/jobs/{id}``.

A top-up first becomes a signed single-use voucher (:class:`~smarthub.gdsc.commands.vouchers.VoucherIssuer`),
recorded before it is sent; the ``prepayment.topup`` command carries its envelope. The running
GDSC settles it from the hub's verdict (:class:`~smarthub.gdsc.commands.vouchers.VoucherCourier`); a job
read here only reports the voucher's status, it never writes it.

``api_jobs`` records who queued which urgent job, for which premises: the policy lets only that
party (and the GDSC operator) follow it.

A top-up may carry an idempotency key (the ``Idempotency-Key`` header; IETF draft
``draft-ietf-httpapi-idempotency-key-header``): ``api_idempotency`` holds, per party and key, a
digest of the request and the job and voucher it made, written in the same transaction as the
voucher, the queued job and its record (a crash leaves all or none of them). A retried request (a
payment provider's retry, a response lost on the way back) gets the same job and voucher back and
issues nothing (a concurrent one waits on the key's row until the first commits); the same key
with a different request is refused. So a top-up is made once however often it is asked for.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import BigInteger, Column, Connection, DateTime, Integer, String, Table, select, update
from sqlalchemy.exc import IntegrityError

from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.commands.vouchers import VoucherIssuer, vouchers
from smarthub.gdsc.db.database import metadata
from smarthub.gdsc.governance.parties import utc
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import CLAIMED, DONE, FAILED
from smarthub.gdsc.readings.queries import Meter
from smarthub.gdsc.store import Store
from smarthub.wan.contract.bodies import CommandBody, PrepaymentTopup

api_jobs = Table(
    "api_jobs",
    metadata,
    Column("job_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("party_id", String(64), nullable=False, index=True),  # who queued it
    Column("premises_id", String(64), nullable=False),
    Column("meter_id", String(64), nullable=False),
    Column("hub_id", String(64), nullable=False),
    Column("action", String(40), nullable=False),
    Column("command_type", String(64)),  # None: an on-demand read
    Column("voucher_id", String(64)),  # a top-up's voucher
    Column("queued", DateTime(timezone=True), nullable=False),
)

api_idempotency = Table(
    "api_idempotency",
    metadata,
    Column("party_id", String(64), primary_key=True),
    Column("idempotency_key", String(64), primary_key=True),
    Column("request", String(64), nullable=False),  # SHA-256 hex of what was asked
    Column("job_id", BigInteger().with_variant(Integer, "sqlite")),  # None: still being carried out
    Column("voucher_id", String(64)),
    Column("created", DateTime(timezone=True), nullable=False),
)


class IdempotencyConflict(RuntimeError):
    """An idempotency key already used for another request, or for one still in progress."""


# Job states as the API reports them.
QUEUED, IN_FLIGHT = "queued", "in-flight"


class HubInactive(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Job:
    job_id: int
    party_id: str
    premises_id: str
    meter_id: str
    hub_id: str
    action: str
    command_type: str | None
    voucher_id: str | None
    queued: datetime
    state: str  # queued / in-flight / done / failed
    tries: int  # deliveries that failed so far
    finished: datetime | None
    result: dict[str, Any] | None  # the hub's verdict (command) or the read's counts
    error: str | None
    voucher_status: str | None  # pending / credited / refused


class CommandDesk:
    """Signs and queues the API's commands; one lock keeps sign-then-enqueue in counter order
    within this process (the hub refuses a counter below one it has accepted)."""

    def __init__(self, store: Store, signer: CommandSigner, issuer: VoucherIssuer) -> None:
        self.store = store
        self.signer = signer
        self.issuer = issuer
        self.plan = PullPlan(store)

    @classmethod
    def from_state(cls, state: Path, store: Store) -> CommandDesk:
        """The GDSC operator credentials of a state directory (``gdsc/operator.{pem,key}``)."""
        cert, key_path = state / "gdsc" / "operator.pem", state / "gdsc" / "operator.key"
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} is not an EC private key")
        pem = cert.read_bytes()
        return cls(store, CommandSigner(key, pem, store.next_command_counter), VoucherIssuer(store, key, pem))

    def _active(self, hub_id: str) -> None:
        if not any(h.hub_id == hub_id for h in self.store.active_hubs()):
            raise HubInactive(
                f"hub {hub_id!r} is not active (decommissioned or replaced): nothing to send to"
            )

    def command(
        self,
        party_id: str,
        premises_id: str,
        meter: Meter,
        action: str,
        command_type: str,
        body: CommandBody | dict[str, Any],
        now: datetime,
        voucher_id: str | None = None,
        conn: Connection | None = None,
    ) -> int:
        """Queue a signed command and record who asked (in ``conn``'s transaction if given, else
        in one of its own); its job id."""
        self._active(meter.hub_id)
        if conn is None:
            with self.store.engine.begin() as own:
                return self.command(
                    party_id, premises_id, meter, action, command_type, body, now, voucher_id, own
                )
        # Counter and queue entry in one transaction: job order is counter order, even with
        # several API processes queuing for the same hub (PullPlan.queue_command).
        job = self.plan.queue_command(self.signer, meter.hub_id, command_type, body, now, conn=conn)
        self._record(job, party_id, premises_id, meter, action, command_type, voucher_id, now, conn)
        return job

    def top_up(
        self,
        party_id: str,
        premises_id: str,
        meter: Meter,
        action: str,
        amount: Decimal,
        now: datetime,
        conn: Connection | None = None,
    ) -> tuple[int, str]:
        """Issue a voucher (pending until the hub confirms it) and queue its delivery, in one
        transaction (``conn``'s if given): a crash leaves both or neither; (job, voucher)."""
        self._active(meter.hub_id)
        if conn is None:
            with self.store.engine.begin() as own:
                return self.top_up(party_id, premises_id, meter, action, amount, now, own)
        voucher, envelope = self.issuer.issue_signed(meter.hub_id, meter.fuel, amount, now, conn)
        job = self.command(
            party_id,
            premises_id,
            meter,
            action,
            "prepayment.topup",
            PrepaymentTopup.parse(envelope),
            now,
            voucher.voucher_id,
            conn,
        )
        return job, voucher.voucher_id

    def top_up_once(
        self,
        party_id: str,
        premises_id: str,
        meter: Meter,
        action: str,
        amount: Decimal,
        now: datetime,
        key: str,
    ) -> tuple[int, str]:
        """:meth:`top_up` at most once per ``(party_id, key)``: a repeat of the same request
        returns the first one's (job, voucher); raises :class:`IdempotencyConflict` for the key
        used with another request or by one still in progress."""
        asked = f"top-up|{premises_id}|{meter.meter_id}|{amount:.2f}"
        digest = hashlib.sha256(asked.encode()).hexdigest()
        where = (api_idempotency.c.party_id == party_id) & (api_idempotency.c.idempotency_key == key)
        self._active(meter.hub_id)
        # The key, the voucher, the queued job and its record in one transaction: a crash leaves
        # all of them or none (never a key held "in progress" for good), and a concurrent request
        # with the same key waits on the key's row until this one commits, then finds it done.
        try:
            with self.store.engine.begin() as conn:
                conn.execute(
                    api_idempotency.insert().values(
                        party_id=party_id, idempotency_key=key, request=digest, created=now
                    )
                )
                job, voucher = self.top_up(party_id, premises_id, meter, action, amount, now, conn)
                conn.execute(update(api_idempotency).where(where).values(job_id=job, voucher_id=voucher))
            return job, voucher
        except IntegrityError:
            pass  # the key was used before
        with self.store.engine.connect() as conn:
            held = conn.execute(select(api_idempotency).where(where)).one()
        if held.request != digest:
            raise IdempotencyConflict(
                f"Idempotency-Key {key!r} was used for another request (not this top-up)"
            ) from None
        if held.job_id is None or held.voucher_id is None:  # written by a version that claimed first
            raise IdempotencyConflict(
                f"Idempotency-Key {key!r}: the first request with it is still being carried out; retry"
            ) from None
        return int(held.job_id), str(held.voucher_id)

    def read(self, party_id: str, premises_id: str, meter: Meter, action: str, now: datetime) -> int:
        self._active(meter.hub_id)
        job = self.plan.enqueue_read(meter.hub_id, now)
        self._record(job, party_id, premises_id, meter, action, None, None, now)
        return job

    def _record(
        self,
        job: int,
        party_id: str,
        premises_id: str,
        meter: Meter,
        action: str,
        command_type: str | None,
        voucher_id: str | None,
        now: datetime,
        conn: Connection | None = None,
    ) -> None:
        if conn is None:
            with self.store.engine.begin() as own:
                return self._record(
                    job, party_id, premises_id, meter, action, command_type, voucher_id, now, own
                )
        conn.execute(
            api_jobs.insert().values(
                job_id=job,
                party_id=party_id,
                premises_id=premises_id,
                meter_id=meter.meter_id,
                hub_id=meter.hub_id,
                action=action,
                command_type=command_type,
                voucher_id=voucher_id,
                queued=utc(now),
            )
        )

    def job_owner(self, job_id: int) -> tuple[str, str] | None:
        """(party that queued it, premises) of a job the API queued; None if there is none."""
        q = select(api_jobs.c.party_id, api_jobs.c.premises_id).where(api_jobs.c.job_id == job_id)
        with self.store.engine.connect() as conn:
            row = conn.execute(q).first()
        return None if row is None else (row.party_id, row.premises_id)

    def job(self, job_id: int) -> Job | None:
        """The job as the plan has it now; None if the API queued no such job."""
        with self.store.engine.connect() as conn:
            row = conn.execute(select(api_jobs).where(api_jobs.c.job_id == job_id)).first()
            voucher_status = None
            if row is not None and row.voucher_id is not None:
                voucher_status = conn.execute(
                    select(vouchers.c.status).where(
                        vouchers.c.hub_id == row.hub_id, vouchers.c.voucher_id == row.voucher_id
                    )
                ).scalar()
        if row is None:
            return None
        work = self.plan.urgent_job(job_id)
        result = json.loads(work["result"]) if work.get("result") else None
        state, error = QUEUED, work.get("last_error")
        if work["state"] == CLAIMED:
            state = IN_FLIGHT
        elif work["state"] == FAILED:
            state = FAILED
        elif work["state"] == DONE:
            state = DONE
            # Delivered, but the hub may have refused or failed it: that is the command's outcome.
            if (
                row.command_type is not None
                and isinstance(result, dict)
                and result.get("status") != "applied"
            ):
                state = FAILED
                error = f"hub {result.get('status')}: {result.get('code')}: {result.get('detail')}"
        return Job(
            job_id=job_id,
            party_id=row.party_id,
            premises_id=row.premises_id,
            meter_id=row.meter_id,
            hub_id=row.hub_id,
            action=row.action,
            command_type=row.command_type,
            voucher_id=row.voucher_id,
            queued=utc(row.queued),
            state=state,
            tries=int(work["failures"]),
            finished=work.get("finished"),
            result=result if isinstance(result, dict) else None,
            error=error,
            voucher_status=voucher_status,
        )

    def jobs_of(self, party_id: str, after: int | None, limit: int) -> list[int]:
        q = select(api_jobs.c.job_id).where(api_jobs.c.party_id == party_id)
        if after is not None:
            q = q.where(api_jobs.c.job_id > after)
        with self.store.engine.connect() as conn:
            return [int(r[0]) for r in conn.execute(q.order_by(api_jobs.c.job_id).limit(limit))]


def message_id() -> str:
    return uuid.uuid4().hex[:16]
