"""Frames as lines of text: what SDR decoders and bridges print, one frame per line.

* **wM-Bus hex lines**: a frame in hex per line (spaces, ``0x`` and ``:`` allowed), or the
  lines rtl-wmbus prints: ``MODE;crc ok;3-of-6 ok;date time;rssi;...;id;0xHEX`` (e.g.
  ``C1;1;1;2019-02-09 07:14:18.000;117;102;94740459;0x4944...``; a line whose two check flags
  are not both 1 failed the decoder's own checks and is reported, not decoded). rtl-wmbus (the
  wmbusmeters fork) removes the link-layer CRCs and corrects L, as the sticks do.
* **ZigBee bridge lines**: ``<EUI-64> <ZCL payload hex>`` or ``<EUI-64> <cluster hex>
  <payload hex>``, the format of smarthub's own coordinator bridge (``smarthub.sim`` speaks it;
  any bridge that can print a ZCL frame per line can feed a hub this way).

:class:`LineFramer` splits a byte stream into lines (sans-I/O); :class:`PipeStream` reads a
pipe, a FIFO or standard input in a thread, as ``rtl_sdr ... | rtl_wmbus | smarthub hub``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import stat
import sys
import threading
from collections.abc import Callable

from smarthub.han.ports import PortBatch
from smarthub.han.wmbus_port import WMBusPort
from smarthub.han.zigbee_port import ZigbeePort
from smarthub.meters.errors import ChecksumError, DecodeError, MalformedFrame
from smarthub.meters.zigbee_se import METERING_CLUSTER

log = logging.getLogger(__name__)
MAX_LINE = 8192


class LineFramer:
    """Bytes in, whole lines out (CR LF or LF); an over-long line is dropped with an error."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self._buf = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> list[str | DecodeError]:
        self._buf += data
        out: list[str | DecodeError] = []
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > MAX_LINE:
                    if not self._skipping:
                        out.append(MalformedFrame(self.protocol, f"a line longer than {MAX_LINE} bytes"))
                    self._skipping = True
                    self._buf.clear()
                return out
            raw = bytes(self._buf[:end])
            del self._buf[: end + 1]
            if self._skipping:
                self._skipping = False
                continue
            line = raw.decode("ascii", "replace").strip()
            if line and not line.startswith("#"):
                out.append(line)


def _hex(text: str, protocol: str) -> bytes:
    cleaned = "".join(text.split()).replace(":", "")
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    try:
        data = bytes.fromhex(cleaned)
    except ValueError:
        raise MalformedFrame(protocol, f"not hex: {text[:40]!r}") from None
    if not data:
        raise MalformedFrame(protocol, "an empty frame")
    return data


def wmbus_line(line: str) -> bytes:
    """The frame on one wM-Bus hex line (plain hex, or rtl-wmbus's semicolon fields)."""
    if ";" in line:
        fields = line.split(";")
        frame = next((f for f in reversed(fields) if f.strip().lower().startswith("0x")), None)
        if frame is None:
            raise MalformedFrame("wmbus", f"no 0x... frame on the line {line[:40]!r}")
        checks = tuple(f.strip() for f in fields[1:3])
        if len(fields) >= 3 and fields[0][:1] in "CTS" and checks != ("1", "1"):
            raise ChecksumError("wmbus", f"the receiver flagged this frame as bad ({';'.join(fields[:3])})")
        return _hex(frame, "wmbus")
    return _hex(line, "wmbus")


def zigbee_line(line: str) -> tuple[str, int, bytes]:
    """``(EUI-64, cluster, ZCL payload)`` from a bridge line."""
    parts = line.split()
    if len(parts) not in (2, 3):
        raise MalformedFrame("zigbee", f"expected '<EUI-64> [cluster] <payload hex>', got {line[:40]!r}")
    eui = parts[0].lower()
    octets = eui.split(":")
    if len(octets) != 8 or not all(len(o) == 2 and all(c in "0123456789abcdef" for c in o) for o in octets):
        raise MalformedFrame("zigbee", f"not an EUI-64: {parts[0]!r}")
    cluster = METERING_CLUSTER
    if len(parts) == 3:
        try:
            cluster = int(parts[1].removeprefix("0x"), 16)
        except ValueError:
            raise MalformedFrame("zigbee", f"not a cluster id: {parts[1]!r}") from None
    return eui, cluster, _hex(parts[-1], "zigbee")


class WMBusLines:
    """A wM-Bus receiver printing hex lines, to the hub: one batch per frame."""

    def __init__(self, radio: WMBusPort) -> None:
        self.radio = radio
        self.framer = LineFramer("wmbus")

    def receive(self, data: bytes) -> list[PortBatch]:
        out = []
        for item in self.framer.feed(data):
            if isinstance(item, DecodeError):
                out.append(PortBatch(errors=[item]))
                continue
            try:
                frame = wmbus_line(item)
            except DecodeError as err:
                self.radio.errors += 1
                out.append(PortBatch(errors=[err]))
                continue
            out.append(self.radio.receive(frame))
        return out


class ZigbeeLines:
    """A ZigBee coordinator bridge printing lines, to the hub: one batch per report."""

    def __init__(self, port: ZigbeePort) -> None:
        self.port = port
        self.framer = LineFramer("zigbee")

    def receive(self, data: bytes) -> list[PortBatch]:
        out = []
        for item in self.framer.feed(data):
            if isinstance(item, DecodeError):
                out.append(PortBatch(errors=[item]))
                continue
            try:
                eui, cluster, payload = zigbee_line(item)
            except DecodeError as err:
                self.port.errors += 1
                out.append(PortBatch(errors=[err]))
                continue
            out.append(self.port.receive_frame(eui, payload, cluster))
        return out


class PipeStream:
    """Lines from a pipe: standard input (``"-"``), a FIFO (reopened when its writer goes away,
    so a restarted decoder reconnects) or a regular file (read once)."""

    def __init__(self, path: str, sink: Callable[[bytes], None]) -> None:
        self.path = path
        self.sink = sink
        self.eof = asyncio.Event()
        self._stop = threading.Event()

    async def run(self, until: object = None) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._pump, loop)

    def _pump(self, loop: asyncio.AbstractEventLoop) -> None:
        while not self._stop.is_set():
            if self.path == "-":
                fd, close = sys.stdin.fileno(), False
            else:
                try:
                    fd, close = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK), True
                except OSError as err:
                    log.warning("pipe %s: %s; retrying", self.path, err)
                    self._stop.wait(1.0)
                    continue
            is_fifo = stat.S_ISFIFO(os.fstat(fd).st_mode)
            try:
                while not self._stop.is_set():
                    # select with a timeout, so stop() ends the thread even on a silent pipe
                    if not select.select([fd], [], [], 0.2)[0]:
                        continue
                    try:
                        data = os.read(fd, 4096)
                    except BlockingIOError:
                        continue
                    if not data:
                        break
                    loop.call_soon_threadsafe(self._deliver, data)
            finally:
                if close:
                    os.close(fd)
            if self.path == "-" or not is_fifo:
                loop.call_soon_threadsafe(self.eof.set)
                return  # standard input or a file: read to its end once
            self._stop.wait(0.2)  # a FIFO whose writer left: wait for the next one

    def _deliver(self, data: bytes) -> None:
        if not self._stop.is_set():  # nothing after stop: whoever takes the bytes may be closed
            self.sink(data)

    def stop(self) -> None:
        self._stop.set()
