"""What the GDSC does with a hub's diagnosis: correlate it into an incident, then repair or dispatch.

Pure (no I/O, no clock): the central error log (:mod:`smarthub.gdsc.incidents.error_log`) stores and
calls it. Three ideas from the fault path in DESIGN.md:

* **Parse strictly.** A hub's event detail is input from the field: the WAN contract's
  :func:`~smarthub.wan.contract.events.parse_hub_event` turns it into a typed ``HubEvent`` or
  raises ``BadHubEvent`` naming the field, so one malformed hub cannot poison the log.
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
from dataclasses import dataclass
from datetime import datetime, timedelta

from smarthub.wan.contract.diagnosis import DiagnosisCode as D

# Not a hub diagnosis: the GDSC's own finding that a hub did not answer its pulls.
HUB_UNREACHABLE = 1000
# ... and that it sent a last gasp first: the power outage explains it (gdsc.outages), not a dead
# hub (its supplier) nor its WAN link (the WAN provider). The network operator's, as an outage.
HUB_POWER_OUT = 1001
SILENT = (HUB_UNREACHABLE, HUB_POWER_OUT)


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
    D.MISSING_INTERVALS: Policy(Action.MONITOR, Party.SUPPLIER, escalate_after=timedelta(days=3)),
    D.STALE_METER: Policy(Action.REMOTE_REPAIR, Party.SUPPLIER, "diagnostic.han_scan"),
    D.HAN_POLL_FAILURES: Policy(Action.REMOTE_REPAIR, Party.SUPPLIER, "diagnostic.han_scan"),
    D.HAN_WEAK_SIGNAL: Policy(Action.REMOTE_REPAIR, Party.SUPPLIER, "diagnostic.link_test"),
    D.HAN_DECODE_ERRORS: Policy(Action.REMOTE_REPAIR, Party.SUPPLIER, "diagnostic.link_test"),
    # The meter key is the supplier's: the GDSC cannot invent one, so a person acts.
    D.DECRYPTION_FAILURES: Policy(Action.WORK_ORDER, Party.SUPPLIER),
    D.REGISTER_BACKWARDS: Policy(Action.WORK_ORDER, Party.SUPPLIER),
    D.CONSUMPTION_SPIKE: Policy(Action.MONITOR, Party.SUPPLIER, escalate_after=timedelta(days=2)),
    D.REVERSE_FLOW: Policy(Action.WORK_ORDER, Party.SUPPLIER),
    D.TAMPER: Policy(Action.WORK_ORDER, Party.SUPPLIER),
    D.METER_ERROR: Policy(Action.WORK_ORDER, Party.SUPPLIER),
    D.LOW_BATTERY: Policy(Action.WORK_ORDER, Party.SUPPLIER),
    D.CLOCK_DRIFT: Policy(Action.WORK_ORDER, Party.SUPPLIER),
    # The hub cannot write its history (it holds readings in memory meanwhile): nothing the
    # GDSC can send frees its storage, so the supplier who owns the hub sends someone at once.
    D.STORAGE_FULL: Policy(Action.WORK_ORDER, Party.SUPPLIER),
    D.POWER_FAILURE: Policy(Action.MONITOR, Party.NETWORK_OPERATOR, area=True),
    # One hub silent: ask its supplier after a day. Many on one link: one incident for the
    # WAN provider (escalated at once once it is an area outage, see decide()).
    HUB_UNREACHABLE: Policy(Action.MONITOR, Party.SUPPLIER, area=True),
    # Silent after a last gasp: nobody is sent to the hub or the cell; the outage (opened by the
    # last gasps) is the network operator's. A hub still silent a week on is looked at.
    HUB_POWER_OUT: Policy(Action.MONITOR, Party.NETWORK_OPERATOR, escalate_after=timedelta(days=7)),
}


UNKNOWN = Policy(Action.WORK_ORDER, Party.SUPPLIER)


def policy_for(code: int) -> Policy:
    """Unknown (newer) diagnosis codes still reach a person: a work order for the supplier."""
    return POLICIES.get(code, UNKNOWN)


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
    if p is UNKNOWN:
        return Decision(Action.WORK_ORDER, p.party, reason=f"diagnosis code {code} unknown to the GDSC")
    if p.action is Action.WORK_ORDER:
        return Decision(Action.WORK_ORDER, p.party, reason="needs a person")
    if now - opened >= p.escalate_after:
        why = "remote repair did not clear it" if remote_repair_tried else "still open"
        return Decision(Action.WORK_ORDER, p.party, reason=f"{why} after {p.escalate_after}")
    return Decision(Action.MONITOR, p.party, reason="waiting")
