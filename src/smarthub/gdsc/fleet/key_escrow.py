"""The GDSC's escrow of meter keys (issue 20 item 2: "meter registry and keys, re-wrapped for
the new hub"), as a DLMS head-end's or an OMS key management system's key store keeps them.

**What it holds.** Every meter key the GDSC learns: the keys of a manufacturer's shipment file
(``source = shipment``, :mod:`smarthub.gdsc.fleet.field_meters`) and every key sent with a
``meter.key`` command (``source = delivered``, with the hub and the urgent job that carries it:
:meth:`smarthub.gdsc.pull.plan.PullPlan.queue_command` deposits it when the store has an escrow).
A hub replaced or wiped gets them back from here (:mod:`smarthub.gdsc.fleet.recovery`): the
command's own envelope is cleared once delivered (``gdsc.pull.tables.SECRET_COMMANDS``), so the
escrow is the only copy the GDSC keeps.

**At rest** each key is sealed (envelope encryption, NIST SP 800-57 Pt 1 §6.2.2: a data key
protected by a key-encryption key) with AES-256-GCM (NIST SP 800-38D) under the GDSC's
key-encryption key (KEK), a 32-byte 0600 file ``gdsc/escrow.key`` in the GDSC's state directory
beside its operator and CA keys (:meth:`KeyEscrow.from_state` creates it on first use,
atomically, so two GDSC processes starting together agree on one). The associated data binds
the sealed key to its meter: a row copied onto another meter, or opened under another KEK, fails
authentication with :class:`EscrowKeyError` naming the meter and the KEK, never a wrong key. The
table holds no key in clear, so neither SQLite's free pages nor PostgreSQL's dead tuples and WAL
(which keep a row's old versions until VACUUM) can give one away without the KEK file.

``kek_id`` (the first 8 bytes of the KEK's SHA-256, hex) names the KEK a row was sealed under,
so a GDSC started with another ``escrow.key`` says so rather than "wrong tag".

Shipment keys imported before the escrow existed (``meter_shipments.meter_key``, in clear,
migration 0015) are moved into it and cleared from that column when a store's escrow is
enabled (:meth:`KeyEscrow.adopt_clear_shipment_keys`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    String,
    Table,
    delete,
    select,
    text,
    update,
)

from smarthub.gdsc.db.database import Database, metadata

KEK_FILE = "escrow.key"  # in the state's gdsc/ directory
KEK_BYTES = 32  # AES-256
METER_KEY_BYTES = 16  # wM-Bus (OMS) and DLMS suite 0 keys are AES-128
SHIPMENT, DELIVERED = "shipment", "delivered"
_AAD = b"smarthub gdsc meter key escrow v1\x00"

_ID = BigInteger().with_variant(Integer, "sqlite")

meter_key_escrow = Table(
    "meter_key_escrow",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("meter_id", String(64), nullable=False, index=True),
    Column("source", String(16), nullable=False),  # shipment / delivered
    Column("hub_id", String(64)),  # the hub a delivered key was sent to
    Column("job_id", BigInteger, index=True),  # the urgent job carrying it (delivered keys)
    Column("shipment", String(64)),  # the shipment file it came in (shipment keys)
    Column("pending", Integer, nullable=False),  # 1: sent staged ("pending": true)
    Column("kek_id", String(16), nullable=False),  # the KEK it is sealed under
    Column("nonce", LargeBinary, nullable=False),
    Column("sealed", LargeBinary, nullable=False),  # AES-256-GCM ciphertext and tag
    Column("created", DateTime(timezone=True), nullable=False),
)


class EscrowUnavailable(RuntimeError):
    """Keys to keep, and no escrow (no KEK) to keep them in."""


class EscrowKeyError(Exception):
    """An escrowed key that does not open: another KEK, or a row moved to another meter."""


@dataclass(frozen=True, slots=True)
class EscrowedKey:
    meter_id: str
    key: bytes
    pending: bool
    source: str
    hub_id: str | None
    job_id: int | None


def kek_id(kek: bytes) -> str:
    return hashlib.sha256(kek).hexdigest()[:16]


def load_or_create_kek(path: Path) -> bytes:
    """The KEK in ``path``, created (0600, 32 random bytes) if there is none. Created under a
    temporary name and linked into place, so of two processes creating it at once one wins and
    the other reads the winner's (``os.link`` fails on an existing name, ``os.replace`` would not)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(KEK_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    kek = path.read_bytes()
    if len(kek) != KEK_BYTES:
        raise EscrowKeyError(f"key-encryption key file {path} holds {len(kek)} bytes, not {KEK_BYTES}")
    return kek


