"""Commissioning: binding premises ↔ hub ↔ meters in the registry, so the hub gets scheduled.

The input is a commissioning manifest (JSON), as an installer's tool or a fleet simulator
writes it: for each hub its id, URL, LFDI (from the certificate the GDSC CA issued it),
premises (address, MPAN, MPRN), meters and the WAN link (cell) it sits behind. MPAN and MPRN
are validated before anything is written; a bad manifest changes nothing.

Two ways in:

* :func:`register_manifest` — the **trusted internal path**: the manifest is believed as it
  stands (the fleet simulators and the demo write it next to certificates they issued
  themselves). Nothing authenticates who wrote it; use it only for data the GDSC produced.
* :func:`verify_request` (used by :class:`smarthub.gdsc.fleet.lifecycle.HubLifecycle`) — an
  installer's **commissioning request**, signed with (or sent over mutual TLS under) an
  ``installer`` certificate that the GDSC CA issued and has not revoked. Only an accepted
  request gets the hub a certificate and a place in the registry and the schedule.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from smarthub.gdsc.fleet.pki import (
    CertificateAuthority,
    CertificateRejected,
    Role,
    lfdi,
    role_of,
    verify_certificate,
)
from smarthub.gdsc.fleet.registry import ProvisionedCertificate
from smarthub.gdsc.outages.store import AlertKeys, alert_key_row
from smarthub.gdsc.store import Store
from smarthub.model.identifiers import validate_mpan, validate_mprn


class CommissioningError(ValueError):
    pass


class CommissioningRefused(CommissioningError):
    """A commissioning request the GDSC will not act on; ``code`` says which check failed.

    Codes: ``malformed``, ``foreign_ca`` (installer certificate not issued by the GDSC CA),
    ``installer_revoked``, ``wrong_role`` (not an installer certificate), ``installer_invalid``
    (expired, not yet valid), ``bad_signature``, ``stale`` (request too old or from the future),
    ``hub_exists``, ``unknown_hub`` (a replacement of a hub that is not active),
    ``premises_has_hub`` (the premises already has an active hub and the request does not name it
    as the hub it replaces).
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


# A request is accepted only this long after the installer's tool signed it (and at most this
# far ahead, for clock skew), so a captured request cannot be replayed later.
REQUEST_MAX_AGE = timedelta(hours=1)
REQUEST_MAX_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class CommissioningRequest:
    """One hub to commission (or to put in place of ``replaces``), as the installer signed it."""

    hub_id: str
    premises_id: str
    url: str
    hosts: tuple[str, ...]
    meters_by_fuel: tuple[tuple[str, str], ...]
    issued: datetime
    address: str = ""
    mpan: str | None = None
    mprn: str | None = None
    wan_link: str | None = None
    replaces: str | None = None
    hub_public_key_pem: str | None = None  # the hub's own key (CSR-like); else the CA makes one

    def payload(self) -> dict[str, Any]:
        return {
            "hub_id": self.hub_id,
            "premises_id": self.premises_id,
            "url": self.url,
            "hosts": list(self.hosts),
            "meters": [list(m) for m in self.meters_by_fuel],
            "issued": self.issued.isoformat(),
            "address": self.address,
            "mpan": self.mpan,
            "mprn": self.mprn,
            "wan_link": self.wan_link,
            "replaces": self.replaces,
            "hub_public_key": self.hub_public_key_pem,
        }


@dataclass(frozen=True, slots=True)
class Installer:
    name: str
    lfdi: str
    serial: int


