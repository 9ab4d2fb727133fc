"""The hub's management interface: signed, counted commands from the GDSC, executed or refused.

A command arrives through the pull channel (the GDSC POSTs it to ``/mgmt`` while it holds its
mutual-TLS session; the hub never calls out). It is executed only if:

1. its signature (ECDSA P-256, SHA-256, over the canonical payload) verifies under the signer
   certificate that comes with it, and that certificate was issued by the GDSC CA, is valid
   now and carries the operator role;
2. it names this hub;
3. its counter is above every counter accepted before (persisted before the command runs, so
   a crash can never let the same command run twice: at most once).

Every command, executed or refused, is logged with the reason, in SQLite next to the history.
The log keeps the newest ``log_limit`` entries (older ones are pruned as new ones come), so a
flood of refused commands cannot fill the hub's storage; the WAN server refuses ``/mgmt`` from
any certificate but a GDSC collector's before the interface sees (or logs) anything.

The GDSC CA's certificate revocation list (:class:`CrlStore`) rides along with the bulk pull:
each pull's requests announce the number of the GDSC's current CRL and of the first CRL with
its revoked set (``wan.crl_sync``), and the hub asks for the CRL (answering the pull with its
own number) when it has none, when it misses a revocation, or when the one it holds has less
than ``REFRESH_BEFORE`` (3 days) to its nextUpdate; the collector then PUTs it on the same
connection. With a CRL re-published daily for a week, a hub fetches one every ~4 days, and a
revocation reaches every hub at its next pull: no command per hub. A ``pki.crl`` command does
the same. Either way the hub keeps only a CRL signed by its CA and numbered above the one it
holds (even a CRL itself past its nextUpdate: it is newer), stores it atomically, and hands it
to whoever checks certificates (this interface's own signer check, the TLS server).

**A stale CRL** (past its nextUpdate) is a defined state, not an outage:

* what it lists stays refused (a stale list never un-revokes anything);
* for ``STALE_GRACE`` (14 days) past its nextUpdate, signers it does not list are still accepted
  for commands, top-ups, firmware and certificate renewal, with a warning logged (once per CRL)
  and the management log's entry saying so;
* after that, commands are refused (``stale_crl``) — except ``pki.crl`` itself, judged on the
  CRL it carries: the repair path never depends on the freshness of what it repairs, and the
  bulk pull's CRL needs no signed command at all. So no stale CRL can lock a hub out for good.

A hub's CRL goes stale only if its pulls stop (and then no command reaches it either) or the
GDSC stops publishing: the grace covers the outages a GDSC recovers from, the refusal bounds
how long a hub trusts a list nobody vouches for.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from smarthub.clock import Clock
from smarthub.hub import sqlite_files
from smarthub.security.certificates import CertificateRejected, Role, crl_overdue, verify_certificate
from smarthub.wan.contract.bodies import CommandBody, DiagnosticPing, PkiCrl, parse_body
from smarthub.wan.contract.commands import Command, MalformedCommand, SignedCommand

log = logging.getLogger(__name__)

# A handler takes its command type's body (``smarthub.wan.contract.bodies.BODIES[type]``), parsed
# before the counter is taken: Any here, because the registry is keyed by the type's name.
Handler = Callable[[Any], Awaitable[dict[str, Any]] | dict[str, Any]]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mgmt_counter (id INTEGER PRIMARY KEY CHECK (id = 1), counter INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS mgmt_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received INTEGER NOT NULL,
    counter INTEGER,
    type TEXT,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL
);
"""

# 2: the last command's verdict, to answer its re-delivery (an answer lost on the way back).
_LAST = """
CREATE TABLE IF NOT EXISTS mgmt_last (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    counter INTEGER NOT NULL,
    digest BLOB NOT NULL,
    verdict TEXT NOT NULL
);
"""

