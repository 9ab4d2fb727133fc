"""A revocation on day 0 does not stop the fleet's top-ups a week later (issue 13 item 1).

Real pieces: a simulated prepaid home (a real hub serving 2030.5 over mutual TLS on loopback,
its management interface, CRL store and prepayment ledger), the GDSC service as it runs
(``GdscService.from_state``: scheduler, collector, upkeep re-publishing the CRL), the data
services' command desk issuing a top-up each day, the store on SQLite and PostgreSQL.

Time: one accelerated clock for everything, CRL dates and the hub's certificate checks
included, so ten simulated days pass in about twenty seconds. OpenSSL checks the collector's
CRLs against the real clock, so the run starts a day in the past: the CRL published at the
start and the one of the day-0 revocation are in OpenSSL's present, and OpenSSL keeps using
the newest of those while later ones are still dated ahead of it.

Before the fix the day-0 revocation reached the hub as a ``pki.crl`` command and nothing after
it did (the revoked set did not change again), so from day 7 the hub refused every command,
top-ups included, as signed under a stale CRL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from cryptography import x509
from sqlalchemy import select

from smarthub.clock import AcceleratedClock
from smarthub.gdsc.commands.desk import CommandDesk
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.commands.vouchers import vouchers
from smarthub.gdsc.fleet.lifecycle import HubLifecycle
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.readings.queries import Meter
from smarthub.gdsc.service import GdscService
from smarthub.sim.fleet import Fleet, home_specs, provision

DAYS = 10
SPEED = 40_000.0  # simulated seconds per wall second: a day in about 2 s


async def _until(check: Callable[[], bool], what: str, wall_seconds: float) -> None:
    for _ in range(int(wall_seconds / 0.05)):
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


async def test_top_ups_reach_the_hub_every_day_for_ten_days_after_a_revocation(
    tmp_path: Path, db_url: str, wall_now: datetime
) -> None:
    specs = home_specs(2, seed=5)[1:]  # a DLMS home: prepayment on its breaker meter
    provision(tmp_path, specs, wall_now - timedelta(days=3))
    sim_start = wall_now - timedelta(days=1)
    clock = AcceleratedClock(sim_start, SPEED)
    fleet = Fleet(tmp_path, specs, clock, sim_start, cert_clock=clock)
    (home,) = fleet.homes
    ledger = home.consumer.ledger
    assert ledger is not None
    await fleet.start_servers(tmp_path / "ca" / "ca.pem")
    fleet.write_manifest()
    clock.rebase()
    service = GdscService.from_state(
        tmp_path, clock, db_url, window=timedelta(hours=2), tls_clock=clock, upkeep_every=timedelta(hours=1)
    )
    store = service.store
    desk = CommandDesk.from_state(tmp_path, store)
    meter = Meter(home.spec.hub_id, next(m for m, f in home.meters if f == "electricity"), "electricity")
    end = sim_start + timedelta(days=DAYS, hours=6)
    run = asyncio.create_task(service.run(end, sim_start))
    try:
        # Day 0: the operator revokes a party's certificate (another process, as the CLI does,
        # with the operator's signer).
        ca = CertificateAuthority.load(tmp_path / "ca")
        party = ca.issue(Role.PARTY, "ACME", clock.now())
        operator = CommandSigner.from_files(
            str(tmp_path / "gdsc" / "operator.pem"), str(tmp_path / "gdsc" / "operator.key"),
            store.next_command_counter,
        )  # fmt: skip
        HubLifecycle(store, ca, PullPlan(store), operator).revoke_certificate(
            party.certificate.serial_number, clock.now()
        )
        credited_on: list[int] = []
        issued: list[str] = []
        for day in range(DAYS):
            job, voucher = desk.top_up(
                "S1", home.spec.premises_id, meter, "top-up", Decimal("5.00"), clock.now()
            )
            issued.append(voucher)

            def on_hub(v: str = voucher) -> bool:
                return any(t["voucher_id"] == v for t in ledger.top_ups())

            await _until(on_hub, f"the day-{day} top-up to be credited at the hub (job {job})", 20)
            applied = next(t["applied"] for t in ledger.top_ups() if t["voucher_id"] == voucher)
            credited_on.append(int((applied - sim_start.timestamp()) // 86400))
            await clock.sleep_until(sim_start + timedelta(days=day + 1))
        assert credited_on == list(range(DAYS))  # one top-up credited on each of the ten days
        on_hub = [t["voucher_id"] for t in ledger.top_ups() if t["voucher_id"] in issued]
        assert sorted(on_hub) == sorted(issued)  # each credited once

        def settled() -> bool:  # and the GDSC saw each one confirmed
            with store.engine.connect() as conn:
                rows = conn.execute(select(vouchers.c.status).where(vouchers.c.voucher_id.in_(issued))).all()
            return [r.status for r in rows] == ["credited"] * DAYS

        await _until(settled, "the GDSC to settle every voucher", 20)
        # The hub holds the GDSC's CRL, listing the day-0 revocation, and a current one: it took a
        # newer one every few days with its pulls, never from a command.
        assert home.crls.crl is not None and home.crls.is_revoked(party.certificate.serial_number)
        assert home.crls.crl.next_update_utc > clock.now()  # type: ignore[operator]
        refreshed = x509.load_pem_x509_crl((home.dir / "crl.pem").read_bytes())
        assert refreshed.last_update_utc > sim_start + timedelta(days=DAYS - 5)
        assert service.collector.crls_sent >= 3
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await fleet.stop()
