"""Recovery of a replaced or wiped hub, the hub's side (issue 20, item 2).

**Saying the storage is blank.** :class:`StorageMark` (``storage.json`` in the hub's state
directory) names the hub's storage with an id drawn when it was created. A hub that starts on an
empty state directory marks it ``blank``; one that finds history already there but no mark (a hub
from before this mark existed) marks it ``kept``. The WAN server puts the state in every answer
to a collector (:mod:`smarthub.wan.contract.storage`), so the GDSC learns of a wiped or new
hub with its next pull, the hub never calling out.

**Taking the restore.** The GDSC (``smarthub.gdsc.fleet.recovery``) then sends, as signed
management commands through the normal channel, what the home had: the commands that set its
tariff versions, consents and supplier keys, signed again for this hub; ``history.restore``
(up to 13 months of the GDSC's stored intervals, a channel-month per command);
``prepayment.restore`` (the balance and top-ups of its last backup; the restored half-hours
that closed after the backup are charged then); and ``recovery.complete``
last. Each handler here is idempotent (a re-delivery after a crash changes nothing more), so a
recovery cut by a power cut or a kill resumes by the GDSC sending what has no verdict yet.

A restored interval has no register reading (the GDSC keeps advances): it is stored with
``register_end = RESTORED_REGISTER`` (-1), which the interval builder never resumes from.

``recovery.snapshot`` is the backup's other half: the hub answers with what only it knows (its
prepayment accounts, and its consent decisions with their versions: the householder's own,
made at the display, too), which the GDSC keeps from the verdict.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from smarthub.clock import Clock
from smarthub.hub.history import HistoryStore
from smarthub.hub.intervals import RESTORED_REGISTER, IntervalRecord
from smarthub.model import ObisCode
from smarthub.wan.contract.bodies import HistoryRestore, PrepaymentRestore, RecoveryComplete, RecoverySnapshot
from smarthub.wan.contract.storage import BLANK, KEPT, RESTORED, StorageState

__all__ = ["RESTORED_REGISTER", "StorageMark", "recovery_commands"]


class StorageMark:
    """The hub's storage id and state, kept in ``path`` (JSON, written atomically)."""

    def __init__(self, path: Path, *, found_data: bool, now: datetime) -> None:
        self.path = Path(path)
        if self.path.exists():
            d = json.loads(self.path.read_text())
            self.storage_id, self.state = str(d["id"]), str(d["state"])
            self.recovery: int | None = d.get("recovery")
            self.since = str(d.get("since", ""))
        else:
            self.storage_id = secrets.token_hex(8)
            self.state = KEPT if found_data else BLANK
            self.recovery = None
            self.since = now.isoformat()
            self._write()

    @property
    def header(self) -> str:
        return StorageState(self.state, self.storage_id).header

    def complete(self, recovery: int) -> None:
        self.state, self.recovery = RESTORED, recovery
        self._write()

    def to_json(self) -> dict[str, Any]:
        return {"id": self.storage_id, "state": self.state, "recovery": self.recovery, "since": self.since}

    def _write(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps(self.to_json()))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def recovery_commands(
    mark: StorageMark,
    history: HistoryStore,
    clock: Clock,
    *,
    ledger: Any = None,
    consent: Any = None,
    observe: Callable[[list[IntervalRecord]], None] | None = None,
    observe_since: Callable[[], datetime] | None = None,
    after_restore: Callable[[datetime], int] | None = None,
) -> dict[str, Callable[[Any], dict[str, Any]]]:
    """The recovery commands' handlers. ``ledger``: the prepayment ledger, if the hub keeps one;
    ``consent``: the consent store (its decisions go into the snapshot, also those the
    householder made at the display, which the GDSC has no command for);
    ``observe``: told the restored intervals from ``observe_since()`` on (the display's priced
    consumption replays the same span from the history at start-up); ``after_restore(as_of)``:
    charges the restored half-hours that closed after the backup (the prepayment bridge)."""

    def snapshot(body: RecoverySnapshot) -> dict[str, Any]:
        out: dict[str, Any] = {"storage": mark.to_json(), "as_of": clock.now().isoformat()}
        if ledger is not None:
            out["prepayment"] = [ledger.snapshot(fuel) for fuel in ("electricity", "gas")]
        if consent is not None:
            out["consents"] = [
                {
                    "recipient": recipient,
                    "granularity": granularity.value,
                    "version": consent.version(recipient),
                    **consent.scope(recipient).to_json(),
                }
                for recipient, granularity in sorted(consent.all().items())
            ]
        return out

    def history_restore(body: HistoryRestore) -> dict[str, Any]:
        obis = ObisCode.parse(body.obis)
        records = [
            IntervalRecord(
                body.meter, obis, start, body.duration, value, RESTORED_REGISTER, body.power_of_ten, q
            )
            for start, value, q in body.rows
        ]
        history.add_meter(body.meter, body.fuel)
        written = history.append(records)
        if observe is not None and records:
            since = int(observe_since().timestamp()) if observe_since is not None else 0
            recent = [r for r in records if r.start >= since]
            if recent:
                observe(recent)
        charged = 0
        as_of = None if ledger is None else ledger.restored_as_of()
        if as_of is not None and after_restore is not None:
            # The account was restored before these half-hours (a step sent again after a
            # crash): those that closed after the backup are charged now.
            charged = after_restore(as_of)
        return {
            "meter": body.meter,
            "obis": body.obis,
            "rows": len(records),
            "written": written,
            "charged_since_backup": charged,
        }

    def prepayment_restore(body: PrepaymentRestore) -> dict[str, Any]:
        if ledger is None:
            raise ValueError("this hub keeps no prepayment account")
        applied = ledger.restore(body, clock.now())
        charged = after_restore(body.as_of) if after_restore is not None else 0
        return {
            "fuel": body.fuel,
            "applied_now": applied,
            "charged_since_backup": charged,
            "balance": ledger.balance(body.fuel).to_json(),
        }

    def complete(body: RecoveryComplete) -> dict[str, Any]:
        if body.storage and body.storage != mark.storage_id and mark.state == BLANK:
            # A recovery planned for a storage this hub no longer has (wiped again since):
            # the GDSC plans a new one from the new report.
            raise ValueError(
                f"recovery {body.recovery} was for storage {body.storage}, this is {mark.storage_id}"
            )
        mark.complete(body.recovery)
        return {"storage": mark.to_json(), "steps": body.steps}

    return {
        "recovery.snapshot": snapshot,
        "history.restore": history_restore,
        "prepayment.restore": prepayment_restore,
        "recovery.complete": complete,
    }