class KeyEscrow:
    """Seals, stores and opens meter keys under one KEK (module docstring)."""

    def __init__(self, kek: bytes) -> None:
        if len(kek) != KEK_BYTES:
            raise ValueError(f"the key-encryption key must be {KEK_BYTES} bytes")
        self._aead = AESGCM(kek)
        self.kek_id = kek_id(kek)

    @classmethod
    def from_state(cls, state: Path) -> KeyEscrow:
        """The escrow of a GDSC state directory: its KEK is ``gdsc/escrow.key``."""
        return cls(load_or_create_kek(state / "gdsc" / KEK_FILE))

    # -- sealing ------------------------------------------------------------------------------
    def seal(self, meter_id: str, key: bytes) -> tuple[bytes, bytes]:
        """(nonce, ciphertext ‖ tag) of ``key``, bound to ``meter_id``."""
        if len(key) != METER_KEY_BYTES:
            raise ValueError(f"a meter key is {METER_KEY_BYTES} bytes, not {len(key)}")
        nonce = secrets.token_bytes(12)  # random 96-bit nonces: SP 800-38D §8.2.2
        return nonce, self._aead.encrypt(nonce, key, _AAD + meter_id.encode())

    def open(self, meter_id: str, nonce: bytes, sealed: bytes, sealed_under: str | None = None) -> bytes:
        if sealed_under is not None and sealed_under != self.kek_id:
            raise EscrowKeyError(
                f"meter {meter_id}: its escrowed key is sealed under key-encryption key {sealed_under}, "
                f"this GDSC holds {self.kek_id} (gdsc/{KEK_FILE} replaced?)"
            )
        try:
            return self._aead.decrypt(nonce, sealed, _AAD + meter_id.encode())
        except InvalidTag:
            raise EscrowKeyError(
                f"meter {meter_id}: its escrowed key does not open under key-encryption key {self.kek_id} "
                "(another KEK, or the row belongs to another meter)"
            ) from None

    def _row(self, meter_id: str, key: bytes, now: datetime, **values: object) -> dict[str, object]:
        nonce, sealed = self.seal(meter_id, key)
        return {
            "meter_id": meter_id,
            "kek_id": self.kek_id,
            "nonce": nonce,
            "sealed": sealed,
            "created": now.astimezone(UTC),
            "pending": 0,
            **values,
        }

    # -- depositing ---------------------------------------------------------------------------
    def deposit_shipment(
        self, conn: Connection, keys: Iterable[tuple[str, bytes]], shipment: str, now: datetime
    ) -> int:
        """The keys of a shipment file, replacing any earlier shipment key of the same meters."""
        rows = [self._row(m, k, now, source=SHIPMENT, shipment=shipment[:64]) for m, k in keys]
        e = meter_key_escrow
        for i in range(0, len(rows), 5000):
            chunk = rows[i : i + 5000]
            conn.execute(
                delete(e).where(e.c.source == SHIPMENT, e.c.meter_id.in_([r["meter_id"] for r in chunk]))
            )
            conn.execute(e.insert(), chunk)
        return len(rows)

    def deposit_delivery(
        self, conn: Connection, hub_id: str, meter_id: str, key: bytes, pending: bool, job: int, now: datetime
    ) -> None:
        """A key queued for ``hub_id`` with ``meter.key`` as urgent job ``job``."""
        conn.execute(
            meter_key_escrow.insert().values(
                **self._row(
                    meter_id, key, now, source=DELIVERED, hub_id=hub_id, job_id=job, pending=int(pending)
                )
            )
        )

    # -- reading ------------------------------------------------------------------------------
    def _open_row(self, r: Any) -> EscrowedKey:
        key = self.open(r.meter_id, r.nonce, r.sealed, r.kek_id)
        return EscrowedKey(r.meter_id, key, bool(r.pending), r.source, r.hub_id, r.job_id)

    def shipment_key(self, conn: Connection, meter_id: str) -> bytes | None:
        e = meter_key_escrow
        row = conn.execute(select(e).where(e.c.source == SHIPMENT, e.c.meter_id == meter_id)).first()
        return None if row is None else self._open_row(row).key

    def of_job(self, conn: Connection, job: int) -> EscrowedKey | None:
        """The key a ``meter.key`` job carried (its envelope is cleared once delivered)."""
        e = meter_key_escrow
        row = conn.execute(select(e).where(e.c.source == DELIVERED, e.c.job_id == job)).first()
        return None if row is None else self._open_row(row)

    def current(
        self, conn: Connection, meter_ids: Iterable[str], applied_jobs: set[int]
    ) -> dict[str, EscrowedKey]:
        """Each meter's current key: the newest delivered key whose job a hub applied (``applied_jobs``:
        a key a hub refused or never got is not the meter's), else the meter's shipment key."""
        wanted = sorted(set(meter_ids))
        if not wanted:
            return {}
        e = meter_key_escrow
        out: dict[str, EscrowedKey] = {}
        shipped: dict[str, Any] = {}
        for row in conn.execute(select(e).where(e.c.meter_id.in_(wanted)).order_by(e.c.id)):
            if row.source == SHIPMENT:
                shipped[row.meter_id] = row
            elif row.job_id in applied_jobs:
                out[row.meter_id] = self._open_row(row)  # a later delivery overrides
        for meter, row in shipped.items():
            if meter not in out:
                out[meter] = self._open_row(row)
        return out

    # -- the keys from before the escrow ------------------------------------------------------
    def adopt_clear_shipment_keys(self, engine: Engine) -> int:
        """Move shipment keys stored in clear (``meter_shipments.meter_key``, before migration
        0023) into the escrow, sealed, and clear the column; how many. On SQLite ``secure_delete``
        zeroes the old values and the WAL is truncated after; on PostgreSQL the table is
        rewritten (``VACUUM FULL``) so its dead tuples go (the WAL already written keeps them)."""
        from smarthub.gdsc.fleet.field_meters import meter_shipments as s

        with engine.begin() as conn:
            rows = conn.execute(
                select(s.c.meter_id, s.c.meter_key, s.c.shipment, s.c.imported_at).where(
                    s.c.meter_key.is_not(None)
                )
            ).all()
            if not rows:
                return 0
            now = datetime.now(UTC)
            for r in rows:
                self.deposit_shipment(conn, [(r.meter_id, bytes.fromhex(r.meter_key))], r.shipment, now)
            conn.execute(update(s).where(s.c.meter_key.is_not(None)).values(meter_key=None))
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        else:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM FULL meter_shipments"))
        return len(rows)


class EscrowHolder(Database):
    """The store's key escrow, if enabled (mixed into the store): the pull plan deposits every
    ``meter.key`` it queues in it, the recovery and the field registration read from it."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        super().__init__(url, echo=echo)
        self.key_escrow: KeyEscrow | None = None

    def enable_key_escrow(self, escrow: KeyEscrow) -> None:
        """Keep meter keys in ``escrow`` from now on (the schema must be created)."""
        self.key_escrow = escrow
        escrow.adopt_clear_shipment_keys(self.engine)


__all__ = [
    "DELIVERED",
    "KEK_FILE",
    "SHIPMENT",
    "EscrowHolder",
    "EscrowKeyError",
    "EscrowUnavailable",
    "EscrowedKey",
    "KeyEscrow",
    "kek_id",
    "load_or_create_kek",
    "meter_key_escrow",
]
