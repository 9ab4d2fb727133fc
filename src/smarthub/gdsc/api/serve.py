"""Serving the data services API: uvicorn with the slow-client guards, plain HTTP or HTTPS with
party certificates (what ``smarthub gdsc api`` runs).

Slow and oversized clients (:mod:`smarthub.gdsc.api.http_limits`): a deadline on each request
head, bodies bounded in size and time, at most 1,000 connections (then 503), idle ones closed.
With TLS the server certificate comes from the GDSC CA (``gdsc/api-server.pem``, issued on first
use), dated on real time whatever clock a simulated state runs on (OpenSSL's), and the CA's CRL
is kept current while the API runs (:class:`~smarthub.gdsc.api.tls.CrlReloader`).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smarthub.gdsc.api.app import app_from_state
from smarthub.gdsc.api.http_limits import BodyGuard, HeadDeadlineH11Protocol
from smarthub.gdsc.service import clock_from_manifest

GUARDED: dict[str, Any] = dict(
    log_level="warning",
    h11_max_incomplete_event_size=16 * 1024,
    timeout_keep_alive=5,
    limit_concurrency=1000,
)


def serve_api(
    state: Path,
    db_url: str | None,
    host: str,
    port: int,
    *,
    tls: bool = False,
    client_cert_optional: bool = False,
    uvicorn_logging: bool = True,
) -> None:
    """Serve the API of a state directory until stopped (the state's clock: its manifest's).
    ``uvicorn_logging=False``: uvicorn leaves logging as the caller set it (``--log-format json``)."""
    import uvicorn

    if tls and not (state / "ca" / "ca.pem").exists():
        raise FileNotFoundError(f"{state} has no ca/ (the GDSC CA) to serve TLS with")
    guarded: dict[str, Any] = dict(GUARDED) if uvicorn_logging else {**GUARDED, "log_config": None}
    api = BodyGuard(app_from_state(state, clock_from_manifest(state), db_url))
    if not tls:
        uvicorn.run(api, host=host, port=port, http=HeadDeadlineH11Protocol, **guarded)
        return
    from smarthub.gdsc.api.tls import CrlReloader, serve, server_credentials, uvicorn_config

    hosts = sorted({host, "127.0.0.1", "localhost"} - {"0.0.0.0", "::"})
    context = server_credentials(state, datetime.now(UTC), hosts, client_cert_optional)
    server = uvicorn.Server(uvicorn_config(api, host, port, context, **guarded))  # head deadline too
    asyncio.run(serve(server, CrlReloader(state, context)))
