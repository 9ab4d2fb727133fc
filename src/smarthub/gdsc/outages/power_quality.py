"""Power quality per feeder or substation, from the 10-minute voltage statistics and the sag and
swell counts the hubs keep (:mod:`smarthub.hub.power_quality`) and the GDSC pulls like any other
channel.

Per phase over the premises under a node and a period: the mean of the 10-minute mean voltages,
the lowest minimum and highest maximum, how many 10-minute means there were and the share inside
230 V ± 10 % (EN 50160: 95 % of a week's 10-minute means must be), the sags and swells the
meters counted, and how many premises reported. A summary over many homes, not any one home's
values: the API serves it to the network operator of the node.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from smarthub.gdsc.readings.queries import premises_meter_list
from smarthub.gdsc.readings.stored import channel_readings
from smarthub.model.reading_type import PHASES

NOMINAL_V = 230.0
BAND = 0.10  # EN 50160: ±10 % of the nominal voltage
EN50160_SHARE = 0.95
PHASE_NAMES = {32: "L1", 52: "L2", 72: "L3"}


@dataclass
class PhaseQuality:
    phase: str
    periods: int = 0  # 10-minute means
    within: int = 0  # of them inside NOMINAL ± BAND
    total_v: float = 0.0
    min_v: float | None = None
    max_v: float | None = None
    sags: int = 0
    swells: int = 0
    premises: set[str] = field(default_factory=set)

    def out(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "periods": self.periods,
            "mean_v": round(self.total_v / self.periods, 2) if self.periods else None,
            "min_v": self.min_v,
            "max_v": self.max_v,
            "share_within_10pct": round(self.within / self.periods, 4) if self.periods else None,
            "sags": self.sags,
            "swells": self.swells,
            "premises_reporting": len(self.premises),
        }


def summarise(engine: Engine, premises_ids: Iterable[str], start: int, end: int) -> list[dict[str, Any]]:
    """Per phase (L1, L2, L3) over these premises' electricity meters, readings starting in
    [start, end) (epoch seconds)."""
    lo, hi = NOMINAL_V * (1 - BAND), NOMINAL_V * (1 + BAND)
    phases = {c: PhaseQuality(PHASE_NAMES[c]) for c in PHASES}
    with engine.connect() as conn:
        for premises_id in premises_ids:
            for meter in premises_meter_list(engine, premises_id):
                if meter.fuel != "electricity":
                    continue
                for hub_id in meter.series_hubs:
                    for c, q in phases.items():
                        got = {
                            d: channel_readings(conn, hub_id, meter.meter_id, f"1-0:{c}.{d}.0", start, end)
                            for d in (5, 3, 6, 32, 36)
                        }
                        for r in got[5]:
                            v = r.value * 10.0**r.power_of_ten
                            q.periods += 1
                            q.total_v += v
                            q.within += lo <= v <= hi
                            q.premises.add(premises_id)
                        for r in got[3]:
                            v = r.value * 10.0**r.power_of_ten
                            q.min_v = v if q.min_v is None else min(q.min_v, v)
                        for r in got[6]:
                            v = r.value * 10.0**r.power_of_ten
                            q.max_v = v if q.max_v is None else max(q.max_v, v)
                        q.sags += sum(r.value for r in got[32])
                        q.swells += sum(r.value for r in got[36])
    return [q.out() for q in phases.values()]


def en50160(phases: list[dict[str, Any]]) -> bool | None:
    """Whether every phase with data had 95 % of its 10-minute means inside ±10 % (meaningful
    over a week, as EN 50160 states it); None without data."""
    shares = [p["share_within_10pct"] for p in phases if p["periods"]]
    return None if not shares else all(s >= EN50160_SHARE for s in shares)
