"""The shared pull plan on real SQLite and real PostgreSQL: claims, leases, links, retries, errors."""

from __future__ import annotations

import itertools
import random
import socket
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from smarthub.clock import ManualClock
from smarthub.gdsc.fleet.registry import HubRecord
from smarthub.gdsc.pull.backoff import Backoff
from smarthub.gdsc.pull.collector import Collector
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.scheduler import plan_window
from smarthub.gdsc.pull.tables import CLAIMED, DONE, FAILED, PENDING, Priority, hub_errors, pull_plan
from smarthub.gdsc.store import Store
from smarthub.sim.fleet import provision

WS = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
W = timedelta(minutes=30)
LATE = WS + W  # every due time of the window has passed


@pytest.fixture
def store(db_url: str):  # type: ignore[no-untyped-def]
    s = Store(db_url)
    s.create_schema()
    yield s
    s.close()


def register(
    store: Store, n: int, link: str | None = None, prefix: str = "HUB", url: str = "https://127.0.0.1:1"
) -> None:
    for i in range(n):
        store.register_hub(
            hub_id=f"{prefix}{i:04d}",
            premises_id=f"P{prefix}{i:04d}",
            url=url,
            lfdi="A" * 40,
            meters_by_fuel=[],
            wan_link=link,
        )


def plan_all(plan: PullPlan, store: Store, ws: datetime = WS) -> int:
    return plan.ensure_window("every", ws, plan_window(ws, W, store.active_hubs()), ws + 2 * W)


def states(plan: PullPlan) -> Counter[str]:
    return Counter(plan.window_states("every", WS))


def test_window_is_planned_once_with_every_hub(store: Store) -> None:
    register(store, 40)
    plan = PullPlan(store)
    plan.create_schema()
    assert plan_all(plan, store) == 40
    # A second collector reaching the same window (or a restart) plans nothing more.
    assert plan_all(plan, store) == 40
    assert states(plan) == {PENDING: 40}


def test_two_claimers_get_disjoint_work_and_a_dead_ones_lease_is_taken_over(store: Store) -> None:
    register(store, 20)
    plan = PullPlan(store, lease=timedelta(minutes=2))
    plan.create_schema()
    plan_all(plan, store)
    a = plan.claim_bulk("A", LATE, 8)
    b = plan.claim_bulk("B", LATE, 100)
    assert len(a) == 8 and len(b) == 12
    assert not {c.hub.hub_id for c in a} & {c.hub.hub_id for c in b}
    for c in b:
        assert plan.finish_bulk(c, True, LATE).state == DONE
    # A dies holding 8 claims. Before its lease runs out nobody may take them...
    assert plan.claim_bulk("B", LATE + timedelta(minutes=1), 100) == []
    # ...after it, B takes them all over.
    later = LATE + timedelta(minutes=3)
    assert plan.takeovers == 0
    taken = plan.claim_bulk("B", later, 100)
    assert sorted(c.hub.hub_id for c in taken) == sorted(c.hub.hub_id for c in a)
    assert plan.takeovers == 8  # counted for the metrics (smarthub_plan_lease_takeovers_total)
    # A wakes up late: its result is refused (fencing), B's counts.
    assert plan.finish_bulk(a[0], True, later).state == "lost"
    for c in taken:
        assert plan.finish_bulk(c, True, later).state == DONE
    assert states(plan) == {DONE: 20}


def test_takeover_does_not_pull_again_what_the_dead_holder_finished(store: Store) -> None:
    register(store, 3)
    plan = PullPlan(store, lease=timedelta(minutes=2))
    plan.create_schema()
    plan_all(plan, store)
    held = plan.claim_bulk("A", LATE, 3)
    # A pulled one hub and logged it, then died before marking the plan row.
    store.log_pull(
        hub_id=held[0].hub.hub_id,
        window_start=WS,
        started=LATE,
        finished=LATE + timedelta(seconds=1),
        ok=True,
        readings=0,
        inserted=0,
        error=None,
    )
    taken = plan.claim_bulk("B", LATE + timedelta(minutes=5), 10)
    assert sorted(c.hub.hub_id for c in taken) == sorted(c.hub.hub_id for c in held[1:])
    assert states(plan) == {DONE: 1, CLAIMED: 2}
    assert (plan.takeovers, plan.takeovers_found_done) == (2, 1)


