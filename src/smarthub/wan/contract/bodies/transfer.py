"""The ``transfer.policy`` body: how, when and how finely the GDSC retrieves a hub's data.

The GDSC sets a transfer policy per hub or per group of hubs (supplier, tariff, premises class;
:mod:`smarthub.gdsc.transfer`) and sends the hub the policy in force for it. The hub keeps the
newest (by ``version``) and its privacy filter serves the GDSC's collection no finer than
``aggregation`` (:mod:`smarthub.hub.transfer_policy`), whatever the GDSC asks for; the GDSC's pull
plan pulls the hub at ``frequency`` inside the daily window.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from smarthub.wan.contract.bodies.base import CommandBody, Fields
from smarthub.wan.contract.bodies.privacy import Granularity

# How often the hub is pulled: every half-hour (near real time), once a day inside the window,
# or once a month (on the 1st, inside the window: the GB minimum for a home that opted out).
FREQUENCIES = ("half-hourly", "daily", "monthly")
# What a policy may cap the GDSC's collection at (a policy never stops collection: "none" is
# the consumer's decision, made through consent, not the GDSC's).
AGGREGATIONS = (
    Granularity.HALF_HOURLY.value,
    Granularity.DAILY.value,
    Granularity.MONTHLY.value,
    Granularity.TARIFF_REGISTERS.value,
)
DAY_MINUTES = 1440
MAX_PRIORITY = 9


@dataclass(frozen=True, slots=True)
class TransferPolicy(CommandBody):
    """``version``: microseconds since the epoch of the change at the GDSC (newest wins);
    ``window_start``/``window_length``: minutes past UTC midnight and the window's length in
    minutes (a multiple of 30, at most a day); ``priority``: 0 (first) to 9 inside a window."""

    TYPE: ClassVar[str] = "transfer.policy"
    version: int
    frequency: str
    window_start: int
    window_length: int
    aggregation: Granularity
    priority: int

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        f = Fields(cls.TYPE, body)
        start = f.integer("window_start", minimum=0)
        if start >= DAY_MINUTES or start % 30:
            raise f.bad(
                "window_start", f"must be a half-hour past UTC midnight (0..1410 minutes), got {start}"
            )
        length = f.integer("window_length", minimum=30)
        if length > DAY_MINUTES or length % 30:
            raise f.bad("window_length", f"must be a multiple of 30 minutes up to a day, got {length}")
        priority = f.integer("priority", 5, minimum=0)
        if priority > MAX_PRIORITY:
            raise f.bad("priority", f"must be 0..{MAX_PRIORITY}, got {priority}")
        return cls(
            f.integer("version", minimum=0),
            f.choice("frequency", FREQUENCIES),
            start,
            length,
            Granularity(f.choice("aggregation", AGGREGATIONS)),
            priority,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "frequency": self.frequency,
            "window_start": self.window_start,
            "window_length": self.window_length,
            "aggregation": self.aggregation.value,
            "priority": self.priority,
        }


__all__ = ["AGGREGATIONS", "FREQUENCIES", "TransferPolicy"]
