"""Prepayment at the hub: vouchers credited exactly once, friendly credit, emergency credit, gas safety."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smarthub.clock import ManualClock
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.commands.vouchers import VoucherIssuer
from smarthub.gdsc.fleet.pki import CertificateAuthority, IssuedCertificate, Role
from smarthub.gdsc.store import Store
from smarthub.hub.management import ManagementInterface
from smarthub.hub.prepayment import (
    AccountConfig,
    PrepaymentLedger,
    ReconnectRefused,
    SupplyAction,
    VoucherRefused,
    topup_command,
)
from smarthub.model.prepayment import BadVoucher, FriendlyCalendar, Voucher, voucher_envelope

# Tuesday 24 November 2026, noon in London (GMT): outside any friendly period.
NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
EVENING = datetime(2026, 11, 24, 20, 0, tzinfo=UTC)
SATURDAY = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertificateAuthority, IssuedCertificate]:
    issued = NOON - timedelta(days=30)  # valid both at the simulated times and at wall time
    ca = CertificateAuthority.create("GDSC CA", issued)
    return ca, ca.issue(Role.OPERATOR, "operator", issued)


def envelope(operator: IssuedCertificate, voucher: Voucher) -> dict[str, str]:
    assert operator.private_key is not None
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    sig = operator.private_key.sign(voucher.canonical(), ec.ECDSA(hashes.SHA256()))
    return voucher_envelope(voucher, sig, operator.cert_pem)


def voucher(n: int, amount: str = "10.00", fuel: str = "electricity", hub: str = "HUB1") -> Voucher:
    return Voucher(f"V{n:010d}", hub, fuel, Decimal(amount), NOON)


@pytest.fixture
def ledger(tmp_path: Path, pki: tuple[CertificateAuthority, IssuedCertificate]) -> PrepaymentLedger:
    ca, _ = pki
    led = PrepaymentLedger(tmp_path / "prepayment.sqlite", "HUB1", ca.certificate)
    yield led
    led.close()


def test_a_top_up_is_credited_once_however_often_it_is_delivered(ledger, pki) -> None:  # type: ignore[no-untyped-def]
    _, op = pki
    env = envelope(op, voucher(1))
    first = ledger.top_up(env, NOON)
    again = ledger.top_up(env, NOON + timedelta(hours=1))
    assert first.applied_now and not again.applied_now
    assert ledger.balance("electricity").credit == Decimal("10.00") == again.balance.credit
    assert [t["voucher_id"] for t in ledger.top_ups()] == ["V0000000001"]


def test_a_top_up_pays_its_share_of_debt_first(ledger, pki) -> None:  # type: ignore[no-untyped-def]
    _, op = pki
    ledger.add_debt("gas", "arrears/2026-11", Decimal("30.00"), NOON)
    r = ledger.top_up(envelope(op, voucher(2, "20.00", "gas")), NOON)
    assert (r.to_debt, r.to_credit) == (Decimal("5.00"), Decimal("15.00"))
    b = ledger.balance("gas")
    assert (b.credit, b.debt) == (Decimal("15.00"), Decimal("25.00"))


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        (lambda e, op, other: {**e, "voucher": e["voucher"].replace("10.00", "99.00")}, "bad_signature"),
        (lambda e, op, other: {**e, "signer": other.cert_pem.decode()}, "bad_signature"),
        (lambda e, op, other: {**e, "signature": "not base64!"}, "malformed"),
        (lambda e, op, other: {"voucher": e["voucher"]}, "malformed"),
        (lambda e, op, other: "a string", "malformed"),
    ],
)
def test_tampered_or_malformed_vouchers_are_refused(ledger, pki, tamper, code) -> None:  # type: ignore[no-untyped-def]
    ca, op = pki
    other = ca.issue(Role.OPERATOR, "operator-2", NOON - timedelta(days=1))
    with pytest.raises(VoucherRefused) as err:
        ledger.top_up(tamper(envelope(op, voucher(3)), op, other), NOON)
    assert err.value.code == code
    assert ledger.balance("electricity").credit == 0 and ledger.top_ups() == []


def test_vouchers_from_a_foreign_ca_a_wrong_role_or_for_another_hub_are_refused(ledger, pki) -> None:  # type: ignore[no-untyped-def]
    ca, _ = pki
    now = NOON - timedelta(days=1)
    foreign = CertificateAuthority.create("rogue CA", now).issue(Role.OPERATOR, "operator", now)
    hub_cert = ca.issue(Role.HUB, "HUB1", now)
    _, op = pki
    cases = [
        (envelope(foreign, voucher(4)), "unknown_signer"),
        (envelope(hub_cert, voucher(5)), "unknown_signer"),
        (envelope(op, voucher(6, hub="HUB2")), "wrong_hub"),
    ]
    for env, code in cases:
        with pytest.raises(VoucherRefused) as err:
            ledger.top_up(env, NOON)
        assert err.value.code == code, err.value.reason


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("amount", "10", "pounds with pence"),
        ("amount", "600.00", "0.01..500.00"),
        ("amount", "0.00", "0.01..500.00"),
        ("fuel", "water", "not one of"),
        ("voucher_id", "short", "8-64"),
        ("issued", "2026-11-24T12:00:00", "time zone"),
    ],
)
def test_voucher_fields_are_checked(field: str, value: str, message: str) -> None:
    data = voucher(1).to_json()
    data[field] = value
    with pytest.raises(BadVoucher, match=message):
        Voucher.from_json(data)


# -- charges, friendly credit, emergency credit ----------------------------------------------


def test_charges_are_taken_once_and_alert_low_credit_once(ledger, pki) -> None:  # type: ignore[no-untyped-def]
    _, op = pki
    ledger.top_up(envelope(op, voucher(7, "5.00")), NOON)
    assert ledger.charge("electricity", "energy/1-0:1.8.0/1", Decimal("1.50"), NOON)
    assert not ledger.charge("electricity", "energy/1-0:1.8.0/1", Decimal("1.50"), NOON)
    ledger.charge("electricity", "energy/1-0:1.8.0/2", Decimal("0.10"), NOON)
    assert ledger.balance("electricity").credit == Decimal("3.40")
    ledger.charge("electricity", "energy/1-0:1.8.0/3", Decimal("0.50"), NOON)
    ledger.charge("electricity", "energy/1-0:1.8.0/4", Decimal("0.50"), NOON)
    assert [e["kind"] for e in ledger.events()].count("low_credit") == 1
    assert ledger.balance("electricity").low_credit


def test_out_of_credit_in_a_friendly_evening_becomes_debt_not_a_disconnection(ledger, pki) -> None:  # type: ignore[no-untyped-def]
    _, op = pki
    ledger.top_up(envelope(op, voucher(8, "1.00")), NOON)
    ledger.charge("electricity", "e/1", Decimal("1.60"), EVENING)
    b = ledger.balance("electricity")
    assert (b.credit, b.debt) == (Decimal("0.00"), Decimal("0.60"))
    assert ledger.supply_action("electricity", EVENING) is SupplyAction.NONE
    # The friendly period ends at 11:00 next morning: then the supply goes off.
    assert (
        ledger.supply_action("electricity", datetime(2026, 11, 25, 10, 59, tzinfo=UTC)) is SupplyAction.NONE
    )
    assert (
        ledger.supply_action("electricity", datetime(2026, 11, 25, 11, 0, tzinfo=UTC))
        is SupplyAction.DISCONNECT
    )
    assert FriendlyCalendar().period_end(EVENING) == datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
    assert FriendlyCalendar().period_end(SATURDAY) == datetime(2026, 11, 30, 11, 0, tzinfo=UTC)


def test_emergency_credit_lets_credit_run_negative_and_the_next_top_up_repays_it(ledger, pki) -> None:  # type: ignore[no-untyped-def]
    _, op = pki
    ledger.top_up(envelope(op, voucher(9, "2.00")), NOON)
    with pytest.raises(ValueError, match="available below"):
        ledger.activate_emergency_credit("electricity", NOON)
    ledger.charge("electricity", "e/1", Decimal("1.50"), NOON)
    assert ledger.balance("electricity").emergency_available
    ledger.activate_emergency_credit("electricity", NOON)
    ledger.charge("electricity", "e/2", Decimal("3.00"), NOON)
    assert ledger.balance("electricity").credit == Decimal("-2.50")
    assert ledger.supply_action("electricity", NOON) is SupplyAction.NONE
    ledger.charge("electricity", "e/3", Decimal("3.00"), NOON)  # beyond the £5 emergency credit
    assert ledger.supply_action("electricity", NOON) is SupplyAction.DISCONNECT
    ledger.supply_changed("electricity", "off", NOON, "credit exhausted")
    ledger.top_up(envelope(op, voucher(10, "10.00")), NOON)
    b = ledger.balance("electricity")
    assert b.credit == Decimal("4.50") and not b.emergency_active
    assert ledger.supply_action("electricity", NOON) is SupplyAction.RECONNECT


def test_gas_reconnects_only_after_the_consumer_confirms(ledger, pki) -> None:  # type: ignore[no-untyped-def]
    _, op = pki
    ledger.charge("gas", "g/1", Decimal("0.20"), NOON)
    assert ledger.supply_action("gas", NOON) is SupplyAction.DISCONNECT
    ledger.supply_changed("gas", "off", NOON, "credit exhausted")
    ledger.top_up(envelope(op, voucher(11, "10.00", "gas")), NOON)
    assert ledger.supply_action("gas", NOON) is SupplyAction.AWAIT_CONFIRMATION
    ledger.confirm_reconnect("gas", NOON)
    assert ledger.supply_action("gas", NOON) is SupplyAction.RECONNECT
    ledger.supply_changed("gas", "on", NOON, "consumer confirmed")
    assert ledger.supply_action("gas", NOON) is SupplyAction.NONE


def test_a_gas_confirmation_before_the_credit_that_allows_reconnection_does_not_count(  # type: ignore[no-untyped-def]
    ledger, pki
) -> None:
    """Issue 13 item 11: confirmed while the supply is off with no credit (a stale click, a forged
    POST), then topped up: the valve must still wait for a confirmation given after the credit."""
    _, op = pki
    ledger.charge("gas", "g/1", Decimal("0.20"), NOON)
    ledger.supply_changed("gas", "off", NOON, "credit exhausted")
    with pytest.raises(ReconnectRefused, match="top up first"):
        ledger.confirm_reconnect("gas", NOON)
    ledger.top_up(envelope(op, voucher(12, "10.00", "gas")), NOON)
    assert ledger.supply_action("gas", NOON) is SupplyAction.AWAIT_CONFIRMATION
    # Confirmed after the credit, then the credit runs out again before the valve opened: void.
    ledger.confirm_reconnect("gas", NOON)
    ledger.charge("gas", "g/2", Decimal("9.80"), NOON)  # the standing charge of the days off, say
    ledger.top_up(envelope(op, voucher(13, "10.00", "gas")), NOON)
    assert ledger.supply_action("gas", NOON) is SupplyAction.AWAIT_CONFIRMATION
    ledger.confirm_reconnect("gas", NOON)
    assert ledger.supply_action("gas", NOON) is SupplyAction.RECONNECT
    ledger.supply_changed("gas", "on", NOON, "consumer confirmed")
    with pytest.raises(ReconnectRefused, match="supply is on"):
        ledger.confirm_reconnect("gas", NOON)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.datetimes(datetime(2026, 1, 1), datetime(2026, 12, 31), timezones=st.just(UTC)),
            st.decimals(Decimal("0.00"), Decimal("4.00"), places=2),
        ),
        min_size=1,
        max_size=20,
    ),
    st.sets(st.dates(datetime(2026, 1, 1).date(), datetime(2026, 12, 31).date()), max_size=5),
)
def test_never_a_disconnection_inside_a_friendly_period(pki, charges, holidays) -> None:  # type: ignore[no-untyped-def]
    ca, op = pki
    cal = FriendlyCalendar(holidays=frozenset(holidays))
    led = PrepaymentLedger(
        ":memory:", "HUB1", ca.certificate, config={"electricity": AccountConfig(friendly=cal)}
    )
    try:
        led.top_up(envelope(op, voucher(12, "2.00")), NOON)
        for i, (t, amount) in enumerate(sorted(charges)):
            led.charge("electricity", f"e/{i}", amount, t)
            action = led.supply_action("electricity", t)
            if cal.is_friendly(t):
                assert action is not SupplyAction.DISCONNECT
            if action is SupplyAction.DISCONNECT:
                led.supply_changed("electricity", "off", t, "credit exhausted")
    finally:
        led.close()


# -- the command path: GDSC voucher issuer → signed command → hub ledger ------------------------


async def test_a_top_up_travels_as_a_signed_command_and_settles_at_the_gdsc(tmp_path, pki) -> None:  # type: ignore[no-untyped-def]
    ca, op = pki
    store = Store(f"sqlite:///{tmp_path / 'gdsc.sqlite'}")
    store.create_schema()
    assert op.private_key is not None
    issuer = VoucherIssuer(store, op.private_key, op.cert_pem)
    signer = CommandSigner(op.private_key, op.cert_pem, store.next_command_counter)
    clock = ManualClock(datetime.now(UTC))
    mgmt = ManagementInterface("HUB1", ca.certificate, clock, tmp_path / "mgmt.sqlite")
    ledger = PrepaymentLedger(tmp_path / "pp.sqlite", "HUB1", ca.certificate)
    mgmt.register("prepayment.topup", topup_command(ledger, clock.now))
    v = issuer.issue("HUB1", "electricity", Decimal("15.00"), clock.now())
    (pending,) = issuer.pending("HUB1")
    command = signer.command("HUB1", "prepayment.topup", pending.envelope, clock.now()).envelope()
    verdict = json.loads((await mgmt.handle(command)).to_json())
    assert verdict["status"] == "applied" and verdict["result"]["applied_now"]
    # The GDSC lost the verdict (WAN cut): it re-sends the voucher in a new command.
    resend = signer.command("HUB1", "prepayment.topup", pending.envelope, clock.now()).envelope()
    verdict2 = json.loads((await mgmt.handle(resend)).to_json())
    assert verdict2["result"] == {**verdict["result"], "applied_now": False}
    assert issuer.settle("HUB1", v.voucher_id, verdict2, clock.now()) == "credited"
    assert issuer.pending() == []
    # A captured command replayed is refused by its counter; the credit is unchanged.
    assert (await mgmt.handle(command)).code == "replay"
    assert ledger.balance("electricity").credit == Decimal("15.00")
    # A voucher for another hub is refused for good, and settles as refused at the GDSC.
    other = issuer.issue("HUB2", "gas", Decimal("5.00"), clock.now())
    cmd = signer.command("HUB1", "prepayment.topup", issuer.pending("HUB2")[0].envelope, clock.now())
    v3 = json.loads((await mgmt.handle(cmd.envelope())).to_json())
    assert v3["result"]["refused"] == "wrong_hub"
    assert issuer.settle("HUB2", other.voucher_id, v3, clock.now()) == "refused"
    ledger.close()
    mgmt.close()
    store.close()


# -- power cuts: SIGKILL between receiving a voucher and answering --------------------------------

WORKER = r"""
import json, sys
from datetime import UTC, datetime
from cryptography import x509
from smarthub.hub.prepayment import PrepaymentLedger
ca = x509.load_pem_x509_certificate(open(sys.argv[2], "rb").read())
ledger = PrepaymentLedger(sys.argv[1], "HUB1", ca)
for line in sys.stdin:
    env = json.loads(line)
    r = ledger.top_up(env, datetime.now(UTC))
    print("ACK", r.voucher_id, flush=True)
