"""TLS contexts for the WAN: mutual TLS between hubs (servers) and GDSC/parties (clients).

IEEE 2030.5-2018 §6.11 makes every HTTPS exchange mutually authenticated: both ends present
an ECDSA P-256 certificate, and the only trust anchor is the scheme's own CA (here the GDSC
root, :mod:`smarthub.gdsc.fleet.pki`), never the system's public web roots.

Cipher suites: 2030.5 mandates TLS 1.2 with TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 on secp256r1.
That suite is listed first, but Python's ``ssl`` module cannot be relied on to offer it (it
depends on the OpenSSL build and security level, and TLS 1.3 has no CCM8 in OpenSSL's default
list), so the ECDHE-ECDSA AES-GCM suites are allowed as well, and TLS 1.3 is allowed and
preferred when both ends support it. A strict-2030.5 peer that offers only CCM8 still
interoperates where the local OpenSSL supports it.

Identity of the peer beyond "some valid GDSC certificate" is checked with :func:`check_peer`:
the GDSC compares the hub's LFDI with the one it registered for that hub, as 2030.5 servers
identify clients by LFDI (§6.3.4).
"""

from __future__ import annotations

import re
import ssl
from os import PathLike
from typing import TypeAlias

from smarthub.security.certificates import lfdi_from_der

__all__ = [
    "WAN_CIPHERS",
    "PeerMismatch",
    "apply_crl",
    "check_peer",
    "client_context",
    "peer_lfdi",
    "server_context",
]

StrPath: TypeAlias = str | PathLike[str]

# TLS 1.2 suites, in preference order; TLS 1.3 suites are OpenSSL's defaults (all AEAD).
WAN_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-CCM8",  # the IEEE 2030.5 mandatory suite, when OpenSSL offers it
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
    ]
)
# 2030.5 uses secp256r1 for ECDHE too, not only for the certificate keys.
_ECDH_CURVE = "prime256v1"


class PeerMismatch(Exception):
    """The peer's certificate is valid but is not the one expected for this connection."""

    def __init__(self, expected: str, found: str | None) -> None:
        self.expected = expected
        self.found = found
        if found is None:
            message = f"peer presented no certificate, expected LFDI {expected}"
        else:
            message = f"peer certificate has LFDI {found}, expected LFDI {expected}"
        super().__init__(message)

    @staticmethod
    def found_in(text: str) -> str | None:
        """The LFDI a peer presented, from an error text that carries this exception's message
        (the pull paths wrap it into their own errors)."""
        m = _MISMATCH.search(text)
        return m.group(1) if m else None


_MISMATCH = re.compile(r"peer certificate has LFDI ([0-9A-F]{40}), expected LFDI")


