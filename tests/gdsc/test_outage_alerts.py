"""Last gasps over real UDP on loopback into the GDSC: stored once, correlated into one outage per
fault location, closed by restorations; forged, replayed, unsigned and unknown alerts refused and
logged; a flooding hub throttled. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import update

from smarthub.clock import ManualClock
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.gdsc.fleet.registry import hubs
from smarthub.gdsc.outages.correlate import Change, Outage
from smarthub.gdsc.outages.receiver import LOGGED_PER_KEY
from smarthub.gdsc.outages.service import OutageService
from smarthub.gdsc.outages.store import OutageRows, OutageStore
from smarthub.gdsc.outages.topology import TopologyStore, parse_csv
from smarthub.gdsc.store import Store
from smarthub.hub.alerts import BURST, REFILL, AlertSender, SequenceReservations, udp_transport
from smarthub.hub.mains import MainsMonitor
from smarthub.meters.dsmr import data_points, decode_telegram
from smarthub.sim.dsmr_meter import DsmrMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.wan.contract.alerts import Alert, AlertKind, Cause, sign

T = datetime(2026, 3, 2, 12, tzinfo=UTC)
# Two feeders of 4 homes under secondary S1; a third feeder under S2. Primary P1.
TOPOLOGY = "premises_id,phase,feeder,secondary_substation,primary_substation,x,y\n" + "".join(
    f"P{i},L{i % 3 + 1},F{i // 4},S{1 if i < 8 else 2},P1,{i * 10},{i // 4 * 50}\n" for i in range(12)
)


async def _world(tmp_path: Path, db_url: str):
    store = Store(db_url)
    store.create_schema()
    ca = CertificateAuthority.create("test CA", T)
    keys = {}
    for i in range(12):
        issued = ca.issue(Role.HUB, f"H{i}", T)
        store.register_hub(
            hub_id=f"H{i}", premises_id=f"P{i}", url="https://x", lfdi=issued.lfdi, meters_by_fuel=[]
        )
        keys[f"H{i}"] = (issued, serialization.load_pem_private_key(issued.key_pem, None))
    TopologyStore(store.engine).load(parse_csv(TOPOLOGY))
    clock = ManualClock(T)
    svc = OutageService(store.engine, clock, refill=timedelta(minutes=1), burst=4)
    for hub, (issued, _) in keys.items():
        svc.keys.register(hub, issued.cert_pem, issued.lfdi)
    port = await svc.start()
    senders = {
        hub: AlertSender(
            hub, key, udp_transport("127.0.0.1", port), SequenceReservations(tmp_path / f"{hub}.sqlite")
        )
        for hub, (_, key) in keys.items()
    }
    return store, svc, clock, senders, port


async def _settle(svc: OutageService, n: int) -> None:
    for _ in range(400):
        if svc.receiver.stats.received >= n:
            break
        await asyncio.sleep(0.005)
    await svc.receiver.drain()


async def test_a_feeder_outage_is_one_outage_and_closes_on_restoration(tmp_path: Path, db_url: str) -> None:
    store, svc, clock, senders, _ = await _world(tmp_path, db_url)
    try:
        monitors = {h: MainsMonitor(h, s) for h, s in senders.items()}
        for h in ("H0", "H1", "H2"):  # three of feeder F0's four homes lose mains
            monitors[h].supply_lost(T)
        await _settle(svc, 3)
        live = svc.store.find(live=True)
        assert [(o["level"], o["location"], o["customers"], o["premises_heard"]) for o in live] == [
            ("feeder", "F0", 4, 3)
        ]
        # A single home elsewhere is a single-premises fault, not part of the feeder's outage.
        monitors["H9"].supply_lost(T)
        await _settle(svc, 4)
        assert sorted((o["level"], o["location"]) for o in svc.store.find(live=True)) == [
            ("feeder", "F0"),
            ("premises", "P9"),
        ]
        clock.advance(timedelta(minutes=47))
        for h in ("H0", "H1", "H2"):
            monitors[h].supply_restored(clock.now())
            monitors[h].tick(clock.now() + timedelta(minutes=5))  # no meter record: the hub's own times
        await _settle(svc, 7)
        (closed,) = svc.store.find(live=False, location="F0")
        assert closed["restored"] == 3 and closed["duration_s"] == 47 * 60
        assert [(o["level"], o["location"]) for o in svc.store.find(live=True)] == [("premises", "P9")]
        assert svc.store.count_alerts() == 7
    finally:
        await svc.close()
        store.close()


async def test_two_feeders_of_a_substation_make_one_substation_outage(tmp_path: Path, db_url: str) -> None:
    store, svc, _clock, senders, _ = await _world(tmp_path, db_url)
    try:
        for i in range(8):
            MainsMonitor(f"H{i}", senders[f"H{i}"]).supply_lost(T)
        await _settle(svc, 8)
        assert [(o["level"], o["location"], o["customers"]) for o in svc.store.find(live=True)] == [
            ("secondary", "S1", 8)
        ]
    finally:
        await svc.close()
        store.close()


async def test_forged_replayed_unsigned_unknown_and_flooding_alerts_are_refused_and_logged(
    tmp_path: Path, db_url: str
) -> None:
    store, svc, _clock, senders, port = await _world(tmp_path, db_url)
    sent: list[bytes] = []
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=("127.0.0.1", port)
    )
    try:
        good = senders["H3"]
        good.transport = lambda d: (sent.append(d), transport.sendto(d))  # type: ignore[func-returns-value]
        MainsMonitor("H3", good).supply_lost(T)
        await _settle(svc, 1)
        transport.sendto(sent[0])  # replayed
        stranger = ec.generate_private_key(ec.SECP256R1())
        transport.sendto(sign(Alert(AlertKind.LAST_GASP, "H4", 10**6, T, T), stranger))  # forged for H4
        unsigned = sign(Alert(AlertKind.LAST_GASP, "H5", 10**6, T, T), stranger)[:-64] + bytes(64)
        transport.sendto(unsigned)
        transport.sendto(sign(Alert(AlertKind.LAST_GASP, "NOBODY", 1, T, T), stranger))  # unknown hub
        transport.sendto(b"not an alert")
        key = senders["H6"].key
        for n in range(20):  # a hub flooding: burst of 4 with 1/min refill, no time passes
            transport.sendto(sign(Alert(AlertKind.LAST_GASP, "H6", 5000 + n, T, T), key))
        await _settle(svc, 26)
        refused = svc.receiver.stats.refused
        assert refused == {"replayed": 1, "forged": 2, "unknown_hub": 1, "malformed": 1, "throttled": 16}
        logged = {(r["hub_id"], r["reason"]): r["count"] for r in svc.store.refusals()}
        assert logged == {
            ("H3", "replayed"): 1,
            ("H4", "forged"): 1,
            ("H5", "forged"): 1,
            ("NOBODY", "unknown_hub"): 1,
            ("", "malformed"): 1,
            ("H6", "throttled"): 16,
        }
        assert svc.store.count_alerts() == 1 + 4  # H3's once, H6's burst
    finally:
        transport.close()
        await svc.close()
        store.close()


def test_sequence_numbers_keep_rising_across_restarts_without_a_write_per_alert(tmp_path: Path) -> None:
    s = SequenceReservations(tmp_path / "a.sqlite")
    first = [s.take() for _ in range(3)]
    s.close()
    s = SequenceReservations(tmp_path / "a.sqlite")  # a power cut after three alerts
    assert s.take() > max(first)
    s.close()


async def test_forgeries_are_logged_once_per_hub_and_reason_and_spend_none_of_the_hubs_allowance(
    tmp_path: Path, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store, svc, _clock, senders, port = await _world(tmp_path, db_url)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=("127.0.0.1", port)
    )
    try:
        stranger = ec.generate_private_key(ec.SECP256R1())
        with caplog.at_level(logging.WARNING, logger="smarthub.gdsc.outages.receiver"):
            for n in range(10):  # the same forger ten times
                transport.sendto(sign(Alert(AlertKind.LAST_GASP, "H4", 100 + n, T, T), stranger))
            await _settle(svc, 10)
        lines = [r.getMessage() for r in caplog.records if "alert refused" in r.getMessage()]
        assert len(lines) == LOGGED_PER_KEY and all("(forged) from hub 'H4'" in m for m in lines)
        assert {(r["hub_id"], r["reason"]): r["count"] for r in svc.store.refusals()} == {
            ("H4", "forged"): 10
        }
        # Forgeries spent none of H4's allowance: its own last gasp, just after, opens its outage.
        MainsMonitor("H4", senders["H4"]).supply_lost(T)
        await _settle(svc, 11)
        assert svc.store.count_alerts() == 1
        assert [(o["level"], o["location"]) for o in svc.store.find(live=True)] == [("premises", "P4")]
    finally:
        transport.close()
        await svc.close()
        store.close()


async def test_a_stale_alert_is_refused_even_with_a_good_signature(tmp_path: Path, db_url: str) -> None:
    store, svc, _clock, senders, port = await _world(tmp_path, db_url)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=("127.0.0.1", port)
    )
    try:
        key = senders["H2"].key
        old = T - timedelta(minutes=11)  # recorded and sent again 11 minutes later (MAX_SKEW 10)
        transport.sendto(sign(Alert(AlertKind.LAST_GASP, "H2", 7, old, old), key))
        await _settle(svc, 1)
        assert svc.receiver.stats.refused == {"stale": 1}
        assert svc.store.count_alerts() == 0 and svc.store.find(live=True) == []
    finally:
        transport.close()
        await svc.close()
        store.close()


async def test_a_replay_after_the_gdsc_restarts_is_refused_before_it_is_correlated(
    tmp_path: Path, db_url: str
) -> None:
    """The replay windows of a restarted endpoint start from the stored sequence numbers: a last
    gasp replayed after the premises was restored must not open a false outage."""
    store, svc, clock, senders, _ = await _world(tmp_path, db_url)
    sent: list[bytes] = []
    good = senders["H9"]
    real = good.transport
    good.transport = lambda d: (sent.append(d), real(d))  # type: ignore[func-returns-value]
    monitor = MainsMonitor("H9", good)
    monitor.supply_lost(T)
    await _settle(svc, 1)
    clock.advance(timedelta(minutes=4))
    monitor.supply_restored(clock.now())
    monitor.tick(clock.now() + timedelta(minutes=5))
    await _settle(svc, 2)
    await svc.close()
    assert svc.store.find(live=True) == []

    again = OutageService(store.engine, clock)  # the GDSC restarted, within the freshness window
    port = await again.start()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=("127.0.0.1", port)
    )
    try:
        transport.sendto(sent[0])  # the last gasp, replayed
        await _settle(again, 1)
        assert again.receiver.stats.refused == {"replayed": 1}
        assert again.store.find(live=True) == [] and not again.power_out("H9")
        assert again.store.count_alerts() == 2
    finally:
        transport.close()
        await again.close()
        store.close()


async def test_a_revoked_hubs_alerts_are_refused_once_the_endpoint_rereads_the_keys(
    tmp_path: Path, db_url: str
) -> None:
    store, svc, _clock, senders, _ = await _world(tmp_path, db_url)
    try:
        with store.engine.begin() as conn:
            conn.execute(update(hubs).where(hubs.c.hub_id == "H7").values(status="revoked"))
        svc.keys.refresh_all()  # what the endpoint's writer does every few minutes
        MainsMonitor("H7", senders["H7"]).supply_lost(T)
        await _settle(svc, 1)
        assert svc.receiver.stats.refused == {"unknown_hub": 1}
        assert svc.store.find(live=True) == []
    finally:
        await svc.close()
        store.close()


def test_a_hub_with_a_flapping_supply_throttles_itself() -> None:
    """The hub's own rate limit: BURST alerts at once, then one per REFILL of its clock."""
    out: list[bytes] = []
    key = ec.generate_private_key(ec.SECP256R1())

    class Numbers:
        n = 0

        def take(self) -> int:
            self.n += 1
            return self.n

        def extend(self) -> None:
            pass

    sender = AlertSender("H1", key, out.append, Numbers())  # type: ignore[arg-type]
    monitor = MainsMonitor("H1", sender)
    t = T
    for _ in range(10):  # mains on and off every second
        monitor.supply_lost(t)
        monitor.supply_restored(t + timedelta(milliseconds=500))
        t += timedelta(seconds=1)
    # The restorations wait for the meter's record; flapping sends each pending one with the next
    # last gasp: 19 alerts wanted, BURST sent.
    assert len(out) == BURST and sender.suppressed > 0
    t += REFILL
    monitor.supply_lost(t)
    assert len(out) == BURST + 1


