"""Exponential backoff with jitter for retries of pulls and commands."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with "equal jitter": try k waits d/2 + U(0, d/2), d = base·factor^(k-1).

    The jitter spreads the retries of hubs that failed together (one WAN link down) so they do
    not come back as one burst; keeping half of the nominal step fixed means each wait is at
    least as long as the one before (until the cap), so a dead hub costs ever less.
    """

    base: timedelta = timedelta(seconds=30)
    factor: float = 2.0
    cap: timedelta = timedelta(minutes=30)

    def __post_init__(self) -> None:
        if self.base <= timedelta(0) or self.factor < 1 or self.cap < self.base:
            raise ValueError("backoff needs base > 0, factor >= 1 and cap >= base")

    def delay(self, failures: int, rng: random.Random) -> timedelta:
        if failures < 1:
            raise ValueError("a backoff follows at least one failure")
        nominal = min(self.base * self.factor ** (failures - 1), self.cap)
        return nominal / 2 + nominal / 2 * rng.random()
