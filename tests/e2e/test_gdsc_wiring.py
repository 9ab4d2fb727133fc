"""The running GDSC does what its library code promises: the CRL kept current in the collectors'
TLS context, consent changes through the API queued for the hub, top-ups settled and re-sent by
the service loop, a meter's readings served across a hub replacement, meter replacements learnt.

Real pieces: simulated homes serving 2030.5 over mutual TLS on loopback, the GDSC service
(`GdscService.from_state`, its scheduler and upkeep), the store on SQLite and PostgreSQL, the
data services API app (`app_from_state`) through FastAPI's TestClient.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from sqlalchemy import select

from smarthub.clock import AcceleratedClock, ManualClock
from smarthub.gdsc.api import app_from_state
from smarthub.gdsc.api_commands import CommandDesk
from smarthub.gdsc.api_tokens import TokenStore
from smarthub.gdsc.commands import CommandSigner
from smarthub.gdsc.commissioning import CommissioningRequest, sign_request
from smarthub.gdsc.dataservices import Meter, find_meter
from smarthub.gdsc.hub_lifecycle import HubLifecycle
from smarthub.gdsc.lifecycle import move_out
from smarthub.gdsc.parties import Fuel, Party, PartyRepository, Role, SupplyPeriod, Tenancy
from smarthub.gdsc.pki import CertificateAuthority
from smarthub.gdsc.plan import DONE, FAILED, PullPlan, urgent_work
from smarthub.gdsc.service import GdscService
from smarthub.gdsc.store import Store, StoredReading, meters
from smarthub.gdsc.vouchers import vouchers
from smarthub.hub.management import ManagementInterface
from smarthub.hub.registry import MeterRegistry, registry_commands
from smarthub.sim.fleet import Fleet, home_specs, provision

SIM_START = datetime(2026, 3, 2, tzinfo=UTC)
JUL = datetime(2026, 7, 1, tzinfo=UTC)
NOW = datetime(2026, 8, 20, 12, tzinfo=UTC)


def _jobs(store: Store, ctype: str) -> list[Any]:
    with store.engine.connect() as conn:
        return conn.execute(
            select(urgent_work).where(urgent_work.c.command_type == ctype).order_by(urgent_work.c.id)
        ).all()


async def _until(check: Callable[[], bool], what: str, wall_seconds: float = 60.0) -> None:
    for _ in range(int(wall_seconds / 0.05)):
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


# --- 1. the CRL at the GDSC ---------------------------------------------------------------------


async def test_gdsc_keeps_the_crl_current_and_refuses_a_revoked_hub(
    tmp_path: Path, db_url: str, wall_now: datetime
) -> None:
    specs = home_specs(1, seed=3)
    provision(tmp_path, specs, wall_now - timedelta(minutes=10))
    ca = CertificateAuthority.load(tmp_path / "ca")
    # A CRL left from long ago: past its nextUpdate. Loaded as it is, it would stop every pull.
    stale = ca.crl(wall_now - timedelta(days=10), next_update=timedelta(days=7))
    (tmp_path / "ca" / "crl.pem").write_bytes(stale.public_bytes(serialization.Encoding.PEM))
    clock = ManualClock(SIM_START)
    fleet = Fleet(tmp_path, specs, clock, SIM_START)
    await fleet.start_servers(tmp_path / "ca" / "ca.pem")
    fleet.write_manifest()
    tls = ManualClock(wall_now - timedelta(minutes=5))
    service = GdscService.from_state(tmp_path, clock, db_url, tls_clock=tls)
    try:
        ctx = service.collector.ssl_context
        assert ctx.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF
        crl = x509.load_pem_x509_crl((tmp_path / "ca" / "crl.pem").read_bytes())
        assert crl.last_update_utc == tls.now().replace(microsecond=0)
        assert crl.next_update_utc == crl.last_update_utc + timedelta(days=7)
        assert _jobs(service.store, "pki.crl") == []  # nothing revoked: nothing for the hubs
        (hub,) = service.store.active_hubs()
        assert (await service.collector.pull(hub, SIM_START)).ok
        assert service.upkeep is not None
        # A day later the CRL is re-published; the revoked set is unchanged, so hubs get nothing.
        tls.advance(timedelta(days=1, seconds=1))
        await service.upkeep.run_once()
        again = x509.load_pem_x509_crl((tmp_path / "ca" / "crl.pem").read_bytes())
        assert again.last_update_utc > crl.last_update_utc and len(again) == 0
        assert _jobs(service.store, "pki.crl") == []
        assert (await service.collector.pull(hub, SIM_START)).ok  # OpenSSL still has a current CRL
        # Another process (the operator's tool) revokes the hub's certificate: the CRL goes to the
        # hubs, and the running collector takes it at its next upkeep and refuses the hub.
        hub_cert = x509.load_pem_x509_certificate((tmp_path / "hubs" / hub.hub_id / "hub.pem").read_bytes())
        operator = CommandSigner.from_files(
            str(tmp_path / "gdsc" / "operator.pem"),
            str(tmp_path / "gdsc" / "operator.key"),
            service.store.next_command_counter,
        )
        other = HubLifecycle(
            service.store, CertificateAuthority.load(tmp_path / "ca"), PullPlan(service.store), operator
        )
        other.revoke_certificate(hub_cert.serial_number, datetime.now(UTC))
        assert [j.hub_id for j in _jobs(service.store, "pki.crl")] == [hub.hub_id]
        await service.upkeep.run_once()
        refused = await service.collector.pull(hub, SIM_START)
        assert not refused.ok and "revoked" in (refused.error or ""), refused
    finally:
        await service.collector.close()
        await service.scheduler.close()
        service.store.close()
        await fleet.stop()
