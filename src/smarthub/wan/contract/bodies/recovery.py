"""Bodies of the recovery commands: what the GDSC restores to a hub that was replaced or lost
its storage (issue 20, item 2), and the snapshot of the hub-only state it keeps for that.

* ``recovery.snapshot`` asks the hub for what only the hub knows (its prepayment accounts and the
  vouchers it credited); the hub answers in its verdict, which the GDSC keeps as the backup.
* ``history.restore`` carries up to :data:`MAX_ROWS` intervals of one meter channel, as the GDSC
  stored them (value, quality; no register reading: the GDSC keeps advances only).
* ``prepayment.restore`` sets one fuel's prepayment account to the backed-up balance, once per
  ``as_of`` (a re-delivery changes nothing).
* ``recovery.complete`` ends a recovery: the hub reports its storage as restored from then on.

Everything else a recovery sends (tariff versions, consents, supplier keys) is the command that
set it in the first place, signed again for the hub being restored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Self

from smarthub.wan.contract.bodies.base import CommandBody, Fields, NoFields

MAX_ROWS = 2000  # intervals per history.restore: a month of half-hours, ~60 kB on the wire
RESTORE_FUELS = ("electricity", "gas")


@dataclass(frozen=True, slots=True)
class RecoverySnapshot(NoFields):
    """Ask the hub for its restorable state (the verdict carries it)."""

    TYPE: ClassVar[str] = "recovery.snapshot"


@dataclass(frozen=True, slots=True)
class HistoryRestore(CommandBody):
    """Intervals of one channel (``meter``, ``obis``, ``duration`` s, values in units of
    10**``power_of_ten``); each row ``[start, value, quality]``, start in epoch seconds UTC on the
    channel's grid."""

    TYPE: ClassVar[str] = "history.restore"
    meter: str
    obis: str
    duration: int
    power_of_ten: int
    rows: tuple[tuple[int, int, int], ...]
    fuel: str = "electricity"

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        f = Fields(cls.TYPE, body)
        duration = f.integer("duration", minimum=1)
        if 86400 % duration:
            raise f.bad("duration", f"must divide a day, got {duration}")
        p10 = f.integer("power_of_ten")
        if not -9 <= p10 <= 9:
            raise f.bad("power_of_ten", f"must be between -9 and 9, got {p10}")
        raw = f.array("rows")
        if len(raw) > MAX_ROWS:
            raise f.bad("rows", f"must hold at most {MAX_ROWS} intervals, got {len(raw)}")
        rows = []
        for i, row in enumerate(raw):
            if not _int_triple(row):
                raise f.bad(f"rows[{i}]", "must be [start, value, quality], three integers")
            assert isinstance(row, Sequence)
            start, value, quality = int(row[0]), int(row[1]), int(row[2])
            if start < 0 or start % duration:
                raise f.bad(f"rows[{i}]", f"start {start} is not on the {duration} s grid")
            if not 0 <= quality <= 0xFFFF:
                raise f.bad(f"rows[{i}]", f"quality {quality} is not 16 bits")
            rows.append((start, value, quality))
        return cls(
            f.text("meter", nonempty=True, max_len=64),
            f.text("obis", nonempty=True, max_len=32),
            duration,
            p10,
            tuple(rows),
            f.text("fuel", "electricity", nonempty=True, max_len=16),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "meter": self.meter,
            "obis": self.obis,
            "duration": self.duration,
            "power_of_ten": self.power_of_ten,
            "rows": [list(r) for r in self.rows],
            "fuel": self.fuel,
        }


def _int_triple(row: object) -> bool:
    return (
        isinstance(row, Sequence)
        and not isinstance(row, str)
        and len(row) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) for v in row)
    )


@dataclass(frozen=True, slots=True)
class TopUpRow:
    """A top-up the hub had credited: so it shows in the display's history again, and the
    same voucher is never credited twice."""

    voucher_id: str
    amount: Decimal
    to_debt: Decimal
    to_credit: Decimal
    issued: str  # ISO 8601, as the voucher said
    applied: int  # epoch s

    def to_json(self) -> list[Any]:
        return [
            self.voucher_id,
            str(self.amount),
            str(self.to_debt),
            str(self.to_credit),
            self.issued,
            self.applied,
        ]


@dataclass(frozen=True, slots=True)
class PrepaymentRestore(CommandBody):
    """One fuel's account as backed up at ``as_of``: credit, debt, emergency credit in use, and
    the top-ups credited by then; ``topups`` rows are ``[voucher_id, amount, to_debt, to_credit,
    issued, applied]``."""

    TYPE: ClassVar[str] = "prepayment.restore"
    fuel: str
    credit: Decimal
    debt: Decimal
    emergency_active: bool
    as_of: datetime
    topups: tuple[TopUpRow, ...] = ()

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        f = Fields(cls.TYPE, body)
        debt = f.decimal("debt")
        if debt < 0:
            raise f.bad("debt", f"must not be negative, got {debt}")
        raw = f.array("topups", [])
        if len(raw) > MAX_ROWS:
            raise f.bad("topups", f"must hold at most {MAX_ROWS} rows, got {len(raw)}")
        topups = []
        for i, row in enumerate(raw):
            key = f"topups[{i}]"
            if not isinstance(row, list | tuple) or len(row) != 6:
                raise f.bad(key, "must be [voucher_id, amount, to_debt, to_credit, issued, applied]")
            vid, amount, to_debt, to_credit, issued, applied = row
            if not isinstance(vid, str) or not 0 < len(vid) <= 64 or not isinstance(issued, str):
                raise f.bad(key, "needs a voucher id (1-64 characters) and the issued time as text")
            if isinstance(applied, bool) or not isinstance(applied, int) or applied < 0:
                raise f.bad(key, f"applied must be epoch seconds, got {applied!r:.40}")
            topups.append(
                TopUpRow(
                    vid,
                    f.decimal(key, amount),
                    f.decimal(key, to_debt),
                    f.decimal(key, to_credit),
                    issued,
                    applied,
                )
            )
        return cls(
            f.choice("fuel", RESTORE_FUELS),
            f.decimal("credit"),
            debt,
            f.flag("emergency_active", False),
            f.instant("as_of"),
            tuple(topups),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "fuel": self.fuel,
            "credit": str(self.credit),
            "debt": str(self.debt),
            "emergency_active": self.emergency_active,
            "as_of": self.as_of.isoformat(),
            "topups": [t.to_json() for t in self.topups],
        }


@dataclass(frozen=True, slots=True)
class RecoveryComplete(CommandBody):
    """The last command of recovery ``recovery`` (the GDSC's number for it), sent once every
    other step was applied; ``storage`` is the storage id the hub reported when it was blank."""

    TYPE: ClassVar[str] = "recovery.complete"
    recovery: int
    steps: int
    storage: str = ""

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        f = Fields(cls.TYPE, body)
        return cls(
            f.integer("recovery", minimum=1),
            f.integer("steps", minimum=0),
            f.text("storage", "", max_len=64),
        )

    def to_json(self) -> dict[str, Any]:
        return {"recovery": self.recovery, "steps": self.steps, "storage": self.storage}


__all__ = [
    "MAX_ROWS",
    "HistoryRestore",
    "PrepaymentRestore",
    "RecoveryComplete",
    "RecoverySnapshot",
    "TopUpRow",
]
