"""The GDSC certificate authority: issuing, identifiers, verification, revocation, persistence."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given
from hypothesis import strategies as st

from smarthub.gdsc.fleet.pki import (
    ANY_POLICY,
    INDEFINITE,
    CertificateAuthority,
    CertificateRejected,
    Role,
    lfdi,
    lfdi_from_der,
    role_of,
    sfdi,
    sfdi_from_lfdi,
    verify_certificate,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("smarthub GDSC root CA", NOW)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- IEEE 2030.5 identifiers --------------------------------------------------------------------


def test_sfdi_worked_example_from_the_standard() -> None:
    # IEEE 2030.5 §6.3.4 example: first 36 bits 0x3E4F45AB3 = 16726121139, digit sum 39 -> check 1.
    assert sfdi_from_lfdi("3E4F45AB31EDFE5B67E343E5E4562E31984E23E5") == 167261211391


def test_sfdi_is_sum_of_digits_not_luhn() -> None:
    # Luhn would give ...397 for the standard's example; and a second known vector.
    assert sfdi_from_lfdi("3e4f45ab31edfe5b67e343e5e4562e31984e23e5") == 167261211391
    assert sfdi_from_lfdi("30A13B2277D008C891E06E1D34EE728CC3A6DB2B") == 130539648399


@given(st.binary(min_size=20, max_size=20))
def test_sfdi_digit_sum_is_multiple_of_ten(raw: bytes) -> None:
    value = sfdi_from_lfdi(raw.hex().upper())
    assert sum(int(d) for d in str(value)) % 10 == 0
    assert value // 10 == int.from_bytes(raw, "big") >> (160 - 36)


def test_lfdi_and_sfdi_of_a_certificate(ca: CertificateAuthority) -> None:
    issued = ca.issue(Role.COLLECTOR, "collector-1", NOW)
    der = issued.certificate.public_bytes(serialization.Encoding.DER)
    expected = hashlib.sha256(der).hexdigest()[:40].upper()
    assert lfdi(issued.certificate) == lfdi_from_der(der) == issued.lfdi == expected
    assert len(issued.lfdi) == 40 and issued.lfdi == issued.lfdi.upper()
    assert sfdi(issued.certificate) == issued.sfdi == sfdi_from_lfdi(expected)


def test_sfdi_rejects_short_lfdi() -> None:
    with pytest.raises(ValueError):
        sfdi_from_lfdi("3E4F")


# --- the CA certificate -------------------------------------------------------------------------


def test_ca_hierarchy_is_serca_mca_mica(ca: CertificateAuthority) -> None:
    """IEEE 2030.5 §6.11: SERCA (self-signed, anyPolicy) → MCA (pathlen 1) → MICA (pathlen 0), the
    MICA issuing; every CA certificate valid indefinitely, each signed by the one above."""
    mica, (mca, serca) = ca.certificate, ca.chain
    names = [c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value for c in (mica, mca, serca)]
    assert names == ["smarthub GDSC root CA", "smarthub GDSC root CA MCA", "smarthub GDSC root CA SERCA"]
    assert serca.issuer == serca.subject and mca.issuer == serca.subject and mica.issuer == mca.subject
    for cert, signer, pathlen in ((serca, serca, None), (mca, serca, 1), (mica, mca, 0)):
        key = signer.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
        key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical and bc.value.ca and bc.value.path_length == pathlen
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
        cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        assert cert.not_valid_after_utc == INDEFINITE
        policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies)
        assert policies.critical
    assert [
        p.policy_identifier for p in serca.extensions.get_extension_for_class(x509.CertificatePolicies).value
    ] == [ANY_POLICY]
    assert x509.load_pem_x509_certificates(ca.pem) == [mica, mca, serca]  # ca.pem: the issuer first


def test_create_requires_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        CertificateAuthority.create("x", datetime(2026, 1, 1))


# --- issued certificates ------------------------------------------------------------------------


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def _eku(cert: x509.Certificate) -> x509.ExtendedKeyUsage:
    return cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value


def test_hub_certificate(ca: CertificateAuthority) -> None:
    hub = ca.issue(Role.HUB, "hub-0001", NOW, hosts=["127.0.0.1", "localhost", "::1"])
    cert = hub.certificate
    assert ExtendedKeyUsageOID.SERVER_AUTH in _eku(cert)
    assert ExtendedKeyUsageOID.CLIENT_AUTH not in _eku(cert)
    san = _san(cert)
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:smarthub:hub:hub-0001"]
    assert role_of(cert) is Role.HUB and hub.role is Role.HUB and hub.name == "hub-0001"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "hub-0001"
    assert cert.issuer == ca.certificate.subject
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert cert.not_valid_after_utc == INDEFINITE  # 2030.5: 99991231235959Z, revocation is the control
    assert hub.private_key is not None and hub.key_pem is not None
    assert hub.private_key.public_key().public_numbers() == cert.public_key().public_numbers()


@pytest.mark.parametrize("role", [Role.COLLECTOR, Role.PARTY, Role.INSTALLER])
def test_client_roles(ca: CertificateAuthority, role: Role) -> None:
    issued = ca.issue(role, "Octopus Energy", NOW)
    cert = issued.certificate
    assert list(_eku(cert)) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert _san(cert).get_values_for_type(x509.UniformResourceIdentifier) == [
        f"urn:smarthub:{role}:Octopus%20Energy"
    ]
    ou = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    assert [a.value for a in ou] == [str(role)]
    assert role_of(cert) is role
    verify_certificate(cert, ca.certificate, NOW, expected_role=role)


def test_issue_for_a_given_public_key(ca: CertificateAuthority) -> None:
    device_key = ec.generate_private_key(ec.SECP256R1())
    issued = ca.issue(Role.HUB, "hub-csr", NOW, hosts=["localhost"], public_key=device_key.public_key())
    assert issued.private_key is None and issued.key_pem is None
    assert issued.certificate.public_key().public_numbers() == device_key.public_key().public_numbers()
    verify_certificate(issued.certificate, ca.certificate, NOW, expected_role=Role.HUB)


def test_issue_refuses_other_curves(ca: CertificateAuthority) -> None:
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(ValueError, match="P-256"):
        ca.issue(Role.HUB, "hub-384", NOW, public_key=other)


def test_issued_save_writes_private_key_0600(ca: CertificateAuthority, tmp_path: Path) -> None:
    issued = ca.issue(Role.COLLECTOR, "collector-1", NOW)
    cert_path, key_path = issued.save(tmp_path / "certs", "collector")
    assert cert_path == tmp_path / "certs" / "collector.pem"
    assert key_path == tmp_path / "certs" / "collector.key"
    assert _mode(key_path) == 0o600
    assert x509.load_pem_x509_certificate(cert_path.read_bytes()) == issued.certificate
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert key.public_key().public_numbers() == issued.certificate.public_key().public_numbers()
    # No leftover temporary files from the atomic writes.
    assert sorted(p.name for p in (tmp_path / "certs").iterdir()) == ["collector.key", "collector.pem"]


def test_issued_save_without_key(ca: CertificateAuthority, tmp_path: Path) -> None:
    pub = ec.generate_private_key(ec.SECP256R1()).public_key()
    cert_path, key_path = ca.issue(Role.PARTY, "p", NOW, public_key=pub).save(tmp_path, "p")
    assert key_path is None and cert_path.exists() and not (tmp_path / "p.key").exists()


# --- verify_certificate -------------------------------------------------------------------------


def test_verify_accepts_a_good_certificate(ca: CertificateAuthority) -> None:
    issued = ca.issue(Role.COLLECTOR, "c", NOW)
    later = NOW + timedelta(days=100)
    verify_certificate(issued.certificate, ca.certificate, later, ca.crl(later), expected_role=Role.COLLECTOR)


def test_verify_rejects_foreign_ca(ca: CertificateAuthority) -> None:
    foreign = CertificateAuthority.create("evil root", NOW)
    cert = foreign.issue(Role.COLLECTOR, "c", NOW).certificate
    with pytest.raises(CertificateRejected, match="not issued by this CA"):
        verify_certificate(cert, ca.certificate, NOW)


def test_verify_rejects_foreign_ca_with_the_same_name(ca: CertificateAuthority) -> None:
    # Same subject name as the real CA: only the signature check can tell them apart.
    impostor = CertificateAuthority.create("smarthub GDSC root CA", NOW)
    assert impostor.certificate.subject == ca.certificate.subject
    cert = impostor.issue(Role.COLLECTOR, "c", NOW).certificate
    with pytest.raises(CertificateRejected, match="signature does not verify"):
        verify_certificate(cert, ca.certificate, NOW)


def test_verify_rejects_expired_and_not_yet_valid(ca: CertificateAuthority) -> None:
    cert = ca.issue(Role.COLLECTOR, "c", NOW, days=30).certificate
    verify_certificate(cert, ca.certificate, NOW + timedelta(days=29))
    with pytest.raises(CertificateRejected, match="expired"):
        verify_certificate(cert, ca.certificate, NOW + timedelta(days=31))
    with pytest.raises(CertificateRejected, match="not yet valid"):
        verify_certificate(cert, ca.certificate, NOW - timedelta(days=1))


def test_verify_rejects_revoked(tmp_path: Path) -> None:
    ca = CertificateAuthority.create("root", NOW)
    cert = ca.issue(Role.COLLECTOR, "c", NOW).certificate
    before = ca.crl(NOW)
    ca.revoke(cert.serial_number, NOW + timedelta(hours=1), x509.ReasonFlags.key_compromise)
    after = ca.crl(NOW + timedelta(hours=2))
    verify_certificate(cert, ca.certificate, NOW + timedelta(hours=2), before)
    with pytest.raises(CertificateRejected, match="revoked"):
        verify_certificate(cert, ca.certificate, NOW + timedelta(hours=2), after)


def test_verify_rejects_stale_or_foreign_crl(ca: CertificateAuthority) -> None:
    cert = ca.issue(Role.COLLECTOR, "c", NOW).certificate
    crl = ca.crl(NOW, next_update=timedelta(days=1))
    with pytest.raises(CertificateRejected, match="stale"):
        verify_certificate(cert, ca.certificate, NOW + timedelta(days=2), crl)
    foreign_crl = CertificateAuthority.create("smarthub GDSC root CA", NOW).crl(NOW)
    with pytest.raises(CertificateRejected, match="CRL is not signed by this CA"):
        verify_certificate(cert, ca.certificate, NOW, foreign_crl)


def test_verify_rejects_wrong_role(ca: CertificateAuthority) -> None:
    hub = ca.issue(Role.HUB, "hub-1", NOW, hosts=["localhost"]).certificate
    collector = ca.issue(Role.COLLECTOR, "c", NOW).certificate
    verify_certificate(hub, ca.certificate, NOW, expected_role=Role.HUB)
    verify_certificate(collector, ca.certificate, NOW, expected_role=Role.COLLECTOR)
    with pytest.raises(CertificateRejected, match=r"wrong role: expected collector.*is for hub"):
        verify_certificate(hub, ca.certificate, NOW, expected_role=Role.COLLECTOR)
    with pytest.raises(CertificateRejected, match=r"wrong role: expected hub.*is for collector"):
        verify_certificate(collector, ca.certificate, NOW, expected_role=Role.HUB)
    with pytest.raises(CertificateRejected, match="wrong role"):
        verify_certificate(collector, ca.certificate, NOW, expected_role=Role.PARTY)


# --- revocation and the CRL ---------------------------------------------------------------------


def test_crl_contents() -> None:
    ca = CertificateAuthority.create("root", NOW)
    a = ca.issue(Role.COLLECTOR, "a", NOW).certificate
    b = ca.issue(Role.PARTY, "b", NOW).certificate
    keep = ca.issue(Role.PARTY, "keep", NOW).certificate
    ca.revoke(a.serial_number, NOW, x509.ReasonFlags.key_compromise)
    ca.revoke(b.serial_number, NOW)
    ca.revoke(b.serial_number, NOW + timedelta(days=1), x509.ReasonFlags.superseded)  # no-op
    assert ca.is_revoked(a) and ca.is_revoked(b) and not ca.is_revoked(keep)

    crl = ca.crl(NOW, next_update=timedelta(days=2))
    assert crl.issuer == ca.certificate.subject
    assert crl.is_signature_valid(ca.certificate.public_key())
    assert crl.last_update_utc == NOW and crl.next_update_utc == NOW + timedelta(days=2)
    assert {r.serial_number for r in crl} == {a.serial_number, b.serial_number}
    entry_a = crl.get_revoked_certificate_by_serial_number(a.serial_number)
    assert entry_a is not None
    assert entry_a.extensions.get_extension_for_class(x509.CRLReason).value.reason is (
        x509.ReasonFlags.key_compromise
    )
    entry_b = crl.get_revoked_certificate_by_serial_number(b.serial_number)
    assert entry_b is not None and entry_b.revocation_date_utc == NOW
    assert len(entry_b.extensions) == 0  # "unspecified" is omitted (RFC 5280 §5.3.1)
    assert (
        ca.crl(NOW + timedelta(hours=1)).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        > crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    )


def test_is_revoked_ignores_other_issuers(ca: CertificateAuthority) -> None:
    other = CertificateAuthority.create("other", NOW)
    cert = other.issue(Role.PARTY, "p", NOW).certificate
    other.revoke(cert.serial_number, NOW)
    assert other.is_revoked(cert) and not ca.is_revoked(cert)


# --- persistence --------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path) -> None:
    ca = CertificateAuthority.create("smarthub GDSC root CA", NOW)
    ca.save(tmp_path / "ca")
    assert _mode(tmp_path / "ca" / "ca.key") == 0o600
    assert sorted(p.name for p in (tmp_path / "ca").iterdir()) == ["ca.key", "ca.pem", "revoked.json"]

    loaded = CertificateAuthority.load(tmp_path / "ca")
    assert loaded.certificate == ca.certificate and loaded.pem == ca.pem
    # The loaded key is the CA key: what it issues verifies against the original certificate.
    issued = loaded.issue(Role.COLLECTOR, "c", NOW)
    verify_certificate(issued.certificate, ca.certificate, NOW, expected_role=Role.COLLECTOR)


def test_revocation_survives_restart(tmp_path: Path) -> None:
    ca = CertificateAuthority.create("root", NOW)
    ca.save(tmp_path)
    victim = ca.issue(Role.COLLECTOR, "stolen", NOW).certificate
    fine = ca.issue(Role.COLLECTOR, "fine", NOW).certificate
    # Revoked after save: must be persisted by revoke() itself, without another save().
    ca.revoke(victim.serial_number, NOW + timedelta(hours=1), x509.ReasonFlags.key_compromise)

    reloaded = CertificateAuthority.load(tmp_path)
    assert reloaded.is_revoked(victim) and not reloaded.is_revoked(fine)
    assert reloaded.revoked_serials == {victim.serial_number}
    entry = reloaded.crl(NOW + timedelta(hours=2)).get_revoked_certificate_by_serial_number(
        victim.serial_number
    )
    assert entry is not None and entry.revocation_date_utc == NOW + timedelta(hours=1)
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        is x509.ReasonFlags.key_compromise
    )
    # Big serials are kept exactly (stored as decimal strings).
    assert json.loads((tmp_path / "revoked.json").read_text()).keys() == {str(victim.serial_number)}


def test_revocations_before_save_are_saved(tmp_path: Path) -> None:
    ca = CertificateAuthority.create("root", NOW)
    cert = ca.issue(Role.PARTY, "p", NOW).certificate
    ca.revoke(cert.serial_number, NOW)
    ca.save(tmp_path)
    assert CertificateAuthority.load(tmp_path).is_revoked(cert)


def test_load_refuses_mismatched_key(tmp_path: Path) -> None:
    CertificateAuthority.create("a", NOW).save(tmp_path / "a")
    CertificateAuthority.create("b", NOW).save(tmp_path / "b")
    (tmp_path / "a" / "ca.key").write_bytes((tmp_path / "b" / "ca.key").read_bytes())
    with pytest.raises(ValueError, match="does not match"):
        CertificateAuthority.load(tmp_path / "a")


def test_revocations_by_two_holders_of_the_ca_are_both_kept(tmp_path: Path) -> None:
    """The running GDSC and a ``smarthub gdsc revoke`` beside it each hold the CA loaded from
    disk: a revocation one of them writes must not undo the other's, and the CRL the first
    issues afterwards lists both."""
    CertificateAuthority.create("root", NOW).save(tmp_path)
    service, cli = CertificateAuthority.load(tmp_path), CertificateAuthority.load(tmp_path)
    cli.revoke(1001, NOW, x509.ReasonFlags.key_compromise)
    service.revoke(1002, NOW + timedelta(minutes=1))
    assert CertificateAuthority.load(tmp_path).revoked_serials == {1001, 1002}
    crl = service.crl(NOW + timedelta(minutes=2))
    assert {r.serial_number for r in crl} == {1001, 1002}
    # The first revocation's date and reason stand when the other holder revokes it again.
    service.revoke(1001, NOW + timedelta(hours=1), x509.ReasonFlags.superseded)
    entry = (
        CertificateAuthority.load(tmp_path)
        .crl(NOW + timedelta(hours=2))
        .get_revoked_certificate_by_serial_number(1001)
    )
    assert entry is not None and entry.revocation_date_utc == NOW


def test_revocations_from_concurrent_processes_are_all_kept(tmp_path: Path) -> None:
    """Two processes revoking at once (read-merge-write under the file lock): none is lost."""
    import subprocess
    import sys

    CertificateAuthority.create("root", NOW).save(tmp_path)
    script = (
        "import sys; from datetime import datetime, UTC; from pathlib import Path;"
        "from smarthub.gdsc.fleet.pki import CertificateAuthority as C\n"
        "ca = C.load(Path(sys.argv[1]))\n"
        "for s in range(int(sys.argv[2]), int(sys.argv[2]) + 60): ca.revoke(s, datetime.now(UTC))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(base)]) for base in (1, 1001)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    assert CertificateAuthority.load(tmp_path).revoked_serials == {*range(1, 61), *range(1001, 1061)}
