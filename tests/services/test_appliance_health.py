"""Issue 25 item 2, appliance health end to end: a GDSC serving its API under uvicorn on loopback,
a simulated fleet's week of smart-plug half-hours in its store, the service onboarded and each
occupant consenting to appliance data through the API, and the service run as its own program
(``python -m smarthub_services.appliance_health``) against it; SQLite and PostgreSQL.

The week's plug data are what the simulated appliances draw (``smarthub.sim.appliance_profiles``:
a fridge's compressor cycling with a duty cycle that wanders ±3 % from day to day, a washing
machine's evening cycle ±2 %, a kettle, a boiler's or a heat pump's morning and evening heating),
half-hour by half-hour in whole Wh as the plugs meter them, with the starts and seconds run the
hub's run counter (``smarthub.hub.appliance_runs``) makes of the plug's demand polled every
2 minutes as the simulated fleet polls it, stored as the GDSC's collector stores a pull
(interval tables, and the plug with its appliance's name in ``appliance_points``). That the hub
serves the plugs and the GDSC pulls them is ``tests/e2e/test_appliance_path.py`` (a running fleet
for five simulated hours): a simulated week of a running fleet is minutes of wall time, so this
test starts from the store. Injected faults: one fridge whose duty cycle rises 6 % a day, one
washing machine drawing 5 % more each day, one heat pump short-cycling (12-minute cycles instead
of 70-minute ones) from the fourth day.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from gdsc.api_world import World

from services.world import basic
from smarthub.clock import ManualClock
from smarthub.gdsc.api.auth.tokens import TokenStore
from smarthub.gdsc.commands.desk import CommandDesk
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.gdsc.governance.parties import Fuel, Party, PartyRepository, Role, SupplyPeriod, Tenancy
from smarthub.gdsc.readings.appliances import ApplianceRegistry
from smarthub.gdsc.readings.tables import StoredReading
from smarthub.gdsc.store import Store
from smarthub.hub.appliance_runs import ApplianceRuns
from smarthub.model.obis import IMPORT_ACTIVE_POWER
from smarthub.model.reading import Reading, Unit
from smarthub.sim.appliance_profiles import APPLIANCES, CycleProfile, CyclingProfile
from smarthub.sim.fleet import provision
from smarthub_services.appliance_health import (
    COLD,
    HEATING,
    WASHER,
    cold_verdict,
    cycles,
    heating_verdict,
    kind_of,
    washer_verdict,
)
from smarthub_services.client import ApiError, Credentials, DataServicesClient

SRC = Path(__file__).resolve().parents[2] / "src"
LONDON_FIRST = date(2026, 3, 2)  # a Monday; the week has no clock change
UNTIL = LONDON_FIRST + timedelta(days=7)
NOW = datetime(2026, 3, 9, 9, tzinfo=UTC)
HOMES = 8
KETTLE = next(a for a in APPLIANCES if a.name == "Kettle")


@dataclass(frozen=True)
class Faults:
    fridge_drift: dict[int, float]  # home index → duty-cycle rise a day
    washer_drift: dict[int, float]  # home index → energy-per-cycle rise a day
    short_cycling: dict[int, date] = field(default_factory=dict)  # home index → from which day


def heating_of(home: int, faults: Faults) -> tuple[str, CyclingProfile]:
    """Odd homes heat with a heat pump (its compressor on the plug: long runs while healthy),
    even ones with a gas boiler (its fan and pump: hour-long cycles)."""
    if home % 2:
        return "Heat pump", CyclingProfile(
            "Heat pump", 1800.0 + 50 * home, 70, 0.55, LONDON_FIRST, jitter=0.05, period_jitter=0.15,
            seed=300 + home, hours=((5, 9), (16, 23)), short_cycle_from=faults.short_cycling.get(home),
        )  # fmt: skip
    return "Boiler", CyclingProfile(
        "Boiler", 150.0, 60, 0.5, LONDON_FIRST, hours=((6, 9), (17, 22)), seed=200 + home
    )


def plugs_of(home: int, faults: Faults) -> list[tuple[str, str, Any]]:
    """(EUI-64, appliance name, profile) of one home's plugs."""
    eui = f"00:0d:6f:02:00:{home:02x}:{{}}:20"
    return [
        (eui.format("00"), "Fridge freezer", CyclingProfile(
            "Fridge freezer", 85.0 + home, 40, 0.33 + 0.01 * home, LONDON_FIRST,
            drift_per_day=faults.fridge_drift.get(home, 0.0), jitter=0.03, seed=home,
        )),
        (eui.format("01"), "Washing machine", CycleProfile(
            "Washing machine", time(18 + home % 3, 0), 90, 1800.0 + 20 * home, LONDON_FIRST,
            drift_per_day=faults.washer_drift.get(home, 0.0), jitter=0.02, seed=100 + home,
        )),
        (eui.format("02"), "Kettle", KETTLE),
        (eui.format("03"), *heating_of(home, faults)),
    ]  # fmt: skip


