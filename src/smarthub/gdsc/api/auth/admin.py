"""Administering the API's callers from a GDSC state directory: OAuth2 clients, party
certificates for mutual TLS (issued, bound, revoked, rebound after renewal). What
``smarthub gdsc client`` and ``smarthub gdsc renew`` do; each returns the lines to show.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from cryptography import x509

from smarthub.gdsc.api.auth.clients import ClientRegistry
from smarthub.gdsc.api.auth.oauth import ALL_SCOPES, SCOPES
from smarthub.gdsc.fleet.pki import CertificateAuthority, IssuedCertificate, Role, lfdi, verify_certificate


def register_client(registry: ClientRegistry, party: str, scopes: Iterable[str], now: datetime) -> list[str]:
    """A new OAuth2 client for ``party`` (every scope if none given); its secret is shown once."""
    wanted = frozenset(scopes) or ALL_SCOPES
    if wanted - ALL_SCOPES:
        raise ValueError(f"unknown scope {' '.join(sorted(wanted - ALL_SCOPES))}; scopes: {' '.join(SCOPES)}")
    client_id, secret = registry.register(party, wanted, now)
    return [f"client_id: {client_id}", f"client_secret: {secret}", f"scope: {' '.join(sorted(wanted))}"]


def issue_party_certificate(
    registry: ClientRegistry, ca: CertificateAuthority, party: str, out: Path, now: datetime
) -> list[str]:
    """A party certificate from the CA into ``out`` (``<party>.pem``, ``<party>.key``), bound."""
    issued = ca.issue(Role.PARTY, party, now)
    registry.bind_certificate(party, issued.lfdi, issued.certificate.serial_number, now)
    pem, key = issued.save(out, party)
    return [f"lfdi: {issued.lfdi}", f"certificate: {pem}", f"key: {key}"]


def bind_party_certificate(
    registry: ClientRegistry, ca: CertificateAuthority, party: str, pem: bytes, now: datetime
) -> list[str]:
    """Bind an existing GDSC-issued party certificate (checked against the CA and its CRL)."""
    cert = x509.load_pem_x509_certificate(pem)
    verify_certificate(cert, ca.certificate, now, ca.crl(now), expected_role=Role.PARTY)
    registry.bind_certificate(party, lfdi(cert), cert.serial_number, now)
    return [f"lfdi: {lfdi(cert)}"]


def revoke_caller(registry: ClientRegistry, ca_dir: Path, ident: str, now: datetime) -> list[str]:
    """Revoke a client id (its tokens stop working), or a bound certificate by LFDI (at the CA
    too, when ``ca_dir`` holds one)."""
    if registry.revoke(ident, now):
        return [f"revoked client {ident}"]
    binding = registry.unbind_certificate(ident, now)
    if binding is None:
        raise LookupError(f"no live client or bound certificate {ident!r}")
    if (ca_dir / "ca.pem").exists():
        CertificateAuthority.load(ca_dir).revoke(binding.serial, now)
    return [f"revoked certificate {binding.lfdi} of party {binding.party_id}"]


def renew_certificate(
    ca: CertificateAuthority, pem: bytes, out: Path, stem: str, now: datetime, days: int | None = None
) -> tuple[x509.Certificate, IssuedCertificate, Path]:
    """Renew a party's or a collector's certificate for the same key, subject, role and SANs into
    ``out/<stem>.pem``: (the old certificate, the renewed one, its path). Hubs are renewed by the
    GDSC itself (the upkeep, ``HubLifecycle.renew_hub``), which sends them the certificate."""
    old = x509.load_pem_x509_certificate(pem)
    renewed = ca.renew(old, now, days)
    if renewed.role is Role.HUB:
        raise ValueError("hub certificates are renewed by the GDSC (upkeep or HubLifecycle.renew_hub)")
    path, _ = renewed.save(out, stem)
    return old, renewed, path


def rebind_renewed(
    registry: ClientRegistry,
    ca: CertificateAuthority,
    old: x509.Certificate,
    renewed: IssuedCertificate,
    now: datetime,
) -> list[str]:
    """A renewed party certificate has a new LFDI (IEEE 2030.5-2018 §6.3.4 hashes the whole
    certificate): bind it to the same party and revoke the old binding (at the CA too,
    superseded). Nothing to do if the old one was not bound."""
    binding = registry.certificate(lfdi(old))
    if binding is None or binding.revoked is not None:
        return []
    registry.bind_certificate(binding.party_id, renewed.lfdi, renewed.certificate.serial_number, now)
    registry.unbind_certificate(binding.lfdi, now)
    ca.revoke(binding.serial, now, x509.ReasonFlags.superseded)
    return [f"bound to party: {binding.party_id}", f"revoked: {binding.lfdi}"]
