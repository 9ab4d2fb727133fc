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

The 2030.5 certificate profile (IEEE 2030.5-2018 §6.11):

* **Hierarchy** SERCA → MCA → MICA → device, as the standard draws it: :meth:`create` makes a
  self-signed SERCA (the trust anchor, anyPolicy), an MCA (pathlen 1) and a MICA (pathlen 0)
  that issues every end-entity certificate and signs the CRL. ``ca.pem`` carries the chain
  MICA, MCA, SERCA (the issuing CA first, so readers of "the CA certificate" get the issuer
  of the certificates they check); every participant trusts it whole. The SERCA and MCA keys
  sign once, at creation, and are not kept: 2030.5 keeps them offline, and nothing here
  needs them again (a new MICA means a new hierarchy). A CA saved before the hierarchy (one
  self-signed root) still loads and issues.
* **Device certificates** (every role's) carry the 2030.5 certificate policies (critical):
  :data:`POLICY_DEVICE_GENERIC` (1.3.6.1.4.1.40732.1.1), and for the service provider's own
  clients (collectors, parties) :data:`POLICY_SERVICE_PROVIDER` (…40732.2.3); a
  ``hardwareModuleName`` (RFC 4108) in subjectAltName whose hwType is
  :data:`HW_TYPE_SMARTHUB` and hwSerialNum the holder's name; keyUsage digitalSignature and
  keyAgreement (critical); and **notAfter 99991231235959Z** (:data:`INDEFINITE`): a device
  certificate never expires, revocation (the GDSC's CRL, checked in every handshake and on
  every request at a hub) is the control. ``issue(days=N)`` still makes a finite one, for
  tests of expiry and for an operator who wants renewal by date (:meth:`renew` keeps an
  indefinite certificate indefinite, and a GDSC's ``renew_due`` never finds one due).

Deviations from the 2030.5 profile, on purpose:

* The subject is not empty: ``CN=<name>, OU=<role>, O=smarthub``, and serverAuth/clientAuth
  extended key usage and a role URN sit beside the 2030.5 fields, because every participant
  here reads a peer's role from its certificate (2030.5 leaves roles to the server's own
  registration of LFDIs). The identity 2030.5 uses, the LFDI, is the certificate hash as
  always.
* The hwType OID sits under IANA's documentation PEN 32473 (RFC 5612): the project has no PEN
  of its own (the same PEN its LogEvents use); an operator substitutes its own.
* Revocation is by CRL (RFC 5280 §5). 2030.5 itself does not define revocation checking.

All functions that need the current time take ``now`` (timezone-aware) instead of reading a clock.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
    "ANY_POLICY",
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "HARDWARE_MODULE_NAME",
    "HW_TYPE_SMARTHUB",
    "INDEFINITE",
    "POLICY_DEVICE_GENERIC",
    "POLICY_SERVICE_PROVIDER",
    "REVOKED_FILE",
    "CertificateAuthority",
    "CertificateRejected",
    "IssuedCertificate",
    "Role",
    "hardware_module_name",
    "lfdi",
    "lfdi_from_der",
    "role_of",
    "sfdi",
    "sfdi_from_lfdi",
    "verify_certificate",
]

# IEEE 2030.5-2018 §6.11: device certificates never expire (notAfter 99991231235959Z).
INDEFINITE = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
# 2030.5 certificate policies (§6.11.7, under the ZigBee Alliance/CSEP arc 1.3.6.1.4.1.40732).
POLICY_DEVICE_GENERIC = x509.ObjectIdentifier("1.3.6.1.4.1.40732.1.1")  # device type: generic
POLICY_SERVICE_PROVIDER = x509.ObjectIdentifier("1.3.6.1.4.1.40732.2.3")  # a service provider's
ANY_POLICY = x509.ObjectIdentifier("2.5.29.32.0")
HARDWARE_MODULE_NAME = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.4")  # RFC 4108 id-on-hardwareModuleName
HW_TYPE_SMARTHUB = "1.3.6.1.4.1.32473.1"  # under the documentation PEN (RFC 5612): see the docstring

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


def _read_revoked(path: Path) -> dict[int, _Revocation]:
    if not path.exists():
        return {}
    return {
        int(serial): _Revocation(
            datetime.fromisoformat(entry["revoked_at"]), x509.ReasonFlags(entry["reason"])
        )
        for serial, entry in json.loads(path.read_text()).items()
    }


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


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    length = (
        bytes([n])
        if n < 0x80
        else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
    )
    return bytes([tag]) + length + content


