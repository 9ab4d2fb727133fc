"""Top-up vouchers issued by the GDSC: signed, single-use, kept until the hub confirms them.

A supplier's or payment provider's top-up becomes a :class:`~smarthub.model.prepayment.Voucher`
signed with the GDSC operator key (the key hubs already trust for management commands). The
voucher is recorded here *before* it is sent, and stays ``pending`` until a hub's verdict says
it was credited (now, or earlier: a re-delivery).

:class:`VoucherCourier` is the running GDSC's side of it (called by the GDSC service at every
upkeep step, :mod:`smarthub.gdsc.service`): it settles each pending voucher from the hub's
verdict on a delivered ``prepayment.topup`` job (the plan's ``urgent_work.result``), and re-queues
a voucher whose every delivery ended without a verdict that settles it (undelivered after the
plan's tries, refused as a command, failed in the handler) once the hub has answered a pull
since, i.e. after it came back. A re-send carries the *same* signed voucher under a new command
counter; the hub credits a voucher id once and answers a replay with "credited before", which
settles it, so a top-up survives WAN outages, hub restarts and GDSC restarts and is never
credited twice. The link between a voucher and its jobs is the voucher inside each job's signed
envelope, so it needs no table of its own and survives restarts.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Column, Connection, DateTime, String, Table, Text, and_, insert, select, update

from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.db.database import metadata
from smarthub.gdsc.pull.log import last_answered
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import CLAIMED, DONE, PENDING, Priority, urgent_work
from smarthub.gdsc.store import Store
from smarthub.model.prepayment import Voucher, voucher_envelope
from smarthub.wan.contract.bodies import PrepaymentTopup

vouchers = Table(
    "vouchers",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("voucher_id", String(64), primary_key=True),
    Column("fuel", String(16), nullable=False),
    Column("amount", String(16), nullable=False),
    Column("issued", DateTime(timezone=True), nullable=False),
    Column("envelope", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending / credited / refused
    Column("verdict", Text),
    Column("settled", DateTime(timezone=True)),
)


@dataclass(frozen=True, slots=True)
class PendingVoucher:
    hub_id: str
    voucher_id: str
    envelope: dict[str, str]


class VoucherIssuer:
    def __init__(self, store: Store, private_key: ec.EllipticCurvePrivateKey, signer_pem: bytes) -> None:
        self.store = store
        self.private_key = private_key
        self.signer_pem = signer_pem
        self._lock = threading.Lock()

    def issue(self, hub_id: str, fuel: str, amount: Decimal, now: datetime) -> Voucher:
        """Create, sign and record a voucher (pending until the hub confirms it)."""
        return self.issue_signed(hub_id, fuel, amount, now)[0]

    def issue_signed(
        self, hub_id: str, fuel: str, amount: Decimal, now: datetime, conn: Connection | None = None
    ) -> tuple[Voucher, dict[str, Any]]:
        """:meth:`issue` in ``conn``'s transaction if given (with what the caller writes beside
        it, so a crash leaves all of it or none); the voucher and its signed envelope."""
        voucher = Voucher(f"V{secrets.token_hex(12)}", hub_id, fuel, amount, now)
        signature = self.private_key.sign(voucher.canonical(), ec.ECDSA(hashes.SHA256()))
        envelope = voucher_envelope(voucher, signature, self.signer_pem)
        row = {
            "hub_id": hub_id,
            "voucher_id": voucher.voucher_id,
            "fuel": fuel,
            "amount": f"{amount:.2f}",
            "issued": now,
            "envelope": json.dumps(envelope),
            "status": "pending",
        }
        if conn is not None:
            conn.execute(insert(vouchers).values(**row))
        else:
            with self._lock, self.store.engine.begin() as own:
                own.execute(insert(vouchers).values(**row))
        return voucher, envelope

    def pending(self, hub_id: str | None = None) -> list[PendingVoucher]:
        q = select(vouchers.c.hub_id, vouchers.c.voucher_id, vouchers.c.envelope).where(
            vouchers.c.status == "pending"
        )
        if hub_id is not None:
            q = q.where(vouchers.c.hub_id == hub_id)
        with self.store.engine.connect() as conn:
            return [
                PendingVoucher(r.hub_id, r.voucher_id, json.loads(r.envelope))
                for r in conn.execute(q.order_by(vouchers.c.issued))
            ]

    def settle(self, hub_id: str, voucher_id: str, verdict: dict[str, Any], now: datetime) -> str:
        """Record the hub's verdict on a delivery; returns the voucher's status afterwards.

        Credited (now or before) settles it; a voucher the hub will never credit (bad
        signature, another hub, malformed) settles as refused, for a person to look at; anything
        else (no answer, a command refused as a replay, a handler failure) leaves it pending
        for the next tick.
        """
        with self._lock:
            return settle(self.store, hub_id, voucher_id, verdict, now)


def verdict_status(verdict: dict[str, Any]) -> str:
    """What a hub's verdict on a top-up delivery makes of its voucher (see ``VoucherIssuer.settle``)."""
    given = verdict.get("result")
    result: dict[str, Any] = given if isinstance(given, dict) else {}
    if verdict.get("status") == "applied" and result.get("credited") is True:
        return "credited"
    if verdict.get("status") == "applied" and result.get("refused"):
        return "refused"
    return "pending"


