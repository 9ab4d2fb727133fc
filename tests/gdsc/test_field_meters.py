"""Meters registered from the field (issue 20 item 4), end to end: a wM-Bus meter swapped at a
premises is heard by the hub (not stored: pending), found by the HAN scan that rides on the
hub's pull, given the key from the manufacturer's shipment file, authenticated by its frames
decoding under that key, and registered against the premises once the installer's job
confirms it — through the API, the hub's signed commands and the GDSC's after-pull work only:
no table is edited by hand. Real pieces: OMS frames (security mode 5) from the simulated meter,
the hub core with its registry and radio port, its management interface verifying the GDSC's
signatures, the store on SQLite and PostgreSQL, the API through FastAPI's TestClient.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from smarthub.clock import ManualClock
from smarthub.gdsc.api.app import create_app
from smarthub.gdsc.api.auth.tokens import TokenStore
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.field_meters import FieldMeters, ShipmentRefused, parse_shipment
from smarthub.gdsc.fleet.key_escrow import KeyEscrow
from smarthub.gdsc.fleet.pki import CertificateAuthority
from smarthub.gdsc.fleet.pki import Role as PkiRole
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.gdsc.governance.parties import Appointment, Party, PartyRepository, Role
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.store import Store
from smarthub.han.wmbus_port import WMBusPort
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.hub.management import ManagementInterface
from smarthub.hub.registry import MeterRegistry, registry_commands
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.wmbus_meter import WMBusMeterSimulator

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
OLD = "LSE11111111"  # the old meter's id as the hub's data points carry it (manufacturer + ident)
OLD_KEY, NEW_KEY = bytes(range(16)), bytes(range(3, 19))
STEP = timedelta(minutes=30)  # the GDSC pulls the hub every half-hour


class Home:
    """The hub of premises P1 as it runs: radio port, registry, core, management interface."""

    def __init__(self, tmp: Path, ca: CertificateAuthority, clock: ManualClock) -> None:
        self.clock = clock
        self.registry = MeterRegistry(tmp / "meters.sqlite", clock)
        self.hub = SmartHub("H1", HistoryStore(tmp / "history.sqlite"), clock=clock, registry=self.registry)
        self.port = WMBusPort("wmbus", tz=UTC)
        self.hub.attach(self.port)
        self.mgmt = ManagementInterface("H1", ca.certificate, clock, tmp / "management.sqlite")
        for ctype, handler in {**registry_commands(self.registry), **self.hub.command_handlers()}.items():
            self.mgmt.register(ctype, handler)

    def hear(self, meter: WMBusMeterSimulator, frames: int = 3) -> None:
        for _ in range(frames):
            self.clock.advance(timedelta(minutes=2))
            self.hub.receive("wmbus", meter.frame_at(self.clock.now()))

    def close(self) -> None:
        self.mgmt.close()
        self.registry.close()
        self.hub.history.close()


async def deliver(plan: PullPlan, home: Home, now: datetime) -> list[str]:
    """Every queued command for the hub, delivered as a collector does; the types delivered."""
    done = []
    while claims := plan.claim_urgent("collector", now, 10):
        for claim in claims:
            verdict = json.loads((await home.mgmt.handle(claim.envelope or b"")).to_json())
            plan.finish_urgent(claim, True, now, result=verdict)
            done.append(str(claim.command_type))
    return done


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Any:
    store = Store(db_url)
    store.create_schema()
    store.enable_key_escrow(KeyEscrow(bytes(range(32))))  # the GDSC's KEK (gdsc/escrow.key)
    store.register_hub(
        hub_id="H1", premises_id="P1", url="https://h1", lfdi="A" * 40, meters_by_fuel=[(OLD, "water")]
    )
    repo = PartyRepository(store.engine)
    for p in (Party("OP", Role.OPERATOR), Party("I1", Role.INSTALLER), Party("S1", Role.SUPPLIER)):
        repo.add_party(p)
    repo.add_appointment(Appointment("P1", "I1", T0, T0 + timedelta(hours=4)))
    tokens = TokenStore(store.engine)
    auth = {p: {"Authorization": f"Bearer {tokens.issue(p, T0)}"} for p in ("OP", "I1", "S1")}
    clock = ManualClock(T0 + timedelta(minutes=5))
    client = TestClient(
        create_app(AccessGuard(repo, AuditLog(store.engine), clock), tokens, escrow=store.key_escrow)
    )
    ca = CertificateAuthority.create("ca", T0 - timedelta(days=1))
    op = ca.issue(PkiRole.OPERATOR, "ops", T0 - timedelta(days=1))
    signer = CommandSigner(op.private_key, op.cert_pem, store.next_command_counter)
    home = Home(tmp_path, ca, ManualClock(T0))
    yield store, client, auth, signer, home
    home.close()
    store.close()


async def test_a_meter_swapped_in_the_field_is_registered_end_to_end(world: Any) -> None:
    store, client, auth, signer, home = world
    profile = HouseholdProfile(2)
    old = WMBusMeterSimulator(11111111, "LSE", "water", OLD_KEY, profile, T0)
    new = WMBusMeterSimulator(22222222, "LSE", "water", NEW_KEY, profile, T0, initial_volume_dm3=5)
    neighbour = WMBusMeterSimulator(33333333, "LSE", "water", bytes(16), profile, T0)
    # The old meter was commissioned at the hub with its key and reads into the home's history.
    assert old.meter_id == OLD
    home.registry.add(old.meter_id, "wmbus", "water")
    home.port.keys[old.meter_id] = OLD_KEY
    home.hear(old)
    assert home.hub.mirror.meters() == [old.meter_id]
    # The installer swaps it: the new meter radiates, the hub has no key for it and does not know it.
    home.hear(new)
    home.hear(neighbour)
    pending = {p["meter"]: p for p in home.registry.pending()}
    assert pending[new.meter_id]["undecrypted"] == 3 and pending[new.meter_id]["decoded"] == 0
    assert new.meter_id not in home.hub.mirror.meters()  # nothing of it stored
    # The GDSC: the manufacturer's shipment file (the operator) and the installer's job on site.
    csv = "meter_id,manufacturer,protocol,fuel,key\n" + "".join(
        f"{m.meter_id},LSE,wmbus,water,{k.hex()}\n" for m, k in ((new, NEW_KEY), (old, OLD_KEY))
    )
    r = client.post(
        "/v1/meter-shipments?shipment=LSE-2026-03",
        content=csv,
        headers={**auth["OP"], "Content-Type": "text/csv"},
    )
    assert r.status_code == 200 and r.json()["meters"] == 2, r.text
    r = client.post(
        "/v1/premises/P1/meter-installs",
        json={"meter_id": new.meter_id, "replaces": OLD},
        headers=auth["S1"],
    )
    assert r.status_code == 403  # a supplier does not record installers' jobs
    r = client.post(
        "/v1/premises/P1/meter-installs",
        json={"meter_id": new.meter_id, "replaces": OLD},
        headers=auth["I1"],
    )
    assert r.status_code == 200, r.text
    # The GDSC pulls the hub every half-hour; what rides on each pull is all that happens.
    field, plan = FieldMeters(store.engine, escrow=store.key_escrow), PullPlan(store)
    t = T0 + timedelta(minutes=30)
    sent: list[list[str]] = []
    for _ in range(8):
        field.after_pulls(plan, signer, ["H1"], t)
        sent.append(await deliver(plan, home, t))
        confirmed = home.registry.is_active(new.meter_id)
        home.hear(new)  # the meter keeps radiating between pulls
        home.hear(neighbour)
        # Not one reading of the meter is stored before it is confirmed; from then on they are.
        assert (new.meter_id in home.hub.mirror.meters()) is confirmed
        t += STEP
        state = {p["meter_id"]: p for p in field.pending("H1")}
        if state.get(new.meter_id, {}).get("status") == "registered":
            break
    flat = [c for step in sent for c in step]
    assert flat.index("diagnostic.han_scan") < flat.index("meter.key") < flat.index("meter.replace"), sent
    row = state[new.meter_id]
    assert row["status"] == "registered" and row["authenticated"] == 1, row
    # Registered against the premises at the GDSC, commissioned at the hub, the old meter kept.
    assert store.hub_meters("H1") == {OLD: "water", new.meter_id: "water"}
    assert home.registry.is_active(new.meter_id) and not home.registry.is_active(OLD)
    assert new.meter_id in home.hub.mirror.meters() and neighbour.meter_id not in home.hub.mirror.meters()
    # The neighbour's meter, heard all along, is in no shipment: pending, never registered.
    assert state[neighbour.meter_id]["status"] == "pending"
    assert state[neighbour.meter_id]["reason"] == "in no manufacturer's shipment"
    assert not home.registry.is_active(neighbour.meter_id)
    # Once registered, no more scans ride on the hub's pulls (the job is closed).
    field.after_pulls(plan, signer, ["H1"], t + timedelta(hours=2))
    assert await deliver(plan, home, t + timedelta(hours=2)) == []
    # The installer (during the site visit) follows it through the API; a supplier may not.
    r = client.get("/v1/premises/P1/pending-meters", headers=auth["I1"])
    assert r.status_code == 200, r.text
    listed = {m["meter_id"]: m for m in r.json()["pending_meters"]}
    assert listed[new.meter_id]["status"] == "registered" and listed[new.meter_id]["authenticated"] is True
    assert listed[neighbour.meter_id]["reason"] == "in no manufacturer's shipment"
    assert listed[new.meter_id]["last_heard"].endswith(("Z", "+00:00"))  # with its offset
    assert client.get("/v1/premises/P1/pending-meters", headers=auth["S1"]).status_code == 403
    assert client.get("/v1/premises/P9/pending-meters", headers=auth["OP"]).status_code == 404


async def test_a_meter_whose_frames_do_not_decrypt_under_the_shipped_key_is_not_registered(
    world: Any,
) -> None:
    store, client, auth, signer, home = world
    profile = HouseholdProfile(2)
    impostor = WMBusMeterSimulator(44444444, "LSE", "water", bytes(range(5, 21)), profile, T0)
    csv = f"meter_id,manufacturer,protocol,fuel,key\n{impostor.meter_id},LSE,wmbus,water,{NEW_KEY.hex()}\n"
    r = client.post("/v1/meter-shipments", content=csv, headers={**auth["OP"], "Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    r = client.post(
        "/v1/premises/P1/meter-installs", json={"meter_id": impostor.meter_id}, headers=auth["OP"]
    )
    assert r.status_code == 200, r.text
    field, plan = FieldMeters(store.engine, escrow=store.key_escrow), PullPlan(store)
    home.hear(impostor)
    t = T0 + timedelta(minutes=30)
    for _ in range(5):
        field.after_pulls(plan, signer, ["H1"], t)
        await deliver(plan, home, t)
        home.hear(impostor)
        t += STEP
    (row,) = field.pending("H1")
    assert row["status"] == "keyed" and row["reason"] == "frames do not decrypt under the shipment's key"
    assert store.hub_meters("H1") == {OLD: "water"} and not home.registry.is_active(impostor.meter_id)
    assert impostor.meter_id not in home.hub.mirror.meters()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("meter,maker\nX,Y\n", "the header must be"),
        ("meter_id,manufacturer,protocol,fuel,key\nW1,lse,wmbus,water,\n", "line 2: manufacturer"),
        ("meter_id,manufacturer,protocol,fuel,key\nW1,LSE,radio,water,\n", "line 2: protocol"),
        ("meter_id,manufacturer,protocol,fuel,key\nW1,LSE,wmbus,water,00\n", "line 2: key"),
        (
            "meter_id,manufacturer,protocol,fuel,key\nW1,LSE,wmbus,water,\nW1,LSE,wmbus,water,\n",
            "line 3: meter_id",
        ),
        ("meter_id,manufacturer,protocol,fuel,key\n", "lists no meter"),
        ("meter_id,manufacturer,protocol,fuel,key\nW1,LSE,wmbus,water,,extra\n", "line 2: not 5 fields"),
    ],
)
def test_a_bad_shipment_file_is_refused_with_the_line_and_field(text: str, message: str) -> None:
    with pytest.raises(ShipmentRefused, match=message):
        parse_shipment(text)


def test_the_operator_cli_imports_a_shipment_and_lists_pending_meters(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from smarthub.cli import app
    from smarthub.sim.fleet import provision

    state = tmp_path / "state"
    provision(state, [], T0)
    ship = tmp_path / "LSE-2026-03.csv"
    ship.write_text(f"meter_id,manufacturer,protocol,fuel,key\nLSE22222222,LSE,wmbus,water,{NEW_KEY.hex()}\n")
    r = CliRunner().invoke(app, ["gdsc", "meter-shipment", "--state", str(state), "--file", str(ship)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"shipment": "LSE-2026-03.csv", "meters": 1}
    ship.write_text("meter_id,manufacturer,protocol,fuel,key\nW1,LSE,wmbus,water,00\n")
    bad = CliRunner().invoke(app, ["gdsc", "meter-shipment", "--state", str(state), "--file", str(ship)])
    assert bad.exit_code == 2 and "line 2: key" in bad.stderr
    listed = CliRunner().invoke(app, ["gdsc", "pending-meters", "--state", str(state)])
    assert listed.exit_code == 0 and listed.stdout.strip() == ""  # no hub has reported one


def test_a_shipment_file_the_csv_module_cannot_read_is_refused_by_name() -> None:
    """Found by the JSON/body fuzzing: a 131 kB field raised csv.Error, a 500 at the API."""
    from smarthub.gdsc.fleet.field_meters import ShipmentRefused, parse_shipment

    with pytest.raises(ShipmentRefused, match="not a readable CSV file"):
        parse_shipment('meter_id,manufacturer,protocol,fuel,key\n"' + "x" * 200_000 + '",KAM,wmbus,water,\n')
