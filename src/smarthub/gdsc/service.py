"""A GDSC process: registry from the commissioning manifest, scheduler, collector, store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from smarthub.clock import Clock
from smarthub.gdsc.collector import Collector
from smarthub.gdsc.commissioning import register_manifest
from smarthub.gdsc.scheduler import Scheduler
from smarthub.gdsc.store import Store
from smarthub.wan.tls import client_context


@dataclass
class GdscService:
    store: Store
    collector: Collector
    scheduler: Scheduler

    @classmethod
    def from_state(
        cls, state: Path, clock: Clock, db_url: str | None = None, window: timedelta = timedelta(minutes=30)
    ) -> GdscService:
        """``state`` holds ``ca/ca.pem``, ``gdsc/collector.{pem,key}`` and ``fleet.json``."""
        store = Store(db_url or f"sqlite:///{(state / 'gdsc' / 'gdsc.sqlite').resolve()}")
        store.create_schema()
        register_manifest(store, json.loads((state / "fleet.json").read_text()))
        ctx = client_context(
            state / "gdsc" / "collector.pem", state / "gdsc" / "collector.key", state / "ca" / "ca.pem"
        )
        collector = Collector(store, ctx, clock)
        return cls(store, collector, Scheduler(collector, clock, store.active_hubs, window=window))

    async def run(self, until: datetime, first_window: datetime | None = None) -> None:
        try:
            await self.scheduler.run(until, first_window)
        finally:
            await self.collector.close()
            self.store.close()
