"""The hub's prepayment ledger: credit, debt, emergency credit, top-ups applied exactly once.

One account per fuel. Every change is one SQLite transaction (WAL, ``synchronous=FULL``, like
the history), keyed so that repeating it is harmless:

* a **top-up** by its voucher id (:class:`smarthub.model.prepayment.Voucher`): the GDSC
  delivers a voucher until the hub confirms it, so after a WAN outage or a hub killed between
  receiving a voucher and answering, the same voucher arrives again and is credited once;
* a **charge** (an interval's energy cost, a day's standing charge, a day's debt recovery) by
  a key the caller derives from what is charged (e.g. ``energy/1-0:1.8.0/<interval start>``).

Money is Decimal, stored as text. The rules, as GB prepayment works:

* A top-up first pays the configured share towards **debt**, the rest is **credit**.
* **Emergency credit** (a fixed sum) can be switched on by the consumer at the IHD once credit
  is below the threshold; credit may then fall to minus that sum. A later top-up repays it
  (credit simply rises through zero) and switches it off.
* When credit is exhausted (below zero, or below minus the emergency credit) inside a
  **friendly-credit period**, charges go to debt instead and the supply stays on; outside one
  the supply is disconnected through the meter's breaker or valve.
* After a top-up restores credit, electricity reconnects at once; **gas reconnects only after
  the consumer confirms at the IHD** that appliances are off (a gas valve opened into a home
  with a burner left on is a hazard). The confirmation must come *after* the credit that allows
  reconnection: it is refused while the supply is on or credit is still exhausted, and one given
  is forgotten if credit runs out again before the valve opens, so a stale confirmation never
  lets a later top-up open the valve by itself.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import sqlite3
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from smarthub.hub import sqlite_files
from smarthub.hub.management import STALE_GRACE as STALE_CRL_GRACE
from smarthub.model.prepayment import FUELS, BadVoucher, FriendlyCalendar, Voucher
from smarthub.security.certificates import CertificateRejected, Role, verify_certificate
from smarthub.wan.contract.bodies import PrepaymentRestore, PrepaymentTopup

ZERO = Decimal(0)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    fuel TEXT PRIMARY KEY,
    credit TEXT NOT NULL,
    debt TEXT NOT NULL,
    emergency_active INTEGER NOT NULL,
    supply TEXT NOT NULL,           -- on / off
    reconnect_confirmed INTEGER NOT NULL,
    low_alerted INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS topups (
    voucher_id TEXT PRIMARY KEY,
    fuel TEXT NOT NULL,
    amount TEXT NOT NULL,
    to_debt TEXT NOT NULL,
    to_credit TEXT NOT NULL,
    issued TEXT NOT NULL,
    applied INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS charges (
    key TEXT PRIMARY KEY,
    fuel TEXT NOT NULL,
    amount TEXT NOT NULL,
    from_credit TEXT NOT NULL,
    to_debt TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS prepayment_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    fuel TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""

# Migrations: 1 is the schema when versions began (its IF NOT EXISTS adopts an unversioned file).
SCHEMA = sqlite_files.Schema("prepayment ledger", [_SCHEMA])


class VoucherRefused(Exception):
    """A voucher that will never be credited here (bad signature, other hub, malformed)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class ReconnectRefused(ValueError):
    """A reconnection confirmation given when there is nothing to confirm; the text says why."""


class SupplyAction(enum.StrEnum):
    NONE = "none"
    DISCONNECT = "disconnect"
    RECONNECT = "reconnect"
    AWAIT_CONFIRMATION = "await_confirmation"  # gas: credit is back, the consumer must confirm


@dataclass(frozen=True, slots=True)
class AccountConfig:
    emergency_credit: Decimal = Decimal("5.00")
    emergency_threshold: Decimal = Decimal("1.00")  # EC may be switched on below this credit
    low_credit: Decimal = Decimal("3.00")  # alert the consumer below this
    debt_share: Decimal = Decimal("0.25")  # of each top-up, towards debt
    debt_per_day: Decimal = Decimal("0.00")  # fixed daily recovery from credit
    friendly: FriendlyCalendar = field(default_factory=FriendlyCalendar)


