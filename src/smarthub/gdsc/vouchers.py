"""Top-up vouchers issued by the GDSC: signed, single-use, kept until the hub confirms them.

A supplier's or payment provider's top-up becomes a :class:`~smarthub.model.prepayment.Voucher`
signed with the GDSC operator key (the key hubs already trust for management commands). The
voucher is recorded here *before* it is sent, and stays ``pending`` until a hub's verdict says
it was credited (now, or earlier: a re-delivery); the scheduler re-sends pending vouchers in the
urgent class at every tick, so a top-up survives WAN outages, hub restarts and GDSC restarts.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Column, DateTime, String, Table, Text, and_, insert, select, update

from smarthub.gdsc.store import Store, metadata
from smarthub.model.prepayment import Voucher, voucher_envelope

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
        voucher = Voucher(f"V{secrets.token_hex(12)}", hub_id, fuel, amount, now)
        signature = self.private_key.sign(voucher.canonical(), ec.ECDSA(hashes.SHA256()))
        envelope = voucher_envelope(voucher, signature, self.signer_pem)
        with self._lock, self.store.engine.begin() as conn:
            conn.execute(
                insert(vouchers).values(
                    hub_id=hub_id,
                    voucher_id=voucher.voucher_id,
                    fuel=fuel,
                    amount=f"{amount:.2f}",
                    issued=now,
                    envelope=json.dumps(envelope),
                    status="pending",
                )
            )
        return voucher

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
        status = "pending"
        result = verdict.get("result") if isinstance(verdict.get("result"), dict) else {}
        if verdict.get("status") == "applied" and result.get("credited") is True:
            status = "credited"
        elif verdict.get("status") == "applied" and result.get("refused"):
            status = "refused"
        if status != "pending":
            with self._lock, self.store.engine.begin() as conn:
                conn.execute(
                    update(vouchers)
                    .where(and_(vouchers.c.hub_id == hub_id, vouchers.c.voucher_id == voucher_id))
                    .values(status=status, verdict=json.dumps(verdict), settled=now)
                )
        return status
