"""`smarthub gdsc installer | installer-request | commission | revoke | decommission | replace`:
an operator runs a hub's life (issue #5) on the command line against a state directory made by
the fleet provisioning (real CA, real SQLite store, real signed requests and commands)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from sqlalchemy import select
from typer.testing import CliRunner

from smarthub.cli import app
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role, lfdi, verify_certificate
from smarthub.gdsc.fleet.registry import hubs, meters
from smarthub.gdsc.pull.tables import PENDING, urgent_work
from smarthub.gdsc.store import Store
from smarthub.model.identifiers import make_mpan
from smarthub.sim.fleet import HomeSpec, provision

MPAN = make_mpan(12, 1234567890)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    provision(state, [], datetime.now(UTC) - timedelta(minutes=5))
    return state


def run(*args: str) -> Any:
    return CliRunner().invoke(app, ["gdsc", *args])


def ok(*args: str) -> dict[str, Any]:
    r = run(*args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout.strip().splitlines()[-1])


def refused(*args: str) -> str:
    r = run(*args)
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def installer(state: Path, out: Path, name: str = "Ann Installer") -> tuple[Path, Path]:
    line = ok("installer", "--state", str(state), "--name", name, "--out", str(out))
    cert = x509.load_pem_x509_certificate(Path(line["certificate"]).read_bytes())
    assert line["lfdi"] == lfdi(cert) and line["installer"] == name
    return Path(line["certificate"]), Path(line["key"])


def request(state: Path, who: tuple[Path, Path], hub_id: str, *extra: str, premises: str = "P-1") -> Path:
    out = state.parent / f"request-{hub_id.replace('/', '_')}-{time.monotonic_ns()}.json"
    ok(
        "installer-request",
        "--state",
        str(state),
        "--installer-cert",
        str(who[0]),
        "--installer-key",
        str(who[1]),
        "--hub-id",
        hub_id,
        "--premises",
        premises,
        "--mpan",
        MPAN,
        "--meter",
        f"E-{hub_id}:electricity",
        "--meter",
        f"G-{hub_id}:gas",
        "--url",
        "https://127.0.0.1:8443",
        "--wan-link",
        "cell-0001",
        "--out",
        str(out),
        *extra,
    )
    return out


def status(store: Store, hub_id: str) -> str | None:
    with store.engine.connect() as conn:
        return conn.execute(select(hubs.c.status).where(hubs.c.hub_id == hub_id)).scalar()


def jobs(store: Store, hub_id: str) -> list[tuple[str, str | None, str]]:
    u = urgent_work
    with store.engine.connect() as conn:
        rows = conn.execute(select(u.c.kind, u.c.command_type, u.c.state).where(u.c.hub_id == hub_id))
        return sorted((r.kind, r.command_type, r.state) for r in rows)


def store_of(state: Path) -> Store:
    return Store(f"sqlite:///{state / 'gdsc' / 'gdsc.sqlite'}")


def test_commission_then_revoke_and_decommission(state: Path, tmp_path: Path) -> None:
    ann = installer(state, tmp_path / "ann")
    done = {}
    for hub_id in ("HUB-A", "HUB-B", "HUB-C"):
        req = request(state, ann, hub_id, premises=f"P-{hub_id}")
        line = ok("commission", "--state", str(state), "--request", str(req))
        assert (line["hub_id"], line["status"], line["installer"]) == (hub_id, "active", "Ann Installer")
        hub_dir = state / "hubs" / hub_id
        assert line["certificate"] == str(hub_dir / "hub.pem") and line["key"] == str(hub_dir / "hub.key")
        assert (hub_dir / "ca.pem").read_bytes() == (state / "ca" / "ca.pem").read_bytes()
        cert = x509.load_pem_x509_certificate((hub_dir / "hub.pem").read_bytes())
        ca = CertificateAuthority.load(state / "ca")
        verify_certificate(cert, ca.certificate, datetime.now(UTC), expected_role=Role.HUB)
        assert line["lfdi"] == lfdi(cert) and line["serial"] == str(cert.serial_number)
        done[hub_id] = line
    store = store_of(state)
    try:
        # Active (so every window plans it) and a first read queued at once.
        assert [h.hub_id for h in store.active_hubs()] == ["HUB-A", "HUB-B", "HUB-C"]
        assert store.hub_meters("HUB-A") == {"E-HUB-A": "electricity", "G-HUB-A": "gas"}
        assert jobs(store, "HUB-A") == [("read", None, PENDING)]

        line = ok("revoke", "--state", str(state), "--hub", "HUB-A")
        assert line["status"] == "revoked" and line["serial"] == done["HUB-A"]["serial"]
        # No command per hub: the others take the CRL with their next bulk pull (wan.crl_sync).
        assert line["reason"] == "keyCompromise" and line["pki_crl_queued"] == []
        assert status(store, "HUB-A") == "revoked"
        crl = x509.load_pem_x509_crl(Path(line["crl"]).read_bytes())
        assert Path(line["crl"]) == state / "ca" / "crl.pem"
        assert {e.serial_number for e in crl} == {int(done["HUB-A"]["serial"])}
        assert crl.is_signature_valid(CertificateAuthority.load(state / "ca").certificate.public_key())  # type: ignore[arg-type]
        # The revoked hub's pending read is dropped; the others' work is as it was.
        assert jobs(store, "HUB-A") == [("read", None, "failed")]
        assert jobs(store, "HUB-B") == [("read", None, PENDING)]
        assert [h.hub_id for h in store.active_hubs()] == ["HUB-B", "HUB-C"]

        line = ok("decommission", "--state", str(state), "--hub", "HUB-B")
        assert (line["status"], line["reason"], line["crl_entries"]) == (
            "decommissioned",
            "cessationOfOperation",
            2,
        )
        assert line["pki_crl_queued"] == [] and status(store, "HUB-B") == "decommissioned"

        # Ending a hub twice, or one that is not there, is refused and changes nothing.
        assert "hub HUB-A is not an active hub" in refused("revoke", "--state", str(state), "--hub", "HUB-A")
        line = refused("decommission", "--state", str(state), "--hub", "NOPE")
        assert "no hub 'NOPE' is registered at this GDSC" in line
        assert "unknown revocation reason 'oops'" in refused(
            "revoke", "--state", str(state), "--hub", "HUB-C", "--reason", "oops"
        )
        assert status(store, "HUB-C") == "active"
        line = ok("revoke", "--state", str(state), "--hub", "HUB-C", "--reason", "privilege-withdrawn")
        assert line["reason"] == "privilegeWithdrawn" and line["pki_crl_queued"] == []
    finally:
        store.close()


def test_refused_requests_change_nothing(state: Path, tmp_path: Path) -> None:
    ann = installer(state, tmp_path / "ann")
    foreign_ca = CertificateAuthority.create("smarthub GDSC root CA", datetime.now(UTC))
    foreign_ca.save(tmp_path / "foreign" / "ca")
    mallory = installer(tmp_path / "foreign", tmp_path / "mallory", "Mallory")
    collector = (state / "gdsc" / "collector.pem", state / "gdsc" / "collector.key")
    cases = [(mallory, "refused: foreign_ca"), (collector, "refused: wrong_role")]
    for who, code in cases:
        req = request(state, who, "HUB-X")
        assert code in refused("commission", "--state", str(state), "--request", str(req))
    # Tampered after signing.
    req = request(state, ann, "HUB-X")
    req.write_bytes(req.read_bytes().replace(b"HUB-X", b"HUB-Y"))
    assert "refused: bad_signature" in refused("commission", "--state", str(state), "--request", str(req))
    # A hub id that would put its key outside <state>/hubs is refused before the CA issues anything.
    req = request(state, ann, "../../escaped")
    line = refused("commission", "--state", str(state), "--request", str(req))
    assert "hub id '../../escaped' cannot name a directory" in line
    assert CertificateAuthority.load(state / "ca").revoked_serials == frozenset()
    # An accepted request replayed: refused (the hub exists), and nothing is issued twice.
    req = request(state, ann, "HUB-1")
    first = ok("commission", "--state", str(state), "--request", str(req))
    line = refused("commission", "--state", str(state), "--request", str(req))
    assert "refused: hub_exists: hub HUB-1 is already registered (active)" in line
    # Replayed two hours later (the state's clock moved on): refused as stale.
    req2 = request(state, ann, "HUB-2")
    (state / "fleet.json").write_text(
        json.dumps(
            {
                "sim_start": (datetime.now(UTC) + timedelta(hours=2)).isoformat(),
                "speed": 1.0,
                "wall_start": time.time(),
                "hubs": [],
            }
        )
    )
    assert "refused: stale" in refused("commission", "--state", str(state), "--request", str(req2))
    # A revoked installer's requests are refused.
    (state / "fleet.json").unlink()
    ca = CertificateAuthority.load(state / "ca")
    ann_cert = x509.load_pem_x509_certificate(ann[0].read_bytes())
    ca.revoke(ann_cert.serial_number, datetime.now(UTC))
    req3 = request(state, ann, "HUB-3")
    assert "refused: installer_revoked" in refused(
        "commission", "--state", str(state), "--request", str(req3)
    )
    store = store_of(state)
    try:
        assert [h.hub_id for h in store.active_hubs()] == ["HUB-1"] and first["hub_id"] == "HUB-1"
        with store.engine.connect() as conn:
            assert {r.hub_id for r in conn.execute(select(meters.c.hub_id))} == {"HUB-1"}
    finally:
        store.close()
    assert not (state / "hubs" / "HUB-X").exists() and not (state / "hubs" / "HUB-2").exists()


def test_bad_installer_request_input_is_named(state: Path, tmp_path: Path) -> None:
    ann = installer(state, tmp_path / "ann")
    other = installer(state, tmp_path / "bob", "Bob")
    base = ["--installer-cert", str(ann[0]), "--hub-id", "H", "--premises", "P", "--out", str(tmp_path / "r")]
    line = refused("installer-request", *base, "--installer-key", str(other[1]), "--meter", "E1:electricity")
    assert "is not the key of the certificate" in line
    line = refused("installer-request", *base, "--installer-key", str(ann[1]), "--meter", "E1:steam")
    assert "--meter 'E1:steam': give ID:fuel" in line
    line = refused(
        "installer-request", *base, "--installer-key", str(ann[1]), "--meter", "E1:gas", "--mpan", "123"
    )
    assert "MPAN" in line
    assert not (tmp_path / "r").exists()


def test_replace_moves_premises_and_meters_and_revokes_the_old_certificate(
    state: Path, tmp_path: Path
) -> None:
    ann = installer(state, tmp_path / "ann")
    ok("commission", "--state", str(state), "--request", str(request(state, ann, "HUB-OLD")))
    old = ok(
        "commission",
        "--state",
        str(state),
        "--request",
        str(request(state, ann, "HUB-OTHER", premises="P-2")),
    )
    assert old["hub_id"] == "HUB-OTHER"
    new_req = request(state, ann, "HUB-NEW", "--replaces", "HUB-OLD")
    line = refused("replace", "--state", str(state), "--old", "HUB-GONE", "--request", str(new_req))
    assert "no hub 'HUB-GONE' is registered at this GDSC" in line
    line = refused("replace", "--state", str(state), "--old", "HUB-OTHER", "--request", str(new_req))
    assert "refused: malformed: request replaces 'HUB-OLD', not 'HUB-OTHER'" in line
    line = ok("replace", "--state", str(state), "--old", "HUB-OLD", "--request", str(new_req))
    assert (line["hub_id"], line["replaced"], line["old_status"]) == ("HUB-NEW", "HUB-OLD", "decommissioned")
    assert line["pki_crl_queued"] == []  # the hubs take the CRL with their pulls
    store = store_of(state)
    try:
        assert status(store, "HUB-OLD") == "decommissioned" and status(store, "HUB-NEW") == "active"
        assert store.hub_meters("HUB-OLD") == {}
        assert set(store.hub_meters("HUB-NEW")) == {"E-HUB-NEW", "G-HUB-NEW"}
    finally:
        store.close()
    old_cert = x509.load_pem_x509_certificate((state / "hubs" / "HUB-OLD" / "hub.pem").read_bytes())
    entry = x509.load_pem_x509_crl(
        (state / "ca" / "crl.pem").read_bytes()
    ).get_revoked_certificate_by_serial_number(old_cert.serial_number)
    assert entry is not None
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.superseded
    )


def test_hubs_registered_from_the_manifest(state: Path, tmp_path: Path) -> None:
    """A provisioned hub (manifest, never commissioned) is revoked by the serial of its certificate
    in the state, or one given; a replacement through `commission` resolves it before changing."""
    spec = HomeSpec("HUB000000", "P0000000", "1 High Street", MPAN, "1234567", "dsmr", 0, 1, 0.0)
    spec2 = HomeSpec("HUB000001", "P0000001", "2 High Street", MPAN, "1234567", "dsmr", 1, 2, 0.0)
    provision(state, [spec, spec2], datetime.now(UTC) - timedelta(minutes=5))
    store = store_of(state)
    store.create_schema()
    for s in (spec, spec2):
        cert = x509.load_pem_x509_certificate((state / "hubs" / s.hub_id / "hub.pem").read_bytes())
        store.register_hub(
            hub_id=s.hub_id,
            premises_id=s.premises_id,
            url="https://127.0.0.1:1",
            lfdi=lfdi(cert),
            meters_by_fuel=[("E0", "electricity")],
        )
    store.close()
    cert0 = x509.load_pem_x509_certificate((state / "hubs" / "HUB000000" / "hub.pem").read_bytes())
    line = ok("revoke", "--state", str(state), "--hub", "HUB000000")
    assert line["serial"] == str(cert0.serial_number)
    # Its certificate file replaced by another: the serial must be given.
    (state / "hubs" / "HUB000001" / "hub.pem").write_bytes((state / "gdsc" / "collector.pem").read_bytes())
    ann = installer(state, tmp_path / "ann")
    req = request(state, ann, "HUB-NEW", "--replaces", "HUB000001", premises="P0000001")
    assert "pass the serial of its certificate" in refused(
        "commission", "--state", str(state), "--request", str(req)
    )
    line = ok("commission", "--state", str(state), "--request", str(req), "--old-serial", "0x2a")
    assert line["replaced"] == "HUB000001"
    crl = x509.load_pem_x509_crl((state / "ca" / "crl.pem").read_bytes())
    assert {e.serial_number for e in crl} == {cert0.serial_number, 0x2A}
