"""The DLMS client's session state machine: its states, what moves it, and the table of moves.

As in h11 (``_state.py``) and dlms-cosem (``DlmsConnectionState``), the states are an enum and
every move is a row of one table, so a move the protocol does not allow (a GET before the
association, a second AARQ) is refused in one place, with the states that would allow it.
The sequence is the COSEM client's over HDLC (IEC 62056-46: SNRM/UA opens the link, DISC/UA or
DM closes it) or over the wrapper (IEC 62056-47: no link to open), with the association opened
by AARQ/AARE and closed by RLRQ/RLRE (IEC 62056-5-3, "ACSE services").
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from smarthub.meters.dlms.errors import DlmsStateError

__all__ = ["TRANSITIONS", "ClientState", "Trigger", "needs", "next_state"]


class ClientState(enum.StrEnum):
    """Where a :class:`~smarthub.meters.dlms.client.DlmsClient` session is. A ``str``: it
    compares equal to the names the client used before it was typed (``"idle"``, ...)."""

    IDLE = "idle"  # no link, no association
    SNRM = "snrm"  # HDLC SNRM sent, waiting for UA
    AARQ = "aarq"  # AARQ sent, waiting for AARE
    ASSOCIATED = "associated"
    GET = "get"  # GET.request sent (blocks may follow), waiting for the response
    SET = "set"
    ACTION = "action"
    RLRQ = "rlrq"  # RLRQ sent, waiting for RLRE
    RELEASED = "released"  # association released, HDLC link still up
    DISC = "disc"  # HDLC DISC sent, waiting for UA or DM


class Trigger(enum.Enum):
    """What moves the session: a request the client sends or an answer it gets."""

    CONNECT_HDLC = "SNRM sent"
    CONNECT_WRAPPER = "AARQ sent without a link layer"
    UA = "UA received"
    AARE_ACCEPTED = "AARE accepted"
    GET = "GET.request sent"
    SET = "SET.request sent"
    ACTION = "ACTION.request sent"
    ANSWERED = "the request's response, refusal or exception-response received"
    RELEASE = "RLRQ sent"
    RLRE = "RLRE received"
    DISCONNECT = "DISC sent"
    # From any state: the session is over (failed midway, refused, or the link closed).
    ENDED = "session ended"


S, T = ClientState, Trigger

#: state -> {trigger: next state}. ``ENDED`` is allowed from every state (see :func:`next_state`).
TRANSITIONS: Mapping[ClientState, Mapping[Trigger, ClientState]] = {
    S.IDLE: {T.CONNECT_HDLC: S.SNRM, T.CONNECT_WRAPPER: S.AARQ, T.DISCONNECT: S.DISC},
    S.SNRM: {T.UA: S.AARQ, T.DISCONNECT: S.DISC},
    S.AARQ: {T.AARE_ACCEPTED: S.ASSOCIATED, T.DISCONNECT: S.DISC},
    S.ASSOCIATED: {T.GET: S.GET, T.SET: S.SET, T.ACTION: S.ACTION, T.RELEASE: S.RLRQ, T.DISCONNECT: S.DISC},
    S.GET: {T.ANSWERED: S.ASSOCIATED, T.DISCONNECT: S.DISC},
    S.SET: {T.ANSWERED: S.ASSOCIATED, T.DISCONNECT: S.DISC},
    S.ACTION: {T.ANSWERED: S.ASSOCIATED, T.DISCONNECT: S.DISC},
    S.RLRQ: {T.RLRE: S.RELEASED, T.DISCONNECT: S.DISC},
    S.RELEASED: {T.DISCONNECT: S.DISC},
    S.DISC: {T.UA: S.IDLE, T.DISCONNECT: S.DISC},
}


def needs(trigger: Trigger) -> list[ClientState]:
    """The states from which ``trigger`` is allowed."""
    return [s for s in ClientState if trigger is T.ENDED or trigger in TRANSITIONS[s]]


def next_state(state: ClientState, trigger: Trigger) -> ClientState:
    """The state after ``trigger`` in ``state``; :class:`DlmsStateError` if the table has no such move."""
    if trigger is T.ENDED:
        return S.IDLE
    new = TRANSITIONS[state].get(trigger)
    if new is None:
        raise DlmsStateError(
            f"dlms: operation not allowed in state {state.value!r} (needs {'/'.join(needs(trigger))})"
        )
    return new
