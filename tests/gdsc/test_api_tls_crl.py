"""The API's ``--tls`` mode keeps its CRL current while it runs (issue 13 item 1).

A real uvicorn server on a loopback port with the WAN TLS context and :func:`api_tls.serve`;
real handshakes with GDSC-issued party certificates. OpenSSL checks CRLs against the real clock,
so "a week after start" is made by starting the API with a CRL dated eight days ago."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn

from smarthub.clock import SystemClock
from smarthub.gdsc.api.app import app_from_state
from smarthub.gdsc.api.tls import CrlReloader, serve, server_credentials, uvicorn_config
from smarthub.gdsc.fleet.lifecycle import HubLifecycle
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.store import Store
from smarthub.sim.fleet import provision
from smarthub.wan.tls import client_context

REFUSED = (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, ssl.SSLError)


async def _handshakes(base: str, ctx: ssl.SSLContext) -> bool:
    """Whether a fresh connection gets through the TLS handshake (any HTTP answer will do)."""
    try:
        async with httpx.AsyncClient(base_url=base, verify=ctx, timeout=5) as c:
            await c.get("/openapi.json")
        return True
    except REFUSED:
        return False


async def _eventually(check: Callable[[], object], wall_seconds: float = 10.0) -> bool:
    for _ in range(int(wall_seconds / 0.1)):
        if await check():  # type: ignore[misc]
            return True
        await asyncio.sleep(0.1)
    return False


async def test_a_stale_crl_is_renewed_and_a_published_one_applied_while_the_api_runs(tmp_path: Path) -> None:
    wall = datetime.now(UTC)
    state = tmp_path / "state"
    provision(state, [], wall - timedelta(days=10))
    ca = CertificateAuthority.load(state / "ca")
    for name in ("good", "later"):
        ca.issue(Role.PARTY, name, wall - timedelta(days=9)).save(tmp_path, name)
    ctxs = {
        n: client_context(tmp_path / f"{n}.pem", tmp_path / f"{n}.key", state / "ca" / "ca.pem")
        for n in ("good", "later")
    }

    # Started eight days ago: the CRL it loaded then is a day past its nextUpdate now.
    context = server_credentials(state, wall - timedelta(days=8), ["127.0.0.1"])
    reloader = CrlReloader(state, context)
    config = uvicorn_config(
        app_from_state(state, SystemClock()), "127.0.0.1", 0, context, log_level="warning"
    )
    server = uvicorn.Server(config)
    # Before the reloader's first check: the stale CRL refuses every handshake (the old outage).
    server_task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"https://127.0.0.1:{port}"
        assert not await _handshakes(base, ctxs["good"])
    finally:
        server.should_exit = True
        await server_task
    # Served as the CLI serves it, with the reloader beside uvicorn (checks every 0.2 s here).
    server = uvicorn.Server(config)
    task = asyncio.create_task(serve(server, reloader, every=0.2))
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        base = f"https://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        assert await _eventually(lambda: _handshakes(base, ctxs["good"]))  # a fresh CRL, made here
        assert reloader.reloads >= 1
        # A certificate revoked now, by another process that publishes the CRL (as a running GDSC
        # does): refused from the next check on, without a restart.
        later = next(p for p in tmp_path.glob("later.pem"))
        from cryptography import x509

        serial = x509.load_pem_x509_certificate(later.read_bytes()).serial_number
        store = Store(f"sqlite:///{state / 'gdsc' / 'gdsc.sqlite'}")
        try:
            other = CertificateAuthority.load(state / "ca")
            HubLifecycle(store, other, PullPlan(store)).revoke_certificate(serial, datetime.now(UTC))
        finally:
            store.close()

        async def refused() -> bool:
            return not await _handshakes(base, ctxs["later"])

        assert await _eventually(refused)
        assert await _handshakes(base, ctxs["good"])
    finally:
        server.should_exit = True
        await task
