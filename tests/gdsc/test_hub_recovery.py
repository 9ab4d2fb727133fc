"""The GDSC's side of hub recovery (issue 20, item 2) on SQLite and PostgreSQL: which storage
reports start which recovery, how a step whose verdict was lost is signed again, and the
``smarthub gdsc recover|recovery`` commands. (End to end with real hubs: tests/e2e/test_hub_recovery.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.recovery import HubRecoveries, hub_recovery_steps
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import DONE, FAILED, urgent_work
from smarthub.gdsc.service import store_url
from smarthub.gdsc.store import Store
from smarthub.sim.fleet import home_specs, provision
from smarthub.wan.contract.commands import Command
from smarthub.wan.contract.storage import StorageState, parse

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
LFDI = "0" * 40


@pytest.fixture
def world(tmp_path: Path, db_url: str) -> tuple[Store, HubRecoveries, PullPlan]:
    provision(tmp_path, home_specs(1, seed=1), NOW - timedelta(days=1))
    store = Store(db_url)
    store.create_schema()
    store.register_hub(
        hub_id="H1",
        premises_id="P1",
        url="https://127.0.0.1:1",
        lfdi=LFDI,
        meters_by_fuel=[("E1", "electricity")],
    )
    signer = CommandSigner.from_files(
        str(tmp_path / "gdsc" / "operator.pem"),
        str(tmp_path / "gdsc" / "operator.key"),
        store.next_command_counter,
    )
    plan = PullPlan(store)
    return store, HubRecoveries(store, signer, plan), plan


def _jobs(store: Store, hub: str) -> list[tuple[int, str, int]]:
    with store.engine.connect() as conn:
        return [
            (int(r.id), str(r.command_type), int(r.counter))
            for r in conn.execute(
                select(urgent_work.c.id, urgent_work.c.command_type, urgent_work.c.counter)
                .where(urgent_work.c.hub_id == hub, urgent_work.c.kind == "command")
                .order_by(urgent_work.c.id)
            )
        ]


def _answer(store: Store, job: int, verdict: dict[str, object] | None, state: str = DONE) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            update(urgent_work)
            .where(urgent_work.c.id == job)
            .values(state=state, result=None if verdict is None else json.dumps(verdict))
        )


def test_the_storage_header_round_trips_and_refuses_what_it_is_not() -> None:
    state = StorageState("blank", "0123456789abcdef")
    assert parse(state.header) == state
    for bad in (None, "", "state=gone; id=0123456789abcdef", "state=blank; id=XYZ", "state=blank"):
        assert parse(bad) is None


def test_storage_reports_start_what_they_call_for(world: tuple[Store, HubRecoveries, PullPlan]) -> None:
    store, recoveries, _plan = world
    # A new hub (blank, never heard of): a recovery of the complete step only.
    (first,) = recoveries.take_reports({"H1": StorageState("blank", "a" * 16).header}, NOW)
    rec = recoveries.get(first)
    assert rec is not None and rec.reason == "new" and rec.steps == 1
    recoveries.advance(NOW)
    (job,) = _jobs(store, "H1")
    assert job[1] == "recovery.complete"
    # The same blank storage reported again while that runs, or after: nothing new.
    assert recoveries.take_reports({"H1": StorageState("blank", "a" * 16).header}, NOW) == []
    _answer(store, job[0], {"status": "applied", "code": "ok", "detail": "", "counter": job[2], "result": {}})
    assert recoveries.advance(NOW) == [first]
    assert recoveries.take_reports({"H1": StorageState("restored", "a" * 16).header}, NOW) == []
    assert recoveries.take_reports({"H1": StorageState("blank", "a" * 16).header}, NOW) == []
    # Another blank storage: lost, restored from the hub's own past.
    (lost,) = recoveries.take_reports({"H1": StorageState("blank", "b" * 16).header}, NOW)
    rec = recoveries.get(lost)
    assert rec is not None and rec.reason == "storage_lost" and rec.source_hub_id == "H1"
    assert rec.storage_id == "b" * 16 and rec.state == "running"


def test_a_hub_wiped_while_its_recovery_runs_gets_another_once_that_one_ends(
    world: tuple[Store, HubRecoveries, PullPlan],
) -> None:
    store, recoveries, _plan = world
    (first,) = recoveries.take_reports({"H1": StorageState("blank", "a" * 16).header}, NOW)
    recoveries.advance(NOW)
    # Wiped again before the complete step arrived: reported while the first recovery runs.
    assert recoveries.take_reports({"H1": StorageState("blank", "b" * 16).header}, NOW) == []
    (job,) = _jobs(store, "H1")
    detail = "ValueError: recovery 1 was for storage aaaaaaaaaaaaaaaa, this is bbbbbbbbbbbbbbbb"
    _answer(store, job[0], {"status": "failed", "code": "handler_error", "detail": detail, "counter": job[2]})
    assert recoveries.advance(NOW) == [first]
    (second,) = recoveries.take_reports({}, NOW)  # the deferred report, with no new pull
    rec = recoveries.get(second)
    assert rec is not None and rec.storage_id == "b" * 16 and rec.reason == "storage_lost"


def test_a_kept_storage_is_recorded_without_a_command(world: tuple[Store, HubRecoveries, PullPlan]) -> None:
    store, recoveries, _plan = world
    assert recoveries.take_reports({"H1": StorageState("kept", "c" * 16).header}, NOW) == []
    (seen,) = recoveries.of_hub("H1")
    assert seen.reason == "seen" and seen.state == "done" and seen.steps == 0
    assert _jobs(store, "H1") == []
    (lost,) = recoveries.take_reports({"H1": StorageState("blank", "d" * 16).header}, NOW)
    assert recoveries.get(lost).reason == "storage_lost"  # type: ignore[union-attr]


def test_a_blank_hub_backed_up_before_from_another_storage_lost_it(
    world: tuple[Store, HubRecoveries, PullPlan],
) -> None:
    """No pull had reported the hub's storage yet (its first window still to come), but a backup
    came from it: a blank storage is then a lost one, not a new hub."""
    store, recoveries, plan = world
    job = plan.queue_command(recoveries.signer, "H1", "recovery.snapshot", {}, NOW)
    snap = {"storage": {"id": "e" * 16, "state": "blank"}, "as_of": NOW.isoformat()}
    _answer(store, job, {"status": "applied", "code": "ok", "detail": "", "counter": 1, "result": snap})
    assert recoveries.take_reports({"H1": StorageState("blank", "e" * 16).header}, NOW) != []
    (new,) = recoveries.of_hub("H1")
    assert new.reason == "new"  # the backup was of this very storage
    recoveries.advance(NOW)
    (done_job, *_) = [j for j in _jobs(store, "H1") if j[1] == "recovery.complete"]
    _answer(store, done_job[0], {"status": "applied", "code": "ok", "detail": "", "counter": 2, "result": {}})
    recoveries.advance(NOW)
    # Wiped before any pull reported the restored storage:
    (lost,) = recoveries.take_reports({"H1": StorageState("blank", "9" * 16).header}, NOW)
    assert recoveries.get(lost).reason == "storage_lost"  # type: ignore[union-attr]


def test_a_blank_report_after_a_backup_of_another_storage_is_a_loss(
    world: tuple[Store, HubRecoveries, PullPlan],
) -> None:
    store, recoveries, plan = world
    job = plan.queue_command(recoveries.signer, "H1", "recovery.snapshot", {}, NOW)
    snap = {"storage": {"id": "e" * 16, "state": "restored"}, "as_of": NOW.isoformat(), "prepayment": []}
    _answer(store, job, {"status": "applied", "code": "ok", "detail": "", "counter": 1, "result": snap})
    (lost,) = recoveries.take_reports({"H1": StorageState("blank", "9" * 16).header}, NOW)
    assert recoveries.get(lost).reason == "storage_lost"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("verdict", "state", "resent"),
    [
        (
            {"status": "refused", "code": "replay", "detail": "counter 3 is not above the last accepted 3"},
            DONE,
            True,
        ),
        (None, FAILED, True),  # never delivered (the hub down for all the plan's tries)
        ({"status": "failed", "code": "handler_error", "detail": "ValueError: no prepayment"}, DONE, False),
        (
            {"status": "failed", "code": "handler_error", "detail": "StaleTariffVersion: not newer"},
            DONE,
            False,
        ),
    ],
)
def test_a_step_without_its_verdict_is_signed_again_under_a_new_counter(
    world: tuple[Store, HubRecoveries, PullPlan], verdict: dict[str, object] | None, state: str, resent: bool
) -> None:
    store, recoveries, plan = world
    plan.queue_command(
        recoveries.signer, "H1", "consent.set", {"recipient": "gdsc", "granularity": "daily"}, NOW
    )
    (job,) = _jobs(store, "H1")
    _answer(store, job[0], {"status": "applied", "code": "ok", "detail": "", "counter": job[2], "result": {}})
    rid = recoveries.start("H1", NOW, reason="operator")
    step_job = _jobs(store, "H1")[-1]
    assert step_job[1] == "consent.set"
    _answer(store, step_job[0], verdict, state)
    recoveries.advance(NOW)
    (step, *_) = recoveries.steps(rid)
    jobs = _jobs(store, "H1")
    if resent:
        assert step["state"] == "queued" and step["attempts"] == 2 and step["job"] == jobs[-1][0]
        assert jobs[-1][1] == "consent.set" and jobs[-1][2] > step_job[2]
        with store.engine.connect() as conn:
            envelope = conn.execute(
                select(urgent_work.c.envelope).where(urgent_work.c.id == jobs[-1][0])
            ).scalar_one()
        payload = Command.from_payload(json.loads(envelope)["payload"].encode())
        assert payload.body == {"recipient": "gdsc", "granularity": "daily"}  # the same body, signed again
    else:
        held = "Stale" in str((verdict or {}).get("detail"))
        assert step["state"] == ("applied" if held else "failed") and step["attempts"] == 1
    with store.engine.connect() as conn:
        assert conn.execute(
            select(hub_recovery_steps.c.seq).where(hub_recovery_steps.c.recovery_id == rid)
        ).all()


def test_recover_and_recovery_commands(tmp_path: Path) -> None:
    provision(tmp_path, home_specs(1, seed=1), NOW - timedelta(days=1))
    store = Store(store_url(tmp_path))
    store.create_schema()
    store.register_hub(
        hub_id="H1",
        premises_id="P1",
        url="https://127.0.0.1:1",
        lfdi=LFDI,
        meters_by_fuel=[("E1", "electricity")],
    )
    store.close()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "smarthub.cli", "gdsc", *args, "--state", str(tmp_path)],
            capture_output=True,
            text=True,
        )

    started = run("recover", "--hub", "H1")
    assert started.returncode == 0, started.stderr
    line = json.loads(started.stdout)
    assert line["hub_id"] == "H1" and line["state"] == "running" and line["reason"] == "operator"
    shown = run("recovery", "--hub", "H1", "--steps")
    assert shown.returncode == 0, shown.stderr
    (rec,) = [json.loads(x) for x in shown.stdout.splitlines()]
    # Nothing to restore (no commands applied, no readings, no backup): the complete step only.
    assert rec["recovery"] == line["recovery"]
    assert [s["type"] for s in rec["step_list"]] == ["recovery.complete"]
    refused = run("recover", "--hub", "NOPE")
    assert refused.returncode != 0 and "not an active hub" in refused.stderr


def test_a_recovery_of_a_hub_no_longer_active_ends(world: tuple[Store, HubRecoveries, PullPlan]) -> None:
    from smarthub.gdsc.fleet.registry import hubs

    store, recoveries, _plan = world
    (rid,) = recoveries.take_reports({"H1": StorageState("blank", "a" * 16).header}, NOW)
    recoveries.advance(NOW)  # the complete step queued
    with store.engine.begin() as conn:
        conn.execute(update(hubs).where(hubs.c.hub_id == "H1").values(status="decommissioned"))
    assert recoveries.advance(NOW) == [rid]
    rec = recoveries.get(rid)
    assert rec is not None and rec.state == "done" and rec.failed == 1 and rec.queued == 0
    assert recoveries.steps(rid)[0]["detail"] == "hub decommissioned"


def test_consents_come_from_the_backup_and_later_commands(
    world: tuple[Store, HubRecoveries, PullPlan],
) -> None:
    """The backup holds the hub's consent decisions with their versions (the householder's own at
    the display too): they are restored as they were; a consent.set applied after the backup is
    replayed as well, one applied before it is not (the backup has it)."""
    store, recoveries, plan = world
    signer = recoveries.signer

    def applied(ctype: str, body: dict[str, object], result: dict[str, object] | None = None) -> None:
        job = plan.queue_command(signer, "H1", ctype, body, NOW)
        _answer(
            store,
            job,
            {"status": "applied", "code": "ok", "detail": "", "counter": 0, "result": result or {}},
        )

    applied("consent.set", {"recipient": "gdsc", "granularity": "daily"})
    local = {"recipient": "SUP9", "granularity": "monthly", "version": 1_796_000_000_000_000, "meters": None,
             "data_from": None, "data_until": None, "events": False}  # fmt: skip
    gdsc = {**local, "recipient": "gdsc", "granularity": "daily", "version": 1_795_000_000_000_000}
    backup = {
        "storage": {"id": "e" * 16, "state": "restored"},
        "as_of": NOW.isoformat(),
        "consents": [gdsc, local],
    }
    applied("recovery.snapshot", {}, backup)
    applied("consent.set", {"recipient": "SUP1", "granularity": "half-hourly"})
    rid = recoveries.start("H1", NOW, reason="operator")
    with store.engine.connect() as conn:
        envelopes = (
            conn.execute(
                select(urgent_work.c.envelope)
                .join(hub_recovery_steps, hub_recovery_steps.c.job_id == urgent_work.c.id)
                .where(hub_recovery_steps.c.recovery_id == rid, urgent_work.c.command_type == "consent.set")
                .order_by(hub_recovery_steps.c.seq)
            )
            .scalars()
            .all()
        )
    bodies = [Command.from_payload(json.loads(e)["payload"].encode()).body for e in envelopes]
    assert sorted(str(b["recipient"]) for b in bodies) == ["SUP1", "SUP9", "gdsc"]
    assert local in bodies and gdsc in bodies  # with the hub's versions and scopes
    assert {"recipient": "SUP1", "granularity": "half-hourly"} in bodies
    assert {"recipient": "gdsc", "granularity": "daily"} not in bodies  # before the backup: in it


def test_a_step_not_delivered_is_sent_again_only_once_the_hub_is_back(
    world: tuple[Store, HubRecoveries, PullPlan],
) -> None:
    """A step whose delivery the plan gave up (the hub away: a WAN outage of days) is queued
    again once the hub has answered a pull since, not at every upkeep run meanwhile: the
    30-day chaos run queued a step every half-hour of an outage, and its 20 attempts would
    have been spent in ten hours, the step failed for good."""
    store, recoveries, _plan = world
    rid = recoveries.start("H1", NOW, reason="operator")
    (step_job, *_) = _jobs(store, "H1")
    with store.engine.begin() as conn:  # every try failed on the transport
        conn.execute(
            update(urgent_work)
            .where(urgent_work.c.id == step_job[0])
            .values(state=FAILED, result=None, finished=NOW + timedelta(minutes=10))
        )
    for minutes in (20, 30, 60):
        recoveries.advance(NOW + timedelta(minutes=minutes))
    (step, *_) = recoveries.steps(rid)
    assert step["attempts"] == 1 and step["job"] == step_job[0] and step["state"] == "queued"
    back = NOW + timedelta(hours=30)
    store.log_pull(
        hub_id="H1", window_start=back, started=back, finished=back + timedelta(seconds=3),
        ok=True, readings=0, inserted=0, error=None,
    )  # fmt: skip
    recoveries.advance(back + timedelta(minutes=5))
    (step, *_) = recoveries.steps(rid)
    assert step["attempts"] == 2 and step["job"] == _jobs(store, "H1")[-1][0] != step_job[0]


def _bodies(store: Store, types: tuple[str, ...]) -> list[tuple[int, dict[str, object]]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(urgent_work.c.id, urgent_work.c.envelope)
            .where(urgent_work.c.command_type.in_(types), urgent_work.c.envelope.is_not(None))
            .order_by(urgent_work.c.id)
        ).all()
    return [(int(r.id), Command.from_payload(json.loads(r.envelope)["payload"].encode()).body) for r in rows]


def _delivered(store: Store, job: int, status: str, *, state: str = DONE) -> None:
    """A meter.key job's end as the plan records it: the verdict, and its envelope cleared."""
    with store.engine.begin() as conn:
        conn.execute(
            update(urgent_work)
            .where(urgent_work.c.id == job)
            .values(
                state=state,
                envelope=None,
                finished=NOW + timedelta(minutes=10),
                result=None if state != DONE else json.dumps({"status": status, "code": "ok", "detail": ""}),
            )
        )


