"""The central error log: hub diagnoses correlated into incidents, remote repairs, work orders."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.gdsc.incidents.console import code_label, console_app
from smarthub.gdsc.incidents.error_log import ErrorLog
from smarthub.gdsc.incidents.event_pull import pull_events
from smarthub.gdsc.incidents.policy import HUB_UNREACHABLE, POLICIES, Action, Party, decide
from smarthub.gdsc.store import Store
from smarthub.hub.diagnostics import (
    DiagnosedEvent,
    DiagnosisCode,
    DiagnosticsLog,
    RepairAction,
    RepairAttempt,
    RepairOutcome,
    Severity,
)
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.wan.client.hub_client import HubClient
from smarthub.wan.contract.bodies import LinkTest, parse_body
from smarthub.wan.contract.events import BadHubEvent, event_detail, parse_hub_event
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context

T0 = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)


def detail(
    event_id: int,
    code: DiagnosisCode,
    device: str = "E1",
    *,
    at: datetime = T0,
    outcome: RepairOutcome | None = None,
    closed: datetime | None = None,
) -> dict[str, Any]:
    """A hub's event detail exactly as the hub's WAN layer serialises it."""
    attempts = () if outcome is None else (RepairAttempt(RepairAction.REPOLL, outcome, at),)
    event = DiagnosedEvent(
        id=event_id,
        code=code,
        device=device,
        device_kind="meter",
        severity=Severity.MAJOR,
        evidence=f"evidence of {code.name.lower()}",
        numbers={"n": 3},
        recommendation="site visit",
        first_seen=at,
        last_seen=at + timedelta(minutes=5),
        attempts=attempts,
        closed=closed,
        resolution=None if closed is None else "cleared",
    )
    return json.loads(json.dumps(event_detail(event)))


@pytest.fixture
def store(db_url: str) -> Store:
    s = Store(db_url)
    s.create_schema()
    return s


LINKS = {"H1": "cell-A", "H2": "cell-A", "H3": "cell-A", "H4": "cell-A", "H9": "cell-B"}


def error_log(store: Store, **kw: Any) -> ErrorLog:
    return ErrorLog(store, wan_link_of=LINKS.get, **kw)


# -- parsing --------------------------------------------------------------------------------


def test_a_real_event_detail_parses() -> None:
    e = parse_hub_event("H1", detail(7, DiagnosisCode.TAMPER, outcome=RepairOutcome.FAILED))
    assert (e.hub_id, e.event_id, e.code, e.device, e.is_open) == ("H1", 7, 10, "E1", True)
    assert e.outcome == "failed" and not e.repaired_locally and e.first_seen == T0


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("code"), "lacks 'code'"),
        (lambda d: d.update(code="10"), "'code' has type str"),
        (lambda d: d.update(open=1), "'open' has type int"),
        (lambda d: d.update(severity="apocalyptic"), "unknown severity"),
        (lambda d: d.update(first_seen="yesterday"), "not an ISO 8601 time"),
        (lambda d: d.update(first_seen="2026-11-02T03:00:00"), "no time zone"),
        (lambda d: d.update(last_seen="2020-01-01T00:00:00+00:00"), "before first_seen"),
        (lambda d: d.update(count=0), "count 0"),
        (lambda d: d.update(code=700), "out of range"),
    ],
)
def test_malformed_details_are_refused_with_the_field_named(mutate: Any, message: str) -> None:
    d = detail(1, DiagnosisCode.STALE_METER)
    mutate(d)
    with pytest.raises(BadHubEvent, match=message):
        parse_hub_event("H1", d)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=20,
)


@settings(max_examples=300)
@given(
    st.one_of(JSON, st.fixed_dictionaries({}, optional={k: JSON for k in detail(1, DiagnosisCode.TAMPER)}))
)
def test_fuzzed_details_parse_or_are_refused_never_crash(value: object) -> None:
    with contextlib.suppress(BadHubEvent):
        parse_hub_event("H1", value)


@settings(max_examples=200)
@given(st.sampled_from(list(detail(1, DiagnosisCode.TAMPER))), JSON)
def test_one_corrupted_field_parses_or_is_refused(key: str, value: object) -> None:
    d = detail(1, DiagnosisCode.TAMPER)
    d[key] = value
    with contextlib.suppress(BadHubEvent):
        parse_hub_event("H1", d)


# -- policy ---------------------------------------------------------------------------------


def test_policy_table() -> None:
    kw = dict(hubs_affected=1, area_threshold=3, opened=T0, now=T0, remote_repair_tried=False)
    assert decide(DiagnosisCode.TAMPER, repaired_locally=False, **kw).action is Action.WORK_ORDER
    assert decide(DiagnosisCode.TAMPER, repaired_locally=True, **kw).action is Action.MONITOR
    stale = decide(DiagnosisCode.STALE_METER, repaired_locally=False, **kw)
    assert (stale.action, stale.command) == (Action.REMOTE_REPAIR, "diagnostic.han_scan")
    kw["remote_repair_tried"] = True
    assert decide(DiagnosisCode.STALE_METER, repaired_locally=False, **kw).action is Action.MONITOR
    kw["now"] = T0 + timedelta(hours=25)
    assert decide(DiagnosisCode.STALE_METER, repaired_locally=False, **kw).action is Action.WORK_ORDER
    outage = decide(HUB_UNREACHABLE, repaired_locally=False, **{**kw, "hubs_affected": 3, "now": T0})
    assert (outage.action, outage.party) == (Action.WORK_ORDER, Party.WAN_PROVIDER)
    # A diagnosis code the GDSC does not know yet still reaches a person.
    assert decide(99, repaired_locally=False, **kw).action is Action.WORK_ORDER


# -- the log --------------------------------------------------------------------------------


def test_tamper_opens_one_work_order_carrying_the_hubs_diagnosis(store: Store) -> None:
    log = error_log(store)
    d = detail(1, DiagnosisCode.TAMPER)
    assert log.record_events("H1", [d], T0).accepted == 1
    log.record_events("H1", [d], T0 + timedelta(minutes=30))  # the same event pulled again
    (order,) = log.work_orders()
    assert order["party"] == "supplier" and order["hub_id"] == "H1" and order["status"] == "open"
    (event,) = order["diagnosis"]["events"]
    assert event["evidence"] == "evidence of tamper" and event["device"] == "E1"
    assert log.summary()["events"] == 1 and len(log.incidents()) == 1


def test_a_power_cut_seen_by_many_hubs_on_one_link_is_one_incident(store: Store) -> None:
    log = error_log(store)
    for i, hub in enumerate(["H1", "H2", "H3", "H4"]):
        log.record_events(hub, [detail(1, DiagnosisCode.POWER_FAILURE, at=T0 + timedelta(seconds=i))], T0)
    log.record_events("H9", [detail(1, DiagnosisCode.POWER_FAILURE)], T0)  # another link
    incidents = log.incidents(open_only=True)
    assert sorted(len(i["hubs"]) for i in incidents) == [1, 4]
    (order,) = log.work_orders()
    assert order["party"] == "network_operator" and order["hub_id"] is None
    assert order["diagnosis"]["hubs"] == ["H1", "H2", "H3", "H4"]
    # Supply comes back: every hub closes its event; the incident and its work order close.
    for hub in ["H1", "H2", "H3", "H4"]:
        log.record_events(hub, [detail(1, DiagnosisCode.POWER_FAILURE, closed=T0 + timedelta(hours=1))], T0)
    assert [i["hubs"] for i in log.incidents(open_only=True)] == [["H9"]]
    assert log.work_orders()[0]["status"] == "resolved"


def test_unreachable_hubs_on_one_link_become_one_outage_for_the_wan_provider(store: Store) -> None:
    log = error_log(store)
    ids = {log.record_unreachable(h, T0, "connect timeout") for h in ["H1", "H2", "H3"]}
    assert len(ids) == 1
    (order,) = log.work_orders(status="open")
    assert order["party"] == "wan_provider" and order["assignee"] == "wan_provider:cell-A"
    assert set(order["diagnosis"]["unreachable"]) == {"H1", "H2", "H3"}
    for h in ["H1", "H2"]:
        log.record_reachable(h, T0 + timedelta(hours=2))
    assert log.incidents(open_only=True)[0]["hubs_open"] == ["H3"]
    log.record_reachable("H3", T0 + timedelta(hours=3))
    assert log.incidents(open_only=True) == []
    assert log.work_orders()[0]["status"] == "resolved"


def test_one_silent_hub_waits_a_day_then_goes_to_its_supplier(store: Store) -> None:
    log = error_log(store)
    log.record_unreachable("H9", T0, "TLS handshake timeout")
    log.review(T0 + timedelta(hours=23))
    assert log.work_orders() == []
    log.review(T0 + timedelta(hours=24, minutes=1))
    (order,) = log.work_orders()
    assert order["party"] == "supplier" and order["hub_id"] == "H9"


def test_a_link_test_repair_names_the_meter_as_the_hub_reads_it(store: Store) -> None:
    """The repair's body is the contract's: the hub's link test reads "meter" (the GDSC once sent
    "device", which the hub could not act on)."""
    log = error_log(store)
    log.record_events(
        "H1", [detail(5, DiagnosisCode.HAN_WEAK_SIGNAL, "G7", outcome=RepairOutcome.FAILED)], T0
    )
    (repair,) = log.queued_repairs()
    assert (repair.command, repair.body) == ("diagnostic.link_test", {"meter": "G7"})
    assert parse_body(repair.command, repair.body) == LinkTest("G7")
    log.record_events("H2", [detail(6, DiagnosisCode.HAN_WEAK_SIGNAL, "", outcome=RepairOutcome.FAILED)], T0)
    repairs = {r.hub_id: r for r in log.queued_repairs()}
    # No meter named: a HAN scan, which needs none (once, however often the hub reports).
    assert (repairs["H2"].command, repairs["H2"].body) == ("diagnostic.han_scan", {})


def test_han_fault_gets_a_remote_repair_first_then_a_work_order(store: Store) -> None:
    log = error_log(store)
    log.record_events("H1", [detail(5, DiagnosisCode.STALE_METER, "G7", outcome=RepairOutcome.FAILED)], T0)
    (repair,) = log.queued_repairs()
    assert (repair.hub_id, repair.command, repair.body) == ("H1", "diagnostic.han_scan", {})
    log.repair_sent(repair.repair_id, {"status": "applied"}, T0 + timedelta(minutes=1))
    assert log.queued_repairs() == [] and log.work_orders() == []
    log.review(T0 + timedelta(hours=25))  # still open a day later: someone must go
    (order,) = log.work_orders()
    assert "remote repair did not clear it" in order["reason"]
    log.record_events("H1", [detail(5, DiagnosisCode.STALE_METER, "G7", closed=T0 + timedelta(days=2))], T0)
    assert log.work_orders()[0]["status"] == "resolved" and log.incidents(open_only=True) == []


def test_a_fault_the_hub_repaired_itself_needs_nobody(store: Store) -> None:
    log = error_log(store)
    log.record_events("H1", [detail(3, DiagnosisCode.HAN_POLL_FAILURES, outcome=RepairOutcome.SUCCEEDED)], T0)
    assert log.queued_repairs() == [] and log.work_orders() == []
    assert log.incidents(open_only=True) == []


def test_bad_details_are_refused_and_the_good_ones_kept(store: Store) -> None:
    log = error_log(store)
    result = log.record_events("H1", [{"id": 1}, "junk", detail(2, DiagnosisCode.TAMPER)], T0)
    assert result.accepted == 1 and len(result.refused) == 2
    assert "lacks" in result.refused[0] and "not an object" in result.refused[1]
    assert log.known_events("H1") == 1


# -- end to end: a real hub over mutual TLS -------------------------------------------------


async def test_events_pulled_from_a_real_hub_open_and_close_incidents(
    tmp_path: Path, wall_now: datetime, store: Store
) -> None:
    ca = CertificateAuthority.create("CA", wall_now)
    ca.save(tmp_path / "ca")
    hub_cert = ca.issue(Role.HUB, "H1", wall_now, hosts=("127.0.0.1",))
    hub_cert.save(tmp_path, "hub")
    ca.issue(Role.COLLECTOR, "c", wall_now).save(tmp_path, "c")
    history = HistoryStore(tmp_path / "history.sqlite")
    events = DiagnosticsLog.beside(history.path)
    events.record(DiagnosisCode.TAMPER, "E1", "meter", T0, "case opened flag set", {"flag": "tamper"})
    events.record(DiagnosisCode.STALE_METER, "G1", "meter", T0, "no frame for 2 h", {"silent_s": 7200})
    server = HubWanServer(
        "H1", hub_cert.lfdi, SmartHub("H1", history), lambda: int(T0.timestamp()), events=events
    )
    port = await server.start(
        "127.0.0.1", 0, server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    )
    ctx = client_context(tmp_path / "c.pem", tmp_path / "c.key", tmp_path / "ca" / "ca.pem")
    client = HubClient(f"https://127.0.0.1:{port}", ctx, hub_cert.lfdi)
    log = error_log(store)
    try:
        assert (await pull_events(client, log, "H1", T0)).accepted == 2
        assert len(log.work_orders()) == 1 and len(log.queued_repairs()) == 1
        assert (await pull_events(client, log, "H1", T0)).accepted == 2  # open ones re-read, no new
        assert log.summary()["events"] == 2
        # The meter talks again: the hub closes its event; the next pull closes the incident.
        events.close(DiagnosisCode.STALE_METER, "G1", T0 + timedelta(hours=3))
        events.record(DiagnosisCode.LOW_BATTERY, "G1", "meter", T0, "battery 2.1 V", {"volts": 2.1})
        await pull_events(client, log, "H1", T0 + timedelta(hours=3))
        kinds = {i["code"]: i["closed"] is not None for i in log.incidents()}
        assert kinds == {int(DiagnosisCode.TAMPER): False, int(DiagnosisCode.STALE_METER): True, 12: False}
        assert len(log.work_orders(status="open")) == 2
    finally:
        await client.close()
        await server.stop()
        history.close()


# -- the code table is the WAN contract's (issue 16) ----------------------------------------


def test_every_diagnosis_code_has_a_gdsc_policy_and_a_label() -> None:
    """The GDSC reads the hub's code table from the WAN contract: a code added for the hub
    without a policy or label at the GDSC fails here, not in the field."""
    for code in DiagnosisCode:
        assert code in POLICIES, f"{code!r} has no GDSC policy"
        assert code_label(code) != f"code {int(code)}", f"{code!r} has no label"
    assert code_label(99) == "code 99" and code_label(HUB_UNREACHABLE) == "hub unreachable"


async def test_a_hubs_storage_full_event_becomes_its_incident_and_label_at_the_gdsc(
    tmp_path: Path, wall_now: datetime, store: Store
) -> None:
    """Regression (issue 16): the GDSC's copied code table stopped at 14, so a hub's STORAGE_FULL
    (15) was dispatched as an unknown code and the console showed "code 15"."""
    ca = CertificateAuthority.create("CA", wall_now)
    ca.save(tmp_path / "ca")
    hub_cert = ca.issue(Role.HUB, "H1", wall_now, hosts=("127.0.0.1",))
    hub_cert.save(tmp_path, "hub")
    ca.issue(Role.COLLECTOR, "c", wall_now).save(tmp_path, "c")
    history = HistoryStore(tmp_path / "history.sqlite")
    events = DiagnosticsLog.beside(history.path)
    events.record(DiagnosisCode.STORAGE_FULL, "history", "storage", T0, "disk full", {"free_bytes": 0})
    server = HubWanServer(
        "H1", hub_cert.lfdi, SmartHub("H1", history), lambda: int(T0.timestamp()), events=events
    )
    port = await server.start(
        "127.0.0.1", 0, server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    )
    ctx = client_context(tmp_path / "c.pem", tmp_path / "c.key", tmp_path / "ca" / "ca.pem")
    client = HubClient(f"https://127.0.0.1:{port}", ctx, hub_cert.lfdi)
    log = error_log(store)
    try:
        assert (await pull_events(client, log, "H1", T0)).accepted == 1
    finally:
        await client.close()
        await server.stop()
        history.close()
    (incident,) = log.incidents()
    assert incident["code"] == DiagnosisCode.STORAGE_FULL == 15
    (order,) = log.work_orders()
    assert (order["party"], order["hub_id"], order["reason"]) == ("supplier", "H1", "needs a person")
    (event,) = order["diagnosis"]["events"]
    assert event["kind"] == "storage_full" and event["severity"] == "critical"
    async with TestClient(TestServer(console_app(store, list, log))) as console:
        page = await (await console.get("/")).text()
    assert "storage full" in page and "code 15" not in page


def test_repairs_go_out_as_the_contracts_bodies_and_an_old_malformed_row_blocks_none(store: Store) -> None:
    from smarthub.gdsc.commands.signer import CommandSigner
    from smarthub.gdsc.incidents.repairs import dispatch_repairs
    from smarthub.gdsc.incidents.tables import repair_commands
    from smarthub.gdsc.pull.plan import PullPlan
    from smarthub.wan.contract.commands import Command, SignedCommand

    log = error_log(store)
    log.record_events(
        "H1", [detail(5, DiagnosisCode.HAN_WEAK_SIGNAL, "G7", outcome=RepairOutcome.FAILED)], T0
    )
    (good,) = log.queued_repairs()
    # A row queued before the bodies were typed: the link test aimed with "device".
    with store.engine.begin() as conn:
        conn.execute(
            repair_commands.insert().values(
                incident_id=good.incident_id, hub_id="H2", command="diagnostic.link_test",
                body=json.dumps({"device": "G8"}), created=T0, status="queued",
            )
        )  # fmt: skip
    ca = CertificateAuthority.create("ca", T0)
    op = ca.issue(Role.OPERATOR, "ops", T0)
    counters = iter(range(1, 100))
    signer = CommandSigner(op.private_key, op.cert_pem, lambda hub: next(counters))
    assert dispatch_repairs(log, signer, PullPlan(store), T0) == 1
    with store.engine.connect() as conn:
        rows = {r.hub_id: r for r in conn.execute(repair_commands.select())}
    assert rows["H1"].status == "sent" and rows["H2"].status == "failed"
    assert "'meter' is missing" in json.loads(rows["H2"].verdict)["detail"]
    job = PullPlan(store).urgent_job(json.loads(rows["H1"].verdict)["job"])
    sent = Command.from_payload(SignedCommand.from_envelope(job["envelope"].encode()).payload)
    assert (sent.type, sent.body) == ("diagnostic.link_test", {"meter": "G7"})