def _base_context(
    protocol: int, cert_pem_path: StrPath, key_path: StrPath, ca_pem_path: StrPath
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(WAN_CIPHERS)
    ctx.set_ecdh_curve(_ECDH_CURVE)
    # Renegotiation is a historical attack surface and 2030.5 has no use for it.
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    ctx.load_cert_chain(certfile=cert_pem_path, keyfile=key_path)
    # The GDSC CA is the only trust anchor: no load_default_certs(), so a certificate from a
    # public web CA is refused exactly like one from any other foreign CA.
    ctx.load_verify_locations(cafile=ca_pem_path)
    ctx.verify_mode = ssl.CERT_REQUIRED
    # Strict RFC 5280 checks reject malformed certificates OpenSSL would otherwise tolerate.
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    return ctx


def _add_crl(ctx: ssl.SSLContext, crl_pem_path: StrPath | None) -> None:
    if crl_pem_path is None:
        return
    # load_verify_locations also loads CRLs from a PEM file. With CRL_CHECK_LEAF OpenSSL needs a
    # current CRL from the peer's issuer and fails closed if it is missing or past nextUpdate,
    # so the CRL file must be refreshed (and the context rebuilt) before it goes stale.
    ctx.load_verify_locations(cafile=crl_pem_path)
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


def apply_crl(ctx: ssl.SSLContext, crl_pem_path: StrPath) -> None:
    """Make a running context check peers against a newer CRL from its next full handshake on.

    The CRL is added to the context's certificate store, which every connection accepted or
    opened afterwards verifies against, so a hub's listening server needs no restart. The store
    then holds the older CRLs as well; OpenSSL (1.1.0 and later) picks, among CRLs of the same
    issuer and scope, the one with the latest ``thisUpdate`` that is not in the future, so the
    newest takes effect. The CRL's ``thisUpdate`` must therefore not be ahead of this host's
    clock, or OpenSSL keeps using the older one until it is.

    Limits: ``cadata`` only takes certificates, so the CRL is read from a PEM file (the hub
    keeps it on disk anyway); and a *resumed* TLS session is not verified again (RFC 8446 §2.2:
    resumption re-uses the original authentication), so a peer holding a session from before
    the revocation is not refused by the handshake — drop cached sessions on the client side,
    and check identities above TLS where that matters.
    """
    ctx.load_verify_locations(cafile=crl_pem_path)
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


def server_context(
    cert_pem_path: StrPath,
    key_path: StrPath,
    ca_pem_path: StrPath,
    crl_pem_path: StrPath | None = None,
) -> ssl.SSLContext:
    """TLS context for a hub's HTTPS server: client certificate mandatory, GDSC CA only.

    TLS 1.2 or newer; TLS 1.2 restricted to ECDHE-ECDSA AEAD suites (CCM8 as mandated by
    IEEE 2030.5-2018 §6.11 when OpenSSL provides it, else AES-GCM); TLS 1.3 allowed. See the
    module docstring for why CCM8 alone is not enough with Python's ``ssl``.

    If ``crl_pem_path`` is given, client certificates are checked against that CRL during the
    handshake, so a revoked collector or party is refused before any request is read.
    """
    ctx = _base_context(ssl.PROTOCOL_TLS_SERVER, cert_pem_path, key_path, ca_pem_path)
    # Pick the suite by the server's order so a client offering CCM8 gets the 2030.5 suite.
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    _add_crl(ctx, crl_pem_path)
    return ctx


def client_context(
    cert_pem_path: StrPath,
    key_path: StrPath,
    ca_pem_path: StrPath,
    crl_pem_path: StrPath | None = None,
) -> ssl.SSLContext:
    """TLS context for a WAN client (GDSC collector, party, installer) connecting to hubs.

    Presents the client certificate, verifies the hub against the GDSC CA only, and checks the
    hostname (hub certificates carry DNS/IP SANs, e.g. 127.0.0.1 and localhost in tests).
    Hostname checking proves only that the hub holds *a* certificate for that address; use
    :func:`check_peer` to require the LFDI registered for the hub. ``crl_pem_path`` optionally
    refuses revoked hubs in the handshake.
    """
    ctx = _base_context(ssl.PROTOCOL_TLS_CLIENT, cert_pem_path, key_path, ca_pem_path)
    ctx.check_hostname = True
    _add_crl(ctx, crl_pem_path)
    return ctx


def peer_lfdi(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> str:
    """LFDI (IEEE 2030.5-2018 §6.3.4) of the certificate the peer presented.

    With asyncio streams, pass ``writer.get_extra_info("ssl_object")``. Raises ``ValueError``
    if the peer presented no certificate (impossible on contexts built here, which require one).
    """
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        raise ValueError("peer presented no certificate")
    return lfdi_from_der(der)


def check_peer(ssl_object: ssl.SSLObject | ssl.SSLSocket, expected_lfdi: str) -> None:
    """Raise :class:`PeerMismatch` unless the peer's certificate has LFDI ``expected_lfdi``.

    The handshake already proved the certificate is a valid GDSC one; this pins it to the one
    registered for that peer, so a hub cannot stand in for another hub (e.g. after a DNS or
    address mix-up). LFDIs compare case-insensitively, as hex.
    """
    try:
        found = peer_lfdi(ssl_object)
    except ValueError:
        raise PeerMismatch(expected_lfdi.upper(), None) from None
    if found != expected_lfdi.upper():
        raise PeerMismatch(expected_lfdi.upper(), found)
