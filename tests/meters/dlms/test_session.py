"""A full client <-> simulator session over HDLC and the wrapper, with and without suite 0
ciphering; tampering, replay and push."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from smarthub.meters.dlms import (
    DataAccessError,
    DecryptionError,
    DlmsClient,
    DlmsStateError,
    GetResult,
    PushReceiver,
    ReplayError,
    SecurityKeys,
    drive,
    poll_meter,
)
from smarthub.meters.dlms.apdu import GetResponseWithBlock, decode_apdu
from smarthub.meters.dlms.cosem import notification_data_points
from smarthub.meters.dlms.hdlc import HdlcFramer
from smarthub.meters.dlms.security import InvocationCounterGuard, decipher_apdu
from smarthub.model.obis import ObisCode
from smarthub.sim.dlms_meter import DlmsMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile

KEYS = SecurityKeys(
    bytes.fromhex("000102030405060708090A0B0C0D0E0F"), bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
)
TITLE = bytes.fromhex("4D4D4D0000BC614E")
T0 = datetime(2024, 3, 30, 12, 0, tzinfo=UTC)  # the DST change to CEST happens in the profile window
REGISTERS = [ObisCode.parse("1-0:1.8.0"), ObisCode.parse("1-0:2.8.0"), ObisCode.parse("1-0:1.7.0")]
PROFILE = ObisCode.parse("1-0:99.1.0")


def _sim(keys: SecurityKeys | None, transport: str) -> DlmsMeterSimulator:
    return DlmsMeterSimulator(
        TITLE, "00012345", HouseholdProfile(7, pv_kwp=3.0), T0, keys, transport=transport
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", ["hdlc", "wrapper"])
@pytest.mark.parametrize("keys", [None, KEYS], ids=["plain", "suite0"])
def test_poll_session_matches_registers_exactly(keys: SecurityKeys | None, transport: str) -> None:
    sim = _sim(keys, transport)
    t = T0 + timedelta(days=1, minutes=13, seconds=20)
    blocks = 0
    segmented = 0

    def transact(out: bytes) -> bytes:
        nonlocal blocks, segmented
        reply = sim.respond(out, t)
        if transport == "hdlc":
            for f in HdlcFramer().feed(reply):
                segmented += getattr(f, "segmented", False)
        elif keys is None and reply[8:10] == b"\xc4\x02":
            blocks += 1
        return reply

    client = DlmsClient(keys=keys, transport=transport)  # type: ignore[arg-type]
    points = drive(poll_meter(client, REGISTERS, profile=PROFILE), transact)
    r = sim.registers
    meter = TITLE.hex().upper() if keys else "SIM00012345"
    by_key = {p.key: p for p in points if p.time == r.time}
    assert by_key["1-0:1.8.0"].value == Decimal(r.import_wh) and by_key["1-0:1.8.0"].unit == "Wh"
    assert by_key["1-0:2.8.0"].value == Decimal(r.export_wh)
    assert by_key["1-0:1.7.0"].value == Decimal(r.import_w) and by_key["1-0:1.7.0"].unit == "W"
    assert all(p.meter == meter and p.protocol == "dlms" for p in points)
    rows = sim.profile_rows
    assert len(rows) == 48
    profile_points = [p for p in points if p.time != r.time]
    expected = {(row.time, "1-0:1.8.0", Decimal(row.import_wh)) for row in rows}
    expected |= {(row.time, "1-0:2.8.0", Decimal(row.export_wh)) for row in rows}
    assert {(p.time, p.key, p.value) for p in profile_points} == expected
    assert client.state == "idle"
    if transport == "hdlc":
        assert segmented > 0  # the profile blocks did not fit one 128-byte information field
    if keys is not None:
        assert client.guard.last(TITLE) == sim.invocation_counter > 0


def test_block_transfer_is_used_for_the_profile() -> None:
    sim = _sim(None, "wrapper")
    t = T0 + timedelta(days=1)
    client = DlmsClient(transport="wrapper", max_pdu=256)
    seen: list[object] = []

    def transact(out: bytes) -> bytes:
        reply = sim.respond(out, t)
        if reply:
            seen.append(decode_apdu(reply[8:]) if reply[8] == 0xC4 else None)
        return reply

    drive(poll_meter(client, REGISTERS[:1], profile=PROFILE), transact)
    blocks = [a for a in seen if isinstance(a, GetResponseWithBlock)]
    assert (
        len(blocks) > 3
        and blocks[-1].last_block
        and [b.block_number for b in blocks] == list(range(1, len(blocks) + 1))
    )


def _connect(client: DlmsClient, sim: DlmsMeterSimulator, t: datetime) -> None:
    out = client.connect()
    while True:
        ev = client.receive(sim.respond(out, t))
        if ev is not None:
            return
        out = client.next_request()


def test_tampered_ciphertext_raises_decryption_error() -> None:
    sim = _sim(KEYS, "wrapper")
    client = DlmsClient(keys=KEYS, transport="wrapper")
    _connect(client, sim, T0)
    reply = bytearray(sim.respond(client.get(REGISTERS[0], 3, 2), T0))
    reply[-5] ^= 0x01  # inside the GCM tag / ciphertext
    with pytest.raises(DecryptionError, match="authentication tag does not verify"):
        client.receive(bytes(reply))


def test_replayed_invocation_counter_raises_replay_error() -> None:
    sim = _sim(KEYS, "wrapper")
    client = DlmsClient(keys=KEYS, transport="wrapper")
    _connect(client, sim, T0)
    reply = sim.respond(client.get(REGISTERS[0], 3, 2), T0)
    assert isinstance(client.receive(reply), GetResult)
    client.get(REGISTERS[0], 3, 2)
    with pytest.raises(ReplayError, match="not above the last accepted"):
        client.receive(reply)  # the same response again: same invocation counter


def test_guard_does_not_advance_on_failed_tag() -> None:
    guard = InvocationCounterGuard()
    sim = _sim(KEYS, "wrapper")
    apdu = sim.push_apdu_at(T0)
    bad = apdu[:-1] + bytes((apdu[-1] ^ 1,))
    with pytest.raises(DecryptionError):
        decipher_apdu(bad, KEYS, guard=guard)
    assert guard.last(TITLE) is None
    decipher_apdu(apdu, KEYS, guard=guard)
    assert guard.last(TITLE) == 1


def test_unknown_object_is_a_data_access_error() -> None:
    sim = _sim(None, "hdlc")
    client = DlmsClient()
    _connect(client, sim, T0)
    out = client.get(ObisCode.parse("1-0:99.99.0"), 3, 2)
    with pytest.raises(DataAccessError, match="object-undefined"):
        while client.receive(sim.respond(out, T0)) is None:
            out = client.next_request()
    assert client.state == "associated"


def test_state_errors() -> None:
    client = DlmsClient()
    with pytest.raises(DlmsStateError):
        client.get(REGISTERS[0], 3, 2)
    client.connect()
    with pytest.raises(DlmsStateError):
        client.connect()


def test_wrong_keys_reject_association() -> None:
    sim = _sim(KEYS, "wrapper")
    other = SecurityKeys(bytes(16), bytes(16))
    client = DlmsClient(keys=other, transport="wrapper")
    with pytest.raises(Exception) as info:
        _connect(client, sim, T0)
    assert "association rejected" in str(info.value)


@pytest.mark.parametrize("transport", ["hdlc", "wrapper"])
@pytest.mark.parametrize("keys", [None, KEYS], ids=["plain", "suite0"])
def test_push_yields_registers(keys: SecurityKeys | None, transport: str) -> None:
    sim = _sim(keys, transport)
    rx = PushReceiver(transport, keys)  # type: ignore[arg-type]
    t = T0 + timedelta(hours=5, seconds=3)
    data = sim.push_at(t)
    (item,) = rx.feed(data[:7]) + rx.feed(data[7:])
    assert not isinstance(item, Exception)
    sender, notification = item
    assert sender == (TITLE if keys else None)
    points = notification_data_points("m", notification.value)
    r = sim.registers
    got = {p.key: (p.value, p.unit, p.time) for p in points}
    assert got == {
        "1-0:1.8.0": (Decimal(r.import_wh), "Wh", r.time.replace(microsecond=0)),
        "1-0:2.8.0": (Decimal(r.export_wh), "Wh", r.time.replace(microsecond=0)),
        "1-0:1.7.0": (Decimal(r.import_w), "W", r.time.replace(microsecond=0)),
    }
    if keys:
        replay = rx.feed(data)
        assert len(replay) == 1 and isinstance(replay[0], ReplayError)


def test_simulator_time_cannot_go_backwards() -> None:
    sim = _sim(None, "hdlc")
    sim.advance(T0 + timedelta(hours=1))
    with pytest.raises(ValueError, match="backwards"):
        sim.respond(b"", T0)
