"""The GDSC's certificate authority: ECDSA P-256 certificates for mutual TLS on the WAN.

IEEE 2030.5-2018 §6.11 (security) requires every HTTPS exchange to be mutually authenticated
with X.509 certificates carrying ECDSA P-256 keys signed with SHA-256, and identifies devices
by a hash of their certificate (§6.3.4: LFDI / SFDI). This module is a small private CA that
issues those certificates to the participants of the smarthub platform:

* ``hub``       - a Smart Hub, the TLS *server* of the WAN (serverAuth, DNS/IP SANs);
* ``collector`` - a GDSC collector, TLS client pulling from hubs (clientAuth);
* ``party``     - a supplier or authorised third party, TLS client (clientAuth);
* ``installer`` - an installer's tool, TLS client (clientAuth).

The role is written into the subject as ``OU=<role>`` and into a URI SAN
``urn:smarthub:<role>:<name>`` so both a TLS verifier and application code can read it.

Deviations from a production 2030.5 PKI, on purpose:

* A single self-signed root (pathlen 0) signs leaf certificates directly; the 2030.5 SERCA /
  MICA chain and its certificate policy OIDs are not modelled.
* Device certificates in 2030.5 never expire (notAfter 99991231235959Z); here they have a
  finite validity so that expiry and revocation can both be exercised.
* Revocation is by CRL (RFC 5280 §5). 2030.5 itself does not define revocation checking.

All functions that need the current time take ``now`` (timezone-aware) instead of reading a clock.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from urllib.parse import quote

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "REVOKED_FILE",
    "CertificateAuthority",
    "CertificateRejected",
    "IssuedCertificate",
    "Role",
    "lfdi",
    "lfdi_from_der",
    "role_of",
    "sfdi",
    "sfdi_from_lfdi",
    "verify_certificate",
]

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
REVOKED_FILE = "revoked.json"

_ORGANISATION = "smarthub"
# Certificates are back-dated by this much so a peer whose clock runs slightly behind the
# GDSC's does not reject a certificate issued "just now" as not yet valid.
_CLOCK_SKEW = timedelta(minutes=5)
_KEY_MODE = 0o600
_PUBLIC_MODE = 0o644


class Role(StrEnum):
    """What a certificate's holder is allowed to be on the WAN."""

    HUB = "hub"
    COLLECTOR = "collector"
    PARTY = "party"
    INSTALLER = "installer"
    OPERATOR = "operator"  # GDSC operations: signs the management commands hubs execute

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


# --- helpers ------------------------------------------------------------------------------------


def _require_aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a torn one.

    The temporary file is created 0600 by mkstemp and chmod-ed *before* any data is written,
    so a private key is never readable by others, not even for an instant.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # Unencrypted PKCS#8: the files are protected by their 0600 mode; key management beyond
    # that (HSM, passphrase) is outside this project's scope.
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _require_p256(key: ec.EllipticCurvePublicKey) -> None:
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        # IEEE 2030.5-2018 §6.11: ECC keys on curve secp256r1 only.
        raise ValueError("IEEE 2030.5 certificates must carry an EC P-256 (secp256r1) public key")


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


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate issued by the GDSC CA, with its key when the CA generated it."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey | None
    cert_pem: bytes
    key_pem: bytes | None
    lfdi: str
    sfdi: int
    role: Role
    name: str

    def save(self, dir: Path, stem: str) -> tuple[Path, Path | None]:
        """Write ``<stem>.pem`` (and ``<stem>.key``, mode 0600, if there is a key); return the paths."""
        dir = Path(dir)
        cert_path = dir / f"{stem}.pem"
        _atomic_write(cert_path, self.cert_pem, _PUBLIC_MODE)
        key_path: Path | None = None
        if self.key_pem is not None:
            key_path = dir / f"{stem}.key"
            _atomic_write(key_path, self.key_pem, _KEY_MODE)
        return cert_path, key_path


@dataclass(frozen=True)
class _Revocation:
    revoked_at: datetime
    reason: x509.ReasonFlags