def settle(store: Store, hub_id: str, voucher_id: str, verdict: dict[str, Any], now: datetime) -> str:
    """Record a verdict that settles a *pending* voucher; the voucher's status afterwards.

    Only a pending voucher changes, so settling twice (two deliveries, two GDSC processes) keeps
    the first verdict."""
    status = verdict_status(verdict)
    key = and_(vouchers.c.hub_id == hub_id, vouchers.c.voucher_id == voucher_id)
    with store.engine.begin() as conn:
        if status != "pending":
            conn.execute(
                update(vouchers)
                .where(key, vouchers.c.status == "pending")
                .values(status=status, verdict=json.dumps(verdict), settled=now)
            )
        found = conn.execute(select(vouchers.c.status).where(key)).scalar()
    return str(found) if found is not None else status


TOPUP = "prepayment.topup"


def voucher_of(envelope: str) -> str | None:
    """The voucher id inside a signed ``prepayment.topup`` command envelope (None if it has none)."""
    try:
        command = json.loads(json.loads(envelope)["payload"])
        return str(json.loads(command["body"]["voucher"])["voucher_id"])
    except (ValueError, KeyError, TypeError):
        return None


@dataclass
class VoucherCourier:
    """Settles pending vouchers from delivered jobs and re-sends them (module docstring).

    ``grace``: a voucher with no job at all (the issuer crashed between recording and queueing)
    is queued once it is this old, not earlier, so an API request that is about to queue it is
    not doubled (a double would be harmless anyway: the hub credits a voucher id once)."""

    store: Store
    plan: PullPlan
    signer: CommandSigner
    grace: timedelta = timedelta(minutes=1)

    def tick(self, now: datetime) -> tuple[int, int]:
        """(vouchers settled, vouchers re-queued) at ``now``."""
        v = vouchers
        with self.store.engine.connect() as conn:
            pending = conn.execute(
                select(v.c.hub_id, v.c.voucher_id, v.c.envelope, v.c.issued)
                .where(v.c.status == "pending")
                .order_by(v.c.issued)
            ).all()
            if not pending:
                return 0, 0
            jobs = self._jobs(conn, pending)
            active = {h.hub_id for h in self.store.active_hubs()}
            answered = last_answered(conn, {p.hub_id for p in pending})
        settled = requeued = 0
        for p in pending:
            mine = jobs.get((p.hub_id, p.voucher_id), [])
            done = [j for j in mine if j.state == DONE and j.result]
            if any(
                settle(self.store, p.hub_id, p.voucher_id, json.loads(j.result), now) != "pending"
                for j in done
            ):
                settled += 1
                continue
            if any(j.state in (PENDING, CLAIMED) for j in mine) or p.hub_id not in active:
                continue  # on its way; or no hub to deliver to (a person looks at those)
            if mine:
                last = max((_aware(j.finished) for j in mine if j.finished is not None), default=now)
                back = answered.get(p.hub_id)
                if back is None or back <= last:
                    continue  # the hub has not answered since the last try ended
            elif now - _aware(p.issued) < self.grace:
                continue
            self.plan.queue_command(
                self.signer,
                p.hub_id,
                TOPUP,
                PrepaymentTopup.parse(json.loads(p.envelope)),
                now,
                Priority.URGENT,
            )
            requeued += 1
        return settled, requeued

    def _jobs(self, conn: Any, pending: Iterable[Any]) -> dict[tuple[str, str], list[Any]]:
        since: dict[str, datetime] = {}
        for p in pending:
            since[p.hub_id] = min(since.get(p.hub_id, _aware(p.issued)), _aware(p.issued))
        u = urgent_work
        out: dict[tuple[str, str], list[Any]] = {}
        for hub_id, t in since.items():
            rows = conn.execute(
                select(u.c.id, u.c.state, u.c.result, u.c.finished, u.c.envelope).where(
                    u.c.hub_id == hub_id, u.c.command_type == TOPUP, u.c.queued >= t
                )
            ).all()
            for r in rows:
                vid = voucher_of(r.envelope or "")
                if vid is not None:
                    out.setdefault((hub_id, vid), []).append(r)
        return out


def _aware(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t