# Each plug's week is the same in every test that has it (the profiles are frozen, the data a
# function of them): made once per session, for both backends and the healthy and faulty fleets.
@functools.cache
def week_of(hub: str, meter: str, profile: Any) -> tuple[StoredReading, ...]:
    """The plug's half-hours of the week, in whole Wh as a plug's summation register gives them."""
    t = datetime.combine(LONDON_FIRST, time(0), tzinfo=UTC)  # March: London is on UTC
    out, register, read = [], 0.0, 0
    for _ in range(7 * 48):
        register += profile.energy_wh(t, t + timedelta(minutes=30))[0]
        whole = int(register)  # the register's whole Wh: half-hours add up to it exactly
        out.append(StoredReading(hub, meter, "1-0:1.8.0", int(t.timestamp()), 1800, whole - read, 0, 72, 0))
        read = whole
        t += timedelta(minutes=30)
    return tuple(out)


POLL = timedelta(minutes=2)  # how often the simulated fleet polls a plug (sim.fleet RADIO_PERIOD)


@functools.cache
def runs_of(hub: str, meter: str, profile: Any) -> tuple[StoredReading, ...]:
    """The plug's starts and seconds run per half-hour over the week, as its hub's run counter
    makes them from the plug's demand read every :data:`POLL`."""
    counter = ApplianceRuns(lambda m: m == meter)
    t0 = datetime.combine(LONDON_FIRST, time(0), tzinfo=UTC)
    samples = (
        Reading(meter, IMPORT_ACTIVE_POWER, Decimal(round(profile.power_w(t))), Unit.W, t)
        for t in (t0 + POLL * i for i in range(7 * 24 * 30 + 1))
    )
    return tuple(
        StoredReading(hub, meter, str(rec.obis), rec.start, rec.duration, rec.value, 0, 0, 0)
        for rec in counter.observe(samples)
    )


