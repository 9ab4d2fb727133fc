"""The DLMS client's state machine as a table (issue 16 item 5): the states a whole session
passes through against the simulated meter are the table's, and a request the table does not
allow is refused before anything is sent, naming the states that would allow it."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from smarthub.meters.dlms import ClientState, DlmsClient, DlmsStateError
from smarthub.meters.dlms.state import TRANSITIONS, Trigger, needs, next_state
from smarthub.model.obis import ObisCode
from smarthub.sim.dlms_meter import DlmsMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile

T0 = datetime(2024, 3, 30, 12, 0, tzinfo=UTC)
TITLE = bytes.fromhex("4D4D4D0000BC614E")
IMPORT = ObisCode.parse("1-0:1.8.0")


def _session(transport: str) -> list[ClientState]:
    """The states a connect / GET / release / disconnect session goes through, after each event."""
    sim = DlmsMeterSimulator(TITLE, "00012345", HouseholdProfile(7), T0, None, transport=transport)  # type: ignore[arg-type]
    client = DlmsClient(transport=transport)  # type: ignore[arg-type]
    seen = [client.state]

    def run(out: bytes) -> None:
        seen.append(client.state)
        while client.receive(sim.respond(out, T0)) is None:
            seen.append(client.state)
            out = client.next_request()
        seen.append(client.state)

    run(client.connect())
    run(client.get(IMPORT, 3, 2))
    run(client.release())
    out = client.disconnect()
    seen.append(client.state)
    if out:
        assert client.receive(sim.respond(out, T0)) is not None
        seen.append(client.state)
    return [s for i, s in enumerate(seen) if i == 0 or s != seen[i - 1]]


def test_a_hdlc_session_walks_the_table() -> None:
    S = ClientState
    assert _session("hdlc") == [
        S.IDLE, S.SNRM, S.AARQ, S.ASSOCIATED, S.GET, S.ASSOCIATED, S.RLRQ, S.RELEASED, S.DISC, S.IDLE
    ]  # fmt: skip


def test_a_wrapper_session_has_no_link_to_open_or_close() -> None:
    S = ClientState
    assert _session("wrapper") == [S.IDLE, S.AARQ, S.ASSOCIATED, S.GET, S.ASSOCIATED, S.RLRQ, S.IDLE]


def test_every_move_of_a_session_is_a_row_of_the_table() -> None:
    for transport in ("hdlc", "wrapper"):
        states = _session(transport)
        for a, b in itertools.pairwise(states):
            assert b in TRANSITIONS[a].values() or b is ClientState.IDLE, (a, b)


def test_a_request_the_state_does_not_allow_is_refused_before_anything_is_sent() -> None:
    client = DlmsClient()
    with pytest.raises(DlmsStateError, match=r"not allowed in state 'idle' \(needs associated\)"):
        client.get(IMPORT, 3, 2)
    assert client.state is ClientState.IDLE and client.next_request() == b""
    client.connect()
    with pytest.raises(DlmsStateError, match=r"in state 'snrm' \(needs idle\)"):
        client.connect()
    with pytest.raises(DlmsStateError, match=r"needs associated"):
        client.release()
    assert client.state is ClientState.SNRM


def test_the_table() -> None:
    assert set(TRANSITIONS) == set(ClientState)
    assert needs(Trigger.GET) == [ClientState.ASSOCIATED]
    assert needs(Trigger.ENDED) == list(ClientState)  # a failed session ends from anywhere
    assert all(next_state(s, Trigger.DISCONNECT) is ClientState.DISC for s in ClientState)
    assert next_state(ClientState.DISC, Trigger.UA) is ClientState.IDLE
    with pytest.raises(DlmsStateError):
        next_state(ClientState.RELEASED, Trigger.GET)
    assert ClientState.ASSOCIATED == "associated"  # still equal to the names callers compared with
