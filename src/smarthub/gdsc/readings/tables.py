"""The interval tables and the shapes of a reading at the GDSC.

* ``interval_channels`` numbers each hub's channels — (meter, OBIS, duration, unit, power of
  ten) — with a 2-byte ``channel_no``.
* ``interval_blocks`` holds one row per channel and UTC day (:mod:`~smarthub.gdsc.readings.interval_block`),
  range-partitioned by ``day`` on PostgreSQL (:func:`partition_name`).
* ``pull_cursors``: where the next incremental pull of one hub channel starts.

Both are keyed by the hub id first, as every other table holding a hub's data: on Citus they are
distributed by ``hub_id`` in the same colocation group as ``hubs`` (issue 23 item 1;
:mod:`smarthub.gdsc.db.placement`), so all of a hub's rows sit on one worker. There are no
foreign keys from the interval tables: they would prevent partitioning them. Why this layout:
:mod:`smarthub.gdsc.readings.ingest`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
)

from smarthub.gdsc.db.database import DAY, lock_id, metadata

# One interval channel of a hub. Values are integers in the unit `uom` (IEEE 2030.5
# UomType) times 10**power_of_ten, exactly as the hub served them.
interval_channels = Table(
    "interval_channels",
    metadata,
    Column("channel_no", SmallInteger, nullable=False, autoincrement=False),
    Column("meter_id", String(64), nullable=False),
    Column("obis", String(32), nullable=False),
    Column("duration", Integer, nullable=False),
    Column("uom", SmallInteger, nullable=False),
    Column("power_of_ten", SmallInteger, nullable=False),
    Column("hub_id", String(64), nullable=False),
    PrimaryKeyConstraint("hub_id", "channel_no", name="pk_interval_channels"),
    UniqueConstraint(
        "hub_id", "meter_id", "obis", "duration", "uom", "power_of_ten", name="uq_interval_channels_spec"
    ),
)

# One channel-day of readings. The columns in the order migration 0019 leaves them (the hub id
# added last): the fixed-width integers first and the two variable-length columns after them,
# so PostgreSQL needs no alignment padding; the primary key puts the hub id first.
interval_blocks = Table(
    "interval_blocks",
    metadata,
    Column("day", Integer, nullable=False, autoincrement=False),  # days since 1970-01-01 UTC
    Column("n", Integer, nullable=False),  # readings present in the block
    Column("channel_no", SmallInteger, nullable=False, autoincrement=False),
    Column("block", LargeBinary, nullable=False),  # smarthub.gdsc.readings.interval_block format
    Column("hub_id", String(64), nullable=False),
    PrimaryKeyConstraint("hub_id", "day", "channel_no", name="pk_interval_blocks"),
    postgresql_partition_by="RANGE (day)",
)

# Where the next incremental pull of one hub channel (a 2030.5 MeterReading) starts.
pull_cursors = Table(
    "pull_cursors",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("channel", String(255), primary_key=True),
    Column("after", BigInteger, nullable=False),
)

# PostgreSQL: the namespace of the per-hub advisory locks (the two-int4 form, a lock space of its
# own) under which a stored block is read, changed and written back: ingest's merge and an
# operator's edit take the lock of the block's hub, so neither loses the other's change. The
# second int4 is hashtext(hub id): two hubs sharing a hash share a lock, which only serialises
# them.
HUB_LOCKS = lock_id("interval-hubs") & 0x7FFFFFFF
# The statement taking them, in lock order (two writers lock their common hubs in the same
# order: no deadlock). Parameters: HUB_LOCKS, a list of hub ids.
LOCK_HUBS = (
    "SELECT pg_advisory_xact_lock(%s, k) "
    "FROM (SELECT DISTINCT hashtext(h) FROM unnest(%s::text[]) AS h ORDER BY 1) AS s(k)"
)


# Day partitions of interval_blocks on PostgreSQL, e.g. interval_blocks_20260302.
PARTITION_NAME = re.compile(r"^interval_blocks_\d{8}$")


def partition_name(day: int) -> str:
    return f"interval_blocks_{(date(1970, 1, 1) + timedelta(days=day)):%Y%m%d}"


@dataclass(frozen=True, slots=True)
class StoredReading:
    hub_id: str
    meter_id: str
    obis: str
    interval_start: int
    duration: int
    value: int
    power_of_ten: int
    uom: int
    quality: int

    def key(self) -> tuple[str, str, str, int, int]:
        return (self.hub_id, self.meter_id, self.obis, self.duration, self.interval_start)


# A reading as a plain tuple in StoredReading's field order: (hub_id, meter_id, obis,
# interval_start, duration, value, power_of_ten, uom, quality). Ingest takes either form; the
# collector passes tuples (building ~100 readings per hub as frozen dataclasses cost it more
# than grouping and encoding them).
ReadingRow = tuple[str, str, str, int, int, int, int, int, int]
Readings = Sequence[StoredReading] | Sequence[ReadingRow]


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one hub's ingest did. ``already_stored`` counts keys the store held before,
    conflicts included; readings repeated inside one pull count once."""

    received: int
    inserted: int
    already_stored: int
    conflicts: int
    refused: str | None = None  # why nothing was stored: the hub is revoked or decommissioned
    quarantined: int = 0  # readings the VEE gate held back (vee_findings), conflicts included
    flagged: int = 0  # readings stored but flagged questionable by the VEE gate
    replaced_estimates: int = 0  # estimates replaced by the actual readings of this pull
    registers: int = 0  # register readings stored (duration-0 rows)


# (meter, obis, duration, uom, power_of_ten): a channel of one hub.
ChannelSpec = tuple[str, str, int, int, int]
# (hub_id, day, channel_no): the primary key of a block.
BlockKey = tuple[str, int, int]


# (meter, obis, duration, uom, power_of_ten, day): one pull's readings of one channel-day.
GroupKey = tuple[str, str, int, int, int, int]

__all__ = [
    "DAY",
    "PARTITION_NAME",
    "IngestResult",
    "ReadingRow",
    "Readings",
    "StoredReading",
    "partition_name",
]
