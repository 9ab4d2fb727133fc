"""The data services views over a large audit log: the operator's services page and a household's
view of its services (issue 25), timed.

The audit log is filled with ``--entries`` read entries over a year (one in ten by one of five
data services at premises P1, the rest by suppliers across 1,000 premises), written directly to
the table (not hash-chained: this measures the views' queries, not appending). Then it times
:func:`~smarthub.gdsc.incidents.services_page.service_rows` (a grouped scan of the last week) and
:func:`~smarthub.gdsc.governance.service_activity.household_services` for P1 (every entry of its
tenancy read and parsed), and prints one JSON line.

    .venv/bin/python bench/service_views.py --entries 300000 [--db URL]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from smarthub.gdsc.governance.audit import AuditLog, audit_log
from smarthub.gdsc.governance.parties import DataKind, Granularity, Party, PartyRepository, Role, Tenancy
from smarthub.gdsc.governance.service_activity import household_services
from smarthub.gdsc.governance.services import Application, DataServices
from smarthub.gdsc.incidents.services_page import service_rows
from smarthub.gdsc.store import Store

NOW = datetime(2026, 12, 1, tzinfo=UTC)
FIRST_SEQ = 1000  # after the applications' own entries
BATCH = 20_000


def fill(store: Store, entries: int) -> None:
    repo = PartyRepository(store.engine)
    store.register_hub(
        hub_id="H1", premises_id="P1", url="https://h", lfdi="A" * 40, meters_by_fuel=[("E1", "electricity")]
    )
    repo.add_party(Party("C1", Role.CONSUMER))
    repo.add_tenancy(Tenancy("T1", "P1", "C1", NOW - timedelta(days=400)))
    application = Application("Org", "advice", frozenset({DataKind.READINGS}), Granularity.DAILY, 30)
    for i in range(5):
        DataServices(store.engine).apply(f"TP{i}", application, NOW)
    span = timedelta(days=365).total_seconds()
    rows: list[dict[str, Any]] = []
    for i in range(entries):
        at = NOW - timedelta(seconds=span * (1 - i / entries))
        service = i % 10 == 0
        actor = f"TP{i % 5}" if service else f"S{i % 7}"
        premises = "P1" if service else f"P{i % 1000}"
        body = {
            "seq": FIRST_SEQ + i,
            "at": at.isoformat(),
            "actor": actor,
            "role": "third-party" if service else "supplier",
            "action": "read-readings",
            "premises_id": premises,
            "allow": True,
            "reason": "consent",
            "detail": {"meter_id": "E1", "granularity": "daily", "ranges": []},
            "prev_hash": "0" * 64,
        }
        rows.append(
            {
                "seq": FIRST_SEQ + i,
                "at": at,
                "actor": actor,
                "action": "read-readings",
                "premises_id": premises,
                "allow": 1,
                "body": json.dumps(body),
                "prev_hash": "0" * 64,
                "hash": f"{i:064x}",
                "group_id": None,
            }
        )
        if len(rows) == BATCH:
            with store.engine.begin() as conn:
                conn.execute(audit_log.insert(), rows)
            rows = []
    if rows:
        with store.engine.begin() as conn:
            conn.execute(audit_log.insert(), rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=300_000)
    ap.add_argument("--db", help="a database URL (default: SQLite in a temporary directory)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(args.db or f"sqlite:///{Path(tmp) / 'bench.sqlite'}")
        store.create_schema()
        fill(store, args.entries)
        t = time.perf_counter()
        rows = service_rows(store.engine, NOW)
        page_s = time.perf_counter() - t
        tenancy = PartyRepository(store.engine).tenancies(["P1"])[0]
        t = time.perf_counter()
        view = household_services(store.engine, AuditLog(store.engine), tenancy, NOW)
        view_s = time.perf_counter() - t
        store.close()
    print(
        json.dumps(
            {
                "entries": args.entries,
                "services_page_s": round(page_s, 3),
                "services": len(rows),
                "household_view_s": round(view_s, 3),
                "household_reads": sum(s.reads_total for s in view),
            }
        )
    )


if __name__ == "__main__":
    main()