def test_per_link_limit_holds_across_concurrent_claimers(store: Store) -> None:
    register(store, 30, link="cell-1", prefix="C1H")
    register(store, 30, link="cell-2", prefix="C2H")
    register(store, 10, link=None, prefix="FREE")
    plan = PullPlan(store, link_limit=3)
    plan.create_schema()
    plan_all(plan, store)
    plan.set_link_limit("cell-2", 2)
    claims: list[list[str]] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        got = plan.claim_bulk(name, LATE, 10)
        with lock:
            claims.append([c.hub.hub_id for c in got])

    threads = [threading.Thread(target=claimer, args=(f"K{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Rows one claimer locked but could not take were skipped by the others: the next tick's
    # claims get them.
    claimer("Z")
    flat = [h for c in claims for h in c]
    assert len(flat) == len(set(flat))  # nobody claimed a hub twice
    per_link = Counter(h[:3] for h in flat)
    assert per_link["C1H"] == 3 and per_link["C2H"] == 2 and per_link["FRE"] == 10
    with store.engine.connect() as conn:
        busy = Counter(
            r.wan_link for r in conn.execute(select(pull_plan.c.wan_link).where(pull_plan.c.state == CLAIMED))
        )
    assert busy["cell-1"] == 3 and busy["cell-2"] == 2


def test_link_slot_frees_when_a_pull_finishes(store: Store) -> None:
    register(store, 5, link="cell-9")
    plan = PullPlan(store, link_limit=1)
    plan.create_schema()
    plan_all(plan, store)
    first = plan.claim_bulk("A", LATE, 10)
    assert len(first) == 1 and plan.claim_bulk("B", LATE, 10) == []
    plan.finish_bulk(first[0], True, LATE)
    assert len(plan.claim_bulk("B", LATE, 10)) == 1


def test_plan_spreads_a_links_hubs_across_the_window() -> None:
    hubs = [HubRecord(f"L{i}", "P", "u", "A" * 40, "active", "cell-1") for i in range(10)]
    hubs += [HubRecord(f"F{i}", "P", "u", "A" * 40, "active") for i in range(90)]
    order = [h.hub_id for _, h in plan_window(WS, W, hubs)]
    positions = [i for i, h in enumerate(order) if h.startswith("L")]
    gaps = [b - a for a, b in itertools.pairwise(positions)]
    assert min(gaps) >= 8  # about one in ten slots, never two of the link's hubs bunched


def test_backoff_grows_and_is_jittered() -> None:
    backoff = Backoff(timedelta(seconds=10), 2.0, timedelta(hours=1))
    rng = random.Random(5)
    samples = {k: [backoff.delay(k, rng).total_seconds() for _ in range(200)] for k in range(1, 7)}
    for k in range(1, 7):
        nominal = 10 * 2 ** (k - 1)
        assert all(nominal / 2 <= s <= nominal for s in samples[k])
        assert len(set(samples[k])) > 150  # jittered, not one fixed step
    for k in range(1, 6):
        assert max(samples[k]) <= min(samples[k + 1])  # every wait at least as long as the last
        assert sum(samples[k + 1]) / 200 > 1.8 * sum(samples[k]) / 200
    with pytest.raises(ValueError, match="at least one failure"):
        backoff.delay(0, rng)
    with pytest.raises(ValueError, match="base > 0"):
        Backoff(timedelta(0))


def _dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there any more: a real "connection refused"
    return port


async def test_unreachable_hub_retries_with_growing_jittered_waits_then_opens_one_error(
    store: Store, tmp_path: Path, wall_now: datetime
) -> None:
    creds = provision(tmp_path, [], wall_now)
    url = f"https://127.0.0.1:{_dead_port()}"
    register(store, 2, url=url)
    plan = PullPlan(
        store, max_tries=5, backoff=Backoff(timedelta(seconds=20), 2.0, timedelta(hours=1)), seed=3
    )
    plan.create_schema()
    plan_all(plan, store)
    clock = ManualClock(LATE)
    collector = Collector(store, creds.collector_context(), clock)
    waits: dict[str, list[float]] = {"HUB0000": [], "HUB0001": []}
    try:
        for _ in range(5):
            claims = plan.claim_bulk("A", clock.now(), 10)
            assert len(claims) == 2
            retries = []
            for c in claims:
                outcome = await collector.pull(c.hub, c.window_start)
                assert not outcome.ok and outcome.error
                fin = plan.finish_bulk(c, outcome.ok, clock.now(), outcome.error)
                if fin.state == "retry":
                    assert fin.next_try is not None
                    waits[c.hub.hub_id].append((fin.next_try - clock.now()).total_seconds())
                    retries.append(fin.next_try)
                else:
                    assert fin.state == FAILED and fin.error_opened
            if retries:
                # Nothing is due before the earlier retry; both are due at the later one.
                assert plan.claim_bulk("A", min(retries) - timedelta(seconds=1), 10) == []
                clock.set(max(retries))
    finally:
        await collector.close()
    for hub_waits in waits.values():
        assert len(hub_waits) == 4
        assert all(b >= a for a, b in itertools.pairwise(hub_waits))
        assert hub_waits[-1] > 4 * hub_waits[0]
    assert waits["HUB0000"] != waits["HUB0001"]  # jittered: two hubs down together retry apart
    assert states(plan) == {FAILED: 2}
    errors = plan.open_errors()
    assert sorted(e["hub_id"] for e in errors) == ["HUB0000", "HUB0001"]
    assert all(e["kind"] == "unreachable" and e["tries"] == 5 and e["occurrences"] == 1 for e in errors)
    assert all("Connect" in (e["last_error"] or "") or "refused" in (e["last_error"] or "") for e in errors)


def test_next_window_failing_again_adds_to_the_open_record_and_success_closes_it(store: Store) -> None:
    register(store, 1)
    plan = PullPlan(store, max_tries=2, backoff=Backoff(timedelta(seconds=1)))
    plan.create_schema()
    for ws in (WS, WS + W):
        plan_all(plan, store, ws)
        t = ws + W
        for _ in range(2):
            (c,) = plan.claim_bulk("A", t, 5)
            fin = plan.finish_bulk(c, False, t, "timeout")
            t = fin.next_try or t
    (err,) = plan.open_errors()
    assert (err["occurrences"], err["tries"]) == (2, 4)
    with store.engine.connect() as conn:
        assert conn.execute(select(hub_errors)).all().__len__() == 1
    plan_all(plan, store, WS + 2 * W)
    (c,) = plan.claim_bulk("A", WS + 3 * W, 5)
    plan.finish_bulk(c, True, WS + 3 * W)
    assert plan.open_errors() == []


def test_urgent_work_by_priority_and_commands_per_hub_in_queue_order(store: Store, tmp_path: Path) -> None:
    from smarthub.gdsc.commands.signer import CommandSigner

    register(store, 2)
    plan = PullPlan(store)
    plan.create_schema()
    creds = provision(tmp_path, [], datetime.now(UTC))
    signer = CommandSigner.from_files(
        str(tmp_path / "gdsc" / "operator.pem"),
        str(tmp_path / "gdsc" / "operator.key"),
        store.next_command_counter,
    )
    now = LATE
    read = plan.enqueue_read("HUB0001", now)
    ping = plan.enqueue_command(signer.command("HUB0000", "diagnostic.ping", {}, now), now)
    topup = plan.enqueue_command(signer.command("HUB0000", "prepayment.topup", {"pence": 500}, now), now)
    other = plan.enqueue_command(signer.command("HUB0001", "supply.reconnect", {"meter": "E1"}, now), now)
    assert plan.urgent_job(topup)["priority"] == Priority.URGENT
    assert plan.urgent_job(ping)["priority"] == Priority.ON_DEMAND
    first = plan.claim_urgent("A", now, 10)
    # The top-up is urgent but queued after the ping to the same hub (signed before, so it
    # could not overtake it): counters must arrive in order, so it waits for the ping, which
    # goes at the top-up's priority (inherited), with the reconnect; then the on-demand read.
    assert [c.id for c in first] == [ping, other, read]
    assert plan.claim_urgent("B", now, 10) == []
    for c in first:
        plan.finish_urgent(c, True, now, result={"status": "applied"})
    (second,) = plan.claim_urgent("B", now, 10)
    assert second.id == topup and second.command_type == "prepayment.topup" and second.envelope
    del creds


def test_commands_queued_at_once_by_several_processes_keep_counter_order(
    store: Store, tmp_path: Path
) -> None:
    """Job order is delivery order and the hub refuses a counter below one it accepted, so
    commands queued concurrently for one hub must land in the plan in counter order."""
    import json

    from smarthub.gdsc.commands.signer import CommandSigner
    from smarthub.gdsc.pull.tables import urgent_work

    register(store, 1)
    PullPlan(store).create_schema()
    provision(tmp_path, [], datetime.now(UTC))
    signer = CommandSigner.from_files(
        str(tmp_path / "gdsc" / "operator.pem"),
        str(tmp_path / "gdsc" / "operator.key"),
        store.next_command_counter,
    )
    # Separate stores stand for separate GDSC processes (own connection pools).
    stores = [Store(store.url) for _ in range(4)]
    errors: list[BaseException] = []

    def queue(s: Store) -> None:
        try:
            p = PullPlan(s)
            for _ in range(15):
                p.queue_command(signer, "HUB0000", "diagnostic.ping", {}, LATE)
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=queue, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert not errors, errors
    with store.engine.connect() as conn:
        rows = conn.execute(select(urgent_work.c.envelope).order_by(urgent_work.c.id)).all()
    counters = [json.loads(json.loads(r.envelope)["payload"])["counter"] for r in rows]
    assert counters == list(range(1, 61))


async def test_a_top_up_overtakes_queued_commands_never_sent_and_the_hub_takes_each(
    store: Store, tmp_path: Path
) -> None:
    """A top-up queued behind commands that were never sent takes the first of their
    counters, and they move up one each, signed again: the hub, which accepts only rising
    counters, takes every one in the new order. A command already claimed (it may have reached
    the hub) keeps its counter and place; top-ups keep their order among themselves. Before, a
    top-up waited for every command queued before it (renewals, firmware, backups): a day late
    in the 30-day chaos run."""
    import json
    from decimal import Decimal

    from smarthub.gdsc.commands.signer import CommandSigner
    from smarthub.gdsc.commands.vouchers import VoucherIssuer
    from smarthub.gdsc.fleet.pki import CertificateAuthority
    from smarthub.hub.management import ManagementInterface
    from smarthub.wan.contract.bodies import PrepaymentTopup

    register(store, 1)
    plan = PullPlan(store)
    plan.create_schema()
    provision(tmp_path, [], datetime.now(UTC))
    pem, key = tmp_path / "gdsc" / "operator.pem", tmp_path / "gdsc" / "operator.key"
    signer = CommandSigner.from_files(str(pem), str(key), store.next_command_counter)
    issuer = VoucherIssuer(store, signer.private_key, signer.signer_pem)
    hub = ManagementInterface(
        "HUB0000",
        CertificateAuthority.load(tmp_path / "ca").certificate,
        ManualClock(datetime.now(UTC)),
        tmp_path / "m.sqlite",
    )
    hub.register("prepayment.topup", lambda body: {"credited": True})
    now = LATE

    def ping(n: int) -> int:
        return plan.queue_command(signer, "HUB0000", "diagnostic.ping", {"nonce": n}, now)

    def top_up(pounds: str) -> int:
        voucher = issuer.issue("HUB0000", "electricity", Decimal(pounds), now)
        (pending,) = [p for p in issuer.pending("HUB0000") if p.voucher_id == voucher.voucher_id]
        body = PrepaymentTopup.parse(pending.envelope)
        return plan.queue_command(signer, "HUB0000", "prepayment.topup", body, now)

    def counter(job: int) -> int:
        return int(json.loads(json.loads(plan.urgent_job(job)["envelope"])["payload"])["counter"])

    first = ping(1)
    (in_flight,) = plan.claim_urgent("A", now, 10)  # sent: it may have reached the hub
    second, third = ping(2), ping(3)
    five, ten = top_up("5.00"), top_up("10.00")
    fourth = ping(4)
    # The first top-up overtook the two pings never sent; the second stays behind the first
    # and takes the place of the pings after it.
    order = sorted([first, second, third, five, ten, fourth], key=counter)
    assert order == [first, five, ten, second, third, fourth]
    assert [counter(j) for j in order] == [1, 2, 3, 4, 5, 6]
    assert in_flight.id == first
    delivered = []
    claims = [in_flight]
    while claims:
        (job,) = claims  # one command per hub at a time, in counter order
        verdict = await hub.handle(job.envelope or b"")
        plan.finish_urgent(job, True, now, result={"status": verdict.status})
        delivered.append((job.id, verdict.status))
        claims = plan.claim_urgent("A", now, 10)
    assert delivered == [(j, "applied") for j in order]
    assert hub.refusals == {}
    hub.close()


def test_a_command_holding_up_urgent_ones_of_its_hub_is_claimed_at_their_priority(
    store: Store, tmp_path: Path
) -> None:
    """Priority inheritance: a bulk-priority command (a display's weekly comparison) ahead of a
    reconnect of its hub is claimed before on-demand work elsewhere, as the reconnect would be;
    before, urgent work elsewhere kept it from its turn and the hub's top-ups waited for days."""
    from smarthub.gdsc.commands.signer import CommandSigner

    register(store, 2)
    plan = PullPlan(store)
    plan.create_schema()
    provision(tmp_path, [], datetime.now(UTC))
    pem, key = tmp_path / "gdsc" / "operator.pem", tmp_path / "gdsc" / "operator.key"
    signer = CommandSigner.from_files(str(pem), str(key), store.next_command_counter)
    now = LATE
    weekly = plan.queue_command(signer, "HUB0000", "diagnostic.ping", {"nonce": 1}, now, Priority.BULK)
    elsewhere = plan.queue_command(signer, "HUB0001", "diagnostic.ping", {"nonce": 2}, now)
    plan.queue_command(signer, "HUB0000", "supply.reconnect", {"meter": "E1"}, now)
    (first,) = plan.claim_urgent("A", now, 1)
    assert first.id == weekly and first.priority == Priority.BULK  # its own priority is kept
    (second,) = plan.claim_urgent("A", now, 1)
    assert second.id == elsewhere  # the reconnect waits for the command ahead of it
