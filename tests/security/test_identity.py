"""Who may talk on the WAN, in one table: certificates the hub refuses from a client, and the
GDSC's client refuses from a hub, on real mutual TLS over loopback.

Most rows are also proven one by one (with OpenSSL's reason) in ``tests/wan/test_tls.py``; this
table adds wrong-role certificates in both directions and the expired hub certificate, and
records the open gap as a strict xfail (it fails loudly once closed). The GDSC side builds its
client context as the GDSC service does, with the CA's CRL, so a revoked hub is refused. Command replay and tampering
are covered by ``tests/wan/test_management.py`` (replayed counter, tampered payload, unsigned,
foreign signer, wrong hub).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

# tests/wan is imported as the package "wan" (pytest's rootdir-relative import of tests/).
from wan.test_tls import Creds, Pki, _make_pki, assert_refused, hub_server, round_trip

from smarthub.gdsc.fleet.pki import Role
from smarthub.gdsc.service import collector_tls_context
from smarthub.wan.tls import client_context, server_context


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return _make_pki(tmp_path / "gdsc", "smarthub GDSC root CA")


@pytest.fixture
def foreign(tmp_path: Path) -> Pki:
    return _make_pki(tmp_path / "foreign", "smarthub GDSC root CA")  # same name, other key


def _client(pki: Pki, foreign: Pki, case: str) -> Creds:
    return {
        "good collector": lambda: pki.issue(Role.COLLECTOR, "good"),
        "foreign CA": lambda: foreign.issue(Role.COLLECTOR, "impostor"),
        "expired": lambda: pki.issue(Role.COLLECTOR, "old", now=pki.now - timedelta(days=400), days=365),
        "revoked": lambda: pki.issue(Role.COLLECTOR, "stolen"),
        "wrong role: a hub's certificate": lambda: pki.issue(Role.HUB, "hub-2", hosts=["127.0.0.1"]),
        "wrong role: an operator's certificate": lambda: pki.issue(Role.OPERATOR, "ops"),
    }[case]()


HUB_SIDE = [
    ("good collector", True),
    ("foreign CA", False),
    ("expired", False),
    ("revoked", False),
    ("wrong role: a hub's certificate", False),
    pytest.param(
        "wrong role: an operator's certificate",
        False,
        marks=pytest.mark.xfail(
            strict=True,
            reason="operator certificates carry clientAuth, so the hub's TLS layer accepts them; "
            "HubWanServer refuses every non-client role (tests/wan/test_server_client.py)",
        ),
    ),
]


@pytest.mark.parametrize(("case", "accepted"), HUB_SIDE)
async def test_hub_accepts_only_current_collectors_of_its_ca(
    pki: Pki, foreign: Pki, case: str, accepted: bool
) -> None:
    hub = pki.issue(Role.HUB, "hub-1", hosts=["127.0.0.1"])
    creds = _client(pki, foreign, case)
    if case == "revoked":
        pki.ca.revoke(creds.issued.certificate.serial_number, pki.now)
    client = client_context(creds.cert, creds.key, pki.ca_pem)
    async with hub_server(pki.server(hub, pki.write_crl())) as (port, seen):
        if accepted:
            assert await round_trip(port, client) == f"ok {creds.issued.lfdi}\n".encode()
        else:
            await assert_refused(port, client)
    assert seen.lfdis == ([creds.issued.lfdi] if accepted else [])


def _server(pki: Pki, foreign: Pki, case: str) -> Creds:
    return {
        "good hub": lambda: pki.issue(Role.HUB, "hub-1", hosts=["127.0.0.1"]),
        "foreign CA": lambda: foreign.issue(Role.HUB, "hub-1", hosts=["127.0.0.1"]),
        "expired": lambda: pki.issue(
            Role.HUB, "hub-1", hosts=["127.0.0.1"], now=pki.now - timedelta(days=400), days=365
        ),
        "revoked": lambda: pki.issue(Role.HUB, "hub-1", hosts=["127.0.0.1"]),
        "wrong role: a collector's certificate": lambda: pki.issue(Role.COLLECTOR, "c", hosts=["127.0.0.1"]),
        "wrong role: an operator's certificate": lambda: pki.issue(Role.OPERATOR, "o", hosts=["127.0.0.1"]),
    }[case]()


GDSC_SIDE = [
    ("good hub", True),
    ("foreign CA", False),
    ("expired", False),
    ("wrong role: a collector's certificate", False),
    ("wrong role: an operator's certificate", False),
    # The GDSC service loads the CA's CRL into its collectors' context (service.collector_tls_context).
    ("revoked", False),
]


@pytest.mark.parametrize(("case", "accepted"), GDSC_SIDE)
async def test_gdsc_client_accepts_only_current_hubs_of_its_ca(
    pki: Pki, foreign: Pki, case: str, accepted: bool
) -> None:
    creds = _server(pki, foreign, case)
    if case == "revoked":
        pki.ca.revoke(creds.issued.certificate.serial_number, pki.now)
    collector = pki.issue(Role.COLLECTOR, "collector-1")
    # As the GDSC service builds it: the CA's current CRL in the context.
    client = collector_tls_context(collector.cert, collector.key, pki.ca_pem, pki.write_crl())
    # The hub stand-in trusts the real CA, so only its own certificate can be the problem.
    async with hub_server(server_context(creds.cert, creds.key, pki.ca_pem)) as (port, seen):
        if accepted:
            assert await round_trip(port, client) == f"ok {collector.issued.lfdi}\n".encode()
        else:
            await assert_refused(port, client)
            assert seen.lfdis == []
