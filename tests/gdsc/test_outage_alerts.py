"""Last gasps over real UDP on loopback into the GDSC: stored once, correlated into one outage per
fault location, closed by restorations; forged, replayed, unsigned and unknown alerts refused and
logged; a flooding hub throttled. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from smarthub.clock import ManualClock
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.gdsc.outages.service import OutageService
from smarthub.gdsc.outages.topology import TopologyStore, parse_csv
from smarthub.gdsc.store import Store
from smarthub.hub.alerts import AlertSender, SequenceReservations, udp_transport
from smarthub.hub.mains import MainsMonitor
from smarthub.wan.contract.alerts import Alert, AlertKind, sign

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
