"""Certificate facts every participant checks: roles, IEEE 2030.5 device identifiers, verification.

Shared by the hub (management commands and firmware packages are signed by GDSC operator
certificates), the WAN layer (peer identities) and the GDSC, whose certificate authority
(:mod:`smarthub.gdsc.fleet.pki`) issues the certificates. Kept apart from the CA so that a hub
never imports the GDSC: it needs to *check* certificates, never to issue them.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from urllib.parse import quote

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

__all__ = [
    "CertificateRejected",
    "Role",
    "crl_overdue",
    "lfdi",
    "lfdi_from_der",
    "require_aware",
    "role_of",
    "sfdi",
    "sfdi_from_lfdi",
    "verify_certificate",
]


class Role(StrEnum):
    """What a certificate's holder is allowed to be on the WAN."""

    HUB = "hub"
    COLLECTOR = "collector"
    PARTY = "party"
    INSTALLER = "installer"
    OPERATOR = "operator"  # GDSC operations: signs the management commands hubs execute
    # A third-party in-home display, issued for one home: its name is the hub id (or
    # "<hub id>/<screen>"); the hub serves it the consumer's own Pricing and Messaging resources
    # (IEEE 2030.5-2018 §10.6, §10.8) and nothing the privacy filter keeps from other parties.
    IHD = "ihd"

    @property
    def extended_key_usage(self) -> x509.ObjectIdentifier:
        # Hubs are the HTTPS servers of the WAN, everybody else connects to them.
        return ExtendedKeyUsageOID.SERVER_AUTH if self is Role.HUB else ExtendedKeyUsageOID.CLIENT_AUTH

    @property
    def eku_name(self) -> str:
        return "serverAuth" if self is Role.HUB else "clientAuth"

    def urn(self, name: str) -> str:
        # Percent-encode so party names with spaces etc. still form a valid URI SAN.
        return f"urn:smarthub:{self.value}:{quote(name, safe='-._~')}"


