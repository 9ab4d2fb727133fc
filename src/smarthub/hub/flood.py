"""Quarantine for HAN devices that flood the hub.

A meter that reports far more often than any meter should (a faulty radio, a replayed
capture, a device impersonating a meter) would otherwise eat the hub's CPU and bury the
other meters' frames. Each meter gets a budget of frames per minute of hub time; a meter
over budget is quarantined for a while: its frames are dropped (and counted) until it ends.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass
class FloodGuard:
    max_per_minute: int = 120  # a DSMR 5 meter sends 60 a minute; radio meters a few
    quarantine: timedelta = timedelta(minutes=15)
    _seen: dict[str, deque[datetime]] = field(default_factory=dict)
    quarantined_until: dict[str, datetime] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    def admit(self, meter: str, now: datetime) -> bool:
        """Count one frame from ``meter``; False while the meter is quarantined."""
        until = self.quarantined_until.get(meter)
        if until is not None:
            if now < until:
                self.dropped[meter] = self.dropped.get(meter, 0) + 1
                return False
            del self.quarantined_until[meter]
            self._seen.pop(meter, None)
        window = self._seen.setdefault(meter, deque())
        window.append(now)
        horizon = now - timedelta(minutes=1)
        while window and window[0] <= horizon:
            window.popleft()
        if len(window) > self.max_per_minute:
            self.quarantined_until[meter] = now + self.quarantine
            self.dropped[meter] = self.dropped.get(meter, 0) + 1
            return False
        return True
