"""A DLMS/COSEM push port: the HAN port of Nordic, Austrian, Swiss and Luxembourgish meters (and
any meter with a push setup, IEC 62056-6-2 class 40) sending DataNotifications on its own.

Bytes from any transport in, data points and typed errors out. The stream is cut into whole
transport frames (:class:`PushFramer`): HDLC (``7E``, flags possibly shared between frames),
wired M-Bus long frames (``68 L L 68``, the Austrian customer interface) or wrapper PDUs
(``00 01``); frames that belong together (segmented HDLC, an APDU split over M-Bus frames, the
blocks of a general-block-transfer) are gathered, then decoded as the meters' own HAN codec
decodes a capture (:mod:`smarthub.meters.dlms.han`: list layouts and profiles, suite 0/1
decryption, the serial and clock the list carries). The meter's keys (EK, and AK, many HAN
ports using one key for both) decrypt ciphered pushes, and the invocation counter guard refuses
a replayed one. Errors are typed (:mod:`smarthub.meters.errors`: no key, wrong key, unknown
list layout, corrupt, truncated) and name the meter when it is known.
"""

from __future__ import annotations

from datetime import UTC, tzinfo
from typing import Literal

from smarthub.han.ports import PortBatch
from smarthub.meters.dlms.han import decode_push_apdu, extract_apdus
from smarthub.meters.dlms.profiles import ListProfiles
from smarthub.meters.dlms.security import InvocationCounterGuard, SecurityKeys
from smarthub.meters.errors import DecodeError, MalformedFrame, TruncatedFrame

PROTOCOL = "dlms"
MAX_GROUP = 64 * 1024  # bytes of frames gathered for one APDU before giving up


class PushFramer:
    """A HAN port's byte stream cut into groups of whole frames, each group one or more APDUs
    (sans-I/O; ``feed`` never raises)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._group: list[bytes] = []
        self._skipped = 0

    def feed(self, data: bytes) -> list[bytes | DecodeError]:
        self._buf += data
        out: list[bytes | DecodeError] = []
        while True:
            frame = self._next_frame(out)
            if frame is None:
                break
            self._group.append(frame)
            if self._continues(frame):
                if sum(map(len, self._group)) > MAX_GROUP:
                    out.append(MalformedFrame(PROTOCOL, "segments never end"))
                    self._group = []
                continue
            group = b"".join(self._group)
            if self._gbt_unfinished(group) and sum(map(len, self._group)) <= MAX_GROUP:
                continue  # a general-block-transfer: wait for its last block
            self._group = []
            out.append(group)
        return out

    def _next_frame(self, out: list[bytes | DecodeError]) -> bytes | None:
        buf = self._buf
        while buf:
            first = buf[0]
            if first == 0x7E:
                while len(buf) > 1 and buf[1] == 0x7E:  # shared or repeated flags
                    del buf[:1]
                if len(buf) < 3:
                    return None
                length = ((buf[1] & 0x07) << 8) | buf[2]
                if buf[1] & 0xF0 != 0xA0 or length < 2:
                    self._skip(out)
                    continue
                if len(buf) < length + 2:
                    return None
                if buf[length + 1] != 0x7E:
                    self._skip(out)
                    continue
                frame = bytes(buf[: length + 2])
                del buf[: length + 1]  # keep the closing flag: it may open the next frame
                return frame
            if first == 0x68:
                if len(buf) < 4:
                    return None
                if buf[1] != buf[2] or buf[3] != 0x68:
                    self._skip(out)
                    continue
                total = buf[1] + 6
                if len(buf) < total:
                    return None
                frame = bytes(buf[:total])
                del buf[:total]
                return frame
            if first == 0x00 and len(buf) >= 2 and buf[1] == 0x01:
                if len(buf) < 8:
                    return None
                total = 8 + int.from_bytes(buf[6:8], "big")
                if len(buf) < total:
                    return None
                frame = bytes(buf[:total])
                del buf[:total]
                return frame
            if first == 0x00 and len(buf) < 2:
                return None
            self._skip(out)
        return None

    def _skip(self, out: list[bytes | DecodeError]) -> None:
        """Drop bytes up to the next possible start of a frame (noise, a cut-off frame)."""
        del self._buf[:1]
        n = 1
        while self._buf and self._buf[0] not in (0x7E, 0x68, 0x00):
            del self._buf[:1]
            n += 1
        out.append(MalformedFrame(PROTOCOL, f"{n} bytes that start no HDLC, M-Bus or wrapper frame"))

    @staticmethod
    def _continues(frame: bytes) -> bool:
        """A segment with more to come: the HDLC format field's S bit, an M-Bus DLMS transport
        segment without the last-segment bit (CI bit 4)."""
        if frame[0] == 0x7E:
            return bool(frame[1] & 0x08)
        if frame[0] == 0x68 and len(frame) > 6 and frame[6] <= 0x1F:
            return not frame[6] & 0x10
        return False

    @staticmethod
    def _gbt_unfinished(group: bytes) -> bool:
        try:
            extract_apdus(group)
        except TruncatedFrame as err:
            return "general-block-transfer ends" in str(err)
        except DecodeError:
            return False
        return False


class DlmsPushPort:
    protocol = PROTOCOL

    def __init__(
        self,
        name: str,
        keys: SecurityKeys | None = None,
        *,
        framing: Literal["hdlc", "wrapper"] = "hdlc",
        meter: str | None = None,
        profiles: ListProfiles | None = None,
        tz: tzinfo = UTC,
    ) -> None:
        self.name = name
        self.keys = keys
        self.framing = framing  # either is recognised from the bytes; kept for the record
        self.meter = meter  # the id to give points when the push names no serial or system title
        self.profiles = profiles
        self.tz = tz
        self.guard = InvocationCounterGuard()
        self.framer = PushFramer()
        self.frames = 0
        self.errors = 0

    def receive(self, data: bytes) -> PortBatch:
        batch = PortBatch()
        for item in self.framer.feed(data):
            if isinstance(item, DecodeError):
                self._error(batch, item)
                continue
            try:
                apdus = extract_apdus(item)
            except DecodeError as err:
                self._error(batch, err)
                continue
            for apdu in apdus:
                try:
                    push = decode_push_apdu(
                        apdu,
                        keys=self.keys,
                        meter=self.meter,
                        profiles=self.profiles,
                        assume=self.tz,
                        guard=self.guard,
                    )
                except DecodeError as err:
                    self._error(batch, err)
                    continue
                self.frames += 1
                batch.points += push.points
        return batch

    def _error(self, batch: PortBatch, err: DecodeError) -> None:
        self.errors += 1
        if getattr(err, "meter", None) is None and self.meter is not None:
            err.meter = self.meter  # type: ignore[attr-defined]  # a HAN port has one meter
        batch.errors.append(err)
