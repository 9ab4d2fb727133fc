"""Gap estimation (pure): what a channel-day's missing intervals most likely were.

* **Short gaps** (≤ :data:`SHORT_SLOTS` intervals in a run): linear. Between two register
  readings the cumulative register is taken as a straight line across the gap, i.e. the energy
  the registers say is missing is shared equally; without registers, the rate is interpolated
  linearly between the intervals either side of the gap.
* **Long gaps**: the profile of the same weekday in previous weeks (the mean of each interval
  over up to four reference days), scaled so the gap holds exactly the energy the registers say
  is missing. Without references the linear method is used; without registers the profile
  is used unscaled.

When the registers bound the day, the missing energy is shared across all of the day's gaps in
proportion to their shape, so the day adds up to its register advance exactly (integers,
largest remainder). Every estimate is returned with its method; the store flags it with the
IEEE 2030.5 quality bit of that method and records it, and an actual reading replaces it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

SHORT_SLOTS = 8  # four hours of half-hours


def runs(missing: Sequence[int]) -> list[list[int]]:
    """Consecutive runs of the sorted slot numbers ``missing``."""
    out: list[list[int]] = []
    for s in missing:
        if out and out[-1][-1] == s - 1:
            out[-1].append(s)
        else:
            out.append([s])
    return out


def _linear_rates(run: list[int], slots: Mapping[int, tuple[int, int]]) -> list[float]:
    before = slots.get(run[0] - 1)
    after = slots.get(run[-1] + 1)
    a = before[0] if before else (after[0] if after else 0)
    b = after[0] if after else a
    n = len(run) + 1
    return [a + (b - a) * (i + 1) / n for i in range(len(run))]


def fill(
    slots: Mapping[int, tuple[int, int]],
    n_slots: int,
    missing_energy: float | None,
    references: Sequence[Mapping[int, tuple[int, int]]],
) -> dict[int, tuple[int, str]]:
    """{slot: (value, method)} for every absent slot of the day. ``missing_energy``: what the
    registers say the absent slots hold, in the channel's units (None: no registers)."""
    gap = [s for s in range(n_slots) if s not in slots]
    if not gap:
        return {}
    shape: dict[int, float] = {}
    method: dict[int, str] = {}
    for run in runs(gap):
        profile = None
        if len(run) > SHORT_SLOTS and references:
            profile = [
                sum(r[s][0] for r in references if s in r) / max(1, sum(1 for r in references if s in r))
                for s in run
            ]
        if profile is not None:
            for s, w in zip(run, profile, strict=True):
                shape[s], method[s] = max(w, 0.0), "profile"
        else:
            flat = missing_energy is not None
            rates = [1.0] * len(run) if flat else _linear_rates(run, slots)
            for s, w in zip(run, rates, strict=True):
                shape[s], method[s] = max(w, 0.0), "linear"
    if missing_energy is not None:
        target = max(0.0, missing_energy)
        weight = sum(shape.values())
        if weight <= 0:
            shape = {s: 1.0 for s in shape}
            weight = float(len(shape))
        values = _apportion({s: target * w / weight for s, w in shape.items()}, round(target))
    else:
        values = {s: round(w) for s, w in shape.items()}
    return {s: (values[s], method[s]) for s in gap}


def _apportion(shares: Mapping[int, float], total: int) -> dict[int, int]:
    """Integers that add up to ``total``, each its share rounded down, the remainder given to
    the largest fractions (the largest-remainder method)."""
    floors = {s: int(v) for s, v in shares.items()}
    left = total - sum(floors.values())
    for s in sorted(shares, key=lambda k: shares[k] - floors[k], reverse=True)[: max(0, left)]:
        floors[s] += 1
    return floors


__all__ = ["SHORT_SLOTS", "fill", "runs"]
