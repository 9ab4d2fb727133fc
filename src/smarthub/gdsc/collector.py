"""The collector: pulls one hub over mutual TLS and ingests what it got, idempotently."""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from datetime import datetime

from smarthub.clock import Clock
from smarthub.gdsc.store import HubRecord, Store, StoredReading
from smarthub.wan.client import HubClient, PullError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PullOutcome:
    hub_id: str
    ok: bool
    readings: int = 0
    inserted: int = 0
    requests: int = 0
    error: str | None = None


class Collector:
    def __init__(self, store: Store, ssl_context: ssl.SSLContext, clock: Clock) -> None:
        self.store = store
        self.ssl_context = ssl_context
        self.clock = clock
        self._clients: dict[str, HubClient] = {}
        self.pulls = 0
        self.failures = 0
        self.conflicts = 0

    def _client(self, hub: HubRecord) -> HubClient:
        client = self._clients.get(hub.hub_id)
        if client is None or client.base_url != hub.url.rstrip("/") or client.expected_lfdi != hub.lfdi:
            client = self._clients[hub.hub_id] = HubClient(hub.url, self.ssl_context, hub.lfdi)
        return client

    async def pull(self, hub: HubRecord, window_start: datetime) -> PullOutcome:
        started = self.clock.now()
        self.pulls += 1
        try:
            cursors = await asyncio.to_thread(self.store.cursors, hub.hub_id)
            result = await self._client(hub).pull_intervals(cursors)
            rows = [
                StoredReading(
                    hub.hub_id,
                    i.meter,
                    i.obis,
                    i.start,
                    i.duration,
                    i.value,
                    i.power_of_ten,
                    i.uom,
                    i.quality,
                )
                for i in result.intervals
            ]
            ingest = await asyncio.to_thread(self.store.ingest, hub.hub_id, rows, result.cursors)
        except PullError as err:
            self.failures += 1
            outcome = PullOutcome(hub.hub_id, False, error=str(err))
            log.warning("pull of %s failed: %s", hub.hub_id, err)
        else:
            if ingest.conflicts:
                self.conflicts += ingest.conflicts
                log.error(
                    "hub %s re-sent %d readings with different values; kept the stored ones",
                    hub.hub_id,
                    ingest.conflicts,
                )
            outcome = PullOutcome(hub.hub_id, True, len(rows), ingest.inserted, result.requests)
        await asyncio.to_thread(
            self.store.log_pull,
            hub_id=hub.hub_id,
            window_start=window_start,
            started=started,
            finished=self.clock.now(),
            ok=outcome.ok,
            readings=outcome.readings,
            inserted=outcome.inserted,
            error=outcome.error,
        )
        return outcome

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
