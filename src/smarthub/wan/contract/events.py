"""The hub's diagnosed events on the WAN: IEEE 2030.5-2018 LogEvents (LogEvent function set,
§10.11) and the JSON event detail beside them, written by the hub and read by the GDSC.

A 2030.5 LogEvent is small by design: a time, a function set, an 8-bit code scoped by a
profile and a Private Enterprise Number (PEN), a 16-bit id and at most 32 characters of
details. Our events are vendor-defined (``profileID`` 1), coded by
:class:`~smarthub.wan.contract.diagnosis.DiagnosisCode`, and filed under the function set the
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

Both directions of the event detail live here: :func:`event_detail` (the hub's writer, over
anything shaped like the hub's ``DiagnosedEvent``, :class:`DiagnosedEventLike`) and
:func:`parse_hub_event` (the GDSC's strict reader), so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any, Protocol

from smarthub.wan.contract import sep2_xml
from smarthub.wan.contract.diagnosis import DiagnosisCode, RepairAction, RepairOutcome, Severity, label
from smarthub.wan.contract.sep2_xml import Element


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


class RepairAttemptLike(Protocol):
    @property
    def action(self) -> RepairAction: ...
    @property
    def outcome(self) -> RepairOutcome: ...
    @property
    def at(self) -> datetime: ...
    @property
    def detail(self) -> str: ...


class DiagnosedEventLike(Protocol):
    """What the writer reads of a diagnosed event (the hub's ``DiagnosedEvent`` has it)."""

    @property
    def id(self) -> int: ...
    @property
    def code(self) -> DiagnosisCode: ...
    @property
    def device(self) -> str: ...
    @property
    def device_kind(self) -> str: ...
    @property
    def severity(self) -> Severity: ...
    @property
    def evidence(self) -> str: ...
    @property
    def numbers(self) -> dict[str, Any]: ...
    @property
    def recommendation(self) -> str: ...
    @property
    def first_seen(self) -> datetime: ...
    @property
    def last_seen(self) -> datetime: ...
    @property
    def count(self) -> int: ...
    @property
    def attempts(self) -> Sequence[RepairAttemptLike]: ...
    @property
    def closed(self) -> datetime | None: ...
    @property
    def resolution(self) -> str | None: ...
    @property
    def is_open(self) -> bool: ...
    @property
    def repair(self) -> RepairAction: ...
    @property
    def outcome(self) -> RepairOutcome | None: ...


def details(event: DiagnosedEventLike) -> str:
    """A short human label within String32: "<label> <device>", cut to 32 octets of UTF-8."""
    return sep2_xml.string_n(f"{label(event.code)} {event.device}", DETAILS_MAX)


def log_event(
    event: DiagnosedEventLike,
    href: str | None = None,
    parent: Element | None = None,
    *,
    pen: int = LOG_EVENT_PEN,
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
    events: Sequence[DiagnosedEventLike],
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


def event_detail(event: DiagnosedEventLike) -> dict[str, Any]:
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


# -- the GDSC's reader ----------------------------------------------------------------------

SEVERITIES = tuple(s.value for s in Severity)


class BadHubEvent(ValueError):
    """A hub sent an event detail the GDSC cannot use; the message names the field."""


@dataclass(frozen=True, slots=True)
class HubEvent:
    """One diagnosed event as a hub reported it (its LogEvent detail), typed."""

    hub_id: str
    event_id: int
    code: int
    kind: str
    device: str
    device_kind: str
    severity: str
    evidence: str
    recommendation: str
    first_seen: datetime
    last_seen: datetime
    count: int
    repair: str
    outcome: str | None
    is_open: bool
    closed: datetime | None
    resolution: str | None

    @property
    def repaired_locally(self) -> bool:
        return self.outcome == "succeeded"


def _field(
    detail: Mapping[str, Any], name: str, kind: type | tuple[type, ...], optional: bool = False
) -> Any:
    if name not in detail:
        raise BadHubEvent(f"event detail lacks {name!r}")
    value = detail[name]
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise BadHubEvent(f"event detail field {name!r} has type {type(value).__name__}")
    return value


def _time(detail: Mapping[str, Any], name: str, optional: bool = False) -> datetime | None:
    text = _field(detail, name, str, optional)
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise BadHubEvent(f"event detail field {name!r} is not an ISO 8601 time: {text[:40]!r}") from None
    if t.tzinfo is None:
        raise BadHubEvent(f"event detail field {name!r} has no time zone")
    return t


def parse_hub_event(hub_id: str, detail: object) -> HubEvent:
    """A hub's event detail (JSON object) as a :class:`HubEvent`; :class:`BadHubEvent` if unusable."""
    if not isinstance(detail, Mapping):
        raise BadHubEvent(f"event detail is a {type(detail).__name__}, not an object")
    event_id = _field(detail, "id", int)
    code = _field(detail, "code", int)
    if event_id < 0 or not 0 < code < 256:
        raise BadHubEvent(f"event id {event_id} / code {code} out of range")
    severity = _field(detail, "severity", str)
    if severity not in SEVERITIES:
        raise BadHubEvent(f"unknown severity {severity[:20]!r}")
    first_seen = _time(detail, "first_seen")
    last_seen = _time(detail, "last_seen")
    assert first_seen is not None and last_seen is not None
    if last_seen < first_seen:
        raise BadHubEvent("event last_seen is before first_seen")
    count = _field(detail, "count", int)
    if count < 1:
        raise BadHubEvent(f"event count {count} < 1")
    return HubEvent(
        hub_id=hub_id,
        event_id=event_id,
        code=code,
        kind=_field(detail, "kind", str)[:64],
        device=_field(detail, "device", str)[:64],
        device_kind=_field(detail, "device_kind", str)[:32],
        severity=severity,
        evidence=_field(detail, "evidence", str)[:500],
        recommendation=_field(detail, "recommendation", str)[:500],
        first_seen=first_seen,
        last_seen=last_seen,
        count=count,
        repair=_field(detail, "repair", str)[:32],
        outcome=_field(detail, "outcome", str, optional=True),
        is_open=_field(detail, "open", bool),
        closed=_time(detail, "closed", optional=True),
        resolution=_field(detail, "resolution", str, optional=True),
    )


__all__ = [
    "FUNCTION_SETS",
    "LOG_EVENT_PEN",
    "LOG_EVENT_POLL_RATE",
    "SEVERITIES",
    "VENDOR_DEFINED_PROFILE",
    "BadHubEvent",
    "DiagnosedEventLike",
    "FunctionSetIdentifier",
    "HubEvent",
    "details",
    "event_detail",
    "log_event",
    "log_event_list",
    "parse_hub_event",
]
