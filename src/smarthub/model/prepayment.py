"""Prepayment value types: top-up vouchers and the friendly-credit calendar.

A **top-up voucher** is the unit of money sent to a prepayment hub. It is single-use by its
``voucher_id``: the GDSC may deliver the same voucher as often as it needs to (after a WAN
outage, after a hub restart that lost the verdict) and the hub credits it once. It is signed
by the GDSC (ECDSA P-256 over :meth:`Voucher.canonical`) and the signature travels beside it;
this module only defines the format, the signing and checking live with the GDSC and the hub.

**Friendly-credit periods** are the hours in which a prepayment meter does not disconnect for
lack of credit, even when credit and emergency credit are exhausted, because help and top-up
outlets are hard to reach: evenings, nights, weekends and bank holidays. Energy used meanwhile
becomes debt, taken back at the next top-up. GB smart pay-as-you-go meters are configured by
the supplier; a common setting (EDF's published one) is Monday to Friday 18:00-11:00 and all
weekend and bank-holiday long until 11:00 the next working day, which is our default.
:class:`FriendlyCalendar` answers "is *t* friendly?" in local time and when the period ends.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

FUELS = ("electricity", "gas")
MAX_TOPUP = Decimal("500.00")  # one voucher; larger sums are a data-entry error or fraud
_VOUCHER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{7,63}$")


class BadVoucher(ValueError):
    """A voucher that cannot be credited; the message says why."""


@dataclass(frozen=True, slots=True)
class Voucher:
    voucher_id: str  # unique across the GDSC: the single-use key
    hub_id: str
    fuel: str
    amount: Decimal  # pounds sterling, two decimal places
    issued: datetime

    def __post_init__(self) -> None:
        if not _VOUCHER_ID.match(self.voucher_id):
            raise BadVoucher(f"voucher id {self.voucher_id[:70]!r} is not 8-64 letters, digits or ._:-")
        if self.fuel not in FUELS:
            raise BadVoucher(f"voucher fuel {self.fuel[:20]!r} is not one of {FUELS}")
        if not isinstance(self.amount, Decimal) or not self.amount.is_finite():
            raise BadVoucher("voucher amount must be a finite Decimal")
        if self.amount <= 0 or self.amount > MAX_TOPUP or self.amount.as_tuple().exponent != -2:
            raise BadVoucher(f"voucher amount {self.amount} must be 0.01..{MAX_TOPUP} with pence")
        if self.issued.tzinfo is None:
            raise BadVoucher("voucher issue time has no time zone")

    def canonical(self) -> bytes:
        """The signed bytes: sorted-key compact JSON, amount as a string (never a float)."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    def to_json(self) -> dict[str, str]:
        return {
            "voucher_id": self.voucher_id,
            "hub_id": self.hub_id,
            "fuel": self.fuel,
            "amount": f"{self.amount:.2f}",
            "issued": self.issued.isoformat(),
        }

    @classmethod
    def from_json(cls, data: object) -> Voucher:
        if not isinstance(data, Mapping):
            raise BadVoucher(f"voucher is a {type(data).__name__}, not an object")
        missing = {"voucher_id", "hub_id", "fuel", "amount", "issued"} - set(data)
        if missing:
            raise BadVoucher(f"voucher lacks {sorted(missing)}")
        if extra := set(data) - {"voucher_id", "hub_id", "fuel", "amount", "issued"}:
            raise BadVoucher(f"voucher has unknown fields {sorted(extra)[:5]}")
        for k in ("voucher_id", "hub_id", "fuel", "amount", "issued"):
            if not isinstance(data[k], str):
                raise BadVoucher(f"voucher field {k!r} must be a string")
        if not re.fullmatch(r"\d{1,3}\.\d{2}", data["amount"]):
            raise BadVoucher(f"voucher amount {data['amount'][:20]!r} is not pounds with pence")
        try:
            amount = Decimal(data["amount"])
            issued = datetime.fromisoformat(data["issued"])
        except (InvalidOperation, ValueError) as err:
            raise BadVoucher(f"voucher field does not parse: {err}") from None
        return cls(data["voucher_id"], data["hub_id"], data["fuel"], amount, issued)


@dataclass(frozen=True, slots=True)
class FriendlyCalendar:
    """When disconnection for lack of credit is not allowed (local time).

    Defaults: every day from 18:00 to 11:00 the next morning, all of Saturday and Sunday, and
    the listed bank holidays (so a weekend runs on to 11:00 on Monday).
    """

    evening_start: time = time(18, 0)
    morning_end: time = time(11, 0)
    weekend: bool = True
    holidays: frozenset[date] = field(default_factory=frozenset)
    zone: str = "Europe/London"

    def is_friendly(self, t: datetime) -> bool:
        if t.tzinfo is None:
            raise ValueError("friendly-credit checks need an aware time")
        local = t.astimezone(ZoneInfo(self.zone))
        if local.date() in self.holidays or (self.weekend and local.weekday() >= 5):
            return True
        return local.time() >= self.evening_start or local.time() < self.morning_end

    def period_end(self, t: datetime) -> datetime:
        """The first instant after ``t`` that is not friendly (``t`` itself if it is not)."""
        step = timedelta(minutes=15)
        end = t
        # Walk in quarter hours: friendly periods start and end on them; a long weekend with
        # bank holidays is at most a few hundred steps.
        for _ in range(4 * 24 * 14):
            if not self.is_friendly(end):
                return end
            end = (end + step).replace(second=0, microsecond=0)
            end -= timedelta(minutes=end.minute % 15)
        raise ValueError("the calendar has no unfriendly time in the next two weeks")

    def to_json(self) -> dict[str, Any]:
        return {
            "evening_start": self.evening_start.isoformat(),
            "morning_end": self.morning_end.isoformat(),
            "weekend": self.weekend,
            "holidays": sorted(d.isoformat() for d in self.holidays),
            "zone": self.zone,
        }


def voucher_envelope(voucher: Voucher, signature: bytes, signer_pem: bytes) -> dict[str, str]:
    """What a top-up command carries: the canonical voucher, its signature, the signer's certificate."""
    return {
        "voucher": voucher.canonical().decode(),
        "signature": base64.b64encode(signature).decode(),
        "signer": signer_pem.decode(),
    }
