"""The GDSC store: the single source of truth for premises, hubs, meters and readings.

One facade over the parts, each in the package that owns its tables and built on
:class:`~smarthub.gdsc.db.database.Database` (engine, migrations, write lock):

* :class:`~smarthub.gdsc.fleet.registry.HubRegistry` — premises, hubs, meters;
* :class:`~smarthub.gdsc.readings.ingest.IntervalIngest` — idempotent ingest into compact
  interval blocks, with the pull cursors, on SQLite and PostgreSQL (COPY, day partitions);
* :class:`~smarthub.gdsc.readings.stored.ReadingQueries` — counts, gaps, a channel's readings;
* :class:`~smarthub.gdsc.pull.log.PullLog` — the pull log and the per-hub status;
* :class:`~smarthub.gdsc.commands.counters.CommandCounters` — rising command counters per hub;
* :class:`~smarthub.gdsc.fleet.key_escrow.EscrowHolder` — the meter key escrow, once enabled.

A service that needs one part only may build that class alone (same URL, same database).
"""

from __future__ import annotations

from smarthub.gdsc.commands.counters import CommandCounters
from smarthub.gdsc.fleet.key_escrow import EscrowHolder
from smarthub.gdsc.fleet.registry import HubRegistry
from smarthub.gdsc.pull.log import PullLog
from smarthub.gdsc.readings.ingest import IntervalIngest
from smarthub.gdsc.readings.stored import ReadingQueries


class Store(HubRegistry, IntervalIngest, ReadingQueries, PullLog, CommandCounters, EscrowHolder):
    """Thread-safe facade over the GDSC database (writes serialised per process)."""


__all__ = ["Store"]
