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
        self._busy: dict[HubClient, int] = {}  # deliveries under way per session
        self._retired: set[HubClient] = set()  # out of use, closed when their delivery ends

    async def _client(self, hub: HubRecord) -> HubClient:
        client = self._clients.get(hub.hub_id)
        if client is None or client.base_url != hub.url.rstrip("/") or client.expected_lfdi != hub.lfdi:
            if client is not None:  # moved or renewed: the old session is closed, not left to the GC
                await self._retire(client)
            client = self._clients[hub.hub_id] = HubClient(
                hub.url, self.ssl_context, hub.lfdi, channels=self.channels
            )
        return client

    async def deliver(self, hub: HubRecord, envelope: bytes) -> dict[str, Any]:
        """The hub's verdict on the command; raises ``PullError`` if it could not be reached."""
        client = await self._client(hub)
        self._busy[client] = self._busy.get(client, 0) + 1
        try:
            return await client.post_command(envelope)
        finally:
            left = self._busy.pop(client) - 1
            if left:
                self._busy[client] = left
            elif client in self._retired:
                self._retired.discard(client)
                await client.close()

    async def _retire(self, client: HubClient) -> None:
        if client in self._busy:
            self._retired.add(client)
        else:
            await client.close()

    async def retire_sessions(self) -> None:
        """Take every kept-alive session out of use (after a newer CRL: a connection set up
        before a revocation was known is not used again): the idle ones are closed now, one
        carrying a delivery when its verdict is in, so no command under way is cut off (closing
        them all at once ended 9 deliveries of a 30-day chaos run with "Connector is closed").
        The next command to a hub opens a new, verified connection."""
        # Taken out first: a delivery may add a client while this awaits.
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await self._retire(client)

    async def close(self) -> None:
        """Close every session, deliveries under way included (the GDSC is stopping)."""
        clients, self._clients = [*self._clients.values(), *self._retired], {}
        self._retired.clear()
        for client in clients:
            await client.close()
