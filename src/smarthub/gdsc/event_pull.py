"""Pull a hub's diagnosed events (2030.5 LogEvents and their detail) into the central error log.

New events are paged on from the count the GDSC already holds (the hub lists them oldest
first); events the GDSC still holds as open are re-read, so a fault the hub cleared or
repaired closes its incident and any work order at the centre.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from smarthub.gdsc.error_log import ErrorLog, RecordResult
from smarthub.wan.client.hub_client import HubClient

MAX_REFRESH = 50  # open events re-read per pull; a hub with more is in trouble anyway


async def pull_events(client: HubClient, log: ErrorLog, hub_id: str, now: datetime) -> RecordResult:
    known = await asyncio.to_thread(log.known_events, hub_id)
    still_open = await asyncio.to_thread(log.open_event_ids, hub_id)
    fresh = [detail for _, detail in await client.pull_log_events(known)]
    fresh_ids = {d.get("id") for d in fresh}
    refreshed = [
        await client.event_detail(event_id)
        for event_id in still_open[:MAX_REFRESH]
        if event_id not in fresh_ids
    ]
    return await asyncio.to_thread(log.record_events, hub_id, [*fresh, *refreshed], now)
