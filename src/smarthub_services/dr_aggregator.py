"""Demand-response aggregator: enrols consenting homes, sends them events, pays them for what they shed.

A third-party service on the public data services API only (as an outside company would be). With
the GDSC's approval for ``readings`` (half-hourly) and ``demand-response``, and each occupant's
consent to both:

* **enrol** a home (premises and electricity meter): its last 28 local days of half-hourly
  readings are read through the API; a home whose occupant has not consented is refused with the
  GDSC's reason and not enrolled;
* **forecast** each home's load in an event's half-hours as the mean of the same local
  half-hours on its previous like days (weekdays for a weekday, weekend days for a weekend day),
  and its *flexible* part as what exceeds the home's base load (the lowest half-hour of that
  like-day profile: fridges, standby, what no event can shed);
* **dispatch** an event (``POST /v1/premises/{id}/demand-response/events``: start, duration, the
  device categories addressed, a duty cycle or load reduction, randomisation) to every enrolled
  home whose flexible forecast reaches ``--min-flexible-kwh``; the GDSC sends it to the hub as an
  IEEE 2030.5 EndDeviceControl. A 403 (approval suspended or revoked, consent withdrawn) is
  reported per home with the GDSC's reason and never retried;
* **measure** the delivered reduction once the event day's readings are in: per half-hour of
  the event, the **baseline** (the mean of the same local half-hour on the home's previous 10 like
  days with complete data and no event of this aggregator) minus the metered consumption;
* **settle** a reward per home: the event's reduction (never below zero) × ``--rate`` pounds per
  kWh, rounded to the penny (half up), printed as a settlement statement (JSON) with each
  half-hour, the baseline days used and the hub's DrResponses (``GET …/events/{id}``).

A home newly metered has no like day: ``dispatch --without-forecast`` sends it the event anyway
(its entry says there was no forecast), and ``settle --min-baseline-days N`` makes a
*provisional* statement for an event with fewer than 10 but at least N like days (labelled, its
reward indicative, nothing settled: the event is settled once its 10 days are in).

The aggregator keeps its own ledger (SQLite): homes enrolled, events sent, statements settled
(settling again prints the statements already made; nothing is paid twice).

    python -m smarthub_services.dr_aggregator --api URL --client-id ID --client-secret-file F \\
        --ledger dr.sqlite enrol --home P1:E1 [--home P2:E1 ...] [--until 2026-08-19]
    ... dispatch --start 2026-08-19T18:00+01:00 --minutes 60 --category electric-vehicle --duty-cycle 50
    ... status
    ... cancel --event EVENT_ID
    ... settle --rate 0.30

Exit status 0; 2 when the GDSC refused something (the reasons are in the JSON); 3 when it was
unreachable; 1 on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from smarthub_services.client import ApiError, Credentials, DataServicesClient, Unreachable

LONDON = ZoneInfo("Europe/London")
HALF_HOUR = timedelta(minutes=30)
WH = 72  # IEEE 2030.5 UomType: watt-hours
BASELINE_DAYS = 10  # like days in the baseline (the "previous 10 like days")
LOOK_BACK = timedelta(days=70)  # how far back like days are looked for
ENROL_DAYS = 28
KWH = Decimal("0.001")
PENNY = Decimal("0.01")

SCHEMA = """
CREATE TABLE IF NOT EXISTS homes (
    premises_id TEXT PRIMARY KEY,
    meter_id TEXT NOT NULL,
    enrolled TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    premises_id TEXT NOT NULL,
    meter_id TEXT NOT NULL,
    start TEXT NOT NULL,
    end TEXT NOT NULL,
    forecast_kwh TEXT NOT NULL,
    flexible_kwh TEXT NOT NULL,
    sent TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS settlements (
    event_id TEXT PRIMARY KEY,
    statement TEXT NOT NULL,
    settled TEXT NOT NULL
);
"""


class NotReady(Exception):
    """An event's readings (or enough history for its baseline) are not in yet."""


class BadReading(ValueError):
    """A reading that is not a half-hour of watt-hours."""


# -- the arithmetic (pure) ------------------------------------------------------------------------


def kwh_by_half_hour(readings: Iterable[Mapping[str, Any]]) -> dict[datetime, Decimal]:
    """The API's readings (value × 10^power_of_ten Wh per half-hour) as kWh by their UTC start."""
    out: dict[datetime, Decimal] = {}
    for r in readings:
        if r["duration"] != HALF_HOUR.total_seconds() or r["uom"] != WH:
            raise BadReading(
                f"reading at {r['start']} is {r['duration']} s in unit {r['uom']}, not a half-hour of Wh"
            )
        start = datetime.fromisoformat(str(r["start"]).replace("Z", "+00:00")).astimezone(UTC)
        out[start] = Decimal(int(r["value"])).scaleb(int(r["power_of_ten"]) - 3)
    return out


def half_hours(start: datetime, end: datetime) -> list[datetime]:
    """The settlement half-hours (UTC starts) that overlap ``[start, end)``."""
    t = start.astimezone(UTC)
    t -= timedelta(minutes=t.minute % 30, seconds=t.second, microseconds=t.microsecond)
    out = []
    while t < end:
        out.append(t)
        t += HALF_HOUR
    return out


def weekend(day: date) -> bool:
    return day.weekday() >= 5


def same_half_hour(t: datetime, day: date) -> datetime | None:
    """The half-hour of local ``day`` at the same local clock time as ``t`` (None: that time does
    not exist on ``day``, the hour skipped when the clocks go forward)."""
    local = t.astimezone(LONDON)
    wall = datetime.combine(day, time(local.hour, local.minute), tzinfo=LONDON)
    back = wall.astimezone(UTC)
    if back.astimezone(LONDON).replace(tzinfo=None) != wall.replace(tzinfo=None):
        return None
    return back


def like_days(
    day: date,
    slots: Sequence[datetime],
    data: Mapping[datetime, Decimal],
    excluded: Iterable[date] = (),
    n: int = BASELINE_DAYS,
) -> list[date]:
    """Up to ``n`` days before ``day`` of the same kind (weekday / weekend), most recent first,
    with a reading for each of ``slots``' local times and not in ``excluded`` (event days)."""
    skip = set(excluded)
    out: list[date] = []
    d = day - timedelta(days=1)
    while len(out) < n and day - d <= LOOK_BACK:
        if weekend(d) == weekend(day) and d not in skip:
            same = [same_half_hour(t, d) for t in slots]
            if all(s is not None and s in data for s in same):
                out.append(d)
        d -= timedelta(days=1)
    return out


def profile(
    slots: Sequence[datetime], days: Sequence[date], data: Mapping[datetime, Decimal]
) -> dict[datetime, Decimal]:
    """The mean of each slot's local half-hour over ``days`` (kWh, exact to the Wh's share)."""
    if not days:
        raise NotReady("no like day with readings for these half-hours")
    out = {}
    for t in slots:
        values = [data[s] for d in days if (s := same_half_hour(t, d)) is not None]
        out[t] = sum(values, Decimal(0)) / len(values)
    return out


@dataclass(frozen=True)
class Forecast:
    premises_id: str
    slots: tuple[datetime, ...]
    days: tuple[date, ...]
    load: dict[datetime, Decimal]  # per half-hour of the event
    base_kwh: Decimal  # the home's always-on load per half-hour

    @property
    def load_kwh(self) -> Decimal:
        return sum(self.load.values(), Decimal(0))

    @property
    def flexible_kwh(self) -> Decimal:
        return sum((max(Decimal(0), v - self.base_kwh) for v in self.load.values()), Decimal(0))


def forecast(
    premises_id: str,
    start: datetime,
    end: datetime,
    data: Mapping[datetime, Decimal],
    excluded: Iterable[date] = (),
) -> Forecast:
    """The home's load in ``[start, end)`` forecast from its like days (see the module docstring)."""
    slots = half_hours(start, end)
    day = start.astimezone(LONDON).date()
    all_day = half_hours(
        datetime.combine(day, time(0), LONDON), datetime.combine(day + timedelta(days=1), time(0), LONDON)
    )
    days = like_days(day, all_day, data, excluded)
    whole = profile(all_day, days, data)
    return Forecast(premises_id, tuple(slots), tuple(days), profile(slots, days, data), min(whole.values()))


@dataclass(frozen=True)
class Measurement:
    slots: tuple[datetime, ...]
    days: tuple[date, ...]  # the baseline's like days
    baseline: dict[datetime, Decimal]
    actual: dict[datetime, Decimal]

    @property
    def provisional(self) -> bool:
        """Fewer than the 10 like days the baseline is defined on: an indication, not a settlement."""
        return len(self.days) < BASELINE_DAYS

    @property
    def reduction_kwh(self) -> Decimal:
        return sum((self.baseline[t] - self.actual[t] for t in self.slots), Decimal(0))


def measure(
    start: datetime,
    end: datetime,
    data: Mapping[datetime, Decimal],
    excluded: Iterable[date] = (),
    min_days: int = BASELINE_DAYS,
) -> Measurement:
    """Baseline (previous 10 like days, event days excluded) against the metered half-hours.
    ``min_days`` below 10: a *provisional* measurement against as few as that many like days
    (:attr:`Measurement.provisional` says so; the statement is labelled and not settled)."""
    slots = half_hours(start, end)
    missing = [t for t in slots if t not in data]
    if missing:
        raise NotReady(
            f"no reading yet for {len(missing)} of the event's half-hours (first {missing[0].isoformat()})"
        )
    day = start.astimezone(LONDON).date()
    days = like_days(day, slots, data, excluded)
    if len(days) < max(1, min(min_days, BASELINE_DAYS)):
        raise NotReady(
            f"only {len(days)} like days with readings before {day}; the baseline needs {BASELINE_DAYS}"
        )
    return Measurement(tuple(slots), tuple(days), profile(slots, days, data), {t: data[t] for t in slots})


def reward(reduction_kwh: Decimal, rate: Decimal) -> Decimal:
    """Pounds for a reduction: none for an increase; to the penny, half up."""
    return (max(Decimal(0), reduction_kwh) * rate).quantize(PENNY, rounding=ROUND_HALF_UP)


def _k(v: Decimal) -> str:
    return str(v.quantize(KWH, rounding=ROUND_HALF_UP))


# -- the service ------------------------------------------------------------------------------------


class Aggregator:
    def __init__(self, ledger: Path | str, api: DataServicesClient) -> None:
        self.db = sqlite3.connect(str(ledger), isolation_level=None)
        self.db.executescript(SCHEMA)
        self.api = api

    def close(self) -> None:
        self.db.close()

    def _readings(
        self, premises_id: str, meter_id: str, start: datetime, end: datetime
    ) -> dict[datetime, Decimal]:
        return kwh_by_half_hour(self.api.readings(premises_id, meter_id, start, end, "half-hourly"))

    def _event_days(self, premises_id: str) -> list[date]:
        rows = self.db.execute("SELECT start FROM events WHERE premises_id = ?", (premises_id,)).fetchall()
        return [datetime.fromisoformat(r[0]).astimezone(LONDON).date() for r in rows]

    def homes(self) -> list[tuple[str, str]]:
        return [
            (p, m) for p, m in self.db.execute("SELECT premises_id, meter_id FROM homes ORDER BY premises_id")
        ]

    def enrol(self, premises_id: str, meter_id: str, until: date) -> dict[str, Any]:
        """Read the home's last 28 days (its consent checked by the GDSC) and enrol it."""
        start = datetime.combine(until - timedelta(days=ENROL_DAYS), time(0), LONDON)
        try:
            data = self._readings(premises_id, meter_id, start, datetime.combine(until, time(0), LONDON))
        except ApiError as err:
            return {"premises_id": premises_id, "enrolled": False, "refused": f"{err.status}: {err.detail}"}
        self.db.execute(
            "INSERT OR REPLACE INTO homes VALUES (?, ?, ?)",
            (premises_id, meter_id, datetime.now(UTC).isoformat()),
        )
        return {"premises_id": premises_id, "enrolled": True, "half_hours_read": len(data)}

    def dispatch(
        self, event: Mapping[str, Any], min_flexible: Decimal, without_forecast: bool = False
    ) -> list[dict[str, Any]]:
        """Forecast each enrolled home and send the event to those with enough flexible load.
        ``without_forecast``: a home with no like day to forecast from (newly metered) is sent
        the event too, its entry saying there was no forecast (otherwise it is skipped)."""
        start = datetime.fromisoformat(str(event["start"]))
        end = start + timedelta(minutes=int(event["duration_minutes"]))
        out = []
        for premises_id, meter_id in self.homes():
            entry: dict[str, Any] = {"premises_id": premises_id}
            fc: Forecast | None = None
            try:
                data = self._readings(premises_id, meter_id, start - LOOK_BACK, start)
                fc = forecast(premises_id, start, end, data, self._event_days(premises_id))
            except ApiError as err:
                out.append({**entry, "refused": f"{err.status}: {err.detail}"})
                continue
            except NotReady as err:
                if not without_forecast:
                    out.append({**entry, "skipped": str(err)})
                    continue
                entry["forecast"] = f"none: {err}"
            if fc is not None:
                entry.update(
                    forecast_kwh=_k(fc.load_kwh), flexible_kwh=_k(fc.flexible_kwh), forecast_days=len(fc.days)
                )
                if fc.flexible_kwh < min_flexible:
                    why = f"flexible load {_k(fc.flexible_kwh)} kWh is below {min_flexible}"
                    out.append({**entry, "skipped": why})
                    continue
            path = f"/v1/premises/{urllib.parse.quote(premises_id)}/demand-response/events"
            try:
                _, sent = self.api.request("POST", path, body={"meter_id": meter_id, **event})
            except ApiError as err:
                out.append({**entry, "refused": f"{err.status}: {err.detail}"})
                continue
            self.db.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sent["event_id"],
                    premises_id,
                    meter_id,
                    sent["start"],
                    sent["end"],
                    _k(fc.load_kwh) if fc is not None else "",
                    _k(fc.flexible_kwh) if fc is not None else "",
                    datetime.now(UTC).isoformat(),
                ),
            )
            out.append({**entry, "event_id": sent["event_id"], "state": sent["state"]})
        return out

    def status(self, premises_id: str, event_id: str) -> dict[str, Any]:
        path = f"/v1/premises/{urllib.parse.quote(premises_id)}/demand-response/events/{event_id}"
        found: dict[str, Any] = self.api.get(path)
        return found

    def cancel(self, event_id: str) -> dict[str, Any]:
        """Ask the GDSC to cancel an event this aggregator sent (the hub drops or ends it)."""
        row = self.db.execute("SELECT premises_id FROM events WHERE event_id = ?", (event_id,)).fetchone()
        if row is None:
            raise ValueError(f"no event {event_id} in the ledger")
        path = f"/v1/premises/{urllib.parse.quote(row[0])}/demand-response/events/{event_id}/cancellation"
        _, got = self.api.request("POST", path)
        return {"event_id": event_id, "premises_id": row[0], "cancellation": "queued", "state": got["state"]}

    def events(self) -> list[tuple[str, str, str, str, str]]:
        return self.db.execute(
            "SELECT event_id, premises_id, meter_id, start, end FROM events ORDER BY start, premises_id"
        ).fetchall()

    def settle(self, rate: Decimal, min_baseline_days: int = BASELINE_DAYS) -> dict[str, Any]:
        """A statement per event whose readings are in (made once, then kept); the rest pending.
        ``min_baseline_days`` below 10: an event whose baseline has fewer than 10 like days but at
        least that many gets a *provisional* statement against them (listed apart, its reward
        indicative, nothing settled or kept: it is settled once the 10 days are in)."""
        statements, pending, provisional = [], [], []
        for event_id, premises_id, meter_id, s, e in self.events():
            kept = self.db.execute(
                "SELECT statement FROM settlements WHERE event_id = ?", (event_id,)
            ).fetchone()
            if kept is not None:
                statements.append(json.loads(kept[0]))
                continue
            start, end = datetime.fromisoformat(s), datetime.fromisoformat(e)
            others = [d for d in self._event_days(premises_id) if d != start.astimezone(LONDON).date()]
            try:
                data = self._readings(premises_id, meter_id, start - LOOK_BACK, end)
                m = measure(start, end, data, others, min_baseline_days)
            except (ApiError, NotReady) as err:
                pending.append({"event_id": event_id, "premises_id": premises_id, "why": str(err)})
                continue
            try:
                hub = self.status(premises_id, event_id)
                responses = [
                    {"status": r["status"], "status_name": r["status_name"], "at": r["at"]}
                    for r in hub["responses"]
                ]
            except ApiError as err:
                responses = [{"unavailable": f"{err.status}: {err.detail}"}]
            statement: dict[str, Any] = {
                "event_id": event_id,
                "premises_id": premises_id,
                "meter_id": meter_id,
                "start": start.isoformat(),
                "end": end.isoformat(),
                "baseline_days": [d.isoformat() for d in m.days],
                "half_hours": [
                    {
                        "start": t.isoformat(),
                        "baseline_kwh": _k(m.baseline[t]),
                        "actual_kwh": _k(m.actual[t]),
                        "reduction_kwh": _k(m.baseline[t] - m.actual[t]),
                    }
                    for t in m.slots
                ],
                "baseline_kwh": _k(sum(m.baseline.values(), Decimal(0))),
                "actual_kwh": _k(sum(m.actual.values(), Decimal(0))),
                "reduction_kwh": _k(m.reduction_kwh),
                "rate_gbp_per_kwh": str(rate),
                "reward_gbp": str(reward(m.reduction_kwh, rate)),
                "hub_responses": responses,
            }
            if m.provisional:
                statement["reward_gbp"] = None
                statement["indicative_reward_gbp"] = str(reward(m.reduction_kwh, rate))
                statement["provisional"] = (
                    f"measured against {len(m.days)} like days; the baseline is defined on "
                    f"{BASELINE_DAYS}: an indication, not settled"
                )
                provisional.append(statement)
                continue
            self.db.execute(
                "INSERT INTO settlements VALUES (?, ?, ?)",
                (event_id, json.dumps(statement), datetime.now(UTC).isoformat()),
            )
            statements.append(statement)
        total = sum((Decimal(s["reward_gbp"]) for s in statements), Decimal(0))
        out: dict[str, Any] = {
            "statements": statements,
            "pending": pending,
            "total_reward_gbp": str(total.quantize(PENNY)),
        }
        if min_baseline_days < BASELINE_DAYS:
            out["provisional"] = provisional
        return out


