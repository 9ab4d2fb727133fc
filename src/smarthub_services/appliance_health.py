"""Appliance health: from a home's consented smart-plug data, spot appliances wearing out.

An outside service (issue 25 item 2) on the public data services API only: with the occupant's
consent to **appliance data** (``appliances``: per-appliance consumption from the home's smart
plugs, never its whole-home readings) it reads each plug's half-hourly energy
(``GET /v1/premises/{id}/appliances``), sorts the appliances by the name the occupant gave them and
applies one simple, stated test per kind:

* **Fridge or freezer: a rising duty cycle.** A compressor runs at a fixed power, so a day's energy
  is that power × its time on: the ratio of two days' energies *is* the ratio of their duty cycles
  (no rated power needed). Baseline: the first :data:`BASELINE_DAYS` whole local days of the
  period, their mean μ and standard deviation σ (σ at least :data:`SIGMA_FLOOR` of μ: a too-regular
  baseline would make any wobble significant). Flagged *degrading* when the mean of the last
  :data:`RECENT_DAYS` days is more than :data:`COLD_RISE` above μ **and** more than :data:`Z_LIMIT`
  σ above it **and** the least-squares slope over every day is positive (a rise, not one warm
  spell at the end).
* **Washing machine (or dishwasher): more energy per cycle.** A cycle is a run of consecutive
  half-hours drawing more than :data:`RUN_FLOOR_WH` (and more than a tenth of the plug's largest
  half-hour): its energy is their sum. Baseline: the first :data:`BASELINE_RUNS` cycles; flagged
  when the mean of the last :data:`BASELINE_RUNS` is more than :data:`WASH_RISE` above the
  baseline's and more than :data:`Z_LIMIT` σ above it (scale on the heating element heats longer
  for the same wash).
* **Heating (a heat pump, a boiler): short-cycling.** Switching on and off many times an hour
  with short runs wears a compressor or an ignition out and wastes energy (an oversized unit, a
  thermostat in a draught, low flow, a refrigerant fault). Heat-pump guidance counts it in starts
  per hour and run times: a healthy unit completes two to three cycles an hour at most
  (https://johnowensservices.com/blog/how-long-should-heat-pump-stay-off-between-cycles/) and
  short-cycling units "often run less than 10 minutes per cycle"
  (https://www.pickcomfort.com/?p=25146). Half-hourly energy cannot count either (a unit cycling
  every 12 minutes and one cycling every two hours at the same duty draw the same energy per
  half-hour), so the test reads what the plug's hub counted from its demand, per half-hour
  (``starts`` and ``run_seconds`` beside the energy: ``smarthub.hub.appliance_runs``). Over the
  last :data:`RECENT_DAYS` whole days, over its heating hours (the half-hours it ran in and pauses
  of up to an hour between them): starts per hour = starts / heating hours, mean run = seconds run
  / starts. Flagged
  *short-cycling* when it starts more than :data:`MAX_STARTS_PER_HOUR` times an hour **and** its
  mean run is under :data:`MIN_RUN_MINUTES` minutes, with at least :data:`MIN_HEATING_HOURS` hours
  of running to judge. The hub's counts are a lower bound (a run or pause shorter than its
  sampling can be missed) and its run times within one sampling interval (2 minutes in the
  simulated fleet): a unit is flagged for what was seen, never for what might have happened. A
  plug whose hub serves no run counts (a hub from before them) is insufficient data.

Too little data (fewer than :data:`BASELINE_DAYS` + :data:`RECENT_DAYS` whole days, or
2 × :data:`BASELINE_RUNS` cycles) is reported as such, never as healthy. The findings become a
message for the occupant; ``--notify-meter`` asks the GDSC to show it on the home's display through
the API's IHD-message command (the GDSC sends it only if the service is approved for
``ihd-messages`` and the occupant consented to that kind; the display shows it under the service's
name, as a third party's), and reports the GDSC's answer: ``notified`` true with the job queued for
the display, or false with the reason (nothing is pretended).

Standard library only; nothing of the platform is imported (``tests/services``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from smarthub_services.client import ApiError, Credentials, DataServicesClient, Unreachable

LONDON = ZoneInfo("Europe/London")
HALF_HOUR = 1800

BASELINE_DAYS = 3  # the first whole days: what "normal" is for this appliance
RECENT_DAYS = 2  # the last whole days, compared with it
COLD_RISE = 0.10  # a fridge drawing >10 % more a day than its baseline ...
Z_LIMIT = 3.0  # ... and more than 3 baseline standard deviations above it
SIGMA_FLOOR = 0.02  # σ taken as at least 2 % of the baseline mean
BASELINE_RUNS = 3  # washing cycles in the baseline, and in the recent mean
WASH_RISE = 0.15  # a cycle drawing >15 % more than the baseline cycles
RUN_FLOOR_WH = 20  # a half-hour drawing more than this (and a tenth of the largest) is "running"
MAX_STARTS_PER_HOUR = 3.0  # heating starting more often than this an hour while it runs ...
MIN_RUN_MINUTES = 10.0  # ... in runs shorter than this on average: short-cycling
MIN_HEATING_HOURS = 4.0  # hours of heating in the recent days below which nothing is judged
MAX_PAUSE_HALF_HOURS = 2  # a pause of up to an hour between runs is still heating

COLD, WASHER, HEATING = "fridge/freezer", "washing machine", "heating"
FAULTS = frozenset({"degrading", "short-cycling"})  # the verdicts the occupant is told about


def kind_of(name: str) -> str | None:
    """The kind of appliance the occupant's name for it says (None: not one this service tests)."""
    n = name.lower()
    if "fridge" in n or "freezer" in n:
        return COLD
    if "wash" in n:  # washing machine, washer-dryer, dishwasher: a cycle at a time
        return WASHER
    # A compressor or a burner wears with every start; an electric radiator's or an immersion
    # heater's thermostat switching a resistive element often is how it is meant to work.
    if "heat pump" in n or "heatpump" in n or "boiler" in n:
        return HEATING
    return None


