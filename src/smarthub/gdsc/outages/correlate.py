"""Last gasps and restorations correlated over the topology into one outage per fault location.

Pure: no I/O, time passed in. The GDSC's alert receiver feeds it accepted alerts
(:mod:`.receiver`); :mod:`.store` keeps what it decides.

**Where is the fault?** A last gasp says one premises lost mains. The fault location is the
smallest part of the network that explains the premises out *together*:

* one premises alone on its feeder: a **premises** fault (its service cable or cut-out fuse) —
  the "single-premises fault" of the existing incident logic, for the network operator still;
* premises of one LV feeder, at least ``max(min_premises, feeder_share × its customers)`` of them
  out at once: a **feeder** outage (a blown LV fuse at the substation);
* at least two feeders of one secondary substation out within ``window``: a **secondary
  substation** outage; two secondaries of one primary: a **primary** outage.

An outage grows upwards as alerts arrive (premises → feeder → substation): the smaller outages it
takes in are kept in the history as ``merged_into`` the larger, so the live list has one outage
per fault. Customers affected are estimated from the topology: every premises under the fault's
node (a last gasp may be lost, or a home may have no hub), one for a premises fault.

**What is not an outage.** Only last gasps open outages. A hub that stops answering its pulls
without one is a dead hub (one hub) or a WAN outage (the hubs of one cell): the error log's
incidents (:mod:`smarthub.gdsc.incidents.policy`, :func:`classify_silence` below) — never an
outage, so a cellular cell going down cannot raise a false outage.

**Restoration.** A restoration names its premises' outage and carries the duration from the
meter's own records; the outage closes when every premises heard from is restored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from smarthub.gdsc.outages.topology import Topology

LEVELS = ("premises", "feeder", "secondary", "primary")


@dataclass
class PremisesOut:
    premises_id: str
    hub_id: str
    lost_at: datetime  # as the hub reported it
    heard: datetime  # when the GDSC had the last gasp
    restored_at: datetime | None = None  # lost_at + the duration the restoration carried
    duration_s: int | None = None
    restored_heard: datetime | None = None


@dataclass
class Outage:
    outage_id: int
    level: str
    location: str  # premises id or topology node id
    opened: datetime  # GDSC time the outage was opened (at this level)
    customers: int  # estimated customers affected
    premises: dict[str, PremisesOut] = field(default_factory=dict)
    closed: datetime | None = None
    merged_into: int | None = None
    started: datetime | None = None  # earliest lost_at of its premises (hub time)
    # Premises added or restored since the store last saved this outage (it writes only those).
    dirty: set[str] = field(default_factory=set, repr=False, compare=False)

    @property
    def is_open(self) -> bool:
        return self.closed is None and self.merged_into is None

    @property
    def restored(self) -> int:
        return sum(1 for p in self.premises.values() if p.restored_at is not None)

    def duration_s(self) -> int | None:
        """The outage's length by the meters' records (the longest premises' duration)."""
        ds = [p.duration_s for p in self.premises.values() if p.duration_s is not None]
        return max(ds) if ds else None


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # opened / grew / merged / restored / closed / unmatched
    outage: Outage
    at: datetime


@dataclass
class Correlator:
    topology: Topology
    window: timedelta = timedelta(minutes=10)
    feeder_share: float = 0.3
    min_premises: int = 2
    next_id: int = 1
    outages: dict[int, Outage] = field(default_factory=dict)
    unmatched: int = 0

    def __post_init__(self) -> None:
        self._by_premises: dict[str, int] = {}  # premises -> its open outage
        self._by_node: dict[str, int] = {}  # node -> its open outage (feeder level and above)
        for o in self.outages.values():
            self._index(o)
        self.next_id = max([self.next_id, *(i + 1 for i in self.outages)])

    def _index(self, o: Outage) -> None:
        if not o.is_open:
            return
        if o.level != "premises":
            self._by_node[o.location] = o.outage_id
        for p in o.premises:
            self._by_premises[p] = o.outage_id

    def live(self) -> list[Outage]:
        return [o for o in self.outages.values() if o.is_open]

    def _new(self, level: str, location: str, now: datetime, customers: int) -> Outage:
        o = Outage(self.next_id, level, location, now, customers)
        self.next_id += 1
        self.outages[o.outage_id] = o
        return o

    # -- last gasp ---------------------------------------------------------------------------
    def last_gasp(self, hub_id: str, lost_at: datetime, now: datetime) -> list[Change]:
        premises = self.topology.hub_premises.get(hub_id)
        if premises is None:
            return []
        if premises in self._by_premises:
            return []  # already out (a repeated alert)
        entry = PremisesOut(premises, hub_id, lost_at, now)
        path = self.topology.path(premises)
        for node in path:
            oid = self._by_node.get(node)
            if oid is not None:  # an outage above already explains it
                o = self.outages[oid]
                self._add(o, entry)
                return [Change("grew", o, now)]
        o = self._new("premises", premises, now, 1)
        self._add(o, entry)
        changes = [Change("opened", o, now)]
        if path:
            changes += self._escalate(path, now)
        return changes

    def _add(self, o: Outage, entry: PremisesOut) -> None:
        o.premises[entry.premises_id] = entry
        o.dirty.add(entry.premises_id)
        o.started = entry.lost_at if o.started is None else min(o.started, entry.lost_at)
        self._by_premises[entry.premises_id] = o.outage_id

    def _recent(self, o: Outage, now: datetime) -> bool:
        return now - o.opened <= self.window

    def _escalate(self, path: list[str], now: datetime) -> list[Change]:
        changes: list[Change] = []
        feeder = path[0]
        under = [
            self.outages[oid]
            for p, oid in self._by_premises.items()
            if self.outages[oid].level == "premises" and self.topology.path(p)[:1] == [feeder]
        ]
        # Homes already out for a while count too (a home whose own fuse blew is out when the
        # feeder trips); the alert that tips it is the one just in.
        need = max(self.min_premises, math.ceil(self.feeder_share * self.topology.customers.get(feeder, 1)))
        if len(under) < need:
            return changes
        changes += self._merge("feeder", feeder, under, now)
        for level, i in (("secondary", 1), ("primary", 2)):
            if len(path) <= i:
                break
            node = path[i]
            below = [
                self.outages[oid]
                for child in self.topology.children.get(node, [])
                if (oid := self._by_node.get(child)) is not None and self._recent(self.outages[oid], now)
            ]
            if len(below) < 2:
                break
            changes += self._merge(level, node, below, now)
        return changes

    def _merge(self, level: str, node: str, parts: list[Outage], now: datetime) -> list[Change]:
        o = self._new(level, node, now, self.topology.customers.get(node, 0))
        out = [Change("opened", o, now)]
        for part in parts:
            part.merged_into = o.outage_id
            part.closed = now
            if part.level != "premises":
                self._by_node.pop(part.location, None)
            for entry in part.premises.values():
                self._add(o, entry)
            out.append(Change("merged", part, now))
        self._by_node[node] = o.outage_id
        return out

    # -- restoration -------------------------------------------------------------------------
    def restoration(self, hub_id: str, lost_at: datetime, duration_s: int, now: datetime) -> list[Change]:
        premises = self.topology.hub_premises.get(hub_id)
        oid = self._by_premises.get(premises) if premises is not None else None
        if oid is None:
            self.unmatched += 1
            return []
        o = self.outages[oid]
        entry = o.premises[premises]  # type: ignore[index]  # oid found by this premises
        entry.duration_s = duration_s
        entry.restored_at = lost_at + timedelta(seconds=duration_s)
        entry.restored_heard = now
        o.dirty.add(entry.premises_id)
        del self._by_premises[entry.premises_id]
        changes = [Change("restored", o, now)]
        if all(p.restored_at is not None for p in o.premises.values()):
            o.closed = now
            self._by_node.pop(o.location, None)
            changes.append(Change("closed", o, now))
        return changes


def classify_silence(
    *, last_gasp: bool, silent_on_link: int, hubs_on_link: int, neighbours_on_feeder_answering: bool
) -> str:
    """Why a hub stopped answering its pulls, for the error log's incident:

    * ``power_outage`` — it sent a last gasp: the outage explains it, nobody visits the hub;
    * ``wan_outage`` — other hubs behind the same WAN link are silent too (no last gasps): the
      WAN provider's, the meters and mains are fine;
    * ``dead_hub`` — alone, no last gasp, its feeder's other hubs still answer: the hub itself
      (the supplier's work order).
    """
    if last_gasp:
        return "power_outage"
    if hubs_on_link > 1 and silent_on_link > 1:
        return "wan_outage"
    return "dead_hub" if neighbours_on_feeder_answering else "unknown"
