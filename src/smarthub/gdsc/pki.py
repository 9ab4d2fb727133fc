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
import ipaddress
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from smarthub.security.certificates import (
    CertificateRejected,
    Role,
    lfdi,
    lfdi_from_der,
    role_of,
    sfdi,
    sfdi_from_lfdi,
    verify_certificate,
)
from smarthub.security.certificates import require_aware as _require_aware

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


# --- helpers ------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate issued by the GDSC CA, with its key when the CA generated it."""

    certificate: x509.Certificate
    # Kept out of repr: an IssuedCertificate in a log line or a traceback must not carry its key.
    private_key: ec.EllipticCurvePrivateKey | None = field(repr=False)
    cert_pem: bytes
    key_pem: bytes | None = field(repr=False)
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
        self._last_crl: tuple[datetime, frozenset[int]] | None = None  # thisUpdate, serials listed

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

    def renew(self, cert: x509.Certificate, now: datetime, days: int | None = None) -> IssuedCertificate:
        """A new certificate for the same public key, subject, role and SANs as ``cert``.

        The renewed certificate has a new serial and a new validity (``days``, by default as
        long as ``cert``'s), and no private key: the holder keeps its own. It must have been
        issued by this CA and not be revoked.

        IEEE 2030.5-2018 §6.3.4 defines the LFDI as the first 160 bits of the SHA-256 hash of
        the whole certificate, so a renewed certificate has a **new LFDI** (and SFDI) although
        the key is unchanged: whoever pins the old LFDI (the GDSC's ``hubs.lfdi``, a party's
        certificate binding) must be moved to the new one, and the old certificate revoked
        (reason superseded, RFC 5280 §5.3.1) once the new one is in use.
        """
        now = _require_aware(now)
        if cert.issuer != self._cert.subject:
            raise ValueError(f"certificate is issued by {cert.issuer.rfc4514_string()}, not by this CA")
        ca_key = self._cert.public_key()
        assert isinstance(ca_key, ec.EllipticCurvePublicKey)
        try:
            ca_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise ValueError("certificate signature does not verify under this CA") from None
        if cert.serial_number in self._revoked:
            raise ValueError(f"certificate {cert.serial_number:x} is revoked: issue a new one instead")
        role = role_of(cert)  # CertificateRejected if it carries none
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not names:
            raise ValueError("certificate has no common name")
        public_key = cert.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise ValueError("certificate does not carry an EC public key")
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            san = x509.SubjectAlternativeName([])
        # The role URN SAN is written again by issue(); DNS and IP SANs keep their order.
        hosts = [str(n.value) for n in san if isinstance(n, x509.IPAddress | x509.DNSName)]
        if days is None:
            days = max(1, (cert.not_valid_after_utc - cert.not_valid_before_utc - _CLOCK_SKEW).days)
        return self.issue(role, str(names[0].value), now, hosts=hosts, days=days, public_key=public_key)

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
        now = _require_aware(now).replace(microsecond=0)  # X.509 times have whole seconds
        # RFC 5280 §5.2.3: CRL numbers must increase. The number is the thisUpdate time in
        # seconds; a CRL listing more revocations than one already issued for the same second
        # (or later) is dated one second after it: verifiers order CRLs by number (a hub refuses
        # one not newer than its own) or by thisUpdate (OpenSSL), so both must rise. Such a CRL
        # is "not yet valid" for up to a second, and OpenSSL keeps using the previous one until
        # then. After a restart the numbers continue from the clock.
        revoked = frozenset(self._revoked)
        if self._last_crl is not None and now <= self._last_crl[0] and revoked != self._last_crl[1]:
            now = self._last_crl[0] + timedelta(seconds=1)
        self._last_crl = (now, revoked)
        ca_ski = self._cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self._cert.subject)
            .last_update(now)
            .next_update(now + next_update)
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
