"""The transfer policy the GDSC set for this hub, kept, and enforced on the GDSC's collection.

The GDSC decides how often, when and how finely it retrieves each hub's data (per hub or per
group: supplier, tariff, premises class) and sends the policy in force for the hub as the signed
``transfer.policy`` command (:class:`smarthub.wan.contract.bodies.TransferPolicy`) through the
normal pull channel. The hub keeps the newest policy (by ``version``, the instant of the change
at the GDSC: a late or repeated command never undoes a newer one) in its own SQLite file, so it
survives a restart, and the privacy filter serves the GDSC's own collection (the ``gdsc``
recipient) no finer than the policy's ``aggregation``: a GDSC pull that asks for half-hours
from a hub whose policy says daily gets days. The policy only ever narrows: what the consumer
consented to still caps it (the filter takes the coarser of the two), and it never closes the
GDSC's collection (no ``none`` aggregation: stopping collection is the consumer's decision).

The frequency, window and priority are the GDSC's matter (its pull plan honours them); the hub
keeps them to answer what it was told (diagnostics) and because a hub cannot refuse a pull that
arrives outside them: the GDSC pulls, the hub never pushes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smarthub.hub import sqlite_files
from smarthub.wan.contract.bodies import Granularity, TransferPolicy

GDSC_RECIPIENT = "gdsc"  # the recipient the GDSC's collectors pull as (hub.privacy, wan.server)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transfer_policy (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    policy TEXT NOT NULL
);
"""
SCHEMA = sqlite_files.Schema("transfer policy", [_SCHEMA])


class TransferPolicyStore:
    """The newest transfer policy the GDSC sent, persisted (``transfer_policy.sqlite``)."""

    def __init__(self, path: Path | str) -> None:
        self._file = sqlite_files.open_database(path, SCHEMA)
        self._db, self._lock = self._file.connection, self._file.lock

    @property
    def policy(self) -> TransferPolicy | None:
        with self._lock:
            row = self._db.execute("SELECT policy FROM transfer_policy WHERE id = 1").fetchone()
        return None if row is None else TransferPolicy.parse(json.loads(row[0]))

    def apply(self, policy: TransferPolicy) -> bool:
        """Keep ``policy`` unless a newer (or the same) version is held; True if it was kept."""
        with self._file.transaction() as db:
            row = db.execute("SELECT version FROM transfer_policy WHERE id = 1").fetchone()
            if row is not None and int(row[0]) >= policy.version:
                return False
            db.execute(
                "INSERT OR REPLACE INTO transfer_policy(id, version, policy) VALUES (1, ?, ?)",
                (policy.version, json.dumps(policy.to_json(), sort_keys=True)),
            )
        return True

    def cap(self, recipient: str, granularity: Granularity) -> Granularity:
        """``granularity`` narrowed to the policy's aggregation for the GDSC's collection (an
        interval granularity only: a recipient of nothing or of register totals keeps it)."""
        policy = self.policy
        if recipient != GDSC_RECIPIENT or policy is None or not granularity.has_intervals:
            return granularity
        return min(granularity, policy.aggregation, key=lambda g: g.rank)

    def close(self) -> None:
        self._file.close()


def transfer_policy_command(store: TransferPolicyStore) -> Callable[[TransferPolicy], dict[str, Any]]:
    """The ``transfer.policy`` management command: keep the policy if it is newer than the one
    held; the result says whether it was applied and which version is in force."""

    def handle(body: TransferPolicy) -> dict[str, Any]:
        applied = store.apply(body)
        held = store.policy
        return {"applied": applied, "version": None if held is None else held.version}

    return handle
