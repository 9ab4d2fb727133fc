"""``message.display``: a supplier's text for the home's displays, sent by the GDSC.

Body: ``{"text": str, "priority": "low" | "normal" | "high", "start": ISO 8601 time with offset,
"duration_s": int}`` and optionally ``"sender"`` (default ``"GDSC"``). It becomes an IEEE 2030.5
TextMessage (2030.5-2018 §10.8 Messaging: ``priority`` 0 low, 1 normal, 2 high; shown over the
event interval ``start`` .. ``start + duration``) kept in the IHD's message store, so the hub's
own IHD shows it and third-party displays read it from the hub's ``/msg`` resources.

A message has no id of its own in this body; its id is a digest of what it says and when, so a
re-sent identical message is kept once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from smarthub.clock import Clock
from smarthub.hub.ihd.store import MAX_TEXT, BadIhdInput, IhdStore

PRIORITY = {"low": 0, "normal": 1, "high": 2}  # 2030.5 PriorityType
MAX_DURATION = timedelta(days=366)
DEFAULT_SENDER = "GDSC"


@dataclass(frozen=True, slots=True)
class DisplayMessage:
    sender: str
    message_id: str
    text: str
    priority: int
    start: datetime
    duration: timedelta

    @classmethod
    def from_body(cls, body: object) -> DisplayMessage:
        if not isinstance(body, dict):
            raise BadIhdInput("a message.display body is a JSON object")
        missing = [k for k in ("text", "priority", "start", "duration_s") if k not in body]
        if missing:
            raise BadIhdInput(f"message.display: missing field(s) {', '.join(missing)}")
        text, priority, duration = body["text"], body["priority"], body["duration_s"]
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            raise BadIhdInput(f"message.display: text must be 1..{MAX_TEXT} characters")
        if priority not in PRIORITY:
            raise BadIhdInput(
                f"message.display: priority must be one of {', '.join(PRIORITY)}, not {priority!r}"
            )
        if isinstance(duration, bool) or not isinstance(duration, int) or duration <= 0:
            raise BadIhdInput(f"message.display: duration_s must be a positive integer, not {duration!r}")
        if timedelta(seconds=duration) > MAX_DURATION:
            raise BadIhdInput(f"message.display: duration_s {duration} is over a year")
        try:
            start = datetime.fromisoformat(str(body["start"]))
        except ValueError:
            raise BadIhdInput(f"message.display: start {body['start']!r} is not an ISO 8601 time") from None
        if start.tzinfo is None:
            raise BadIhdInput(f"message.display: start {body['start']!r} needs a UTC offset")
        sender = str(body.get("sender", DEFAULT_SENDER))
        if not 0 < len(sender) <= 20:  # 2030.5 TextMessage.originator is a String20
            raise BadIhdInput("message.display: sender must be 1..20 characters")
        digest = hashlib.sha256(
            json.dumps([sender, text, priority, start.timestamp(), duration]).encode()
        ).hexdigest()[:16]
        return cls(sender, digest, text, PRIORITY[priority], start, timedelta(seconds=duration))

    def store_body(self) -> dict[str, Any]:
        """As :meth:`IhdStore.add_message` takes it."""
        return {
            "sender": self.sender,
            "id": self.message_id,
            "text": self.text,
            "priority": self.priority,
            "start": self.start.isoformat(),
            "expires": (self.start + self.duration).isoformat(),
        }


def display_command(store: IhdStore, clock: Clock) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def display(body: dict[str, Any]) -> dict[str, Any]:
        m = DisplayMessage.from_body(body)
        _, new = store.add_message(m.store_body(), clock.now())
        return {"sender": m.sender, "id": m.message_id, "new": new}

    return display
