"""What each protocol's benchmark module provides to `bench/codecs.py`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BenchCase:
    protocol: str  # "dsmr", "dlms", "iec62056-21", "mbus", "wmbus", "zigbee"
    name: str  # what is decoded, e.g. "HDLC GET.response Register, suite 0 encrypted"
    ours: Callable[[], object]  # decodes one frame to readings/data points with our codec
    reference: Callable[[], object] | None  # the same frame with the reference library
    reference_name: str  # e.g. "dlms-cosem 25.1.0"; "" when there is none
    frame_bytes: int = 0
