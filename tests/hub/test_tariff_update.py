"""Tariff distribution: the signed ``tariff.update`` command, validated, persisted and applied at
the effective instant, priced exactly as the GDSC's bill prices it; queued for many hubs by
``gdsc.tariffs.distribute_tariff`` and delivered through the real plan, courier and mutual TLS."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from hub.ihd_home import ELEC, IhdHome, make_home, pki
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.commands.tariff_redelivery import redeliver_tariffs
from smarthub.gdsc.commands.tariffs import distribute_tariff, tariff_update_body
from smarthub.gdsc.fleet.pki import Role
from smarthub.gdsc.pull.courier import CommandCourier
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import FAILED
from smarthub.gdsc.store import Store
from smarthub.hub.tariffs import TariffStore
from smarthub.model.obis import IMPORT_ACTIVE_ENERGY
from smarthub.model.tariff import RatePeriod, Tariff, TariffSchedule, TimeOfUse
from smarthub.model.tariff_calc import IntervalConsumption, day_start, settle, totals_for
from smarthub.model.tariff_carbon import FixedIntensity
from smarthub.sim.appliance_profiles import APPLIANCES
from smarthub.sim.consumer import sample_electricity
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context

START = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # a Monday; London is on GMT
DAY1, DAY2, DAY3 = date(2026, 11, 23), date(2026, 11, 24), date(2026, 11, 25)
EVERY_DAY = {d: "all" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def night_saver(version: int, effective: date, day: str, night: str) -> Tariff:
    return Tariff(
        tariff_id="night-saver",
        version=version,
        effective_from=effective,
        name="Night Saver",
        standing_charge_p_per_day=Decimal("55.10"),
        pricing=TimeOfUse(
            rates={"day": Decimal(day), "night": Decimal(night)},
            day_types={
                "all": (
                    RatePeriod(start="00:30", end="07:30", rate="night"),
                    RatePeriod(start="07:30", end="00:30", rate="day"),
                )
            },
            week=EVERY_DAY,
        ),
    )


V2 = night_saver(2, DAY2, "30.0125", "15.5")


def gdsc_bill(home: IhdHome, schedule: TariffSchedule, start: date, end: date):  # type: ignore[no-untyped-def]
    """The GDSC's bill for the period, from the intervals it collects (the hub's history)."""
    rows = home.hub.history.query(ELEC, IMPORT_ACTIVE_ENERGY, limit=100_000)
    intervals = [
        IntervalConsumption(
            datetime.fromtimestamp(r.start, UTC),
            timedelta(seconds=r.duration),
            (Decimal(r.value).scaleb(r.power_of_ten) / 1000).normalize() + 0,
        )
        for r in rows
        if day_start(start) <= datetime.fromtimestamp(r.start, UTC) < day_start(end)
    ]
    totals = totals_for(schedule, FixedIntensity(g_per_kwh=Decimal(180)), intervals)
    return settle(schedule, totals, start, end)


async def test_new_version_prices_from_its_effective_midnight_exactly(tmp_path: Path) -> None:
    home = make_home(tmp_path, START, prepayment=False, plugs=APPLIANCES[:1])
    try:
        v1 = home.side.consumption.supplies["electricity"].accumulator.schedule.versions[0]
        home.run(START, START + timedelta(hours=12), elec_w=900)
        verdict = await home.command("tariff.update", tariff_update_body(V2, "electricity"))
        assert verdict.status == "applied", verdict
        assert verdict.result is not None and verdict.result["version"] == 2
        home.run(START + timedelta(hours=12, minutes=30), START + timedelta(days=2), elec_w=900)

        acc = home.side.consumption.supplies["electricity"].accumulator
        assert [t.version for t in acc.schedule.versions] == [1, 2]
        bill = acc.bill(DAY1, DAY3)
        assert bill == gdsc_bill(home, TariffSchedule([v1, V2]), DAY1, DAY3)
        # Day 1 entirely under version 1, day 2 entirely under version 2.
        assert {line.tariff.version for line in acc.bill(DAY1, DAY2).energy} == {1}  # type: ignore[union-attr]
        day2 = acc.bill(DAY2, DAY3)
        assert {(line.tariff.version, line.unit_price) for line in day2.energy} == {  # type: ignore[union-attr]
            (2, Decimal("30.0125")),
            (2, Decimal("15.5")),
        }
        # 450 Wh a half-hour: 14 night half-hours (00:30-07:30) at 15.5p, 34 day ones at 30.0125p.
        night = next(line for line in day2.energy if line.description == "Energy, night")
        assert night.quantity == Decimal("6.3") and night.amount == Decimal("0.98")  # 97.65p -> 98p
        # The rate switches at the effective instant: one minute before midnight, then at midnight.
        midnight = day_start(DAY2)
        before, after = acc.current_rate(midnight - timedelta(minutes=1)), acc.current_rate(midnight)
        assert (before.tariff.version, before.unit_price_p_per_kwh) == (1, Decimal("27.03"))
        assert (after.tariff.version, after.unit_price_p_per_kwh) == (2, Decimal("30.0125"))
        # The half-hour costs the IHD charts (and prepayment charges) follow the same versions.
        halves = home.side.consumption.half_hours("electricity", DAY2)
        assert halves[0].cost == Decimal("0.45") * Decimal("30.0125") * Decimal("1.05") / 100
        assert home.side.consumption.half_hours("electricity", DAY1)[0].cost == (
            Decimal("0.45") * Decimal("27.03") * Decimal("1.05") / 100
        )
    finally:
        await home.close()


async def test_a_late_update_reprices_what_the_hub_already_holds(tmp_path: Path) -> None:
    """A version arriving after its effective midnight (the hub was unreachable) re-prices the
    intervals from that midnight: figures still equal the bill the GDSC issues."""
    home = make_home(tmp_path, START, prepayment=False, plugs=APPLIANCES[:1])
    try:
        v1 = home.side.consumption.supplies["electricity"].accumulator.schedule.versions[0]
        home.run(START, START + timedelta(days=1, hours=10), elec_w=700)
        verdict = await home.command("tariff.update", tariff_update_body(V2, "electricity"))
        assert verdict.status == "applied" and verdict.result is not None
        assert verdict.result["repriced"] == 20 + 20  # day 2's closed half-hours, supply and plug
        acc = home.side.consumption.supplies["electricity"].accumulator
        assert acc.bill(DAY1, DAY3) == gdsc_bill(home, TariffSchedule([v1, V2]), DAY1, DAY3)
        first = home.side.consumption.half_hours("electricity", DAY2)[0]
        assert first.cost == Decimal("0.35") * Decimal("30.0125") * Decimal("1.05") / 100
    finally:
        await home.close()


async def test_older_equal_and_malformed_updates_are_refused_with_the_reason(tmp_path: Path) -> None:
    home = make_home(tmp_path, START, prepayment=False, plugs=())
    try:
        assert (
            await home.command("tariff.update", tariff_update_body(V2, "electricity"))
        ).status == "applied"
        v1_again = night_saver(1, DAY1, "1", "1")
        bad_effective = {**tariff_update_body(V2, "electricity"), "effective": "2026-11-24T12:00:00+00:00"}
        negative = tariff_update_body(night_saver(3, DAY3, "1", "1"), "electricity")
        negative["tariff"]["pricing"]["rates"]["day"] = "-1"
        # Stale versions fail in the handler; malformed bodies are refused before the counter.
        cases = [
            (tariff_update_body(V2, "electricity"), "failed", "StaleTariffVersion: tariff.update: version 2"),
            (tariff_update_body(v1_again, "electricity"), "failed", "StaleTariffVersion"),
            (
                {**tariff_update_body(night_saver(3, DAY3, "1", "1"), "electricity"), "version": 4},
                "refused",
                "'version' 4 does not match",
            ),
            (bad_effective, "refused", "not local midnight"),
            (
                {**tariff_update_body(night_saver(3, DAY3, "1", "1"), "electricity"), "fuel": "water"},
                "refused",
                "'fuel' must be one of electricity, gas",
            ),
            (negative, "refused", "pricing.time_of_use.rates.day"),
            ({"tariff": {}, "version": 3}, "refused", "'fuel' is missing"),
        ]
        for body, status, reason in cases:
            verdict = await home.command("tariff.update", body)
            assert verdict.status == status and reason in verdict.detail, (reason, verdict)
        acc = home.side.consumption.supplies["electricity"].accumulator
        assert [t.version for t in acc.schedule.versions] == [1, 2]
        other = replace(V2, tariff_id="other", version=7)
        verdict = await home.command("tariff.update", tariff_update_body(other, "electricity"))
        assert verdict.status == "failed" and "is on tariff 'night-saver'" in verdict.detail
    finally:
        await home.close()


async def test_a_distributed_version_survives_a_restart(tmp_path: Path) -> None:
    home = make_home(tmp_path, START, prepayment=False, plugs=())
    home.run(START, START + timedelta(hours=2))
    assert (await home.command("tariff.update", tariff_update_body(V2, "electricity"))).status == "applied"
    await home.close()
    assert [t.version for t in TariffStore(tmp_path / "ihd" / "tariffs.sqlite").versions("electricity")] == [
        2
    ]
    again = make_home(tmp_path, START, prepayment=False, plugs=())
    try:
        acc = again.side.consumption.supplies["electricity"].accumulator
        assert acc.schedule.versions[-1] == V2
        assert acc.current_rate(day_start(DAY2)).tariff.version == 2
        assert again.side.consumption.supplies["gas"].accumulator.schedule.versions[-1].version == 1
    finally:
        await again.close()


async def test_distribute_tariff_queues_signed_commands_delivered_over_mutual_tls(
    tmp_path: Path, db_url: str, wall_now: datetime
) -> None:
    ca, operator = pki(START)
    home = make_home(tmp_path / "hub", START, prepayment=False, plugs=(), ca=(ca, operator))
    hub_cert = ca.issue(Role.HUB, "HUB000001", wall_now, hosts=("127.0.0.1",))
    hub_cert.save(tmp_path, "hub")
    ca.issue(Role.COLLECTOR, "collector", wall_now).save(tmp_path, "collector")
    ca.save(tmp_path / "ca")
    server = HubWanServer("HUB000001", hub_cert.lfdi, home.hub, lambda: 0, management=home.management)
    port = await server.start(
        "127.0.0.1", 0, server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    )
    store = Store(db_url)
    store.create_schema()
    courier = CommandCourier(
        client_context(tmp_path / "collector.pem", tmp_path / "collector.key", tmp_path / "ca" / "ca.pem")
    )
    try:
        url = f"https://127.0.0.1:{port}"
        store.register_hub(
            hub_id="HUB000001",
            premises_id="P1",
            url=url,
            lfdi=hub_cert.lfdi,
            meters_by_fuel=[(ELEC, "electricity")],
        )
        store.register_hub(
            hub_id="HUB000002", premises_id="P2", url="https://127.0.0.1:9", lfdi="0" * 40, meters_by_fuel=[]
        )
        plan = PullPlan(store)
        assert operator.private_key is not None
        signer = CommandSigner(operator.private_key, operator.cert_pem, store.next_command_counter)
        try:
            distribute_tariff(store, plan, signer, V2, "electricity", wall_now, premises=["P1", "P9"])
            raise AssertionError("an unknown premises must be refused")
        except LookupError as err:
            assert "P9" in str(err)
        queued = distribute_tariff(store, plan, signer, V2, "electricity", wall_now, premises=["P1", "P2"])
        assert [(q.hub_id, q.premises_id) for q in queued] == [("HUB000001", "P1"), ("HUB000002", "P2")]
        claims = [c for c in plan.claim_urgent("c1", wall_now, 10) if c.hub.hub_id == "HUB000001"]
        assert len(claims) == 1 and claims[0].command_type == "tariff.update"
        assert claims[0].envelope is not None
        payload = json.loads(json.loads(claims[0].envelope)["payload"])
        assert payload["body"] == tariff_update_body(V2, "electricity")
        verdict = await courier.deliver(claims[0].hub, claims[0].envelope)
        plan.finish_urgent(claims[0], True, wall_now, result=verdict)
        assert verdict["status"] == "applied" and verdict["result"]["version"] == 2
        acc = home.side.consumption.supplies["electricity"].accumulator
        assert acc.schedule.versions[-1] == V2
        assert json.loads(plan.urgent_job(claims[0].id)["result"])["status"] == "applied"
    finally:
        await courier.close()
        await server.stop()
        store.close()
        await home.close()


def test_gdsc_body_refuses_an_effective_time_that_is_not_local_midnight() -> None:
    body = tariff_update_body(V2, "gas")
    assert body["effective"] == "2026-11-24T00:00:00+00:00" and body["tariff"]["version"] == 2
    summer = night_saver(5, date(2026, 7, 1), "1", "1")
    assert tariff_update_body(summer, "electricity")["effective"] == "2026-06-30T23:00:00+00:00"
    try:
        tariff_update_body(V2, "electricity", START + timedelta(hours=25))
        raise AssertionError("must refuse")
    except ValueError as err:
        assert "not local midnight" in str(err)
    assert sample_electricity(DAY1).versions[0].version == 1


async def test_a_tariff_given_up_while_the_hub_was_away_is_sent_again_once_it_answers(
    tmp_path: Path, db_url: str, wall_now: datetime
) -> None:
    """A WAN outage longer than the plan's tries leaves a ``tariff.update`` failed; once the
    hub has answered a pull the upkeep queues it again, signed afresh, and the hub takes it (the
    hub kept the old tariff for good before); one redelivery is queued, not one per run."""
    ca, operator = pki(START)
    home = make_home(tmp_path / "hub", START, prepayment=False, plugs=(), ca=(ca, operator))
    store = Store(db_url)
    store.create_schema()
    try:
        store.register_hub(
            hub_id="HUB000001", premises_id="P1", url="https://127.0.0.1:9", lfdi="0" * 40,
            meters_by_fuel=[(ELEC, "electricity")],
        )  # fmt: skip
        plan = PullPlan(store)
        assert operator.private_key is not None
        signer = CommandSigner(operator.private_key, operator.cert_pem, store.next_command_counter)
        (queued,) = distribute_tariff(store, plan, signer, V2, "electricity", wall_now, premises=["P1"])
        t = wall_now
        for _ in range(plan.max_tries):  # the hub is away: every try fails, then the plan gives up
            t += timedelta(hours=1)
            (claim,) = plan.claim_urgent("collector", t, 10)
            plan.finish_urgent(claim, False, t, error="connection refused")
        assert plan.urgent_job(queued.job_id)["state"] == FAILED
        assert redeliver_tariffs(store.engine, plan, signer, t) == []  # not back yet
        back = t + timedelta(hours=2)
        store.log_pull(
            hub_id="HUB000001", window_start=back, started=back, finished=back, ok=True, readings=0,
            inserted=0, error=None,
        )  # fmt: skip
        (again,) = redeliver_tariffs(store.engine, plan, signer, back + timedelta(minutes=1))
        assert (again.hub_id, again.fuel, again.version) == ("HUB000001", "electricity", 2)
        assert again.job != queued.job_id
        assert redeliver_tariffs(store.engine, plan, signer, back + timedelta(minutes=2)) == []  # on its way
        (claim,) = plan.claim_urgent("collector", back + timedelta(minutes=3), 10)
        assert claim.id == again.job and claim.envelope is not None
        verdict = await home.management.handle(claim.envelope)
        assert verdict.status == "applied", verdict
        assert home.side.consumption.supplies["electricity"].accumulator.schedule.versions[-1] == V2
        plan.finish_urgent(claim, True, back + timedelta(minutes=3), result={"status": "applied"})
        assert redeliver_tariffs(store.engine, plan, signer, back + timedelta(hours=1)) == []
    finally:
        store.close()
        await home.close()