def build(url: str, state: Path, faults: Faults) -> World:
    store = Store(url)
    store.create_schema()
    repo = PartyRepository(store.engine)
    parties = [Party("S1", Role.SUPPLIER), Party("AH", Role.THIRD_PARTY), Party("OP", Role.OPERATOR)]
    parties += [Party(f"C{k}", Role.CONSUMER) for k in range(HOMES)]
    for p in parties:
        repo.add_party(p)
    since = datetime(2025, 1, 1, tzinfo=UTC)
    registry = ApplianceRegistry(store.engine)
    for k in range(HOMES):
        hub, premises = f"H{k}", f"P{k}"
        store.register_hub(
            hub_id=hub, premises_id=premises, url="https://h", lfdi="A" * 40,
            meters_by_fuel=[(f"E{k}", "electricity")],
        )  # fmt: skip
        repo.add_supply_period(SupplyPeriod(premises, Fuel.ELECTRICITY, "S1", since))
        repo.add_tenancy(Tenancy(f"T{k}", premises, f"C{k}", since))
        plugs = plugs_of(k, faults)
        rows = [
            r for eui, _, profile in plugs for r in (*week_of(hub, eui, profile), *runs_of(hub, eui, profile))
        ]
        store.ingest(hub, rows, {})
        registry.record(hub, {eui: name for eui, name, _ in plugs}, NOW - timedelta(days=8))
    clock = ManualClock(NOW)
    provision(state, [], NOW - timedelta(days=1))
    tokens = TokenStore(store.engine)
    issued = {p.party_id: tokens.issue(p.party_id, NOW) for p in parties}
    ca_cert = x509.load_pem_x509_certificate((state / "ca" / "ca.pem").read_bytes())
    guard = AccessGuard(repo, AuditLog(store.engine), clock)
    return World(store, guard, clock, CommandDesk.from_state(state, store), issued, ca_cert, state)


def onboard(w: World, base: str, kinds: tuple[str, ...] = ("appliances",)) -> dict[str, Any]:
    application = {
        "organisation": "Appliance Health Ltd",
        "purpose": "appliance health",
        "data_kinds": list(kinds),
        "granularity": "half-hourly",
        "retention_days": 30,
    }
    r = httpx.post(f"{base}/v1/services", json=application, headers=w.auth("AH"))
    assert r.status_code == 201, r.text
    r = httpx.post(f"{base}/v1/services/AH/decisions", json={"decision": "approve"}, headers=w.auth("OP"))
    assert r.status_code == 200, r.text
    creds: dict[str, Any] = r.json()["credentials"]
    return creds


def consent(w: World, base: str, home: int, kinds: tuple[str, ...] = ("appliances",)) -> str:
    body = {
        "party_id": "AH",
        "data_kinds": list(kinds),
        "granularity": "half-hourly",
        "purpose": "appliance health",
        "expires_at": (NOW + timedelta(days=90)).isoformat(),
    }
    r = httpx.post(f"{base}/v1/premises/P{home}/consents", json=body, headers=w.auth(f"C{home}"))
    assert r.status_code == 201, r.text
    return str(r.json()["consent_id"])


def run_service(base: str, creds: dict[str, Any], tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp / "secret").write_text(creds["client_secret"])
    return subprocess.run(
        [
            sys.executable, "-m", "smarthub_services.appliance_health", "--api", base,
            "--client-id", creds["client_id"], "--client-secret-file", str(tmp / "secret"),
            "--until", UNTIL.isoformat(), *args,
        ],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(SRC)},
    )  # fmt: skip


def every_home() -> list[str]:
    return [a for k in range(HOMES) for a in ("--premises", f"P{k}")]


@pytest.fixture
def faulty(db_url: str, tmp_path: Path) -> Iterator[tuple[World, str]]:
    w = build(db_url, tmp_path / "state", Faults({3: 0.06}, {5: 0.05}, {7: LONDON_FIRST + timedelta(days=3)}))
    with w.served() as url:
        yield w, url
    w.store.close()