@dataclass(frozen=True, slots=True)
class Balance:
    fuel: str
    credit: Decimal
    debt: Decimal
    emergency_active: bool
    emergency_available: bool
    supply: str
    low_credit: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "fuel": self.fuel,
            "credit": str(self.credit),
            "debt": str(self.debt),
            "emergency_active": self.emergency_active,
            "emergency_available": self.emergency_available,
            "supply": self.supply,
            "low_credit": self.low_credit,
        }


@dataclass(frozen=True, slots=True)
class TopUpResult:
    voucher_id: str
    fuel: str
    applied_now: bool  # False: this voucher was already credited (a re-delivery)
    to_debt: Decimal
    to_credit: Decimal
    balance: Balance


class PrepaymentLedger:
    def __init__(
        self,
        path: Path | str,
        hub_id: str,
        ca_cert: x509.Certificate,
        *,
        crl: x509.CertificateRevocationList | None = None,
        config: Mapping[str, AccountConfig] | None = None,
    ) -> None:
        self.hub_id = hub_id
        self.ca_cert = ca_cert
        self.crl = crl
        self.config = {f: (config or {}).get(f, AccountConfig()) for f in FUELS}
        self._file = sqlite_files.open_database(path, SCHEMA)
        self._db, self._lock = self._file.connection, self._file.lock
        for fuel in FUELS:
            self._db.execute(
                "INSERT OR IGNORE INTO accounts VALUES (?, '0.00', '0.00', 0, 'on', 0, 0)", (fuel,)
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- top-ups ------------------------------------------------------------------------
    def verify(self, envelope: object, now: datetime) -> Voucher:
        """The voucher in a top-up envelope if it is genuine and for this hub."""
        if not isinstance(envelope, Mapping):
            raise VoucherRefused(
                "malformed", f"a voucher envelope is an object, not {type(envelope).__name__}"
            )
        try:
            payload = envelope["voucher"].encode()
            signature = base64.b64decode(envelope["signature"], validate=True)
            signer = x509.load_pem_x509_certificate(envelope["signer"].encode())
        except (KeyError, AttributeError, ValueError, TypeError, binascii.Error) as err:
            raise VoucherRefused("malformed", f"not a voucher envelope: {type(err).__name__} {err}") from None
        try:
            verify_certificate(  # a stale CRL counts within the hub's grace (hub.management)
                signer, self.ca_cert, now, self.crl, expected_role=Role.OPERATOR, crl_grace=STALE_CRL_GRACE
            )
        except CertificateRejected as err:
            raise VoucherRefused("unknown_signer", err.reason) from None
        key = signer.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise VoucherRefused("unknown_signer", "signer certificate does not carry an EC key")
        try:
            key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise VoucherRefused("bad_signature", "signature does not verify over the voucher") from None
        try:
            voucher = Voucher.from_json(json.loads(payload))
        except (ValueError, BadVoucher, RecursionError) as err:  # RecursionError: nested thousands deep
            raise VoucherRefused("malformed", str(err)) from None
        if voucher.canonical() != payload:
            raise VoucherRefused("malformed", "voucher is not in canonical form")
        if voucher.hub_id != self.hub_id:
            raise VoucherRefused(
                "wrong_hub", f"voucher is for hub {voucher.hub_id!r}, this is {self.hub_id!r}"
            )
        return voucher

    def top_up(self, envelope: object, now: datetime) -> TopUpResult:
        """Verify and credit a voucher; a voucher already credited is reported, not credited again."""
        voucher = self.verify(envelope, now)
        with self._tx() as db:
            row = db.execute(
                "SELECT fuel, to_debt, to_credit FROM topups WHERE voucher_id = ?", (voucher.voucher_id,)
            ).fetchone()
            if row is not None:
                return TopUpResult(
                    voucher.voucher_id,
                    row[0],
                    False,
                    Decimal(row[1]),
                    Decimal(row[2]),
                    self._balance(db, row[0]),
                )
            fuel, cfg = voucher.fuel, self.config[voucher.fuel]
            acct = self._account(db, fuel)
            to_debt = min(acct["debt"], (voucher.amount * cfg.debt_share).quantize(Decimal("0.01")))
            to_credit = voucher.amount - to_debt
            credit = acct["credit"] + to_credit
            emergency = acct["emergency_active"] and credit < ZERO
            db.execute(
                "INSERT INTO topups VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    voucher.voucher_id,
                    fuel,
                    str(voucher.amount),
                    str(to_debt),
                    str(to_credit),
                    voucher.issued.isoformat(),
                    int(now.timestamp()),
                ),
            )
            # Topped up above the low-credit line: the next fall below it alerts again.
            rearm = credit >= cfg.low_credit
            db.execute(
                "UPDATE accounts SET credit = ?, debt = ?, emergency_active = ?,"
                " low_alerted = CASE WHEN ? THEN 0 ELSE low_alerted END WHERE fuel = ?",
                (str(credit), str(acct["debt"] - to_debt), int(emergency), int(rearm), fuel),
            )
            self._event(db, now, fuel, "top_up", f"{voucher.voucher_id} £{voucher.amount}")
            return TopUpResult(voucher.voucher_id, fuel, True, to_debt, to_credit, self._balance(db, fuel))

    def top_ups(self, fuel: str | None = None) -> list[dict[str, Any]]:
        """Top-up history, newest first, for the IHD."""
        q = "SELECT voucher_id, fuel, amount, to_debt, to_credit, applied FROM topups"
        args: tuple[Any, ...] = ()
        if fuel is not None:
            q, args = q + " WHERE fuel = ?", (fuel,)
        with self._lock:
            rows = self._db.execute(q + " ORDER BY applied DESC, voucher_id", args).fetchall()
        return [
            {"voucher_id": v, "fuel": f, "amount": a, "to_debt": d, "to_credit": c, "applied": t}
            for v, f, a, d, c, t in rows
        ]

    # -- charges ------------------------------------------------------------------------
    def charge(self, fuel: str, key: str, amount: Decimal, at: datetime) -> bool:
        """Take ``amount`` for what ``key`` names, once; False if that key was already charged.

        Inside a friendly period, what credit (and emergency credit) cannot cover becomes debt.
        Outside one, credit may run below its floor: the supply decision then disconnects.
        """
        if amount < ZERO:
            raise ValueError(f"a charge cannot be negative ({amount})")
        cfg = self.config[fuel]
        with self._tx() as db:
            if db.execute("SELECT 1 FROM charges WHERE key = ?", (key,)).fetchone():
                return False
            acct = self._account(db, fuel)
            floor = -cfg.emergency_credit if acct["emergency_active"] else ZERO
            from_credit, to_debt = amount, ZERO
            if cfg.friendly.is_friendly(at):
                from_credit = max(ZERO, min(amount, acct["credit"] - floor))
                to_debt = amount - from_credit
            credit = acct["credit"] - from_credit
            db.execute(
                "INSERT INTO charges VALUES (?, ?, ?, ?, ?, ?)",
                (key, fuel, str(amount), str(from_credit), str(to_debt), int(at.timestamp())),
            )
            low = credit < cfg.low_credit and not acct["low_alerted"]
            db.execute(
                "UPDATE accounts SET credit = ?, debt = ?, low_alerted = low_alerted OR ? WHERE fuel = ?",
                (str(credit), str(acct["debt"] + to_debt), int(low), fuel),
            )
            self._forget_stale_confirmation(db, fuel, acct, credit, at)
            if low:
                self._event(db, at, fuel, "low_credit", f"credit £{credit:.2f} below £{cfg.low_credit}")
            if to_debt:
                self._event(db, at, fuel, "friendly_credit", f"£{to_debt} to debt ({key})")
            return True

    def adjust(self, fuel: str, key: str, amount: Decimal, at: datetime) -> bool:
        """A settlement adjustment of either sign, once per key: a day's rounding difference
        between the unrounded interval charges and the day's bill (negative: back to credit)."""
        if amount >= ZERO:
            return self.charge(fuel, key, amount, at)
        with self._tx() as db:
            if db.execute("SELECT 1 FROM charges WHERE key = ?", (key,)).fetchone():
                return False
            acct = self._account(db, fuel)
            db.execute(
                "INSERT INTO charges VALUES (?, ?, ?, ?, '0', ?)",
                (key, fuel, str(amount), str(amount), int(at.timestamp())),
            )
            db.execute("UPDATE accounts SET credit = ? WHERE fuel = ?", (str(acct["credit"] - amount), fuel))
            return True

    def charged(self, fuel: str, key_prefix: str) -> Decimal:
        """The sum of the charges of ``fuel`` whose key starts with ``key_prefix`` (exact)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT amount FROM charges WHERE fuel = ? AND substr(key, 1, ?) = ?",
                (fuel, len(key_prefix), key_prefix),
            ).fetchall()
        return sum((Decimal(a) for (a,) in rows), ZERO)

    def recover_debt(self, fuel: str, day: date, at: datetime) -> Decimal:
        """The day's fixed debt recovery, from credit to the debt, once per day."""
        cfg = self.config[fuel]
        key = f"debt-recovery/{day.isoformat()}"
        with self._tx() as db:
            if db.execute("SELECT 1 FROM charges WHERE key = ?", (key,)).fetchone():
                return ZERO
            acct = self._account(db, fuel)
            amount = min(cfg.debt_per_day, acct["debt"])
            db.execute(
                "INSERT INTO charges VALUES (?, ?, ?, ?, ?, ?)",
                (key, fuel, str(amount), str(amount), str(-amount), int(at.timestamp())),
            )
            db.execute(
                "UPDATE accounts SET credit = ?, debt = ? WHERE fuel = ?",
                (str(acct["credit"] - amount), str(acct["debt"] - amount), fuel),
            )
            self._forget_stale_confirmation(db, fuel, acct, acct["credit"] - amount, at)
            return amount

    def add_debt(self, fuel: str, key: str, amount: Decimal, at: datetime) -> bool:
        """Arrears set by the supplier (e.g. moved onto the meter), once per key."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM charges WHERE key = ?", (key,)).fetchone():
                return False
            acct = self._account(db, fuel)
            db.execute(
                "INSERT INTO charges VALUES (?, ?, ?, '0', ?, ?)",
                (key, fuel, str(amount), str(amount), int(at.timestamp())),
            )
            db.execute("UPDATE accounts SET debt = ? WHERE fuel = ?", (str(acct["debt"] + amount), fuel))
            self._event(db, at, fuel, "debt_added", f"£{amount} ({key})")
            return True

    # -- consumer actions at the IHD ----------------------------------------------------
    def activate_emergency_credit(self, fuel: str, at: datetime) -> Balance:
        cfg = self.config[fuel]
        with self._tx() as db:
            acct = self._account(db, fuel)
            if acct["emergency_active"]:
                return self._balance(db, fuel)
            if acct["credit"] >= cfg.emergency_threshold:
                raise ValueError(
                    f"emergency credit is available below £{cfg.emergency_threshold},"
                    f" credit is £{acct['credit']}"
                )
            db.execute("UPDATE accounts SET emergency_active = 1 WHERE fuel = ?", (fuel,))
            self._event(db, at, fuel, "emergency_credit", f"£{cfg.emergency_credit} switched on")
            return self._balance(db, fuel)

    def confirm_reconnect(self, fuel: str, at: datetime) -> None:
        """The consumer confirms at the IHD that it is safe to restore supply (needed for gas).

        Only while a reconnection awaits it: the supply is off and credit allows it again.
        Otherwise :class:`ReconnectRefused`, and nothing is recorded: a confirmation given with
        no credit would otherwise let a top-up days later open the valve unattended."""
        cfg = self.config[fuel]
        with self._tx() as db:
            acct = self._account(db, fuel)
            if acct["supply"] != "off":
                raise ReconnectRefused(f"the {fuel} supply is on: there is nothing to reconnect")
            if acct["credit"] <= self._floor(acct, cfg):
                raise ReconnectRefused(
                    f"{fuel} credit is £{acct['credit']}: top up first, then confirm the reconnection"
                )
            db.execute("UPDATE accounts SET reconnect_confirmed = 1 WHERE fuel = ?", (fuel,))
            self._event(db, at, fuel, "reconnect_confirmed", "by the consumer at the IHD")

    @staticmethod
    def _floor(acct: dict[str, Any], cfg: AccountConfig) -> Decimal:
        return -cfg.emergency_credit if acct["emergency_active"] else ZERO

    def _forget_stale_confirmation(
        self, db: sqlite3.Connection, fuel: str, acct: dict[str, Any], credit: Decimal, at: datetime
    ) -> None:
        """Credit ran out again while the supply is off: a confirmation given before no longer
        counts (the next top-up needs a fresh one)."""
        stale = acct["supply"] == "off" and acct["reconnect_confirmed"]
        if stale and credit <= self._floor(acct, self.config[fuel]):
            db.execute("UPDATE accounts SET reconnect_confirmed = 0 WHERE fuel = ?", (fuel,))
            self._event(db, at, fuel, "reconnect_confirmation_void", "credit exhausted again")

    # -- supply -------------------------------------------------------------------------
    def supply_action(self, fuel: str, at: datetime) -> SupplyAction:
        """What the hub must do to the meter's breaker or valve now."""
        cfg = self.config[fuel]
        with self._lock:
            acct = self._account(self._db, fuel)
        floor = self._floor(acct, cfg)
        exhausted = acct["credit"] <= floor
        if acct["supply"] == "on":
            if exhausted and not cfg.friendly.is_friendly(at):
                return SupplyAction.DISCONNECT
            return SupplyAction.NONE
        if acct["credit"] <= floor:
            return SupplyAction.NONE
        if fuel == "gas" and not acct["reconnect_confirmed"]:
            return SupplyAction.AWAIT_CONFIRMATION
        return SupplyAction.RECONNECT

    def supply_changed(self, fuel: str, state: str, at: datetime, reason: str) -> None:
        """Record that the meter's breaker/valve is now ``state`` ("on" or "off")."""
        if state not in ("on", "off"):
            raise ValueError(f"supply state {state!r}")
        with self._tx() as db:
            db.execute(
                "UPDATE accounts SET supply = ?, reconnect_confirmed = 0 WHERE fuel = ?", (state, fuel)
            )
            self._event(db, at, fuel, f"supply_{state}", reason)

    # -- recovery (issue 20 item 2) -------------------------------------------------------
    def snapshot(self, fuel: str) -> dict[str, Any]:
        """What the GDSC keeps to restore this account on a replaced or wiped hub: the balance
        and every top-up credited (``PrepaymentRestore``'s fields)."""
        with self._lock:
            acct = self._account(self._db, fuel)
            rows = self._db.execute(
                "SELECT voucher_id, amount, to_debt, to_credit, issued, applied FROM topups"
                " WHERE fuel = ? ORDER BY applied, voucher_id",
                (fuel,),
            ).fetchall()
        return {
            "fuel": fuel,
            "credit": str(acct["credit"]),
            "debt": str(acct["debt"]),
            "emergency_active": acct["emergency_active"],
            "topups": [list(r) for r in rows],
        }

    def restore(self, body: PrepaymentRestore, now: datetime) -> bool:
        """Restore a backed-up account onto this (blank) hub, once per backup (``as_of``): False
        if this backup was restored before (a re-delivered command changes nothing).

        What this hub did since it came up blank is kept on top of the backup: the credit and
        debt it holds now are added to the backup's (a top-up credited, consumption charged
        before the restore arrived), less any top-up the backup lists as well (a voucher the
        old storage had credited, credited here again because its verdict never reached the
        GDSC). The backup's top-ups are recorded as credited, so none of them is credited again.
        """
        key = f"restore/{body.fuel}/{int(body.as_of.timestamp())}"
        listed = {t.voucher_id for t in body.topups}
        with self._tx() as db:
            if db.execute("SELECT 1 FROM charges WHERE key = ?", (key,)).fetchone():
                return False
            acct = self._account(db, body.fuel)
            twice_credit = twice_debt = ZERO
            for vid, to_debt, to_credit in db.execute(
                "SELECT voucher_id, to_debt, to_credit FROM topups WHERE fuel = ?", (body.fuel,)
            ).fetchall():
                if vid in listed:
                    twice_credit += Decimal(to_credit)
                    twice_debt += Decimal(to_debt)
            credit = body.credit + acct["credit"] - twice_credit
            debt = body.debt + acct["debt"] + twice_debt
            db.execute(
                "INSERT INTO charges VALUES (?, ?, '0', '0', '0', ?)", (key, body.fuel, int(now.timestamp()))
            )
            db.executemany(
                "INSERT OR IGNORE INTO topups VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        t.voucher_id,
                        body.fuel,
                        str(t.amount),
                        str(t.to_debt),
                        str(t.to_credit),
                        t.issued,
                        t.applied,
                    )
                    for t in body.topups
                ],
            )
            db.execute(
                "UPDATE accounts SET credit = ?, debt = ?, emergency_active = ? WHERE fuel = ?",
                (str(credit), str(debt), int(body.emergency_active or acct["emergency_active"]), body.fuel),
            )
            self._event(
                db,
                now,
                body.fuel,
                "restored",
                f"credit £{credit} debt £{debt} (backup of {body.as_of.isoformat()})",
            )
        return True

    def restored_as_of(self) -> datetime | None:
        """When the newest backup restored onto this ledger was taken (None: none was)."""
        with self._lock:
            keys = [k for (k,) in self._db.execute("SELECT key FROM charges WHERE key LIKE 'restore/%'")]
        stamps = [int(k.rsplit("/", 1)[1]) for k in keys]
        return datetime.fromtimestamp(max(stamps), UTC) if stamps else None

    # -- views --------------------------------------------------------------------------
    def balance(self, fuel: str) -> Balance:
        with self._lock:
            return self._balance(self._db, fuel)

    def events(self, limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT at, fuel, kind, detail FROM prepayment_events ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [{"at": a, "fuel": f, "kind": k, "detail": d} for a, f, k, d in rows]

    # -- internals ----------------------------------------------------------------------
    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._file.transaction()

    @staticmethod
    def _account(db: sqlite3.Connection, fuel: str) -> dict[str, Any]:
        if fuel not in FUELS:
            raise ValueError(f"unknown fuel {fuel!r}")
        credit, debt, ec_active, supply, confirmed, low = db.execute(
            "SELECT credit, debt, emergency_active, supply, reconnect_confirmed, low_alerted"
            " FROM accounts WHERE fuel = ?",
            (fuel,),
        ).fetchone()
        return {
            "credit": Decimal(credit),
            "debt": Decimal(debt),
            "emergency_active": bool(ec_active),
            "supply": supply,
            "reconnect_confirmed": bool(confirmed),
            "low_alerted": bool(low),
        }

    def _balance(self, db: sqlite3.Connection, fuel: str) -> Balance:
        a, cfg = self._account(db, fuel), self.config[fuel]
        return Balance(
            fuel,
            a["credit"],
            a["debt"],
            a["emergency_active"],
            not a["emergency_active"] and a["credit"] < cfg.emergency_threshold,
            a["supply"],
            a["credit"] < cfg.low_credit,
        )

    @staticmethod
    def _event(db: sqlite3.Connection, at: datetime, fuel: str, kind: str, detail: str) -> None:
        db.execute(
            "INSERT INTO prepayment_events(at, fuel, kind, detail) VALUES (?, ?, ?, ?)",
            (int(at.timestamp()), fuel, kind, detail),
        )


def topup_command(
    ledger: PrepaymentLedger, now: Callable[[], datetime]
) -> Callable[[PrepaymentTopup], dict[str, Any]]:
    """The ``prepayment.topup`` management command: credit the voucher the body carries.

    The verdict always says whether the voucher is (now or already) credited; a voucher this
    hub will never credit is answered ``refused`` with the reason, so the GDSC stops sending it.
    """

    def handle(body: PrepaymentTopup) -> dict[str, Any]:
        try:
            r = ledger.top_up(body.to_json(), now())
        except VoucherRefused as refused:
            return {"credited": False, "refused": refused.code, "reason": refused.reason}
        return {
            "credited": True,
            "voucher_id": r.voucher_id,
            "applied_now": r.applied_now,
            "balance": r.balance.to_json(),
        }

    return handle
