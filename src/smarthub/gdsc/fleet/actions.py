"""A hub's life as the operator acts on it from a GDSC state directory: installer certificates,
commissioning with the hub's files written, replacement, revocation and decommissioning. Each
action returns what it did as a JSON-ready dict (what ``smarthub gdsc ...`` prints).

The state directory lays out ``ca/`` (the GDSC CA, ``crl.pem``) and ``hubs/<hub id>/`` (a hub's
``hub.pem``, ``hub.key`` and ``ca.pem``, as ``smarthub hub --state`` reads them).
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from smarthub.gdsc.fleet.lifecycle import DECOMMISSIONED, REVOKED, Commissioned, HubLifecycle
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role, _atomic_write, lfdi

CRL_COMMAND = "pki.crl"


def revocation_reason(text: str) -> x509.ReasonFlags:
    """An RFC 5280 §5.3.1 reason by its name (``keyCompromise``, ``key_compromise``, ...)."""
    for flag in x509.ReasonFlags:
        if (
            text in (flag.value, flag.name, flag.name.replace("_", "-"))
            and flag is not x509.ReasonFlags.remove_from_crl
        ):
            return flag
    names = ", ".join(f.value for f in x509.ReasonFlags if f is not x509.ReasonFlags.remove_from_crl)
    raise ValueError(f"unknown revocation reason {text!r}; RFC 5280 §5.3.1 reasons: {names}")


def entry_reason(entry: x509.RevokedCertificate | None) -> str | None:
    """The reason a CRL entry gives (``unspecified`` without one; None: no entry)."""
    if entry is None:
        return None
    try:
        return str(entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value)
    except x509.ExtensionNotFound:
        return "unspecified"


def peek_request(envelope: bytes) -> dict[str, Any]:
    """A commissioning request's payload, unverified: read only to route it and to check where
    the hub's files go before anything changes (the lifecycle verifies the envelope either way)."""
    try:
        payload = json.loads(json.loads(envelope)["payload"])
    except (ValueError, KeyError, TypeError):
        return {}  # malformed: the lifecycle says so
    return payload if isinstance(payload, dict) else {}


