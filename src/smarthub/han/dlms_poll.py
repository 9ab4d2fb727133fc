"""Polling a DLMS/COSEM meter (HDLC on RS-485/optical, or the TCP wrapper) through any `Link`.

One client per meter lives across polls, so the suite 0 invocation counters (ours, and the
meter's that we have accepted) keep rising from one association to the next: a replayed
response from an earlier session is refused.

A meter the hub's keys no longer fit shows as a ciphered association the meter refuses (it
cannot decrypt our AARQ) or an AARE we cannot decrypt; both are reported as the meter's
:class:`~smarthub.meters.dlms.errors.DecryptionError`, so diagnostics raise the security event
whose repair is a re-key.

:class:`DlmsPaths` is a meter reachable over more than one path (the HDLC port and a TCP
wrapper module, say): polls and other sessions run on the active path, and
:meth:`DlmsPaths.switch` moves to another one, carrying the security state across.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from smarthub.han.poll import Cycle, Link, SimulatedLink
from smarthub.han.ports import PortBatch
from smarthub.meters.dlms.client import DlmsClient, poll_meter
from smarthub.meters.dlms.errors import AssociationRejected, DecryptionError
from smarthub.meters.errors import MalformedFrame
from smarthub.model import ObisCode

T = TypeVar("T")
# AARE diagnostics (IEC 62056-5-3, acse-service-user) that a wrong key produces: the meter
# could not decrypt or authenticate the AARQ.
_KEY_REJECTIONS = frozenset({1, 13})  # no-reason-given, authentication-failure

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
        except BaseException as err:
            # Whatever broke this session (a refused GET, a lost reply), the next poll must be
            # able to associate again rather than fail forever on a stale state.
            session.close()
            client.abandon()
            key_error = key_failure(err, client, meter)
            if key_error is not None:
                raise key_error from err
            raise

    return cycle


def key_failure(err: BaseException, client: DlmsClient, meter: str | None = None) -> DecryptionError | None:
    """``err`` as the meter's decryption failure if it says our keys do not fit the meter's
    (``.meter`` names the meter when known), else ``None``."""
    if client.keys is None:
        return None
    if isinstance(err, DecryptionError):
        out = err
    elif isinstance(err, AssociationRejected) and err.diagnostic in _KEY_REJECTIONS:
        out = DecryptionError(
            "dlms", f"the meter refused the ciphered association ({err}): keys out of step?"
        )
    else:
        return None
    out.meter = meter or client.meter_id  # type: ignore[attr-defined]
    return out


@dataclass
class DlmsPath:
    """One way to reach a meter: ``name`` ("hdlc", "wrapper", ...), the link and its client."""

    name: str
    link: Link
    client: DlmsClient


class DlmsPaths:
    """A DLMS meter reachable over several paths, polled (and talked to) on the active one.

    Run every session through :meth:`session` under the poll loop's lock (``PollLoop.exclusive``)
    or as the loop's cycle (:meth:`cycle`), so the meter sees one association at a time.
    """

    def __init__(
        self,
        meter: str,
        paths: Sequence[DlmsPath],
        registers: Sequence[ObisCode],
        *,
        profile: ObisCode | None = None,
    ) -> None:
        if not paths:
            raise ValueError("a DLMS meter needs at least one path")
        self.meter = meter
        self.paths = list(paths)
        self.registers = tuple(registers)
        self.profile = profile
        self.active = 0
        self._cycles = [
            dlms_cycle(p.link, p.client, self.registers, profile=profile, meter=meter) for p in paths
        ]

    @property
    def path(self) -> DlmsPath:
        return self.paths[self.active]

    @property
    def clients(self) -> list[DlmsClient]:
        return [p.client for p in self.paths]

    async def cycle(self, t: datetime) -> PortBatch:
        """One poll on the active path (a `Cycle` for the poll loop)."""
        _at(self.path.link, t)
        return await self._cycles[self.active](t)

    async def session(self, t: datetime, run: Callable[[Link, DlmsClient], Awaitable[T]]) -> T:
        """Another session (control, clock, key trial) on the active path at instant ``t``; a
        failure leaves the client ready to associate again."""
        path = self.path
        _at(path.link, t)
        try:
            return await run(path.link, path.client)
        except BaseException:
            path.client.abandon()
            raise

    def switch(self, index: int) -> None:
        """Make path ``index`` the active one. The suite 0 state moves with it: our invocation
        counter must keep rising and the meter's accepted counters stay guarded, whichever port
        the meter hears us on."""
        old, new = self.path.client, self.paths[index].client
        if new is not old:
            new.invocation_counter = max(new.invocation_counter, old.invocation_counter)
            new.guard = old.guard
            new.keys = old.keys
            new.server_system_title = new.server_system_title or old.server_system_title
        self.active = index


def _at(link: Link, t: datetime) -> None:
    if isinstance(link, SimulatedLink):
        link.t = t  # the simulated meter answers as of the session's instant
