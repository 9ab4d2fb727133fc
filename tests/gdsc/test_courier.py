"""The command courier's kept-alive sessions to hubs."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from smarthub.gdsc.fleet.registry import HubRecord
from smarthub.gdsc.pull.courier import CommandCourier
from smarthub.sim.demo import free_port
from smarthub.wan.client.hub_client import PullError


def _hub(n: int) -> HubRecord:
    # Nobody listens there: a delivery is refused, after its session is made.
    return HubRecord(f"HUB{n}", f"P{n}", f"https://127.0.0.1:{free_port('127.0.0.1')}", "00" * 20, "active")


async def test_closing_the_sessions_while_a_command_is_delivered_closes_them_all() -> None:
    """The upkeep closes the courier's sessions after a CRL re-publication while the scheduler
    delivers commands: a delivery that opens a session during the close no longer breaks it
    ("dictionary changed size during iteration", in a 30-day chaos run; the CRL step failed)."""
    courier = CommandCourier(ssl.create_default_context())
    for n in range(3):
        with contextlib.suppress(PullError):
            await courier.deliver(_hub(n), b"{}")
    closing = asyncio.create_task(courier.close())
    await asyncio.sleep(0)  # the close is under way, awaiting the first session's
    delivery = asyncio.create_task(courier.deliver(_hub(9), b"{}"))
    await asyncio.sleep(0)  # ... and this delivery made its session meanwhile
    await closing
    with contextlib.suppress(PullError):
        await delivery
    await courier.close()  # the session made during the first close
