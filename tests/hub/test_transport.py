from __future__ import annotations

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
