"""Consent revocations the consumer asked for at the display, kept until the GDSC answers them.

"Stop sharing" on the display's "Data services" page ends a consent the GDSC holds (a third
party's API access to the household's data there). The hub cannot call the GDSC (pull-only), so
the tap is recorded here, durably, with the consent, the time and the paired screen that asked;
the GDSC's collector reads the waiting requests with its next pull and answers each
(:mod:`smarthub.wan.contract.revocations`). A request is

* ``pending`` from the tap until an answer comes (a second tap on the same consent meanwhile is
  the same request: tapping twice asks once);
* ``applied``: the GDSC revoked the consent (``answered`` when it did);
* ``refused``: the GDSC would not (``reason``: e.g. the consent is not this home's current
  occupant's). Tapping again asks anew.

An answer for a request that is not pending (answered already, or unknown) changes nothing, so a
repeated answer is harmless.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from smarthub.hub import sqlite_files
from smarthub.wan.contract.revocations import (
    MAX_REQUESTS,
    PENDING_STATE,
    RevocationAnswer,
    RevocationRequest,
)

SCHEMA = sqlite_files.Schema(
    "consent revocations",
    [
        """
        CREATE TABLE revocations (
            request_id TEXT PRIMARY KEY,
            consent_id TEXT NOT NULL,
            service_id TEXT NOT NULL,
            requested INTEGER NOT NULL,   -- epoch microseconds
            screen TEXT NOT NULL,         -- the paired screen that asked
            state TEXT NOT NULL CHECK (state IN ('pending', 'applied', 'refused')),
            answered INTEGER,             -- epoch microseconds: the GDSC's time of its answer
            reason TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX revocations_consent ON revocations (consent_id, requested);
        """
    ],
)


def _micros(t: datetime) -> int:
    if t.tzinfo is None:
        raise ValueError("a revocation's time must be timezone-aware")
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def _instant(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)


@dataclass(frozen=True, slots=True)
class Revocation:
    """A request as the hub holds it (the request, and the GDSC's answer once it came)."""

    request: RevocationRequest
    state: str  # pending, applied, refused
    answered: datetime | None
    reason: str


class RevocationRequests:
    def __init__(self, path: Path | str) -> None:
        self._file = sqlite_files.open_database(path, SCHEMA)

    def close(self) -> None:
        self._file.close()

    def request(self, consent_id: str, service_id: str, screen: str, now: datetime) -> Revocation:
        """Record the consumer's request to end ``consent_id`` (1..64 characters each); the
        pending or applied request of that consent if there is one already."""
        for name, v in (("consent id", consent_id), ("service id", service_id)):
            if not 0 < len(v) <= 64:
                raise ValueError(f"a {name} is 1..64 characters")
        with self._file.transaction() as db:
            held = db.execute(
                "SELECT request_id FROM revocations WHERE consent_id = ? AND state != 'refused'"
                " ORDER BY requested DESC LIMIT 1",
                (consent_id,),
            ).fetchone()
            if held is None:
                request_id = secrets.token_hex(8)
                db.execute(
                    "INSERT INTO revocations (request_id, consent_id, service_id, requested, screen, state)"
                    " VALUES (?, ?, ?, ?, ?, 'pending')",
                    (request_id, consent_id, service_id, _micros(now), screen[:120]),
                )
            else:
                request_id = held[0]
        found = self.get(request_id)
        assert found is not None
        return found

    def get(self, request_id: str) -> Revocation | None:
        rows = self._select("WHERE request_id = ?", (request_id,))
        return rows[0] if rows else None

    def pending(self, limit: int = MAX_REQUESTS) -> list[RevocationRequest]:
        """The requests waiting for the GDSC, oldest first."""
        return [
            r.request
            for r in self._select("WHERE state = ? ORDER BY requested LIMIT ?", (PENDING_STATE, limit))
        ]

    def pending_count(self) -> int:
        with self._file.lock:
            row = self._file.connection.execute(
                "SELECT count(*) FROM revocations WHERE state = 'pending'"
            ).fetchone()
        return int(row[0])

    def latest(self) -> dict[str, Revocation]:
        """Per consent, its latest request (what the display shows beside it)."""
        out: dict[str, Revocation] = {}
        for r in self._select("ORDER BY requested", ()):
            out[r.request.consent_id] = r
        return out

    def answer(self, answers: Sequence[RevocationAnswer]) -> int:
        """Keep the GDSC's answers; how many ended a pending request (the others: ignored)."""
        done = 0
        with self._file.transaction() as db:
            for a in answers:
                cur = db.execute(
                    "UPDATE revocations SET state = ?, answered = ?, reason = ?"
                    " WHERE request_id = ? AND state = 'pending'",
                    (a.state, _micros(a.at), a.reason[:300], a.request_id),
                )
                done += cur.rowcount
        return done

    def _select(self, where: str, args: tuple[object, ...]) -> list[Revocation]:
        with self._file.lock:
            rows = self._file.connection.execute(
                "SELECT request_id, consent_id, service_id, requested, screen, state, answered, reason"
                f" FROM revocations {where}",
                args,
            ).fetchall()
        return [
            Revocation(
                RevocationRequest(rid, consent, service, _instant(requested), screen),
                state,
                None if answered is None else _instant(answered),
                reason,
            )
            for rid, consent, service, requested, screen, state, answered, reason in rows
        ]
