"""Signed anchors of the audit chain, exported to a file outside the database.

An anchor is the sequence number and hash of the chain's last entry at the moment it is taken
(:meth:`smarthub.gdsc.audit.AuditLog.head`), with that moment. The GDSC signs it with its operator
key (ECDSA P-256 / SHA-256, the key whose certificate the GDSC CA issued with the ``operator``
role) over a domain-separated canonical serialisation, so an anchor can be neither forged by
someone who can write the file nor mistaken for a signed hub command, and appends it as one JSON
line to the anchor file (``gdsc/audit-anchors.jsonl`` in the state directory). The file is meant
to be copied off the GDSC: to a second party, a WORM store, a ticket — anything the database's
administrators cannot rewrite. Whoever holds a copy and the CA certificate can check the chain
against every anchor in it (``smarthub gdsc audit verify``).

The running GDSC takes an anchor every hour when the head has moved
(:class:`smarthub.gdsc.service.Upkeep`); ``smarthub gdsc audit anchor`` takes one at once.
Appends take an exclusive ``flock`` on the file, so several GDSC processes can share it.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from smarthub.gdsc.audit import AuditLog, canonical
from smarthub.security.certificates import CertificateRejected, Role, verify_certificate

ANCHOR_FILE = "audit-anchors.jsonl"
_DOMAIN = b"smarthub-gdsc-audit-anchor-v1\n"


class AnchorError(ValueError):
    """An anchor line that is malformed, unsigned, or signed by a key the CA did not certify."""


@dataclass(frozen=True, slots=True)
class Anchor:
    seq: int
    hash: str
    at: datetime  # when it was taken (UTC)

    def payload(self) -> bytes:
        return _DOMAIN + canonical(
            {"seq": self.seq, "hash": self.hash, "at": self.at.astimezone(UTC).isoformat()}
        )

    @property
    def pair(self) -> tuple[int, str]:
        return self.seq, self.hash


def sign_anchor(anchor: Anchor, key: ec.EllipticCurvePrivateKey, cert_pem: bytes) -> str:
    """The anchor as one line of the anchor file (no newline)."""
    signature = key.sign(anchor.payload(), ec.ECDSA(hashes.SHA256()))
    return json.dumps(
        {
            "seq": anchor.seq,
            "hash": anchor.hash,
            "at": anchor.at.astimezone(UTC).isoformat(),
            "signature": base64.b64encode(signature).decode(),
            "signer": cert_pem.decode(),
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def check_anchor(line: str, ca_cert: x509.Certificate) -> Anchor:
    """The anchor a line holds, if its signature verifies under an operator certificate of the
    CA that was valid when the anchor was taken; :class:`AnchorError` otherwise."""
    try:
        raw = json.loads(line)
        anchor = Anchor(int(raw["seq"]), str(raw["hash"]), datetime.fromisoformat(str(raw["at"])))
        signature = base64.b64decode(raw["signature"], validate=True)
        signer = x509.load_pem_x509_certificate(str(raw["signer"]).encode())
    except (ValueError, KeyError, TypeError, binascii.Error) as err:
        raise AnchorError(f"not an anchor: {err}") from None
    if anchor.at.tzinfo is None or anchor.seq < 0 or len(anchor.hash) != 64:
        raise AnchorError(f"not an anchor: seq {anchor.seq}, hash {anchor.hash!r}, at {anchor.at}")
    try:
        verify_certificate(signer, ca_cert, anchor.at, expected_role=Role.OPERATOR)
    except CertificateRejected as err:
        raise AnchorError(f"anchor of entry {anchor.seq}: signer refused: {err.reason}") from None
    key = signer.public_key()
    try:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(signature, anchor.payload(), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, AssertionError):
        raise AnchorError(f"anchor of entry {anchor.seq}: the signature does not verify") from None
    return anchor


def read_anchors(path: Path, ca_cert: x509.Certificate) -> list[Anchor]:
    """Every anchor of the file, checked (:class:`AnchorError` names the first bad line)."""
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                out.append(check_anchor(line, ca_cert))
            except AnchorError as err:
                raise AnchorError(f"{path} line {n}: {err}") from None
    return out


def last_anchor_line(path: Path) -> dict[str, object] | None:
    try:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    except FileNotFoundError:
        return None
    return json.loads(lines[-1]) if lines else None


def write_anchor(
    log: AuditLog, path: Path, key: ec.EllipticCurvePrivateKey, cert_pem: bytes, now: datetime
) -> Anchor | None:
    """Sign the chain's head and append it to ``path``; None if the log is empty or the last
    anchor in the file already names this head."""
    seq, digest = log.head()
    if seq == 0:
        return None
    anchor = Anchor(seq, digest, now.astimezone(UTC))
    line = sign_anchor(anchor, key, cert_pem) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process may be appending its own anchor
        last = last_anchor_line(path)
        if last is not None and last.get("seq") == seq and last.get("hash") == digest:
            return None
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return anchor


# -- the state directory's audit chain (what `smarthub gdsc audit ...` runs) ------------------------


def default_anchor_path(state: Path) -> Path:
    return state / "gdsc" / ANCHOR_FILE


def _state_url(state: Path, db_url: str | None) -> str:
    return db_url or f"sqlite:///{(state / 'gdsc' / 'gdsc.sqlite').resolve()}"


def verify_state(
    state: Path, db_url: str | None = None, anchor_path: Path | None = None
) -> dict[str, object]:
    """Check the chain of the state's store against every signed anchor of the anchor file (the
    state's, or ``anchor_path``: e.g. a second party's copy); a report with ``ok``."""
    from smarthub.gdsc.store import Store

    path = anchor_path or default_anchor_path(state)
    ca_cert = x509.load_pem_x509_certificate((state / "ca" / "ca.pem").read_bytes())
    anchors = read_anchors(path, ca_cert) if path.exists() else []
    store = Store(_state_url(state, db_url))
    try:
        v = AuditLog(store.engine).verify(anchors=[a.pair for a in anchors])
    finally:
        store.close()
    last = max(anchors, key=lambda a: a.seq, default=None)
    return {
        "ok": v.ok,
        "entries": v.entries,
        "head": v.head,
        "anchors": len(anchors),
        "anchored_up_to": last.seq if last else 0,
        "anchor_file": str(path),
        "problems": list(v.problems),
    }


def anchor_state(
    state: Path, now: datetime, db_url: str | None = None, anchor_path: Path | None = None
) -> Anchor | None:
    """Take a signed anchor of the state's chain now, with the state's operator key."""
    from cryptography.hazmat.primitives import serialization

    from smarthub.gdsc.store import Store

    key = serialization.load_pem_private_key((state / "gdsc" / "operator.key").read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the operator key must be an EC key")
    cert_pem = (state / "gdsc" / "operator.pem").read_bytes()
    store = Store(_state_url(state, db_url))
    try:
        return write_anchor(
            AuditLog(store.engine), anchor_path or default_anchor_path(state), key, cert_pem, now
        )
    finally:
        store.close()
