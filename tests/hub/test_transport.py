from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from smarthub.clock import ManualClock
from smarthub.han.transport import SimulatedP1Transport

T0 = datetime(2026, 3, 2, tzinfo=UTC)


class Meter:
    def __init__(self) -> None:
        self.times: list[datetime] = []

    def telegram_at(self, t: datetime) -> bytes:
        self.times.append(t)
        return b"/X\r\n\r\n!0000\r\n"


async def test_transport_aligns_chunks_and_resumes_where_it_stopped() -> None:
    clock = ManualClock(T0 + timedelta(seconds=10))
    meter, received = Meter(), []
    tr = SimulatedP1Transport(
        meter, clock, received.append, period=timedelta(seconds=60), chunk=4, start=clock.now()
    )
    # The clock is already past every due time, so run() does not wait.
    clock.set(T0 + timedelta(hours=1))
    await tr.run(until=T0 + timedelta(minutes=3))
    assert meter.times == [T0 + timedelta(minutes=m) for m in (1, 2, 3)]  # aligned to the period
    assert b"".join(received) == b"/X\r\n\r\n!0000\r\n" * 3 and max(map(len, received)) == 4
    await tr.run(until=T0 + timedelta(minutes=5))
    assert meter.times[3:] == [T0 + timedelta(minutes=4), T0 + timedelta(minutes=5)]


async def test_a_repoll_never_makes_the_schedule_ask_about_an_earlier_instant() -> None:
    from smarthub.han.poll import PollLoop
    from smarthub.han.ports import PortBatch

    clock = ManualClock(T0)
    asked: list[datetime] = []

    async def cycle(t: datetime) -> PortBatch:
        if asked and t <= asked[-1]:
            raise ValueError("meter asked about an earlier instant")  # what a real simulator refuses
        asked.append(t)
        return PortBatch()

    loop = PollLoop("m", clock, cycle, lambda batch, t: None, period=timedelta(minutes=5), start=T0)
    task = asyncio.create_task(loop.run(until=T0 + timedelta(minutes=30)))
    await asyncio.sleep(0)
    clock.set(T0 + timedelta(minutes=12))  # the loop is due at 00:05 and 00:10, not yet run
    assert await loop.poll_now()  # a diagnostic re-poll at 00:12 gets there first
    clock.set(T0 + timedelta(hours=1))
    await task
    assert loop.failures == 0
    assert asked == sorted(asked) and len(set(asked)) == len(asked)
    assert T0 + timedelta(minutes=12) in asked and T0 + timedelta(minutes=15) in asked
