"""The outage side in the GDSC's composition root: ``smarthub gdsc --alerts`` builds the UDP
endpoint and the correlator over the state's topology; the hubs' alert keys come from the
manifest's certificates and from commissioning (so a real hub's last gasp verifies, and a
renewed certificate's key replaces the old one); a silent hub that sent a last gasp is a power
outage in the error log, not a dead hub or a WAN fault. Real UDP on loopback, real signatures,
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from smarthub.clock import ManualClock
from smarthub.gdsc.fleet.commissioning import CommissioningRequest, register_manifest, sign_request
from smarthub.gdsc.fleet.lifecycle import HubLifecycle
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.gdsc.incidents.policy import HUB_POWER_OUT, HUB_UNREACHABLE
from smarthub.gdsc.incidents.tables import incidents
from smarthub.gdsc.outages.store import AlertKeys, alert_keys
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.service import GdscConfig, GdscService, parse_listen
from smarthub.gdsc.store import Store
from smarthub.hub.alerts import AlertSender, SequenceReservations, udp_transport
from smarthub.sim.fleet import home_specs, provision
from smarthub.wan.contract.alerts import Alert, AlertKind

T = datetime(2026, 3, 2, 12, tzinfo=UTC)


def _state(tmp_path: Path, homes: int = 6) -> tuple[Path, list[str]]:
    """A state directory as `smarthub demo --state` lays it out: CA, collector, operator, hub
    certificates, a manifest whose hubs carry their certificates, and a topology file."""
    state = tmp_path / "state"
    specs = home_specs(homes, 3)
    provision(state, specs, datetime.now(UTC))
    hubs = []
    for s in specs:
        pem = (state / "hubs" / s.hub_id / "hub.pem").read_bytes()
        from cryptography import x509

        from smarthub.security.certificates import lfdi_from_der

        der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
        hubs.append(
            {
                "hub_id": s.hub_id,
                "premises_id": s.premises_id,
                "url": "https://127.0.0.1:1",
                "lfdi": lfdi_from_der(der),
                "meters": [],
                "wan_link": "cell-0000",  # every hub behind one cell
                "certificate": pem.decode(),
            }
        )
    (state / "fleet.json").write_text(json.dumps({"hubs": hubs}))
    rows = "".join(f"{h['premises_id']},L1,F1,S1,P1\n" for h in hubs)
    (state / "gdsc" / "topology.csv").write_text(
        "premises_id,phase,feeder,secondary_substation,primary_substation\n" + rows
    )
    return state, [s.hub_id for s in specs]


def _sender(state: Path, hub: str, port: int, tmp_path: Path) -> AlertSender:
    key = serialization.load_pem_private_key((state / "hubs" / hub / "hub.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return AlertSender(
        hub, key, udp_transport("127.0.0.1", port), SequenceReservations(tmp_path / f"{hub}.seq")
    )


async def _settle(svc: GdscService, n: int) -> None:
    assert svc.outages is not None
    for _ in range(400):
        if svc.outages.receiver.stats.received >= n:
            break
        await asyncio.sleep(0.005)
    await svc.outages.receiver.drain()


def test_listen_addresses_parse_or_name_the_mistake() -> None:
    assert parse_listen("127.0.0.1:4059") == ("127.0.0.1", 4059)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen("4059") == ("127.0.0.1", 4059)
    assert parse_listen(":4059") == ("0.0.0.0", 4059)
    with pytest.raises(ValueError, match="must be a number"):
        parse_listen("gdsc:udp")
    with pytest.raises(ValueError, match="out of range"):
        parse_listen("127.0.0.1:70000")


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_smarthub_gdsc_with_alerts_takes_real_hubs_last_gasps_into_one_outage(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    db = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    state, hubs = _state(tmp_path)
    clock = ManualClock(T)
    from smarthub.cli.gdsc import build_service

    svc = build_service(state, db, clock=clock, alerts="127.0.0.1:0")
    try:
        described = svc.describe()["alerts"]
        assert described == {"listen": "127.0.0.1:0", "premises_on_map": 6, "error_log": True}
        port = await svc.start_alerts()
        assert port and port == await svc.start_alerts()  # started once
        for hub in hubs:
            gasp = _sender(state, hub, port, tmp_path).send(
                lambda seq, h=hub: Alert(AlertKind.LAST_GASP, h, seq, clock.now(), T - timedelta(seconds=1)),
                clock.now(),
            )
            assert gasp is not None
        await _settle(svc, len(hubs))
        assert svc.outages is not None
        stats = svc.outages.receiver.stats
        assert stats.accepted == len(hubs) and not stats.refused  # every key from the manifest
        live = svc.outages.correlator.live()
        assert [(o.level, o.location, o.customers) for o in live] == [("feeder", "F1", 6)]
        # The whole cell is silent: without the last gasps this is a WAN outage (and the WAN
        # provider's work order); with them, each hub is a power outage and nobody is sent.
        for hub in hubs:
            svc.error_log.record_unreachable(hub, clock.now(), "timeout")
        with svc.store.engine.connect() as conn:
            codes = conn.execute(select(incidents.c.code, incidents.c.action)).all()
        assert {c for c, _ in codes} == {HUB_POWER_OUT} and len(codes) == len(hubs)
        assert {a for _, a in codes} == {"monitor"} and not svc.error_log.work_orders()
        svc.error_log.record_reachable(hubs[0], clock.now())
        assert len(svc.error_log.incidents(open_only=True)) == len(hubs) - 1
        # Restored: silence is a WAN or hub fault again.
        clock.advance(timedelta(minutes=5))
        back = _sender(state, hubs[1], port, tmp_path).send(
            lambda seq: Alert(
                AlertKind.RESTORATION, hubs[1], seq, clock.now(), T - timedelta(seconds=1), 300
            ),
            clock.now(),
        )
        assert back is not None
        await _settle(svc, len(hubs) + 1)
        assert not svc.outages.power_out(hubs[1]) and svc.outages.power_out(hubs[2])
    finally:
        await svc.close()
    assert svc.outages is not None and not svc.outages.started


def test_the_endpoint_needs_a_valid_address_at_build(tmp_path: Path) -> None:
    state, _ = _state(tmp_path, homes=1)
    with pytest.raises(ValueError, match="must be a number"):
        GdscService.build(GdscConfig(state, alerts="nowhere:udp"), ManualClock(T))


def test_without_alerts_no_endpoint_and_silence_stays_a_wan_outage(tmp_path: Path) -> None:
    state, hubs = _state(tmp_path, homes=3)
    svc = GdscService.build(GdscConfig(state), ManualClock(T))
    try:
        assert svc.outages is None and svc.describe()["alerts"] is None
        for hub in hubs:
            svc.error_log.record_unreachable(hub, T, "timeout")
        assert {i["code"] for i in svc.error_log.incidents()} == {HUB_UNREACHABLE}
        assert [w["party"] for w in svc.error_log.work_orders()] == ["wan_provider"]
    finally:
        asyncio.run(svc.close())


def test_a_manifest_certificate_that_is_not_the_hubs_is_refused_and_registers_nothing(db_url: str) -> None:
    store = Store(db_url)
    store.create_schema()
    ca = CertificateAuthority.create("test CA", T)
    a, b = ca.issue(Role.HUB, "H1", T), ca.issue(Role.HUB, "H2", T)
    entry = dict(hub_id="H1", premises_id="P1", url="https://h", lfdi=a.lfdi, meters=[])
    try:
        with pytest.raises(ValueError, match="is not the hub's"):
            register_manifest(store, {"hubs": [{**entry, "certificate": b.cert_pem.decode()}]})
        assert not store.active_hubs()
        register_manifest(store, {"hubs": [{**entry, "certificate": a.cert_pem.decode()}]})
        assert set(AlertKeys(store.engine).load(["H1"])) == {"H1"}
    finally:
        store.close()


def test_commissioning_and_renewal_register_the_hubs_alert_key(db_url: str, tmp_path: Path) -> None:
    store = Store(db_url)
    store.create_schema()
    provision(tmp_path, [], T)
    ca = CertificateAuthority.load(tmp_path / "ca")
    now = datetime.now(UTC)
    who = ca.issue(Role.INSTALLER, "Ann Installer", now)
    req = CommissioningRequest(
        hub_id="H9",
        premises_id="P9",
        url="https://h9",
        hosts=("127.0.0.1",),
        meters_by_fuel=(("E9", "electricity"),),
        issued=now,
    )
    try:
        done = HubLifecycle(store, ca, PullPlan(store)).commission(
            sign_request(req, who.private_key, who.cert_pem), now
        )
        with store.engine.connect() as conn:
            row = conn.execute(select(alert_keys).where(alert_keys.c.hub_id == "H9")).one()
        assert row.lfdi == done.certificate.lfdi
        key = AlertKeys(store.engine).load(["H9"])["H9"]
        assert done.certificate.private_key is not None
        assert key.public_numbers() == done.certificate.private_key.public_key().public_numbers()
    finally:
        store.close()


def test_the_command_line_names_a_bad_endpoint_or_a_topology_without_one(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from smarthub.cli import app

    state, _ = _state(tmp_path, homes=1)
    runner = CliRunner()

    def said(output: str) -> str:  # the message, out of rich's box and its line breaks
        return " ".join(output.replace("│", " ").split())

    r = runner.invoke(
        app, ["gdsc", "--state", str(state), "--topology", str(state / "gdsc" / "topology.csv")]
    )
    assert r.exit_code != 0 and "give --alerts too" in said(r.output)
    r = runner.invoke(app, ["gdsc", "--state", str(state), "--alerts", "gdsc:udp"])
    assert r.exit_code != 0 and "the port must be a number" in said(r.output)