def _der_oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | (arc & 0x7F))
        body += bytes(reversed(chunk))
    return _der(0x06, bytes(body))


def hardware_module_name(hw_type: str, serial: bytes) -> x509.OtherName:
    """RFC 4108 HardwareModuleName ::= SEQUENCE { hwType OBJECT IDENTIFIER, hwSerialNum OCTET
    STRING }, as the otherName 2030.5 device certificates carry in subjectAltName. DER written
    here: ``cryptography`` takes an otherName's value as encoded bytes and has no ASN.1 encoder."""
    return x509.OtherName(HARDWARE_MODULE_NAME, _der(0x30, _der_oid(hw_type) + _der(0x04, serial)))


def _policies(*oids: x509.ObjectIdentifier) -> x509.CertificatePolicies:
    return x509.CertificatePolicies([x509.PolicyInformation(o, None) for o in oids])


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _ca_certificate(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    path_length: int | None,
    policies: x509.CertificatePolicies,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANISATION),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    issuer_cert, issuer_key = issuer if issuer is not None else (None, key)
    issuer_ski = (
        ski
        if issuer_cert is None
        else issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer_cert is None else issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), critical=False
        )
        .add_extension(policies, critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


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
    # The CA certificates between this one and the root (the issuing MICA, then the MCA), PEM.
    chain_pem: bytes = b""

    def save(self, dir: Path, stem: str) -> tuple[Path, Path | None]:
        """Write ``<stem>.pem`` (and ``<stem>.key``, mode 0600, if there is a key); return the paths.

        ``<stem>.pem`` holds the certificate followed by its intermediate CAs (:attr:`chain_pem`),
        the chain a TLS peer sends (RFC 8446 §4.4.2; the root, the SERCA, is left out as the peer
        must already trust it): a 2030.5 client that trusts only the SERCA can then verify it.
        Readers that take the first certificate of the file (``load_pem_x509_certificate``) get
        the end-entity certificate as before.
        """
        dir = Path(dir)
        cert_path = dir / f"{stem}.pem"
        _atomic_write(cert_path, self.cert_pem + self.chain_pem, _PUBLIC_MODE)
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
    """The GDSC's issuing CA (a 2030.5 MICA under its MCA and SERCA) that issues and revokes the
    WAN's certificates.

    Use :meth:`create` for a new CA or :meth:`load` for one saved with :meth:`save`. Once the CA
    has a directory (after ``save`` or ``load``), every :meth:`revoke` is persisted there at once
    so a revocation survives a restart of the GDSC. :attr:`certificate` is the issuing CA's
    (the issuer of every certificate it issues, and of its CRL); :attr:`pem` the whole chain.
    """

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        certificate: x509.Certificate,
        *,
        directory: Path | None = None,
        revoked: dict[int, _Revocation] | None = None,
        chain: Sequence[x509.Certificate] = (),
    ) -> None:
        cert_key = certificate.public_key()
        if (
            not isinstance(cert_key, ec.EllipticCurvePublicKey)
            or key.public_key().public_numbers() != cert_key.public_numbers()
        ):
            raise ValueError("CA key does not match the CA certificate")
        self._key = key
        self._cert = certificate
        self._chain = tuple(chain)  # above the issuing CA: MCA, then SERCA
        self._dir = directory
        self._revoked: dict[int, _Revocation] = dict(revoked or {})
        self._last_crl: tuple[datetime, frozenset[int]] | None = None  # thisUpdate, serials listed

    # -- construction and persistence --

    @classmethod
    def create(cls, name: str, now: datetime, days: int | None = None) -> CertificateAuthority:
        """A new hierarchy: SERCA ``CN=<name> SERCA``, MCA ``CN=<name> MCA`` and the issuing
        MICA ``CN=<name>`` (``O=smarthub`` each), valid indefinitely (or ``days`` days)."""
        now = _require_aware(now)
        not_before = now - _CLOCK_SKEW
        not_after = INDEFINITE if days is None else now + timedelta(days=days)
        serca_key, mca_key, mica_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
        device = _policies(POLICY_DEVICE_GENERIC, POLICY_SERVICE_PROVIDER)
        serca = _ca_certificate(
            f"{name} SERCA", serca_key, None, None, _policies(ANY_POLICY), not_before, not_after
        )
        mca = _ca_certificate(f"{name} MCA", mca_key, (serca, serca_key), 1, device, not_before, not_after)
        mica = _ca_certificate(name, mica_key, (mca, mca_key), 0, device, not_before, not_after)
        return cls(mica_key, mica, chain=(mca, serca))

    def save(self, dir: Path) -> None:
        """Write ``ca.pem``, ``ca.key`` (0600) and ``revoked.json`` into ``dir``, atomically each."""
        dir = Path(dir)
        _atomic_write(dir / CA_CERT_FILE, self.pem, _PUBLIC_MODE)
        _atomic_write(dir / CA_KEY_FILE, _key_pem(self._key), _KEY_MODE)
        self._dir = dir
        self._write_revoked()  # this CA's revocations: a new CA's file replaces any older one

    @classmethod
    def load(cls, dir: Path) -> CertificateAuthority:
        """Load a CA written by :meth:`save`; later revocations are persisted back to ``dir``."""
        dir = Path(dir)
        cert, *chain = x509.load_pem_x509_certificates((dir / CA_CERT_FILE).read_bytes())
        key = serialization.load_pem_private_key((dir / CA_KEY_FILE).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{dir / CA_KEY_FILE} is not an EC private key")
        return cls(key, cert, directory=dir, revoked=_read_revoked(dir / REVOKED_FILE), chain=chain)

    def _save_revoked(self) -> None:
        """Write the revocations, merged with those on disk: another process holding the same
        CA (the running GDSC, a ``smarthub gdsc revoke`` beside it) may have revoked since this
        one loaded it, and writing only what this one knows would undo that revocation. The
        read-merge-write holds an exclusive lock on ``revoked.json.lock``."""
        if self._dir is None:
            return
        self._dir.mkdir(parents=True, exist_ok=True)
        with open(self._dir / (REVOKED_FILE + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for serial, r in _read_revoked(self._dir / REVOKED_FILE).items():
                self._revoked.setdefault(serial, r)  # the first revocation's date and reason stand
            self._write_revoked()

    def _write_revoked(self) -> None:
        assert self._dir is not None
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
        """The chain participants trust: the issuing CA, then the MCA and the SERCA."""
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (self._cert, *self._chain))

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """The CA certificates above the issuing one (MCA, SERCA); empty for a one-level CA."""
        return self._chain

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
        days: int | None = None,
        public_key: ec.EllipticCurvePublicKey | None = None,
    ) -> IssuedCertificate:
        """Issue an end-entity certificate in the 2030.5 device profile for ``name`` as ``role``.

        ``hosts`` become DNS-name or IP-address SANs (needed on hub certificates, since the
        client checks the hostname). If ``public_key`` is given, that key is certified (the
        holder keeps its private key, as with a CSR) and the result has no private key.
        ``days``: None (the default) for 2030.5's indefinite validity, else that many days.
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
        sans.append(hardware_module_name(HW_TYPE_SMARTHUB, name.encode("utf-8")))
        policies = [POLICY_DEVICE_GENERIC]
        if role in (Role.COLLECTOR, Role.PARTY):
            policies.append(POLICY_SERVICE_PROVIDER)

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
            .not_valid_after(INDEFINITE if days is None else now + timedelta(days=days))
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
            .add_extension(_policies(*policies), critical=True)
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
            chain_pem=self.intermediates_pem,
        )

    @property
    def intermediates_pem(self) -> bytes:
        """The CA certificates a holder of one of this CA's certificates sends with it: every
        certificate of the chain but the self-signed root (the issuing CA, then the MCA)."""
        return b"".join(
            c.public_bytes(serialization.Encoding.PEM)
            for c in (self._cert, *self._chain)
            if c.issuer != c.subject
        )

    def renew(self, cert: x509.Certificate, now: datetime, days: int | None = None) -> IssuedCertificate:
        """A new certificate for the same public key, subject, role and SANs as ``cert``.

        The renewed certificate has a new serial and a new validity (``days``, by default as
        long as ``cert``'s: indefinite stays indefinite), and no private key: the holder keeps
        its own. It must have been
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
        if days is None and cert.not_valid_after_utc != INDEFINITE:
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
        if self._dir is not None:  # revocations another process holding this CA made since
            for serial, r in _read_revoked(self._dir / REVOKED_FILE).items():
                self._revoked.setdefault(serial, r)
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
