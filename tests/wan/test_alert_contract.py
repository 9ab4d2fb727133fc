"""The alert datagram (wan/contract/alerts.py): round trip, signature, replay window, fuzzed decoder."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from smarthub.wan.contract.alerts import (
    MAX_DATAGRAM,
    Alert,
    AlertKind,
    BadAlert,
    Cause,
    ReplayWindow,
    decode,
    peek,
    sign,
    verify,
)

T = datetime(2026, 3, 2, 12, tzinfo=UTC)
KEY = ec.generate_private_key(ec.SECP256R1())


def test_a_restoration_round_trips_in_one_small_datagram() -> None:
    a = Alert(
        AlertKind.RESTORATION, "HUB000001", 41, T, T - timedelta(hours=1), 3600, Cause.METER_EVENT, "E0001"
    )
    d = sign(a, KEY)
    assert len(d) <= MAX_DATAGRAM < 300  # one datagram, far below any path MTU
    back, body, sig = decode(d)
    assert back == a and back.restored_at == T
    assert verify(body, sig, KEY.public_key())
    assert peek(d) == ("HUB000001", 41)


def test_a_changed_byte_or_another_key_fails_verification() -> None:
    d = bytearray(sign(Alert(AlertKind.LAST_GASP, "HUB1", 1, T, T), KEY))
    _, body, sig = decode(bytes(d))
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert not verify(body, sig, other)
    d[19] ^= 1  # the low byte of the sequence number
    _, body, sig = decode(bytes(d))
    assert not verify(body, sig, KEY.public_key())
    assert not verify(body, bytes(64), KEY.public_key())  # "unsigned": a zero signature


def test_the_replay_window_takes_each_number_once_in_any_order() -> None:
    w = ReplayWindow()
    assert [w.accept(n) for n in (5, 3, 5, 4, 3, 100, 40, 36, 37)] == [
        True, True, False, True, False, True, True, False, True,
    ]  # fmt: skip
    # 36 is more than 64 below 100: too old to tell, refused


@given(st.binary(max_size=400))
def test_decode_raises_only_bad_alert(data: bytes) -> None:
    with contextlib.suppress(BadAlert):
        decode(data)
    with contextlib.suppress(BadAlert):
        peek(data)


@given(st.binary(min_size=1, max_size=40))
def test_truncated_or_extended_datagrams_are_refused(tail: bytes) -> None:
    d = sign(Alert(AlertKind.LAST_GASP, "HUB1", 1, T, T), KEY)
    for bad in (d[: len(d) - len(tail)], d + tail):
        try:
            decode(bad)
        except BadAlert:
            continue
        raise AssertionError("a datagram of the wrong length decoded")


def test_a_window_rebuilt_from_the_store_refuses_every_number_up_to_the_highest() -> None:
    """After a GDSC restart only the highest stored number is known: the numbers below it (a last
    gasp before its restoration) must not be taken again."""
    w = ReplayWindow.after(5)
    assert [w.accept(n) for n in (5, 4, 0, 6, 6)] == [False, False, False, True, False]
    assert ReplayWindow.after(-1).accept(0)
