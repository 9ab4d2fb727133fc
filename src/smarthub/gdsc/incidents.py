"""What the GDSC does with a hub's diagnosis: correlate it into an incident, then repair or dispatch.

Pure (no I/O, no clock): the central error log (:mod:`smarthub.gdsc.error_log`) stores and
calls it. Three ideas from the fault path in DESIGN.md:

* **Parse strictly.** A hub's event detail (:func:`smarthub.wan.log_events.event_detail`) is
  input from the field: :func:`parse_hub_event` turns it into a typed :class:`HubEvent` or
  raises :class:`BadHubEvent` naming the field, so one malformed hub cannot poison the log.
* **Correlate.** An area problem (a power cut, a WAN link down) shows on many hubs at once;
  it is one incident keyed by the WAN link, not one per hub. Everything else is one incident
  per (hub, device, diagnosis).
* **Decide.** :data:`POLICIES` says, per diagnosis, whether the GDSC can try a remote repair
  (a management command through the pull channel) before sending anyone, who is responsible
  (the supplier for metering equipment, the network operator for supply interruptions, the
  WAN provider for a link outage) and how long to wait before escalating to a work order.
  A hub that already repaired the fault locally needs nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# Diagnosis codes as the hub's LogEvents carry them (smarthub.hub.diagnostics.DiagnosisCode).
# Repeated here as plain numbers because the GDSC must not import hub internals: the code
# table is part of the WAN contract (see wan/log_events.py), not of the hub's implementation.
MISSING_INTERVALS = 1
STALE_METER = 2
HAN_DECODE_ERRORS = 3
HAN_POLL_FAILURES = 4
HAN_WEAK_SIGNAL = 5
DECRYPTION_FAILURES = 6
REGISTER_BACKWARDS = 7
CONSUMPTION_SPIKE = 8
REVERSE_FLOW = 9
TAMPER = 10
METER_ERROR = 11
LOW_BATTERY = 12
POWER_FAILURE = 13
CLOCK_DRIFT = 14
# Not a hub diagnosis: the GDSC's own finding that a hub did not answer its pulls.
HUB_UNREACHABLE = 1000

SEVERITIES = ("info", "warning", "major", "critical")


class BadHubEvent(ValueError):
    """A hub sent an event detail the GDSC cannot use; the message names the field."""


class Action(enum.StrEnum):
    MONITOR = "monitor"  # recorded; nobody needs to act (yet)
    REMOTE_REPAIR = "remote_repair"  # a command to the hub first, a work order if it does not help
    WORK_ORDER = "work_order"  # someone must go or act now


class Party(enum.StrEnum):
    SUPPLIER = "supplier"  # owns the meters and the hub at the premises
    NETWORK_OPERATOR = "network_operator"  # supply interruptions
    WAN_PROVIDER = "wan_provider"  # the hub's WAN link


@dataclass(frozen=True, slots=True)
class Policy:
    action: Action
    party: Party
    command: str | None = None  # the remote repair, a gdsc.commands.COMMAND_TYPES entry
    escalate_after: timedelta = timedelta(hours=24)  # open this long after the repair -> work order
    area: bool = False  # correlated across hubs on one WAN link


POLICIES: dict[int, Policy] = {
    # HAN trouble the hub could not fix locally: a radio rescan / link test from the centre
    # often finds the meter on another channel or confirms the link; escalate if not.
    MISSING_INTERVALS: Policy(Action.MONITOR, Party.SUPPLIER, escalate_after=timedelta(days=3)),
    STALE_METER: Policy(Action.REMOTE_REPAIR, Party.SUPPLIER, "diagnostic.han_scan"),
    HAN_POLL_FAILURES: Policy(Action.REMOTE_REPAIR, Party.SUPPLIER, "diagnostic.han_scan"),
    HAN_WEAK_SIGNAL: Policy(Action.REMOTE_REPAIR, Party.SUPPLIER, "diagnostic.link_test"),
    HAN_DECODE_ERRORS: Policy(Action.REMOTE_REPAIR, Party.SUPPLIER, "diagnostic.link_test"),
    # The meter key is the supplier's: the GDSC cannot invent one, so a person acts.
    DECRYPTION_FAILURES: Policy(Action.WORK_ORDER, Party.SUPPLIER),
    REGISTER_BACKWARDS: Policy(Action.WORK_ORDER, Party.SUPPLIER),
    CONSUMPTION_SPIKE: Policy(Action.MONITOR, Party.SUPPLIER, escalate_after=timedelta(days=2)),
    REVERSE_FLOW: Policy(Action.WORK_ORDER, Party.SUPPLIER),
    TAMPER: Policy(Action.WORK_ORDER, Party.SUPPLIER),
    METER_ERROR: Policy(Action.WORK_ORDER, Party.SUPPLIER),
    LOW_BATTERY: Policy(Action.WORK_ORDER, Party.SUPPLIER),
    CLOCK_DRIFT: Policy(Action.WORK_ORDER, Party.SUPPLIER),
    POWER_FAILURE: Policy(Action.MONITOR, Party.NETWORK_OPERATOR, area=True),
    # One hub silent: ask its supplier after a day. Many on one link: one incident for the
    # WAN provider (escalated at once once it is an area outage, see decide()).
    HUB_UNREACHABLE: Policy(Action.MONITOR, Party.SUPPLIER, area=True),
}


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


def policy_for(code: int) -> Policy:
    """Unknown (newer) diagnosis codes still reach a person: a work order for the supplier."""
    return POLICIES.get(code, Policy(Action.WORK_ORDER, Party.SUPPLIER))


def incident_key(hub_id: str, wan_link: str | None, code: int, device: str) -> tuple[str, str]:
    """(scope, key) of the incident an observation belongs to.

    Area diagnoses of hubs on a known WAN link share one incident per (link, code); a hub
    with no known link is its own area.
    """
    if policy_for(code).area and wan_link:
        return "wan_link", f"{wan_link}|{code}"
    return "device", f"{hub_id}|{device}|{code}"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    party: Party
    command: str | None = None
    reason: str = ""


def decide(
    code: int,
    *,
    hubs_affected: int,
    area_threshold: int,
    opened: datetime,
    now: datetime,
    repaired_locally: bool,
    remote_repair_tried: bool,
) -> Decision:
    """What to do about an open incident now.

    ``hubs_affected`` counts distinct hubs in the incident; at ``area_threshold`` or more, an
    area incident is an outage of the link and goes to the responsible party at once.
    """
    p = policy_for(code)
    if repaired_locally:
        return Decision(Action.MONITOR, p.party, reason="repaired locally by the hub")
    if p.area and hubs_affected >= area_threshold:
        party = Party.WAN_PROVIDER if code == HUB_UNREACHABLE else p.party
        return Decision(Action.WORK_ORDER, party, reason=f"area incident: {hubs_affected} hubs on one link")
    if p.action is Action.REMOTE_REPAIR and not remote_repair_tried:
        return Decision(Action.REMOTE_REPAIR, p.party, p.command, f"remote {p.command} before a visit")
    if p.action is Action.WORK_ORDER:
        return Decision(Action.WORK_ORDER, p.party, reason="needs a person")
    if now - opened >= p.escalate_after:
        why = "remote repair did not clear it" if remote_repair_tried else "still open"
        return Decision(Action.WORK_ORDER, p.party, reason=f"{why} after {p.escalate_after}")
    return Decision(Action.MONITOR, p.party, reason="waiting")
