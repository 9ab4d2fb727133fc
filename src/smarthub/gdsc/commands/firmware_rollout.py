"""Firmware roll-outs in batches: a small batch first, the next only once the one before has kept
the new version; a batch in which a hub rolled back stops the roll-out.

Each hub judges a new version itself (``hub.firmware``: it is kept only if the hub's own health
check passes within its probation, else the hub goes back to the version before, on its own).
The GDSC's part is to risk few hubs at a time: :meth:`FirmwareRollout.tick` (run by the operator's
process, e.g. beside the scheduler) queues ``firmware.update`` for the next batch once every hub
of the current one has answered ``active``; an answer ``rolled_back`` (or a hub refusing the
package) halts the roll-out, and the hubs not reached yet are never offered that version. A hub
that does not answer holds its batch (the command waits in the plan for its next pull) until
the plan gives the delivery up (its ``max_tries``): the hub is then ``undelivered``, which does
not halt the roll-out (the hub never ran the version), and it is offered the version again once
``reoffer_after`` has passed, for as long as it is an active hub, so a hub that was away (a WAN
outage, a power cut) through its batch still gets the version once it is back.

The roll-out's progress lives in this object (one operator process runs it); the commands and
the hubs' verdicts are in the shared plan.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

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
    reoffer_after: timedelta | None = timedelta(hours=6)  # an undelivered hub offered again after
    undelivered_at: dict[str, datetime] = field(default_factory=dict)  # hub -> its delivery given up
    reoffered: set[str] = field(default_factory=set)  # offered again, no verdict yet (holds no batch)

    def __post_init__(self) -> None:
        if not self.batches or any(n < 1 for n in self.batches):
            raise ValueError("batch sizes must be at least 1")

    @property
    def done(self) -> bool:
        """Halted, or every hub's verdict in and none left to offer again."""
        return self.halted is not None or (
            len(self.verdicts) == len(self.hubs)
            and (self.reoffer_after is None or all(v != "undelivered" for v in self.verdicts.values()))
        )

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
                self.undelivered_at[hub] = now
            if hub in self.verdicts:
                self.reoffered.discard(hub)
        bad = sorted(h for h, v in self.verdicts.items() if v not in ("active", "undelivered", "ended"))
        if bad:
            self.halted = f"{', '.join(bad)}: {', '.join(self.verdicts[h] for h in bad)}"
            return 0
        reoffered = self._reoffer(now)
        if len(self.verdicts) + len(self.reoffered) < len(self.queued):
            return reoffered  # the batch is still out
        start = len(self.queued)
        n = len(self.batches)
        size = self.batches[min(sum(1 for _ in self._batch_starts(start)), n - 1)]
        body = {"package": base64.b64encode(self.package).decode()}
        for hub in self.hubs[start : start + size]:
            self.queued[hub] = self.plan.queue_command(self.signer, hub, FIRMWARE_COMMAND, body, now)
        return reoffered + max(0, min(size, len(self.hubs) - start))

    def _reoffer(self, now: datetime) -> int:
        """Queue the version again to each undelivered hub whose delivery was given up at least
        ``reoffer_after`` ago and that is still active (a revoked hub's work is dropped for good)."""
        if self.reoffer_after is None:
            return 0
        due = [
            h
            for h, v in self.verdicts.items()
            if v == "undelivered" and now - self.undelivered_at.get(h, now) >= self.reoffer_after
        ]
        if not due:
            return 0
        active = {h.hub_id for h in self.plan.store.active_hubs()}
        body = {"package": base64.b64encode(self.package).decode()}
        n = 0
        for hub in due:
            if hub not in active:
                self.undelivered_at.pop(hub, None)
                self.verdicts[hub] = "ended"  # revoked or decommissioned: nothing to offer to
                continue
            del self.verdicts[hub]
            self.undelivered_at.pop(hub, None)
            self.reoffered.add(hub)
            self.queued[hub] = self.plan.queue_command(self.signer, hub, FIRMWARE_COMMAND, body, now)
            n += 1
        return n

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
