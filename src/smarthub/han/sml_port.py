"""An SML port: the optical interface of German meters (an IR read head on the meter's INFO/D0
port, 9600 8N1, or the head's TCP bridge) pushing an SML file every second or few.

:class:`SmlFramer` cuts the byte stream into whole files (SML 1.04 transport, clause 8: the
start sequence ``1B1B1B1B 01010101``, escaped data, the end sequence ``1B1B1B1B 1A`` with the
padding count and CRC; escape sequences sit on 4-byte boundaries of the file); each file is
decoded by the meters' SML codec (:mod:`smarthub.meters.sml`). Bytes before a start sequence
(a head switched on mid-file) are skipped and reported once.
"""

from __future__ import annotations

from smarthub.han.ports import PortBatch
from smarthub.meters import sml
from smarthub.meters.errors import DecodeError, MalformedFrame

MAX_FILE = 16 * 1024


class SmlFramer:
    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes | DecodeError]:
        self._buf += data
        out: list[bytes | DecodeError] = []
        buf = self._buf
        while True:
            start = buf.find(sml.START)
            if start < 0:
                keep = len(sml.START) - 1  # a start sequence may be arriving
                if len(buf) > keep + MAX_FILE:
                    out.append(MalformedFrame(sml.PROTOCOL, f"{len(buf) - keep} bytes without an SML start"))
                    del buf[:-keep]
                return out
            if start:
                out.append(MalformedFrame(sml.PROTOCOL, f"{start} bytes before the start of an SML file"))
                del buf[:start]
            end = self._end(buf)
            if end is None:
                if len(buf) > MAX_FILE:
                    out.append(MalformedFrame(sml.PROTOCOL, f"no end of file within {MAX_FILE} bytes"))
                    del buf[: len(sml.START)]
                    continue
                return out
            out.append(bytes(buf[:end]))
            del buf[:end]

    @staticmethod
    def _end(buf: bytearray) -> int | None:
        """The length of the file at the start of ``buf`` once its end sequence has arrived (read
        as the codec reads it: an escape sequence doubled is data)."""
        pos = len(sml.START)
        while True:
            i = buf.find(sml.ESCAPE, pos)
            if i < 0 or i + 8 > len(buf):
                return None
            follower = bytes(buf[i + 4 : i + 8])
            if follower == sml.ESCAPE:  # escaped data
                pos = i + 8
                continue
            if follower == sml.START[4:]:  # a new file started: this one was cut off
                return i
            return i + 8  # the end sequence (or a bad escape, which the codec reports)


class SmlPort:
    protocol = sml.PROTOCOL

    def __init__(self, name: str, meter: str | None = None) -> None:
        self.name = name
        self.meter = meter
        self.framer = SmlFramer()
        self.frames = 0
        self.errors = 0

    def receive(self, data: bytes) -> PortBatch:
        batch = PortBatch()
        for item in self.framer.feed(data):
            if isinstance(item, bytes):
                try:
                    batch.points += sml.data_points(item, self.meter)
                    self.frames += 1
                    continue
                except DecodeError as err:
                    item = err
            self.errors += 1
            if self.meter is not None:
                item.meter = self.meter  # type: ignore[attr-defined]
            batch.errors.append(item)
        return batch