@dataclass(frozen=True)
class Verdict:
    meter_id: str
    name: str
    kind: str | None
    verdict: str  # degrading, short-cycling, ok, insufficient-data, not-assessed
    why: str
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        return self.verdict in FAULTS

    def to_json(self) -> dict[str, Any]:
        return {
            "meter_id": self.meter_id,
            "name": self.name,
            "kind": self.kind,
            "verdict": self.verdict,
            "why": self.why,
            **self.figures,
        }


def half_hours(readings: Iterable[dict[str, Any]]) -> dict[int, float]:
    """Epoch second of each half-hour → Wh, from the API's readings (value × 10^power, uom 72)."""
    out: dict[int, float] = {}
    for r in readings:
        if int(r["duration"]) != HALF_HOUR:
            raise ValueError(f"expected half-hourly readings, got a duration of {r['duration']} s")
        if int(r["uom"]) != 72:
            raise ValueError(f"expected Wh (uom 72), got uom {r['uom']}")
        start = int(datetime.fromisoformat(r["start"]).timestamp())
        out[start] = float(r["value"]) * 10.0 ** int(r["power_of_ten"])
    return out


def _midnight(d: date, tz: ZoneInfo) -> int:
    return int(datetime.combine(d, time(0), tzinfo=tz).timestamp())


def whole_days(series: dict[int, float], tz: ZoneInfo = LONDON) -> list[tuple[date, float]]:
    """Energy of each local day every half-hour of which is present (46, 48 or 50 of them)."""
    by_day: dict[date, list[float]] = {}
    for start, wh in series.items():
        by_day.setdefault(datetime.fromtimestamp(start, tz).date(), []).append(wh)
    out = []
    for d in sorted(by_day):
        expected = (_midnight(d + timedelta(days=1), tz) - _midnight(d, tz)) // HALF_HOUR
        if len(by_day[d]) == expected:
            out.append((d, sum(by_day[d])))
    return out


def _slope(ys: Sequence[float]) -> float:
    """Least-squares slope of ``ys`` against 0, 1, 2, …"""
    n = len(ys)
    mx, my = (n - 1) / 2, sum(ys) / n
    den = sum((x - mx) ** 2 for x in range(n))
    return sum((x - mx) * (y - my) for x, y in enumerate(ys)) / den


def _baseline(values: Sequence[float]) -> tuple[float, float]:
    mu = statistics.fmean(values)
    sigma = statistics.stdev(values) if len(values) > 1 else 0.0
    return mu, max(sigma, SIGMA_FLOOR * abs(mu))


