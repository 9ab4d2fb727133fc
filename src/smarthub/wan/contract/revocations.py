"""Consent revocations asked at the home's display, collected with the bulk pull (issue 25 item 3).

The consumer taps "Stop sharing" on the in-home display; the hub records a *revocation request*
(``smarthub.hub.ihd.revocations``) and stops serving the party itself at once. Hubs never call
the GDSC (pull-only), so the request reaches it the way the hub's storage state does
(:mod:`smarthub.wan.contract.storage`): riding on what the collector pulls anyway.

1. every answer of the hub to a collector carries ``Smarthub-Revocations: <n>`` while ``n`` > 0
   requests wait for the GDSC (no header: none waits; ~30 bytes, no request of its own);
2. a collector that sees it, once the pull's pages are in, GETs ``/crv`` on the same connection:
   the waiting requests as JSON (``{"requests": [...]}``, at most :data:`MAX_REQUESTS`);
3. the GDSC decides each (``smarthub.gdsc.governance.hub_revocations``) and PUTs the answers to
   ``/crv`` on that connection (``{"answers": [...]}``): ``applied`` (the consent is revoked at
   the GDSC, ``at`` when) or ``refused`` (with the reason). The hub keeps each answer and stops
   listing the request.

An answer lost on the way leaves the request waiting: the next pull reads it again and the GDSC,
finding the consent already revoked, answers ``applied`` with the first revocation's time
(idempotent). Requests and answers are named by the hub's request id (``request_id``, 1..64
characters), so an answer to a request the hub does not hold is ignored.

Both resources are served to the GDSC's collectors only (their certificate's role).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = [
    "APPLIED",
    "HEADER",
    "MAX_REQUESTS",
    "MEDIA_TYPE",
    "PATH",
    "PENDING_STATE",
    "REFUSED",
    "BadRevocations",
    "RevocationAnswer",
    "RevocationRequest",
    "answers_json",
    "parse_answers",
    "parse_pending",
    "parse_requests",
    "requests_json",
]

HEADER = "Smarthub-Revocations"
PATH = "/crv"
MEDIA_TYPE = "application/json"
APPLIED, REFUSED = "applied", "refused"
PENDING_STATE = "pending"  # a request the hub holds before an answer (never sent as an answer)
MAX_REQUESTS = 32  # per document; more wait for the next pull
_MAX_ID = 64
_MAX_REASON = 300


class BadRevocations(ValueError):
    """A requests or answers document that does not follow this contract; the text says where."""


@dataclass(frozen=True, slots=True)
class RevocationRequest:
    """The consumer asked, on a paired screen of this home's display, to end a GDSC consent."""

    request_id: str
    consent_id: str
    service_id: str  # the party holding the consent, as the display showed it
    requested_at: datetime
    screen: str  # the paired screen that asked (its name and number, "Kitchen tablet #3")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.request_id,
            "consent_id": self.consent_id,
            "service_id": self.service_id,
            "requested_at": self.requested_at.isoformat(),
            "screen": self.screen,
        }


@dataclass(frozen=True, slots=True)
class RevocationAnswer:
    """The GDSC's answer to one request: ``applied`` at ``at``, or ``refused`` for ``reason``."""

    request_id: str
    state: str
    at: datetime
    reason: str = ""

    def __post_init__(self) -> None:
        if self.state not in (APPLIED, REFUSED):
            raise BadRevocations(f"an answer's state is {APPLIED} or {REFUSED}, not {self.state!r:.40}")
        if self.at.tzinfo is None:
            raise BadRevocations("an answer's time must be timezone-aware")

    def to_json(self) -> dict[str, Any]:
        return {"id": self.request_id, "state": self.state, "at": self.at.isoformat(), "reason": self.reason}


def parse_pending(value: str | None) -> int:
    """How many requests a ``Smarthub-Revocations`` header says wait (0 if absent or malformed:
    a hub that says nothing legible is pulled as usual)."""
    if not value or not value.strip().isdigit():
        return 0
    return min(int(value.strip()), 10**6)


def _text(item: Mapping[str, object], key: str, where: str, max_len: int, *, empty: bool = False) -> str:
    v = item.get(key)
    if not isinstance(v, str) or (not v and not empty) or len(v) > max_len:
        raise BadRevocations(f"{where}.{key} must be a string of {0 if empty else 1}..{max_len} characters")
    return v


def _instant(item: Mapping[str, object], key: str, where: str) -> datetime:
    v = item.get(key)
    try:
        t = datetime.fromisoformat(v) if isinstance(v, str) else None
    except ValueError:
        t = None
    if t is None or t.tzinfo is None:
        raise BadRevocations(f"{where}.{key} must be an ISO 8601 time with its UTC offset")
    return t


def _items(data: bytes, key: str) -> list[Mapping[str, object]]:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as err:  # RecursionError: nested deeper than the parser goes
        raise BadRevocations(f"not JSON: {type(err).__name__}: {err}"[:200]) from None
    items = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise BadRevocations(f'a document {{"{key}": [...]}} was expected')
    if len(items) > MAX_REQUESTS:
        raise BadRevocations(f"{key} has {len(items)} entries, at most {MAX_REQUESTS}")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadRevocations(f"{key}[{i}] must be a JSON object")
    return items


def requests_json(requests: Sequence[RevocationRequest]) -> bytes:
    return json.dumps({"requests": [r.to_json() for r in requests[:MAX_REQUESTS]]}).encode()


def parse_requests(data: bytes) -> list[RevocationRequest]:
    """The hub's waiting requests (``GET /crv``); :class:`BadRevocations` if malformed."""
    out = []
    for i, item in enumerate(_items(data, "requests")):
        w = f"requests[{i}]"
        out.append(
            RevocationRequest(
                _text(item, "id", w, _MAX_ID),
                _text(item, "consent_id", w, _MAX_ID),
                _text(item, "service_id", w, _MAX_ID),
                _instant(item, "requested_at", w),
                _text(item, "screen", w, 120, empty=True),
            )
        )
    return out


def answers_json(answers: Sequence[RevocationAnswer]) -> bytes:
    return json.dumps({"answers": [a.to_json() for a in answers]}).encode()


def parse_answers(data: bytes) -> list[RevocationAnswer]:
    """The GDSC's answers (``PUT /crv``); :class:`BadRevocations` if malformed."""
    out = []
    for i, item in enumerate(_items(data, "answers")):
        w = f"answers[{i}]"
        state = item.get("state")
        if state not in (APPLIED, REFUSED):
            raise BadRevocations(f"{w}.state must be {APPLIED} or {REFUSED}")
        out.append(
            RevocationAnswer(
                _text(item, "id", w, _MAX_ID),
                str(state),
                _instant(item, "at", w),
                _text(item, "reason", w, _MAX_REASON, empty=True),
            )
        )
    return out