def test_the_restoration_takes_the_meters_log_entry_as_the_dsmr_decoder_reads_it() -> None:
    """The meter's record of the failure (its log 1-0:99.97.0, read by the DSMR decoder as
    0-0:96.7.19 at the failure's end) gives the restoration its start and duration."""
    key = ec.generate_private_key(ec.SECP256R1())

    class Numbers:
        n = 0

        def take(self) -> int:
            self.n += 1
            return self.n

        def extend(self) -> None:
            pass

    monitor = MainsMonitor("H1", AlertSender("H1", key, lambda _: None, Numbers()))  # type: ignore[arg-type]
    meter = DsmrMeterSimulator("E1", None, HouseholdProfile(1), T)
    assert monitor.observe(data_points(decode_telegram(meter.telegram_at(T))), T) == []
    cut, back = T + timedelta(minutes=3, seconds=12), T + timedelta(minutes=51, seconds=40)
    meter.power_lost(cut)
    monitor.supply_lost(cut)
    meter.power_restored(back)
    monitor.supply_restored(back)
    heard = back + timedelta(seconds=20)
    (alert,) = monitor.observe(data_points(decode_telegram(meter.telegram_at(heard))), heard)
    assert (alert.kind, alert.cause, alert.source) == (AlertKind.RESTORATION, Cause.METER_EVENT, "E1")
    assert (alert.lost_at, alert.duration_s) == (cut, int((back - cut).total_seconds()))
    assert (
        monitor.observe(data_points(decode_telegram(meter.telegram_at(heard + timedelta(minutes=1)))), heard)
        == []
    )


def test_a_run_of_grew_events_on_one_outage_is_written_as_one() -> None:
    """A storm growing one outage writes (and streams) one event per batch, not per premises."""
    feeder, single = Outage(1, "feeder", "F0", T, 4), Outage(2, "premises", "P9", T, 1)
    s = timedelta(seconds=1)
    changes = [
        Change("opened", feeder, T),
        Change("grew", feeder, T),
        Change("grew", feeder, T + s),
        Change("grew", single, T),
        Change("grew", feeder, T + 2 * s),
    ]
    rows = OutageStore.rows(changes)
    assert [(e["outage_id"], e["kind"], e["at"]) for e in rows.events] == [
        (1, "opened", T),
        (1, "grew", T + s),
        (2, "grew", T),
        (1, "grew", T + 2 * s),
    ]
    merged = OutageRows.merge([rows, OutageStore.rows([Change("grew", feeder, T + 3 * s)])])
    assert [(e["outage_id"], e["kind"], e["at"]) for e in merged.events][-1] == (1, "grew", T + 3 * s)
    assert len(merged.events) == 4 and [r["outage_id"] for r in merged.outages] == [1, 2]
