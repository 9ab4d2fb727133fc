"""The local repairs a hub makes itself when diagnostics find a fault (``hub.diagnostics.Repairs``).

* **re-poll**: an extra poll cycle of the meter's (or port's) poll loop now;
* **clock re-sync**: a DLMS meter's Clock (class 8, attribute 2) is SET to the hub's time and
  read back in the same association; the repair succeeded only if the meter then reads the
  hub's time (within ``clock_tolerance``). A meter that refuses the SET (read-write-denied: this
  client may not set its clock) is *unsupported*, so the event keeps its recommendation (a site
  visit) for a person;
* **re-key**: the other keys the hub holds for the meter (:class:`~smarthub.hub.keys.KeyRing`:
  the one a key change replaced, one staged for a change the meter has not made yet) are tried
  against the meter itself: for a wM-Bus/OMS meter on the last frame it sent that did not
  decrypt, for a DLMS meter by opening a ciphered association. The first that fits is promoted;
* **transport fallback**: a DLMS meter reachable over a second path (its HDLC port and a TCP
  wrapper module, :class:`~smarthub.han.dlms_poll.DlmsPaths`) is switched to the next path that
  answers a poll; if none does, it stays on the path it had.

Every repair says what it did in the attempt's detail, and runs each meter session under the
meter's poll loop lock, so a repair never overlaps a scheduled poll.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from smarthub.han import dlms_control
from smarthub.han.dlms_poll import DlmsPaths, key_failure
from smarthub.han.poll import PollLoop
from smarthub.han.wmbus_port import WMBusPort
from smarthub.hub.diagnostics import DiagnosedEvent, RepairOutcome, RepairResult
from smarthub.hub.keys import KeyRing
from smarthub.meters.dlms.errors import DataAccessError, DlmsSessionError
from smarthub.meters.dlms.security import SecurityKeys
from smarthub.meters.errors import DecodeError
from smarthub.meters.wmbus import data_points

READ_WRITE_DENIED = 3  # data-access-result (IEC 62056-5-3)


@dataclass
class DlmsMeterAccess:
    """What the repairs need to talk to one DLMS meter: its paths, the loop that polls it, and
    the ring of its suite 0 keys (the clients use ``keys[meter]``)."""

    paths: DlmsPaths
    loop: PollLoop
    keys: KeyRing[SecurityKeys] | None = None


def fingerprint(key: bytes | SecurityKeys) -> str:
    """A short, non-secret name for a key in an event's detail."""
    raw = key if isinstance(key, bytes) else key.encryption_key + key.authentication_key
    return hashlib.sha256(raw).hexdigest()[:8]


