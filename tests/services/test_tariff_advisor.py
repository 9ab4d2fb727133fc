"""Issue 25 item 2, the tariff advisor end to end: a GDSC serving its API under uvicorn on
loopback, a year of half-hourly readings (1 August 2025 to 1 August 2026 local), the third party
onboarded and consented to through the API, and the advisor run as its own program
(``python -m smarthub_services.tariff_advisor``) against it; SQLite and PostgreSQL.

The expected bills are worked out by hand below from the data's shape, not by the advisor's code:
every local day has 14 Economy 7 night half-hours (00:30-07:30) at 1.2 kWh and the rest at 0.3
kWh. The year has 365 days and 365 × 48 = 17 520 half-hours (the spring day's missing hour and
the autumn day's repeated one both fall in the night and cancel), so night = 365 × 14 = 5110
half-hours = 6132 kWh, day = 12 410 half-hours = 3723 kWh, 9855 kWh in all. 1 August 2025 is a
Friday, so the year has 104 weekend days and 261 weekdays (both clock changes are on Sundays).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from gdsc.api_world import World

from services.world import END, FIRST, build, consent, is_night, midnight, onboard
from smarthub_services.client import ApiError, Credentials, DataServicesClient
from smarthub_services.tariff_advisor import advise
from smarthub_services.tariff_pricing import catalogue

SRC = Path(__file__).resolve().parents[2] / "src"
ALL_DAY = [{"start": "00:00", "end": "24:00", "rate": "off-peak"}]


def tariffs() -> list[dict[str, Any]]:
    hours = int((midnight(END) - midnight(FIRST)) / timedelta(minutes=30))
    slots = [midnight(FIRST) + timedelta(minutes=30 * i) for i in range(hours)]
    dynamic = ["8.00" if is_night(t) else "28.00" for t in slots]
    return [
        {
            "tariff_id": "FLAT-1",
            "version": 3,
            "effective_from": "2026-04-01",
            "name": "Standard variable",
            "standing_charge_p_per_day": "45.00",
            "pricing": {"type": "flat", "unit_rate_p_per_kwh": "24.50"},
        },
        {
            "tariff_id": "E7",
            "version": 1,
            "effective_from": "2026-04-01",
            "name": "Economy 7",
            "standing_charge_p_per_day": "50.00",
            "pricing": {
                "type": "time_of_use",
                "rates": {"day": "30.00", "night": "13.00"},
                "day_types": {
                    "all": [
                        {"start": "00:30", "end": "07:30", "rate": "night"},
                        {"start": "07:30", "end": "00:30", "rate": "day"},
                    ]
                },
                "week": dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), "all"),
            },
        },
        {
            "tariff_id": "PEAK",
            "version": 1,
            "effective_from": "2026-04-01",
            "name": "Peak saver",
            "standing_charge_p_per_day": "48.00",
            "pricing": {
                "type": "time_of_use",
                "rates": {"off-peak": "21.00", "peak": "38.00"},
                "day_types": {
                    "weekday": [
                        {"start": "19:00", "end": "16:00", "rate": "off-peak"},
                        {"start": "16:00", "end": "19:00", "rate": "peak"},
                    ],
                    "weekend": ALL_DAY,
                },
                "week": {
                    **dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), "weekday"),
                    **dict.fromkeys(("sat", "sun"), "weekend"),
                },
            },
        },
        {
            "tariff_id": "TIER",
            "version": 1,
            "effective_from": "2026-04-01",
            "name": "Daily blocks",
            "standing_charge_p_per_day": "40.00",
            "pricing": {
                "type": "tiered",
                "block": "day",
                "tiers": [
                    {"name": "first 10 kWh", "up_to_kwh": "10", "unit_rate_p_per_kwh": "30.00"},
                    {"name": "rest", "up_to_kwh": None, "unit_rate_p_per_kwh": "15.00"},
                ],
            },
        },
        {
            "tariff_id": "DYN",
            "version": 1,
            "effective_from": "2025-08-01",
            "name": "Agile",
            "standing_charge_p_per_day": "60.00",
            "pricing": {
                "type": "dynamic",
                "unit_rates_p_per_kwh": {"start": midnight(FIRST).isoformat(), "values": dynamic},
            },
        },
        {  # its series starts half a year late: it cannot price the year
            "tariff_id": "DYN-NEW",
            "version": 1,
            "effective_from": "2026-02-01",
            "name": "New dynamic",
            "standing_charge_p_per_day": "10.00",
            "pricing": {
                "type": "dynamic",
                "unit_rates_p_per_kwh": {"start": midnight(FIRST).isoformat(), "values": dynamic[8760:]},
            },
        },
    ]


# By hand (pence; each line rounded half up, VAT 5 % on the rounded net, 365 days' standing):
HAND = {
    # 9855 kWh × 24.50 = 241 447.5 → 241 448; 365 × 45 = 16 425; VAT 257 873 × 5 % = 12 893.65 → 12 894
    "FLAT-1": 241_448 + 16_425 + 12_894,  # 270 767
    # day 3723 × 30 = 111 690; night 6132 × 13 = 79 716; 18 250; VAT 209 656 × 5 % = 10 482.8 → 10 483
    "E7": 111_690 + 79_716 + 18_250 + 10_483,  # 220 139
    # peak: 261 weekdays × 6 half-hours × 0.3 = 469.8 kWh × 38 = 17 852.4 → 17 852; off-peak
    # 9385.2 × 21 = 197 089.2 → 197 089; 17 520; VAT 232 461 × 5 % = 11 623.05 → 11 623
    "PEAK": 17_852 + 197_089 + 17_520 + 11_623,  # 244 084
    # every day uses more than 10 kWh: 3650 kWh × 30 = 109 500; 6205 × 15 = 93 075; 14 600;
    # VAT 217 175 × 5 % = 10 858.75 → 10 859
    "TIER": 109_500 + 93_075 + 14_600 + 10_859,  # 228 034
    # night 6132 × 8 = 49 056; day 3723 × 28 = 104 244; 21 900; VAT 175 200 × 5 % = 8760
    "DYN": 49_056 + 104_244 + 21_900 + 8_760,  # 183 960
}


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    w = build(db_url, tmp_path / "state")
    yield w
    w.store.close()


@pytest.fixture
def base(world: World) -> Iterator[str]:
    with world.served() as url:
        yield url


def distribute(world: World, base: str) -> None:
    """S1, the supplier, sends each tariff of the comparison to P1's hub through the API: so the
    GDSC distributes them, and its catalogue (GET /v1/tariffs) lists them."""
    for t in tariffs():
        r = httpx.post(
            f"{base}/v1/premises/P1/commands/tariff-update",
            json={"meter_id": "E1", "tariff": t},
            headers=world.auth("S1"),
            timeout=60,
        )
        assert r.status_code == 202, r.text


def run_advisor(
    base: str, creds: dict[str, Any], tmp: Path, *extra: str, from_api: bool = False
) -> subprocess.CompletedProcess[str]:
    """The advisor as its own process; the catalogue from a file, or (``from_api``) from the GDSC."""
    (tmp / "catalogue.json").write_text(json.dumps(tariffs()))
    (tmp / "secret").write_text(creds["client_secret"])
    source = [] if from_api else ["--catalogue", str(tmp / "catalogue.json")]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "smarthub_services.tariff_advisor",
            "--api",
            base,
            "--client-id",
            creds["client_id"],
            "--client-secret-file",
            str(tmp / "secret"),
            "--premises",
            "P1",
            "--meter",
            "E1",
            *source,
            "--current",
            "FLAT-1",
            "--until",
            END.isoformat(),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_advisor_recommends_the_hand_computed_cheapest(world: World, base: str, tmp_path: Path) -> None:
    kinds = ("readings", "ihd-messages")  # its advice on the home's display too
    creds = onboard(world, base, kinds)
    assert set(creds["scope"].split()) == {
        "readings:read",
        "ihd-messages",
        "commands:read",
        "services",
        "tariffs:read",
    }
    consent(world, base, kinds=kinds)
    distribute(world, base)  # the catalogue the advisor reads is the GDSC's (GET /v1/tariffs)
    done = run_advisor(base, creds, tmp_path, "--notify", from_api=True)
    assert done.returncode == 0, done.stderr
    advice = json.loads(done.stdout)
    assert advice["half_hours"] == advice["expected_half_hours"] == 17_520
    assert {c["tariff_id"]: int(c["total"].replace(".", "")) for c in advice["costs"]} == HAND
    assert [c["tariff_id"] for c in advice["costs"]] == ["DYN", "E7", "TIER", "PEAK", "FLAT-1"]
    assert advice["recommended"] == "DYN"
    assert advice["saving"] == "868.07"  # £2707.67 - £1839.60
    assert "DYN-NEW" in advice["unpriceable"] and "publishes no price" in advice["unpriceable"]["DYN-NEW"]
    assert advice["message"] == (
        "Tariff advice: over the last 12 months Agile would have cost £1,839.60, saving £868.07 on "
        "your current tariff (Standard variable, £2,707.67)."
    )
    # Approved for ihd-messages and consented to: the GDSC queued the advice for the display, as
    # the advisor's (its approved name, a third party), never the supplier's.
    assert advice["notified"] is True, advice["notification"]
    job = int(advice["notification"].removeprefix("queued for the display as job "))
    (sent,) = [e for e in world.guard.audit.entries() if e.action == "command:ihd-message"]
    assert sent.allow and sent.actor == "TP"
    shown = sent.detail["detail"]
    assert (shown["origin"], shown["sender_name"], shown["text"]) == (
        "third-party",
        "Cheaper Tariffs Ltd",
        advice["message"],
    )
    r = httpx.get(f"{base}/v1/jobs/{job}", headers=world.auth("TP"))
    assert r.status_code == 200 and r.json()["command_type"] == "ihd.message", r.text


def test_without_consent_or_approval_the_advisor_is_refused(world: World, base: str, tmp_path: Path) -> None:
    creds = onboard(world, base)
    done = run_advisor(base, creds, tmp_path)  # approved, but the occupant has not consented
    assert done.returncode == 2, done.stdout
    assert "403" in done.stderr and "no live consent for TP at P1" in done.stderr

    # Consented daily only: half-hours are refused with the reason.
    consent_id = consent(world, base, granularity="daily")
    client = DataServicesClient(base, Credentials(creds["client_id"], creds["client_secret"]))
    with pytest.raises(ApiError) as refused:
        advise(client, "P1", "E1", catalogue(json.dumps(tariffs())), END, "FLAT-1")
    assert refused.value.status == 403 and "allows only daily" in refused.value.detail
    r = httpx.delete(f"{base}/v1/premises/P1/consents/{consent_id}", headers=world.auth("C1"))
    assert r.status_code == 204


def test_withdrawal_suspension_and_revocation_refuse_the_next_request(
    world: World, base: str, tmp_path: Path
) -> None:
    creds = onboard(world, base)
    consent_id = consent(world, base)
    client = DataServicesClient(base, Credentials(creds["client_id"], creds["client_secret"]))
    short = catalogue(json.dumps(tariffs()[:1]))
    first = advise(client, "P1", "E1", short, END)
    assert first.cheapest.total_p == HAND["FLAT-1"]

    # The occupant withdraws consent: the same client, with the token it holds, is refused next time.
    r = httpx.delete(f"{base}/v1/premises/P1/consents/{consent_id}", headers=world.auth("C1"))
    assert r.status_code == 204
    with pytest.raises(ApiError) as refused:
        advise(client, "P1", "E1", short, END)
    assert refused.value.status == 403 and "no live consent" in refused.value.detail

    consent(world, base)
    assert advise(client, "P1", "E1", short, END).cheapest.total_p == HAND["FLAT-1"]
    decide = f"{base}/v1/services/TP/decisions"
    r = httpx.post(decide, json={"decision": "suspend", "reason": "complaint"}, headers=world.auth("OP"))
    assert r.status_code == 200, r.text
    with pytest.raises(ApiError) as refused:
        advise(client, "P1", "E1", short, END)
    assert (refused.value.status, refused.value.detail) == (403, "data service TP is suspended: complaint")

    r = httpx.post(decide, json={"decision": "revoke", "reason": "struck off"}, headers=world.auth("OP"))
    assert r.status_code == 200, r.text
    with pytest.raises(ApiError) as refused:  # its token is dead (401) and it gets no new one
        advise(client, "P1", "E1", short, END)
    assert refused.value.status in (400, 401), refused.value
