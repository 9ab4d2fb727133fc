"""Remote supply control through DLMS/COSEM: SET and ACTION APDUs (round trips, third-party
vectors, fuzzing), client <-> simulator sessions against the Disconnect control (class 70) and
the Limiter (class 71), plain and suite 0, and the hub's async driver over a SimulatedLink.

``SMARTHUB_FUZZ_EXAMPLES`` scales the fuzzing (default 300).
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smarthub.han import dlms_control
from smarthub.han.poll import SimulatedLink
from smarthub.meters.dlms.apdu import (
    ActionRequestNormal,
    ActionResponseNormal,
    SetRequestNormal,
    SetResponseNormal,
    decode_apdu,
)
from smarthub.meters.dlms.axdr import Tag, encode_data
from smarthub.meters.dlms.client import (
    CLASS_DISCONNECT_CONTROL,
    CLASS_LIMITER,
    DISCONNECT_CONTROL,
    LIMITER,
    ActionError,
    ActionResult,
    ControlState,
    DlmsClient,
    PowerLimit,
    SetResult,
    SupplyState,
    disconnect_supply,
    drive,
    poll_meter,
    read_supply_state,
    reconnect_supply,
    set_power_limit,
)
from smarthub.meters.dlms.errors import DataAccessError, DecodeError, DlmsSessionError
from smarthub.meters.dlms.security import SecurityKeys, cipher_apdu, decipher_apdu
from smarthub.model.obis import ObisCode
from smarthub.sim.dlms_meter import DlmsMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile

EXAMPLES = int(os.environ.get("SMARTHUB_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROUND = settings(max_examples=150, deadline=None)
KEYS = SecurityKeys(
    bytes.fromhex("000102030405060708090A0B0C0D0E0F"), bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
)
TITLE = bytes.fromhex("4D4D4D0000BC614E")
CLIENT_TITLE = b"SMH\x00\x00\x00\x00\x01"
T0 = datetime(2024, 3, 30, 12, 0, tzinfo=UTC)
IMPORT = ObisCode.parse("1-0:1.8.0")
POWER = ObisCode.parse("1-0:1.7.0")
SESSIONS = [
    pytest.param(None, "hdlc", id="plain-hdlc"),
    pytest.param(None, "wrapper", id="plain-wrapper"),
    pytest.param(KEYS, "hdlc", id="suite0-hdlc"),
    pytest.param(KEYS, "wrapper", id="suite0-wrapper"),
]


def _sim(keys: SecurityKeys | None = None, transport: str = "hdlc") -> DlmsMeterSimulator:
    return DlmsMeterSimulator(
        TITLE,
        "00012345",
        HouseholdProfile(7, annual_kwh=4500),
        T0,
        keys,
        transport=transport,  # type: ignore[arg-type]
    )


def _run(sim: DlmsMeterSimulator, client: DlmsClient, session: Any, t: datetime) -> Any:
    return drive(session, lambda out: sim.respond(out, t))


def _import_wh(sim: DlmsMeterSimulator, client: DlmsClient, t: datetime) -> Decimal:
    points = _run(sim, client, poll_meter(client, [IMPORT], meter="m"), t)
    (p,) = [p for p in points if p.key == "1-0:1.8.0"]
    return p.value


# ---- vectors ---------------------------------------------------------------------------------
# Exchanged by the Circutor gosem DLMS client's tests (disconnect 0-0:96.3.10 method 1 with
# integer(0); SET of a double-long-unsigned 10000 into 0-1:94.35.11 attribute 2).

VECTORS = [
    (
        "C301C10046000060030AFF01010F00",
        ActionRequestNormal(1, 70, ObisCode(0, 0, 96, 3, 10), 1, b"\x0f\x00"),
    ),
    ("C701C10000", ActionResponseNormal(1, 0)),
    (
        "C101C1000300015E230BFF02000600002710",
        SetRequestNormal(1, 3, ObisCode(0, 1, 94, 35, 11), 2, bytes.fromhex("0600002710")),
    ),
    ("C501C100", SetResponseNormal(1, 0)),
    ("C501C103", SetResponseNormal(1, 3)),
]


@pytest.mark.parametrize(("hex_", "apdu"), VECTORS)
def test_vectors(hex_: str, apdu: Any) -> None:
    raw = bytes.fromhex(hex_)
    assert apdu.to_bytes() == raw
    assert decode_apdu(raw) == apdu


def test_decoded_values() -> None:
    req = decode_apdu(bytes.fromhex("C101C1000300015E230BFF02000600002710"))
    assert isinstance(req, SetRequestNormal) and req.value == 10000
    act = decode_apdu(bytes.fromhex("C301C10046000060030AFF01010F00"))
    assert isinstance(act, ActionRequestNormal) and act.value == 0
    resp = decode_apdu(bytes.fromhex("C701C100010003FF"))  # return parameters: data boolean TRUE
    assert isinstance(resp, ActionResponseNormal) and resp.data == b"\x03\xff" and resp.value is True
    resp = decode_apdu(bytes.fromhex("C701C100010104"))
    assert isinstance(resp, ActionResponseNormal) and resp.data is None and resp.data_result == 4


def test_client_builds_the_vector_bytes() -> None:
    client = DlmsClient(transport="wrapper")
    sim = _sim(None, "wrapper")
    _run(sim, client, _connect_only(client), T0)
    wpdu = client.action(DISCONNECT_CONTROL, 70, 1, (Tag.INTEGER, 0))
    assert wpdu[8:] == bytes.fromhex("C301C10046000060030AFF01010F00")
    ev = client.receive(sim.respond(wpdu, T0))
    assert ev == ActionResult(70, DISCONNECT_CONTROL, 1, None, None)
    wpdu = client.set(LIMITER, 71, 3, encode_data(Tag.DOUBLE_LONG_UNSIGNED, 10000))
    assert wpdu[8:] == bytes.fromhex("C101C2 0047 0000110000FF 03 00 0600002710".replace(" ", ""))
    assert client.receive(sim.respond(wpdu, T0)) == SetResult(71, LIMITER, 3)
    assert sim.threshold_active == 10000


def _connect_only(client: DlmsClient) -> Any:
    from smarthub.meters.dlms.client import _operation

    return (yield from _operation(client, client.connect()))


# ---- round trips -----------------------------------------------------------------------------

obis = st.builds(ObisCode, *[st.integers(0, 255)] * 6)
datas = st.one_of(
    st.integers(0, 2**32 - 1).map(lambda v: encode_data(Tag.DOUBLE_LONG_UNSIGNED, v)),
    st.integers(-128, 127).map(lambda v: encode_data(Tag.INTEGER, v)),
    st.booleans().map(lambda v: encode_data(Tag.BOOLEAN, v)),
    st.binary(max_size=200).map(lambda v: encode_data(Tag.OCTET_STRING, v)),
    st.lists(st.integers(0, 255), max_size=5).map(
        lambda v: encode_data(Tag.STRUCTURE, [(Tag.UNSIGNED, x) for x in v])
    ),
    st.just(encode_data(Tag.NULL_DATA)),
)
invoke = st.integers(0, 15)
prio = st.sampled_from([0x00, 0x40, 0x80, 0xC0])
requests = st.one_of(
    st.builds(
        SetRequestNormal,
        invoke,
        st.integers(0, 0xFFFF),
        obis,
        st.integers(-128, 127),
        datas,
        st.one_of(st.none(), st.builds(lambda s, d: bytes((s,)) + d, st.integers(0, 255), datas)),
        prio,
    ),
    st.builds(SetResponseNormal, invoke, st.integers(0, 255), prio),
    st.builds(
        ActionRequestNormal,
        invoke,
        st.integers(0, 0xFFFF),
        obis,
        st.integers(-128, 127),
        st.one_of(st.none(), datas),
        prio,
    ),
    st.builds(
        lambda i, r, ret, p: ActionResponseNormal(
            i, r, ret if isinstance(ret, bytes) else None, ret if isinstance(ret, int) else None, p
        ),
        invoke,
        st.integers(0, 255),
        st.one_of(st.none(), datas, st.integers(0, 255)),
        prio,
    ),
)


@ROUND
@given(requests)
def test_round_trip(apdu: Any) -> None:
    raw = apdu.to_bytes()
    back = decode_apdu(raw)
    assert back == apdu and back.to_bytes() == raw


@ROUND
@given(requests, st.integers(1, 2**32 - 1))
def test_ciphered_round_trip_uses_the_glo_tags(apdu: Any, ic: int) -> None:
    plain = apdu.to_bytes()
    ciphered = cipher_apdu(plain, TITLE, ic, KEYS)
    assert ciphered[0] == {0xC1: 0xC9, 0xC5: 0xCD, 0xC3: 0xCB, 0xC7: 0xCF}[plain[0]]
    assert decipher_apdu(ciphered, KEYS, system_title=TITLE).plain == plain
    assert decode_apdu(decipher_apdu(ciphered, KEYS, system_title=TITLE).plain) == apdu


# ---- fuzzing ---------------------------------------------------------------------------------


def _only_decode_errors(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_apdu(data)


@FUZZ
@given(st.sampled_from([0xC1, 0xC3, 0xC5, 0xC7]), st.integers(0, 3), st.binary(max_size=64))
def test_fuzz_new_decoders(tag: int, kind: int, rest: bytes) -> None:
    _only_decode_errors(bytes((tag, kind)) + rest)


@FUZZ
@given(requests, st.data())
def test_fuzz_mutated_encodings(apdu: Any, data: st.DataObject) -> None:
    raw = bytearray(apdu.to_bytes())
    cut = data.draw(st.integers(0, len(raw)))
    _only_decode_errors(bytes(raw[:cut]))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255))
    _only_decode_errors(bytes(raw))
    _only_decode_errors(bytes(raw) + data.draw(st.binary(min_size=1, max_size=4)))


# ---- sessions against the simulator ------------------------------------------------------------


@pytest.mark.parametrize(("keys", "transport"), SESSIONS)
def test_disconnect_stops_the_register_and_reconnect_restarts_it(
    keys: SecurityKeys | None, transport: str
) -> None:
    sim = _sim(keys, transport)
    client = DlmsClient(keys=keys, transport=transport)  # type: ignore[arg-type]
    t = T0 + timedelta(hours=6)  # 18:00 UTC: the household imports
    assert _run(sim, client, read_supply_state(client), t) == SupplyState(True, ControlState.CONNECTED)
    state = _run(sim, client, disconnect_supply(client), t + timedelta(seconds=5))
    assert state == SupplyState(False, ControlState.DISCONNECTED) and not state.connected
    assert client.state == "idle"
    first = _import_wh(sim, client, t + timedelta(minutes=1))
    second = _import_wh(sim, client, t + timedelta(hours=2))
    assert first == second == sim.registers.import_wh
    assert sim.registers.import_w == 0

    state = _run(sim, client, reconnect_supply(client), t + timedelta(hours=2, seconds=10))
    assert state == SupplyState(True, ControlState.CONNECTED)
    third = _import_wh(sim, client, t + timedelta(hours=3))
    assert third > second
    if keys is not None:
        assert client.guard.last(TITLE) == sim.invocation_counter


@pytest.mark.parametrize(("keys", "transport"), SESSIONS)
def test_limiter_trips_when_demand_exceeds_the_threshold(keys: SecurityKeys | None, transport: str) -> None:
    sim = _sim(keys, transport)
    client = DlmsClient(keys=keys, transport=transport)  # type: ignore[arg-type]
    t = T0 + timedelta(hours=6)
    minutes = [t + timedelta(minutes=i) for i in range(120)]
    demand = [sim.profile.net_import_w(m) for m in minutes]
    limit = int(max(demand)) - 1  # exceeded at least once in the next two hours
    written = _run(sim, client, set_power_limit(client, limit), t)
    assert written == PowerLimit(Decimal(limit), limit, 0, POWER)
    assert sim.threshold_active == limit
    assert _run(sim, client, read_supply_state(client), t).connected  # set, not yet exceeded

    later = t + timedelta(hours=2)
    state = _run(sim, client, read_supply_state(client), later)
    assert state == SupplyState(False, ControlState.READY_FOR_RECONNECTION)
    first_over = next(m for m, w in zip(minutes, demand, strict=True) if w > limit)
    assert sim.last_trip == first_over + timedelta(minutes=1)
    assert _import_wh(sim, client, later) == _import_wh(sim, client, later + timedelta(hours=1))

    # Blue Book mode 1: remote_reconnect does not undo a local (limiter) disconnection ...
    state = _run(sim, client, reconnect_supply(client), later + timedelta(hours=1))
    assert state.control_state == ControlState.READY_FOR_RECONNECTION
    # ... the customer's button does, or a remote disconnect followed by a reconnect.
    _run(sim, client, set_power_limit(client, 0xFFFFFFFF), later + timedelta(hours=1))
    _run(sim, client, disconnect_supply(client), later + timedelta(hours=1))
    state = _run(sim, client, reconnect_supply(client), later + timedelta(hours=1))
    assert state == SupplyState(True, ControlState.CONNECTED)


def test_button_reconnects_after_a_trip() -> None:
    sim = _sim()
    client = DlmsClient()
    t = T0 + timedelta(hours=6)
    _run(sim, client, set_power_limit(client, 0), t)
    assert _run(sim, client, read_supply_state(client), t + timedelta(minutes=5)).control_state == 2
    sim.press_button(t + timedelta(minutes=5, seconds=30))
    assert sim.output_state
    # still over a 0 W limit: the next minute trips it again
    assert not _run(sim, client, read_supply_state(client), t + timedelta(minutes=7)).connected


def test_power_limit_is_scaled_to_the_monitored_register() -> None:
    sim = _sim()
    client = DlmsClient()
    # a meter reporting 1-0:1.7.0 in 10 W (scaler 1): 1505 W is written as 150 (1500 W)
    orig = sim._attribute

    def scaled(class_id: int, obis_: ObisCode, attribute: int) -> bytes | int:
        if obis_ == POWER and attribute == 3:
            return encode_data(Tag.STRUCTURE, [(Tag.INTEGER, 1), (Tag.ENUM, 27)])
        return orig(class_id, obis_, attribute)

    sim._attribute = scaled  # type: ignore[method-assign]
    written = _run(sim, client, set_power_limit(client, Decimal(1505)), T0)
    assert written == PowerLimit(Decimal(1500), 150, 1, POWER)
    assert sim.threshold_active == 150


def test_power_limit_must_fit_and_be_in_watts() -> None:
    sim = _sim()
    client = DlmsClient()
    with pytest.raises(ValueError, match="outside DOUBLE_LONG_UNSIGNED"):
        _run(sim, client, set_power_limit(client, 2**32), T0)
    assert client.state == "idle"  # the session was still closed
    with pytest.raises(ValueError, match="non-negative"):
        next(set_power_limit(client, -1))
    orig = sim._attribute

    def in_amps(class_id: int, obis_: ObisCode, attribute: int) -> bytes | int:
        if obis_ == POWER and attribute == 3:
            return encode_data(Tag.STRUCTURE, [(Tag.INTEGER, 0), (Tag.ENUM, 33)])
        return orig(class_id, obis_, attribute)

    sim._attribute = in_amps  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="not W"):
        _run(sim, client, set_power_limit(client, 1000), T0)
    assert client.state == "idle"


@pytest.mark.parametrize(("keys", "transport"), SESSIONS[::3])
def test_refusals_are_typed(keys: SecurityKeys | None, transport: str) -> None:
    sim = _sim(keys, transport)
    client = DlmsClient(keys=keys, transport=transport)  # type: ignore[arg-type]
    _run(sim, client, _connect_only(client), T0)

    def ask(out: bytes) -> Any:
        while True:
            ev = client.receive(sim.respond(out, T0))
            if ev is not None:
                return ev
            out = client.next_request()

    unknown = ObisCode.parse("0-0:96.3.99")
    with pytest.raises(ActionError, match="object-undefined") as info:
        ask(client.action(unknown, 70, 1, (Tag.INTEGER, 0)))
    assert info.value.result == 4 and isinstance(info.value, DataAccessError)
    with pytest.raises(DataAccessError, match="object-undefined"):
        ask(client.set(unknown, 71, 3, (Tag.DOUBLE_LONG_UNSIGNED, 1)))
    with pytest.raises(DataAccessError, match="read-write-denied"):
        ask(client.set(DISCONNECT_CONTROL, CLASS_DISCONNECT_CONTROL, 2, (Tag.BOOLEAN, True)))
    with pytest.raises(DataAccessError, match="type-unmatched"):
        ask(client.set(LIMITER, CLASS_LIMITER, 3, (Tag.VISIBLE_STRING, "lots")))
    with pytest.raises(DataAccessError, match="object-class-inconsistent"):
        ask(client.set(LIMITER, 3, 3, (Tag.DOUBLE_LONG_UNSIGNED, 1)))
    with pytest.raises(ActionError, match="object-unavailable"):
        ask(client.action(DISCONNECT_CONTROL, CLASS_DISCONNECT_CONTROL, 9, (Tag.INTEGER, 0)))
    with pytest.raises(ActionError, match="type-unmatched"):
        ask(client.action(DISCONNECT_CONTROL, CLASS_DISCONNECT_CONTROL, 1))
    with pytest.raises(ActionError, match="read-write-denied"):
        ask(client.action(IMPORT, 3, 1, (Tag.INTEGER, 0)))
    assert client.state == "associated" and sim.output_state
    assert ask(client.action(DISCONNECT_CONTROL, CLASS_DISCONNECT_CONTROL, 1, (Tag.INTEGER, 0)))
    assert not sim.output_state


def test_helper_closes_the_association_after_a_refusal() -> None:
    sim = _sim()
    client = DlmsClient()
    sim._on_action = lambda req: 2  # type: ignore[method-assign]  # temporary-failure
    with pytest.raises(ActionError, match="temporary-failure"):
        _run(sim, client, disconnect_supply(client), T0)
    assert client.state == "idle"
    assert _run(sim, client, read_supply_state(client), T0).connected  # the next session works


def test_set_and_action_need_the_service_granted() -> None:
    sim = _sim()
    client = DlmsClient(conformance=0x001010)  # GET and block transfer only
    _run(sim, client, _connect_only(client), T0)
    with pytest.raises(DlmsSessionError, match="did not grant the SET"):
        client.set(LIMITER, CLASS_LIMITER, 3, (Tag.DOUBLE_LONG_UNSIGNED, 1))
    with pytest.raises(DlmsSessionError, match="did not grant the ACTION"):
        client.action(DISCONNECT_CONTROL, CLASS_DISCONNECT_CONTROL, 1, (Tag.INTEGER, 0))
    assert client.state == "associated"


def test_encrypted_control_is_ciphered_on_the_wire() -> None:
    sim = _sim(KEYS, "wrapper")
    client = DlmsClient(keys=KEYS, transport="wrapper")
    seen: list[int] = []

    def transact(out: bytes) -> bytes:
        reply = sim.respond(out, T0)
        seen.extend(b[8] for b in (out, reply) if len(b) > 8)
        return reply

    drive(disconnect_supply(client), transact)
    assert 0xCB in seen and 0xCF in seen  # glo-action-request / -response
    drive(set_power_limit(client, 3000), transact)
    assert 0xC9 in seen and 0xCD in seen  # glo-set-request / -response
    assert not {0xC1, 0xC3, 0xC5, 0xC7} & set(seen)


# ---- the hub's driver over a Link ----------------------------------------------------------------


@pytest.mark.parametrize(("keys", "transport"), SESSIONS[::3])
async def test_hub_control_over_a_simulated_link(keys: SecurityKeys | None, transport: str) -> None:
    sim = _sim(keys, transport)
    link = SimulatedLink(sim)
    client = DlmsClient(keys=keys, transport=transport)  # type: ignore[arg-type]
    link.t = T0 + timedelta(hours=6)
    assert (await dlms_control.supply_state(link, client)).connected
    assert await dlms_control.disconnect(link, client) == SupplyState(False, ControlState.DISCONNECTED)
    link.t += timedelta(hours=1)
    assert await dlms_control.reconnect(link, client) == SupplyState(True, ControlState.CONNECTED)
    limit = await dlms_control.set_power_limit(link, client, 2500)
    assert limit.watts == 2500 and sim.threshold_active == 2500
    assert link.exchanges > 0 and client.state == "idle"
