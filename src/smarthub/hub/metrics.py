"""The hub's own Prometheus metrics, served on its WAN at ``GET /metrics`` to the GDSC's
collectors only (the same certificate rule as ``/mgmt``: see ``wan.server.resources``).

Rendered at each request into a fresh registry from the hub's live counters (no state is kept
for it); ``prometheus_client`` is imported on the first request only, so a hub nobody scrapes
pays nothing for it in memory (the hub's budget is tight: README "Measured")."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from smarthub.hub.diagnostics import DiagnosedEvent
from smarthub.hub.hub import SmartHub


@dataclass
class HubMetrics:
    """What a hub exports. ``connections``: (protocol, poll failures) per HAN connection, read at
    each scrape; ``open_events``: the open diagnoses; ``files``: the hub's databases by name;
    ``wan``: (requests served, requests refused by the rate limit); ``last_pull``: when a GDSC
    collector last made a request (hub clock, epoch seconds)."""

    hub: SmartHub
    connections: Callable[[], Iterable[tuple[str, int]]] = tuple
    open_events: Callable[[], Iterable[DiagnosedEvent]] = tuple
    files: dict[str, str] = field(default_factory=dict)
    wan: Callable[[], tuple[int, int]] = lambda: (0, 0)
    last_pull: Callable[[], float | None] = lambda: None

    def render(self) -> tuple[bytes, str]:
        """The text format and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        registry = CollectorRegistry()
        registry.register(_Collector(self))
        return generate_latest(registry), CONTENT_TYPE_LATEST


class _Collector:
    def __init__(self, m: HubMetrics) -> None:
        self.m = m

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self.m.hub.stats
        frames = CounterMetricFamily("smarthub_hub_frames", "HAN frames, by result", labels=["result"])
        frames.add_metric(["ok"], s.frames_ok)
        frames.add_metric(["error"], s.frame_errors)
        yield frames
        errors = CounterMetricFamily(
            "smarthub_hub_frame_errors", "HAN frames that did not decode, by protocol", labels=["protocol"]
        )
        for protocol, n in sorted(s.frame_errors_by_protocol.items()):
            errors.add_metric([protocol], n)
        yield errors
        per_meter = CounterMetricFamily(
            "smarthub_hub_meter_readings", "Readings accepted, by meter", labels=["meter"]
        )
        for meter, n in sorted(s.readings_by_meter.items()):
            per_meter.add_metric([meter], n)
        yield per_meter
        newest = GaugeMetricFamily(
            "smarthub_hub_meter_last_reading_timestamp_seconds",
            "Time stamp of each meter's newest reading (meter's time as the hub read it)",
            labels=["meter"],
        )
        for meter, t in sorted(s.last_reading.items()):
            newest.add_metric([meter], t)
        yield newest
        for name, value, text in (
            ("readings", s.readings, "Readings accepted from the meters"),
            ("intervals_stored", s.intervals_stored, "Intervals written to the encrypted history"),
            ("unmapped", s.unmapped, "Data points with no OBIS mapping"),
            ("quarantined", s.quarantined, "Readings held back as implausible"),
            ("foreign", s.foreign, "Frames of meters not commissioned to this hub (neighbours)"),
            ("storage_full", s.storage_full, "History writes refused on a full disk"),
        ):
            c = CounterMetricFamily(f"smarthub_hub_{name}", text)
            c.add_metric([], value)
            yield c
        polls = CounterMetricFamily(
            "smarthub_hub_poll_failures", "Failed meter polls by protocol", labels=["protocol"]
        )
        by_protocol: dict[str, int] = {}
        for protocol, failures in self.m.connections():
            by_protocol[protocol] = by_protocol.get(protocol, 0) + failures
        for protocol, n in sorted(by_protocol.items()):
            polls.add_metric([protocol], n)
        yield polls
        diagnoses = GaugeMetricFamily("smarthub_hub_diagnoses_open", "Open diagnoses", labels=["code"])
        by_code: dict[str, int] = {}
        for e in self.m.open_events():
            key = e.code.name.lower()
            by_code[key] = by_code.get(key, 0) + 1
        for code, n in sorted(by_code.items()):
            diagnoses.add_metric([code], n)
        yield diagnoses
        size = GaugeMetricFamily("smarthub_hub_file_bytes", "Size of the hub's databases", labels=["file"])
        for name, path in sorted(self.m.files.items()):
            try:
                size.add_metric([name], os.path.getsize(path))
            except OSError:
                continue
        yield size
        served, limited = self.m.wan()
        wan = CounterMetricFamily("smarthub_hub_wan_requests", "WAN requests, by outcome", labels=["outcome"])
        wan.add_metric(["served"], served)
        wan.add_metric(["rate_limited"], limited)
        yield wan
        last = self.m.last_pull()
        if last is not None:
            g = GaugeMetricFamily(
                "smarthub_hub_last_pull_timestamp_seconds", "When a GDSC collector last made a request"
            )
            g.add_metric([], last)
            yield g


__all__ = ["HubMetrics"]
