"""Power quality per feeder or substation, from the 10-minute voltage statistics and the sag and
swell counts the hubs keep (:mod:`smarthub.hub.power_quality`) and the GDSC pulls like any other
channel.

Per phase over the premises under a node and a period: the mean of the 10-minute mean voltages,
the lowest minimum and highest maximum, how many 10-minute means there were and the share inside
230 V ± 10 % (EN 50160: 95 % of a week's 10-minute means must be), the sags and swells the
meters counted, and how many premises reported. A summary over many homes, not any one home's
values: the API serves it to the network operator of the node.

Power failures under the node (:func:`failures`): the short and long failures the meters
counted (0-0:96.7.21, 0-0:96.7.9), and from their failure logs (0-0:96.7.19) the long failures'
minutes in total and the longest, each failure taken in the period in which it ended. Customer
minutes lost, the regulator's figure (SAIDI's numerator), is the total: each meter is a
customer. The longest is exact unless one meter logged two long failures ending within the same
10 minutes (the hub keeps their sum for that period, :mod:`smarthub.hub.power_quality`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from smarthub.gdsc.readings.queries import premises_meter_list
from smarthub.gdsc.readings.stored import channel_readings
from smarthub.model.reading_type import FAILURE_SECONDS, LONG_FAILURES, PHASES, SHORT_FAILURES

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


@dataclass
class Failures:
    short: int = 0  # counted by the meters (0-0:96.7.21)
    long: int = 0  # counted by the meters (0-0:96.7.9)
    logged_seconds: int = 0  # the long failures' seconds, from the logs (0-0:96.7.19)
    longest_seconds: int = 0
    premises_reporting: set[str] = field(default_factory=set)
    premises_failed: set[str] = field(default_factory=set)

    def out(self) -> dict[str, Any]:
        return {
            "short": self.short,
            "long": self.long,
            "outage_minutes": round(self.logged_seconds / 60, 1),
            "longest_outage_minutes": round(self.longest_seconds / 60, 1),
            "premises_reporting": len(self.premises_reporting),
            "premises_with_long_failures": len(self.premises_failed),
        }


def failures(engine: Engine, premises_ids: Iterable[str], start: int, end: int) -> dict[str, Any]:
    """Short and long power failures over these premises' electricity meters, and the long
    ones' minutes from the meters' logs, in records starting in [start, end) (epoch seconds)."""
    f = Failures()
    with engine.connect() as conn:
        for premises_id in premises_ids:
            for meter in premises_meter_list(engine, premises_id):
                if meter.fuel != "electricity":
                    continue
                for hub_id in meter.series_hubs:
                    short, long_, logged = (
                        channel_readings(conn, hub_id, meter.meter_id, str(o), start, end)
                        for o in (SHORT_FAILURES, LONG_FAILURES, FAILURE_SECONDS)
                    )
                    if short or long_ or logged:
                        f.premises_reporting.add(premises_id)
                    f.short += sum(r.value for r in short)
                    f.long += sum(r.value for r in long_)
                    for r in logged:
                        seconds = r.value * 10**r.power_of_ten
                        f.logged_seconds += seconds
                        f.longest_seconds = max(f.longest_seconds, seconds)
                    if any(r.value for r in long_) or any(r.value for r in logged):
                        f.premises_failed.add(premises_id)
    return f.out()
