"""A hub that answers the collector with JSON nested beyond Python's recursion limit (a
compromised or broken hub): the collector reports a :class:`PullError` naming the request, as it
does for any answer that is not JSON, instead of letting ``RecursionError`` (which ``json.loads``
raises there, not ``ValueError``) escape into the pull loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from aiohttp import web

from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.wan.client.hub_client import HubClient, PullError
from smarthub.wan.tls import client_context, server_context

DEEP = b"[" * 200_000 + b"]" * 200_000


@pytest.fixture
async def hostile_hub(tmp_path: Path, wall_now: datetime) -> AsyncIterator[HubClient]:
    ca = CertificateAuthority.create("test GDSC CA", wall_now)
    ca.save(tmp_path / "ca")
    hub_cert = ca.issue(Role.HUB, "HUB1", wall_now, hosts=("127.0.0.1",))
    hub_cert.save(tmp_path, "hub")
    ca.issue(Role.COLLECTOR, "collector", wall_now).save(tmp_path, "collector")

    async def deep(_: web.Request) -> web.Response:
        return web.Response(body=DEEP, content_type="application/json")

    app = web.Application()
    app.router.add_post("/mgmt", deep)
    app.router.add_get("/edev/0/lel/{n}/detail", deep)
    runner = web.AppRunner(app)
    await runner.setup()
    ssl = server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    ctx = client_context(tmp_path / "collector.pem", tmp_path / "collector.key", tmp_path / "ca" / "ca.pem")
    client = HubClient(f"https://127.0.0.1:{port}", ctx, hub_cert.lfdi)
    yield client
    await client.close()
    await runner.cleanup()


async def test_a_command_answer_nested_too_deep_is_a_pull_error(hostile_hub: HubClient) -> None:
    with pytest.raises(PullError, match="POST /mgmt: the hub's answer is not JSON"):
        await hostile_hub.post_command(b"{}")


async def test_an_event_detail_nested_too_deep_is_a_pull_error(hostile_hub: HubClient) -> None:
    with pytest.raises(PullError, match="/edev/0/lel/1/detail: RecursionError"):
        await hostile_hub.event_detail(1)
