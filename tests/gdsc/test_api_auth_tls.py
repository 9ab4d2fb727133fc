"""Mutual TLS against the data services API served by ``smarthub gdsc api --tls`` (a real uvicorn
process on a loopback port, the WAN TLS context with the CA's CRL): a bound party certificate
authenticates its party; a revoked one, one from a foreign CA, a hub's, and an unbound one are
refused — in the handshake or with a 401 that says why."""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from gdsc.test_api_cli import free_port
from smarthub.cli import app
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.sim.fleet import provision
from smarthub.wan.tls import client_context

HANDSHAKE_REFUSED = (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, ssl.SSLError)


@dataclass
class Served:
    base: str
    state: Path
    ca_pem: Path
    certs: dict[str, tuple[Path, Path]]  # name -> (cert, key)
    lfdi: dict[str, str]
    bearer: str

    def client(self, who: str) -> httpx.Client:
        cert, key = self.certs[who]
        return httpx.Client(base_url=self.base, verify=client_context(cert, key, self.ca_pem), timeout=10)


def cli(*args: str) -> str:
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.output


def fields(output: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in output.strip().splitlines())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("tls")
    state = tmp / "state"
    now = datetime.now(UTC)
    provision(state, [], now - timedelta(minutes=5))
    s = str(state)
    bearer = cli("gdsc", "token", "--state", s, "--party", "ACME", "--role", "consumer").strip()
    cli("gdsc", "token", "--state", s, "--party", "S1", "--role", "supplier")
    certs: dict[str, tuple[Path, Path]] = {}
    lfdis: dict[str, str] = {}
    for who, party in (("good", "ACME"), ("revoked", "ACME"), ("later", "ACME"), ("supplier", "S1")):
        out = fields(cli("gdsc", "client", "--state", s, "--party", party, "--certificate", str(tmp / who)))
        certs[who] = (Path(out["certificate"]), Path(out["key"]))
        lfdis[who] = out["lfdi"]
    assert "revoked certificate" in cli("gdsc", "client", "--state", s, "--revoke", lfdis["revoked"])
    ca = CertificateAuthority.load(state / "ca")  # after the CLI's revocation, which it persisted
    ca.issue(Role.PARTY, "stranger", now).save(tmp / "stranger", "stranger")  # issued, never bound
    ca.issue(Role.HUB, "H9", now, hosts=("127.0.0.1",)).save(tmp / "hub", "hub")
    CertificateAuthority.create("foreign root", now).issue(Role.PARTY, "ACME", now).save(tmp / "foreign", "f")
    for who, stem in (("stranger", "stranger"), ("hub", "hub"), ("foreign", "f")):
        certs[who] = (tmp / who / f"{stem}.pem", tmp / who / f"{stem}.key")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "smarthub.cli", "gdsc", "api", "--state", s, "--port", str(port), "--tls"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    served = Served(f"https://127.0.0.1:{port}", state, state / "ca" / "ca.pem", certs, lfdis, bearer)
    try:
        for _ in range(200):  # wait (at most ~20 s) for uvicorn to listen
            try:
                with served.client("good") as c:
                    c.get("/openapi.json")
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
                time.sleep(0.1)
        else:
            raise AssertionError("the API did not start listening")
        yield served
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_bound_party_certificate_authenticates_its_party(served: Served) -> None:
    with served.client("good") as c:
        r = c.get("/v1/portfolio")
        assert r.status_code == 200, r.text
        assert r.json() == {"customer_id": "ACME", "sites": [], "next_after": None}
        # a bearer token of the same party on top is fine; of another party it is refused
        assert c.get("/v1/portfolio", headers={"Authorization": f"Bearer {served.bearer}"}).status_code == 200
    with served.client("supplier") as c:
        r = c.get("/v1/portfolio")
        assert r.status_code == 403 and "S1 is a supplier" in r.json()["detail"]  # the policy decides
        r = c.get("/v1/portfolio", headers={"Authorization": f"Bearer {served.bearer}"})
        assert r.status_code == 401 and "bound to party S1 but the bearer token authenticates ACME" in r.text


def test_certificate_revoked_before_start_is_refused_in_the_handshake(served: Served) -> None:
    with pytest.raises(HANDSHAKE_REFUSED), served.client("revoked") as c:
        c.get("/v1/portfolio")


def test_foreign_ca_certificate_is_refused_in_the_handshake(served: Served) -> None:
    with pytest.raises(HANDSHAKE_REFUSED), served.client("foreign") as c:
        c.get("/v1/portfolio")


def test_unbound_certificate_gets_a_specific_401(served: Served) -> None:
    with served.client("stranger") as c:
        r = c.get("/v1/portfolio")
    assert r.status_code == 401
    assert "CN=stranger" in r.json()["detail"] and "is not registered to any party" in r.json()["detail"]


def test_hub_certificate_is_refused_in_the_handshake(served: Served) -> None:
    # OpenSSL checks a client certificate's purpose: a hub's serverAuth-only certificate is no
    # client certificate (the API's own role check, test_api_auth.py, is the second line)
    with pytest.raises(HANDSHAKE_REFUSED), served.client("hub") as c:
        c.get("/v1/portfolio")


def test_certificate_revoked_while_running_is_refused_at_the_next_request(served: Served) -> None:
    with served.client("later") as c:
        assert c.get("/v1/portfolio").status_code == 200
        out = cli("gdsc", "client", "--state", str(served.state), "--revoke", served.lfdi["later"])
        assert served.lfdi["later"] in out
        r = c.get("/v1/portfolio")  # same connection: the binding is checked per request
    assert r.status_code == 401 and "was revoked on" in r.json()["detail"]
