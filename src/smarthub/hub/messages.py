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
from smarthub.hub.ihd.store import IhdStore
from smarthub.wan.contract.bodies import IhdMessage, MessageDisplay

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
    def from_command(cls, body: MessageDisplay) -> DisplayMessage:
        """The message a (checked) ``message.display`` body asks for; its id is a digest of the
        body, so the same body sent twice is one message."""
        digest = hashlib.sha256(
            json.dumps(
                [body.sender, body.text, body.priority, body.start.timestamp(), body.duration_s]
            ).encode()
        ).hexdigest()[:16]
        duration = timedelta(seconds=body.duration_s)
        return cls(body.sender, digest, body.text, PRIORITY[body.priority], body.start, duration)

    def stored(self) -> IhdMessage:
        """As :meth:`IhdStore.add_message` takes it."""
        return IhdMessage(
            self.sender, self.message_id, self.text, self.priority, self.start + self.duration, self.start
        )


def display_command(store: IhdStore, clock: Clock) -> Callable[[MessageDisplay], dict[str, Any]]:
    def display(body: MessageDisplay) -> dict[str, Any]:
        m = DisplayMessage.from_command(body)
        _, new = store.add_message(m.stored(), clock.now())
        return {"sender": m.sender, "id": m.message_id, "new": new}

    return display
