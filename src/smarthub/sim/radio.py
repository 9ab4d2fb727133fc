"""A simulated HAN radio link with the physics of its medium (:mod:`smarthub.han.media`): each
frame gets a received level (the medium's mean at the meter's placement plus log-normal
shadowing) and is delivered or lost as that level allows, so weak signals and missing frames in
the hub's diagnostics are *caused* by where a meter is, not injected. Moving a meter (behind two
floors, say) is a new :class:`~smarthub.han.media.Placement`."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from smarthub.han.media import Medium, Placement, frame_delivered, rssi_sample

__all__ = ["RadioLink"]


@dataclass
class RadioLink:
    medium: Medium
    placement: Placement
    rng: random.Random = field(default_factory=random.Random)
    sent: int = 0
    lost: int = 0

    def carry(self, frame: bytes) -> tuple[bytes, float] | None:
        """The frame and its received level (dBm), or None when it did not get through."""
        self.sent += 1
        rssi = rssi_sample(self.medium, self.placement, self.rng)
        if not frame_delivered(self.medium, rssi, self.rng):
            self.lost += 1
            return None
        return frame, round(rssi, 1)