"""


def test_vouchers_survive_sigkill_and_are_credited_exactly_once(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    ca, op = pki
    from cryptography.hazmat.primitives.serialization import Encoding

    (tmp_path / "ca.pem").write_bytes(ca.certificate.public_bytes(Encoding.PEM))
    vouchers = [voucher(100 + i, f"{1 + i % 7}.{i % 100:02d}") for i in range(60)]
    lines = [json.dumps(envelope(op, v)) + "\n" for v in vouchers]
    acked: set[str] = set()
    rng = random.Random(20261125)
    db = tmp_path / "prepayment.sqlite"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    kills = 0
    for _ in range(12):
        # The GDSC re-sends every voucher it has no ACK for (and, to be hard, a few it has).
        todo = [
            ln
            for v, ln in zip(vouchers, lines, strict=True)
            if v.voucher_id not in acked or rng.random() < 0.2
        ]
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(db), str(tmp_path / "ca.pem")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.writelines(todo)
        proc.stdin.flush()
        want = rng.randint(0, max(len(todo) - 1, 0))
        for _ in range(want):
            line = proc.stdout.readline()
            if not line:
                break
            acked.add(line.split()[1])
        proc.send_signal(signal.SIGKILL)  # mid-write: the next voucher is in flight
        kills += 1
        proc.wait()
    # Finally a clean run delivers everything once more.
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, str(db), str(tmp_path / "ca.pem")],
        input="".join(lines),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert proc.stdout.count("ACK") == len(vouchers)
    ca_cert = ca.certificate
    ledger = PrepaymentLedger(db, "HUB1", ca_cert)
    try:
        assert len(ledger.top_ups()) == len(vouchers)
        assert ledger.balance("electricity").credit == sum((v.amount for v in vouchers), Decimal(0))
    finally:
        ledger.close()
    assert kills == 12


def test_ledger_config_is_per_fuel(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    ca, _ = pki
    cfg = replace(AccountConfig(), emergency_credit=Decimal("10.00"))
    led = PrepaymentLedger(tmp_path / "p.sqlite", "HUB1", ca.certificate, config={"gas": cfg})
    assert led.config["gas"].emergency_credit == Decimal("10.00")
    assert led.config["electricity"].emergency_credit == Decimal("5.00")
    led.close()


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=6),
    max_leaves=15,
)


@settings(max_examples=300)
@given(
    st.one_of(
        JSONISH, st.fixed_dictionaries({}, optional={k: JSONISH | st.text() for k in voucher(1).to_json()})
    )
)
def test_fuzzed_vouchers_parse_or_are_refused_never_crash(data: object) -> None:
    with contextlib.suppress(BadVoucher):
        Voucher.from_json(data)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["voucher", "signature", "signer", "x"]), JSONISH | st.text(), max_size=4)
)
def test_fuzzed_envelopes_are_refused_with_a_code(pki, env: dict) -> None:  # type: ignore[no-untyped-def]
    ca, _ = pki
    led = PrepaymentLedger(":memory:", "HUB1", ca.certificate)
    try:
        with pytest.raises(VoucherRefused):
            led.top_up(env, NOON)
    finally:
        led.close()
