"""Capture logs: timestamped frames, one per line, so a real installation's traffic can be
replayed with its original times (`smarthub decode --log`, the hub's replay).

Format (UTF-8 text)::

    # anything after '#' at the start of a line is a comment; blank lines are skipped
    2024-01-15T12:00:00Z          dlms         7E A0 2A 41 08 83 13 ...
    2024-01-15T12:00:02.5+01:00   iec62056-21  2f4c475a...

Each line: an ISO-8601 time with a UTC offset (``Z`` or ``+hh:mm``), whitespace, the protocol
(one of :data:`smarthub.meters.decode.PROTOCOLS`), whitespace, then the frame as hex (spaces,
colons and ``0x`` prefixes allowed). A frame that spans several transport frames (an Austrian
push over two M-Bus long frames, segmented HDLC) is one line with all of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from smarthub.meters.errors import MalformedFrame

__all__ = [
    "CaptureLogError",
    "CapturedFrame",
    "format_capture_line",
    "parse_capture_line",
    "read_capture_log",
]


class CaptureLogError(MalformedFrame):
    """A line of a capture log that does not follow the format; ``line`` is its number (1-based)."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        super().__init__("capture log", f"line {line}: {message}")


@dataclass(frozen=True, slots=True)
class CapturedFrame:
    time: datetime  # aware
    protocol: str
    data: bytes
    line: int


def parse_capture_line(text: str, line: int = 0) -> CapturedFrame | None:
    """One line: the frame, ``None`` for a blank or comment line; :class:`CaptureLogError` else."""
    from smarthub.meters.decode import PROTOCOLS

    s = text.strip()
    if not s or s.startswith("#"):
        return None
    parts = s.split(None, 2)
    if len(parts) < 3:
        raise CaptureLogError(line, "expected 'TIME PROTOCOL HEX'")
    raw_time, protocol, hex_text = parts
    try:
        t = datetime.fromisoformat(raw_time.replace("Z", "+00:00") if raw_time.endswith("Z") else raw_time)
    except ValueError:
        raise CaptureLogError(line, f"{raw_time!r} is not an ISO-8601 time") from None
    if t.tzinfo is None:
        raise CaptureLogError(line, f"time {raw_time!r} has no UTC offset (add Z or +hh:mm)")
    if protocol not in PROTOCOLS:
        raise CaptureLogError(line, f"unknown protocol {protocol!r}; one of {', '.join(PROTOCOLS)}")
    cleaned = "".join(hex_text.split()).replace("0x", "").replace(":", "")
    try:
        data = bytes.fromhex(cleaned)
    except ValueError:
        raise CaptureLogError(line, "frame is not hex") from None
    if not data:
        raise CaptureLogError(line, "empty frame")
    return CapturedFrame(t, protocol, data, line)


def read_capture_log(lines: Iterable[str]) -> Iterator[CapturedFrame]:
    """Every frame of a capture log, in file order; raises :class:`CaptureLogError` at the first
    bad line (call :func:`parse_capture_line` per line to skip bad ones instead)."""
    for n, text in enumerate(lines, 1):
        frame = parse_capture_line(text, n)
        if frame is not None:
            yield frame


def format_capture_line(time: datetime, protocol: str, data: bytes) -> str:
    """The log line for one frame (what a hub capturing its traffic writes)."""
    if time.tzinfo is None:
        raise ValueError("capture times must be timezone-aware")
    return f"{time.isoformat()} {protocol} {data.hex()}"
