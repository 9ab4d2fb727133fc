"""Polling a DLMS/COSEM meter (HDLC on RS-485/optical, or the TCP wrapper) through any `Link`.

One client per meter lives across polls, so the suite 0 invocation counters (ours, and the
meter's that we have accepted) keep rising from one association to the next: a replayed
response from an earlier session is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from smarthub.han.poll import Cycle, Link
from smarthub.han.ports import PortBatch
from smarthub.meters.dlms.client import DlmsClient, poll_meter
from smarthub.meters.errors import MalformedFrame
from smarthub.model import ObisCode

MAX_EXCHANGES = 256


def complete_hdlc(buf: bytes) -> bool:
    """A whole HDLC frame: flag, format field with the 11-bit length, then length + 2 bytes."""
    return len(buf) >= 3 and buf[0] == 0x7E and len(buf) >= (((buf[1] & 0x07) << 8) | buf[2]) + 2


def complete_wrapper(buf: bytes) -> bool:
    """A whole wrapper PDU: 8-byte header whose last two bytes give the APDU length."""
    return len(buf) >= 8 and len(buf) >= 8 + int.from_bytes(buf[6:8], "big")


def dlms_cycle(
    link: Link,
    client: DlmsClient,
    registers: Sequence[ObisCode],
    *,
    profile: ObisCode | None = None,
    meter: str | None = None,
) -> Cycle:
    complete = complete_hdlc if client.transport == "hdlc" else complete_wrapper

    async def cycle(t: datetime) -> PortBatch:
        session = poll_meter(client, registers, profile=profile, meter=meter)
        try:
            out = next(session)
            for _ in range(MAX_EXCHANGES):
                reply = await link.exchange(out, complete) if out else b""
                try:
                    out = session.send(reply)
                except StopIteration as done:
                    return PortBatch(points=list(done.value))
            raise MalformedFrame("dlms", f"poll did not finish within {MAX_EXCHANGES} exchanges")
        except BaseException:
            # Whatever broke this session (a refused GET, a lost reply), the next poll must be
            # able to associate again rather than fail forever on a stale state.
            session.close()
            client.abandon()
            raise

    return cycle
