"""Issue 25 item 2, the demand-response aggregator end to end: a GDSC serving its API under uvicorn
on loopback (SQLite and PostgreSQL), the aggregator run as its own program
(``python -m smarthub_services.dr_aggregator``), and the home's hub: a real management interface
(operator signatures checked), DRLC client and appliance controller switching a simulated smart
plug on the EV charger. The GDSC's queued commands reach the hub as the collector delivers them
(claimed from the pull plan, the hub's verdict recorded).

The scripted response: the occupant's EV charger (7 kW, interruptible, the consumer's floor 0 %)
is due to charge 18:00-20:00 local on Wednesday 19 August 2026, as it has every weekday evening;
the aggregator asks for a 50 % duty cycle 18:00-19:00. The hub's controller switches the plug off
for the second quarter-hour of each half-hour: 2 × 15 minutes × 7 kW = 3.5 kWh removed. The
event day's half-hours are the home's base load plus what the plug metered, ingested as the
collector would store them; the aggregator's measured reduction must equal the baseline worked
out here by hand from the data's formula, and that must be the 3.5 kWh the script removed plus the
day's base-load difference from its baseline days.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from gdsc.api_world import World

from services.world import LONDON, build, consent, onboard
from smarthub.clock import ManualClock
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.readings.tables import StoredReading
from smarthub.hub.appliances import Appliance, ApplianceController
from smarthub.hub.automation import ApplianceRun
from smarthub.hub.drlc import DrlcClient, ResponseStatus, drlc_commands
from smarthub.hub.management import ManagementInterface
from smarthub.model.tariff import schedule_from_json
from smarthub.sim.smart_plug import SimulatedPlugLink, SmartPlugSimulator
from smarthub_services.client import ApiError, Credentials, DataServicesClient

SRC = Path(__file__).resolve().parents[2] / "src"
EVENT_DAY = date(2026, 8, 19)  # a Wednesday
FIRST = date(2026, 6, 20)  # history from here to the event day
EV_W = 7000
EV_PLUG = "00:0d:6f:00:0a:bc:de:02"
EV = 1 << 16  # 2030.5 DeviceCategoryType: electric vehicle
FLAT = json.dumps(
    [
        {
            "tariff_id": "FLAT-1",
            "version": 1,
            "effective_from": "2026-01-01",
            "name": "Standard variable",
            "standing_charge_p_per_day": "45.00",
            "pricing": {"type": "flat", "unit_rate_p_per_kwh": "24.50"},
        }
    ]
)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=LONDON).astimezone(UTC)


def base_wh(day: date) -> int:
    """The home's base load each half-hour of ``day``: it varies from day to day."""
    return 200 + 20 * (day.day % 5)


def charging(t: datetime) -> bool:
    """The EV charges 18:00-20:00 local on weekdays, 10:00-12:00 at weekends."""
    lt = t.astimezone(LONDON)
    hours = (10, 12) if lt.weekday() >= 5 else (18, 20)
    return hours[0] <= lt.hour < hours[1]


