"""Prepayment top-up provider: payments by card or mobile turned into top-ups through the API, once.

A provider outside the DCC (as PayPoint-style vendors are) takes the payment and asks the GDSC to
credit the meter (``POST /v1/premises/{id}/commands/top-up``). The access policy lets only the
premises' current supplier top up, so the provider acts as the supplier's agent: it holds an
OAuth2 client the GDSC registered to the supplier with the command scopes only.

Exactly once, end to end:

* the payment provider's webhook arrives at least once; the provider's ledger (SQLite, its own
  database) keeps each payment id once, so a duplicate notification is acknowledged and ignored;
* each payment is sent with ``Idempotency-Key: <payment id>``: if the GDSC made the top-up but the
  answer was lost (connection reset, timeout), the retry gets the same job and voucher back and the
  GDSC credits nothing more; while the GDSC is unreachable the payment stays pending and is
  retried at the next round — never refunded on a guess, since the top-up may have been made;
* a payment the GDSC refuses for good (not the supplier for that meter, no such meter, the hub not
  active) is refunded through the payment provider, and the ledger records the refund;
* a delivered top-up is followed to the meter's verdict (``GET /v1/jobs/{id}``: the voucher
  ``credited`` or ``refused``, :meth:`TopUpProvider.confirm`); a voucher the meter refused is
  refunded too.

The OAuth2 client needs ``commands:write`` (top-ups) and ``commands:read`` (following them).

Every payment ends with a receipt: the voucher and job the GDSC issued, or the refund and why.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from smarthub_services.client import ApiError, DataServicesClient, Unreachable
from smarthub_services.payments import Payment

RECEIVED, DELIVERED, REFUNDED = "received", "delivered", "refunded"
SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    payment_id TEXT PRIMARY KEY,
    method TEXT NOT NULL,
    premises_id TEXT NOT NULL,
    meter_id TEXT NOT NULL,
    amount TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    job_id INTEGER,
    voucher_id TEXT,
    refund_id TEXT,
    reason TEXT,
    outcome TEXT,
    received TEXT NOT NULL,
    settled TEXT
)
"""


@dataclass(frozen=True, slots=True)
class Receipt:
    payment_id: str
    method: str
    premises_id: str
    meter_id: str
    amount: Decimal
    state: str
    job_id: int | None
    voucher_id: str | None
    refund_id: str | None
    reason: str | None
    outcome: str | None = None  # the meter's verdict: credited / refused (None: not known yet)

    def text(self) -> str:
        if self.state == DELIVERED and self.outcome == "credited":
            return f"Top-up £{self.amount:.2f} by {self.method}: credited to meter {self.meter_id}."
        if self.state == DELIVERED:
            return (
                f"Top-up £{self.amount:.2f} by {self.method} for meter {self.meter_id}: voucher "
                f"{self.voucher_id} sent to your meter (job {self.job_id})."
            )
        if self.state == REFUNDED:
            return f"Top-up £{self.amount:.2f} by {self.method} could not be made ({self.reason}): refunded."
        return f"Top-up £{self.amount:.2f} by {self.method}: payment received, being sent to your meter."


def _definitive(err: ApiError) -> bool:
    """A refusal the GDSC will repeat however often asked (so the payment is refunded)."""
    if err.status == 409 and "still being carried out" in err.detail:
        return False
    return err.status in (400, 403, 404, 409, 422)