class CertificateAuthority:
    """A self-signed EC P-256 root that issues and revokes the WAN's certificates.

    Use :meth:`create` for a new CA or :meth:`load` for one saved with :meth:`save`. Once the CA
    has a directory (after ``save`` or ``load``), every :meth:`revoke` is persisted there at once
    so a revocation survives a restart of the GDSC.
    """

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        certificate: x509.Certificate,
        *,
        directory: Path | None = None,
        revoked: dict[int, _Revocation] | None = None,
    ) -> None:
        if key.public_key().public_numbers() != certificate.public_key().public_numbers():
            raise ValueError("CA key does not match the CA certificate")
        self._key = key
        self._cert = certificate
        self._dir = directory
        self._revoked: dict[int, _Revocation] = dict(revoked or {})

    # -- construction and persistence --

    @classmethod
    def create(cls, name: str, now: datetime, days: int = 3650) -> CertificateAuthority:
        """A new CA whose certificate has subject ``CN=<name>, O=smarthub``, valid ``days`` days."""
        now = _require_aware(now)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANISATION),
            ]
        )
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + timedelta(days=days))
            # pathlen 0: this root signs end-entity certificates only, never another CA.
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def save(self, dir: Path) -> None:
        """Write ``ca.pem``, ``ca.key`` (0600) and ``revoked.json`` into ``dir``, atomically each."""
        dir = Path(dir)
        _atomic_write(dir / CA_CERT_FILE, self.pem, _PUBLIC_MODE)
        _atomic_write(dir / CA_KEY_FILE, _key_pem(self._key), _KEY_MODE)
        self._dir = dir
        self._save_revoked()

    @classmethod
    def load(cls, dir: Path) -> CertificateAuthority:
        """Load a CA written by :meth:`save`; later revocations are persisted back to ``dir``."""
        dir = Path(dir)
        cert = x509.load_pem_x509_certificate((dir / CA_CERT_FILE).read_bytes())
        key = serialization.load_pem_private_key((dir / CA_KEY_FILE).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{dir / CA_KEY_FILE} is not an EC private key")
        revoked: dict[int, _Revocation] = {}
        revoked_path = dir / REVOKED_FILE
        if revoked_path.exists():
            for serial, entry in json.loads(revoked_path.read_text()).items():
                revoked[int(serial)] = _Revocation(
                    datetime.fromisoformat(entry["revoked_at"]), x509.ReasonFlags(entry["reason"])
                )
        return cls(key, cert, directory=dir, revoked=revoked)

    def _save_revoked(self) -> None:
        if self._dir is None:
            return
        # Serials are up to 159 bits: stored as decimal strings, JSON numbers would lose precision
        # in other readers.
        doc = {
            str(serial): {"revoked_at": r.revoked_at.isoformat(), "reason": r.reason.value}
            for serial, r in sorted(self._revoked.items())
        }
        _atomic_write(self._dir / REVOKED_FILE, json.dumps(doc, indent=2).encode() + b"\n", _PUBLIC_MODE)

    # -- accessors --

    @property
    def certificate(self) -> x509.Certificate:
        return self._cert

    @property
    def pem(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.PEM)

    @property
    def directory(self) -> Path | None:
        return self._dir

    # -- issuing --

    def issue(
        self,
        role: Role,
        name: str,
        now: datetime,
        *,
        hosts: Sequence[str] = (),
        days: int = 365,
        public_key: ec.EllipticCurvePublicKey | None = None,
    ) -> IssuedCertificate:
        """Issue an end-entity certificate for ``name`` acting as ``role``.

        ``hosts`` become DNS-name or IP-address SANs (needed on hub certificates, since the
        client checks the hostname). If ``public_key`` is given, that key is certified (the
        holder keeps its private key, as with a CSR) and the result has no private key.
        """
        now = _require_aware(now)
        role = Role(role)
        if not name:
            raise ValueError("a certificate needs a non-empty name")
        key: ec.EllipticCurvePrivateKey | None = None
        if public_key is None:
            key = ec.generate_private_key(ec.SECP256R1())
            public_key = key.public_key()
        _require_p256(public_key)

        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        sans.append(x509.UniformResourceIdentifier(role.urn(name)))

        ca_ski = self._cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, name),
                        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value),
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANISATION),
                    ]
                )
            )
            .issuer_name(self._cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            # digitalSignature for ECDHE-ECDSA handshakes; keyAgreement as in the 2030.5 device
            # certificate profile (static-ECDH use of the same key).
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([role.extended_key_usage]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
            )
        )
        cert = builder.sign(self._key, hashes.SHA256())
        return IssuedCertificate(
            certificate=cert,
            private_key=key,
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            key_pem=_key_pem(key) if key is not None else None,
            lfdi=lfdi(cert),
            sfdi=sfdi(cert),
            role=role,
            name=name,
        )

    # -- revocation (RFC 5280 §5) --

    def revoke(
        self, serial: int, now: datetime, reason: x509.ReasonFlags = x509.ReasonFlags.unspecified
    ) -> None:
        """Revoke the certificate with ``serial``; persisted at once if the CA has a directory.

        Revoking an already revoked serial keeps the original date and reason.
        """
        now = _require_aware(now)
        if reason is x509.ReasonFlags.remove_from_crl:
            # removeFromCRL is only meaningful in delta CRLs (RFC 5280 §5.3.1).
            raise ValueError("removeFromCRL is not a revocation reason")
        if serial in self._revoked:
            return
        self._revoked[serial] = _Revocation(now, reason)
        self._save_revoked()

    def is_revoked(self, cert: x509.Certificate) -> bool:
        """True if ``cert`` was issued by this CA and its serial has been revoked."""
        return cert.issuer == self._cert.subject and cert.serial_number in self._revoked

    @property
    def revoked_serials(self) -> frozenset[int]:
        return frozenset(self._revoked)

    def crl(
        self, now: datetime, next_update: timedelta = timedelta(days=7)
    ) -> x509.CertificateRevocationList:
        """A CRL of every revoked serial, signed by the CA, valid from ``now`` to ``now + next_update``.

        Verifiers (OpenSSL included) treat a CRL past its nextUpdate as unusable and fail
        closed, so the GDSC must re-issue it before then.
        """
        now = _require_aware(now)
        ca_ski = self._cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self._cert.subject)
            .last_update(now)
            .next_update(now + next_update)
            # RFC 5280 §5.2.3: CRL numbers must increase; the issue time in seconds does, as long
            # as the injected clock does not go backwards.
            .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
            )
        )
        for serial, r in sorted(self._revoked.items()):
            entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(r.revoked_at)
            # RFC 5280 §5.3.1: the reasonCode "unspecified" SHOULD be omitted rather than stated.
            if r.reason is not x509.ReasonFlags.unspecified:
                entry = entry.add_extension(x509.CRLReason(r.reason), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        return builder.sign(self._key, hashes.SHA256())


# --- verification outside TLS -------------------------------------------------------------------


def verify_certificate(
    cert: x509.Certificate,
    ca_cert: x509.Certificate,
    now: datetime,
    crl: x509.CertificateRevocationList | None = None,
    expected_role: Role | None = None,
) -> None:
    """Check ``cert`` the way the TLS layer would, plus the role; raise :class:`CertificateRejected`.

    Checks, in order: issued by ``ca_cert`` (issuer name and an ECDSA-with-SHA-256 signature
    made by the CA key, IEEE 2030.5-2018 §6.11); inside its validity period at ``now``;
    not on ``crl`` (which must itself be signed by the CA and current, else the check fails
    closed); and, if ``expected_role`` is given, that the subject's role matches and the
    extended key usage agrees with it.
    """
    now = _require_aware(now)
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
        if crl.next_update_utc is not None and now > crl.next_update_utc:
            raise CertificateRejected(f"CRL is stale (next update was due {crl.next_update_utc.isoformat()})")
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