def history() -> list[StoredReading]:
    """Every half-hour from FIRST to the event day (not included): base + the EV's 3.5 kWh."""
    out, t, stop = [], local(FIRST, 0), local(EVENT_DAY, 0)
    while t < stop:
        wh = base_wh(t.astimezone(LONDON).date()) + (EV_W // 2 if charging(t) else 0)
        out.append(StoredReading("H1", "E1", "1-0:1.8.0", int(t.timestamp()), 1800, wh, 0, 72, 0))
        t += timedelta(minutes=30)
    return out


# The baseline by hand: the previous 10 weekdays before Wednesday 19 August.
BASELINE_DAYS = [date(2026, 8, d) for d in (18, 17, 14, 13, 12, 11, 10, 7, 6, 5)]
EVENT = (local(EVENT_DAY, 18), local(EVENT_DAY, 19))


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    w = build(db_url, tmp_path / "state", history(), now=local(EVENT_DAY, 12))
    yield w
    w.store.close()


@pytest.fixture
def base(world: World) -> Iterator[str]:
    with world.served() as url:
        yield url


class Home:
    """P1's hub: management interface, DRLC client, appliance controller, the EV's smart plug."""

    def __init__(self, w: World, tmp: Path) -> None:
        self.clock = ManualClock(w.clock.now())
        ca = x509.load_pem_x509_certificate((w.state / "ca" / "ca.pem").read_bytes())
        self.plug = SmartPlugSimulator(EV_PLUG, [EV_W] * 4, timedelta(minutes=30), self.clock.now())
        self.drlc = DrlcClient(tmp / "drlc.sqlite", "A" * 40)
        self.controller = ApplianceController(
            tmp / "appliances.sqlite",
            self.clock,
            SimulatedPlugLink(self.clock, [self.plug]),
            schedule_from_json(FLAT),
            self.drlc,
        )
        self.controller.add_appliance(
            Appliance("ev charger", EV_PLUG, EV, interruptible=True, min_duty_percent=0)
        )
        # The operator certificate was provisioned on the GDSC's clock: the hub checks it on that.
        self.mgmt = ManagementInterface("H1", ca, ManualClock(w.clock.now()), tmp / "mgmt.sqlite")
        for ctype, handler in drlc_commands(self.drlc, self.clock, self.controller.notify).items():
            self.mgmt.register(ctype, handler)
        self.plan = PullPlan(w.store)
        self.w = w

    def deliver(self) -> list[dict[str, Any]]:
        """Claim the GDSC's queued work for H1 as a collector does, hand it to the hub, record the
        verdict; the verdicts."""
        out = []
        for claim in self.plan.claim_urgent("collector-A", self.w.clock.now(), 100):
            assert claim.envelope is not None
            verdict = json.loads(asyncio.run(self.mgmt.handle(claim.envelope)).to_json())
            self.plan.finish_urgent(claim, True, self.w.clock.now(), result=verdict)
            out.append(verdict)
        return out

    def run_until(self, end: datetime) -> dict[datetime, int]:
        """Step the controller to ``end`` (at every change and every half-hour); the plug's
        metered Wh by half-hour."""
        energy: dict[datetime, int] = {}
        t = self.clock.now()
        t -= timedelta(minutes=t.minute % 30, seconds=t.second)
        mark, last = t, self.plug.energy_wh
        while self.clock.now() < end:
            nxt = self.controller.next_change(self.clock.now())
            boundary = mark + timedelta(minutes=30)
            step = min(x for x in (nxt, boundary, end) if x is not None)
            self.clock.set(step)
            asyncio.run(self.controller.step())
            if step == boundary:
                self.plug.advance(boundary)
                energy[mark], last, mark = self.plug.energy_wh - last, self.plug.energy_wh, boundary
        return energy

    def close(self) -> None:
        self.mgmt.close()
        self.controller.close()
        self.drlc.close()


def aggregator(base: str, creds: dict[str, Any], tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp / "secret").write_text(creds["client_secret"])
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "smarthub_services.dr_aggregator",
            "--api",
            base,
            "--client-id",
            creds["client_id"],
            "--client-secret-file",
            str(tmp / "secret"),
            "--ledger",
            str(tmp / "dr.sqlite"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )


DISPATCH = (
    "dispatch",
    "--start",
    EVENT[0].astimezone(LONDON).isoformat(),
    "--minutes",
    "60",
    "--category",
    "electric-vehicle",
    "--duty-cycle",
    "50",
)


def enrolled(w: World, base: str, tmp: Path) -> dict[str, Any]:
    creds = onboard(w, base, kinds=("readings", "demand-response"), purpose="demand response")
    consent(w, base, kinds=("readings", "demand-response"), purpose="demand response")
    done = aggregator(base, creds, tmp, "enrol", "--home", "P1:E1", "--until", EVENT_DAY.isoformat())
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout) == [{"premises_id": "P1", "enrolled": True, "half_hours_read": 28 * 48}]
    return creds


