"""The hub's CRL cannot lock it out (issue 13 item 1): when it asks for a newer CRL, what a stale
CRL still allows (the stale-CRL policy of ``hub.management``), and the bulk pull's CRL exchange
over real mutual TLS (``wan.crl_sync``)."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from smarthub.clock import ManualClock
from smarthub.gdsc.commands import CommandSigner
from smarthub.gdsc.pki import CertificateAuthority, Role
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.hub.management import REFRESH_BEFORE, STALE_GRACE, CrlStore, ManagementInterface
from smarthub.wan.contract import crl_sync
from smarthub.wan.contract.crl_sync import CrlOffer
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context

T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)
WEEK = timedelta(days=7)


def _number(crl: x509.CertificateRevocationList) -> int:
    return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)


def _pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


def test_the_hub_asks_for_a_crl_it_lacks_one_that_misses_a_revocation_or_one_near_its_end(
    tmp_path: Path,
) -> None:
    ca = CertificateAuthority.create("root", T0)
    clock = ManualClock(T0)
    store = CrlStore(tmp_path / "crl.pem", ca.certificate, clock)
    day0 = ca.crl(T0, next_update=WEEK)
    offer0 = CrlOffer.after(None, _pem(day0))
    assert offer0.base == offer0.number == _number(day0)
    assert store.wants(offer0.number, offer0.base)  # none held
    store.install(offer0.der)
    # Re-published daily with the same revoked set: the base stays, the hub keeps what it holds
    # until it has less than REFRESH_BEFORE left.
    offer = offer0
    for day in range(1, 7):
        clock.set(T0 + timedelta(days=day))
        offer = CrlOffer.after(offer, _pem(ca.crl(clock.now(), next_update=WEEK)))
        assert offer.base == offer0.number
        left = day0.next_update_utc - clock.now()  # type: ignore[operator]
        assert store.wants(offer.number, offer.base) is (left < REFRESH_BEFORE), day
    assert not store.wants(offer0.number, offer0.base)  # never an older or the same one
    # A revocation: the base moves to the first CRL listing it, and the hub asks at once.
    later = ManualClock(T0 + timedelta(days=6, hours=1))
    store2 = CrlStore(tmp_path / "other.pem", ca.certificate, later)
    store2.install(_pem(ca.crl(later.now(), next_update=WEEK)))  # fresh: it would not ask
    victim = ca.issue(Role.PARTY, "p", T0).certificate
    ca.revoke(victim.serial_number, later.now() + timedelta(minutes=1))
    revoked = CrlOffer.after(offer, _pem(ca.crl(later.now() + timedelta(minutes=2), next_update=WEEK)))
    assert revoked.base == revoked.number and store2.wants(revoked.number, revoked.base)
    assert crl_sync.parse_offer(revoked.header) == (revoked.number, revoked.base)
    for bad in (None, "", "number=5", "number=4; base=5", "number=x; base=1"):
        assert crl_sync.parse_offer(bad) is None


async def test_a_stale_crl_admits_unlisted_signers_for_a_grace_then_only_a_newer_crl(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca = CertificateAuthority.create("root", T0)
    operator = ca.issue(Role.OPERATOR, "ops", T0)
    rogue = ca.issue(Role.OPERATOR, "stolen", T0)
    ca.revoke(rogue.certificate.serial_number, T0)
    clock = ManualClock(T0)
    mgmt = ManagementInterface("HUB1", ca.certificate, clock, tmp_path / "m.sqlite")
    crls = CrlStore(tmp_path / "crl.pem", ca.certificate, clock)
    mgmt.use_crl_store(crls)
    crls.install(_pem(ca.crl(T0, next_update=WEEK)))
    counter = iter(range(1, 100))
    assert operator.private_key is not None and rogue.private_key is not None
    good = CommandSigner(operator.private_key, operator.cert_pem, lambda _h: next(counter))
    bad = CommandSigner(rogue.private_key, rogue.cert_pem, lambda _h: next(counter))

    async def ping(signer: CommandSigner) -> tuple[str, str]:
        r = await mgmt.handle(signer.command("HUB1", "diagnostic.ping", {}, clock.now()).envelope())
        return r.status, r.code

    # A day past its nextUpdate: still taken for an unlisted signer, with a warning; the listed
    # one stays refused.
    clock.set(T0 + WEEK + timedelta(days=1))
    with caplog.at_level(logging.WARNING, logger="smarthub.hub.management"):
        assert await ping(good) == ("applied", "ok")
        assert await ping(good) == ("applied", "ok")
    assert sum("past its nextUpdate" in r.message for r in caplog.records) == 1  # once per CRL
    assert await ping(bad) == ("refused", "unknown_signer")
    # Past the grace: commands are refused ...
    clock.set(T0 + WEEK + STALE_GRACE + timedelta(hours=1))
    assert await ping(good) == ("refused", "stale_crl")
    # ... but a newer CRL is always taken, by pki.crl too, and repairs it.
    fresh = ca.crl(clock.now(), next_update=WEEK)
    body = {"crl": base64.b64encode(fresh.public_bytes(serialization.Encoding.DER)).decode()}
    r = await mgmt.handle(good.command("HUB1", "pki.crl", body, clock.now()).envelope())
    assert r.status == "applied" and crls.number == _number(fresh)
    assert await ping(good) == ("applied", "ok")
    assert await ping(bad) == ("refused", "unknown_signer")
    mgmt.close()


async def test_the_pull_exchange_puts_the_crl_only_from_a_collector(
    tmp_path: Path, wall_now: datetime
) -> None:
    ca = CertificateAuthority.create("root", wall_now - timedelta(hours=1))
    ca.save(tmp_path / "ca")
    hub_cert = ca.issue(Role.HUB, "HUB1", wall_now - timedelta(hours=1), hosts=("127.0.0.1",))
    hub_cert.save(tmp_path, "hub")
    for role, name in ((Role.COLLECTOR, "collector"), (Role.PARTY, "party")):
        ca.issue(role, name, wall_now - timedelta(hours=1)).save(tmp_path, name)
    crls = CrlStore(tmp_path / "crl.pem", ca.certificate, ManualClock(wall_now))
    history = HistoryStore(tmp_path / "h.sqlite")
    server = HubWanServer("HUB1", hub_cert.lfdi, SmartHub("HUB1", history), lambda: 0, crls=crls)
    ctx = server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    base = f"https://127.0.0.1:{await server.start('127.0.0.1', 0, ctx)}"
    offer = CrlOffer.after(None, _pem(ca.crl(wall_now, next_update=WEEK)))

    def client(name: str) -> httpx.AsyncClient:
        c = client_context(tmp_path / f"{name}.pem", tmp_path / f"{name}.key", tmp_path / "ca" / "ca.pem")
        return httpx.AsyncClient(base_url=base, verify=c, timeout=10)

    try:
        async with client("party") as party, client("collector") as collector:
            r = await party.get("/mup", headers={crl_sync.OFFER: offer.header})
            assert crl_sync.WANTED not in r.headers  # asked of collectors only
            r = await party.put(crl_sync.CRL_PATH, content=offer.der)
            assert r.status_code == 403 and crls.crl is None
            r = await collector.get("/mup", headers={crl_sync.OFFER: offer.header})
            assert r.status_code == 200 and r.headers[crl_sync.WANTED] == "0"
            r = await collector.put(crl_sync.CRL_PATH, content=b"not a CRL")
            assert r.status_code == 409 and "not a CRL" in r.text
            r = await collector.put(crl_sync.CRL_PATH, content=offer.der)
            assert r.status_code == 200 and r.json() == {"crl_number": offer.number}
            r = await collector.get("/mup", headers={crl_sync.OFFER: offer.header})
            assert crl_sync.WANTED not in r.headers  # held now
            r = await collector.put(crl_sync.CRL_PATH, content=offer.der)
            assert r.status_code == 409 and "not newer" in r.text
    finally:
        await server.stop()
        history.close()
