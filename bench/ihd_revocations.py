"""What a consent revocation asked at the display costs the pull that carries it (issue 25 item 3).

One hub's WAN server on loopback (mutual TLS, its revocation requests in SQLite) and the GDSC's
collector with the governance deciding them (SQLite store by default): ``--pulls`` bulk pulls with
nothing waiting, then as many with ``--waiting`` requests waiting at the hub before each (each one
a live consent of the occupant, revoked by that pull). Prints one JSON line: the median and the
90th percentile of a pull's wall time either way, and the requests the pulls made.

    .venv/bin/python bench/ihd_revocations.py --pulls 30 --waiting 1 [--db URL]

``--db``: an empty database (the run registers its parties there).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from smarthub.clock import ManualClock
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.gdsc.governance.hub_revocations import HubRevocations
from smarthub.gdsc.governance.parties import (
    Consent,
    DataKind,
    Granularity,
    Party,
    PartyRepository,
    Tenancy,
)
from smarthub.gdsc.governance.parties import Role as PartyRole
from smarthub.gdsc.pull.collector import Collector
from smarthub.gdsc.store import Store
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.hub.ihd.revocations import RevocationRequests
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context


def _q(xs: list[float], p: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(p * len(xs)))]


async def run(pulls: int, waiting: int, db: str | None, tmp: Path) -> dict[str, object]:
    wall = datetime.now(UTC)
    ca = CertificateAuthority.create("GDSC CA", wall - timedelta(days=1))
    ca.save(tmp / "ca")
    hub_cert = ca.issue(Role.HUB, "H1", wall - timedelta(days=1), hosts=("127.0.0.1",))
    hub_cert.save(tmp, "hub")
    ca.issue(Role.COLLECTOR, "collector", wall - timedelta(days=1)).save(tmp, "collector")
    ca_pem = tmp / "ca" / "ca.pem"
    clock = ManualClock(wall)
    hub = SmartHub("H1", HistoryStore(tmp / "history.sqlite"), clock=clock)
    requests = RevocationRequests(tmp / "revocations.sqlite")
    server = HubWanServer("H1", hub_cert.lfdi, hub, lambda: int(clock.now().timestamp()))
    server.revocations = requests
    server.limiter.rate, server.limiter.burst = 1e9, 10**9
    port = await server.start("127.0.0.1", 0, server_context(tmp / "hub.pem", tmp / "hub.key", ca_pem))

    store = Store(db or f"sqlite:///{tmp / 'gdsc.sqlite'}")
    store.create_schema()
    store.register_hub(
        hub_id="H1", premises_id="P1", url=f"https://127.0.0.1:{port}", lfdi=hub_cert.lfdi, meters_by_fuel=[]
    )
    parties = PartyRepository(store.engine)
    parties.add_party(Party("C1", PartyRole.CONSUMER))
    parties.add_party(Party("ADV", PartyRole.THIRD_PARTY))
    parties.add_tenancy(Tenancy("T1", "P1", "C1", wall - timedelta(days=30)))
    collector = Collector(store, client_context(tmp / "collector.pem", tmp / "collector.key", ca_pem), clock)
    collector.revocations = HubRevocations(AccessGuard(parties, AuditLog(store.engine), clock))
    (record,) = store.active_hubs()
    times: dict[str, list[float]] = {"none_waiting": [], "waiting": []}
    made: dict[str, int] = {"none_waiting": 0, "waiting": 0}
    n = 0
    try:
        for case in ("none_waiting", "waiting"):
            for _ in range(pulls):
                if case == "waiting":
                    for _ in range(waiting):
                        n += 1
                        parties.grant_consent(
                            Consent(
                                consent_id=f"K{n}",
                                party_id="ADV",
                                premises_id="P1",
                                tenancy_id="T1",
                                data_kinds=frozenset({DataKind.READINGS}),
                                granularity=Granularity.DAILY,
                                purpose="advice",
                                granted_at=clock.now(),
                                expires_at=clock.now() + timedelta(days=90),
                            )
                        )
                        requests.request(f"K{n}", "ADV", "bench #1", clock.now())
                clock.advance(timedelta(minutes=30))
                t0 = time.perf_counter()
                outcome = await collector.pull(record, clock.now())
                times[case].append(time.perf_counter() - t0)
                assert outcome.ok, outcome
                made[case] += outcome.requests
        assert requests.pending_count() == 0 and collector.revocations_answered == pulls * waiting
    finally:
        await collector.close()
        await server.stop()
        store.close()
        requests.close()
        hub.history.close()
    return {
        "pulls": pulls,
        "waiting": waiting,
        "db": store.engine.dialect.name,
        **{
            f"{case}_ms": {
                "median": round(statistics.median(xs) * 1000, 1),
                "p90": round(_q(xs, 0.9) * 1000, 1),
                "requests_per_pull": made[case] / pulls,
            }
            for case, xs in times.items()
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pulls", type=int, default=30)
    ap.add_argument("--waiting", type=int, default=1, help="requests waiting before each pull (1..32)")
    ap.add_argument("--db", help="the GDSC store's URL (default: SQLite in a temporary directory)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(asyncio.run(run(args.pulls, args.waiting, args.db, Path(tmp)))))


if __name__ == "__main__":
    main()