# Migrations: 1 is the schema when versions began (its IF NOT EXISTS adopts an unversioned file).
SCHEMA = sqlite_files.Schema("management log", [_SCHEMA, _LAST])


REFRESH_BEFORE = timedelta(days=3)  # ask for a newer CRL when the one held has less than this left
STALE_GRACE = timedelta(days=14)  # how long past its nextUpdate a CRL still admits unlisted signers
LOG_LIMIT = 10_000  # management log entries kept
MAX_REASON = 1000  # characters of a reason kept in the log


class CommandRefused(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CommandResult:
    status: str  # "applied", "failed" or "refused"
    code: str
    detail: str
    counter: int | None = None
    result: dict[str, Any] | None = None

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "status": self.status,
                "code": self.code,
                "detail": self.detail,
                "counter": self.counter,
                "result": self.result,
            }
        ).encode()


class ManagementInterface:
    def __init__(
        self,
        hub_id: str,
        ca_cert: x509.Certificate,
        clock: Clock,
        db_path: Path | str,
        crl: x509.CertificateRevocationList | None = None,
        *,
        log_limit: int = LOG_LIMIT,
        stale_grace: timedelta = STALE_GRACE,
    ) -> None:
        self.hub_id = hub_id
        self.log_limit = log_limit
        self.stale_grace = stale_grace
        self._stale_warned: int | None = None  # the CRL number a stale warning was logged for
        self.refusals: dict[str, int] = {}  # refused commands by code since start (not persisted)
        self.ca_cert = ca_cert
        self.clock = clock
        self.crl = crl
        self.handlers: dict[str, Handler] = {"diagnostic.ping": _pong}
        self._file = sqlite_files.open_database(db_path, SCHEMA)
        self._db, self._lock = self._file.connection, self._file.lock
        # Commands still running, by their envelope's digest: a re-delivery meanwhile waits for
        # the verdict (see handle).
        self._running: dict[bytes, asyncio.Future[CommandResult]] = {}

    def register(self, command_type: str, handler: Handler) -> None:
        self.handlers[command_type] = handler

    def use_crl_store(self, crls: CrlStore) -> None:
        """Accept ``pki.crl`` commands into ``crls`` and check signers against its newest CRL."""
        if crls.crl is not None:
            self.crl = crls.crl

        def adopt(crl: x509.CertificateRevocationList, _path: Path) -> None:
            self.crl = crl

        crls.listeners.append(adopt)
        self.register("pki.crl", crls.handle)

    @property
    def last_counter(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT counter FROM mgmt_counter WHERE id = 1").fetchone()
        return 0 if row is None else int(row[0])

    def log(self, limit: int = 100) -> list[tuple[int, int | None, str | None, str, str]]:
        with self._lock:
            return self._db.execute(
                "SELECT received, counter, type, outcome, reason FROM mgmt_log ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- verification ------------------------------------------------------------------
    def verify(self, envelope: bytes) -> Command:
        """The command in ``envelope`` if it may run; :class:`CommandRefused` saying why if not."""
        try:
            signed = SignedCommand.from_envelope(envelope)
            signer = x509.load_pem_x509_certificate(signed.signer_pem)
        except MalformedCommand as err:
            raise CommandRefused("malformed", str(err)) from None
        except (ValueError, x509.InvalidVersion) as err:
            # (InvalidVersion, a certificate whose version is not v1/v3, is no ValueError.)
            raise CommandRefused("malformed", f"not a command envelope: {err}") from None
        now = self.clock.now()
        try:
            # The CRL's age is judged below, once the command type is known (stale-CRL policy).
            verify_certificate(
                signer, self.ca_cert, now, self.crl, expected_role=Role.OPERATOR, crl_grace=None
            )
            key = signer.public_key()
        except CertificateRejected as err:
            raise CommandRefused("unknown_signer", err.reason) from None
        except (ValueError, TypeError) as err:
            # cryptography parses a certificate's fields lazily: a PEM whose DER is well framed
            # but whose subject, issuer or key is not fails only when that field is read
            # (ValueError, or TypeError for an attribute of a type its OID does not allow).
            raise CommandRefused("unknown_signer", f"signer certificate is malformed: {err}") from None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise CommandRefused("unknown_signer", "signer certificate does not carry an EC key")
        try:
            key.verify(signed.signature, signed.payload, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise CommandRefused("bad_signature", "signature does not verify over the payload") from None
        try:
            command = Command.from_payload(signed.payload)
        except MalformedCommand as err:
            raise CommandRefused("malformed", str(err)) from None
        if command.hub_id != self.hub_id:
            raise CommandRefused(
                "wrong_hub", f"command is for hub {command.hub_id!r}, this is {self.hub_id!r}"
            )
        self._stale_crl_policy(command.type, now)
        return command

    def _stale_crl_policy(self, ctype: str, now: datetime) -> None:
        """Within the grace a stale CRL admits the signers it does not list (logged); past it,
        only ``pki.crl`` is taken (module docstring)."""
        crl = self.crl
        overdue = None if crl is None else crl_overdue(crl, now)
        if crl is None or overdue is None:
            return
        number = _crl_number(crl) if _has_number(crl) else -1
        if overdue > self.stale_grace and ctype != "pki.crl":
            raise CommandRefused(
                "stale_crl",
                f"the CRL held (number {number}) was due for renewal {overdue} ago, past the grace of "
                f"{self.stale_grace}: only a newer CRL is taken until one arrives",
            )
        if self._stale_warned != number:
            self._stale_warned = number
            log.warning(
                "hub %s: CRL number %d is %s past its nextUpdate; accepting signers it does not list "
                "for %s more (stale-CRL policy) until a newer CRL arrives with the bulk pull",
                self.hub_id,
                number,
                overdue,
                max(self.stale_grace - overdue, timedelta(0)),
            )

    async def handle(self, envelope: bytes) -> CommandResult:
        """Verify, take the counter, run the handler; log and return what happened."""
        received = int(self.clock.now().timestamp())
        try:
            command = self.verify(envelope)
            counter, ctype = command.counter, command.type
            handler = self.handlers.get(ctype)
            if handler is None:
                raise CommandRefused("unsupported", f"this hub has no command {ctype!r}")
            body = _parse(ctype, command.body)  # refused before the counter: nothing changes
            self._take_counter(counter)
        except CommandRefused as refused:
            again = await self._answer_again(envelope) if refused.code == "replay" else None
            if again is not None:  # the same command again: its answer was lost on the way back
                self._log(received, again.counter, None, "answered", "re-delivered: the verdict again")
                return again
            self.refusals[refused.code] = self.refusals.get(refused.code, 0) + 1
            self._log(received, None, None, "refused", str(refused))
            return CommandResult("refused", refused.code, refused.reason)
        digest = hashlib.sha256(envelope).digest()
        running = self._running[digest] = asyncio.get_running_loop().create_future()
        try:
            verdict = await self._run(handler, body, received, counter, ctype, envelope)
        except BaseException:
            running.cancel()  # the handler itself was cancelled: no verdict to give
            raise
        finally:
            del self._running[digest]
        running.set_result(verdict)
        return verdict

    async def _run(
        self, handler: Handler, body: CommandBody, received: int, counter: int, ctype: str, envelope: bytes
    ) -> CommandResult:
        try:
            out = handler(body)
            result = await out if isinstance(out, Awaitable) else out
        except Exception as err:  # a handler's failure is the command's outcome, reported to the GDSC
            self._log(received, counter, ctype, "failed", f"{type(err).__name__}: {err}")
            return self._keep_verdict(
                envelope, CommandResult("failed", "handler_error", f"{type(err).__name__}: {err}", counter)
            )
        self._log(received, counter, ctype, "applied", "")
        return self._keep_verdict(envelope, CommandResult("applied", "ok", "", counter, result))

    async def _answer_again(self, envelope: bytes) -> CommandResult | None:
        """The verdict for a command delivered again: the kept one if it has finished; if it is
        still running (a firmware update's probation, a collector whose connection was dropped
        meanwhile), its verdict once it ends. Before, a re-delivery while the command ran found
        no verdict kept and was refused as a ``replay``, and the GDSC took the applied command
        for refused (two firmware updates in the 7-day chaos run with channel hubs, issue 26)."""
        running = self._running.get(hashlib.sha256(envelope).digest())
        if running is not None:
            await asyncio.wait({running})  # not shield: a cancelled run answers nothing here
            if not running.cancelled():
                return running.result()
            return None
        return self._verdict_again(envelope)

    def _keep_verdict(self, envelope: bytes, verdict: CommandResult) -> CommandResult:
        """Keep the last command's verdict: a collector that lost the answer (a link cut while
        the command ran) delivers the same envelope again and gets the same verdict, not a
        ``replay`` refusal that would hide what the command did. Its counter is taken, so it
        never runs twice. (A verdict that is not JSON is not kept.)"""
        try:
            text = verdict.to_json().decode()
        except (TypeError, ValueError):
            return verdict
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO mgmt_last(id, counter, digest, verdict) VALUES (1, ?, ?, ?)",
                (verdict.counter, hashlib.sha256(envelope).digest(), text),
            )
        return verdict

    def _verdict_again(self, envelope: bytes) -> CommandResult | None:
        with self._lock:
            row = self._db.execute("SELECT digest, verdict FROM mgmt_last WHERE id = 1").fetchone()
        if row is None or bytes(row[0]) != hashlib.sha256(envelope).digest():
            return None
        v = json.loads(row[1])
        return CommandResult(v["status"], v["code"], v["detail"], v["counter"], v["result"])

    def _take_counter(self, counter: int) -> None:
        with self._file.transaction():
            row = self._db.execute("SELECT counter FROM mgmt_counter WHERE id = 1").fetchone()
            last = 0 if row is None else int(row[0])
            if counter <= last:
                raise CommandRefused("replay", f"counter {counter} is not above the last accepted {last}")
            self._db.execute("INSERT OR REPLACE INTO mgmt_counter(id, counter) VALUES (1, ?)", (counter,))

    def _log(self, received: int, counter: int | None, ctype: str | None, outcome: str, reason: str) -> None:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO mgmt_log(received, counter, type, outcome, reason) VALUES (?, ?, ?, ?, ?)",
                (received, counter, ctype, outcome[:16], reason[:MAX_REASON]),
            )
            # Bounded: keep the newest log_limit entries (ids rise with every insert).
            self._db.execute(
                "DELETE FROM mgmt_log WHERE id <= ?", (int(cur.lastrowid or 0) - self.log_limit,)
            )


def _pong(body: DiagnosticPing) -> dict[str, Any]:
    return {"pong": body.nonce}


def _parse(ctype: str, body: dict[str, Any]) -> CommandBody:
    try:
        return parse_body(ctype, body)
    except MalformedCommand as err:
        raise CommandRefused("malformed", str(err)) from None


class CrlRefused(ValueError):
    """A CRL the hub will not install; the message says why."""


def _has_number(crl: x509.CertificateRevocationList) -> bool:
    try:
        crl.extensions.get_extension_for_class(x509.CRLNumber)
    except x509.ExtensionNotFound:
        return False
    return True


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        # RFC 5280 §5.2.3: conforming CRL issuers MUST include the CRL number.
        raise CrlRefused("CRL has no CRL number (RFC 5280 §5.2.3), so it cannot be ordered") from None


@dataclass
class CrlStore:
    """The hub's copy of the GDSC CA's CRL (RFC 5280 §5), kept at ``path`` (PEM).

    :meth:`install` accepts a CRL only if it is issued and signed by ``ca_cert`` and has a higher
    CRL number than the one held (RFC 5280 §5.2.3: numbers increase with each CRL), so an old CRL
    replayed through a compromised channel cannot un-revoke anything. A newer CRL is taken even
    when it is itself past its nextUpdate (it still knows more than the one held; the stale-CRL
    policy, module docstring, judges its age), with a warning. It is written with
    write-to-temporary, fsync, rename, so a power cut leaves the old CRL or the new one.
    ``listeners`` are then called with the CRL and its path (the management verifier,
    :func:`smarthub.wan.tls.apply_crl` for the TLS server). :meth:`wants` is the bulk pull's
    question: would the hub take the CRL the GDSC offers?
    """

    path: Path
    ca_cert: x509.Certificate
    clock: Clock
    listeners: list[Callable[[x509.CertificateRevocationList, Path], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.crl: x509.CertificateRevocationList | None = None
        if self.path.exists():
            crl = x509.load_pem_x509_crl(self.path.read_bytes())
            self._check_issuer(crl)
            self.crl = crl

    refresh_before: timedelta = REFRESH_BEFORE

    @property
    def number(self) -> int | None:
        return None if self.crl is None else _crl_number(self.crl)

    def wants(self, number: int, base: int) -> bool:
        """Whether to take the GDSC's current CRL, numbered ``number``, whose revoked set is the
        same as every CRL's since number ``base``: yes if the hub holds none, or an older one
        that misses a revocation (older than ``base``), or one with less than
        ``refresh_before`` to its nextUpdate (or past it)."""
        held = self.number
        if held is None:
            return True
        if number <= held:
            return False
        if held < base:
            return True
        due = self.crl.next_update_utc if self.crl is not None else None
        return due is None or due - self.clock.now() < self.refresh_before

    def is_revoked(self, serial: int) -> bool:
        """Whether the CRL held lists the certificate with ``serial`` (for the WAN server's
        per-request check, which also covers resumed TLS sessions)."""
        return self.crl is not None and self.crl.get_revoked_certificate_by_serial_number(serial) is not None

    def _check_issuer(self, crl: x509.CertificateRevocationList) -> None:
        key = self.ca_cert.public_key()
        if crl.issuer != self.ca_cert.subject or not isinstance(key, ec.EllipticCurvePublicKey):
            raise CrlRefused(f"CRL is issued by {crl.issuer.rfc4514_string()}, not by this hub's CA")
        if not crl.is_signature_valid(key):
            raise CrlRefused("CRL signature does not verify under this hub's CA")

    def install(self, data: bytes) -> x509.CertificateRevocationList:
        """Verify a CRL (PEM or DER), store it atomically and tell the listeners; the CRL."""
        try:
            crl = (
                x509.load_pem_x509_crl(data)
                if data.lstrip().startswith(b"-----BEGIN")
                else x509.load_der_x509_crl(data)
            )
        except ValueError as err:
            raise CrlRefused(f"not a CRL: {err}") from None
        self._check_issuer(crl)
        number = _crl_number(crl)
        held = self.number
        if held is not None and number <= held:
            raise CrlRefused(f"CRL number {number} is not newer than the CRL held ({held})")
        overdue = crl_overdue(crl, self.clock.now())
        if overdue is not None:  # newer than the one held all the same: taken, and said
            log.warning("CRL number %d is taken although it is %s past its own nextUpdate", number, overdue)
        _atomic_write(self.path, crl.public_bytes(serialization.Encoding.PEM))
        self.crl = crl
        for listener in self.listeners:
            listener(crl, self.path)
        return crl

    def handle(self, body: PkiCrl) -> dict[str, Any]:
        """The ``pki.crl`` command: ``{"crl": <base64 DER or PEM>}``."""
        crl = self.install(body.crl)
        return {"crl_number": _crl_number(crl), "revoked": len(crl)}


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)
