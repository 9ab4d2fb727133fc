"""Commands through the data services API: decided, audited, signed with the GDSC operator key,
queued in the shared pull plan (never sent from the API), followed as jobs.

A job is carried to a real hub management interface the way a collector would: claimed from the
plan, its envelope handed to ``ManagementInterface.handle`` (the hub verifies the operator's
signature under the GDSC CA and runs its handler), the verdict recorded with ``finish_urgent``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from gdsc.api_world import NOW, World, build, tariff_json
from smarthub.clock import ManualClock
from smarthub.gdsc.commands.vouchers import VoucherCourier
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import Priority
from smarthub.hub.ihd.commands import ihd_commands
from smarthub.hub.ihd.store import IhdStore
from smarthub.hub.management import ManagementInterface
from smarthub.hub.prepayment import PrepaymentLedger, topup_command


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    w = build(db_url, tmp_path / "state")
    yield w
    w.store.close()


def deliver(world: World, hub: ManagementInterface, collector: str = "A") -> list[int]:
    """One collector tick of urgent work: claim, hand each envelope to the hub, record its verdict."""
    plan = PullPlan(world.store)
    done = []
    for claim in plan.claim_urgent(collector, world.clock.now(), 10):
        assert claim.kind == "command" and claim.envelope is not None
        verdict = json.loads(asyncio.run(hub.handle(claim.envelope)).to_json())
        plan.finish_urgent(claim, True, world.clock.now(), result=verdict)
        done.append(claim.id)
    return done


def hub_for(world: World, tmp_path: Path) -> ManagementInterface:
    return ManagementInterface("H1", world.ca_cert, ManualClock(NOW), tmp_path / "mgmt.sqlite")


def test_ihd_message_is_queued_signed_delivered_and_followed(world: World, tmp_path: Path) -> None:
    hub = hub_for(world, tmp_path)
    ihd = IhdStore(tmp_path / "ihd.sqlite")
    hub.register("ihd.message", ihd_commands(ihd, None, ManualClock(NOW))["ihd.message"])  # type: ignore[arg-type]
    with world.client() as client:
        r = client.post(
            "/v1/premises/P1/commands/ihd-message",
            json={"meter_id": "E1", "text": "Your meter will be exchanged on Monday", "priority": 2},
            headers=world.auth("S1"),
        )
        assert r.status_code == 202, r.text
        job = r.json()["job_id"]
        assert r.headers["location"] == f"/v1/jobs/{job}"
        assert r.json() == {
            "job_id": job,
            "state": "queued",
            "command_type": "ihd.message",
            "hub_id": "H1",
            "voucher_id": None,
        }
        state = client.get(f"/v1/jobs/{job}", headers=world.auth("S1")).json()
        assert (state["state"], state["tries"], state["result"]) == ("queued", 0, None)
        # Claimed by a collector: in flight.
        plan = PullPlan(world.store)
        (claim,) = plan.claim_urgent("A", NOW, 10)
        assert claim.id == job and claim.priority is Priority.ON_DEMAND
        assert client.get(f"/v1/jobs/{job}", headers=world.auth("S1")).json()["state"] == "in-flight"
        verdict = json.loads(asyncio.run(hub.handle(claim.envelope)).to_json())  # type: ignore[arg-type]
        plan.finish_urgent(claim, True, NOW, result=verdict)
        state = client.get(f"/v1/jobs/{job}", headers=world.auth("S1")).json()
        assert state["state"] == "done" and state["result"]["status"] == "applied", state
        # Only the party that queued it (and the GDSC operator) may follow the job.
        assert client.get(f"/v1/jobs/{job}", headers=world.auth("OP")).status_code == 200
        r = client.get(f"/v1/jobs/{job}", headers=world.auth("C1"))
        assert r.status_code == 404 and r.json()["detail"] == f"no job {job} that C1 may follow"
        r = client.get("/v1/jobs/999999", headers=world.auth("S1"))
        assert r.status_code == 404 and r.json()["detail"] == "no job 999999 that S1 may follow"
        assert client.get("/v1/jobs", headers=world.auth("S1")).json() == {"jobs": [job], "next_after": None}
        assert client.get("/v1/jobs", headers=world.auth("C1")).json() == {"jobs": [], "next_after": None}
    (shown,) = ihd.messages(NOW)
    assert (shown.sender, shown.text, shown.priority) == ("S1", "Your meter will be exchanged on Monday", 2)
    entries = world.guard.audit.entries()
    sent = next(e for e in entries if e.action == "command:ihd-message")
    assert sent.allow and sent.actor == "S1" and sent.detail["detail"]["text"].startswith("Your meter")
    # Following a job is not access to the premises: the occupant's log shows the command only.
    log = world.guard.access_log("C1", "P1", _whole())
    assert [e.action for e in log] == ["command:ihd-message"]


def _whole():  # type: ignore[no-untyped-def]
    from smarthub.gdsc.governance.access import TimeRange

    return TimeRange(NOW - timedelta(days=1), NOW + timedelta(days=1))


def test_top_up_goes_through_a_voucher_the_hub_credits_once(world: World, tmp_path: Path) -> None:
    hub = hub_for(world, tmp_path)
    ledger = PrepaymentLedger(tmp_path / "prepay.sqlite", "H1", world.ca_cert)
    hub.register("prepayment.topup", topup_command(ledger, lambda: NOW))
    with world.client() as client:
        r = client.post(
            "/v1/premises/P1/commands/top-up",
            json={"meter_id": "E1", "amount": "10.50"},
            headers=world.auth("S1"),
        )
        assert r.status_code == 202, r.text
        job, voucher = r.json()["job_id"], r.json()["voucher_id"]
        assert r.json()["command_type"] == "prepayment.topup" and voucher.startswith("V")
        pending = client.get(f"/v1/jobs/{job}", headers=world.auth("S1")).json()
        assert (pending["voucher_id"], pending["voucher_status"]) == (voucher, "pending")
        claim = PullPlan(world.store).claim_urgent("A", NOW, 10)[0]
        assert claim.priority is Priority.URGENT  # a household's supply depends on it
        verdict = json.loads(asyncio.run(hub.handle(claim.envelope)).to_json())  # type: ignore[arg-type]
        PullPlan(world.store).finish_urgent(claim, True, NOW, result=verdict)
        state = client.get(f"/v1/jobs/{job}", headers=world.auth("S1")).json()
        assert state["state"] == "done" and state["result"]["result"]["credited"] is True
        # Reading the job writes nothing: the running GDSC settles the voucher from the verdict.
        assert state["voucher_status"] == "pending"
        courier = VoucherCourier(world.store, PullPlan(world.store), world.desk.signer)
        assert courier.tick(NOW) == (1, 0)
        state = client.get(f"/v1/jobs/{job}", headers=world.auth("S1")).json()
        assert state["voucher_status"] == "credited"
        # The gas supplier cannot top up the electricity meter; amounts are checked before anything is issued.
        r = client.post(
            "/v1/premises/P1/commands/top-up",
            json={"meter_id": "E1", "amount": "5.00"},
            headers=world.auth("SG"),
        )
        assert r.status_code == 403 and r.json()["detail"].startswith("SG does not supply electricity at P1")
        for bad in ("0", "500.01", "1.234", "-3"):
            r = client.post(
                "/v1/premises/P1/commands/top-up",
                json={"meter_id": "E1", "amount": bad},
                headers=world.auth("S1"),
            )
            assert r.status_code == 422, bad
    assert [t["voucher_id"] for t in ledger.top_ups()] == [voucher]
    assert ledger.balance("electricity").to_json()["credit"] == "10.50"
    assert world.desk.issuer.pending() == []  # settled from the hub's verdict


def test_tariff_update_and_supply_commands_are_signed_for_the_meters_hub(
    world: World, tmp_path: Path
) -> None:
    hub = hub_for(world, tmp_path)
    seen: list[tuple[str, dict]] = []  # type: ignore[type-arg]
    for ctype in ("tariff.update", "supply.disconnect", "supply.reconnect"):
        hub.register(ctype, lambda body, ctype=ctype: seen.append((ctype, body.to_json())) or {"ok": True})
    effective = "2026-09-01T00:00:00+01:00"  # local midnight of the version's effective_from
    with world.client() as client:
        r = client.post(
            "/v1/premises/P1/commands/tariff-update",
            json={"meter_id": "E1", "tariff": tariff_json(), "effective": effective},
            headers=world.auth("S1"),
        )
        assert r.status_code == 202, r.text
        for state in ("disconnect", "connect"):
            r = client.post(
                "/v1/premises/P1/commands/supply",
                json={"meter_id": "G1", "state": state},
                headers=world.auth("SG"),
            )
            assert r.status_code == 202, r.text
        # The electricity supplier may not switch the gas supply.
        r = client.post(
            "/v1/premises/P1/commands/supply",
            json={"meter_id": "G1", "state": "disconnect"},
            headers=world.auth("S1"),
        )
        assert r.status_code == 403 and "S1 does not supply gas at P1" in r.json()["detail"]
        bad = tariff_json() | {"pricing": {"type": "flat"}}
        r = client.post(
            "/v1/premises/P1/commands/tariff-update",
            json={"meter_id": "E1", "tariff": bad, "effective": effective},
            headers=world.auth("S1"),
        )
        assert r.status_code == 422 and "unit_rate_p_per_kwh" in r.text
        # A version takes effect at local midnight of its effective_from: the hub accepts no other.
        r = client.post(
            "/v1/premises/P1/commands/tariff-update",
            json={"meter_id": "E1", "tariff": tariff_json(), "effective": NOW.isoformat()},
            headers=world.auth("S1"),
        )
        assert r.status_code == 400 and "not local midnight" in r.json()["detail"]
    # Commands for one hub go in queue order: three ticks, one command each.
    for _ in range(3):
        deliver(world, hub)
    assert [c for c, _ in seen] == ["tariff.update", "supply.disconnect", "supply.reconnect"]
    tariff = seen[0][1]
    assert tariff == {
        "tariff": {**tariff_json(), "vat_rate": "0.05"},
        "effective": effective,
        "version": 1,
        "fuel": "electricity",  # the fuel of the meter the policy checked
    }
    assert seen[1][1] == {"meter": "G1"}
    assert hub.last_counter == 3  # counters from the store, rising per hub


def test_on_demand_read_by_occupant_and_refusals(world: World) -> None:
    with world.client() as client:
        r = client.post("/v1/premises/P1/on-demand-reads", json={"meter_id": "E1"}, headers=world.auth("C1"))
        assert r.status_code == 202 and r.json()["command_type"] is None
        job = r.json()["job_id"]
        (claim,) = PullPlan(world.store).claim_urgent("A", NOW, 10)
        assert (claim.id, claim.kind) == (job, "read")
        PullPlan(world.store).finish_urgent(claim, True, NOW, result={"readings": 48, "inserted": 48})
        assert client.get(f"/v1/jobs/{job}", headers=world.auth("C1")).json()["state"] == "done"
        # Third parties issue no commands, whatever their consent.
        r = client.post("/v1/premises/P1/on-demand-reads", json={"meter_id": "E1"}, headers=world.auth("TP"))
        assert (
            r.status_code == 403
            and r.json()["detail"] == "command:on-demand-read is not open to third-party data services"
        )
        r = client.post(
            "/v1/premises/P1/commands/ihd-message",
            json={"meter_id": "E1", "text": "hi"},
            headers=world.auth("C1"),
        )
        assert (
            r.status_code == 403
            and r.json()["detail"] == "command:ihd-message is issued by the supplier, not the consumer"
        )
        r = client.post("/v1/premises/P1/on-demand-reads", json={"meter_id": "X1"}, headers=world.auth("C1"))
        assert r.status_code == 404 and r.json()["detail"] == "no meter 'X1' at premises 'P1'"
        r = client.post(
            "/v1/premises/P1/commands/ihd-message",
            json={"meter_id": "E1", "text": "   "},
            headers=world.auth("S1"),
        )
        # blank: refused by the published pattern (issue 22), as the schema says
        assert r.status_code == 422 and r.json()["detail"].startswith(
            "body.text: String should match pattern"
        )
        past = (NOW - timedelta(hours=1)).isoformat()
        r = client.post(
            "/v1/premises/P1/commands/ihd-message",
            json={"meter_id": "E1", "text": "x", "expires": past},
            headers=world.auth("S1"),
        )
        assert r.status_code == 400 and "already past" in r.json()["detail"]
        # A decommissioned hub: nothing to send to.
        _deactivate(world)
        r = client.post("/v1/premises/P1/on-demand-reads", json={"meter_id": "E1"}, headers=world.auth("C1"))
        assert r.status_code == 409 and "hub 'H1' is not active" in r.json()["detail"]


def _deactivate(world: World) -> None:
    from sqlalchemy import update

    from smarthub.gdsc.fleet.registry import hubs

    with world.store.engine.begin() as conn:
        conn.execute(update(hubs).where(hubs.c.hub_id == "H1").values(status="decommissioned"))


def test_failed_delivery_and_hub_refusal_show_as_failed(world: World, tmp_path: Path) -> None:
    hub = hub_for(world, tmp_path)  # no tariff.update handler: the hub refuses it as unsupported
    with world.client() as client:
        body = {"meter_id": "E1", "tariff": tariff_json()}
        r = client.post("/v1/premises/P1/commands/tariff-update", json=body, headers=world.auth("S1"))
        job = r.json()["job_id"]
        deliver(world, hub)
        state = client.get(f"/v1/jobs/{job}", headers=world.auth("S1")).json()
        assert state["state"] == "failed"
        assert state["error"] == "hub refused: unsupported: this hub has no command 'tariff.update'"
        # Undeliverable: every try fails until the plan gives up.
        r = client.post("/v1/premises/P1/on-demand-reads", json={"meter_id": "E1"}, headers=world.auth("S1"))
        job = r.json()["job_id"]
        plan = PullPlan(world.store, max_tries=2)
        t = NOW
        for _ in range(2):
            (claim,) = plan.claim_urgent("A", t, 10)
            fin = plan.finish_urgent(claim, False, t, error="connect timeout")
            t = fin.next_try or t
            state = client.get(f"/v1/jobs/{job}", headers=world.auth("S1")).json()
        assert (state["state"], state["tries"], state["error"]) == ("failed", 2, "connect timeout")


def test_job_pages(world: World) -> None:
    with world.client() as client:
        ids = [
            client.post(
                "/v1/premises/P1/on-demand-reads", json={"meter_id": "E1"}, headers=world.auth("C1")
            ).json()["job_id"]
            for _ in range(5)
        ]
        first = client.get("/v1/jobs", params={"limit": 2}, headers=world.auth("C1")).json()
        assert first == {"jobs": ids[:2], "next_after": ids[1]}
        rest = client.get("/v1/jobs", params={"after": ids[1], "limit": 3}, headers=world.auth("C1")).json()
        assert rest == {"jobs": ids[2:], "next_after": None}


def test_another_partys_job_answers_as_a_missing_one(world: World) -> None:
    """Issue 13 item 12: job ids cannot be enumerated. Before the fix another party's job answered
    403 and a missing one 404, so probing ids told which exist."""
    with world.client() as client:
        r = client.post("/v1/premises/P1/on-demand-reads", json={"meter_id": "E1"}, headers=world.auth("S1"))
        job = r.json()["job_id"]
        theirs = client.get(f"/v1/jobs/{job}", headers=world.auth("TP"))
        missing = client.get(f"/v1/jobs/{job + 1000}", headers=world.auth("TP"))
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json() == {"detail": f"no job {job} that TP may follow"}
        assert missing.json() == {"detail": f"no job {job + 1000} that TP may follow"}
        assert theirs.headers.keys() == missing.headers.keys()
        assert client.get(f"/v1/jobs/{job}", headers=world.auth("S1")).status_code == 200
    # Both attempts are recorded alike: a denial, the job's premises only where there is a job.
    tries = [e for e in world.guard.audit.entries() if e.actor == "TP" and e.action == "read-job"]
    assert [(e.allow, e.premises_id) for e in tries] == [(False, "P1"), (False, None)]
