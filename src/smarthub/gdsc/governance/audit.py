"""The GDSC audit log: append-only, hash-chained, stored in the GDSC database.

Every access decision and every command is one entry. An entry is serialised canonically
(JSON, sorted keys, no insignificant spaces, UTF-8, times as ISO 8601 UTC with microseconds)
together with its sequence number and the hash of the entry before it; its own hash is
SHA-256 over that serialisation. Changing any entry breaks its hash; deleting or reordering
entries breaks the sequence and the link to the previous hash.

The chain is unkeyed: whoever can write the table can also delete entries from some point on and
append new ones, or truncate it, and the result is again a valid chain. Only **anchors** kept
outside the database reveal that: an anchor is the (sequence number, hash) of an entry as it was
when the anchor was taken. :meth:`AuditLog.verify` checks the log against *every* anchor given —
the entry with the anchor's number must still exist and still have the anchor's hash, wherever
the log ends now — so deleting and re-appending is detected as soon as any anchor covers a
rewritten entry. The running GDSC takes an anchor every hour, signs it with the GDSC operator
key and appends it to a file (:mod:`smarthub.gdsc.governance.audit_anchors`), which is meant to be copied
to a second party; ``smarthub gdsc audit verify`` checks the chain against every signed anchor.

On PostgreSQL the table is also append-only in the database: a trigger refuses UPDATE, DELETE
and TRUNCATE, and the application connects as a role that does not own the table
(:mod:`smarthub.gdsc.db.roles`), so it can neither disable the trigger nor truncate.

The chain is a plain hash chain (SHA-256 from ``cryptography``) rather than a Merkle tree: the
log is read whole by the verifier and per premises by consumers, and needs no inclusion proofs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    or_,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError

from smarthub.gdsc.db.database import metadata

GENESIS = "0" * 64
_DOMAIN = b"smarthub-gdsc-audit-v1\n"

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(40), nullable=False),
    Column("premises_id", String(64)),
    Column("allow", Integer, nullable=False),
    Column("body", Text, nullable=False),  # the canonical serialisation that was hashed
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    # An aggregate read: the group of premises it covered (the members' access logs list it).
    Column("group_id", String(64)),
    Index("ix_audit_log_premises_at", "premises_id", "at"),
    Index("ix_audit_log_group_at", "group_id", "at"),
)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    role: str
    action: str
    premises_id: str | None
    allow: bool
    reason: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    prev_hash: str = GENESIS
    hash: str = ""
    group_id: str | None = None  # an aggregate read: the pre-defined group it covered

    def canonical(self) -> bytes:
        body: dict[str, Any] = {
            "seq": self.seq,
            "at": _iso(self.at),
            "actor": self.actor,
            "role": self.role,
            "action": self.action,
            "premises_id": self.premises_id,
            "allow": self.allow,
            "reason": self.reason,
            "detail": dict(self.detail),
            "prev_hash": self.prev_hash,
        }
        if self.group_id is not None:  # absent otherwise, so entries from before it still verify
            body["group_id"] = self.group_id
        return canonical(body)


def canonical(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def entry_hash(body: bytes) -> str:
    h = hashes.Hash(hashes.SHA256())
    h.update(_DOMAIN)
    h.update(body)
    return h.finalize().hex()


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    entries: int
    head: str  # hash of the last entry (GENESIS for an empty log)
    problems: tuple[str, ...]


class AuditLog:
    """Appends to and verifies the chain.

    Appends never fork the chain: a process lock serialises this process's appenders; across
    processes PostgreSQL takes a transaction-scoped advisory lock, and on SQLite the primary key
    on ``seq`` refuses the loser of a race, which re-reads the head and tries again."""

    _PG_LOCK_KEY = 0x5347_4453_4341  # arbitrary constant naming "the audit chain"
    _ATTEMPTS = 100

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()

    def append(
        self,
        *,
        at: datetime,
        actor: str,
        role: str,
        action: str,
        premises_id: str | None,
        allow: bool,
        reason: str,
        detail: Mapping[str, Any] | None = None,
        group_id: str | None = None,
    ) -> AuditEntry:
        if at.tzinfo is None:
            raise ValueError("audit time must be timezone-aware")
        detail = dict(detail or {})
        canonical(detail)  # refuse anything JSON cannot carry exactly, before touching the chain
        with self._lock:
            for _attempt in range(self._ATTEMPTS):
                try:
                    entry = self._append_once(
                        at, actor, role, action, premises_id, allow, reason, detail, group_id
                    )
                except IntegrityError:
                    # Another process took this sequence number first (SQLite has no advisory lock):
                    # read the new head and link to it instead.
                    continue
                return entry
        raise RuntimeError(f"audit append lost the race {self._ATTEMPTS} times in a row")

    def _append_once(
        self,
        at: datetime,
        actor: str,
        role: str,
        action: str,
        premises_id: str | None,
        allow: bool,
        reason: str,
        detail: dict[str, Any],
        group_id: str | None = None,
    ) -> AuditEntry:
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": self._PG_LOCK_KEY})
            last = conn.execute(
                select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
            ).first()
            seq, prev = (1, GENESIS) if last is None else (last.seq + 1, last.hash)
            entry = AuditEntry(
                seq,
                at.astimezone(UTC),
                actor,
                role,
                action,
                premises_id,
                allow,
                reason,
                detail,
                prev,
                "",
                group_id,
            )
            body = entry.canonical()
            digest = entry_hash(body)
            conn.execute(
                audit_log.insert().values(
                    seq=seq,
                    at=entry.at,
                    actor=actor,
                    action=action,
                    premises_id=premises_id,
                    allow=int(allow),
                    body=body.decode(),
                    prev_hash=prev,
                    hash=digest,
                    group_id=group_id,
                )
            )
        return AuditEntry(**{**_fields(entry), "hash": digest})

    def entries(self) -> list[AuditEntry]:
        with self.engine.connect() as conn:
            return [_entry(r) for r in conn.execute(select(audit_log).order_by(audit_log.c.seq))]

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last entry: the anchor to keep outside the database."""
        with self.engine.connect() as c:
            r = c.execute(
                select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
            ).first()
        return (0, GENESIS) if r is None else (int(r.seq), str(r.hash))

    def verify(
        self,
        expected_head: tuple[int, str] | None = None,
        anchors: Iterable[tuple[int, str]] = (),
    ) -> Verification:
        """Walk the whole chain; report every entry that is altered, missing or out of place, and
        every anchor (``expected_head`` is one more) whose entry is gone or no longer the same."""
        wanted: dict[int, set[str]] = {}
        for seq, digest in [*anchors, *([expected_head] if expected_head is not None else [])]:
            wanted.setdefault(int(seq), set()).add(str(digest))
        problems: list[str] = []
        for seq, digests in sorted(wanted.items()):
            if len(digests) > 1:
                problems.append(f"anchors disagree about entry {seq}: at most one of them is genuine")
        prev = GENESIS
        expect_seq = 1
        n = 0
        seen: set[int] = set()
        with self.engine.connect() as conn:
            for r in conn.execute(select(audit_log).order_by(audit_log.c.seq)):
                n += 1
                problems.extend(_check_row(r, expect_seq, prev))
                anchored = wanted.get(r.seq)
                if anchored is not None:
                    seen.add(r.seq)
                    if entry_hash(r.body.encode()) not in anchored or r.hash not in anchored:
                        problems.append(
                            f"entry {r.seq} does not match its anchor: the log was rewritten from there on"
                        )
                prev = r.hash
                expect_seq = r.seq + 1
        last_seq = expect_seq - 1
        for seq in sorted(set(wanted) - seen):
            if seq > last_seq:
                problems.append(f"log ends at seq {last_seq}, an anchor says {seq}: entries removed")
            elif seq > 0:
                problems.append(f"entry {seq} of an anchor is missing: entries removed")
        return Verification(not problems, n, prev, tuple(problems))

    def accesses_to(
        self,
        premises_id: str,
        ranges: Sequence[tuple[datetime, datetime]],
        groups: Sequence[tuple[str, datetime, datetime | None]] = (),
    ) -> list[AuditEntry]:
        """Entries about one premises whose time falls within any of ``ranges`` (half-open), and
        entries about any of ``groups`` — (group, from, until) memberships of the premises — whose
        data period overlaps the membership (an aggregate read that covered the premises' data)."""
        if not ranges:
            return []
        t = audit_log
        within = or_(*(and_(t.c.at >= s.astimezone(UTC), t.c.at < e.astimezone(UTC)) for s, e in ranges))
        about = t.c.premises_id == premises_id
        if groups:
            about = or_(about, t.c.group_id.in_(sorted({g for g, _, _ in groups})))
        q = select(t).where(and_(about, within)).order_by(t.c.seq)
        with self.engine.connect() as conn:
            entries = [_entry(r) for r in conn.execute(q)]
        return [e for e in entries if e.premises_id == premises_id or _covered(e, groups)]


