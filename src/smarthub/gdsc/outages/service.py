"""Outages at the GDSC: the alert endpoint, the correlator and the store wired together.

:class:`OutageService` is what a GDSC process runs beside its scheduler (the demo and chaos runs
use it the same way): it loads the topology and the open outages, starts the UDP endpoint
(:mod:`.receiver`), and correlates every verified alert in arrival order (:mod:`.correlate`), in
memory and at once; the endpoint's writer saves each change (:mod:`.store`) and then the
``on_change`` callbacks see it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta

from sqlalchemy import Engine

from smarthub.clock import Clock
from smarthub.gdsc.outages.correlate import Change, Correlator
from smarthub.gdsc.outages.receiver import AlertReceiver
from smarthub.gdsc.outages.store import AlertKeys, OutageRows, OutageStore, StoredAlert
from smarthub.gdsc.outages.topology import TopologyStore
from smarthub.wan.contract.alerts import AlertKind

log = logging.getLogger(__name__)


class OutageService:
    def __init__(
        self, engine: Engine, clock: Clock, *, window: timedelta = timedelta(minutes=10), **receiver: object
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.store = OutageStore(engine)
        self.keys = AlertKeys(engine)
        self.topology = TopologyStore(engine)
        self.correlator = Correlator(
            self.topology.snapshot(),
            window=window,
            outages=self.store.load_open(),
            next_id=self.store.next_outage_id(),
        )
        self.receiver = AlertReceiver(self.store, self.keys, clock, self.correlate, self.commit, **receiver)  # type: ignore[arg-type]
        self.on_change: list[Callable[[Sequence[Change]], None]] = []
        self._lock = threading.Lock()
        self._out: set[str] = {
            p.hub_id for o in self.correlator.live() for p in o.premises.values() if p.restored_at is None
        }
        self.started = False

    def power_out(self, hub_id: str) -> bool:
        """Whether the hub sent a last gasp and no restoration since (the error log asks)."""
        return hub_id in self._out

    def refresh_topology(self) -> None:
        """Read the topology again (after a load or an edit through the API)."""
        with self._lock:
            self.correlator.topology = self.topology.snapshot()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        port = await self.receiver.start(host, port)
        self.started = True
        return port

    async def close(self) -> None:
        if self.started:
            await self.receiver.close()
            self.started = False

    def handle(self, alerts: Sequence[StoredAlert]) -> list[Change]:
        """Correlate verified alerts in order; save and announce the changes, now."""
        decided = self.correlate(alerts)
        if decided is None:
            return []
        self.commit([decided])
        return decided[0]

    def correlate(self, alerts: Sequence[StoredAlert]) -> tuple[list[Change], OutageRows] | None:
        """Correlate verified alerts in order (on the endpoint's alert path: memory only, so an
        outage opens as soon as the alert that tips it is verified); the changes and their rows
        as they stand now, for :meth:`commit` (the endpoint's writer), or None."""
        changes: list[Change] = []
        with self._lock:  # alerts come from the endpoint's reader or verifier thread, or inline
            for s in alerts:
                a = s.alert
                now = self.clock.now()
                if a.kind is AlertKind.LAST_GASP:
                    self._out.add(a.hub_id)
                    changes += self.correlator.last_gasp(a.hub_id, a.lost_at, now)
                else:
                    self._out.discard(a.hub_id)
                    changes += self.correlator.restoration(a.hub_id, a.lost_at, a.duration_s, now)
            return (changes, self.store.rows(changes)) if changes else None

    def commit(self, decided: list[tuple[list[Change], OutageRows]]) -> None:
        """Save what :meth:`correlate` decided, in order, in one transaction; then announce it."""
        self.store.write(OutageRows.merge([rows for _, rows in decided]))
        for changes, _ in decided:
            for cb in self.on_change:
                try:
                    cb(changes)
                except Exception:
                    log.exception("outage change callback failed")