def verdicts(report: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {
        (p, a["name"]): a["verdict"] for p, entry in report["premises"].items() for a in entry["appliances"]
    }


def test_a_degrading_fridge_and_washer_and_a_short_cycling_heat_pump_are_flagged_within_a_week(
    faulty: tuple[World, str], tmp_path: Path
) -> None:
    w, base = faulty
    creds = onboard(w, base)
    assert set(creds["scope"].split()) == {"appliances:read", "services", "tariffs:read"}
    for k in range(HOMES):
        consent(w, base, k)
    done = run_service(base, creds, tmp_path, *every_home())
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert sorted(report["flagged"]) == ["P3: Fridge freezer", "P5: Washing machine", "P7: Heat pump"]
    seen = verdicts(report)
    assert len(seen) == 4 * HOMES
    for (p, name), verdict in seen.items():
        if (p, name) in (("P3", "Fridge freezer"), ("P5", "Washing machine")):
            assert verdict == "degrading"
        elif (p, name) == ("P7", "Heat pump"):
            assert verdict == "short-cycling"
        elif name == "Kettle":
            assert verdict == "not-assessed", (p, name)
        else:
            assert verdict == "ok", (p, name)  # tested, healthy: not merely short of data
    fridge = next(a for a in report["premises"]["P3"]["appliances"] if a["name"] == "Fridge freezer")
    assert fridge["days"] == 7 and fridge["duty_cycle_rise"] > 0.10 and fridge["z"] > 3
    assert report["premises"]["P3"]["message"].startswith(
        "Appliance health: Fridge freezer: its duty cycle rose"
    )
    assert report["premises"]["P0"]["message"] is None
    pump = next(a for a in report["premises"]["P7"]["appliances"] if a["name"] == "Heat pump")
    # 12-minute cycles at 55 % duty: 5 starts an hour, runs of 6.6 minutes (read every 2 minutes:
    # 6 or 8); the days before the fault started about once an hour
    assert pump["starts_per_hour"] > 4 and pump["mean_run_minutes"] < 9, pump
    by_day = pump["starts_per_hour_by_day"]
    assert max(by_day[d] for d in ("2026-03-02", "2026-03-03", "2026-03-04")) < 1.5, by_day
    assert report["premises"]["P7"]["message"].startswith("Appliance health: Heat pump: it started")
    healthy = next(a for a in report["premises"]["P1"]["appliances"] if a["name"] == "Heat pump")
    assert healthy["starts_per_hour"] < 1.5 and healthy["mean_run_minutes"] > 30, healthy


def test_a_healthy_fleet_flags_nothing(db_url: str, tmp_path: Path) -> None:
    w = build(db_url, tmp_path / "state", Faults({}, {}))
    try:
        with w.served() as base:
            creds = onboard(w, base)
            for k in range(HOMES):
                consent(w, base, k)
            done = run_service(base, creds, tmp_path, *every_home())
    finally:
        w.store.close()
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["flagged"] == []
    tested = {k: v for k, v in verdicts(report).items() if k[1] != "Kettle"}
    assert len(tested) == 3 * HOMES and set(tested.values()) == {"ok"}


def test_without_consent_to_appliance_data_the_service_is_refused(
    faulty: tuple[World, str], tmp_path: Path
) -> None:
    w, base = faulty
    creds = onboard(w, base, ("appliances", "readings", "ihd-messages"))
    done = run_service(base, creds, tmp_path, "--premises", "P3")  # approved, nobody consented
    assert done.returncode == 2, done.stdout
    assert "403" in done.stderr and "no live consent for AH at P3 covering appliances" in done.stderr
    assert json.loads(done.stdout)["premises"]["P3"]["refused"] == 403

    client = DataServicesClient(base, Credentials(creds["client_id"], creds["client_secret"]))
    start = datetime.combine(LONDON_FIRST, time(0), tzinfo=UTC)
    # A consent to readings gives no appliance data ...
    readings_only = consent(w, base, 3, ("readings",))
    with pytest.raises(ApiError) as refused:
        client.appliances("P3", start, start + timedelta(days=7))
    assert refused.value.status == 403 and "covering appliances" in refused.value.detail
    r = httpx.delete(f"{base}/v1/premises/P3/consents/{readings_only}", headers=w.auth("C3"))
    assert r.status_code == 204
    # ... and a consent to appliance data gives no whole-home readings.
    consent(w, base, 3)
    assert {a["name"] for a in client.appliances("P3", start, start + timedelta(days=7))} == {
        "Fridge freezer", "Washing machine", "Kettle", "Heat pump",
    }  # fmt: skip
    with pytest.raises(ApiError) as refused:
        list(client.readings("P3", "E3", start, start + timedelta(days=1), "half-hourly"))
    assert refused.value.status == 403 and "covering readings" in refused.value.detail
    # Telling the occupant through the display needs their consent to ihd-messages as well: without
    # it the GDSC refuses and the service says so rather than pretending it was shown ...
    done = run_service(base, creds, tmp_path, "--premises", "P3", "--notify-meter", "E3")
    assert done.returncode == 0, done.stderr
    entry = json.loads(done.stdout)["premises"]["P3"]
    assert entry["notified"] is False
    assert (
        entry["notification"] == "the GDSC refused (403): no live consent for AH at P3 covering ihd-messages"
    )
    # ... with it, the findings are queued for P3's display as Appliance Health Ltd's, a third party's.
    consent(w, base, 3, ("ihd-messages",))
    done = run_service(base, creds, tmp_path, "--premises", "P3", "--notify-meter", "E3")
    assert done.returncode == 0, done.stderr
    entry = json.loads(done.stdout)["premises"]["P3"]
    assert entry["notified"] is True and entry["notification"].startswith("queued for the display as job ")
    (sent,) = [e for e in w.guard.audit.entries() if e.action == "command:ihd-message" and e.allow]
    shown = sent.detail["detail"]
    assert (sent.actor, sent.premises_id, shown["origin"], shown["sender_name"]) == (
        "AH",
        "P3",
        "third-party",
        "Appliance Health Ltd",
    )
    assert shown["text"] == entry["message"] and "Fridge freezer" in shown["text"]
    # Withdrawn: the next request is refused.
    mine = httpx.get(f"{base}/v1/premises/P3/consents", headers=w.auth("C3")).json()
    for c in mine:
        if c["revoked_at"] is None:
            assert (
                httpx.delete(
                    f"{base}/v1/premises/P3/consents/{c['consent_id']}", headers=w.auth("C3")
                ).status_code
                == 204
            )
    with pytest.raises(ApiError) as refused:
        client.appliances("P3", start, start + timedelta(days=1))
    assert refused.value.status == 403
    assert basic(creds)  # the client authenticated with its OAuth2 credentials throughout


# -- the tests themselves, on series written out by hand -----------------------------------------


def _days(values: list[float], first: datetime = datetime(2026, 3, 2, tzinfo=UTC)) -> dict[int, float]:
    """A series whose local day k has energy values[k], spread evenly over its 48 half-hours."""
    out = {}
    for k, v in enumerate(values):
        for i in range(48):
            out[int((first + timedelta(days=k, minutes=30 * i)).timestamp())] = v / 48
    return out


def test_the_fridge_test_on_hand_made_days() -> None:
    assert kind_of("Fridge freezer") == COLD and kind_of("Dishwasher") == WASHER and kind_of("TV") is None
    flat = cold_verdict("F", "Fridge", _days([1000, 1010, 990, 1005, 995, 1000, 1002]))
    assert flat.verdict == "ok"
    # +15 % in the last two days, baseline σ 10 Wh (floored to 2 % = 20 Wh): rise 15 %, z 7.5, rising
    worn = cold_verdict("F", "Fridge", _days([1000, 1010, 990, 1050, 1100, 1140, 1160]))
    assert (
        worn.verdict == "degrading" and worn.figures["duty_cycle_rise"] == 0.15 and worn.figures["z"] == 7.5
    )
    # a warm last day alone (rise 7 %) is not enough
    assert cold_verdict("F", "Fridge", _days([1000, 1010, 990, 1000, 1000, 1000, 1140])).verdict == "ok"
    short = cold_verdict("F", "Fridge", _days([1000, 1010, 990, 1100]))
    assert short.verdict == "insufficient-data"
    missing = _days([1000] * 7)
    del missing[min(missing)]  # the first day is not whole: six days are
    assert cold_verdict("F", "Fridge", missing).figures["days"] == 6


def test_the_washer_test_on_hand_made_cycles() -> None:
    t0 = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp())
    series = {t0 + 1800 * i: 1.0 for i in range(48 * 7)}
    for day, wh in enumerate([900, 910, 890, 1000, 1050, 1080, 1100]):
        for j in range(3):  # a cycle: three half-hours at 19:00
            series[t0 + day * 86400 + 38 * 1800 + j * 1800] = wh / 3
    assert [round(e) for _, _, e in cycles(series)] == [900, 910, 890, 1000, 1050, 1080, 1100]
    v = washer_verdict("W", "Washing machine", series)
    # baseline 900 (σ 10 → floored 18), recent 1076.7: +19.6 %, z 9.8
    assert v.verdict == "degrading" and v.figures["cycle_energy_rise"] == 0.1963
    assert washer_verdict("W", "Washing machine", {t0: 1.0}).verdict == "insufficient-data"


