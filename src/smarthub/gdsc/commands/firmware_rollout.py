"""Firmware roll-outs in batches: a small batch first, the next only once the one before has kept
the new version; a batch in which a hub rolled back stops the roll-out.

Each hub judges a new version itself (``hub.firmware``: it is kept only if the hub's own health
check passes within its probation, else the hub goes back to the version before, on its own).
The GDSC's part is to risk few hubs at a time: :meth:`FirmwareRollout.tick` (run by the operator's
process, e.g. beside the scheduler) queues ``firmware.update`` for the next batch once every hub
of the current one has answered ``active``; an answer ``rolled_back`` (or a hub refusing the
package) halts the roll-out, and the hubs not reached yet are never offered that version. A hub
that does not answer holds its batch (the command waits in the plan for its next pull).

The roll-out's progress lives in this object (one operator process runs it); the commands and
the hubs' verdicts are in the shared plan.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import DONE, FAILED

FIRMWARE_COMMAND = "firmware.update"


@dataclass
class FirmwareRollout:
    """One version (a signed package, ``hub.firmware``'s format) to ``hubs`` in ``batches``
    (sizes; the last is repeated until every hub is reached)."""

    plan: PullPlan
    signer: CommandSigner
    package: bytes
    hubs: Sequence[str]
    batches: Sequence[int] = (1, 4)
    queued: dict[str, int] = field(default_factory=dict)  # hub -> job
    verdicts: dict[str, str] = field(default_factory=dict)  # hub -> active / rolled_back / failed
    halted: str | None = None  # why the roll-out stopped early

    def __post_init__(self) -> None:
        if not self.batches or any(n < 1 for n in self.batches):
            raise ValueError("batch sizes must be at least 1")

    @property
    def done(self) -> bool:
        return self.halted is not None or len(self.verdicts) == len(self.hubs)

    @property
    def rolled_back(self) -> list[str]:
        return sorted(h for h, v in self.verdicts.items() if v == "rolled_back")

    @property
    def updated(self) -> list[str]:
        return sorted(h for h, v in self.verdicts.items() if v == "active")

    def tick(self, now: datetime) -> int:
        """Collect the current batch's verdicts; queue the next batch if it is clear. The
        number of commands queued."""
        if self.done:
            return 0
        for hub, job_id in self.queued.items():
            if hub in self.verdicts:
                continue
            job = self.plan.urgent_job(job_id)
            if job["state"] == DONE:
                self.verdicts[hub] = _verdict(job["result"])
            elif job["state"] == FAILED:
                self.verdicts[hub] = "undelivered"
        bad = sorted(h for h, v in self.verdicts.items() if v not in ("active", "undelivered"))
        if bad:
            self.halted = f"{', '.join(bad)}: {', '.join(self.verdicts[h] for h in bad)}"
            return 0
        if len(self.verdicts) < len(self.queued):
            return 0  # the batch is still out
        start = len(self.queued)
        n = len(self.batches)
        size = self.batches[min(sum(1 for _ in self._batch_starts(start)), n - 1)]
        body = {"package": base64.b64encode(self.package).decode()}
        for hub in self.hubs[start : start + size]:
            self.queued[hub] = self.plan.queue_command(self.signer, hub, FIRMWARE_COMMAND, body, now)
        return min(size, len(self.hubs) - start)

    def _batch_starts(self, upto: int) -> list[int]:
        """The starts of the batches queued so far (those before hub index ``upto``)."""
        starts, at, i = [], 0, 0
        while at < upto:
            starts.append(at)
            at += self.batches[min(i, len(self.batches) - 1)]
            i += 1
        return starts


def _verdict(result: str | None) -> str:
    """``active`` or ``rolled_back`` from the hub's answer, else why not (refused, failed)."""
    try:
        verdict = json.loads(result or "{}")
    except ValueError:
        return "unreadable"
    if verdict.get("status") != "applied":
        return f"{verdict.get('status', 'no answer')}: {verdict.get('code', '')}"
    out = verdict.get("result") or {}
    return str(out.get("status", "unknown"))


__all__ = ["FIRMWARE_COMMAND", "FirmwareRollout"]
