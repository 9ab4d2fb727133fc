"""Delivers queued, signed management commands to hubs over the mutual-TLS WAN channel.

The command was signed when it was queued (its counter is fixed then), so the courier only
carries the envelope: it POSTs it to the hub's ``/mgmt`` and returns the hub's verdict. A
verdict, even "refused", is a delivery; only a transport failure (``PullError``) is retried.
"""

from __future__ import annotations

import ssl
from typing import Any

from smarthub.gdsc.fleet.registry import HubRecord
from smarthub.wan.client.channel import ChannelEndpoint
from smarthub.wan.client.hub_client import HubClient


class CommandCourier:
    def __init__(self, ssl_context: ssl.SSLContext, channels: ChannelEndpoint | None = None) -> None:
        self.ssl_context = ssl_context
        self.channels = channels  # for hubs reached through their channel (wan.contract.channel)
        self._clients: dict[str, HubClient] = {}

    async def _client(self, hub: HubRecord) -> HubClient:
        client = self._clients.get(hub.hub_id)
        if client is None or client.base_url != hub.url.rstrip("/") or client.expected_lfdi != hub.lfdi:
            if client is not None:  # moved or renewed: the old session is closed, not left to the GC
                await client.close()
            client = self._clients[hub.hub_id] = HubClient(
                hub.url, self.ssl_context, hub.lfdi, channels=self.channels
            )
        return client

    async def deliver(self, hub: HubRecord, envelope: bytes) -> dict[str, Any]:
        """The hub's verdict on the command; raises ``PullError`` if it could not be reached."""
        return await (await self._client(hub)).post_command(envelope)

    async def close(self) -> None:
        # Taken out first: a delivery may add a client while a close awaits (the upkeep drops
        # the sessions after a CRL re-publication mid-run), which broke the iteration.
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()