def test_the_measured_reduction_is_what_the_hub_removed(world: World, base: str, tmp_path: Path) -> None:
    w = world
    creds = enrolled(w, base, tmp_path)
    home = Home(w, tmp_path)
    try:
        # The occupant's charge: 2 hours at 7 kW from 18:00, wanted by 20:00 (no slack to move it).
        run = ApplianceRun.constant("ev charger", Decimal("7"), timedelta(hours=2))
        placed = home.controller.request("ev charger", run, local(EVENT_DAY, 18), local(EVENT_DAY, 20))
        assert placed.start == local(EVENT_DAY, 18)

        done = aggregator(base, creds, tmp_path, *DISPATCH)
        assert done.returncode == 0, done.stdout + done.stderr
        (sent,) = json.loads(done.stdout)
        # Forecast: the same half-hours of the 10 previous weekdays, by hand: base + 3.5 kWh each.
        mean_base = Decimal(sum(base_wh(d) for d in BASELINE_DAYS)) / 10 / 1000
        assert Decimal(sent["forecast_kwh"]) == 2 * (mean_base + Decimal("3.5"))
        assert sent["state"] == "queued" and len(sent["event_id"]) == 32

        # The collector delivers the signed drlc.event; the hub receives it.
        (verdict,) = home.deliver()
        assert verdict["status"] == "applied" and verdict["result"]["status_name"] == "received"
        energy = home.run_until(local(EVENT_DAY, 20, 30))

        # What the script removed: the plug was off half of each event half-hour.
        event_slots = [EVENT[0], EVENT[0] + timedelta(minutes=30)]
        assert [energy[t] for t in event_slots] == [EV_W // 4, EV_W // 4]
        assert [energy[t] for t in (local(EVENT_DAY, 19), local(EVENT_DAY, 19, 30))] == [EV_W // 2] * 2
        removed_wh = sum(EV_W // 2 - energy[t] for t in event_slots)
        assert removed_wh == 3500

        # The event day's readings, as the GDSC's collector would store them: base + the plug.
        day = [local(EVENT_DAY, 0) + timedelta(minutes=30 * i) for i in range(48)]
        w.store.ingest(
            "H1",
            [
                StoredReading(
                    "H1",
                    "E1",
                    "1-0:1.8.0",
                    int(t.timestamp()),
                    1800,
                    base_wh(EVENT_DAY) + energy.get(t, 0),
                    0,
                    72,
                    0,
                )
                for t in day
            ],
            {},
        )
        # The hub's responses, pulled by the GDSC as the aggregator follows the event.
        w.clock.set(local(EVENT_DAY, 21))
        done = aggregator(base, creds, tmp_path, "status")
        assert done.returncode == 0, done.stderr
        home.deliver()  # the drlc.responses the GDSC queued
        w.clock.advance(timedelta(minutes=2))

        done = aggregator(base, creds, tmp_path, "settle", "--rate", "0.30")
        assert done.returncode == 0, done.stdout + done.stderr
        statement = json.loads(done.stdout)
        (s,) = statement["statements"]
        assert s["baseline_days"] == [d.isoformat() for d in BASELINE_DAYS]
        # By hand: per event half-hour, baseline = mean base + 3.5 kWh; actual = the day's base +
        # 1.75 kWh; so the reduction is the 3.5 kWh removed plus twice the base difference.
        actual_base = Decimal(base_wh(EVENT_DAY)) / 1000
        hand = 2 * (mean_base + Decimal("3.5")) - 2 * (actual_base + Decimal("1.75"))
        assert hand == Decimal(removed_wh) / 1000 + 2 * (mean_base - actual_base)
        assert Decimal(s["reduction_kwh"]) == hand
        assert s["reward_gbp"] == str((hand * Decimal("0.30")).quantize(Decimal("0.01")))
        assert statement["total_reward_gbp"] == s["reward_gbp"]
        assert [h["status"] for h in s["hub_responses"]] == [
            ResponseStatus.RECEIVED,
            ResponseStatus.STARTED,
            ResponseStatus.COMPLETED,
        ]
        # Settling again pays nothing twice: the same statement.
        again = aggregator(base, creds, tmp_path, "settle", "--rate", "0.50")
        assert json.loads(again.stdout)["statements"] == statement["statements"]
    finally:
        home.close()


def test_withdrawal_suspension_and_revocation_refuse_the_next_dispatch(
    world: World, base: str, tmp_path: Path
) -> None:
    w = world
    creds = enrolled(w, base, tmp_path)
    client = DataServicesClient(base, Credentials(creds["client_id"], creds["client_secret"]))
    event = {
        "meter_id": "E1",
        "start": EVENT[0].isoformat(),
        "duration_minutes": 60,
        "device_categories": ["electric-vehicle"],
        "duty_cycle": 0,
    }
    path = "/v1/premises/P1/demand-response/events"
    status, first = client.request("POST", path, body=event)
    assert status == 202
    # Readings only: a consent without demand-response control refuses the dispatch.
    consents = httpx.get(f"{base}/v1/premises/P1/consents", headers=w.auth("C1")).json()
    (k,) = [c["consent_id"] for c in consents if c["revoked_at"] is None]
    assert httpx.delete(f"{base}/v1/premises/P1/consents/{k}", headers=w.auth("C1")).status_code == 204
    consent(w, base, kinds=("readings",), purpose="demand response")
    with pytest.raises(ApiError) as refused:
        client.request("POST", path, body=event)
    assert (
        refused.value.status == 403
        and "no live consent for TP at P1 covering demand-response" in refused.value.detail
    )
    done = aggregator(base, creds, tmp_path, *DISPATCH)
    assert done.returncode == 2 and "no live consent" in json.loads(done.stdout)[0]["refused"]
    # Following the event is refused too while the consent is gone.
    with pytest.raises(ApiError) as refused:
        client.get(f"{path}/{first['event_id']}")
    assert refused.value.status == 403

    consent(w, base, kinds=("readings", "demand-response"), purpose="demand response")
    assert client.request("POST", path, body=event)[0] == 202
    # Suspended: 403 at the next request, with the operator's reason.
    r = httpx.post(
        f"{base}/v1/services/TP/decisions",
        json={"decision": "suspend", "reason": "complaints"},
        headers=w.auth("OP"),
    )
    assert r.status_code == 200, r.text
    with pytest.raises(ApiError) as refused:
        client.request("POST", path, body=event)
    assert refused.value.status == 403 and "suspended: complaints" in refused.value.detail
    # Revoked: its OAuth2 client is gone (401 invalid_token, no new token); its party token 403.
    r = httpx.post(
        f"{base}/v1/services/TP/decisions",
        json={"decision": "revoke", "reason": "fraud"},
        headers=w.auth("OP"),
    )
    assert r.status_code == 200, r.text
    with pytest.raises(ApiError) as refused:
        client.request("POST", path, body=event)
    assert refused.value.status == 401, refused.value  # the token endpoint refuses the revoked client
    assert refused.value.detail.startswith("invalid_client")
    r = httpx.post(f"{base}{path}", json=event, headers=w.auth("TP"))
    assert r.status_code == 403 and "revoked: fraud" in r.json()["detail"]
    # Nor can the occupant consent to it again.
    r = httpx.post(
        f"{base}/v1/premises/P1/consents",
        json={
            "party_id": "TP",
            "data_kinds": ["demand-response"],
            "granularity": "none",
            "purpose": "x",
            "expires_at": (w.clock.now() + timedelta(days=1)).isoformat(),
        },
        headers=w.auth("C1"),
    )
    assert r.status_code == 400 and "data service TP is revoked" in r.json()["detail"]


def test_a_service_approved_for_readings_only_cannot_send_events(
    world: World, base: str, tmp_path: Path
) -> None:
    w = world
    creds = onboard(w, base, kinds=("readings",), purpose="demand response")
    consent(w, base, kinds=("readings",), purpose="demand response")
    # The occupant cannot consent beyond the approval ...
    r = httpx.post(
        f"{base}/v1/premises/P1/consents",
        json={
            "party_id": "TP",
            "data_kinds": ["readings", "demand-response"],
            "granularity": "half-hourly",
            "purpose": "demand response",
            "expires_at": (w.clock.now() + timedelta(days=1)).isoformat(),
        },
        headers=w.auth("C1"),
    )
    assert r.status_code == 400 and "not approved for demand-response" in r.json()["detail"]
    # ... its OAuth2 client has no demand-response scope, and its party credential is refused by
    # the policy with the approval's reason.
    assert aggregator(base, creds, tmp_path, "enrol", "--home", "P1:E1").returncode == 0
    done = aggregator(base, creds, tmp_path, *DISPATCH)
    assert done.returncode == 2
    assert "scope (readings:read services tariffs:read) does not include demand-response" in done.stdout
    event = {
        "meter_id": "E1",
        "start": EVENT[0].isoformat(),
        "duration_minutes": 60,
        "device_categories": ["electric-vehicle"],
        "duty_cycle": 0,
    }
    r = httpx.post(f"{base}/v1/premises/P1/demand-response/events", json=event, headers=w.auth("TP"))
    assert r.status_code == 403
    assert "approved for readings only, not demand-response" in r.json()["detail"]


def test_an_event_cancelled_before_it_starts_is_dropped_and_answered_cancelled(
    world: World, base: str, tmp_path: Path
) -> None:
    w = world
    creds = enrolled(w, base, tmp_path)
    client = DataServicesClient(base, Credentials(creds["client_id"], creds["client_secret"]))
    home = Home(w, tmp_path)
    try:
        path = "/v1/premises/P1/demand-response/events"
        done = aggregator(base, creds, tmp_path, *DISPATCH)
        assert done.returncode == 0, done.stdout + done.stderr
        (sent,) = json.loads(done.stdout)
        (verdict,) = home.deliver()
        assert verdict["result"]["status_name"] == "received"
        assert [e.mrid for e in home.drlc.controls_for(EV)] == [sent["event_id"]]
        done = aggregator(base, creds, tmp_path, "cancel", "--event", sent["event_id"])
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout) == [
            {"event_id": sent["event_id"], "premises_id": "P1", "cancellation": "queued", "state": "done"}
        ]
        (verdict,) = home.deliver()
        assert verdict["result"]["status_name"] == "cancelled"
        assert home.drlc.controls_for(EV) == []  # nothing for the charger to follow any more
        # The GDSC pulls the hub's responses as the service follows the event.
        assert client.get(f"{path}/{sent['event_id']}")["responses"] == []
        home.deliver()
        w.clock.advance(timedelta(minutes=2))
        got = client.get(f"{path}/{sent['event_id']}")
        assert [r["status_name"] for r in got["responses"]] == ["received", "cancelled"]
        assert got["state"] == "done" and got["hub_answer"] == "received"
        # Another service's (or no) event: 404, as one that does not exist.
        with pytest.raises(ApiError) as missing:
            client.request("POST", f"{path}/{'0' * 32}/cancellation")
        assert missing.value.status == 404
    finally:
        home.close()
