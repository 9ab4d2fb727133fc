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
client certificate required, CRL checked in the handshake. OpenSSL fails closed on a CRL past its
nextUpdate, so a long-running API keeps its CRL current (:class:`CrlReloader`, run beside uvicorn
by :func:`serve`): it applies each newer CRL the GDSC publishes (``ca/crl.pem``, re-published
daily by a running GDSC and at once on a revocation) and, when it holds the CA key itself, makes
a fresh one when the CRL it applied nears its nextUpdate or misses a revocation of the CA's.

The API's own server certificate is issued by the GDSC CA with the CA's serverAuth profile
(:class:`Role` ``hub``, the only server profile :mod:`smarthub.gdsc.fleet.pki` has), named
``gdsc-api``; it is no registered hub, so it cannot stand in for one (the GDSC pins hubs by LFDI).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from smarthub.clock import Clock, SystemClock
from smarthub.gdsc.api.http_limits import HeadDeadlineH11Protocol
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.wan.tls import apply_crl, server_context

log = logging.getLogger(__name__)

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
    ``gdsc/api-crl.pem`` (valid 7 days: :class:`CrlReloader` keeps it current). ``now`` is the
    real time: OpenSSL checks certificates and CRLs against it.

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


def _number(crl: x509.CertificateRevocationList) -> int:
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        return -1


class CrlReloader:
    """Keeps the CRL in a running API's TLS context current (issue 13: the API used to load its
    CRL once at start, so a week later every handshake failed, and a revocation after start was
    never seen). :meth:`check` applies a newer CRL when there is one; :meth:`run` checks
    every ``every`` seconds. New handshakes use it at once (:func:`smarthub.wan.tls.apply_crl`);
    connections already open keep theirs, as the WAN's do."""

    def __init__(
        self,
        state: Path,
        context: ssl.SSLContext,
        *,
        clock: Clock | None = None,
        refresh_before: timedelta = timedelta(days=1),
    ) -> None:
        self.state = state
        self.context = context
        self.clock = clock or SystemClock()  # OpenSSL's: the real time
        self.refresh_before = refresh_before
        self.ca_cert = x509.load_pem_x509_certificate((state / "ca" / "ca.pem").read_bytes())
        own = state / "gdsc" / "api-crl.pem"
        self.applied: x509.CertificateRevocationList | None = (
            x509.load_pem_x509_crl(own.read_bytes()) if own.exists() else None
        )
        self.reloads = 0

    def _genuine(self, crl: x509.CertificateRevocationList) -> bool:
        key = self.ca_cert.public_key()
        return (
            crl.issuer == self.ca_cert.subject
            and isinstance(key, ec.EllipticCurvePublicKey)
            and crl.is_signature_valid(key)
        )

    def _apply(self, crl: x509.CertificateRevocationList, path: Path, why: str) -> None:
        apply_crl(self.context, path)
        self.applied = crl
        self.reloads += 1
        log.info("API TLS: CRL number %d applied (%s)", _number(crl), why)

    def check(self) -> x509.CertificateRevocationList | None:
        """Apply the GDSC's published CRL if it is newer than the one applied (and not dated
        ahead of this host's clock); otherwise, holding the CA key, make one now if the CRL
        applied is within ``refresh_before`` of its nextUpdate or lists other revocations than
        the CA's. The CRL applied, or None if nothing changed."""
        now = self.clock.now()
        held = -1 if self.applied is None else _number(self.applied)
        published = self.state / "ca" / "crl.pem"
        try:
            crl = x509.load_pem_x509_crl(published.read_bytes())
        except (FileNotFoundError, ValueError):
            crl = None
        if crl is not None and self._genuine(crl) and _number(crl) > held and crl.last_update_utc <= now:
            due = crl.next_update_utc
            if due is None or due > now:
                self._apply(crl, published, "published by the GDSC")
                return crl
        if not (self.state / "ca" / "ca.key").exists():
            return None
        ca = CertificateAuthority.load(self.state / "ca")  # afresh: another process may have revoked
        applied = self.applied
        listed = None if applied is None else frozenset(r.serial_number for r in applied)
        due = None if applied is None else applied.next_update_utc
        if listed == ca.revoked_serials and due is not None and due - now > self.refresh_before:
            return None
        # Dated after the CRL applied: OpenSSL prefers the latest thisUpdate, and CRL numbers are
        # seconds, so one made in the same second as another process's would not take over.
        when = now if applied is None else max(now, applied.last_update_utc + timedelta(seconds=1))
        fresh = ca.crl(when)
        own = self.state / "gdsc" / "api-crl.pem"
        own.write_bytes(fresh.public_bytes(serialization.Encoding.PEM))
        self._apply(fresh, own, "made by the API with the CA key")
        return fresh

    async def run(self, stop: asyncio.Event, every: float = 60.0) -> None:
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.check)
            except Exception:  # a bad file now must not end the checks
                log.exception("API TLS: CRL check failed (tried again in %g s)", every)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)


async def serve(server: Any, reloader: CrlReloader, every: float = 60.0) -> None:
    """Run a uvicorn ``Server`` with ``reloader`` keeping its TLS context's CRL current."""
    stop = asyncio.Event()
    checks = asyncio.create_task(reloader.run(stop, every))
    try:
        await server.serve()
    finally:
        stop.set()
        await checks