def cold_verdict(meter_id: str, name: str, series: dict[int, float], tz: ZoneInfo = LONDON) -> Verdict:
    """The fridge/freezer test (module docstring)."""
    days = whole_days(series, tz)
    need = BASELINE_DAYS + RECENT_DAYS
    if len(days) < need:
        return Verdict(
            meter_id, name, COLD, "insufficient-data", f"{len(days)} whole days; the test needs {need}"
        )
    energy = [wh for _, wh in days]
    mu, sigma = _baseline(energy[:BASELINE_DAYS])
    recent = statistics.fmean(energy[-RECENT_DAYS:])
    rise = recent / mu - 1 if mu > 0 else 0.0
    z = (recent - mu) / sigma if sigma > 0 else 0.0
    slope = _slope(energy)
    figures = {
        "days": len(days),
        "first_day": days[0][0].isoformat(),
        "last_day": days[-1][0].isoformat(),
        "baseline_wh_per_day": round(mu, 1),
        "recent_wh_per_day": round(recent, 1),
        "duty_cycle_rise": round(rise, 4),  # the daily energy's rise is the duty cycle's
        "z": round(z, 2),
        "slope_wh_per_day": round(slope, 1),
    }
    degrading = rise > COLD_RISE and z > Z_LIMIT and slope > 0
    if degrading:
        why = (
            f"its duty cycle rose {rise:.0%} over the first {BASELINE_DAYS} days' "
            f"({z:.1f} σ, rising {slope:.0f} Wh a day): a worn door seal, a failing fan or thermostat, "
            "or a frosted evaporator"
        )
    else:
        why = f"duty cycle within its baseline (rise {rise:+.0%}, {z:+.1f} σ)"
    return Verdict(meter_id, name, COLD, "degrading" if degrading else "ok", why, figures)


def cycles(series: dict[int, float]) -> list[tuple[int, int, float]]:
    """(start, end, Wh) of each run of consecutive half-hours above the running floor."""
    if not series:
        return []
    floor = max(RUN_FLOOR_WH, 0.1 * max(series.values()))
    out: list[tuple[int, int, float]] = []
    run: list[float] = []  # [start, end, Wh] of the run under way
    for start in sorted(series):
        if series[start] <= floor:
            continue
        if run and run[1] == start:
            run[1], run[2] = start + HALF_HOUR, run[2] + series[start]
        else:
            if run:
                out.append((int(run[0]), int(run[1]), run[2]))
            run = [start, start + HALF_HOUR, series[start]]
    if run:
        out.append((int(run[0]), int(run[1]), run[2]))
    return out


def washer_verdict(meter_id: str, name: str, series: dict[int, float]) -> Verdict:
    """The washing-machine test (module docstring). A cycle still running at either end of the
    period is left out (only part of it was read)."""
    runs = cycles(series)
    if series:
        first, end = min(series), max(series) + HALF_HOUR
        runs = [r for r in runs if r[0] != first and r[1] != end]
    need = 2 * BASELINE_RUNS
    if len(runs) < need:
        return Verdict(
            meter_id, name, WASHER, "insufficient-data", f"{len(runs)} cycles; the test needs {need}"
        )
    energy = [wh for _, _, wh in runs]
    mu, sigma = _baseline(energy[:BASELINE_RUNS])
    recent = statistics.fmean(energy[-BASELINE_RUNS:])
    rise = recent / mu - 1 if mu > 0 else 0.0
    z = (recent - mu) / sigma if sigma > 0 else 0.0
    figures = {
        "cycles": len(runs),
        "baseline_wh_per_cycle": round(mu, 1),
        "recent_wh_per_cycle": round(recent, 1),
        "cycle_energy_rise": round(rise, 4),
        "z": round(z, 2),
    }
    degrading = rise > WASH_RISE and z > Z_LIMIT
    if degrading:
        why = (
            f"its last {BASELINE_RUNS} cycles drew {rise:.0%} more than its first {BASELINE_RUNS} "
            f"({z:.1f} σ): scale on the heating element, or a failing pump"
        )
    else:
        why = f"energy per cycle within its baseline (rise {rise:+.0%}, {z:+.1f} σ)"
    return Verdict(meter_id, name, WASHER, "degrading" if degrading else "ok", why, figures)


