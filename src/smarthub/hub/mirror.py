"""The data mirror: the latest value of every (meter, OBIS) the hub has heard.

IHDs and the WAN read the mirror, never the meters, so battery meters are not woken.
Where a meter reports only a register (energy, volume), the mirror also derives the rate
(power, flow) from two successive register readings and mirrors it, flagged DERIVED, unless
the meter reports that rate itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal

from smarthub.model import ObisCode, Quality, Reading, Unit

# register → (rate it implies, unit of the rate, factor from base-unit-per-second to that unit)
_RATES: dict[ObisCode, tuple[ObisCode, Unit, Decimal]] = {
    ObisCode(1, 0, 1, 8, 0): (ObisCode(1, 0, 1, 7, 0), Unit.W, Decimal(3600)),  # Wh/s → W
    ObisCode(1, 0, 2, 8, 0): (ObisCode(1, 0, 2, 7, 0), Unit.W, Decimal(3600)),
    ObisCode(7, 0, 3, 0, 0): (ObisCode(7, 0, 43, 0, 0), Unit.M3_PER_H, Decimal(3600)),  # m3/s → m3/h
    ObisCode(8, 0, 1, 0, 0): (ObisCode(8, 0, 2, 0, 0), Unit.M3_PER_H, Decimal(3600)),
    ObisCode(6, 0, 1, 0, 0): (ObisCode(6, 0, 8, 0, 0), Unit.W, Decimal(3600)),
}
_RATE_CODES = frozenset(rate for rate, _, _ in _RATES.values())


class DataMirror:
    def __init__(self) -> None:
        self._latest: dict[tuple[str, ObisCode], Reading] = {}
        self._reported_rates: set[tuple[str, ObisCode]] = set()
        # Called with the readings just mirrored (derived rates included), e.g. the IHD's live
        # push: readers are told of a change instead of polling for one.
        self.observers: list[Callable[[list[Reading]], None]] = []

    def update(self, readings: Iterable[Reading]) -> int:
        """Keep each reading that is newer than the one mirrored; returns how many were kept."""
        kept = 0
        changed: list[Reading] = []
        for r in readings:
            key = (r.meter, r.obis)
            old = self._latest.get(key)
            if old is not None and r.time < old.time:
                continue
            if r.obis in _RATE_CODES and Quality.DERIVED not in r.quality:
                self._reported_rates.add(key)
            self._latest[key] = r
            kept += 1
            changed.append(r)
            if old is not None and r.obis in _RATES and r.start is None:
                derived = self._derive(old, r)
                if derived is not None:
                    changed.append(derived)
        if changed:
            for observe in self.observers:
                observe(changed)
        return kept

    def _derive(self, old: Reading, new: Reading) -> Reading | None:
        rate_obis, unit, factor = _RATES[new.obis]
        if (new.meter, rate_obis) in self._reported_rates:
            return None  # the meter reports this rate itself: never shadow a measurement
        seconds = Decimal((new.time - old.time).total_seconds())
        if seconds <= 0:
            return None
        v_new, _ = new.in_base_unit()
        v_old, _ = old.in_base_unit()
        if v_new < v_old:
            return None  # a register going backwards says nothing about the rate
        rate = ((v_new - v_old) / seconds * factor).quantize(Decimal("0.001"))
        derived = Reading(new.meter, rate_obis, rate, unit, new.time, quality=Quality.VALID | Quality.DERIVED)
        self._latest[(new.meter, rate_obis)] = derived
        return derived

    def latest(self, meter: str, obis: ObisCode) -> Reading | None:
        return self._latest.get((meter, obis))

    def meters(self) -> list[str]:
        return sorted({m for m, _ in self._latest})

    def for_meter(self, meter: str) -> list[Reading]:
        return sorted((r for (m, _), r in self._latest.items() if m == meter), key=lambda r: r.obis)

    def __len__(self) -> int:
        return len(self._latest)
