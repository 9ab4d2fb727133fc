"""The hub's CRL store: only a newer CRL signed by its CA is installed, atomically, and survives restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from smarthub.clock import ManualClock
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.hub.management import CrlRefused, CrlStore
from smarthub.wan.contract.bodies import PkiCrl
from smarthub.wan.contract.commands import MalformedCommand

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.DER)


def test_newer_crl_installed_older_and_foreign_refused(tmp_path: Path) -> None:
    ca = CertificateAuthority.create("root", NOW)
    seen: list[int] = []
    store = CrlStore(tmp_path / "crl.pem", ca.certificate, ManualClock(NOW + timedelta(hours=2)))
    store.listeners.append(lambda crl, _path: seen.append(len(crl)))
    first = ca.crl(NOW)
    victim = ca.issue(Role.COLLECTOR, "c", NOW).certificate
    ca.revoke(victim.serial_number, NOW + timedelta(minutes=1))
    second = ca.crl(NOW + timedelta(hours=1))
    store.install(_der(first))
    store.install(second.public_bytes(serialization.Encoding.PEM))
    assert seen == [0, 1] and store.crl == second
    with pytest.raises(CrlRefused, match="not newer"):
        store.install(_der(first))  # a replayed older CRL cannot un-revoke anything
    with pytest.raises(CrlRefused, match="not newer"):
        store.install(_der(second))
    impostor = CertificateAuthority.create("root", NOW)  # same name, other key
    with pytest.raises(CrlRefused, match="signature"):
        store.install(_der(impostor.crl(NOW + timedelta(hours=1, minutes=30))))
    with pytest.raises(CrlRefused, match="not by this hub's CA"):
        store.install(_der(CertificateAuthority.create("other", NOW).crl(NOW)))
    with pytest.raises(CrlRefused, match="not a CRL"):
        store.install(b"garbage")
    assert store.crl == second and seen == [0, 1]
    # A newer CRL that is itself past its nextUpdate is still newer: taken (issue 13 item 1; the
    # stale-CRL policy judges its age where certificates are checked).
    stale_newer = ca.crl(NOW + timedelta(hours=1, minutes=1), next_update=timedelta(minutes=10))
    store.install(_der(stale_newer))
    assert store.crl == stale_newer and seen == [0, 1, 1]
    # A restarted hub holds the last CRL it installed, and nothing else was left on disk.
    again = CrlStore(tmp_path / "crl.pem", ca.certificate, ManualClock(NOW + timedelta(hours=2)))
    assert again.crl == stale_newer and again.number == store.number
    assert [p.name for p in tmp_path.iterdir()] == ["crl.pem"]


def test_crl_command_body(tmp_path: Path) -> None:
    import base64

    ca = CertificateAuthority.create("root", NOW)
    store = CrlStore(tmp_path / "crl.pem", ca.certificate, ManualClock(NOW))
    out = store.handle(PkiCrl.parse({"crl": base64.b64encode(_der(ca.crl(NOW))).decode()}))
    assert out == {"crl_number": int(NOW.timestamp()), "revoked": 0}
    with pytest.raises(MalformedCommand, match="'crl' is not base64"):
        PkiCrl.parse({"crl": "%%%"})
    with pytest.raises(MalformedCommand, match="'crl' is missing"):
        PkiCrl.parse({})
    with pytest.raises(CrlRefused, match="not a CRL"):
        store.handle(PkiCrl(b"not DER"))
