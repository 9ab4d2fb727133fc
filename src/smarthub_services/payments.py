"""A simulated payment provider (card acquirer or mobile-payment operator), outside the GDSC.

It behaves as real ones do towards a merchant: a payment is authorised or declined; a successful
payment is notified to the merchant's webhook *at least once* — a delivery the merchant does not
acknowledge (it raised, or the acknowledgement was lost) is delivered again, and some are
delivered twice anyway; a refund is asked for by payment id and is idempotent. Failures are drawn
from a seeded ``random.Random``, so a test's run is repeatable.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

METHODS = ("card", "mobile")


@dataclass(frozen=True, slots=True)
class Payment:
    payment_id: str
    method: str  # "card" or "mobile"
    premises_id: str
    meter_id: str
    amount: Decimal


class Declined(Exception):
    """The payment was not authorised (the payer is told at once; no webhook follows)."""


Webhook = Callable[[Payment], None]


@dataclass
class SimulatedPaymentProvider:
    """``decline`` is the share of payments declined, ``duplicate`` the share of notifications
    delivered twice even when acknowledged, ``lost_ack`` the share of acknowledgements lost."""

    rng: random.Random
    decline: float = 0.1
    duplicate: float = 0.3
    lost_ack: float = 0.2
    outbox: list[Payment] = field(default_factory=list)  # notifications still to be delivered
    refunds: dict[str, Decimal] = field(default_factory=dict)
    deliveries: int = 0
    _next: int = 0

    def pay(self, method: str, premises_id: str, meter_id: str, amount: Decimal) -> Payment:
        if method not in METHODS:
            raise ValueError(f"payment method must be one of {', '.join(METHODS)}, not {method!r}")
        self._next += 1
        payment = Payment(f"{method}-{self._next:06d}", method, premises_id, meter_id, amount)
        if self.rng.random() < self.decline:
            raise Declined(f"{payment.payment_id}: declined by the issuer")
        self.outbox.append(payment)
        return payment

    def notify(self, webhook: Webhook) -> int:
        """One round of webhook deliveries; the notifications that remain undelivered."""
        pending, self.outbox = self.outbox, []
        for payment in pending:
            self.deliveries += 1
            try:
                webhook(payment)
            except Exception:  # the merchant failed: deliver again next round
                self.outbox.append(payment)
                continue
            if self.rng.random() < self.lost_ack or self.rng.random() < self.duplicate:
                self.outbox.append(payment)  # acknowledged, but the provider did not hear it (or resends)
        return len(self.outbox)

    def refund(self, payment_id: str, amount: Decimal) -> str:
        """Refund a payment (again: the same refund)."""
        self.refunds.setdefault(payment_id, amount)
        return f"refund-{payment_id}"