def counts(readings: Iterable[dict[str, Any]]) -> dict[int, int]:
    """Epoch second of each half-hour → a count (uom 0): the hub's starts or seconds run."""
    out: dict[int, int] = {}
    for r in readings:
        if int(r["duration"]) != HALF_HOUR:
            raise ValueError(f"expected half-hourly counts, got a duration of {r['duration']} s")
        if int(r["uom"]) != 0:
            raise ValueError(f"expected a count (uom 0), got uom {r['uom']}")
        start = int(datetime.fromisoformat(r["start"]).timestamp())
        out[start] = round(float(r["value"]) * 10.0 ** int(r["power_of_ten"]))
    return out


def heating_half_hours(known: dict[int, tuple[int, int]]) -> list[int]:
    """The half-hours of the heating periods: those the unit ran in, and the pauses of at most
    :data:`MAX_PAUSE_HALF_HOURS` between two of them (a unit cycling once an hour is off for whole
    half-hours while it heats: counting only the half-hours it ran in would double its rate)."""
    ran = sorted(t for t, (_, s) in known.items() if s > 0)
    out = list(ran)
    for a, b in itertools.pairwise(ran):
        between = range(a + HALF_HOUR, b, HALF_HOUR)
        if len(between) <= MAX_PAUSE_HALF_HOURS and all(t in known for t in between):
            out += between
    return sorted(out)


def heating_verdict(
    meter_id: str, name: str, starts: dict[int, int], seconds: dict[int, int], tz: ZoneInfo = LONDON
) -> Verdict:
    """The short-cycling test (module docstring). A half-hour counts when the hub has both its
    starts and its seconds run; a day is whole when it has every half-hour."""
    known = {t: (starts[t], seconds[t]) for t in starts.keys() & seconds.keys()}
    days = [d for d, _ in whole_days({t: 0.0 for t in known}, tz)]
    if len(days) < RECENT_DAYS:
        why = f"{len(days)} whole days of run counts; the test needs {RECENT_DAYS}"
        if not known:
            why = "its hub serves no run counts (starts, seconds run) for this plug"
        return Verdict(meter_id, name, HEATING, "insufficient-data", why)
    recent = set(days[-RECENT_DAYS:])
    heating = heating_half_hours(known)
    ran = [known[t] for t in heating if datetime.fromtimestamp(t, tz).date() in recent]
    hours = len(ran) / 2
    n_starts, run_s = sum(n for n, _ in ran), sum(s for _, s in ran)
    figures: dict[str, Any] = {
        "days": len(days),
        "recent_days": [d.isoformat() for d in sorted(recent)],
        "heating_hours": hours,
        "starts": n_starts,
    }
    if hours < MIN_HEATING_HOURS or n_starts == 0:
        why = (
            f"{hours:g} hours of heating in the last {RECENT_DAYS} days; the test needs {MIN_HEATING_HOURS:g}"
        )
        return Verdict(meter_id, name, HEATING, "insufficient-data", why, figures)
    per_hour = n_starts / hours
    mean_run = run_s / n_starts / 60
    by_day: dict[date, list[int]] = {}
    for t in heating:
        d = by_day.setdefault(datetime.fromtimestamp(t, tz).date(), [0, 0])
        d[0], d[1] = d[0] + known[t][0], d[1] + 1
    figures |= {
        "starts_per_hour": round(per_hour, 2),
        "mean_run_minutes": round(mean_run, 1),
        # each whole day's starts per hour of running: when it began
        "starts_per_hour_by_day": {
            d.isoformat(): round(by_day[d][0] / (by_day[d][1] / 2), 2) for d in days if d in by_day
        },
    }
    if per_hour > MAX_STARTS_PER_HOUR and mean_run < MIN_RUN_MINUTES:
        why = (
            f"it started {per_hour:.1f} times an hour while heating over the last {RECENT_DAYS} days, "
            f"in runs of {mean_run:.1f} minutes on average: short-cycling (an oversized unit, a "
            "thermostat in a draught, low flow or a refrigerant fault)"
        )
        return Verdict(meter_id, name, HEATING, "short-cycling", why, figures)
    why = f"{per_hour:.1f} starts an hour while heating, runs of {mean_run:.0f} minutes on average"
    return Verdict(meter_id, name, HEATING, "ok", why, figures)


def assess(appliance: dict[str, Any], tz: ZoneInfo = LONDON) -> Verdict:
    """One plug of the API's answer, judged by its kind."""
    meter, name = str(appliance["meter_id"]), str(appliance["name"])
    kind = kind_of(name)
    series = half_hours(appliance["readings"])
    if kind == COLD:
        return cold_verdict(meter, name, series, tz)
    if kind == WASHER:
        return washer_verdict(meter, name, series)
    if kind == HEATING:
        starts, seconds = counts(appliance.get("starts", [])), counts(appliance.get("run_seconds", []))
        return heating_verdict(meter, name, starts, seconds, tz)
    return Verdict(meter, name, None, "not-assessed", "not an appliance kind this service tests")


