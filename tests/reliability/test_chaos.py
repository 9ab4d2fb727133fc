"""The chaos run at test size: faults of every kind injected, the upkeep's events of a fleet's
life scheduled into it, nothing lost, no top-up lost or late, every renewal and expiry applied.

`make bench` / README: `smarthub chaos --homes 200 --days 3 --seed S` is the full size.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from smarthub.sim.chaos import chaos_db_url, kill_connections, meters_until, plan_faults, run_chaos
from smarthub.sim.demo import DemoConfig


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_a_fleet_with_faults_loses_nothing(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    db = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    # 40 s a simulated day (2,160x): a wall second of a loaded machine is 36 simulated minutes.
    cfg = DemoConfig(homes=8, days=1, seconds_per_day=40, seed=11, state=tmp_path, db_url=db)
    r = await run_chaos(cfg)
    assert r.faults == {
        "cell_outage": 1,
        "collector_restart": 1,
        "database_restart": 1,
        "clock_drift": 1,
        "feeder_outage": 1,
        "han_dropout": 1,
        "meter_moved": 2,
        "meter_replace": 1,
        "power_cut": 1,
        "substation_outage": 1,
        "wan_outage": 1,
    }
    # Every expected half-hour is stored once (the revoked hub's are expected up to what the GDSC
    # held of all its channels when it was revoked; it may hold more of some).
    assert r.readings_stored >= r.readings_expected > 0
    assert (r.lost, r.duplicates) == (0, 0)
    assert r.topups_issued > 0 and (r.topups_lost, r.topups_doubled) == (0, 0)
    assert r.pull_errors > 0  # the outages were real: pulls failed while they lasted
    assert r.estimated > 0  # power cuts and dropouts were bridged by interpolation, flagged
    # Incidents were opened and closed again as hubs recovered (the last faults' may still be
    # open when the run stops: the hubs clear them at their own pace).
    assert r.incidents_closed > 0
    # The exchanged meter: the old one's half-hours up to the swap, the new one's after (counted
    # in lost/duplicates above), and the hub's registry says which replaced which.
    assert r.meters_replaced == 1
    # The drifting clock was diagnosed and set right, more than once at 10-20 minutes a day,
    # so it never strayed far from the hub's time (the diagnosis threshold is 60 s).
    assert r.clock_resyncs >= 1
    assert 60 < r.clock_drift_max_s < 180
    # Network outages (issue 19): a feeder's and a substation's homes lost mains together; each
    # became one outage at the GDSC from the hubs' last gasps, within a minute (simulated), and
    # closed with their restoration notices; the WAN faults (a cell, a hub's link) opened none.
    assert (r.outages_injected, r.outages_detected, r.restorations_matched) == (2, 2, 2)
    # The goal is 60 simulated seconds at p95 from the cut to the outage open; the JSON
    # says whether it was met (outage_goal_met). At this test's 2,160x that is 28 wall ms, and on
    # a loaded 2-core machine (load 12) the thread holding the GIL is itself descheduled for
    # 50-200 ms at times, so the endpoint's reader waits that long for it: measured 29-450 s here
    # against 11-16 s at the CLI's 1,440x. The bound here is 10 simulated minutes (278 wall ms),
    # still far below any pull-based detection.
    assert r.outage_detect_goal_s == 60 and r.outage_detect_p95_s is not None
    assert r.outage_detect_p95_s <= 600
    assert r.false_outages == 0 and r.alerts_refused == 0
    # The upkeep's events (issue 24, sim.chaos_life), on certificates and CRLs dated on the
    # simulated clock: no command refused for a stale CRL, every daily top-up credited within a
    # day of its issue (unless a fault cut the hub off), hub certificates renewed before expiry
    # and the superseded ones revoked, a hub and the collector revoked (every remaining hub
    # learnt the collector's revocation), consents granted, revoked and expired at the hubs,
    # a change of tenancy, changes of supplier with their opening reads, a tariff change.
    assert r.commands_refused_stale_crl == 0 and r.topup_days_missed == 0
    assert r.renewals_due >= 7 and r.renewals_done == r.renewals_due
    assert r.revocations == {
        "hub": 1,
        "collector": 1,
        "collector_known_at_hubs": 7,
        "operator": 1,
        "operator_known_at_hubs": 7,
    }
    # The operator certificate rotated mid-run: what was queued under the old one signed again,
    # and no hub refused a command or a voucher for its signer.
    assert r.commands_refused_signer == 0
    assert r.consent_expiries > 0 and r.consent_expiries_applied == r.consent_expiries
    assert r.consent_revocations > 0 and r.consent_revocations_applied == r.consent_revocations
    assert r.tenancy_changes == 1
    # (An opening read can take several round trips: asked once the instant has passed, asked
    # again every half-hour until the hub holds every boundary; under a loaded machine a day at
    # 2,160x may end before the second is in. The 30-day run requires every one.)
    assert r.supplier_changes == 2 and r.opening_reads >= 1
    assert r.tariff_changes == r.tariffs_applied == 2
    # (Firmware roll-outs are scheduled into runs of 3 days or more: see the 30-day run.)
    assert r.firmware_updated == r.firmware_rolled_back == 0
    assert r.life_events_failed == 0
    # HAN media (issue 26): the radio meters' frames go through the link model of their medium.
    # A ZigBee meter moved behind two floors is diagnosed with a weak signal on 2.4 GHz, not on
    # 868 MHz; no other weak signal is diagnosed (the homes' meters are placed within reach), and
    # the planning report of the simulated homes is written.
    assert r.meters_moved == {"zigbee-2.4": True, "zigbee-868": False}
    assert r.weak_signal_diagnoses == 1
    report = json.loads((tmp_path / "han-plan.json").read_text())
    assert {h["hub"] for h in report} == {f"HUB{i:06d}" for i in (1, 2, 3, 5, 6, 7)}  # radio meters
    assert r.han_plan_misses["wmbus-868"] == 0 and r.han_plan_misses["zigbee-868"] == 0


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_half_the_fleet_on_channels_only_loses_nothing_through_channel_cuts(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """Issue 26: half the hubs listen on no port at all and are reached only through the channel
    each keeps open to the GDSC, over a cuttable link of its own; the channels are cut and
    restored (a home router's restart) and the GDSC's endpoint restarted (every channel at once),
    among all the other faults. Nothing is lost or doubled."""
    db = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    # 60 s a simulated day: urgent commands (top-ups, renewals) wait hours of simulated time in a
    # loaded machine's queue at 40 s, with or without channels; the channel hubs' add a little.
    cfg = DemoConfig(homes=8, days=1, seconds_per_day=60, seed=11, state=tmp_path, db_url=db, channel_every=2)
    r = await run_chaos(cfg)
    assert r.channel_hubs == 4
    assert r.faults["channel_cut"] == 1 and r.faults["channel_endpoint_restart"] == 1
    assert (r.lost, r.duplicates) == (0, 0) and r.readings_stored >= r.readings_expected > 0
    assert (r.topups_lost, r.topups_doubled) == (0, 0)
    # The channels were used, and re-opened after the cut and the restart: the hubs' attempts
    # during the cut were refused and backed off (the cut hub's, and every hub's at the restart).
    assert r.channels_taken > 0 and r.channels_accepted > r.channels_taken
    assert r.channel_reconnect_failures > 0
    assert r.commands_refused_stale_crl == 0 and r.topup_days_missed == 0
    assert r.renewals_done == r.renewals_due and r.life_events_failed == 0


def test_the_fault_plan_is_fixed_by_the_seed_and_ends_before_the_run() -> None:
    class Home:
        def __init__(self, i: int) -> None:
            kind = ("dsmr", "dlms+wmbus")[i % 2]
            self.spec = type("S", (), {"hub_id": f"HUB{i:06d}", "index": i, "kind": kind})()
            self.meters = [(f"E{i}", "electricity"), (f"G{i}", "gas")]

    homes = [Home(i) for i in range(40)]
    a = plan_faults(homes, 3, random.Random(4))  # type: ignore[arg-type]
    b = plan_faults(homes, 3, random.Random(4))  # type: ignore[arg-type]
    assert a == b and a != plan_faults(homes, 3, random.Random(5))  # type: ignore[arg-type]
    (outage,) = [f for f in a if f.kind == "wan_outage"]
    assert outage.length.days == 2 and outage.length.seconds == 18 * 3600  # 3 days less 6 h
    for f in a:
        assert f.start + f.length <= timedelta(days=3)
    (swap,) = [f for f in a if f.kind == "meter_replace"]
    (drift,) = [f for f in a if f.kind == "clock_drift"]
    assert swap.target != drift.target and {swap.target, drift.target} <= {
        f"HUB{i:06d}" for i in range(1, 40, 2)
    }
    assert 600 <= abs(drift.rate) <= 1200  # 10-20 minutes a day


@pytest.mark.parametrize("days", [1, 2, 3, 7, 14, 30])
def test_the_hubs_first_certificates_outlast_the_long_wan_outage(days: int) -> None:
    """The hub cut off by the run's long WAN outage (from 2 hours in, up to 3 days) is back
    half a day before the certificate it started with expires, and the renewals still fall due
    inside the settled part of the run. Before, a 7-day run issued 2-day certificates: the hub
    was away from before its renewal fell due until after its certificate expired, a renewal
    no GDSC could make, counted as missed (issue 26's 7-day run with channel hubs)."""
    from smarthub.sim.chaos import Chaos, long_wan_outage
    from smarthub.sim.chaos_life import SETTLE

    start, length = long_wan_outage(days)
    assert start + length <= timedelta(days=days) - timedelta(hours=4)
    chaos = Chaos(DemoConfig(days=days))
    validity = timedelta(days=chaos.cfg.hub_certificate_days or 0)
    assert validity >= start + length + timedelta(hours=12)
    first_due = validity - chaos.renew_before
    assert first_due + chaos.renew_spread <= timedelta(days=days) - SETTLE
    if days == 30:  # the month's plan as it was: 10-day certificates, renewed 5 days ahead
        assert (validity, chaos.renew_before) == (timedelta(days=10), timedelta(days=5))


def test_the_meters_run_past_the_end_by_a_sampling_period() -> None:
    """The last half-hour of a meter whose clock is a little slow closes only with the read
    after midnight: a sampling period past the end (30 minutes in a long run, whose meters
    stopped 10 minutes past it and lost a DLMS meter's last half-hour in a 10-day run)."""
    long = DemoConfig(days=10, sample_every=timedelta(minutes=30))
    assert meters_until(long) > long.end + timedelta(minutes=30)
    short = DemoConfig(days=1)  # the fleet's own periods (a telegram a minute, polls every 5)
    assert short.end + timedelta(minutes=5) < meters_until(short) <= short.end + timedelta(minutes=15)


def test_a_renewal_adopted_from_the_hubs_handshake_counts_as_installed() -> None:
    """A renewal whose answer the plan lost (its job given up) but which the GDSC adopted from
    the certificate the hub presents counts as installed, by the time its job ended; one the
    GDSC never held (issued while the hub was away, never installed) does not, nor does a
    refused one. (The 30-day run counted an adopted renewal, and the hub's later ones, as not
    done.)"""
    from types import SimpleNamespace

    from smarthub.sim.chaos_life import Renewal, renewal_successors

    t = datetime(2026, 3, 9, tzinfo=UTC)

    def cert(serial: int) -> Any:
        return SimpleNamespace(serial_number=serial)

    renewals = [
        Renewal("done", "applied", 1, cert(2), t),  # hub A: answered
        Renewal("failed", None, 2, cert(3), t + timedelta(hours=1)),  # A: answer lost, adopted
        Renewal("done", "applied", 3, cert(4), t + timedelta(days=4)),  # A: renewed in turn
        Renewal("failed", None, 10, cert(11), t),  # hub B: away, never installed
        Renewal("failed", None, 10, cert(12), t + timedelta(hours=2)),  # B: lost answer, held now
        Renewal("done", "refused", 20, cert(21), t),  # hub C: refused
        Renewal("failed", None, 20, cert(22), t),  # C: away, never installed
    ]
    out = renewal_successors(renewals, held={4, 12, 20})
    assert {k: (v[0].serial_number, v[1]) for k, v in out.items()} == {
        1: (2, t),
        2: (3, t + timedelta(hours=1)),
        3: (4, t + timedelta(days=4)),
        10: (12, t + timedelta(hours=2)),
    }


@pytest.mark.postgres
def test_a_database_restart_kills_only_its_own_runs_connections(pg_url: str) -> None:
    """Two chaos runs on one PostgreSQL database (several test sessions at once): one run's
    database restart must not kill the other's connections mid-ingest. A shared
    application_name did, and the PostgreSQL chaos test failed only when others ran too."""
    from sqlalchemy import create_engine, text

    ours, theirs = (create_engine(chaos_db_url(pg_url) or "") for _ in range(2))
    try:
        with ours.connect() as a, theirs.connect() as b:
            a.execute(text("SELECT 1"))
            b.execute(text("SELECT 1"))
            app = a.execute(text("SHOW application_name")).scalar_one()
            assert app != b.execute(text("SHOW application_name")).scalar_one()
            assert kill_connections(theirs, app) == 1  # asked from the other run's connection
            assert b.execute(text("SELECT 1")).scalar_one() == 1  # the other run's survives
            with pytest.raises(Exception):  # noqa: B017 - ours was terminated, whatever the driver says
                a.execute(text("SELECT 1"))
    finally:
        ours.dispose()
        theirs.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_thirty_days_of_a_fleet_and_its_upkeep(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """Issue 24's run: `smarthub chaos --homes 50 --days 30 --seed 1` (make bench). A month of
    faults and of the fleet's life: CRLs re-published and taken by the hubs for weeks (none
    refused a command as signed under a stale CRL), five rounds of certificate renewals (each
    spread over half the lead time), the operator certificate rotated, a daily top-up to every
    prepaid home credited within a day, every day. It needs the CPU of the simulated fleet in
    real time: on a machine shared with other heavy work the hubs answer late and it fails."""
    db = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    cfg = DemoConfig(homes=50, days=30, seconds_per_day=120, seed=1, state=tmp_path, db_url=db)
    r = await run_chaos(cfg)
    assert r.readings_stored >= r.readings_expected > 0
    assert (r.lost, r.duplicates, r.topups_lost, r.topups_doubled) == (0, 0, 0, 0)
    assert (r.topup_days_missed, r.commands_refused_stale_crl) == (0, 0)
    assert r.renewals_due >= 4 * 49 and r.renewals_done == r.renewals_due
    # Every hub active through the roll-out kept the good version (one away through its batch is
    # offered it again); the hub revoked later may have taken it before its revocation.
    assert r.firmware_rollout_complete and r.firmware_updated >= 49
    # The halt stops the bad version after the first or second batch's verdict: 48 or 49 hubs
    # never got it (the runs of 2026-12-08 halted after the first, 49).
    assert r.firmware_rolled_back == 1 and r.firmware_halted and r.firmware_not_offered >= 48
    assert r.consent_expiries > 0 and r.consent_expiries_applied == r.consent_expiries
    assert r.consent_revocations_applied == r.consent_revocations > 0
    assert r.supplier_changes > 0 and r.opening_reads == r.supplier_changes
    assert r.tariffs_applied == r.tariff_changes > 0
    assert r.revocations["hub"] == 1 and r.revocations["collector_known_at_hubs"] == 49
    # The operator certificate rotated: the queue signed again, nothing refused for its signer.
    assert r.revocations["operator"] == 1 and r.revocations["operator_known_at_hubs"] == 49
    # Commands are signed again only if some were queued at the rotation (0 in both runs of
    # 2026-12-08, 5 in an earlier one): what must hold is that none was refused for its signer.
    assert r.commands_refused_signer == 0
    assert r.life_events_failed == 0
