"""Remote control of a DLMS/COSEM meter through any `Link`: disconnect, reconnect, a power
limit, and reading the supply state (Disconnect control class 70 on 0-0:96.3.10, Limiter class
71 on 0-0:17.0.0), and reading or setting its clock (Clock class 8 on 0-0:1.0.0, attribute 2;
see :mod:`smarthub.meters.dlms.client`).

Each call is one association (connect, the operation, release, disconnect), driven like a poll
cycle (:func:`smarthub.han.dlms_poll.dlms_cycle`). Use the meter's polling client: its suite 0
invocation counters must keep rising across polls and control sessions alike, and the two must
not run at the same time on one link (the caller serialises them, e.g. under the poll loop's
cycle lock or by pausing it).

The meter's refusals raise :class:`~smarthub.meters.dlms.errors.DataAccessError` (an
:class:`~smarthub.meters.dlms.client.ActionError` for an ACTION) after the association has been
released; bad bytes raise ``DecodeError`` subclasses.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from smarthub.han.dlms_poll import MAX_EXCHANGES, complete_hdlc, complete_wrapper
from smarthub.han.poll import Link, PollLoop, SimulatedLink
from smarthub.meters.dlms.client import (
    LIMITER_THRESHOLD_ACTIVE,
    ControlState,
    DlmsClient,
    PowerLimit,
    SupplyState,
    disconnect_supply,
    read_supply_state,
    reconnect_supply,
)
from smarthub.meters.dlms.client import read_clock as read_clock_session
from smarthub.meters.dlms.client import set_clock as set_clock_session
from smarthub.meters.dlms.client import set_power_limit as power_limit_session
from smarthub.meters.errors import MalformedFrame

__all__ = [
    "SupplyControl",
    "disconnect",
    "read_clock",
    "reconnect",
    "set_clock",
    "set_power_limit",
    "supply_state",
]


async def _run(link: Link, client: DlmsClient, session: Generator[bytes, bytes, Any]) -> Any:
    complete = complete_hdlc if client.transport == "hdlc" else complete_wrapper
    out = next(session)
    for _ in range(MAX_EXCHANGES):
        reply = await link.exchange(out, complete) if out else b""
        try:
            out = session.send(reply)
        except StopIteration as done:
            return done.value
    session.close()
    raise MalformedFrame("dlms", f"control session did not finish within {MAX_EXCHANGES} exchanges")


async def disconnect(link: Link, client: DlmsClient) -> SupplyState:
    """remote_disconnect; the supply state read back (``connected`` False when it worked)."""
    return await _run(link, client, disconnect_supply(client))


async def reconnect(link: Link, client: DlmsClient) -> SupplyState:
    """remote_reconnect; the supply state read back (``READY_FOR_RECONNECTION`` where the meter
    waits for the customer's button, e.g. after a limiter trip)."""
    return await _run(link, client, reconnect_supply(client))


async def set_power_limit(
    link: Link, client: DlmsClient, watts: int | Decimal, *, attribute: int = LIMITER_THRESHOLD_ACTIVE
) -> PowerLimit:
    """Write a power limit of ``watts`` W into the limiter (scaled to the monitored value's
    resolution, rounded down); what was written."""
    return await _run(link, client, power_limit_session(client, watts, attribute=attribute))


async def supply_state(link: Link, client: DlmsClient) -> SupplyState:
    """The Disconnect control's output_state and control_state."""
    return await _run(link, client, read_supply_state(client))


async def read_clock(link: Link, client: DlmsClient) -> datetime | None:
    """The meter's clock (UTC), or ``None`` if it reports its time as not specified."""
    return await _run(link, client, read_clock_session(client))


async def set_clock(link: Link, client: DlmsClient, t: datetime) -> datetime | None:
    """Set the meter's clock to ``t`` and read it back (see
    :func:`smarthub.meters.dlms.client.set_clock`); what the meter reads after the SET."""
    return await _run(link, client, set_clock_session(client, t))


@dataclass
class SupplyControl:
    """Connect/disconnect and power limit of one DLMS meter, sharing its poll loop's session: each
    operation runs under the loop's cycle lock (:meth:`~smarthub.han.poll.PollLoop.exclusive`)
    with the meter's polling client, so its invocation counters keep rising."""

    meter: str
    link: Link
    client: DlmsClient
    loop: PollLoop

    async def _run(self, op):
        async def session(t: datetime):
            if isinstance(self.link, SimulatedLink):
                self.link.t = t  # the simulated meter answers as of the session's instant
            return await op()

        return await self.loop.exclusive(session)

    async def disconnect(self) -> dict[str, Any]:
        return _state(await self._run(lambda: disconnect(self.link, self.client)))

    async def reconnect(self) -> dict[str, Any]:
        return _state(await self._run(lambda: reconnect(self.link, self.client)))

    async def state(self) -> dict[str, Any]:
        return _state(await self._run(lambda: supply_state(self.link, self.client)))

    async def limit(self, watts: int) -> dict[str, Any]:
        written = await self._run(lambda: set_power_limit(self.link, self.client, watts))
        return {"watts": written.watts}


def _state(s: SupplyState) -> dict[str, Any]:
    state = s.control_state  # a plain int when the meter reports a state the Blue Book does not define
    name = state.name.lower() if isinstance(state, ControlState) else str(state)
    return {"connected": s.connected, "control_state": name}