def test_the_meter_keys_come_from_the_escrow_and_a_lost_step_is_sent_again_from_it(
    world: tuple[Store, HubRecoveries, PullPlan],
) -> None:
    """Each meter of the restored registry gets its current key from the escrow: the newest a hub
    applied (not one it refused), else its shipment's; a meter elsewhere gets none. A key step
    not delivered (its envelope cleared, as every delivered meter.key's is) is signed again from
    the escrow once the hub is back."""
    from smarthub.gdsc.fleet.field_meters import FieldMeters
    from smarthub.gdsc.fleet.key_escrow import KeyEscrow

    store, recoveries, plan = world
    store.enable_key_escrow(KeyEscrow(bytes(range(32))))
    ka, kb, kc, kd, kx = (bytes([n]) * 16 for n in (0xA1, 0xB2, 0xC3, 0xD4, 0xE5))
    shipment = "meter_id,manufacturer,protocol,fuel,key\n" + "".join(
        f"{m},LSE,wmbus,water,{k.hex()}\n" for m, k in (("E1", ka), ("W1", kb), ("X9", kx))
    )
    FieldMeters(store.engine, escrow=store.key_escrow).import_shipment(shipment, "S1", NOW)
    signer = recoveries.signer
    add = plan.queue_command(
        signer, "H1", "meter.add", {"meter": "W1", "protocol": "wmbus", "fuel": "water"}, NOW
    )
    rekey = plan.queue_command(signer, "H1", "meter.key", {"meter": "W1", "key": kc.hex()}, NOW)
    refused = plan.queue_command(signer, "H1", "meter.key", {"meter": "W1", "key": kd.hex()}, NOW)
    _answer(store, add, {"status": "applied", "code": "ok", "detail": "", "result": {}})
    _delivered(store, rekey, "applied")
    _delivered(store, refused, "failed")
    rid = recoveries.start("H1", NOW, reason="operator")
    sent = dict(_bodies(store, ("meter.key",)))
    assert sorted((b["meter"], b["key"]) for b in sent.values()) == [("E1", ka.hex()), ("W1", kc.hex())]
    rec = recoveries.get(rid)
    assert rec is not None and rec.detail["meter_keys"] == 2 and rec.detail["meter_keys_unreadable"] is None
    assert not any(k.hex() in json.dumps(rec.to_json()) for k in (ka, kc))  # the job shows no key
    # The E1 step's delivery fails (the hub away); its envelope is gone with it.
    (e1_job,) = [j for j, b in sent.items() if b["meter"] == "E1"]
    _delivered(store, e1_job, "", state=FAILED)
    back = NOW + timedelta(hours=1)
    store.log_pull(
        hub_id="H1", window_start=back, started=back, finished=back + timedelta(seconds=3),
        ok=True, readings=0, inserted=0, error=None,
    )  # fmt: skip
    recoveries.advance(back + timedelta(minutes=5))
    (step,) = [s for s in recoveries.steps(rid) if s["type"] == "meter.key" and s["attempts"] == 2]
    again = dict(_bodies(store, ("meter.key",)))[step["job"]]
    assert step["state"] == "queued" and again == {"meter": "E1", "key": ka.hex()}
