"""The hub's side of a recovery (issue 20, item 2), on a hub built by the same assembly as
``smarthub hub`` (a simulated DLMS home with prepayment): the storage mark, restored history
(idempotent, never a basis for the interval builder), the prepayment backup merged with what the
blank hub did since, the half-hours after the backup charged once, the snapshot and the end."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from smarthub.clock import ManualClock
from smarthub.hub.intervals import RESTORED_REGISTER, IntervalBuilder, IntervalRecord
from smarthub.model import ObisCode
from smarthub.sim.fleet import SimulatedHome, home_specs, provision
from smarthub.wan.contract.bodies import (
    ConsentSet,
    Granularity,
    HistoryRestore,
    PrepaymentRestore,
    RecoveryComplete,
    RecoverySnapshot,
)
from smarthub.wan.contract.storage import parse

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)  # a Wednesday: the display replays from Nov 1
IMPORT = "1-0:1.8.0"


@pytest.fixture
async def home(tmp_path: Path) -> SimulatedHome:
    specs = home_specs(2, seed=5)  # the second: DLMS with a breaker, prepayment of electricity
    provision(tmp_path, specs, NOW - timedelta(days=1))
    h = SimulatedHome(specs[1], tmp_path, ManualClock(NOW), NOW, timedelta(seconds=60))
    yield h
    await h.stop()


def test_a_restored_interval_is_never_resumed_from() -> None:
    """A restored interval has no register reading: after a restart the builder starts afresh
    instead of spreading (reading - 0) over the time since the restored interval."""
    restored = IntervalRecord("E1", ObisCode.parse(IMPORT), 0, 1800, 250, RESTORED_REGISTER, 0, 0)
    b = IntervalBuilder()
    b.restore(restored)
    assert b.add("E1", ObisCode.parse(IMPORT), 86400, 1_000_000, 0) == []


async def test_a_blank_hub_takes_its_restore(home: SimulatedHome) -> None:
    a = home.assembly
    handlers = a.management.handlers
    assert parse(a.server.storage()) == parse(f"state=blank; id={a.storage.storage_id}")  # type: ignore[misc]
    side = a.consumer
    assert side is not None and side.ledger is not None
    meter = side.consumption.supplies["electricity"].meter
    opening = side.ledger.top_ups()[0]  # the account opened on this hub (credited here)
    before = side.ledger.balance("electricity")

    # Three days of half-hours, up to an hour before this hub came up.
    end = int(NOW.timestamp()) - 3600
    rows = [[t, 200 + t // 1800 % 5, 0] for t in range(end - 3 * 86400, end, 1800)]
    body = HistoryRestore.parse(
        {
            "meter": meter,
            "obis": IMPORT,
            "duration": 1800,
            "power_of_ten": 0,
            "rows": rows,
            "fuel": "electricity",
        }
    )
    first = handlers["history.restore"](body)
    again = handlers["history.restore"](body)
    assert first["written"] == len(rows) and again["written"] == 0  # type: ignore[index]
    held = a.history.query(meter, ObisCode.parse(IMPORT), limit=1000)
    assert [(r.start, r.value, r.register_end) for r in held] == [
        (t, v, RESTORED_REGISTER) for t, v, _ in rows
    ]
    assert side.ledger.balance("electricity") == before  # restored history is not charged by itself
    week = side.consumption.supplies["electricity"].accumulator.this_week(NOW)
    assert week.kwh > 0  # the display's figures include it

    # The backup was taken two hours before: the two half-hours that closed after it are charged.
    as_of = NOW - timedelta(hours=2)
    restore = PrepaymentRestore.parse(
        {
            "fuel": "electricity",
            "credit": "12.50",
            "debt": "1.25",
            "emergency_active": False,
            "as_of": as_of.isoformat(),
            # The old storage had credited the same opening voucher: it is not counted twice.
            "topups": [
                [
                    opening["voucher_id"],
                    opening["amount"],
                    "0.00",
                    opening["to_credit"],
                    "2026-11-01T00:00:00+00:00",
                    1,
                ],
                ["V-OLD-1", "5.00", "0.00", "5.00", "2026-11-10T09:00:00+00:00", 2],
            ],
        }
    )
    out = handlers["prepayment.restore"](restore)
    assert out["applied_now"] is True and out["charged_since_backup"] == 2  # type: ignore[index]
    charged = side.ledger.charged("electricity", "day/")
    assert charged > 0
    bal = side.ledger.balance("electricity")
    assert bal.credit == Decimal("12.50") + before.credit - Decimal(opening["to_credit"]) - charged
    assert bal.debt == Decimal("1.25")
    assert {t["voucher_id"] for t in side.ledger.top_ups()} == {opening["voucher_id"], "V-OLD-1"}
    # Delivered again (its verdict lost): nothing changes.
    twice = handlers["prepayment.restore"](restore)
    assert twice["applied_now"] is False and twice["charged_since_backup"] == 0  # type: ignore[index]
    assert side.ledger.balance("electricity") == bal
    assert handlers["history.restore"](body)["charged_since_backup"] == 0  # type: ignore[index]

    # The householder's own decision at the display: in the backup, with its version.
    a.consent.set("SUP9", Granularity.DAILY, NOW)
    snap = handlers["recovery.snapshot"](RecoverySnapshot())
    (local,) = [c for c in snap["consents"] if c["recipient"] == "SUP9"]  # type: ignore[index]
    assert local["granularity"] == "daily" and local["version"] == a.consent.version("SUP9")
    assert ConsentSet.parse(local).version == local["version"]  # sent back as it is
    (elec,) = [p for p in snap["prepayment"] if p["fuel"] == "electricity"]  # type: ignore[index]
    assert Decimal(elec["credit"]) == bal.credit and len(elec["topups"]) == 2
    assert snap["storage"]["state"] == "blank"  # type: ignore[index]

    # Ended: the hub says restored from now on, also after a restart (the mark is on disk).
    with pytest.raises(ValueError, match="was for storage"):
        handlers["recovery.complete"](RecoveryComplete(7, 3, "f" * 16))
    done = handlers["recovery.complete"](RecoveryComplete(7, 3, a.storage.storage_id))
    assert done["storage"]["state"] == "restored"  # type: ignore[index]
    assert parse(a.server.storage()).state == "restored"  # type: ignore[misc, union-attr]
    assert json.loads((home.dir / "storage.json").read_text())["recovery"] == 7