def message(verdicts: Sequence[Verdict]) -> str | None:
    """What the occupant is told (None: nothing worth telling)."""
    flagged = [v for v in verdicts if v.flagged]
    if not flagged:
        return None
    parts = [f"{v.name}: {v.why}" for v in flagged]
    return "Appliance health: " + "; ".join(parts) + ". Worth a check before it fails."


def check_premises(
    client: DataServicesClient, premises_id: str, start: datetime, end: datetime, tz: ZoneInfo = LONDON
) -> list[Verdict]:
    return [assess(a, tz) for a in client.appliances(premises_id, start, end, "half-hourly")]


def notify(client: DataServicesClient, premises_id: str, meter_id: str, text: str) -> tuple[bool, str]:
    """Ask the GDSC to show ``text`` on the home's display: (queued, the job or the GDSC's reason)."""
    path = f"/v1/premises/{urllib.parse.quote(premises_id)}/commands/ihd-message"
    try:
        _, job = client.request("POST", path, body={"meter_id": meter_id, "text": text[:500]})
    except ApiError as err:
        return False, f"the GDSC refused ({err.status}): {err.detail}"
    return True, f"queued for the display as job {job['job_id']}"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="appliance-health", description=__doc__.split("\n\n")[0])
    ap.add_argument("--api", required=True, help="the GDSC data services API's base URL")
    ap.add_argument("--client-id", required=True)
    ap.add_argument(
        "--client-secret-file", type=Path, help="file holding the client secret (else $SERVICE_CLIENT_SECRET)"
    )
    ap.add_argument("--premises", required=True, action="append", help="a premises to check (repeat)")
    ap.add_argument("--until", type=date.fromisoformat, help="local day after the period (default today)")
    ap.add_argument("--days", type=int, default=7, help="whole local days before --until (default 7)")
    ap.add_argument(
        "--notify-meter",
        help="ask the GDSC to show the findings on the display of the home with this supply meter "
        "(only with --premises given once)",
    )
    args = ap.parse_args(argv)
    if args.client_secret_file is not None:
        secret = args.client_secret_file.read_text().strip()
    else:
        secret = os.environ.get("SERVICE_CLIENT_SECRET", "")
    if not secret:
        ap.error("give --client-secret-file or set SERVICE_CLIENT_SECRET")
    if not 1 <= args.days <= 366:
        ap.error("--days must be 1 to 366")
    if args.notify_meter and len(args.premises) != 1:
        ap.error("--notify-meter names one home's meter: give --premises once")
    client = DataServicesClient(args.api, Credentials(args.client_id, secret))
    until = args.until or datetime.now(LONDON).date()
    start = datetime.combine(until - timedelta(days=args.days), time(0), tzinfo=LONDON).astimezone(UTC)
    end = datetime.combine(until, time(0), tzinfo=LONDON).astimezone(UTC)
    out: dict[str, Any] = {"start": start.isoformat(), "end": end.isoformat(), "premises": {}, "flagged": []}
    refused = 0
    for premises_id in args.premises:
        try:
            verdicts = check_premises(client, premises_id, start, end)
        except ApiError as err:
            print(f"appliance-health: the GDSC refused {premises_id}: {err}", file=sys.stderr)
            out["premises"][premises_id] = {"refused": err.status, "detail": err.detail}
            refused += 1
            continue
        except Unreachable as err:
            print(f"appliance-health: the GDSC is unreachable: {err}", file=sys.stderr)
            return 3
        except ValueError as err:
            print(f"appliance-health: {premises_id}: {err}", file=sys.stderr)
            return 1
        text = message(verdicts)
        entry: dict[str, Any] = {"appliances": [v.to_json() for v in verdicts], "message": text}
        if args.notify_meter and text is not None:
            entry["notified"], entry["notification"] = notify(client, premises_id, args.notify_meter, text)
        out["premises"][premises_id] = entry
        out["flagged"] += [f"{premises_id}: {v.name}" for v in verdicts if v.flagged]
    json.dump(out, sys.stdout, indent=2)
    print()
    return 2 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