def sign_request(
    request: CommissioningRequest, installer_key: ec.EllipticCurvePrivateKey, installer_cert_pem: bytes
) -> bytes:
    """The envelope an installer's tool sends: canonical JSON payload, ECDSA P-256/SHA-256
    signature, and the installer certificate (the same shape as a management command)."""
    payload = json.dumps(request.payload(), sort_keys=True, separators=(",", ":")).encode()
    return json.dumps(
        {
            "payload": payload.decode(),
            "signature": base64.b64encode(installer_key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode(),
            "signer": installer_cert_pem.decode(),
        }
    ).encode()


FUELS = ("electricity", "gas", "water", "heat")


def sign_request_with(
    request: CommissioningRequest, installer_cert_pem: bytes, installer_key_pem: bytes
) -> bytes:
    """:func:`sign_request` with the installer's certificate and key as PEM (the installer's
    tool): the key must be an EC P-256 private key and the certificate's."""
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(installer_cert_pem)
    key = serialization.load_pem_private_key(installer_key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the installer key must be an EC P-256 private key")
    if key.public_key() != cert.public_key():
        raise ValueError("the installer key is not the key of the certificate")
    return sign_request(request, key, installer_cert_pem)


def verify_installer(cert: x509.Certificate, ca: CertificateAuthority, now: datetime) -> Installer:
    """The installer ``cert`` names, if the GDSC CA issued it for that role and has not revoked it.

    Checked in this order so the error says what is wrong: issuer and signature (``foreign_ca``),
    revocation (``installer_revoked``), role and extended key usage (``wrong_role``), validity
    period (``installer_invalid``). Revocation is read from the CA's own list, not a CRL.
    """
    try:
        verify_certificate(cert, ca.certificate, now)
    except CertificateRejected as err:
        if "not issued by this CA" in err.reason or "ECDSA" in err.reason:
            raise CommissioningRefused("foreign_ca", err.reason) from None
        if not ca.is_revoked(cert):
            raise CommissioningRefused("installer_invalid", err.reason) from None
    if ca.is_revoked(cert):
        raise CommissioningRefused(
            "installer_revoked", f"installer certificate serial {cert.serial_number:x} is revoked"
        )
    try:
        role = role_of(cert)
    except CertificateRejected as err:
        raise CommissioningRefused("wrong_role", err.reason) from None
    if role is not Role.INSTALLER:
        raise CommissioningRefused("wrong_role", f"certificate is for a {role}, not an installer")
    try:
        verify_certificate(cert, ca.certificate, now, expected_role=Role.INSTALLER)  # revocation: above
    except CertificateRejected as err:
        code = "wrong_role" if err.reason.startswith("wrong role") else "installer_invalid"
        raise CommissioningRefused(code, err.reason) from None
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = str(cn[0].value) if cn else cert.subject.rfc4514_string()
    return Installer(name, lfdi(cert), cert.serial_number)


def verify_request(
    envelope: bytes,
    ca: CertificateAuthority,
    now: datetime,
    *,
    peer_certificate: x509.Certificate | None = None,
) -> tuple[CommissioningRequest, Installer]:
    """Check a commissioning request; the request and who sent it, or :class:`CommissioningRefused`.

    ``envelope`` is what :func:`sign_request` makes. If the request came over mutual TLS, pass
    the client certificate the handshake verified as ``peer_certificate``: it must be the signer.
    """
    try:
        outer = json.loads(envelope)
        payload = outer["payload"].encode()
        signature = base64.b64decode(outer["signature"], validate=True)
        signer = x509.load_pem_x509_certificate(outer["signer"].encode())
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as err:
        raise CommissioningRefused("malformed", f"not a commissioning envelope: {err}") from None
    installer = verify_installer(signer, ca, now)
    if peer_certificate is not None and peer_certificate != signer:
        raise CommissioningRefused(
            "bad_signature", "request is signed by another certificate than the TLS peer's"
        )
    key = signer.public_key()
    try:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, AssertionError):
        raise CommissioningRefused("bad_signature", "signature does not verify over the request") from None
    request = _parse(payload)
    if request.issued.tzinfo is None:
        raise CommissioningRefused("malformed", "'issued' must carry a time zone")
    if now - request.issued > REQUEST_MAX_AGE or request.issued - now > REQUEST_MAX_SKEW:
        raise CommissioningRefused(
            "stale", f"request issued {request.issued.isoformat()}, now is {now.isoformat()}"
        )
    return request, installer


def _parse(payload: bytes) -> CommissioningRequest:
    try:
        h = json.loads(payload)
        fields = dict(
            hub_id=str(h["hub_id"]),
            premises_id=str(h["premises_id"]),
            url=str(h["url"]),
            hosts=tuple(str(x) for x in h.get("hosts") or ()),
            meters_by_fuel=tuple((str(m), str(f)) for m, f in h["meters"]),
            issued=datetime.fromisoformat(str(h["issued"])),
            address=str(h.get("address") or ""),
            mpan=validate_mpan(h["mpan"]) if h.get("mpan") else None,
            mprn=validate_mprn(h["mprn"]) if h.get("mprn") else None,
            wan_link=str(h["wan_link"]) if h.get("wan_link") else None,
            replaces=str(h["replaces"]) if h.get("replaces") else None,
            hub_public_key_pem=str(h["hub_public_key"]) if h.get("hub_public_key") else None,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise CommissioningRefused("malformed", f"request payload: {err}") from None
    if not fields["hub_id"] or not fields["premises_id"] or not fields["meters_by_fuel"]:
        raise CommissioningRefused("malformed", "request needs a hub id, a premises id and meters")
    return CommissioningRequest(**fields)  # type: ignore[arg-type]


def _provisioned(pem: Any, hub_lfdi: str) -> ProvisionedCertificate | None:
    """The manifest's ``certificate`` of a hub (PEM), checked to be the one its LFDI names."""
    if pem is None:
        return None
    cert = x509.load_pem_x509_certificate(str(pem).encode())
    if lfdi(cert) != hub_lfdi:
        raise CommissioningError(f"certificate's LFDI {lfdi(cert)} is not the hub's {hub_lfdi}")
    return ProvisionedCertificate(str(cert.serial_number), str(pem), cert.not_valid_before_utc)


def register_manifest(store: Store, manifest: Mapping[str, Any]) -> int:
    """Register every hub of a manifest the GDSC itself produced (the trusted internal path).

    No installer is authenticated here: installers' requests go through :func:`verify_request`.
    A hub entry may carry its ``certificate`` (PEM; its fingerprint must be the entry's LFDI):
    its alert key is then registered, so its last gasps verify at the alert endpoint, and it is
    recorded as the hub's commissioning by the GDSC's provisioning, so the GDSC can renew it.
    """
    hubs = manifest.get("hubs")
    if not isinstance(hubs, list):
        raise CommissioningError("manifest has no 'hubs' list")
    checked: list[dict[str, Any]] = []
    certificates: list[tuple[str, bytes, str]] = []
    for i, h in enumerate(hubs):
        try:
            lfdi = str(h["lfdi"]).upper()
            if len(lfdi) != 40 or any(c not in "0123456789ABCDEF" for c in lfdi):
                raise CommissioningError(f"hub {i}: LFDI must be 40 hex digits")
            checked.append(
                dict(
                    hub_id=str(h["hub_id"]),
                    premises_id=str(h["premises_id"]),
                    url=str(h["url"]),
                    lfdi=lfdi,
                    meters_by_fuel=[(str(m), str(f)) for m, f in h["meters"]],
                    address=str(h.get("address", "")),
                    mpan=validate_mpan(h["mpan"]) if h.get("mpan") else None,
                    mprn=validate_mprn(h["mprn"]) if h.get("mprn") else None,
                    wan_link=str(h["wan_link"]) if h.get("wan_link") else None,
                    provisioned=_provisioned(h.get("certificate"), lfdi),
                )
            )
            if h.get("certificate"):
                pem = str(h["certificate"]).encode()
                alert_key_row(str(h["hub_id"]), pem, lfdi)  # its fingerprint must be the LFDI
                certificates.append((str(h["hub_id"]), pem, lfdi))
        except (KeyError, TypeError, ValueError) as err:
            raise CommissioningError(f"hub {i} in manifest: {err}") from None
    for entry in checked:
        store.register_hub(**entry)
    # The hubs' last gasps verify under the keys of the certificates the manifest carries.
    AlertKeys(store.engine).register_many(certificates)
    return len(checked)
