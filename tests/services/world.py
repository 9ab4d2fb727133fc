"""A GDSC serving the data services API on loopback, for the third-party services' end-to-end
tests: premises P1 (hub H1, electricity meter E1) with a year of half-hourly readings, occupant C1
since January 2025, supplier S1, the GDSC operator OP and a third party TP that is not approved
yet. The services under test reach it only over HTTP."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from cryptography import x509
from gdsc.api_world import World

from smarthub.clock import ManualClock
from smarthub.gdsc.api.auth.tokens import TokenStore
from smarthub.gdsc.commands.desk import CommandDesk
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.gdsc.governance.parties import Fuel, Party, PartyRepository, Role, SupplyPeriod, Tenancy
from smarthub.gdsc.readings.tables import StoredReading
from smarthub.gdsc.store import Store
from smarthub.sim.fleet import provision

LONDON = ZoneInfo("Europe/London")
FIRST = date(2025, 8, 1)  # a Friday; the year to 1 August 2026 has both clock changes (both Sundays)
END = date(2026, 8, 1)
NOW = datetime(2026, 8, 5, 12, tzinfo=UTC)
PARTIES = (
    Party("S1", Role.SUPPLIER),
    Party("C1", Role.CONSUMER),
    Party("TP", Role.THIRD_PARTY),
    Party("OP", Role.OPERATOR),
)
NIGHT_WH, DAY_WH = 1200, 300  # storage heating in the Economy 7 night (00:30-07:30 local)


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=LONDON).astimezone(UTC)


def is_night(t: datetime) -> bool:
    local = t.astimezone(LONDON)
    slot = local.hour * 2 + local.minute // 30
    return 1 <= slot < 15  # 00:30 .. 07:30 local


def year_of_readings(first: date = FIRST, end: date = END) -> list[StoredReading]:
    t, stop, out = midnight(first), midnight(end), []
    while t < stop:
        wh = NIGHT_WH if is_night(t) else DAY_WH
        out.append(StoredReading("H1", "E1", "1-0:1.8.0", int(t.timestamp()), 1800, wh, 0, 72, 0))
        t += timedelta(minutes=30)
    return out


def build(url: str, state: Path, readings: list[StoredReading] | None = None, now: datetime = NOW) -> World:
    """The world; ``readings`` replace the year of :func:`year_of_readings`, ``now`` is the clock's."""
    store = Store(url)
    store.create_schema()
    store.register_hub(
        hub_id="H1", premises_id="P1", url="https://h", lfdi="A" * 40, meters_by_fuel=[("E1", "electricity")]
    )
    store.ingest("H1", year_of_readings() if readings is None else readings, {})
    repo = PartyRepository(store.engine)
    for p in PARTIES:
        repo.add_party(p)
    since = datetime(2025, 1, 1, tzinfo=UTC)
    repo.add_supply_period(SupplyPeriod("P1", Fuel.ELECTRICITY, "S1", since))
    repo.add_tenancy(Tenancy("T1", "P1", "C1", since))
    clock = ManualClock(now)
    provision(state, [], now - timedelta(days=1))
    tokens = TokenStore(store.engine)
    issued = {p.party_id: tokens.issue(p.party_id, now) for p in PARTIES}
    ca_cert = x509.load_pem_x509_certificate((state / "ca" / "ca.pem").read_bytes())
    guard = AccessGuard(repo, AuditLog(store.engine), clock)
    return World(store, guard, clock, CommandDesk.from_state(state, store), issued, ca_cert, state)


def onboard(
    w: World,
    base: str,
    kinds: Iterable[str] = ("readings",),
    granularity: str = "half-hourly",
    purpose: str = "tariff comparison",
) -> dict[str, Any]:
    """TP applies through the API, OP approves it; the OAuth2 client credentials issued."""
    application = {
        "organisation": "Cheaper Tariffs Ltd",
        "purpose": purpose,
        "data_kinds": list(kinds),
        "granularity": granularity,
        "retention_days": 30,
    }
    r = httpx.post(f"{base}/v1/services", json=application, headers=w.auth("TP"))
    assert r.status_code == 201, r.text
    r = httpx.post(f"{base}/v1/services/TP/decisions", json={"decision": "approve"}, headers=w.auth("OP"))
    assert r.status_code == 200, r.text
    creds: dict[str, Any] = r.json()["credentials"]
    return creds


def consent(
    w: World,
    base: str,
    granularity: str = "half-hourly",
    kinds: Iterable[str] = ("readings",),
    purpose: str = "tariff comparison",
) -> str:
    """C1 consents to TP's reading its half-hourly data, through the API; the consent's id."""
    body = {
        "party_id": "TP",
        "data_kinds": list(kinds),
        "granularity": granularity,
        "purpose": purpose,
        "expires_at": (w.clock.now() + timedelta(days=90)).isoformat(),
    }
    r = httpx.post(f"{base}/v1/premises/P1/consents", json=body, headers=w.auth("C1"))
    assert r.status_code == 201, r.text
    return str(r.json()["consent_id"])


def basic(creds: dict[str, Any]) -> dict[str, str]:
    raw = f"{creds['client_id']}:{creds['client_secret']}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