# -- the program ------------------------------------------------------------------------------------


def _home(text: str) -> tuple[str, str]:
    premises, sep, meter = text.partition(":")
    if not (premises and sep and meter):
        raise argparse.ArgumentTypeError(f"a home is PREMISES:METER, not {text!r}")
    return premises, meter


def _event(args: argparse.Namespace) -> dict[str, Any]:
    start = datetime.fromisoformat(args.start)
    if start.tzinfo is None:
        raise ValueError(f"--start {args.start!r} needs its UTC offset")
    event: dict[str, Any] = {
        "start": start.isoformat(),
        "duration_minutes": args.minutes,
        "device_categories": args.category,
        "randomize_start_seconds": args.randomize_start,
    }
    if args.duty_cycle is not None:
        event["duty_cycle"] = args.duty_cycle
    if args.load_reduction is not None:
        event["load_reduction_percent"] = args.load_reduction
    return event


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dr-aggregator", description=__doc__.split("\n\n")[0])
    ap.add_argument("--api", required=True, help="the GDSC data services API's base URL")
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--client-secret-file", type=Path, help="else $SERVICE_CLIENT_SECRET")
    ap.add_argument("--ledger", type=Path, required=True, help="the aggregator's SQLite ledger")
    sub = ap.add_subparsers(dest="command", required=True)
    enrol = sub.add_parser("enrol", help="enrol consenting homes")
    enrol.add_argument("--home", type=_home, action="append", required=True, help="PREMISES:METER")
    enrol.add_argument(
        "--until", type=date.fromisoformat, help="local day after the days read (default today)"
    )
    send = sub.add_parser("dispatch", help="forecast the enrolled homes and send them an event")
    send.add_argument("--start", required=True, help="RFC 3339, with its offset")
    send.add_argument("--minutes", type=int, required=True)
    send.add_argument(
        "--category", action="append", required=True, help="2030.5 device category (repeatable)"
    )
    send.add_argument("--duty-cycle", type=int, help="%% of time on")
    send.add_argument("--load-reduction", type=int, help="%% of normal load shed")
    send.add_argument("--randomize-start", type=int, default=0, help="seconds")
    send.add_argument("--min-flexible-kwh", type=Decimal, default=Decimal(0))
    send.add_argument(
        "--without-forecast",
        action="store_true",
        help="also send to enrolled homes with no like day to forecast from (said in their entry)",
    )
    sub.add_parser("status", help="each event's delivery and the hub's responses")
    cancel = sub.add_parser("cancel", help="cancel events sent (the hub drops or ends them)")
    cancel.add_argument("--event", action="append", required=True, help="an event id (repeatable)")
    settle = sub.add_parser("settle", help="measure the reductions and print the settlement statement")
    settle.add_argument("--rate", type=Decimal, required=True, help="pounds per kWh reduced")
    settle.add_argument(
        "--min-baseline-days",
        type=int,
        default=BASELINE_DAYS,
        help=f"below {BASELINE_DAYS}: provisional statements (not settled) for events with at least "
        "this many like days",
    )
    args = ap.parse_args(argv)
    secret_file = args.client_secret_file
    secret = secret_file.read_text().strip() if secret_file else os.environ.get("SERVICE_CLIENT_SECRET", "")
    if not secret:
        ap.error("give --client-secret-file or set SERVICE_CLIENT_SECRET")
    agg = Aggregator(args.ledger, DataServicesClient(args.api, Credentials(args.client_id, secret)))
    refused = False
    try:
        if args.command == "enrol":
            until = args.until or datetime.now(LONDON).date()
            out: Any = [agg.enrol(p, m, until) for p, m in args.home]
            refused = any(not h["enrolled"] for h in out)
        elif args.command == "dispatch":
            out = agg.dispatch(_event(args), args.min_flexible_kwh, args.without_forecast)
            refused = any("refused" in h for h in out)
        elif args.command == "status":
            out = []
            for event_id, premises_id, *_ in agg.events():
                try:
                    out.append(agg.status(premises_id, event_id))
                except ApiError as err:
                    refused = True
                    out.append({"event_id": event_id, "refused": f"{err.status}: {err.detail}"})
        elif args.command == "cancel":
            out = []
            for event_id in args.event:
                try:
                    out.append(agg.cancel(event_id))
                except ApiError as err:
                    refused = True
                    out.append({"event_id": event_id, "refused": f"{err.status}: {err.detail}"})
        else:
            if args.rate < 0:
                ap.error("--rate must not be negative")
            if not 1 <= args.min_baseline_days <= BASELINE_DAYS:
                ap.error(f"--min-baseline-days must be 1 to {BASELINE_DAYS}")
            out = agg.settle(args.rate, args.min_baseline_days)
    except Unreachable as err:
        print(f"dr-aggregator: the GDSC is unreachable: {err}", file=sys.stderr)
        return 3
    except (BadReading, ValueError) as err:
        print(f"dr-aggregator: {err}", file=sys.stderr)
        return 1
    finally:
        agg.close()
    json.dump(out, sys.stdout, indent=2)
    print()
    return 2 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