class CertificateRejected(Exception):
    """A certificate failed :func:`verify_certificate`; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- IEEE 2030.5 device identifiers -------------------------------------------------------------


def lfdi_from_der(der: bytes) -> str:
    """Long-form device identifier of a DER-encoded certificate (IEEE 2030.5-2018 §6.3.4).

    The certificate fingerprint is the SHA-256 hash of the DER certificate; the LFDI is its
    leftmost 160 bits, written as 40 hexadecimal digits (upper case, as in the standard's
    examples).
    """
    return hashlib.sha256(der).hexdigest()[:40].upper()


def lfdi(cert: x509.Certificate) -> str:
    """LFDI of ``cert`` (IEEE 2030.5-2018 §6.3.4); see :func:`lfdi_from_der`."""
    return lfdi_from_der(cert.public_bytes(serialization.Encoding.DER))


def sfdi_from_lfdi(lfdi_hex: str) -> int:
    """Short-form device identifier from an LFDI (IEEE 2030.5-2018 §6.3.4).

    The leftmost 36 bits of the fingerprint (= the first 9 hex digits of the LFDI) as a
    decimal number, with one check digit appended chosen so that the sum of *all* digits is
    a multiple of 10. This is a plain sum-of-digits check, not Luhn: the standard's example
    LFDI 3E4F45AB31EDFE5B67E343E5E4562E31984E23E5 gives 16726121139 -> SFDI 167261211391.
    """
    if len(lfdi_hex) < 9:
        raise ValueError(f"an LFDI has 40 hex digits, got {lfdi_hex!r}")
    base = int(lfdi_hex[:9], 16)
    check = -sum(int(d) for d in str(base)) % 10
    return base * 10 + check


def sfdi(cert: x509.Certificate) -> int:
    """SFDI of ``cert`` (IEEE 2030.5-2018 §6.3.4); see :func:`sfdi_from_lfdi`."""
    return sfdi_from_lfdi(lfdi(cert))


# --- verification outside TLS -------------------------------------------------------------------


def require_aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def crl_overdue(crl: x509.CertificateRevocationList, now: datetime) -> timedelta | None:
    """How long ``crl`` has been past its nextUpdate at ``now`` (RFC 5280 §5.1.2.5); None if it
    is not (or names no nextUpdate)."""
    due = crl.next_update_utc
    if due is None or now <= due:
        return None
    return now - due


def role_of(cert: x509.Certificate) -> Role:
    """The :class:`Role` recorded in ``cert``'s subject (``OU=<role>``).

    Raises :class:`CertificateRejected` if there is none or it is not a known role.
    """
    ous = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if len(ous) != 1:
        raise CertificateRejected(f"certificate subject {cert.subject.rfc4514_string()} carries no role")
    value = ous[0].value
    try:
        return Role(value if isinstance(value, str) else value.decode())
    except ValueError:
        raise CertificateRejected(f"certificate carries unknown role {value!r}") from None


def verify_certificate(
    cert: x509.Certificate,
    ca_cert: x509.Certificate,
    now: datetime,
    crl: x509.CertificateRevocationList | None = None,
    expected_role: Role | None = None,
    *,
    crl_grace: timedelta | None = timedelta(0),
) -> None:
    """Check ``cert`` the way the TLS layer would, plus the role; raise :class:`CertificateRejected`.

    Checks, in order: issued by ``ca_cert`` (issuer name and an ECDSA-with-SHA-256 signature
    made by the CA key, IEEE 2030.5-2018 §6.11); inside its validity period at ``now``;
    not on ``crl`` (which must itself be signed by the CA, and not more than ``crl_grace``
    past its nextUpdate, else the check fails closed; ``crl_grace`` None: a CRL past its
    nextUpdate still counts for what it lists, and the caller judges its age, as the hub's
    stale-CRL policy does, ``hub.management``); and, if ``expected_role`` is given, that the
    subject's role matches and the extended key usage agrees with it.
    """
    now = require_aware(now)
    subject = cert.subject.rfc4514_string()

    if cert.issuer != ca_cert.subject:
        raise CertificateRejected(
            f"certificate {subject} is not issued by this CA (issuer {cert.issuer.rfc4514_string()})"
        )
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        raise CertificateRejected(f"certificate {subject} is not signed with ECDSA SHA-256")
    ca_key = ca_cert.public_key()
    if not isinstance(ca_key, ec.EllipticCurvePublicKey):
        raise CertificateRejected("CA certificate does not carry an EC public key")
    try:
        ca_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise CertificateRejected(
            f"certificate {subject} is not issued by this CA (signature does not verify)"
        ) from None

    if now < cert.not_valid_before_utc:
        raise CertificateRejected(
            f"certificate {subject} is not yet valid (valid from {cert.not_valid_before_utc.isoformat()})"
        )
    if now > cert.not_valid_after_utc:
        raise CertificateRejected(
            f"certificate {subject} has expired (valid until {cert.not_valid_after_utc.isoformat()})"
        )

    if crl is not None:
        if crl.issuer != ca_cert.subject or not crl.is_signature_valid(ca_key):
            raise CertificateRejected("CRL is not signed by this CA")
        overdue, due = crl_overdue(crl, now), crl.next_update_utc
        if overdue is not None and due is not None and crl_grace is not None and overdue > crl_grace:
            raise CertificateRejected(f"CRL is stale (next update was due {due.isoformat()})")
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None:
            raise CertificateRejected(
                f"certificate {subject} (serial {cert.serial_number:x}) was revoked on "
                f"{entry.revocation_date_utc.isoformat()}"
            )

    if expected_role is not None:
        expected_role = Role(expected_role)
        actual = role_of(cert)
        if actual is not expected_role:
            raise CertificateRejected(
                f"wrong role: expected {expected_role}, certificate {subject} is for {actual}"
            )
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            raise CertificateRejected(f"certificate {subject} has no extended key usage") from None
        if expected_role.extended_key_usage not in eku:
            raise CertificateRejected(
                f"wrong role: certificate {subject} lacks the {expected_role.eku_name} extended key usage"
            )
