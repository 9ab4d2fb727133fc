"""One GDSC: ``smarthub gdsc``, the demo and the chaos run build the same parts for the same
configuration (issue 24): the store, plan, error log, collector, scheduler, repairs and every
step of the upkeep, set the same way. The demo and chaos add only the fleet and its faults."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from smarthub.cli.gdsc import build_service
from smarthub.sim.chaos import Chaos
from smarthub.sim.demo import DemoConfig, setup, teardown

UPKEEP = [
    "renewals",
    "crl",
    "supplier changes",
    "vouchers",
    "meter replacements",
    "hub recoveries",
    "consent expiries",
    "consent redelivery",
    "tariff redelivery",
    "data services views",
    "gap estimation",
    "comparisons",
    "audit anchor",
]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_the_demo_chaos_and_smarthub_gdsc_build_the_same_gdsc(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    db = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    cfg = DemoConfig(homes=2, days=1, seconds_per_day=30, seed=4, state=tmp_path / "demo", db_url=db)
    demo = await setup(cfg)
    try:
        built = demo.gdsc.describe()
        # `smarthub gdsc --state` over the demo's state, database and seed, on the demo's clock
        # (the command reads a simulation's clock from its manifest when it is given one).
        command = build_service(cfg.state, cfg.db_url, cfg.seed, clock=demo.clock)
        try:
            assert command.describe() == built
        finally:
            await command.close()
    finally:
        await teardown(demo)
    chaos = Chaos(dataclasses.replace(cfg, state=tmp_path / "chaos"))
    run = await chaos.start()
    try:
        assert run.gdsc.describe() == built
    finally:
        for link in chaos.links.values():
            await link.close()
        await teardown(run)
    assert built["hubs"] == 2 and built["signer"] and built["collector"]["crl"]
    assert built["collector"]["error_log"] and built["scheduler"]["on_unreachable"]
    assert built["upkeep"]["steps"] == UPKEEP and built["upkeep"]["keeps_crl"]
    assert built["repairs_every_s"] == 2880.0  # 15 minutes, at least a wall second (2,880x)


async def test_a_new_collector_certificate_carries_the_pulls_and_the_commands(tmp_path: Path) -> None:
    """A collector restarted on a new certificate (the old one to be revoked) delivers the
    commands under it too: a courier left on the old one is refused by every hub that has
    learnt the revocation (found by the chaos run's collector revocation, issue 24)."""
    from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
    from smarthub.gdsc.service import collector_tls_context

    cfg = DemoConfig(homes=1, days=1, seconds_per_day=30, seed=4, state=tmp_path)
    demo = await setup(cfg)
    try:
        gdsc = demo.gdsc
        old = gdsc.scheduler.courier
        ca = CertificateAuthority.load(tmp_path / "ca")
        ca.issue(Role.COLLECTOR, "collector-2", demo.clock.now()).save(tmp_path / "gdsc", "collector")
        ctx = collector_tls_context(
            tmp_path / "gdsc" / "collector.pem",
            tmp_path / "gdsc" / "collector.key",
            tmp_path / "ca" / "ca.pem",
            None,
        )
        collector = await gdsc.replace_collector(ctx)
        assert gdsc.ssl_context is ctx and collector.ssl_context is ctx
        assert gdsc.scheduler.collector is collector and gdsc.upkeep.collector is collector
        assert gdsc.scheduler.courier is not old and gdsc.scheduler.courier is not None
        assert gdsc.scheduler.courier.ssl_context is ctx
        # And a command goes out under the new certificate: the hub answers it.
        (hub,) = gdsc.store.active_hubs()
        assert demo.signer is not None
        signed = demo.signer.command(hub.hub_id, "diagnostic.ping", {"nonce": "n1"}, demo.clock.now())
        verdict = await gdsc.scheduler.courier.deliver(hub, signed.envelope())
        assert verdict["status"] == "applied" and verdict["result"] == {"pong": "n1"}
    finally:
        await teardown(demo)


async def test_a_newer_crl_drops_the_couriers_kept_alive_connections(tmp_path: Path) -> None:
    """The upkeep applies a newer CRL to the collector's TLS context; the command courier, which
    shares that context, drops its kept-alive connections too (set up before the revocation was
    known, a reused connection is never verified again), and its next command opens a new one."""
    from smarthub.gdsc.fleet.pki import CertificateAuthority

    cfg = DemoConfig(homes=1, days=1, seconds_per_day=30, seed=4, state=tmp_path)
    demo = await setup(cfg)
    try:
        gdsc = demo.gdsc
        (hub,) = gdsc.store.active_hubs()
        assert demo.signer is not None and gdsc.scheduler.courier is not None
        courier = gdsc.scheduler.courier
        ping = demo.signer.command(hub.hub_id, "diagnostic.ping", {"nonce": "n1"}, demo.clock.now())
        assert (await courier.deliver(hub, ping.envelope()))["status"] == "applied"
        kept = courier._clients[hub.hub_id]
        ca = CertificateAuthority.load(tmp_path / "ca")  # a revocation: a newer CRL on disk
        ca.revoke(123456789, gdsc.upkeep.tls_clock.now())
        gdsc.upkeep.crl_due = None
        await gdsc.upkeep._crl()
        assert hub.hub_id not in courier._clients  # dropped with the collector's
        again = demo.signer.command(hub.hub_id, "diagnostic.ping", {"nonce": "n2"}, demo.clock.now())
        assert (await courier.deliver(hub, again.envelope()))["result"] == {"pong": "n2"}
        assert courier._clients[hub.hub_id] is not kept
    finally:
        await teardown(demo)


def test_settle_gc_freezes_the_setup_and_makes_young_collections_rarer() -> None:
    """What ``GdscService.run`` does first: the setup's objects out of the full collections, young
    collections rarer (issue 17: both were GDSC CPU per pulled hub)."""
    import gc

    from smarthub.gdsc.service import GC_YOUNG_THRESHOLD, settle_gc

    before = gc.get_threshold()
    try:
        settle_gc()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
