"""A hub's word on its own storage, riding along with the bulk pull (issue 20, item 2).

Hubs never call the GDSC, so a hub that lost its storage (a flash worn out, a factory reset, a
replacement unit) says so in what the GDSC pulls anyway: every answer to a collector carries
``Smarthub-Storage: state=S; id=I``, where ``I`` names the hub's current storage (16 hex digits,
drawn when the storage was created) and ``S`` is

* ``blank``: created empty on this hub and not restored yet: the GDSC restores it;
* ``restored``: a recovery ended (``recovery.complete``);
* ``kept``: storage this hub has had since before it reported any state (nothing to restore).

The header costs ~40 bytes per answer and no request of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["HEADER", "STATES", "StorageState", "parse"]

HEADER = "Smarthub-Storage"
BLANK, RESTORED, KEPT = "blank", "restored", "kept"
STATES = (BLANK, RESTORED, KEPT)
_RE = re.compile(r"^\s*state=(blank|restored|kept)\s*;\s*id=([0-9a-f]{16})\s*$")


@dataclass(frozen=True, slots=True)
class StorageState:
    state: str
    storage_id: str

    @property
    def header(self) -> str:
        return f"state={self.state}; id={self.storage_id}"


def parse(value: str | None) -> StorageState | None:
    """The state a ``Smarthub-Storage`` header gives; None if absent or malformed."""
    if not value:
        return None
    m = _RE.match(value)
    return None if m is None else StorageState(m.group(1), m.group(2))