class HubRepairs:
    """The repairs of one hub (see the module docstring). Register what the hub can act on with
    :meth:`add_loops`, :meth:`add_dlms` and :meth:`add_radio`."""

    def __init__(self, *, clock_tolerance: timedelta = timedelta(seconds=2)) -> None:
        self.clock_tolerance = clock_tolerance
        self._loops: dict[str, list[PollLoop]] = {}
        self._dlms: dict[str, DlmsMeterAccess] = {}
        self._radios: list[WMBusPort] = []

    # -- registration ------------------------------------------------------------------
    def add_loops(self, devices: Iterable[str], loops: list[PollLoop]) -> None:
        """The loops that poll (or receive) ``devices`` (meter ids, loop and port names)."""
        for d in devices:
            self._loops[d] = loops

    def add_dlms(self, access: DlmsMeterAccess) -> None:
        """A DLMS meter: its id and its poll loop's name both lead to it."""
        for name in (access.paths.meter, access.loop.name):
            self._dlms[name] = access
        self.add_loops((access.paths.meter, access.loop.name), [access.loop])
        if access.keys is not None and access.paths.meter in access.keys:
            for client in access.paths.clients:
                client.keys = access.keys[access.paths.meter]

    def add_radio(self, port: WMBusPort) -> None:
        self._radios.append(port)

    def reachable(self) -> dict[str, list[str]]:
        """What the repairs can act on: device → the repairs that apply (re-poll, DLMS session
        repairs, re-key on a radio's frames)."""
        out: dict[str, list[str]] = {}
        for device in self._loops:
            out.setdefault(device, []).append("repoll")
        for device in self._dlms:
            out.setdefault(device, []).append("dlms")
        for port in self._radios:
            out.setdefault(port.name, []).append("radio")
        return {d: sorted(set(r)) for d, r in sorted(out.items())}

    # -- repairs -----------------------------------------------------------------------
    async def repoll(self, event: DiagnosedEvent) -> RepairResult:
        loops = self._loops.get(event.device)
        if not loops:
            return RepairResult(RepairOutcome.UNSUPPORTED, f"no poll loop reaches {event.device}")
        results = [await loop.poll_now() for loop in loops]
        ok = all(results)
        names = ", ".join(loop.name for loop in loops)
        return RepairResult(
            RepairOutcome.SUCCEEDED if ok else RepairOutcome.FAILED,
            f"re-polled {names}: {'answered' if ok else 'no answer'}",
        )

    async def resync_clock(self, event: DiagnosedEvent) -> RepairResult:
        access = self._dlms.get(event.device)
        if access is None:
            return RepairResult(
                RepairOutcome.UNSUPPORTED,
                f"the hub cannot set the clock of {event.device} (not a DLMS meter)",
            )

        async def session(t: datetime) -> tuple[datetime, datetime | None]:
            return t, await access.paths.session(
                t, lambda link, client: dlms_control.set_clock(link, client, t)
            )

        try:
            at, read_back = await access.loop.exclusive(session)
        except DataAccessError as err:
            if err.result == READ_WRITE_DENIED:
                return RepairResult(
                    RepairOutcome.UNSUPPORTED, f"the meter refuses to have its clock set: {err}"
                )
            return RepairResult(RepairOutcome.FAILED, f"clock SET failed: {err}")
        set_to = at.replace(microsecond=0)
        if read_back is None:
            return RepairResult(
                RepairOutcome.FAILED, f"clock set to {_iso(set_to)}; the meter reads back 'not specified'"
            )
        off = (read_back - set_to).total_seconds()
        if abs(off) > self.clock_tolerance.total_seconds():
            return RepairResult(
                RepairOutcome.FAILED,
                f"clock set to {_iso(set_to)} but the meter reads back {_iso(read_back)} ({off:+.0f} s)",
            )
        return RepairResult(
            RepairOutcome.SUCCEEDED,
            f"clock set to {_iso(set_to)} (was {_drift(event)}); read back {_iso(read_back)}",
        )

    async def rekey(self, event: DiagnosedEvent) -> RepairResult:
        meter = event.device
        access = self._dlms.get(meter)
        if access is not None and access.keys is not None:
            return await self._rekey_dlms(meter, access, access.keys)
        for port in self._radios:
            if meter in port.undecrypted:
                return self._rekey_radio(meter, port)
        return RepairResult(
            RepairOutcome.UNSUPPORTED, f"no other key and no frame to test one on for {meter}"
        )

    def _rekey_radio(self, meter: str, port: WMBusPort) -> RepairResult:
        ring = port.keys
        candidates = ring.candidates(meter) if isinstance(ring, KeyRing) else []
        if not candidates:
            return RepairResult(RepairOutcome.UNSUPPORTED, f"the hub holds no other key for {meter}")
        frame = port.undecrypted[meter]
        for i, key in enumerate(candidates, 1):
            try:
                data_points(frame, {meter: key}, tz=port.tz, has_crc=port.has_crc)
            except DecodeError:
                continue
            _promote(ring, meter, key)
            del port.undecrypted[meter]
            return RepairResult(
                RepairOutcome.SUCCEEDED,
                f"other key {i} of {len(candidates)} (fingerprint {fingerprint(key)}) decrypts the meter's"
                f" last frame on {port.name}: now in use",
            )
        return RepairResult(
            RepairOutcome.FAILED,
            f"none of the {len(candidates)} other keys for {meter} decrypts its last frame on {port.name}",
        )

    async def _rekey_dlms(
        self, meter: str, access: DlmsMeterAccess, ring: KeyRing[SecurityKeys]
    ) -> RepairResult:
        candidates = ring.candidates(meter)
        if not candidates:
            return RepairResult(RepairOutcome.UNSUPPORTED, f"the hub holds no other key for {meter}")
        clients = access.paths.clients
        in_use = clients[0].keys
        for i, keys in enumerate(candidates, 1):
            for c in clients:
                c.keys = keys

            async def trial(t: datetime) -> object:
                return await access.paths.session(t, dlms_control.read_clock)

            try:
                await access.loop.exclusive(trial)
            except (DecodeError, DlmsSessionError) as err:
                if key_failure(err, access.paths.path.client) is not None:
                    continue  # this key does not fit either
                for c in clients:
                    c.keys = in_use
                return RepairResult(RepairOutcome.FAILED, f"trying other key {i}: {err}")
            except BaseException:  # the link itself failed (timeout, I/O): keep the key in use
                for c in clients:
                    c.keys = in_use
                raise
            ring.promote(meter, keys)
            return RepairResult(
                RepairOutcome.SUCCEEDED,
                f"other key {i} of {len(candidates)} (fingerprint {fingerprint(keys)}) opens a ciphered"
                " association with the meter: now in use",
            )
        for c in clients:
            c.keys = in_use
        return RepairResult(
            RepairOutcome.FAILED,
            f"none of the {len(candidates)} other keys for {meter} is accepted by the meter",
        )

    async def fallback_transport(self, event: DiagnosedEvent) -> RepairResult:
        access = self._dlms.get(event.device)
        if access is None or len(access.paths.paths) < 2:
            return RepairResult(RepairOutcome.UNSUPPORTED, f"no second path to {event.device}")
        paths, loop = access.paths, access.loop
        start = paths.active
        tried = []
        for step in range(1, len(paths.paths)):
            index = (start + step) % len(paths.paths)

            async def switch(t: datetime, index: int = index) -> None:
                paths.switch(index)

            await loop.exclusive(switch)
            tried.append(paths.paths[index].name)
            if await loop.poll_now():
                return RepairResult(
                    RepairOutcome.SUCCEEDED,
                    f"switched {paths.meter} from {paths.paths[start].name} to {paths.path.name}:"
                    " the poll answered",
                )

        async def back(t: datetime) -> None:
            paths.switch(start)

        await loop.exclusive(back)
        return RepairResult(
            RepairOutcome.FAILED,
            f"no other path to {paths.meter} answered ({', '.join(tried)}); staying on {paths.path.name}",
        )


def _promote(ring: MutableMapping[str, Any], meter: str, key: Any) -> None:
    if isinstance(ring, KeyRing):
        ring.promote(meter, key)
    else:
        ring[meter] = key


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t.utcoffset() == timedelta(0) else t.isoformat()


def _drift(event: DiagnosedEvent) -> str:
    drift = event.numbers.get("drift_s")
    return f"{drift:+.0f} s off" if isinstance(drift, int | float) else "off"
