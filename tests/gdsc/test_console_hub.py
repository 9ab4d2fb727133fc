"""The operator console's hub detail page: one hub's meters, pulls (paged), diagnoses, incidents
and work orders, certificates and outages, from the real tables (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

from aiohttp.test_utils import TestClient, TestServer

from smarthub.clock import ManualClock
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.gdsc.fleet.registry import ProvisionedCertificate
from smarthub.gdsc.incidents.console import console_app
from smarthub.gdsc.incidents.error_log import ErrorLog
from smarthub.gdsc.incidents.hub_view import certificate_facts
from smarthub.gdsc.outages.service import OutageService
from smarthub.gdsc.outages.store import StoredAlert
from smarthub.gdsc.outages.topology import TopologyStore, parse_csv
from smarthub.gdsc.store import Store
from smarthub.hub.diagnostics import DiagnosisCode
from smarthub.wan.contract.alerts import Alert, AlertKind

from .api_world import readings
from .test_error_log import LINKS, T0, detail

TOPOLOGY = (
    "premises_id,phase,feeder,secondary_substation,primary_substation\nP1,L2,F1,S1,PR1\nP2,L1,F1,S1,PR1\n"
)


def _world(db_url: str) -> tuple[Store, ErrorLog, ManualClock]:
    store = Store(db_url)
    store.create_schema()
    ca = CertificateAuthority.create("test CA", T0 - timedelta(days=400))
    cert = ca.issue(Role.HUB, "H1", T0 - timedelta(days=300), days=365)
    store.register_hub(
        hub_id="H1",
        premises_id="P1",
        url="https://h1.example:4059",
        lfdi=cert.lfdi,
        meters_by_fuel=[("E1", "electricity"), ("G1", "gas")],
        address="1 <Mill> Lane",
        mpan="1200000000001",
        wan_link="cell-A",
        provisioned=ProvisionedCertificate(
            str(cert.certificate.serial_number), cert.cert_pem.decode(), cert.certificate.not_valid_before_utc
        ),
    )
    store.register_hub(hub_id="H2", premises_id="P2", url="https://h2", lfdi="b" * 40, meters_by_fuel=[])
    store.ingest("H1", readings("H1", "E1", T0 - timedelta(days=1), 48), {})
    for i in range(120):  # more pulls than one page
        start = T0 - timedelta(minutes=30 * (120 - i))
        store.log_pull(
            hub_id="H1",
            window_start=start,
            started=start,
            finished=start + timedelta(seconds=2),
            ok=i != 119,
            readings=0 if i == 119 else 6,
            inserted=0 if i == 119 else 6,
            error="connect timeout <x>" if i == 119 else None,
        )
    log = ErrorLog(store, wan_link_of=LINKS.get)
    log.record_events("H1", [detail(1, DiagnosisCode.TAMPER, "E1")], T0)
    log.record_unreachable("H1", T0, "connect timeout")
    TopologyStore(store.engine).load(parse_csv(TOPOLOGY))
    clock = ManualClock(T0)
    return store, log, clock


async def test_the_hub_page_shows_meters_pulls_diagnoses_incidents_certificates(db_url: str) -> None:
    store, log, clock = _world(db_url)
    outages = OutageService(store.engine, clock)
    lost = T0 - timedelta(minutes=20)
    for seq, hub in enumerate(("H1", "H2"), 1):
        a = Alert(AlertKind.LAST_GASP, hub, seq, lost, lost)
        outages.handle([StoredAlert(a, T0)])
    try:
        async with TestClient(TestServer(console_app(store, list, log, clock=clock))) as client:
            view = await (await client.get("/api/hubs/H1")).json()
            page = await (await client.get("/hubs/H1")).text()
            older = await (await client.get("/api/hubs/H1?pulls_offset=100")).json()
            part = await (await client.get("/hubs/H1?part=detail")).text()
            missing = await client.get("/hubs/NOPE")
            bad = await client.get("/hubs/H1?pulls_offset=x")
            fleet = await (await client.get("/")).text()
    finally:
        store.close()
    hub = view["hub"]
    assert hub["status"] == "active" and hub["wan_link"] == "cell-A" and hub["phase"] == "L2"
    assert [n["node_id"] for n in hub["network"]] == ["F1", "S1", "PR1"]
    meters = {m["meter_id"]: m for m in view["meters"]}
    assert set(meters) == {"E1", "G1"} and meters["G1"]["channels"] == []
    assert [(c["obis"], c["readings"]) for c in meters["E1"]["channels"]] == [("1-0:1.8.0", 48)]
    pulls = view["pulls"]
    assert (pulls["total"], pulls["ok"], len(pulls["rows"])) == (120, 119, 50)
    assert pulls["rows"][0]["seq"] == 120 and pulls["rows"][0]["error"] == "connect timeout <x>"
    assert [r["seq"] for r in older["pulls"]["rows"]] == list(range(20, 0, -1))
    assert [d["label"] for d in view["diagnoses"]] == ["tamper flag"]
    kinds = sorted(i["label"] for i in view["incidents"])
    assert kinds == ["hub unreachable", "tamper flag"]
    assert any(i["work_order"] and i["work_order"]["party"] == "supplier" for i in view["incidents"])
    [cert] = view["certificates"]
    assert cert["current"] and cert["installer"] == "provisioning"
    assert cert["days_left"] == 65 and not cert["expired"] and "CN=H1" in cert["subject"]
    [outage] = view["outages"]
    assert outage["level"] == "feeder" and outage["location"] == "F1" and outage["restored_at"] is None
    # The HTML: every section, escaped, pulls paged by links.
    for section in ("Meters", "Pulls", "Diagnoses", "Incidents", "Certificates", "Outages at the premises"):
        assert f"<h2>{section}" in page
    assert "1 &lt;Mill&gt; Lane" in page and "connect timeout &lt;x&gt;" in page and "<Mill>" not in page
    assert "65 days left" in page and "href='?pulls_offset=50'" in page
    assert part.startswith("<h1>Hub H1</h1>") and "<html" not in part
    assert missing.status == 404 and bad.status == 400
    assert '<a href="/hubs/H1">H1</a>' in fleet


async def test_a_hub_without_records_says_what_it_lacks(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'gdsc.sqlite'}")
    store.create_schema()
    store.register_hub(hub_id="H/9", premises_id="P9", url="https://h9", lfdi="c" * 40, meters_by_fuel=[])
    try:
        async with TestClient(TestServer(console_app(store, list, clock=ManualClock(T0)))) as client:
            page = await (await client.get("/hubs/H%2F9")).text()
            fleet = await (await client.get("/")).text()
    finally:
        store.close()
    assert "Never pulled." in page and "No commissioning record" in page and "not on the map" in page
    assert "none registered" in page and "The hub is in no incident." in page
    assert 'href="/hubs/H%2F9"' in fleet


def test_an_expired_or_unreadable_certificate_is_shown_so() -> None:
    ca = CertificateAuthority.create("test CA", T0)
    cert = ca.issue(Role.HUB, "H1", T0, days=30)
    facts = certificate_facts(cert.cert_pem.decode(), T0 + timedelta(days=31))
    assert facts["expired"] and facts["days_left"] == -1
    assert "unreadable" in certificate_facts("not a certificate", T0)
    assert certificate_facts(None, T0) == {}


async def test_hostile_ids_are_escaped_everywhere(tmp_path: Path) -> None:
    """A hub, premises or meter id is data from the field: never markup on the console."""
    evil = '"><img src=x onerror=alert(1)>'
    store = Store(f"sqlite:///{tmp_path / 'gdsc.sqlite'}")
    store.create_schema()
    store.register_hub(
        hub_id=f"H{evil}",
        premises_id=f"P{evil}",
        url="https://h",
        lfdi="d" * 40,
        meters_by_fuel=[(f"E{evil}", "gas")],
    )
    TopologyStore(store.engine).load(
        parse_csv(f"premises_id,phase,feeder,secondary_substation,primary_substation\nP{evil},L1,F1,S1,PR1\n")
    )
    log = ErrorLog(store)
    log.record_unreachable(f"H{evil}", T0, f"refused {evil}")
    try:
        async with TestClient(TestServer(console_app(store, list, log, clock=ManualClock(T0)))) as client:
            pages = [
                await (await client.get(path)).text()
                for path in ("/", "/hubs/" + quote(f"H{evil}", safe=""), "/outages")
            ]
            rows = await (await client.get("/api/tables/incidents")).json()
    finally:
        store.close()
    for page in pages:
        assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert (
        'href="/hubs/H%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E"' in pages[0]
    )  # the incident's hub links
    assert rows["rows"][0]["hub_ids"] == [f"H{evil}"]