def hub_directory(state: Path, out: Path | None, hub_id: Any) -> Path:
    """Where a commissioned hub's files go; refused (before anything changes) if they could not be
    written there, since a key the CA made exists only in this process."""
    if out is None and (
        not isinstance(hub_id, str)
        or not hub_id
        or hub_id.startswith(".")
        or any(c in hub_id for c in "/\\\0")
    ):
        raise ValueError(f"hub id {hub_id!r} cannot name a directory under {state / 'hubs'}: give --out")
    hub_dir = out or state / "hubs" / hub_id
    existing = next(p for p in (hub_dir, *hub_dir.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write the hub's certificate and key under {hub_dir} ({existing})")
    return hub_dir


def save_hub(done: Commissioned, state: Path, hub_dir: Path) -> dict[str, Any]:
    """Write the hub's certificate (and key, if the CA made it) and the CA certificate into the
    directory ``smarthub hub --state`` reads; what was written."""
    try:
        pem, key = done.certificate.save(hub_dir, "hub")
        _atomic_write(hub_dir / "ca.pem", (state / "ca" / "ca.pem").read_bytes(), 0o644)
    except OSError as e:
        raise OSError(
            f"hub {done.hub_id} is commissioned but its certificate could not be written to {hub_dir} "
            f"({e.strerror or e}): revoke it (`smarthub gdsc revoke --hub {done.hub_id}`), commission again"
        ) from None
    return {
        "hub_id": done.hub_id,
        "lfdi": done.certificate.lfdi,
        "serial": str(done.certificate.certificate.serial_number),
        "certificate": str(pem),
        "key": str(key) if key is not None else None,
        "installer": done.installer.name,
    }


def hub_serial(state: Path, lifecycle: HubLifecycle, hub_id: str, given: int | None) -> int | None:
    """The certificate serial to revoke for ``hub_id``: ``given``; for a hub registered from the
    manifest (no commissioning record), the serial of the state's ``hubs/<hub>/hub.pem`` if its
    LFDI is the one registered; else None (the lifecycle decides)."""
    registered = lifecycle.store.hub_lfdi(hub_id)
    if registered is None:
        raise LookupError(f"no hub {hub_id!r} is registered at this GDSC")
    if given is not None:
        return given
    if lifecycle.commissioning_record(hub_id) is not None:
        return None
    pem = state / "hubs" / hub_id / "hub.pem"
    if not pem.exists():
        return None
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    return cert.serial_number if registered.upper() == lfdi(cert) else None


def issue_installer(state: Path, name: str, out: Path, stem: str, now: datetime) -> dict[str, Any]:
    """An installer certificate from the state's CA (what signs commissioning requests)."""
    issued = CertificateAuthority.load(state / "ca").issue(Role.INSTALLER, name, now)
    pem, key = issued.save(out, stem)
    return {
        "installer": name,
        "lfdi": issued.lfdi,
        "serial": str(issued.certificate.serial_number),
        "certificate": str(pem),
        "key": str(key),
    }


def commission(
    lifecycle: HubLifecycle,
    state: Path,
    envelope: bytes,
    now: datetime,
    out: Path | None = None,
    old_serial: int | None = None,
) -> dict[str, Any]:
    """Commission a hub from an installer's signed request and write its files; a request naming
    the hub it replaces is a replacement (:func:`replace`)."""
    payload = peek_request(envelope)
    if payload.get("replaces"):  # the old certificate is resolved before anything changes
        return replace(lifecycle, state, str(payload["replaces"]), envelope, now, old_serial, out)
    hub_dir = hub_directory(state, out, payload.get("hub_id"))
    done = lifecycle.commission(envelope, now)
    return {**save_hub(done, state, hub_dir), "status": "active", "scheduled": True}


def replace(
    lifecycle: HubLifecycle,
    state: Path,
    old: str,
    envelope: bytes,
    now: datetime,
    old_serial: int | None = None,
    out: Path | None = None,
) -> dict[str, Any]:
    """Put the requested hub in place of ``old`` (decommissioned, its certificate superseded)."""
    hub_dir = hub_directory(state, out, peek_request(envelope).get("hub_id"))
    serial = hub_serial(state, lifecycle, old, old_serial)
    before = lifecycle.plan.last_job()
    done = lifecycle.replace_hub(old, envelope, now, old_serial=serial)
    saved = save_hub(done, state, hub_dir)  # first: the key the CA made exists only here
    return {
        **saved,
        "status": "active",
        "scheduled": True,
        "replaced": old,
        "old_status": "decommissioned",
        "crl": str(lifecycle.crl_path),
        "pki_crl_queued": lifecycle.plan.hubs_queued_after(before, CRL_COMMAND),
    }


def end_hub(
    lifecycle: HubLifecycle,
    state: Path,
    hub_id: str,
    now: datetime,
    *,
    revoke: bool,
    reason: str = "keyCompromise",
    serial: int | None = None,
) -> dict[str, Any]:
    """Revoke (``revoke``) or decommission a hub: no more pulls, its certificate on the CRL."""
    cert_serial = hub_serial(state, lifecycle, hub_id, serial)
    before = lifecycle.plan.last_job()
    if revoke:
        crl = lifecycle.revoke_hub(hub_id, now, revocation_reason(reason), serial=cert_serial)
        status = REVOKED
    else:
        crl = lifecycle.decommission_hub(hub_id, now, serial=cert_serial)
        status = DECOMMISSIONED
    record = lifecycle.commissioning_record(hub_id)
    revoked_serial = cert_serial if cert_serial is not None else int((record or {})["cert_serial"])
    return {
        "hub_id": hub_id,
        "status": status,
        "serial": str(revoked_serial),
        "reason": entry_reason(crl.get_revoked_certificate_by_serial_number(revoked_serial)),
        "crl": str(lifecycle.crl_path),
        "crl_entries": len(crl),
        "pki_crl_queued": lifecycle.plan.hubs_queued_after(before, CRL_COMMAND),
    }
