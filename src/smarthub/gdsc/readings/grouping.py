"""The pure half of ingest: checking one pull and grouping it by channel-day, and the claims
in which readings of one key from several pulls or channels meet (no database, no clock).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from operator import attrgetter, itemgetter
from typing import Any

from smarthub.gdsc.readings.tables import DAY, GroupKey, Readings


class Tally:
    __slots__ = ("already", "clashes", "conflicts", "inserted", "replaced")

    def __init__(self) -> None:
        self.inserted = self.already = self.conflicts = self.replaced = 0
        # (block key, slot, stored (value, quality), new (value, quality)): a re-sent reading whose
        # value differs from the stored one (kept out), or an actual that replaced an estimate.
        self.clashes: list[tuple[tuple[str, int, int], int, tuple[int, int], tuple[int, int]]] = []


_GRID_DURATIONS = frozenset(d for d in range(1, DAY + 1) if DAY % d == 0)
_FIELDS = attrgetter(
    "hub_id", "duration", "interval_start", "meter_id", "obis", "uom", "power_of_ten", "value", "quality"
)
_ROW_FIELDS = itemgetter(0, 4, 3, 1, 2, 7, 6, 5, 8)  # the same fields of a ReadingRow


def group_pull(
    hub_id: str,
    readings: Readings,
    duplicates: list[tuple[str, str, int, int, int, int, int, int, int]] | None = None,
    registers: list[tuple[str, str, int, int, int, int, int]] | None = None,
) -> tuple[dict[GroupKey, dict[int, tuple[int, int]]], int]:
    """Check one pull and group it by channel-day: ({group: {slot: (value, quality)}}, unique
    readings). A key repeated in the same channel of one pull counts once (the first).

    For the VEE gate: when ``duplicates`` is a list, a repeat with another value is appended to
    it as (meter, obis, duration, start, first value, other value, uom, power_of_ten, quality);
    when ``registers`` is a list, rows of duration 0 (register readings) go there as (meter,
    obis, at, value, uom, power_of_ten, quality) instead of being refused."""
    groups: dict[GroupKey, dict[int, tuple[int, int]]] = {}
    unique = 0
    grid = _GRID_DURATIONS
    # The hot loop of ingest: one C-level attribute fetch per reading, then local operations.
    rows = isinstance(readings[0], tuple) if readings else False
    try:
        getter: Callable[[Any], tuple[Any, ...]] = _ROW_FIELDS if rows else _FIELDS
        fields = list(map(getter, readings))
    except (TypeError, AttributeError, IndexError):
        raise ValueError(
            f"the readings of hub {hub_id!r} must be all StoredReading or all 9-field tuples"
            " in its field order"
        ) from None
    for hub, duration, start, meter, obis, uom, p10, value, quality in fields:
        day = start // DAY
        rem = start - day * DAY
        if hub != hub_id or duration not in grid or rem % duration:
            if duration == 0 and registers is not None and hub == hub_id:
                registers.append((meter, obis, start, value, uom, p10, quality))
                continue
            _refuse(hub_id, hub, meter, obis, start, duration)
        key = (meter, obis, duration, uom, p10, day)
        slots = groups.get(key)
        if slots is None:
            slots = groups[key] = {}
        slot = rem // duration
        if slot not in slots:
            slots[slot] = (value, quality)
            unique += 1
        elif duplicates is not None and slots[slot][0] != value:
            duplicates.append((meter, obis, duration, start, slots[slot][0], value, uom, p10, quality))
    return groups, unique


def _refuse(hub_id: str, hub: str, meter: str, obis: str, start: int, duration: int) -> None:
    if hub != hub_id:
        raise ValueError(f"every reading in one ingest must belong to the pulled hub {hub_id!r}, not {hub!r}")
    raise ValueError(
        f"reading {meter} {obis} at {start}: a {duration} s interval must divide the day "
        "and start on its own grid"
    )


class Claim:
    """The readings one ingest brings for one (hub, meter, OBIS, duration, day).

    Usually a single channel from a single pull (kept as given, owned by one item); when a
    second pull or another channel (unit, power of ten) adds to it, it switches to one entry
    per slot: slot -> (channel_no, value, quality, item index)."""

    __slots__ = ("mixed", "no", "owner", "slots")

    def __init__(self, no: int, slots: dict[int, tuple[int, int]], owner: int) -> None:
        self.no = no
        self.slots = slots
        self.owner = owner
        self.mixed: dict[int, tuple[int, int, int, int]] | None = None

    def mix(self) -> dict[int, tuple[int, int, int, int]]:
        if self.mixed is None:
            no, owner = self.no, self.owner
            self.mixed = {s: (no, v, q, owner) for s, (v, q) in self.slots.items()}
        return self.mixed

    def add(self, no: int, slots: dict[int, tuple[int, int]], idx: int, tallies: list[Tally]) -> None:
        mixed = self.mix()
        for s, (v, q) in slots.items():
            held = mixed.get(s)
            if held is None:
                mixed[s] = (no, v, q, idx)
            elif held[0] != no or held[1] != v:
                tallies[idx].conflicts += 1

    def blocks(self) -> Iterator[tuple[int, dict[int, tuple[int, int]], int | dict[int, int]]]:
        """(channel_no, {slot: (value, quality)}, owner) per block the claim writes into."""
        if self.mixed is None:
            yield self.no, self.slots, self.owner
            return
        by_no: dict[int, tuple[dict[int, tuple[int, int]], dict[int, int]]] = {}
        for s, (no, v, q, idx) in self.mixed.items():
            slots, owner = by_no.setdefault(no, ({}, {}))
            slots[s] = (v, q)
            owner[s] = idx
        for no, (slots, owner) in by_no.items():
            yield no, slots, owner


def count_inserted(
    slots: dict[int, tuple[int, int]], owner: int | dict[int, int], tallies: list[Tally]
) -> None:
    if isinstance(owner, int):
        tallies[owner].inserted += len(slots)
    else:
        for s in slots:
            tallies[owner[s]].inserted += 1