class TopUpProvider:
    def __init__(
        self,
        ledger: Path | str,
        api: DataServicesClient,
        refund: Callable[[str, Decimal], str],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = sqlite3.connect(str(ledger), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(SCHEMA)
        self.api = api
        self._refund = refund
        self._now = now

    def close(self) -> None:
        self.db.close()

    # -- the payment provider's webhook --------------------------------------------------------

    def on_payment(self, payment: Payment) -> None:
        """Record a successful payment (a repeat of a notification changes nothing)."""
        if payment.amount <= 0:
            raise ValueError(f"{payment.payment_id}: amount {payment.amount} is not positive")
        self.db.execute(
            "INSERT OR IGNORE INTO payments"
            " (payment_id, method, premises_id, meter_id, amount, state, received)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                payment.payment_id,
                payment.method,
                payment.premises_id,
                payment.meter_id,
                f"{payment.amount:.2f}",
                RECEIVED,
                self._now().isoformat(),
            ),
        )

    # -- delivery ------------------------------------------------------------------------------

    def deliver(self) -> int:
        """Try every payment not yet delivered or refunded, once; how many remain pending."""
        pending = self.db.execute(
            "SELECT payment_id, premises_id, meter_id, amount FROM payments"
            " WHERE state = ? ORDER BY payment_id",
            (RECEIVED,),
        ).fetchall()
        if not pending:
            return 0
        try:  # one token per round at most: a GDSC that is down is not hammered for tokens
            self.api.token()
        except (Unreachable, ApiError):
            return len(pending)
        left = 0
        for n, (payment_id, premises_id, meter_id, amount) in enumerate(pending):
            self.db.execute("UPDATE payments SET attempts = attempts + 1 WHERE payment_id = ?", (payment_id,))
            path = f"/v1/premises/{urllib.parse.quote(premises_id)}/commands/top-up"
            try:
                _, job = self.api.request(
                    "POST",
                    path,
                    body={"meter_id": meter_id, "amount": amount},
                    headers={"Idempotency-Key": payment_id},
                )
            except Unreachable:
                left += 1  # made or not, the key makes the retry safe: try again next round
                continue
            except ApiError as err:
                if err.status == 429:  # asked to slow down: the rest waits for the next round
                    return left + len(pending) - n
                if not _definitive(err):
                    left += 1
                    continue
                refund_id = self._refund(payment_id, Decimal(amount))
                self.db.execute(
                    "UPDATE payments SET state = ?, refund_id = ?, reason = ?, settled = ?"
                    " WHERE payment_id = ?",
                    (REFUNDED, refund_id, f"{err.status}: {err.detail}", self._now().isoformat(), payment_id),
                )
                continue
            self.db.execute(
                "UPDATE payments SET state = ?, job_id = ?, voucher_id = ?, settled = ? WHERE payment_id = ?",
                (DELIVERED, job["job_id"], job["voucher_id"], self._now().isoformat(), payment_id),
            )
        return left

    def confirm(self) -> int:
        """Follow delivered top-ups to the meter's verdict; how many are still unsettled. A voucher
        the meter refused is refunded (the payer was charged for credit they did not get)."""
        open_ = self.db.execute(
            "SELECT payment_id, amount, job_id, voucher_id FROM payments"
            " WHERE state = ? AND outcome IS NULL ORDER BY payment_id",
            (DELIVERED,),
        ).fetchall()
        left = 0
        for payment_id, amount, job_id, voucher_id in open_:
            try:
                job = self.api.get(f"/v1/jobs/{int(job_id)}")
            except (Unreachable, ApiError):
                left += 1
                continue
            status = job.get("voucher_status")
            if status == "credited":
                self.db.execute(
                    "UPDATE payments SET outcome = ? WHERE payment_id = ?", ("credited", payment_id)
                )
            elif status == "refused":
                refund_id = self._refund(payment_id, Decimal(amount))
                self.db.execute(
                    "UPDATE payments SET state = ?, outcome = ?, refund_id = ?, reason = ?, settled = ?"
                    " WHERE payment_id = ?",
                    (
                        REFUNDED,
                        "refused",
                        refund_id,
                        f"the meter refused voucher {voucher_id}",
                        self._now().isoformat(),
                        payment_id,
                    ),
                )
            else:
                left += 1
        return left

    def receipts(self) -> list[Receipt]:
        rows = self.db.execute(
            "SELECT payment_id, method, premises_id, meter_id, amount, state, job_id, voucher_id, refund_id,"
            " reason, outcome FROM payments ORDER BY payment_id"
        ).fetchall()
        return [Receipt(r[0], r[1], r[2], r[3], Decimal(r[4]), *r[5:]) for r in rows]


def main(argv: list[str] | None = None) -> int:
    """``python -m smarthub_services.topup_provider``: take one payment through the simulated
    payment provider (or none, ``--amount`` left out), deliver what the ledger holds pending and
    follow delivered top-ups to the meter's verdict; a receipt per payment (JSON lines)."""
    import argparse
    import json
    import os
    import random
    import sys

    from smarthub_services.client import Credentials
    from smarthub_services.payments import Declined, SimulatedPaymentProvider

    ap = argparse.ArgumentParser(prog="topup-provider", description=__doc__.split("\n\n")[0])
    ap.add_argument("--api", required=True, help="the GDSC data services API's base URL")
    ap.add_argument(
        "--client-id", required=True, help="the OAuth2 client the supplier registered for its agent"
    )
    ap.add_argument("--client-secret-file", type=Path, help="else $SERVICE_CLIENT_SECRET")
    ap.add_argument("--ledger", type=Path, required=True, help="the provider's SQLite ledger")
    ap.add_argument("--premises")
    ap.add_argument("--meter")
    ap.add_argument("--amount", type=Decimal, help="pounds; with --premises and --meter")
    ap.add_argument("--method", choices=("card", "mobile"), default="card")
    args = ap.parse_args(argv)
    secret_file = args.client_secret_file
    secret = secret_file.read_text().strip() if secret_file else os.environ.get("SERVICE_CLIENT_SECRET", "")
    if not secret:
        ap.error("give --client-secret-file or set SERVICE_CLIENT_SECRET")
    payments = SimulatedPaymentProvider(random.Random(), decline=0.0, duplicate=0.0, lost_ack=0.0)
    provider = TopUpProvider(
        args.ledger, DataServicesClient(args.api, Credentials(args.client_id, secret)), payments.refund
    )
    try:
        if args.amount is not None:
            if not (args.premises and args.meter):
                ap.error("--amount needs --premises and --meter")
            try:
                payments.pay(args.method, args.premises, args.meter, args.amount)
            except Declined as err:
                print(f"topup-provider: {err}", file=sys.stderr)
                return 2
            payments.notify(provider.on_payment)
        left = provider.deliver()
        provider.confirm()  # delivered top-ups followed to the meter's verdict (credited or refunded)
        for r in provider.receipts():
            print(json.dumps({"payment_id": r.payment_id, "state": r.state, "receipt": r.text()}))
        return 0 if left == 0 else 3
    finally:
        provider.close()


if __name__ == "__main__":
    import sys

    sys.exit(main())
