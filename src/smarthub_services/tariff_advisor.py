"""Tariff advisor: a third-party service that finds a home the cheapest tariff for how it uses energy.

With the occupant's consent to its half-hourly readings (and the GDSC's approval of the service
for them), it reads the last 12 months of one electricity meter through the data services API,
prices them under every electricity tariff the GDSC distributes (``GET /v1/tariffs``, the latest
version of each, or a ``--catalogue`` file of tariff documents; :mod:`.tariff_pricing`: the tariff
JSON priced by the same rounding rules as the bills) and recommends the cheapest, with the saving
in pounds against the tariff the home is on now.

    python -m smarthub_services.tariff_advisor --api URL --client-id ID --client-secret-file F \\
        --premises P1 --meter E1 [--catalogue tariffs.json] --current FLAT-1 [--until 2026-08-01] [--notify]

Prints the advice as JSON. ``--notify`` asks the GDSC to show the advice on the home's IHD
(``POST …/commands/ihd-message``): the GDSC sends it only for a service approved for
``ihd-messages`` to which the occupant consented for that kind too, and the display shows it under
the service's name as a third party's message the consumer opens and acknowledges. The outcome is
in the JSON: ``notified`` true with the job the GDSC queued for the display (``notification``:
"queued for the display as job N"), or false with the GDSC's reason (no consent to
``ihd-messages``, the day's limit reached, …); nothing is pretended. Exit status 0 with advice, 2
when the API refused the readings (no approval, no consent: the reason is printed), 3 when the
GDSC is unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from smarthub_services.client import ApiError, Credentials, DataServicesClient, Unreachable
from smarthub_services.tariff_pricing import (
    HALF_HOUR,
    LONDON,
    Cost,
    HalfHour,
    Pricing,
    Unpriceable,
    catalogue,
    day_start,
    local_day,
)

WH = 72  # IEEE 2030.5 UomType: watt-hours


class BadReading(ValueError):
    """A reading the advisor cannot price (not half-hourly, not in Wh)."""


@dataclass(frozen=True)
class Advice:
    premises_id: str
    meter_id: str
    first: date
    end: date  # exclusive
    half_hours: int
    expected: int
    costs: list[Cost]  # cheapest first
    unpriceable: dict[str, str] = field(default_factory=dict)
    current: str | None = None

    @property
    def cheapest(self) -> Cost:
        return self.costs[0]

    @property
    def current_cost(self) -> Cost | None:
        return next((c for c in self.costs if c.tariff_id == self.current), None)

    @property
    def saving(self) -> Decimal | None:
        """Pounds a year the cheapest saves against the current tariff."""
        now = self.current_cost
        return None if now is None else now.total - self.cheapest.total

    def message(self) -> str:
        """The advice as the consumer reads it (at most 500 characters, an IHD message's limit)."""
        best = self.cheapest
        text = f"Tariff advice: over the last 12 months {best.name} would have cost £{best.total:,.2f}"
        now = self.current_cost
        if now is not None and self.saving is not None and now.tariff_id != best.tariff_id:
            text += f", saving £{self.saving:,.2f} on your current tariff ({now.name}, £{now.total:,.2f})"
        elif now is not None:
            text += ": your current tariff is already the cheapest of those compared"
        return text + "."

    def to_json(self) -> dict[str, Any]:
        return {
            "premises_id": self.premises_id,
            "meter_id": self.meter_id,
            "period": [self.first.isoformat(), self.end.isoformat()],
            "half_hours": self.half_hours,
            "expected_half_hours": self.expected,
            "recommended": self.cheapest.tariff_id,
            "current": self.current,
            "saving": None if self.saving is None else f"{self.saving:.2f}",
            "costs": [
                {
                    "tariff_id": c.tariff_id,
                    "name": c.name,
                    "total": f"{c.total:.2f}",
                    "energy": {r: {"kwh": f"{k}", "pence": p} for r, (k, p) in c.energy.items()},
                    "standing_pence": c.standing_p,
                    "vat_pence": c.vat_p,
                }
                for c in self.costs
            ],
            "unpriceable": self.unpriceable,
            "message": self.message(),
        }


def half_hours(readings: Iterable[dict[str, Any]]) -> list[HalfHour]:
    """The API's readings (value × 10^power_of_ten Wh per half-hour) as kWh."""
    out = []
    for r in readings:
        if r["duration"] != HALF_HOUR.total_seconds() or r["uom"] != WH:
            raise BadReading(
                f"reading at {r['start']} is {r['duration']} s in unit {r['uom']}: "
                "the advisor prices half-hours of watt-hours"
            )
        start = datetime.fromisoformat(str(r["start"]).replace("Z", "+00:00"))
        out.append(HalfHour(start, Decimal(int(r["value"])).scaleb(int(r["power_of_ten"]) - 3)))
    return out


def last_year(until: date) -> tuple[date, date]:
    """The 12 months of local days that end the day before ``until``."""
    try:
        first = until.replace(year=until.year - 1)
    except ValueError:  # 29 February
        first = until.replace(year=until.year - 1, day=28)
    return first, until


def compare(
    tariffs: Sequence[Pricing], consumption: Sequence[HalfHour], first: date, end: date
) -> tuple[list[Cost], dict[str, str]]:
    costs, unpriceable = [], {}
    for t in tariffs:
        try:
            costs.append(t.price(consumption, first, end))
        except Unpriceable as why:
            unpriceable[t.tariff_id] = str(why)
    costs.sort(key=lambda c: (c.total_p, c.tariff_id))
    return costs, unpriceable


def advise(
    client: DataServicesClient,
    premises_id: str,
    meter_id: str,
    tariffs: Sequence[Pricing],
    until: date,
    current: str | None = None,
) -> Advice:
    """Read the year's half-hours through the API and compare the tariffs over them."""
    first, end = last_year(until)
    start, stop = day_start(first), day_start(end)
    consumption = half_hours(client.readings(premises_id, meter_id, start, stop, "half-hourly"))
    consumption = [h for h in consumption if first <= local_day(h.start) < end]
    costs, unpriceable = compare(tariffs, consumption, first, end)
    if not costs:
        raise Unpriceable(
            "no tariff of the catalogue can price the period: " + "; ".join(unpriceable.values())
        )
    expected = int((stop - start) // HALF_HOUR)
    return Advice(premises_id, meter_id, first, end, len(consumption), expected, costs, unpriceable, current)


def notify(client: DataServicesClient, advice: Advice) -> tuple[bool, str]:
    """Ask the GDSC to show the advice on the home's IHD: (queued, the job or the GDSC's reason)."""
    path = f"/v1/premises/{urllib.parse.quote(advice.premises_id)}/commands/ihd-message"
    try:
        _, job = client.request("POST", path, body={"meter_id": advice.meter_id, "text": advice.message()})
    except ApiError as err:
        return False, f"the GDSC refused ({err.status}): {err.detail}"
    return True, f"queued for the display as job {job['job_id']}"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tariff-advisor", description=__doc__.split("\n\n")[0])
    ap.add_argument("--api", required=True, help="the GDSC data services API's base URL")
    ap.add_argument("--client-id", required=True)
    ap.add_argument(
        "--client-secret-file", type=Path, help="file holding the client secret (else $SERVICE_CLIENT_SECRET)"
    )
    ap.add_argument("--premises", required=True)
    ap.add_argument("--meter", required=True, help="the electricity meter")
    ap.add_argument(
        "--catalogue",
        type=Path,
        help="JSON array of the tariffs to compare (default: the GDSC's, GET /v1/tariffs)",
    )
    ap.add_argument("--current", help="tariff_id of the tariff the home is on (the saving is against it)")
    ap.add_argument(
        "--until", type=date.fromisoformat, help="local day after the year compared (default today)"
    )
    ap.add_argument("--notify", action="store_true", help="ask the GDSC to show the advice on the IHD")
    args = ap.parse_args(argv)
    if args.client_secret_file is not None:
        secret = args.client_secret_file.read_text().strip()
    else:
        secret = os.environ.get("SERVICE_CLIENT_SECRET", "")
    if not secret:
        ap.error("give --client-secret-file or set SERVICE_CLIENT_SECRET")
    client = DataServicesClient(args.api, Credentials(args.client_id, secret))
    until = args.until or datetime.now(LONDON).date()
    try:
        if args.catalogue is not None:
            tariffs = catalogue(args.catalogue.read_bytes())
        else:
            tariffs = catalogue(json.dumps(client.tariffs("electricity")))
        if args.current is not None and args.current not in {t.tariff_id for t in tariffs}:
            ap.error(f"--current {args.current!r} is not a tariff of the catalogue")
        advice = advise(client, args.premises, args.meter, tariffs, until, args.current)
        out = advice.to_json()
        if args.notify:
            out["notified"], out["notification"] = notify(client, advice)
    except ApiError as err:
        print(f"tariff-advisor: the GDSC refused: {err}", file=sys.stderr)
        return 2
    except Unreachable as err:
        print(f"tariff-advisor: the GDSC is unreachable: {err}", file=sys.stderr)
        return 3
    except (Unpriceable, ValueError) as err:
        print(f"tariff-advisor: {err}", file=sys.stderr)
        return 1
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
