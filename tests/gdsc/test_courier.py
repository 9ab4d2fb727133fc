"""The command courier's kept-alive sessions to hubs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from datetime import datetime
from pathlib import Path

from aiohttp import web

from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.gdsc.fleet.registry import HubRecord
from smarthub.gdsc.pull.courier import CommandCourier
from smarthub.sim.demo import free_port
from smarthub.wan.client.hub_client import PullError
from smarthub.wan.tls import client_context, server_context


def _hub(n: int) -> HubRecord:
    # Nobody listens there: a delivery is refused, after its session is made.
    return HubRecord(f"HUB{n}", f"P{n}", f"https://127.0.0.1:{free_port('127.0.0.1')}", "00" * 20, "active")


async def test_closing_the_sessions_while_a_command_is_delivered_closes_them_all() -> None:
    """The upkeep closes the courier's sessions after a CRL re-publication while the scheduler
    delivers commands: a delivery that opens a session during the close no longer breaks it
    ("dictionary changed size during iteration", in a 30-day chaos run; the CRL step failed)."""
    courier = CommandCourier(ssl.create_default_context())
    for n in range(3):
        with contextlib.suppress(PullError):
            await courier.deliver(_hub(n), b"{}")
    closing = asyncio.create_task(courier.close())
    await asyncio.sleep(0)  # the close is under way, awaiting the first session's
    delivery = asyncio.create_task(courier.deliver(_hub(9), b"{}"))
    await asyncio.sleep(0)  # ... and this delivery made its session meanwhile
    await closing
    with contextlib.suppress(PullError):
        await delivery
    await courier.close()  # the session made during the first close


async def test_retiring_the_sessions_lets_a_delivery_under_way_finish(
    tmp_path: Path, wall_now: datetime
) -> None:
    """After a newer CRL the sessions are retired: one carrying a command keeps it until the
    hub's verdict is in and is closed then (closing it at once cut deliveries off with
    "Connector is closed" in a 30-day chaos run); an idle one is closed at once; the next
    command opens a new session."""
    ca = CertificateAuthority.create("test GDSC CA", wall_now)
    ca.save(tmp_path / "ca")
    hub_cert = ca.issue(Role.HUB, "HUB1", wall_now, hosts=("127.0.0.1",))
    hub_cert.save(tmp_path, "hub")
    ca.issue(Role.COLLECTOR, "collector", wall_now).save(tmp_path, "collector")
    received, answer = asyncio.Event(), asyncio.Event()

    async def mgmt(request: web.Request) -> web.Response:
        nonce = json.loads(await request.read())["nonce"]
        if nonce == "slow":
            received.set()
            await answer.wait()
        return web.json_response({"status": "applied", "result": {"pong": nonce}})

    app = web.Application()
    app.router.add_post("/mgmt", mgmt)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(
        runner, "127.0.0.1", 0,
        ssl_context=server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem"),
    )  # fmt: skip
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    hub = HubRecord("HUB1", "P1", f"https://127.0.0.1:{port}", hub_cert.lfdi, "active")
    idle_hub = _hub(2)
    courier = CommandCourier(
        client_context(tmp_path / "collector.pem", tmp_path / "collector.key", tmp_path / "ca" / "ca.pem")
    )
    try:
        with contextlib.suppress(PullError):
            await courier.deliver(idle_hub, b"{}")
        idle = courier._clients[idle_hub.hub_id]
        slow = asyncio.create_task(courier.deliver(hub, b'{"nonce": "slow"}'))
        await asyncio.wait_for(received.wait(), 10)
        busy = courier._clients[hub.hub_id]
        await courier.retire_sessions()
        assert idle._session.closed and not busy._session.closed
        answer.set()
        assert (await slow)["result"] == {"pong": "slow"}  # not cut off
        assert busy._session.closed  # closed once its verdict was in
        again = await courier.deliver(hub, b'{"nonce": "n2"}')
        assert again["result"] == {"pong": "n2"} and courier._clients[hub.hub_id] is not busy
    finally:
        answer.set()
        await courier.close()
        await runner.cleanup()