def _counts(
    pattern: list[tuple[int, int]], hours: tuple[int, ...], days: int = 7
) -> tuple[dict[int, int], dict[int, int]]:
    """(starts, seconds) per half-hour over ``days`` days: in the half-hours ``hours`` of each day
    the (starts, seconds) of ``pattern`` in turn, elsewhere none."""
    t0 = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp())
    starts, seconds, k = {}, {}, 0
    for i in range(48 * days):
        n, s = (0, 0)
        if i % 48 in hours:
            n, s = pattern[k % len(pattern)]
            k += 1
        starts[t0 + 1800 * i], seconds[t0 + 1800 * i] = n, s
    return starts, seconds


def test_the_heating_test_on_hand_made_counts() -> None:
    assert kind_of("Heat pump") == HEATING and kind_of("Gas boiler") == HEATING
    assert (
        kind_of("Oil radiator") is None and kind_of("Immersion heater") is None
    )  # resistive: cycling is normal
    heating = (*range(12, 18), *range(34, 44))  # 06:00-09:00 and 17:00-22:00: 8 hours a day
    # Two starts and 9 minutes running every heating half-hour: 4 an hour, runs of 4.5 minutes.
    v = heating_verdict("H", "Heat pump", *_counts([(2, 540)], heating))
    assert v.verdict == "short-cycling" and v.flagged
    assert (v.figures["heating_hours"], v.figures["starts_per_hour"], v.figures["mean_run_minutes"]) == (
        16,
        4,
        4.5,
    )
    # Once an hour, 30-minute runs (20 minutes in one half-hour, 10 in the next).
    v = heating_verdict("H", "Heat pump", *_counts([(1, 1200), (0, 600)], heating))
    assert v.verdict == "ok" and (v.figures["starts_per_hour"], v.figures["mean_run_minutes"]) == (1, 30)
    # Exactly 3 an hour is not more than 3; short runs alone are not short-cycling.
    assert heating_verdict("H", "Heat pump", *_counts([(2, 540), (1, 270)], heating)).verdict == "ok"
    # A boiler firing for the first 10 minutes of every hour-and-a-half: its pauses of an hour are
    # still heating (not a rate of 2 an hour over the half-hours it ran in).
    v = heating_verdict("H", "Boiler", *_counts([(1, 600), (0, 0), (0, 0)], tuple(range(12, 44))))
    assert v.verdict == "ok" and v.figures["starts_per_hour"] < 0.8
    # Too little heating, too few days, no counts at all: insufficient data, never "ok".
    assert heating_verdict("H", "Heat pump", *_counts([(2, 540)], (12, 13))).verdict == "insufficient-data"
    assert (
        heating_verdict("H", "Heat pump", *_counts([(2, 540)], heating, days=1)).verdict
        == "insufficient-data"
    )
    none = heating_verdict("H", "Heat pump", {}, {})
    assert none.verdict == "insufficient-data" and "serves no run counts" in none.why
