"""The hub's own TLS certificate, renewed by a signed ``pki.certificate`` command from the GDSC.

The GDSC CA renews a hub's certificate for the key the hub already holds
(:meth:`smarthub.gdsc.fleet.pki.CertificateAuthority.renew`), so no private key ever travels. The
hub installs the renewed certificate only if it

1. is issued and signed by the hub's CA and valid now (and not on the CRL the hub holds);
2. carries the ``hub`` role and names this hub (``CN=<hub id>``);
3. certifies the public key of the hub's own private key (else the TLS server could not use it).

It is then written with write-to-temporary, fsync, rename (a power cut leaves the old
certificate or the new one) and loaded into the running TLS server contexts
(``SSLContext.load_cert_chain``), which every handshake from then on uses: no restart, and
connections already open keep the certificate they were set up with.

A renewed certificate has a new LFDI (IEEE 2030.5-2018 §6.3.4: the hash of the certificate),
which ``listeners`` receive (e.g. to update what the WAN server reports as its LFDI).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from smarthub.clock import Clock
from smarthub.hub.management import STALE_GRACE, CrlStore, _atomic_write
from smarthub.security.certificates import CertificateRejected, Role, lfdi, verify_certificate
from smarthub.wan.contract.bodies import PkiCertificate

__all__ = ["CertificateRefused", "HubCertificate"]


class CertificateRefused(ValueError):
    """A renewed certificate the hub will not install; ``code`` and the message say why."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass
class HubCertificate:
    """The hub's certificate at ``cert_path`` (PEM) for the key at ``key_path``."""

    hub_id: str
    cert_path: Path
    key_path: Path
    ca_cert: x509.Certificate
    clock: Clock
    contexts: list[ssl.SSLContext] = field(default_factory=list)  # live server contexts to update
    crls: CrlStore | None = None
    listeners: list[Callable[[x509.Certificate, str], Any]] = field(default_factory=list)  # (cert, lfdi)

    def __post_init__(self) -> None:
        self.cert_path = Path(self.cert_path)
        self.key_path = Path(self.key_path)

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_path.read_bytes())

    def _own_public_key(self) -> ec.EllipticCurvePublicKey:
        key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CertificateRefused("no_key", f"{self.key_path} is not an EC private key")
        return key.public_key()

    def check(self, pem: bytes) -> x509.Certificate:
        """The certificate in ``pem`` if this hub may install it; :class:`CertificateRefused` if not."""
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError as err:
            raise CertificateRefused("malformed", f"not a PEM certificate: {err}") from None
        try:
            crl = None if self.crls is None else self.crls.crl
            verify_certificate(  # a stale CRL counts within the hub's grace (hub.management)
                cert, self.ca_cert, self.clock.now(), crl, expected_role=Role.HUB, crl_grace=STALE_GRACE
            )
        except CertificateRejected as err:
            raise CertificateRefused("untrusted", err.reason) from None
        except (ValueError, TypeError) as err:  # fields parsed lazily (see ManagementInterface.verify)
            raise CertificateRefused("malformed", f"certificate is malformed: {err}") from None
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        if names != [self.hub_id]:
            raise CertificateRefused("wrong_hub", f"certificate is for {names}, this is hub {self.hub_id!r}")
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or (
            key.public_numbers() != self._own_public_key().public_numbers()
        ):
            raise CertificateRefused("key_mismatch", "certificate does not certify this hub's private key")
        return cert

    def install(self, pem: bytes) -> x509.Certificate:
        """Check (:meth:`check`), store atomically, load into the live TLS contexts, tell listeners."""
        cert = self.check(pem)
        # The file keeps the intermediate CAs that followed the old certificate (the chain sent
        # in the TLS handshake, see IssuedCertificate.save): the renewal has the same issuer.
        chain = b"".join(
            c.public_bytes(serialization.Encoding.PEM)
            for c in x509.load_pem_x509_certificates(self.cert_path.read_bytes())[1:]
        )
        _atomic_write(self.cert_path, cert.public_bytes(serialization.Encoding.PEM) + chain)
        for ctx in self.contexts:
            ctx.load_cert_chain(certfile=self.cert_path, keyfile=self.key_path)
        new_lfdi = lfdi(cert)
        for listener in self.listeners:
            listener(cert, new_lfdi)
        return cert

    def handle(self, body: PkiCertificate) -> dict[str, Any]:
        """The ``pki.certificate`` command: ``{"certificate": <PEM>}``; the new serial and LFDI."""
        cert = self.install(body.certificate.encode())
        return {"serial": str(cert.serial_number), "lfdi": lfdi(cert)}
