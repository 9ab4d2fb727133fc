"""Transfer policies set at the GDSC (issue 20 item 3): per hub or per group, one row however many
hubs, honoured by the pull plan from the next window, and sent to each hub as a signed
``transfer.policy`` command riding on its next pull, which the hub's privacy filter enforces.

Real pieces: the store on SQLite and PostgreSQL (the ``db_url`` fixture), the data services API
through FastAPI's TestClient, the hub's management interface verifying the GDSC's signature.
The 100,000-hub case is ``test_a_policy_change_for_100000_hubs_is_one_call...[100k]`` (PostgreSQL,
``make bench``; ``make test`` runs it at 10,000).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, insert, select

from smarthub.clock import ManualClock
from smarthub.gdsc.api.app import create_app
from smarthub.gdsc.api.auth.tokens import TokenStore
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.pki import CertificateAuthority
from smarthub.gdsc.fleet.pki import Role as PkiRole
from smarthub.gdsc.fleet.registry import hubs, premises
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.gdsc.governance.parties import Fuel, Party, PartyRepository, Role, SupplyPeriod
from smarthub.gdsc.governance.party_tables import parties, supply_periods
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import urgent_work
from smarthub.gdsc.store import Store
from smarthub.gdsc.transfer.policies import Policy, TransferPolicies, due_in
from smarthub.gdsc.transfer.tables import transfer_policies
from smarthub.hub.history import HistoryStore
from smarthub.hub.management import ManagementInterface
from smarthub.hub.privacy import ConsentStore, Granularity, HubPrivacy
from smarthub.hub.transfer_policy import TransferPolicyStore, transfer_policy_command
from smarthub.wan.contract.bodies import TransferPolicy

W = timedelta(minutes=30)
JAN = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 3, 2, 0, 40, tzinfo=UTC)  # inside the window 00:30-01:00
NEXT = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # the next window: the night's first
NIGHT = Policy("daily", window_start=60, window_length=240, aggregation="daily", priority=2)


# -- the planner's rule (pure) ----------------------------------------------------------------


def test_half_hourly_and_unpoliced_hubs_are_due_every_window() -> None:
    for k in range(48):
        ws = NEXT + W * k
        assert due_in(None, "H1", ws, W)
        assert due_in(Policy("half-hourly"), "H1", ws, W)


def test_a_daily_hub_is_due_once_a_day_inside_its_window_and_a_group_spreads_over_it() -> None:
    day = datetime(2026, 3, 2, tzinfo=UTC)
    slots: Counter[int] = Counter()
    for i in range(800):
        due = [k for k in range(48) if due_in(NIGHT, f"HUB{i}", day + W * k, W)]
        assert len(due) == 1  # once a day
        assert 2 <= due[0] < 10  # inside 01:00-05:00
        slots[due[0]] += 1
    assert sorted(slots) == list(range(2, 10))  # every half-hour of the window is used
    assert min(slots.values()) > 60  # about 100 each: spread, not crowded at the start


def test_a_monthly_hub_is_due_on_the_first_only_and_a_window_may_wrap_midnight() -> None:
    late = Policy("monthly", window_start=23 * 60, window_length=120)  # 23:00-01:00
    for hub in ("H1", "H2", "H3", "H4", "H5", "H6"):
        due = [
            t
            for d in range(61)  # 1 March to 30 April
            for k in range(48)
            if due_in(late, hub, (t := datetime(2026, 3, 1, tzinfo=UTC) + timedelta(days=d) + W * k), W)
        ]
        assert len(due) == 2  # March and April
        # The window opened at 23:00 on the 1st: its pull is that night, before or after midnight.
        assert all((t - timedelta(hours=23)).day == 1 for t in due), due


def test_bad_policies_are_refused_with_the_field_named() -> None:
    with pytest.raises(Exception, match="window_start"):
        Policy("daily", window_start=45)
    with pytest.raises(Exception, match="frequency"):
        Policy("hourly")
    with pytest.raises(Exception, match="aggregation"):
        Policy("daily", aggregation="none")


# -- on a database ----------------------------------------------------------------------------


def _fleet(store: Store, suppliers: dict[str, int]) -> list[str]:
    """Hubs H-<supplier>-<i> at premises P-<supplier>-<i>, each supplied by its supplier."""
    repo = PartyRepository(store.engine)
    out = []
    for s, n in suppliers.items():
        repo.add_party(Party(s, Role.SUPPLIER))
        for i in range(n):
            hub, p = f"H-{s}-{i}", f"P-{s}-{i}"
            store.register_hub(
                hub_id=hub,
                premises_id=p,
                url="https://h",
                lfdi="A" * 40,
                meters_by_fuel=[(f"E{i}", "electricity")],
            )
            repo.add_supply_period(SupplyPeriod(p, Fuel.ELECTRICITY, s, JAN))
            out.append(hub)
    return out


def _signer(state: Path) -> tuple[CertificateAuthority, CommandSigner]:
    ca = CertificateAuthority.create("ca", NOW - timedelta(days=1))
    op = ca.issue(PkiRole.OPERATOR, "ops", NOW - timedelta(days=1))
    return ca, CommandSigner(op.private_key, op.cert_pem, lambda hub: 0)


def test_the_most_specific_scope_decides_and_one_row_changes_a_group(db_url: str) -> None:
    store = Store(db_url)
    store.create_schema()
    try:
        _fleet(store, {"S1": 6, "S2": 2})
        tp = TransferPolicies(store.engine)
        tp.set("default", "*", Policy("half-hourly", aggregation="half-hourly"), "OP", NOW)
        tp.set("supplier", "S1", NIGHT, "OP", NOW)
        tp.assign_many(
            [("P-S1-1", "opted-out", None), ("P-S1-2", None, "agile"), ("P-S1-3", "opted-out", "agile")]
        )
        tp.set("premises-class", "opted-out", Policy("monthly", 60, 240, "monthly"), "OP", NOW)
        tp.set("tariff", "agile", Policy("half-hourly"), "OP", NOW)
        tp.set("hub", "H-S1-4", Policy("half-hourly", aggregation="tariff-registers", priority=0), "OP", NOW)
        by_hub = {e.hub.hub_id: e.policy for e in tp.effective(NOW)}
        assert {h: (p.scope, p.key) for h, p in by_hub.items() if p is not None} == {
            "H-S1-0": ("supplier", "S1"),
            "H-S1-1": ("premises-class", "opted-out"),
            "H-S1-2": ("tariff", "agile"),
            "H-S1-3": ("premises-class", "opted-out"),  # a class before a tariff
            "H-S1-4": ("hub", "H-S1-4"),
            "H-S1-5": ("supplier", "S1"),
            "H-S2-0": ("default", "*"),
            "H-S2-1": ("default", "*"),
        }
        assert tp.covered("supplier", "S1", NOW) == 2
        assert tp.covered("default", "*", NOW) == 2
        # Versions rise with every change, even within one microsecond.
        versions = [p.version for p in tp.policies()]
        assert len(set(versions)) == 5
        # Re-setting a group is one row more or less: still five rows.
        tp.set("supplier", "S1", Policy("daily", 0, 60), "OP", NOW)
        with store.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(transfer_policies)).scalar_one() == 5
    finally:
        store.close()


def test_the_plan_honours_a_change_from_the_next_window_and_orders_by_priority(db_url: str) -> None:
    store = Store(db_url)
    store.create_schema()
    try:
        _fleet(store, {"S1": 40, "S2": 5})
        tp, plan = TransferPolicies(store.engine), PullPlan(store)
        planner = tp.planner(W)
        # No policy: every hub, every window (as before policies).
        now_ws = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
        assert plan.ensure_window("every", now_ws, planner(now_ws, W), now_ws + 2 * W) == 45
        tp.set("supplier", "S1", NIGHT, "OP", NOW)
        tp.set("supplier", "S2", Policy("half-hourly", priority=7), "OP", NOW)
        # The window planned before the change keeps its plan...
        assert sum(plan.window_states("every", now_ws).values()) == 45
        # ...and from the next one S1's hubs come once in the night, S2's every window.
        seen: Counter[str] = Counter()
        for k in range(48):
            ws = NEXT + W * k
            placed = planner(ws, W)
            ids = [h.hub_id for _, h in placed]
            assert sum(1 for h in ids if h.startswith("H-S2-")) == 5
            night = 1 <= ws.hour < 5
            assert all(h.startswith("H-S2-") for h in ids) or night
            # priority 2 (S1) before priority 7 (S2) inside the window
            assert ids == sorted(ids, key=lambda h: h.startswith("H-S2-"))
            seen.update(ids)
        assert all(seen[f"H-S1-{i}"] == 1 for i in range(40))
        assert all(seen[f"H-S2-{i}"] == 48 for i in range(5))
    finally:
        store.close()


async def test_the_policy_rides_on_the_next_pull_and_the_hub_enforces_it(db_url: str, tmp_path: Path) -> None:
    store = Store(db_url)
    store.create_schema()
    try:
        _fleet(store, {"S1": 3})
        tp, plan = TransferPolicies(store.engine), PullPlan(store)
        ca, signer = _signer(tmp_path)
        tp.set("supplier", "S1", NIGHT, "OP", NOW)
        assert _count(store, urgent_work) == 0  # nothing is sent at the change
        jobs = tp.after_pulls(plan, signer, ["H-S1-0", "H-S1-1"], NOW + timedelta(hours=1))
        assert len(jobs) == 2
        assert tp.after_pulls(plan, signer, ["H-S1-0", "H-S1-1"], NOW + timedelta(hours=2)) == []  # once
        # The hub verifies the GDSC's signature, keeps the policy, and serves the GDSC daily.
        hub_dir = tmp_path / "hub"
        hub_dir.mkdir()
        clock = ManualClock(NOW + timedelta(hours=1))
        mgmt = ManagementInterface("H-S1-0", ca.certificate, clock, hub_dir / "management.sqlite")
        kept = TransferPolicyStore(hub_dir / "transfer_policy.sqlite")
        mgmt.register("transfer.policy", transfer_policy_command(kept))
        consent = ConsentStore(hub_dir / "consent.sqlite", clock=clock)
        consent.set("gdsc", Granularity.HALF_HOURLY, clock.now())
        history = HistoryStore(hub_dir / "history.sqlite")
        privacy = HubPrivacy(consent, history, cap=kept.cap)
        assert privacy.granularity("gdsc") == "half-hourly"
        job = plan.urgent_job(jobs[0])
        result = await mgmt.handle(job["envelope"].encode())
        assert result.status == "applied", result
        assert kept.policy is not None and kept.policy.aggregation is Granularity.DAILY
        assert privacy.granularity("gdsc") == "daily"
        assert privacy.granularity("SUP-X") == "none"  # other recipients: their consent alone
        # A consent coarser than the policy still wins (the policy only narrows).
        consent.set("gdsc", Granularity.MONTHLY, clock.now())
        assert privacy.granularity("gdsc") == "monthly"
        # The same command again changes nothing; an older version is not applied.
        again = kept.apply(TransferPolicy.parse({**kept.policy.to_json(), "aggregation": "half-hourly"}))
        assert not again and kept.policy.aggregation is Granularity.DAILY
        # A hub moved to another group gets the new group's policy at its next pull, with a
        # version above the one it holds even though the group's row is older.
        tp.set(
            "premises-class",
            "opted-out",
            Policy("monthly", 60, 240, "monthly"),
            "OP",
            NOW - timedelta(days=9),
        )
        tp.assign("P-S1-0", "opted-out", None)
        (job2,) = tp.after_pulls(plan, signer, ["H-S1-0"], NOW + timedelta(hours=3))
        result = await mgmt.handle(plan.urgent_job(job2)["envelope"].encode())
        assert result.status == "applied" and result.result == {
            "applied": True,
            "version": kept.policy.version,
        }
        assert kept.policy.frequency == "monthly" and kept.policy.aggregation is Granularity.MONTHLY
        mgmt.close()
        kept.close()
        consent.close()
        history.close()
    finally:
        store.close()


def _count(store: Store, table: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _api(store: Store) -> tuple[TestClient, dict[str, str]]:
    repo = PartyRepository(store.engine)
    repo.add_party(Party("OP", Role.OPERATOR))
    tokens = TokenStore(store.engine)
    issued = {"OP": tokens.issue("OP", NOW), "S1": tokens.issue("S1", NOW)}
    guard = AccessGuard(repo, AuditLog(store.engine), ManualClock(NOW))
    return TestClient(create_app(guard, tokens)), {p: f"Bearer {t}" for p, t in issued.items()}


def test_only_the_operator_sets_policies_through_the_api(db_url: str) -> None:
    store = Store(db_url)
    store.create_schema()
    try:
        _fleet(store, {"S1": 3})
        client, auth = _api(store)
        body = {
            "scope": "supplier",
            "key": "S1",
            "frequency": "daily",
            "window_start": 60,
            "window_length": 240,
        }
        r = client.post("/v1/transfer-policies", json=body, headers={"Authorization": auth["S1"]})
        assert r.status_code == 403, r.text
        r = client.post("/v1/transfer-policies", json=body, headers={"Authorization": auth["OP"]})
        assert r.status_code == 200, r.text
        assert r.json()["hubs"] == 3 and r.json()["aggregation"] == "half-hourly"
        bad = client.post(
            "/v1/transfer-policies", json={**body, "window_start": 45}, headers={"Authorization": auth["OP"]}
        )
        assert bad.status_code == 422 and "window_start" in bad.text
        r = client.put(
            "/v1/premises/P-S1-0/transfer-group",
            json={"premises_class": "opted-out"},
            headers={"Authorization": auth["OP"]},
        )
        assert r.status_code == 200 and r.json()["tariff"] is None
        r = client.put("/v1/premises/NOPE/transfer-group", json={}, headers={"Authorization": auth["OP"]})
        assert r.status_code == 404
        listed = client.get("/v1/transfer-policies", headers={"Authorization": auth["OP"]}).json()
        assert [(p["scope"], p["key"], p["frequency"]) for p in listed] == [("supplier", "S1", "daily")]
    finally:
        store.close()


# -- 100,000 hubs, on PostgreSQL ----------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize(
    "fleet",
    [pytest.param(10_000, id="10k"), pytest.param(100_000, id="100k", marks=pytest.mark.slow)],
)
def test_a_policy_change_for_100000_hubs_is_one_call_and_the_plan_honours_it_from_the_next_window(
    pg_url: str, tmp_path: Path, fleet: int
) -> None:
    """``make test`` runs it at 10,000 hubs, ``make bench`` at the issue's 100,000."""
    store = Store(pg_url)
    store.create_schema()
    try:
        with store.engine.begin() as conn:  # the fleet, loaded in bulk (its registration is not the point)
            conn.execute(
                insert(parties), [{"party_id": s, "role": "supplier", "name": s} for s in ("S1", "S2")]
            )
            rows = [(f"H{i:06d}", f"P{i:06d}", "S1" if i < fleet else "S2") for i in range(fleet + 10)]
            for k in range(0, len(rows), 10_000):
                part = rows[k : k + 10_000]
                conn.execute(insert(premises), [{"premises_id": p, "address": ""} for _, p, _ in part])
                conn.execute(
                    insert(hubs),
                    [
                        {
                            "hub_id": h,
                            "premises_id": p,
                            "url": "https://h",
                            "lfdi": "A" * 40,
                            "status": "active",
                        }
                        for h, p, _ in part
                    ],
                )
                conn.execute(
                    insert(supply_periods),
                    [
                        {"premises_id": p, "fuel": "electricity", "supplier_id": s, "start": JAN}
                        for _, p, s in part
                    ],
                )
        tp, plan = TransferPolicies(store.engine), PullPlan(store)
        planner = tp.planner(W)
        now_ws = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
        # The window open now was planned before the change: every hub in it.
        assert plan.ensure_window("every", now_ws, planner(now_ws, W), now_ws + 2 * W) == fleet + 10
        client, auth = _api(store)
        statements: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)

        event.listen(store.engine, "before_cursor_execute", seen)
        body = {"scope": "supplier", "key": "S1", "frequency": "daily", "window_start": 60, "window_length": 240,
                "aggregation": "daily", "priority": 2}  # fmt: skip
        r = client.post("/v1/transfer-policies", json=body, headers={"Authorization": auth["OP"]})
        event.remove(store.engine, "before_cursor_execute", seen)
        assert r.status_code == 200, r.text
        assert r.json()["hubs"] == fleet  # in force for every one of S1's hubs
        # One API call, a bounded number of statements, one write to the policies, nothing per hub.
        writes = [s for s in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
        assert sorted(w.split("(")[0].split()[2] for w in writes) == ["audit_log", "transfer_policies"], (
            writes
        )
        assert len(statements) < 30, len(statements)
        assert _count(store, urgent_work) == 0
        assert sum(plan.window_states("every", now_ws).values()) == fleet + 10  # the open window is kept
        # From the next window: S1's hubs spread over the night's eight half-hours, S2's every window.
        seen: Counter[str] = Counter()
        per_window = []
        for k in range(9):
            ws = NEXT + W * k
            placed = planner(ws, W)
            if k == 0:  # the next window's plan, as the scheduler writes it
                assert plan.ensure_window("every", ws, placed, ws + 2 * W) == len(placed)
            ids = [h.hub_id for _, h in placed]
            # S2's ten (priority 5, the default's) after S1's (priority 2) in every window
            assert sorted(ids[-10:]) == [f"H{i:06d}" for i in range(fleet, fleet + 10)]
            seen.update(ids)
            per_window.append(len(ids) - 10)
        assert sum(per_window[:8]) == fleet and per_window[8] == 0
        assert min(per_window[:8]) > fleet / 8 * 0.9  # spread over the night, not crowded at 01:00
        assert len(seen) == fleet + 10 and all(n == 1 for h, n in seen.items() if h < f"H{fleet:06d}")
        # The hub's command rides on its pull: queued only for the hubs pulled, once.
        _, signer = _signer(tmp_path)
        first = [h.hub_id for _, h in planner(NEXT, W)][:100]
        assert len(tp.after_pulls(plan, signer, first, NEXT + timedelta(minutes=10))) == 100
        assert tp.after_pulls(plan, signer, first, NEXT + timedelta(minutes=40)) == []
        assert _count(store, urgent_work) == 100
    finally:
        store.close()


def test_the_operator_cli_sets_and_lists_policies(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from smarthub.cli import app
    from smarthub.sim.fleet import provision

    state = tmp_path / "state"
    provision(state, [], NOW - timedelta(days=1))
    run = CliRunner().invoke
    args = ["gdsc", "transfer-policy", "--state", str(state)]
    r = run(
        app,
        [
            *args,
            "--scope",
            "default",
            "--frequency",
            "daily",
            "--window-start",
            "60",
            "--window-length",
            "240",
        ],
    )
    assert r.exit_code == 0, r.output
    line = json.loads(r.stdout.strip().splitlines()[-1])
    assert (line["scope"], line["key"], line["frequency"], line["hubs"]) == ("default", "*", "daily", 0)
    bad = run(app, [*args, "--scope", "supplier", "--key", "S1", "--window-start", "45"])
    assert bad.exit_code == 2 and "window_start" in bad.stderr
    listed = run(app, args)
    assert [json.loads(x)["scope"] for x in listed.stdout.strip().splitlines()] == ["default"]
