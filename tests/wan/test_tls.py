"""Mutual TLS on loopback: what the hubs' servers and the GDSC's clients accept and refuse.

OpenSSL checks certificate and CRL validity against the system clock, so these tests issue
certificates relative to the real current time (the library itself never reads the clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from smarthub.gdsc.fleet.pki import CertificateAuthority, IssuedCertificate, Role
from smarthub.wan.tls import PeerMismatch, check_peer, client_context, peer_lfdi, server_context

# Guards a broken test from hanging; not a timing assertion.
GUARD = 10.0


@dataclass
class Creds:
    cert: Path
    key: Path
    issued: IssuedCertificate


@dataclass
class Pki:
    dir: Path
    now: datetime
    ca: CertificateAuthority
    ca_pem: Path

    def issue(
        self,
        role: Role,
        name: str,
        *,
        now: datetime | None = None,
        hosts: Sequence[str] = (),
        days: int = 365,
    ) -> Creds:
        issued = self.ca.issue(role, name, now or self.now, hosts=hosts, days=days)
        cert, key = issued.save(self.dir, f"{role}-{name}")
        assert key is not None
        return Creds(cert, key, issued)

    def write_crl(self) -> Path:
        path = self.dir / "ca.crl.pem"
        path.write_bytes(self.ca.crl(self.now).public_bytes(serialization.Encoding.PEM))
        return path

    def server(self, creds: Creds, crl: Path | None = None) -> ssl.SSLContext:
        return server_context(creds.cert, creds.key, self.ca_pem, crl)

    def client(self, creds: Creds) -> ssl.SSLContext:
        return client_context(creds.cert, creds.key, self.ca_pem)


def _make_pki(dir: Path, name: str) -> Pki:
    now = datetime.now(UTC)
    ca = CertificateAuthority.create(name, now)
    ca.save(dir)
    return Pki(dir, now, ca, dir / "ca.pem")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return _make_pki(tmp_path / "gdsc", "smarthub GDSC root CA")


@pytest.fixture
def foreign(tmp_path: Path) -> Pki:
    # Same CA name as the real one: a verifier must go by the key, not the name.
    return _make_pki(tmp_path / "foreign", "smarthub GDSC root CA")


@dataclass
class Seen:
    lfdis: list[str]


@contextlib.asynccontextmanager
async def hub_server(ctx: ssl.SSLContext) -> AsyncIterator[tuple[int, Seen]]:
    """A hub stand-in: answers each line with ``ok <client LFDI>``."""
    seen = Seen([])

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            lfdi = peer_lfdi(writer.get_extra_info("ssl_object"))
            seen.lfdis.append(lfdi)
            await reader.readline()
            writer.write(f"ok {lfdi}\n".encode())
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, seen
    finally:
        server.close()
        await server.wait_closed()


async def round_trip(
    port: int,
    ctx: ssl.SSLContext,
    host: str = "127.0.0.1",
    after_handshake: Callable[[ssl.SSLObject], Awaitable[None] | None] | None = None,
) -> bytes:
    async def go() -> bytes:
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
        try:
            if after_handshake is not None:
                result = after_handshake(writer.get_extra_info("ssl_object"))
                if result is not None:
                    await result
            writer.write(b"ping\n")
            await writer.drain()
            return await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    return await asyncio.wait_for(go(), GUARD)


async def assert_refused(port: int, ctx: ssl.SSLContext, host: str = "127.0.0.1") -> None:
    """The connection fails: an SSL error, a reset, or (TLS 1.3 client-cert rejection) EOF.

    In TLS 1.3 the client finishes its side of the handshake before the server has checked the
    client certificate, so the refusal is only seen on the first read: hence write + read.
    """
    try:
        answer = await round_trip(port, ctx, host)
    except (ssl.SSLError, ConnectionError):
        return
    assert answer == b"", f"expected the connection to be refused, got {answer!r}"


# --- accepted -----------------------------------------------------------------------------------


async def test_collector_is_accepted_by_hub(pki: Pki) -> None:
    hub = pki.issue(Role.HUB, "hub-1", hosts=["127.0.0.1", "localhost"])
    collector = pki.issue(Role.COLLECTOR, "collector-1")
    async with hub_server(pki.server(hub)) as (port, seen):
        answer = await round_trip(port, pki.client(collector))
        # Hostname check against the DNS SAN as well as the IP SAN.
        await round_trip(port, pki.client(collector), host="localhost")
    assert answer == f"ok {collector.issued.lfdi}\n".encode()
    assert seen.lfdis == [collector.issued.lfdi] * 2


async def test_tls12_uses_an_ecdhe_ecdsa_aead_suite(pki: Pki) -> None:
    hub = pki.issue(Role.HUB, "hub-1", hosts=["127.0.0.1"])
    collector = pki.issue(Role.COLLECTOR, "collector-1")
    ctx = pki.client(collector)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    negotiated: list[tuple[str, str, int]] = []

    def record(obj: ssl.SSLObject) -> None:
        cipher = obj.cipher()
        assert cipher is not None
        negotiated.append(cipher)

    async with hub_server(pki.server(hub)) as (port, _):
        assert await round_trip(port, ctx, after_handshake=record) == f"ok {collector.issued.lfdi}\n".encode()
    [(name, version, _bits)] = negotiated
    assert version == "TLSv1.2"
    assert name.startswith("ECDHE-ECDSA-") and ("GCM" in name or "CCM8" in name)


# --- refused by the hub -------------------------------------------------------------------------


async def test_client_cert_from_foreign_ca_is_refused(pki: Pki, foreign: Pki) -> None:
    hub = pki.issue(Role.HUB, "hub-1", hosts=["127.0.0.1"])
    impostor = foreign.issue(Role.COLLECTOR, "collector-1")
    # The impostor trusts the real CA, so only its own certificate can be the problem.
    ctx = client_context(impostor.cert, impostor.key, pki.ca_pem)
    async with hub_server(pki.server(hub)) as (port, seen):
        await assert_refused(port, ctx)
    assert seen.lfdis == []


async def test_client_without_certificate_is_refused(pki: Pki) -> None:
    hub = pki.issue(Role.HUB, "hub-1", hosts=["127.0.0.1"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=pki.ca_pem)
    async with hub_server(pki.server(hub)) as (port, seen):
        await assert_refused(port, ctx)
    assert seen.lfdis == []


async def test_expired_client_cert_is_refused(pki: Pki) -> None:
    hub = pki.issue(Role.HUB, "hub-1", hosts=["127.0.0.1"])
    expired = pki.issue(Role.COLLECTOR, "old", now=pki.now - timedelta(days=400), days=365)
    async with hub_server(pki.server(hub)) as (port, seen):
        await assert_refused(port, pki.client(expired))
    assert seen.lfdis == []


async def test_revoked_client_cert_is_refused_with_crl(pki: Pki) -> None:
    hub = pki.issue(Role.HUB, "hub-1", hosts=["127.0.0.1"])
    good = pki.issue(Role.COLLECTOR, "good")
    stolen = pki.issue(Role.COLLECTOR, "stolen")

    # Without a CRL the server cannot know; that is the case the CRL option exists for.
    async with hub_server(pki.server(hub)) as (port, _):
        await round_trip(port, pki.client(stolen))

    pki.ca.revoke(stolen.issued.certificate.serial_number, pki.now)
    crl = pki.write_crl()
    async with hub_server(pki.server(hub, crl)) as (port, seen):
        await assert_refused(port, pki.client(stolen))
        assert await round_trip(port, pki.client(good)) == f"ok {good.issued.lfdi}\n".encode()
    assert seen.lfdis == [good.issued.lfdi]


# --- refused by the client ----------------------------------------------------------------------


async def test_client_refuses_hub_from_foreign_ca(pki: Pki, foreign: Pki) -> None:
    fake_hub = foreign.issue(Role.HUB, "hub-1", hosts=["127.0.0.1"])
    collector = pki.issue(Role.COLLECTOR, "collector-1")
    # The fake hub would accept the collector; the collector must still walk away.
    server_ctx = server_context(fake_hub.cert, fake_hub.key, pki.ca_pem)
    async with hub_server(server_ctx) as (port, seen):
        with pytest.raises(ssl.SSLCertVerificationError):
            await round_trip(port, pki.client(collector))
    assert seen.lfdis == []


async def test_client_refuses_hub_cert_for_another_host(pki: Pki) -> None:
    hub = pki.issue(Role.HUB, "hub-1", hosts=["hub-1.example"])
    collector = pki.issue(Role.COLLECTOR, "collector-1")
    async with hub_server(pki.server(hub)) as (port, _):
        with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
            await round_trip(port, pki.client(collector))


async def test_check_peer_refuses_a_different_valid_hub(pki: Pki) -> None:
    hub_a = pki.issue(Role.HUB, "hub-a", hosts=["127.0.0.1"])
    hub_b = pki.issue(Role.HUB, "hub-b", hosts=["127.0.0.1"])
    collector = pki.issue(Role.COLLECTOR, "collector-1")
    errors: list[PeerMismatch] = []

    def expect_a(obj: ssl.SSLObject) -> None:
        try:
            check_peer(obj, hub_a.issued.lfdi)
        except PeerMismatch as e:
            errors.append(e)

    async with hub_server(pki.server(hub_b)) as (port, _):
        await round_trip(port, pki.client(collector), after_handshake=expect_a)
        # Pinned to the right hub (LFDI in lower case is the same identifier).
        await round_trip(
            port,
            pki.client(collector),
            after_handshake=lambda obj: check_peer(obj, hub_b.issued.lfdi.lower()),
        )
    [error] = errors
    assert error.expected == hub_a.issued.lfdi and error.found == hub_b.issued.lfdi
    assert hub_a.issued.lfdi in str(error) and hub_b.issued.lfdi in str(error)


def test_context_settings(pki: Pki) -> None:
    hub = pki.issue(Role.HUB, "hub-1", hosts=["127.0.0.1"])
    collector = pki.issue(Role.COLLECTOR, "collector-1")
    server = pki.server(hub, pki.write_crl())
    client = pki.client(collector)
    for ctx in (server, client):
        assert ctx.verify_mode == ssl.CERT_REQUIRED
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
        # Only the GDSC's hierarchy is trusted (MICA, MCA, SERCA): nothing from the system store.
        assert sorted(c["subject"][0][0][1] for c in ctx.get_ca_certs()) == [
            "smarthub GDSC root CA",
            "smarthub GDSC root CA MCA",
            "smarthub GDSC root CA SERCA",
        ]
        tls12 = [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
        assert tls12 and all(name.startswith("ECDHE-ECDSA-") for name in tls12)
    assert client.check_hostname
    assert server.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF
    assert not client.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF


# --- why the hub refused: the server-side verification error ------------------------------------
# asyncio only logs a failed server handshake, so this uses blocking sockets to read OpenSSL's
# verdict on the hub's side and prove each refusal above happens for the intended reason.


def _handshake_verdict(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> str:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(GUARD)
    verdict: list[str] = []

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(GUARD)
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(5)
                tls.sendall(b"ok\n")
                verdict.append("accepted")
        except (ssl.SSLError, OSError) as e:
            verdict.append(str(e))

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with (
            socket.create_connection(listener.getsockname(), timeout=GUARD) as raw,
            client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"ping\n")
            tls.recv(10)
    except (ssl.SSLError, OSError):
        pass  # the client's view is covered by the asyncio tests above
    finally:
        thread.join(GUARD)
        listener.close()
    [result] = verdict
    return result


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("good", "accepted"),
        ("foreign", "unable to get local issuer certificate"),
        ("expired", "certificate has expired"),
        ("revoked", "certificate revoked"),
        ("none", "peer did not return a certificate"),
    ],
)
def test_hub_refusal_reason(pki: Pki, foreign: Pki, case: str, reason: str) -> None:
    hub = pki.issue(Role.HUB, "hub-1", hosts=["127.0.0.1"])
    if case == "none":
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.load_verify_locations(cafile=pki.ca_pem)
    else:
        creds = {
            "good": lambda: pki.issue(Role.COLLECTOR, "good"),
            "foreign": lambda: foreign.issue(Role.COLLECTOR, "impostor"),
            "expired": lambda: pki.issue(Role.COLLECTOR, "old", now=pki.now - timedelta(days=400), days=365),
            "revoked": lambda: pki.issue(Role.COLLECTOR, "stolen"),
        }[case]()
        if case == "revoked":
            pki.ca.revoke(creds.issued.certificate.serial_number, pki.now)
        client = client_context(creds.cert, creds.key, pki.ca_pem)
    verdict = _handshake_verdict(pki.server(hub, pki.write_crl()), client)
    assert reason in verdict


# --- a refusal is told: the hub's server sends the TLS alert ------------------------------------


def _client_sees(port: int, ctx: ssl.SSLContext) -> str:
    """What a blocking client sees of a request to the hub: the answer's first line, or the
    error (an alert names the refusal; a bare close reads as EOF)."""
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=GUARD) as raw,
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"GET /x HTTP/1.1\r\nHost: hub\r\n\r\n")
            return tls.recv(100).split(b"\r\n")[0].decode() or "EOF"
    except ssl.SSLEOFError:
        return "EOF"
    except (ssl.SSLError, OSError) as err:
        return str(err)


@pytest.mark.parametrize(
    ("case", "alert"),
    [
        ("good", "HTTP/1.1 200"),
        ("foreign", "alert unknown ca"),
        ("expired", "alert certificate expired"),
        ("revoked", "alert certificate revoked"),
        ("none", "alert certificate required"),
    ],
)
async def test_the_hub_server_tells_a_refused_client_why_with_a_tls_alert(
    pki: Pki, foreign: Pki, case: str, alert: str
) -> None:
    """Not a bare close: a client can tell a refusal from a network fault (RFC 8446 §6.2)."""
    from smarthub.wan import httpd as web

    hub = pki.issue(Role.HUB, "hub-1", hosts=["127.0.0.1"])
    if case == "none":
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.load_verify_locations(cafile=pki.ca_pem)
    else:
        creds = {
            "good": lambda: pki.issue(Role.COLLECTOR, "good"),
            "foreign": lambda: foreign.issue(Role.COLLECTOR, "impostor"),
            "expired": lambda: pki.issue(Role.COLLECTOR, "old", now=pki.now - timedelta(days=400), days=365),
            "revoked": lambda: pki.issue(Role.COLLECTOR, "stolen"),
        }[case]()
        if case == "revoked":
            pki.ca.revoke(creds.issued.certificate.serial_number, pki.now)
        client = client_context(creds.cert, creds.key, pki.ca_pem)

    async def ok(request: web.Request) -> web.Response:
        return web.Response(body=b"ok")

    app = web.Application()
    app.router.add_get("/x", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.server(hub, pki.write_crl())).start()
    try:
        seen = await asyncio.to_thread(_client_sees, int(runner.addresses[0][1]), client)
    finally:
        await runner.cleanup()
    assert alert in seen, seen


# --- the chain a peer sends: a 2030.5 peer trusts only the SERCA ---------------------------------


def _serca_only(pki: Pki) -> Path:
    """A trust file with only the root (the SERCA), as an independent 2030.5 client holds."""
    *_, root = x509.load_pem_x509_certificates(pki.ca_pem.read_bytes())
    assert root.issuer == root.subject, "the CA file ends with the self-signed SERCA"
    path = pki.dir / "serca-only.pem"
    path.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    return path


def test_certificate_files_carry_the_intermediates(pki: Pki) -> None:
    hub = pki.issue(Role.HUB, "hub-1", hosts=["127.0.0.1"])
    leaf, *chain = x509.load_pem_x509_certificates(hub.cert.read_bytes())
    assert leaf == hub.issued.certificate
    # MICA, then MCA; no root: the peer must already trust it (RFC 8446 §4.4.2).
    assert [c.subject for c in chain] == [pki.ca.certificate.subject, pki.ca.chain[0].subject]
    assert all(c.issuer != c.subject for c in chain)


@pytest.mark.parametrize("side", ["client trusts only the SERCA", "hub trusts only the SERCA"])
def test_a_peer_trusting_only_the_serca_verifies_the_chain(pki: Pki, side: str) -> None:
    hub = pki.issue(Role.HUB, "hub-1", hosts=["127.0.0.1"])
    collector = pki.issue(Role.COLLECTOR, "collector-1")
    serca = _serca_only(pki)
    if side.startswith("client"):
        server = pki.server(hub)
        client = client_context(collector.cert, collector.key, serca)
    else:
        server = server_context(hub.cert, hub.key, serca)
        client = pki.client(collector)
    assert _handshake_verdict(server, client) == "accepted"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")
def test_the_certificate_file_alone_verifies_to_the_serca_with_openssl(pki: Pki) -> None:
    """What another TLS stack sees: software that loads ``hub.pem`` as its certificate chain
    (curl, a 2030.5 client built on another library) sends what is in the file. OpenSSL's own
    verifier, given only the SERCA and the file, builds the path; with the leaf alone it cannot.
    (Our Python servers would also complete a leaf-only chain from their trust store, OpenSSL's
    auto-chaining, which is why the file is checked here and not a handshake.)"""
    hub = pki.issue(Role.HUB, "hub-1", hosts=["127.0.0.1"])
    serca = _serca_only(pki)
    leaf_only = pki.dir / "leaf-only.pem"
    leaf_only.write_bytes(hub.issued.cert_pem)

    def verify(untrusted: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["openssl", "verify", "-CAfile", str(serca), "-untrusted", str(untrusted), str(leaf_only)],
            capture_output=True,
            text=True,
            check=False,
        )

    assert verify(hub.cert).returncode == 0
    refused = verify(leaf_only)
    assert refused.returncode != 0
    assert "unable to get local issuer certificate" in refused.stdout + refused.stderr
