"""A GDSC with the data services API, as the test_api_* modules use it: one premises P1 (hub H1,
electricity meter E1 with two days of half-hourly data, gas meter G1), parties of every role,
GDSC operator credentials from the simulator's provisioning, and a TestClient."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from fastapi.testclient import TestClient

from smarthub.clock import ManualClock
from smarthub.gdsc.api.app import create_app
from smarthub.gdsc.api.auth.tokens import TokenStore
from smarthub.gdsc.api.http_limits import BodyGuard, HeadDeadlineH11Protocol
from smarthub.gdsc.api.serve import GUARDED
from smarthub.gdsc.commands.desk import CommandDesk
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.gdsc.governance.parties import Fuel, Party, PartyRepository, Role, SupplyPeriod, Tenancy
from smarthub.gdsc.readings.tables import StoredReading
from smarthub.gdsc.store import Store
from smarthub.sim.fleet import provision

JUL = datetime(2026, 7, 1, tzinfo=UTC)
DAY1 = datetime(2026, 8, 9, 23, tzinfo=UTC)  # local (BST) midnight of 10 August
NOW = datetime(2026, 8, 20, 12, tzinfo=UTC)
PARTIES = (
    Party("S1", Role.SUPPLIER),
    Party("SG", Role.SUPPLIER),  # supplies gas at P1
    Party("C1", Role.CONSUMER),
    Party("TP", Role.THIRD_PARTY),
    Party("DNO", Role.NETWORK_OPERATOR),
    Party("OP", Role.OPERATOR),
    Party("INST", Role.INSTALLER),
)


@dataclass
class World:
    store: Store
    guard: AccessGuard
    clock: ManualClock
    desk: CommandDesk
    tokens: dict[str, str]  # party id -> bearer token
    ca_cert: x509.Certificate
    state: Path

    def client(self, *, raise_server_exceptions: bool = True) -> TestClient:
        """The API in process; ``raise_server_exceptions=False`` answers a server error with the
        500 a client would see instead of raising it into the test."""
        return TestClient(
            create_app(self.guard, TokenStore(self.store.engine), self.desk),
            raise_server_exceptions=raise_server_exceptions,
        )

    def auth(self, party: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[party]}"}

    @contextmanager
    def served(self) -> Iterator[str]:
        """The API served by uvicorn on a loopback port, as ``smarthub gdsc api`` serves it (the
        slow-client guards included), in a thread of this process; yields its base URL."""
        app = BodyGuard(create_app(self.guard, TokenStore(self.store.engine), self.desk))
        config = uvicorn.Config(app, host="127.0.0.1", port=0, http=HeadDeadlineH11Protocol, **GUARDED)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="api-under-test", daemon=True)
        thread.start()
        try:
            for _ in range(400):  # at most ~20 s
                if server.started or not thread.is_alive():
                    break
                time.sleep(0.05)
            assert server.started, "the API did not start listening"
            port = server.servers[0].sockets[0].getsockname()[1]
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=10)


def readings(hub: str, meter: str, start: datetime, n: int, base: int = 100) -> list[StoredReading]:
    t0 = int(start.timestamp())
    return [StoredReading(hub, meter, "1-0:1.8.0", t0 + 1800 * i, 1800, base + i, 0, 72, 0) for i in range(n)]


def build(url: str, state: Path) -> World:
    store = Store(url)
    store.create_schema()
    store.register_hub(
        hub_id="H1",
        premises_id="P1",
        url="https://h",
        lfdi="A" * 40,
        meters_by_fuel=[("E1", "electricity"), ("G1", "gas")],
    )
    store.ingest("H1", readings("H1", "E1", DAY1, 96), {})
    repo = PartyRepository(store.engine)
    for p in PARTIES:
        repo.add_party(p)
    repo.add_supply_period(SupplyPeriod("P1", Fuel.ELECTRICITY, "S1", JUL))
    repo.add_supply_period(SupplyPeriod("P1", Fuel.GAS, "SG", JUL))
    repo.add_tenancy(Tenancy("T1", "P1", "C1", JUL))
    clock = ManualClock(NOW)
    provision(state, [], NOW - timedelta(days=1))
    tokens = TokenStore(store.engine)
    issued = {p.party_id: tokens.issue(p.party_id, NOW) for p in PARTIES}
    ca_cert = x509.load_pem_x509_certificate((state / "ca" / "ca.pem").read_bytes())
    guard = AccessGuard(repo, AuditLog(store.engine), clock)
    return World(store, guard, clock, CommandDesk.from_state(state, store), issued, ca_cert, state)


def tariff_json(version: int = 1) -> dict[str, Any]:
    return {
        "tariff_id": "FLAT-1",
        "version": version,
        "effective_from": "2026-09-01",
        "name": "Flat rate",
        "standing_charge_p_per_day": "45.00",
        "pricing": {"type": "flat", "unit_rate_p_per_kwh": "24.50"},
    }


def api_routes(app: Any) -> list[tuple[str, str]]:
    """(METHOD, path template) of every operation the API serves, from its OpenAPI document (routers
    included into the app are not listed flat in ``app.routes`` by every FastAPI version)."""
    return [(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops]
