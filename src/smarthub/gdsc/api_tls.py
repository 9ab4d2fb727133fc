"""Serving the data services API over mutual TLS with uvicorn, the client certificate passed on.

The application learns the caller's certificate from the ASGI TLS extension
(``scope["extensions"]["tls"]``, https://asgi.readthedocs.io/en/latest/specs/tls.html), but
uvicorn (0.54 as installed) does not fill it in: proposals to do so are still open upstream. A
middleware cannot recover it either, since uvicorn hands the application no transport. So
:class:`TlsH11Protocol` is uvicorn's own h11 protocol with one addition: once the handshake is
done (asyncio calls ``connection_made`` only then), it reads the peer's verified certificate from
the connection's ``ssl_object`` and wraps the application of that connection so every request's
scope carries the extension (``client_cert_chain`` with the leaf in PEM, ``tls_version``,
``cipher_suite``; ``server_cert`` and ``client_cert_error`` are None, as Python's ``ssl`` cannot
give them — a certificate failing verification never gets past the handshake). uvicorn takes
the class through its ``http`` setting, so nothing else of it is replaced.

The TLS context is :func:`smarthub.wan.tls.server_context`: the GDSC CA as the only trust anchor,
client certificate required, CRL checked in the handshake. The API's own server certificate is
issued by the GDSC CA with the CA's serverAuth profile (:class:`Role` ``hub``, the only server
profile :mod:`smarthub.gdsc.pki` has), named ``gdsc-api``; it is no registered hub, so it
cannot stand in for one (the GDSC pins hubs by LFDI).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from smarthub.gdsc.http_guard import HeadDeadlineH11Protocol
from smarthub.gdsc.pki import CertificateAuthority, Role
from smarthub.wan.tls import server_context

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def tls_extension(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> dict[str, Any]:
    """The ASGI TLS extension's fields for one connection."""
    der = ssl_object.getpeercert(binary_form=True)
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": None,
    }


class TlsH11Protocol(HeadDeadlineH11Protocol):
    """uvicorn's h11 protocol, adding ``scope["extensions"]["tls"]`` on TLS connections (and,
    like every API connection, a deadline on each request head)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        tls = tls_extension(ssl_object)
        app = self.app

        async def with_tls(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] in ("http", "websocket"):
                scope = {**scope, "extensions": {**(scope.get("extensions") or {}), "tls": tls}}
            await app(scope, receive, send)

        self.app = with_tls


def uvicorn_config(app: Any, host: str, port: int, context: ssl.SSLContext, **kwargs: Any) -> Any:
    """A loaded uvicorn ``Config`` serving ``app`` with ``context`` and :class:`TlsH11Protocol`."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, http=TlsH11Protocol, **kwargs)
    config.load()
    config.ssl = context  # the WAN context, with its CRL check, instead of one built from file names
    return config


def server_credentials(
    state: Path, now: datetime, hosts: Sequence[str], client_cert_optional: bool = False
) -> ssl.SSLContext:
    """The API's TLS context from a state directory: ``gdsc/api-server.{pem,key}`` (issued by the
    CA in ``ca/`` on first use, for ``hosts``), and a CRL of the CA's revocations written now to
    ``gdsc/api-crl.pem`` (valid 7 days: restart the API, or re-apply it, before then).

    ``client_cert_optional`` asks for a certificate without requiring one, for OAuth2 clients
    without certificates on the same port; a certificate that is sent is verified all the same."""
    ca = CertificateAuthority.load(state / "ca")
    gdsc = state / "gdsc"
    cert, key = gdsc / "api-server.pem", gdsc / "api-server.key"
    if not cert.exists() or not key.exists():
        ca.issue(Role.HUB, "gdsc-api", now, hosts=tuple(hosts)).save(gdsc, "api-server")
    crl = gdsc / "api-crl.pem"
    crl.write_bytes(ca.crl(now).public_bytes(serialization.Encoding.PEM))
    ctx = server_context(cert, key, state / "ca" / "ca.pem", crl)
    if client_cert_optional:
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx
