"""Firmware and configuration updates for the Smart Hub: signed packages, A/B-style slots, rollback.

A hub in the field cannot be visited when an update goes wrong, so an update is only ever
*tried*: the new version is staged next to the running one, switched to, and kept only if the
hub's own health check passes within a probation period; otherwise the hub switches back by
itself. A crash or power cut at any instant leaves either the old or the new version active,
never neither, and an activation that was never confirmed is undone on the next start (the
"boot into the new image, the watchdog reverts" behaviour of real devices).

Package format (``smarthub-firmware/1``), one self-contained JSON document::

    {
      "manifest":  "<canonical JSON text: the signed bytes, kept verbatim>",
      "signature": "<base64 DER ECDSA P-256 / SHA-256 signature over the manifest bytes>",
      "signer":    "<PEM certificate of the signer>",
      "payload":   "<base64 of the payload bytes>"
    }

The manifest is ``{"format": "smarthub-firmware/1", "name", "version", "created", "sha256",
"size"}`` (sorted keys, no spaces). Only the manifest is signed; it binds the payload through
its SHA-256 and size. The manifest travels as a string, not a nested object, so the verifier
checks exactly the bytes that were signed instead of a re-serialisation. ``format`` inside the
signed bytes keeps a manifest from ever being mistaken for a management command signed by the
same operator key (and the reverse). The signer must hold a certificate issued by the GDSC CA
with the operator role, the same trust rule as for management commands. The payload is opaque
(a wheel, a tarball of hub code or configuration); what to do with it is the hub's business.

On disk (``FirmwareSlots``)::

    <root>/slots/<version>/payload        the payload, exactly as signed
    <root>/slots/<version>/manifest.json  the signed manifest bytes (re-checked before activation)
    <root>/current                        the active version (absent: the factory image)
    <root>/previous                       the version to go back to
    <root>/pending                        an activation not yet confirmed by a health check
    <root>/firmware.log                   JSON lines, one per step (``FirmwareUpdater.events``)

A slot is written under a temporary name, fsynced, and renamed into place, so a slot under a
version name is always complete. Pointers are replaced atomically (temp file, fsync, rename,
fsync of the directory). Files are 0600: only the hub process reads them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from smarthub.clock import Clock
from smarthub.hub.management import STALE_GRACE as STALE_CRL_GRACE
from smarthub.security.certificates import CertificateRejected, Role, verify_certificate
from smarthub.wan.contract.bodies import FirmwareUpdate

__all__ = [
    "FORMAT",
    "MAX_PAYLOAD_BYTES",
    "FirmwareError",
    "FirmwarePackage",
    "FirmwareSlots",
    "FirmwareUpdater",
    "HealthCheck",
    "Manifest",
    "PackageRejected",
    "Pending",
    "build_package",
    "firmware_command",
    "open_package",
    "parse_version",
]

log = logging.getLogger(__name__)

FORMAT = "smarthub-firmware/1"
# The default ceiling on a payload; the management path is far smaller (256 KiB request bodies).
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
_MANIFEST_KEYS = frozenset({"format", "name", "version", "created", "sha256", "size"})
# Canonical dotted integers only ("1.01" is refused) so that one version has one slot name, and
# a version string is always a safe directory name.
_VERSION_RE = re.compile(r"(0|[1-9][0-9]{0,8})(\.(0|[1-9][0-9]{0,8})){0,7}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_FILE_MODE = 0o600
_PAYLOAD = "payload"
_MANIFEST = "manifest.json"
_STAGING = ".staging-"
_TRASH = ".trash-"


class FirmwareError(Exception):
    """The slot store cannot do what was asked (no such slot, nothing to roll back to, busy)."""


class PackageRejected(FirmwareError):
    """A package that must not be installed; ``code`` is machine-readable, ``reason`` for humans.

    Codes: ``malformed``, ``too_large``, ``unknown_signer``, ``bad_signature``,
    ``hash_mismatch``, ``downgrade``.
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def parse_version(version: str) -> tuple[int, ...]:
    """``"1.10.2"`` -> ``(1, 10, 2)``; compared as tuples, so 1.10 is newer than 1.9."""
    if not isinstance(version, str) or not _VERSION_RE.fullmatch(version):
        raise ValueError(f"version {version!r} is not dot-separated integers without leading zeros")
    return tuple(int(part) for part in version.split("."))


# --- packages -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Manifest:
    name: str
    version: str
    created: datetime
    sha256: str
    size: int

    @classmethod
    def parse(cls, raw: bytes) -> Manifest:
        """A manifest from its signed bytes; :class:`PackageRejected` ``malformed`` if it is not one."""
        try:
            doc = json.loads(raw)
        except ValueError as err:
            raise PackageRejected("malformed", f"manifest is not JSON: {err}") from None
        if not isinstance(doc, dict) or set(doc) != _MANIFEST_KEYS:
            keys = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
            raise PackageRejected(
                "malformed", f"manifest must have exactly {sorted(_MANIFEST_KEYS)}, got {keys}"
            )
        if doc["format"] != FORMAT:
            raise PackageRejected("malformed", f"manifest format {doc['format']!r} is not {FORMAT!r}")
        name, version, created, sha256, size = (
            doc[k] for k in ("name", "version", "created", "sha256", "size")
        )
        if not isinstance(name, str) or not name.strip():
            raise PackageRejected("malformed", "manifest name must be a non-empty string")
        try:
            parse_version(version)
        except ValueError as err:
            raise PackageRejected("malformed", str(err)) from None
        try:
            when = datetime.fromisoformat(created)
        except (TypeError, ValueError):
            raise PackageRejected("malformed", f"manifest created {created!r} is not ISO 8601") from None
        if when.tzinfo is None:
            raise PackageRejected("malformed", "manifest created must carry a timezone")
        if not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256):
            raise PackageRejected("malformed", "manifest sha256 must be 64 lowercase hex digits")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise PackageRejected("malformed", "manifest size must be a non-negative integer")
        return cls(name, version, when, sha256, size)


@dataclass(frozen=True, slots=True)
class FirmwarePackage:
    """A package whose signature, signer, manifest and payload have all been checked."""

    manifest: Manifest
    manifest_bytes: bytes
    payload: bytes
    signer: x509.Certificate

    @property
    def version(self) -> str:
        return self.manifest.version


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def build_package(
    manifest_fields: dict[str, Any],
    payload: bytes,
    signer_key: ec.EllipticCurvePrivateKey,
    signer_cert_pem: bytes,
) -> bytes:
    """Sign a package (GDSC side). ``manifest_fields`` gives ``name``, ``version`` and ``created``.

    ``created`` may be a timezone-aware datetime or its ISO 8601 text. ``sha256`` and ``size``
    are computed from ``payload``; if the caller passes them too they must agree, so a build
    script cannot sign a manifest that describes some other payload.
    """
    fields = dict(manifest_fields)
    if isinstance(fields.get("created"), datetime):
        fields["created"] = fields["created"].isoformat()
    digest, size = hashlib.sha256(payload).hexdigest(), len(payload)
    if fields.setdefault("sha256", digest) != digest or fields.setdefault("size", size) != size:
        raise ValueError("manifest sha256/size do not describe the payload")
    fields.setdefault("format", FORMAT)
    manifest = _canonical(fields)
    Manifest.parse(manifest)  # refuse to sign what no hub would accept
    signature = signer_key.sign(manifest, ec.ECDSA(hashes.SHA256()))
    return json.dumps(
        {
            "manifest": manifest.decode(),
            "signature": base64.b64encode(signature).decode(),
            "signer": signer_cert_pem.decode(),
            "payload": base64.b64encode(payload).decode(),
        }
    ).encode()


def open_package(
    blob: bytes,
    ca_cert: x509.Certificate,
    now: datetime,
    *,
    crl: x509.CertificateRevocationList | None = None,
    max_size: int = MAX_PAYLOAD_BYTES,
) -> FirmwarePackage:
    """Verify ``blob`` completely, or raise :class:`PackageRejected` saying what is wrong.

    The order matters: nothing from the manifest is believed before the signature over it has
    verified under an operator certificate of ``ca_cert``, and the (possibly large) payload is
    decoded only after the signed size says it is acceptable.
    """
    # base64 grows by 4/3; the rest of the envelope (certificate, manifest) is a few KiB.
    if len(blob) > max_size * 4 // 3 + 64 * 1024:
        raise PackageRejected("too_large", f"package of {len(blob)} bytes exceeds the {max_size}-byte limit")
    try:
        outer = json.loads(blob)
        manifest_bytes = outer["manifest"].encode()
        signature = base64.b64decode(outer["signature"], validate=True)
        signer = x509.load_pem_x509_certificate(outer["signer"].encode())
        payload_b64 = outer["payload"]
        if not isinstance(payload_b64, str):
            raise TypeError("payload must be a base64 string")
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as err:
        raise PackageRejected("malformed", f"not a firmware package: {err}") from None

    try:
        # A stale CRL counts within the hub's grace (the stale-CRL policy, hub.management).
        verify_certificate(signer, ca_cert, now, crl, expected_role=Role.OPERATOR, crl_grace=STALE_CRL_GRACE)
    except CertificateRejected as err:
        raise PackageRejected("unknown_signer", err.reason) from None
    key = signer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise PackageRejected("unknown_signer", "signer certificate does not carry an ECDSA P-256 key")
    try:
        key.verify(signature, manifest_bytes, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise PackageRejected("bad_signature", "signature does not verify over the manifest") from None

    manifest = Manifest.parse(manifest_bytes)
    if manifest.size > max_size:
        raise PackageRejected(
            "too_large", f"payload of {manifest.size} bytes exceeds the {max_size}-byte limit"
        )
    try:
        payload = base64.b64decode(payload_b64, validate=True)
    except (ValueError, binascii.Error) as err:
        raise PackageRejected("malformed", f"payload is not base64: {err}") from None
    if len(payload) != manifest.size:
        raise PackageRejected(
            "hash_mismatch", f"payload is {len(payload)} bytes, the manifest says {manifest.size}"
        )
    if hashlib.sha256(payload).hexdigest() != manifest.sha256:
        raise PackageRejected("hash_mismatch", "payload SHA-256 differs from the signed manifest")
    return FirmwarePackage(manifest, manifest_bytes, payload, signer)


# --- crash-safe file primitives -----------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` so that after a crash it holds either the old or the new bytes."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        _write_synced(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    _fsync_dir(path.parent)


# --- slots --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pending:
    """An activation in progress: ``version`` was (being) switched to from ``previous``."""

    version: str
    previous: str | None
    activated: str  # ISO 8601, for the log only


class FirmwareSlots:
    """Versions on disk and which one is active; every change survives a crash at any instant.

    Single writer: one hub process owns ``root``. A missing ``current`` pointer means the
    factory image the hub was built with, which always exists, so "roll back" from the first
    update goes back to it.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.slots_dir = self.root / "slots"
        self.slots_dir.mkdir(parents=True, exist_ok=True)

    # -- reading --

    def _read_pointer(self, name: str) -> str | None:
        try:
            text = (self.root / name).read_text().strip()
        except FileNotFoundError:
            return None
        parse_version(text)  # a pointer holds a version, never a path
        return text

    def current_version(self) -> str | None:
        return self._read_pointer("current")

    def previous_version(self) -> str | None:
        return self._read_pointer("previous")

    def pending(self) -> Pending | None:
        try:
            doc = json.loads((self.root / "pending").read_bytes())
        except FileNotFoundError:
            return None
        return Pending(doc["version"], doc["previous"], doc["activated"])

    def slot_path(self, version: str) -> Path:
        parse_version(version)
        return self.slots_dir / version

    def payload_path(self, version: str) -> Path:
        return self.slot_path(version) / _PAYLOAD

    def versions(self) -> list[str]:
        """Every slot on disk, oldest first (temporary and half-deleted directories excluded)."""
        found = []
        for entry in self.slots_dir.iterdir():
            with contextlib.suppress(ValueError):
                parse_version(entry.name)
                found.append(entry.name)
        return sorted(found, key=parse_version)

    def is_complete(self, version: str) -> bool:
        """True if the slot exists and its payload still matches its manifest (re-read from disk)."""
        slot = self.slot_path(version)
        try:
            manifest = Manifest.parse((slot / _MANIFEST).read_bytes())
            payload = (slot / _PAYLOAD).read_bytes()
        except (FileNotFoundError, PackageRejected):
            return False
        return (
            manifest.version == version
            and len(payload) == manifest.size
            and hashlib.sha256(payload).hexdigest() == manifest.sha256
        )

    # -- changing --

    def stage(self, pkg: FirmwarePackage) -> Path:
        """Write ``pkg`` into its slot; refuse a version not newer than the current one.

        The slot is built under a temporary name and renamed into place only once every byte
        is on disk, so a slot directory named after a version is always complete.
        """
        version = pkg.version
        current = self.current_version()
        if current is not None and parse_version(version) <= parse_version(current):
            raise PackageRejected(
                "downgrade",
                f"version {version} is not newer than the current {current} (only rollback goes back)",
            )
        final = self.slot_path(version)
        if final.exists():  # left over from an earlier attempt (rolled back, or never activated)
            self._discard(final)
        tmp = self.slots_dir / f"{_STAGING}{version}-{secrets.token_hex(4)}"
        tmp.mkdir(mode=0o700)
        try:
            _write_synced(tmp / _PAYLOAD, pkg.payload)
            _write_synced(tmp / _MANIFEST, pkg.manifest_bytes)
            _fsync_dir(tmp)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(self.slots_dir)
        return final

    def activate(self, version: str, now: datetime) -> str | None:
        """Make ``version`` current, leaving a ``pending`` marker until :meth:`confirm`.

        Order: ``pending`` (naming the version to return to), then ``current``, then
        ``previous``. A crash before ``current`` is replaced leaves the old version active and
        a marker that :meth:`rollback` just clears; a crash after it leaves a marker that says
        where to go back to, even if ``previous`` was not yet updated. Returns the version
        that was current before.
        """
        if self.pending() is not None:
            raise FirmwareError("an earlier activation is not confirmed yet; confirm or roll back first")
        old = self.current_version()
        if old is not None and parse_version(version) <= parse_version(old):
            raise PackageRejected("downgrade", f"version {version} is not newer than the current {old}")
        if not self.is_complete(version):
            raise FirmwareError(f"slot {version} is missing or damaged; stage it again")
        marker = {"version": version, "previous": old, "activated": now.isoformat()}
        _atomic_write(self.root / "pending", json.dumps(marker).encode())
        _atomic_write(self.root / "current", version.encode() + b"\n")
        if old is None:
            _remove(self.root / "previous")
        else:
            _atomic_write(self.root / "previous", old.encode() + b"\n")
        return old

    def confirm(self) -> None:
        """The pending activation passed its health check: keep it."""
        _remove(self.root / "pending")

    def rollback(self) -> str | None:
        """Go back to the version before the last activation; returns the version now current.

        With a ``pending`` marker the target is the one it names; without, ``previous``. After a
        rollback there is no ``previous`` any more: going back twice would mean returning to the
        version that was just abandoned. ``pending`` is removed last, so a crash in between
        just repeats the (idempotent) rollback on the next start.
        """
        pending = self.pending()
        current = self.current_version()
        if pending is not None and pending.version != current:
            _remove(self.root / "pending")  # the switch never happened: the old version is active
            return current
        if pending is not None:
            target = pending.previous
        else:
            target = self.previous_version()
            if target is None:
                raise FirmwareError("there is no previous version to roll back to")
        if target is not None and not self.is_complete(target):
            raise FirmwareError(f"cannot roll back: slot {target} is missing or damaged")
        if target is None:
            _remove(self.root / "current")  # back to the factory image
        else:
            _atomic_write(self.root / "current", target.encode() + b"\n")
        _remove(self.root / "previous")
        _remove(self.root / "pending")
        return target

    def cleanup(self, keep: int = 2) -> list[str]:
        """Delete slots no longer needed; returns the versions removed.

        Always kept: the current and previous versions and whatever a pending marker names.
        Further older versions are kept, newest first, until ``keep`` slots remain. Slots newer
        than the current version (staged but never activated, or rolled back) and leftovers of
        interrupted staging are removed.
        """
        if keep < 1:
            raise ValueError("keep must be at least 1 (the current version)")
        for entry in self.slots_dir.iterdir():
            if entry.name.startswith((_STAGING, _TRASH)):
                shutil.rmtree(entry, ignore_errors=True)
        current, previous, pending = self.current_version(), self.previous_version(), self.pending()
        protected = {v for v in (current, previous) if v is not None}
        if pending is not None:
            protected |= {v for v in (pending.version, pending.previous) if v is not None}
        ceiling = parse_version(current) if current is not None else ()
        older = [v for v in reversed(self.versions()) if v not in protected and parse_version(v) < ceiling]
        kept = set(protected) | set(older[: max(0, keep - len(protected))])
        removed = [v for v in self.versions() if v not in kept]
        for version in removed:
            self._discard(self.slot_path(version))
        return removed

    def _discard(self, slot: Path) -> None:
        # Renamed away first, so a crash mid-delete never leaves a half-empty slot under a version name.
        trash = self.slots_dir / f"{_TRASH}{slot.name}-{secrets.token_hex(4)}"
        os.rename(slot, trash)
        _fsync_dir(self.slots_dir)
        shutil.rmtree(trash, ignore_errors=True)


# --- updater ------------------------------------------------------------------------------------


HealthCheck = Callable[[str], Awaitable[bool]]


class FirmwareUpdater:
    """Verify, stage, activate, health-check; keep the new version or roll back automatically.

    ``health_check(version)`` is the hub's own judgement of the running version (e.g. "the new
    version starts and reads its meters"); it must return ``True`` within ``probation`` (measured
    on ``clock``). ``False``, an exception or running out of time all roll back. Call
    :meth:`recover` once at start-up, before running the active version: an activation left
    unconfirmed by a crash is rolled back there.
    """

    def __init__(
        self,
        slots: FirmwareSlots,
        ca_cert: x509.Certificate,
        clock: Clock,
        health_check: HealthCheck,
        *,
        probation: timedelta = timedelta(minutes=5),
        crl: x509.CertificateRevocationList | None = None,
        max_size: int = MAX_PAYLOAD_BYTES,
        keep: int = 2,
    ) -> None:
        self.slots = slots
        self.ca_cert = ca_cert
        self.clock = clock
        self.health_check = health_check
        self.probation = probation
        self.crl = crl
        self.max_size = max_size
        self.keep = keep
        self.log_path = slots.root / "firmware.log"
        self._lock = asyncio.Lock()

    # -- log --

    def _log(self, event: str, **fields: Any) -> dict[str, Any]:
        entry = {"at": self.clock.now().isoformat(), "event": event, **fields}
        line = json.dumps(entry) + "\n"
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, _FILE_MODE)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        log.info("firmware %s %s", event, fields)
        return entry

    def events(self) -> list[dict[str, Any]]:
        """Every logged step, oldest first (a line torn by a power cut is skipped)."""
        try:
            lines = self.log_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    # -- start-up --

    def recover(self) -> dict[str, Any] | None:
        """Undo an activation a crash left unconfirmed; ``None`` if there was nothing to undo."""
        pending = self.slots.pending()
        if pending is None:
            self.slots.cleanup(self.keep)
            return None
        switched = self.slots.current_version() == pending.version
        now_current = self.slots.rollback()
        reason = (
            "activation was not confirmed before the restart"
            if switched
            else "restart interrupted the switch; the old version stayed active"
        )
        self._log("recovered", rejected=pending.version, version=now_current, reason=reason)
        self.slots.cleanup(self.keep)
        return {
            "status": "rolled_back",
            "version": now_current,
            "rejected": pending.version,
            "reason": reason,
        }

    # -- update --

    async def apply(self, blob: bytes) -> dict[str, Any]:
        """Install ``blob``: ``{"status": "active", ...}`` or ``{"status": "rolled_back", ...}``.

        A package that fails verification (or is a downgrade) raises :class:`PackageRejected`
        before anything on disk changes.
        """
        async with self._lock:
            if self.slots.pending() is not None:
                raise FirmwareError("an unconfirmed activation is pending; call recover() first")
            try:
                pkg = await asyncio.to_thread(
                    open_package, blob, self.ca_cert, self.clock.now(), crl=self.crl, max_size=self.max_size
                )
                version = pkg.version
                await asyncio.to_thread(self.slots.stage, pkg)
            except PackageRejected as err:
                self._log("rejected", code=err.code, reason=err.reason)
                raise
            self._log("staged", version=version, name=pkg.manifest.name, size=pkg.manifest.size)
            old = await asyncio.to_thread(self.slots.activate, version, self.clock.now())
            self._log("activated", version=version, previous=old)
            try:
                ok, reason = await self._healthy(version)
            except BaseException:  # cancelled (shutdown): do not leave an unproven version active
                self.slots.rollback()
                self._log("rolled_back", version=old, rejected=version, reason="update cancelled")
                raise
            if ok:
                self.slots.confirm()
                self._log("confirmed", version=version, previous=old)
                self.slots.cleanup(self.keep)
                return {"status": "active", "version": version, "previous": old}
            self._log("health_failed", version=version, reason=reason)
            now_current = self.slots.rollback()
            self._log("rolled_back", version=now_current, rejected=version, reason=reason)
            self.slots.cleanup(self.keep)
            return {"status": "rolled_back", "version": now_current, "rejected": version, "reason": reason}

    async def _healthy(self, version: str) -> tuple[bool, str]:
        deadline = self.clock.now() + self.probation
        try:
            check = asyncio.ensure_future(self.health_check(version))
        except Exception as err:  # a callback that fails before it even returns its awaitable
            return False, f"health check raised {type(err).__name__}: {err}"
        timer = asyncio.ensure_future(self.clock.sleep_until(deadline))
        try:
            await asyncio.wait({check, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not check.done():
                check.cancel()
        if not check.done() or check.cancelled():
            return False, f"health check did not pass within the {self.probation} probation"
        failure = check.exception()
        if failure is not None:
            return False, f"health check raised {type(failure).__name__}: {failure}"
        if check.result() is not True:
            return False, "health check reported failure"
        return True, ""


# --- management command -------------------------------------------------------------------------


def firmware_command(updater: FirmwareUpdater) -> Callable[[FirmwareUpdate], Awaitable[dict[str, Any]]]:
    """The ``firmware.update`` handler: body ``{"package": "<base64 of a package blob>"}``.

    The command itself is already signed and counted by the management interface; the package
    carries its own operator signature as well, so it stays verifiable on disk and when it
    reaches the hub some other way. The hub's WAN accepts request bodies up to 256 KiB, so
    (after base64 twice over) only packages of roughly 140 KiB fit this path; larger firmware
    needs the IEEE 2030.5 FileTransfer function set, which is not implemented here.

    Returns :meth:`FirmwareUpdater.apply`'s result; a rejected package raises, so the GDSC sees
    the command as ``failed`` with the rejection code in the detail.
    """

    async def handle(body: FirmwareUpdate) -> dict[str, Any]:
        return await updater.apply(body.package)

    return handle