def _covered(e: AuditEntry, groups: Sequence[tuple[str, datetime, datetime | None]]) -> bool:
    """Whether an aggregate entry's data period overlaps one of the premises' memberships."""
    period = e.detail.get("period")
    if not period:
        return False
    start, end = (datetime.fromisoformat(x) for x in period)
    return any(g == e.group_id and s < end and (u is None or start < u) for g, s, u in groups)


def _check_row(r, expect_seq: int, prev: str) -> list[str]:
    out: list[str] = []
    if r.seq != expect_seq:
        out.append(f"seq {r.seq} follows seq {expect_seq - 1}: entries missing or reordered")
    if entry_hash(r.body.encode()) != r.hash:
        out.append(f"entry {r.seq}: content does not match its hash (modified)")
    try:
        body = json.loads(r.body)
    except ValueError:
        return [*out, f"entry {r.seq}: body is not JSON (modified)"]
    if body.get("seq") != r.seq:
        out.append(f"entry {r.seq}: hashed body says seq {body.get('seq')} (moved)")
    if body.get("prev_hash") != prev or r.prev_hash != prev:
        out.append(f"entry {r.seq}: does not link to the entry before it (deleted, inserted or reordered)")
    # The indexed columns are what queries see: they must say what the hashed body says.
    at = r.at if r.at.tzinfo else r.at.replace(tzinfo=UTC)
    columns = {
        "at": _iso(at),
        "actor": r.actor,
        "action": r.action,
        "premises_id": r.premises_id,
        "allow": bool(r.allow),
        "group_id": r.group_id,
    }
    for name, value in columns.items():
        if body.get(name) != value:
            out.append(f"entry {r.seq}: column {name} ({value!r}) differs from the hashed entry (modified)")
    return out


def _entry(r) -> AuditEntry:
    b = json.loads(r.body)
    return AuditEntry(
        seq=r.seq,
        at=datetime.fromisoformat(b["at"]),
        actor=b["actor"],
        role=b["role"],
        action=b["action"],
        premises_id=b["premises_id"],
        allow=b["allow"],
        reason=b["reason"],
        detail=b["detail"],
        prev_hash=b["prev_hash"],
        hash=r.hash,
        group_id=b.get("group_id"),
    )


def _fields(e: AuditEntry) -> dict[str, Any]:
    return {f: getattr(e, f) for f in AuditEntry.__slots__}


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="microseconds")
