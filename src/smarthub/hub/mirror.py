"""The data mirror: the latest value of every (meter, OBIS) the hub has heard.

IHDs and the WAN read the mirror, never the meters, so battery meters are not woken.
"""

from __future__ import annotations

from collections.abc import Iterable

from smarthub.model import ObisCode, Reading


class DataMirror:
    def __init__(self) -> None:
        self._latest: dict[tuple[str, ObisCode], Reading] = {}

    def update(self, readings: Iterable[Reading]) -> int:
        """Keep each reading that is newer than the one mirrored; returns how many were kept."""
        kept = 0
        for r in readings:
            key = (r.meter, r.obis)
            old = self._latest.get(key)
            if old is None or r.time >= old.time:
                self._latest[key] = r
                kept += 1
        return kept

    def latest(self, meter: str, obis: ObisCode) -> Reading | None:
        return self._latest.get((meter, obis))

    def meters(self) -> list[str]:
        return sorted({m for m, _ in self._latest})

    def for_meter(self, meter: str) -> list[Reading]:
        return sorted((r for (m, _), r in self._latest.items() if m == meter), key=lambda r: r.obis)

    def __len__(self) -> int:
        return len(self._latest)
