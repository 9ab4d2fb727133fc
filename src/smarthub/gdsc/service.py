"""A GDSC process: registry from the commissioning manifest, scheduler, collector, store.

Several GDSC processes may run against one PostgreSQL database: they share the pull plan
(`smarthub.gdsc.plan`), so each hub is pulled once per window whichever process takes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from smarthub.clock import Clock
from smarthub.gdsc.collector import Collector
from smarthub.gdsc.commands import CommandSigner
from smarthub.gdsc.commissioning import register_manifest
from smarthub.gdsc.courier import CommandCourier
from smarthub.gdsc.plan import Priority, PullPlan
from smarthub.gdsc.scheduler import Scheduler
from smarthub.gdsc.store import Store
from smarthub.wan.client import HubClient
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
        scheduler = Scheduler(collector, clock, store.active_hubs, window=window, courier=CommandCourier(ctx))
        return cls(store, collector, scheduler)

    async def run(self, until: datetime, first_window: datetime | None = None) -> None:
        try:
            await self.scheduler.run(until, first_window)
        finally:
            await self.scheduler.close()
            await self.collector.close()
            self.store.close()


def _signer(state: Path, store: Store) -> CommandSigner:
    return CommandSigner.from_files(
        str(state / "gdsc" / "operator.pem"),
        str(state / "gdsc" / "operator.key"),
        store.next_command_counter,
    )


def queue_command(
    state: Path,
    hub_id: str,
    command_type: str,
    body: dict[str, Any],
    now: datetime,
    db_url: str | None = None,
    priority: Priority | None = None,
) -> int:
    """Sign a management command and queue it in the shared plan; the job id.

    A running GDSC delivers it at its next scheduling tick, ahead of any bulk pull (top-up,
    disconnect and reconnect are urgent; other commands on-demand unless ``priority`` says).
    """
    store = Store(db_url or f"sqlite:///{(state / 'gdsc' / 'gdsc.sqlite').resolve()}")
    store.create_schema()
    try:
        if not any(h.hub_id == hub_id for h in store.active_hubs()):
            raise LookupError(f"hub {hub_id!r} is not registered (or not active) at this GDSC")
        return PullPlan(store).queue_command(_signer(state, store), hub_id, command_type, body, now, priority)
    finally:
        store.close()


async def send_command(
    state: Path,
    hub_id: str,
    command_type: str,
    body: dict[str, Any],
    now: datetime,
    db_url: str | None = None,
) -> dict[str, Any]:
    """Sign a management command with the GDSC operator key and deliver it to one hub now.

    The counter comes from the store, so it keeps rising across GDSC restarts.
    """
    store = Store(db_url or f"sqlite:///{(state / 'gdsc' / 'gdsc.sqlite').resolve()}")
    store.create_schema()
    try:
        hub = next((h for h in store.active_hubs() if h.hub_id == hub_id), None)
        if hub is None:
            raise LookupError(f"hub {hub_id!r} is not registered (or not active) at this GDSC")
        signed = _signer(state, store).command(hub_id, command_type, body, now)
        ctx = client_context(
            state / "gdsc" / "collector.pem", state / "gdsc" / "collector.key", state / "ca" / "ca.pem"
        )
        client = HubClient(hub.url, ctx, hub.lfdi)
        try:
            return await client.post_command(signed.envelope())
        finally:
            await client.close()
    finally:
        store.close()
