"""The hub's diagnosed events as IEEE 2030.5-2018 LogEvents (LogEvent function set, §10.11).

A 2030.5 LogEvent is small by design: a time, a function set, an 8-bit code scoped by a
profile and a Private Enterprise Number (PEN), a 16-bit id and at most 32 characters of
details. Our events are vendor-defined (``profileID`` 1), coded by
:class:`~smarthub.hub.diagnostics.DiagnosisCode`, and filed under the function set the
problem belongs to (Metering for meter problems, Network Status for the HAN link, Time for
clock drift, Security for tamper and decryption). ``details`` carries a short label and the
device; ``extendedData`` (UInt32) carries the event's id in the hub's diagnostics log, which
is how a client asks for :func:`event_detail` (the full evidence, repairs and recommendation
the GDSC needs for a work order) next to the LogEvent.

``logEventPEN`` (2030.5: the Private Enterprise Number of whoever defined the profileID,
functionSet and logEventCode): the project has no IANA PEN of its own, so by default it uses
:data:`LOG_EVENT_PEN`, 32473, the number IANA reserves for documentation and examples
(RFC 5612) — a real, registered PEN that can never clash with a vendor's, which says plainly
that these codes are this project's and nobody else's. An operator with its own PEN passes it
to the hub's WAN server (``HubWanServer(log_event_pen=…)``). Within that PEN the combination
(profileID, functionSet, logEventCode) has the meaning given by :data:`FUNCTION_SETS` and
``DiagnosisCode``.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Any

from smarthub.hub.diagnostics import CODE_INFO, DiagnosedEvent, DiagnosisCode
from smarthub.wan import sep2_xml
from smarthub.wan.sep2_xml import Element


class FunctionSetIdentifier(IntEnum):
    """LogEvent.functionSet: the function sets our events are filed under (2030.5-2018 §10.11)."""

    METERING = 6
    TIME = 12
    NETWORK_STATUS = 16
    SECURITY = 19


VENDOR_DEFINED_PROFILE = 1  # LogEvent.profileID 1: vendor-defined, scoped by logEventPEN

LOG_EVENT_PEN = 32473  # IANA's PEN for documentation (RFC 5612); see the module docstring
LOG_EVENT_POLL_RATE = 900  # seconds: the 2030.5 default for LogEventList

FUNCTION_SETS: dict[DiagnosisCode, FunctionSetIdentifier] = {
    DiagnosisCode.MISSING_INTERVALS: FunctionSetIdentifier.METERING,
    DiagnosisCode.STALE_METER: FunctionSetIdentifier.METERING,
    DiagnosisCode.HAN_DECODE_ERRORS: FunctionSetIdentifier.NETWORK_STATUS,
    DiagnosisCode.HAN_POLL_FAILURES: FunctionSetIdentifier.NETWORK_STATUS,
    DiagnosisCode.HAN_WEAK_SIGNAL: FunctionSetIdentifier.NETWORK_STATUS,
    DiagnosisCode.DECRYPTION_FAILURES: FunctionSetIdentifier.SECURITY,
    DiagnosisCode.REGISTER_BACKWARDS: FunctionSetIdentifier.METERING,
    DiagnosisCode.CONSUMPTION_SPIKE: FunctionSetIdentifier.METERING,
    DiagnosisCode.REVERSE_FLOW: FunctionSetIdentifier.METERING,
    DiagnosisCode.TAMPER: FunctionSetIdentifier.SECURITY,
    DiagnosisCode.METER_ERROR: FunctionSetIdentifier.METERING,
    DiagnosisCode.LOW_BATTERY: FunctionSetIdentifier.METERING,
    DiagnosisCode.POWER_FAILURE: FunctionSetIdentifier.METERING,
    DiagnosisCode.CLOCK_DRIFT: FunctionSetIdentifier.TIME,
    DiagnosisCode.STORAGE_FULL: FunctionSetIdentifier.METERING,  # the metering history cannot be written
}

DETAILS_MAX = 32  # String32


def details(event: DiagnosedEvent) -> str:
    """A short human label within String32: "<label> <device>", cut to 32 octets of UTF-8."""
    return sep2_xml.string_n(f"{CODE_INFO[event.code].label} {event.device}", DETAILS_MAX)


def log_event(
    event: DiagnosedEvent, href: str | None = None, parent: Element | None = None, *, pen: int = LOG_EVENT_PEN
) -> Element:
    """One event as a 2030.5 LogEvent; createdDateTime is when the condition was first seen."""
    return sep2_xml.log_event(
        href,
        created=int(event.first_seen.timestamp()),
        details=details(event),
        extended_data=event.id & 0xFFFFFFFF,
        function_set=int(FUNCTION_SETS[event.code]),
        code=int(event.code),
        event_id=event.id % 65536,
        pen=pen,
        profile=VENDOR_DEFINED_PROFILE,
        parent=parent,
    )


def log_event_list(
    events: Sequence[DiagnosedEvent],
    href: str,
    all_: int,
    *,
    poll_rate: int = LOG_EVENT_POLL_RATE,
    pen: int = LOG_EVENT_PEN,
) -> Element:
    """A page of events; each LogEvent's href is ``{href}/{event id}``."""
    doc = sep2_xml.log_event_list(href, all_, poll_rate)
    for e in events:
        log_event(e, f"{href}/{e.id}", parent=doc, pen=pen)
    return sep2_xml.done(doc)


def event_detail(event: DiagnosedEvent) -> dict[str, Any]:
    """Everything known about an event, JSON-ready, for the GDSC's work orders."""
    return {
        "id": event.id,
        "code": int(event.code),
        "kind": event.code.name.lower(),
        "function_set": int(FUNCTION_SETS[event.code]),
        "device": event.device,
        "device_kind": event.device_kind,
        "severity": event.severity.value,
        "evidence": event.evidence,
        "numbers": event.numbers,
        "recommendation": event.recommendation,
        "first_seen": event.first_seen.isoformat(),
        "last_seen": event.last_seen.isoformat(),
        "count": event.count,
        "repair": event.repair.value,
        "outcome": None if event.outcome is None else event.outcome.value,
        "attempts": [
            {"action": a.action.value, "outcome": a.outcome.value, "at": a.at.isoformat(), "detail": a.detail}
            for a in event.attempts
        ],
        "open": event.is_open,
        "closed": None if event.closed is None else event.closed.isoformat(),
        "resolution": event.resolution,
    }


__all__ = [
    "FUNCTION_SETS",
    "LOG_EVENT_PEN",
    "LOG_EVENT_POLL_RATE",
    "VENDOR_DEFINED_PROFILE",
    "FunctionSetIdentifier",
    "details",
    "event_detail",
    "log_event",
    "log_event_list",
]
