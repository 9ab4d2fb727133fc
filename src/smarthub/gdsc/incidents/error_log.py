"""The central error log: hub diagnoses and unreachable hubs, as incidents, repairs and work orders.

The fault path of DESIGN.md, centre side. Hubs diagnose faults locally and publish them as
2030.5 LogEvents with a JSON detail; the collector pulls them (:mod:`smarthub.gdsc.incidents.event_pull`)
and hands them here, and the scheduler reports hubs that did not answer. Each observation is
stored, attached to an incident (:func:`smarthub.gdsc.incidents.policy.incident_key`: one incident for
an outage seen by many hubs on one WAN link), and the incident is reviewed
(:func:`smarthub.gdsc.incidents.policy.decide`): a remote repair command is queued for the scheduler
to deliver, or a work order is opened for the responsible party carrying the hub's own
diagnosis. An incident closes when every hub in it reports the condition cleared (or answers
again), and its work order closes with it.

Tables live on the store's metadata (one database, one migration history); on Citus they stay
on the coordinator (:mod:`smarthub.gdsc.db.placement`: their keys do not all include the hub).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    func,
    insert,
    select,
    update,
)

from smarthub.gdsc.incidents.policy import (
    HUB_POWER_OUT,
    HUB_UNREACHABLE,
    SILENT,
    Action,
    Party,
    decide,
    incident_key,
)
from smarthub.gdsc.incidents.tables import hub_events, incident_hubs, incidents, repair_commands, work_orders
from smarthub.gdsc.store import Store
from smarthub.wan.contract.bodies import CommandBody, HanScan, LinkTest, parse_body
from smarthub.wan.contract.events import BadHubEvent, HubEvent, parse_hub_event


@dataclass(frozen=True, slots=True)
class RecordResult:
    accepted: int
    refused: list[str] = field(default_factory=list)  # why each refused detail was unusable


@dataclass(frozen=True, slots=True)
class RepairCommand:
    repair_id: int
    incident_id: int
    hub_id: str
    command: str
    body: dict[str, Any]


Resolver = Callable[[Party, str | None, str | None], str]


def default_resolver(party: Party, hub_id: str | None, wan_link: str | None) -> str:
    """Until the registry knows suppliers per premises, name the role and the asset."""
    return f"{party.value}:{hub_id or wan_link or 'unknown'}"


class ErrorLog:
    """The GDSC's error log over the store's database (writes serialised per process)."""

    def __init__(
        self,
        store: Store,
        *,
        wan_link_of: Callable[[str], str | None] = lambda hub_id: None,
        responsible: Resolver = default_resolver,
        area_threshold: int = 3,
        power_out: Callable[[str], bool] = lambda hub_id: False,
    ) -> None:
        self.store = store
        self.engine = store.engine
        self.wan_link_of = wan_link_of
        # Whether a hub sent a last gasp and no restoration yet (gdsc.outages.service): a silent
        # hub is then a power outage, not a dead hub or a WAN fault.
        self.power_out = power_out
        self.responsible = responsible
        self.area_threshold = area_threshold
        self._lock = threading.Lock()
        # Hubs with an open unreachable record, so that every successful pull need not ask
        # the database. Loaded once; another GDSC process's records are seen at its next load
        # (review() reloads), so a hub it marked is cleared here at most one review late.
        self._unreachable: set[str] | None = None

    # -- observations -------------------------------------------------------------
    def known_events(self, hub_id: str) -> int:
        """How many of the hub's events the GDSC holds: where the next LogEvent pull starts."""
        with self.engine.connect() as conn:
            n = conn.execute(select(func.count()).where(hub_events.c.hub_id == hub_id)).scalar_one()
        return int(n)

    def open_event_ids(self, hub_id: str) -> list[int]:
        """Events still open at the hub as far as we know: their details are re-read each pull."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(hub_events.c.event_id).where(
                    and_(hub_events.c.hub_id == hub_id, hub_events.c.open == 1)
                )
            )
            return [r.event_id for r in rows]

    def record_events(self, hub_id: str, details: Iterable[object], now: datetime) -> RecordResult:
        """Store a hub's event details (new or updated), correlate and review their incidents."""
        refused: list[str] = []
        parsed: list[HubEvent] = []
        for d in details:
            try:
                parsed.append(parse_hub_event(hub_id, d))
            except BadHubEvent as err:
                refused.append(str(err))
        if not parsed:
            return RecordResult(0, refused)
        link = self.wan_link_of(hub_id)
        with self._lock, self.engine.begin() as conn:
            touched: set[int] = set()
            for e in parsed:
                touched.add(self._upsert_event(conn, e, link, now))
            for incident_id in touched:
                self._review(conn, incident_id, now)
        return RecordResult(len(parsed), refused)

    def _unreachable_hubs(self) -> set[str]:
        hubs = self._unreachable  # one read: review() may reset it from another thread
        if hubs is None:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(incident_hubs.c.hub_id)
                    .join(incidents, incidents.c.incident_id == incident_hubs.c.incident_id)
                    .where(
                        and_(
                            incident_hubs.c.open == 1,
                            incidents.c.code.in_(SILENT),
                            incidents.c.closed.is_(None),
                        )
                    )
                )
                hubs = self._unreachable = {r.hub_id for r in rows}
        return hubs

    def record_unreachable(self, hub_id: str, now: datetime, error: str) -> int:
        """The scheduler gave up on a hub for this window; returns the incident id.

        Classified: a hub that sent a last gasp (and no restoration) is out of power
        (``HUB_POWER_OUT``, one incident per hub, nobody sent); otherwise one silent hub is a
        dead hub and several on one WAN link a WAN outage (``HUB_UNREACHABLE``, policy)."""
        self._unreachable_hubs().add(hub_id)
        link = self.wan_link_of(hub_id)
        code = HUB_POWER_OUT if self.power_out(hub_id) else HUB_UNREACHABLE
        if code == HUB_POWER_OUT:
            error = f"power outage (last gasp, no restoration yet): {error}"
        scope, key = incident_key(hub_id, link, code, "hub")
        with self._lock, self.engine.begin() as conn:
            incident_id = self._incident(conn, scope, key, code, link, now)
            self._member(conn, incident_id, hub_id, True, now, error)
            self._review(conn, incident_id, now)
        return incident_id

    def record_reachable(self, hub_id: str, now: datetime) -> None:
        """A successful pull: the hub's unreachable memberships end (and their incidents, if last)."""
        hubs = self._unreachable_hubs()
        if hub_id not in hubs:
            return
        hubs.discard(hub_id)
        with self._lock, self.engine.begin() as conn:
            rows = conn.execute(
                select(incident_hubs.c.incident_id)
                .join(incidents, incidents.c.incident_id == incident_hubs.c.incident_id)
                .where(
                    and_(
                        incident_hubs.c.hub_id == hub_id,
                        incident_hubs.c.open == 1,
                        incidents.c.code.in_(SILENT),
                        incidents.c.closed.is_(None),
                    )
                )
            ).all()
            for (incident_id,) in rows:
                conn.execute(
                    update(incident_hubs)
                    .where(and_(incident_hubs.c.incident_id == incident_id, incident_hubs.c.hub_id == hub_id))
                    .values(open=0)
                )
                self._review(conn, incident_id, now)

    def review(self, now: datetime) -> None:
        """Time-based escalation of every open incident (call once per scheduling tick or so)."""
        self._unreachable = None
        with self._lock, self.engine.begin() as conn:
            ids = conn.execute(select(incidents.c.incident_id).where(incidents.c.closed.is_(None))).all()
            for (incident_id,) in ids:
                self._review(conn, incident_id, now)

    # -- remote repairs -----------------------------------------------------------
    def queued_repairs(self, limit: int = 100) -> list[RepairCommand]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(repair_commands)
                .where(repair_commands.c.status == "queued")
                .order_by(repair_commands.c.repair_id)
                .limit(limit)
            )
            return [
                RepairCommand(r.repair_id, r.incident_id, r.hub_id, r.command, json.loads(r.body))
                for r in rows
            ]

    def repair_queued(self, repair_id: int, job_id: int, now: datetime) -> None:
        """The repair command was signed and queued in the pull plan as urgent job ``job_id``."""
        with self._lock, self.engine.begin() as conn:
            conn.execute(
                update(repair_commands)
                .where(repair_commands.c.repair_id == repair_id)
                .values(status="sent", sent=now, verdict=json.dumps({"job": job_id}))
            )

    def repair_sent(self, repair_id: int, verdict: dict[str, Any] | None, now: datetime) -> None:
        """The scheduler delivered (verdict from the hub) or could not deliver (None) a repair."""
        status = "failed" if verdict is None or verdict.get("status") != "applied" else "sent"
        with self._lock, self.engine.begin() as conn:
            conn.execute(
                update(repair_commands)
                .where(repair_commands.c.repair_id == repair_id)
                .values(status=status, sent=now, verdict=json.dumps(verdict))
            )

    # -- views --------------------------------------------------------------------
    def incidents(self, *, open_only: bool = False) -> list[dict[str, Any]]:
        q = select(incidents).order_by(incidents.c.incident_id)
        if open_only:
            q = q.where(incidents.c.closed.is_(None))
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
            # Every incident's hubs in one statement (not one per incident: thousands of open
            # incidents are a bad day, not a reason for thousands of queries).
            members: dict[int, list[Any]] = {}
            hubs_q = select(incident_hubs.c.incident_id, incident_hubs.c.hub_id, incident_hubs.c.open)
            if open_only:
                hubs_q = hubs_q.where(
                    incident_hubs.c.incident_id.in_(
                        select(incidents.c.incident_id).where(incidents.c.closed.is_(None))
                    )
                )
            for h in conn.execute(hubs_q):
                members.setdefault(h.incident_id, []).append(h)
            return [
                {
                    **r._asdict(),
                    "hubs": sorted(h.hub_id for h in members.get(r.incident_id, ())),
                    "hubs_open": sorted(h.hub_id for h in members.get(r.incident_id, ()) if h.open),
                }
                for r in rows
            ]

    def work_orders(self, status: str | None = None) -> list[dict[str, Any]]:
        q = select(work_orders).order_by(work_orders.c.work_order_id)
        if status is not None:
            q = q.where(work_orders.c.status == status)
        with self.engine.connect() as conn:
            return [{**r._asdict(), "diagnosis": json.loads(r.diagnosis)} for r in conn.execute(q)]

    def summary(self) -> dict[str, int]:
        with self.engine.connect() as conn:

            def count(q: Any) -> int:
                return int(conn.execute(q).scalar_one())

            return {
                "events": count(select(func.count()).select_from(hub_events)),
                "incidents_open": count(select(func.count()).where(incidents.c.closed.is_(None))),
                "incidents_closed": count(select(func.count()).where(incidents.c.closed.is_not(None))),
                "work_orders_open": count(select(func.count()).where(work_orders.c.status == "open")),
                "repairs_queued": count(select(func.count()).where(repair_commands.c.status == "queued")),
                "repairs_sent": count(select(func.count()).where(repair_commands.c.status != "queued")),
            }

    # -- internals ----------------------------------------------------------------
    def _upsert_event(self, conn: Connection, e: HubEvent, link: str | None, now: datetime) -> int:
        row = conn.execute(
            select(hub_events.c.incident_id).where(
                and_(hub_events.c.hub_id == e.hub_id, hub_events.c.event_id == e.event_id)
            )
        ).first()
        values = dict(
            code=e.code,
            kind=e.kind,
            device=e.device,
            device_kind=e.device_kind,
            severity=e.severity,
            evidence=e.evidence,
            recommendation=e.recommendation,
            first_seen=e.first_seen,
            last_seen=e.last_seen,
            count=e.count,
            repair=e.repair,
            outcome=e.outcome,
            open=1 if e.is_open else 0,
            closed=e.closed,
            resolution=e.resolution,
            received=now,
        )
        if row is not None:
            incident_id = int(row.incident_id)
            conn.execute(
                update(hub_events)
                .where(and_(hub_events.c.hub_id == e.hub_id, hub_events.c.event_id == e.event_id))
                .values(**values)
            )
        else:
            scope, key = incident_key(e.hub_id, link, e.code, e.device)
            incident_id = self._incident(conn, scope, key, e.code, link, e.first_seen)
            conn.execute(
                insert(hub_events).values(
                    hub_id=e.hub_id, event_id=e.event_id, incident_id=incident_id, **values
                )
            )
        hub_open = conn.execute(
            select(func.count()).where(
                and_(
                    hub_events.c.incident_id == incident_id,
                    hub_events.c.hub_id == e.hub_id,
                    hub_events.c.open == 1,
                    hub_events.c.outcome.is_distinct_from("succeeded"),
                )
            )
        ).scalar_one()
        self._member(conn, incident_id, e.hub_id, bool(hub_open), e.first_seen, "")
        conn.execute(
            update(incidents)
            .where(and_(incidents.c.incident_id == incident_id, incidents.c.last_seen < e.last_seen))
            .values(last_seen=e.last_seen)
        )
        return incident_id

    def _incident(
        self, conn: Connection, scope: str, key: str, code: int, link: str | None, when: datetime
    ) -> int:
        """The open incident for (scope, key), or a new one."""
        row = conn.execute(
            select(incidents.c.incident_id).where(
                and_(incidents.c.scope == scope, incidents.c.key == key, incidents.c.closed.is_(None))
            )
        ).first()
        if row is not None:
            return int(row.incident_id)
        return int(
            conn.execute(
                insert(incidents)
                .values(
                    scope=scope,
                    key=key,
                    code=code,
                    wan_link=link,
                    opened=when,
                    last_seen=when,
                    action=Action.MONITOR.value,
                    reason="",
                    remote_repair_tried=0,
                )
                .returning(incidents.c.incident_id)
            ).scalar_one()
        )

    def _member(
        self, conn: Connection, incident_id: int, hub_id: str, is_open: bool, since: datetime, detail: str
    ) -> None:
        where = and_(incident_hubs.c.incident_id == incident_id, incident_hubs.c.hub_id == hub_id)
        if conn.execute(select(incident_hubs.c.hub_id).where(where)).first() is None:
            conn.execute(
                insert(incident_hubs).values(
                    incident_id=incident_id, hub_id=hub_id, open=int(is_open), since=since, detail=detail
                )
            )
        else:
            conn.execute(update(incident_hubs).where(where).values(open=int(is_open), detail=detail))

    def _review(self, conn: Connection, incident_id: int, now: datetime) -> None:
        inc = conn.execute(select(incidents).where(incidents.c.incident_id == incident_id)).one()
        if inc.closed is not None:
            return
        members = conn.execute(
            select(incident_hubs.c.hub_id, incident_hubs.c.open, incident_hubs.c.detail).where(
                incident_hubs.c.incident_id == incident_id
            )
        ).all()
        open_hubs = [m.hub_id for m in members if m.open]
        if not open_hubs:
            conn.execute(update(incidents).where(incidents.c.incident_id == incident_id).values(closed=now))
            conn.execute(
                update(work_orders)
                .where(and_(work_orders.c.incident_id == incident_id, work_orders.c.status == "open"))
                .values(status="resolved", closed=now)
            )
            return
        d = decide(
            inc.code,
            hubs_affected=len(members),
            area_threshold=self.area_threshold,
            opened=_aware(inc.opened, now),
            now=now,
            repaired_locally=False,  # only open, unrepaired memberships reach here
            remote_repair_tried=bool(inc.remote_repair_tried),
        )
        conn.execute(
            update(incidents)
            .where(incidents.c.incident_id == incident_id)
            .values(action=d.action.value, reason=d.reason)
        )
        if d.action is Action.REMOTE_REPAIR and d.command:
            for hub_id in open_hubs:
                body = self._repair_body(conn, incident_id, hub_id, d.command)
                exists = conn.execute(
                    select(repair_commands.c.repair_id).where(
                        and_(
                            repair_commands.c.incident_id == incident_id,
                            repair_commands.c.hub_id == hub_id,
                            repair_commands.c.command == body.TYPE,
                        )
                    )
                ).first()
                if exists is None:
                    conn.execute(
                        insert(repair_commands).values(
                            incident_id=incident_id,
                            hub_id=hub_id,
                            command=body.TYPE,
                            body=json.dumps(body.to_json()),
                            created=now,
                            status="queued",
                        )
                    )
            conn.execute(
                update(incidents).where(incidents.c.incident_id == incident_id).values(remote_repair_tried=1)
            )
        elif d.action is Action.WORK_ORDER:
            diagnosis = self._diagnosis(conn, incident_id, members)
            existing = conn.execute(
                select(work_orders.c.work_order_id).where(work_orders.c.incident_id == incident_id)
            ).first()
            if existing is not None:
                # An area incident grows as more hubs report: the order carries the current picture.
                conn.execute(
                    update(work_orders)
                    .where(work_orders.c.work_order_id == existing.work_order_id)
                    .values(diagnosis=json.dumps(diagnosis, sort_keys=True, default=str))
                )
                return
            area = inc.scope == "wan_link" and len(members) > 1
            hub_id = None if area else open_hubs[0]
            conn.execute(
                insert(work_orders).values(
                    incident_id=incident_id,
                    party=d.party.value,
                    assignee=self.responsible(d.party, hub_id, inc.wan_link),
                    hub_id=hub_id,
                    reason=d.reason,
                    diagnosis=json.dumps(diagnosis, sort_keys=True, default=str),
                    created=now,
                    status="open",
                )
            )

    @staticmethod
    def _repair_body(conn: Connection, incident_id: int, hub_id: str, command: str) -> CommandBody:
        """The remote diagnostic's body: a link test aimed at the meter the hub named, or a HAN
        scan (which needs no target; also what a link test becomes when the hub named none)."""
        row = conn.execute(
            select(hub_events.c.device).where(
                and_(hub_events.c.incident_id == incident_id, hub_events.c.hub_id == hub_id)
            )
        ).first()
        if command == LinkTest.TYPE and row is not None and row.device:
            return LinkTest(row.device)
        if command in (LinkTest.TYPE, HanScan.TYPE):
            return HanScan()
        return parse_body(command, {})

    @staticmethod
    def _diagnosis(conn: Connection, incident_id: int, members: Iterable[Any]) -> dict[str, Any]:
        """What the person sent out needs: every hub's own diagnosis (evidence, repairs tried)."""
        events = conn.execute(
            select(hub_events).where(hub_events.c.incident_id == incident_id).order_by(hub_events.c.hub_id)
        ).all()
        return {
            "hubs": sorted(m.hub_id for m in members),
            "unreachable": {m.hub_id: m.detail for m in members if m.detail},
            "events": [
                {
                    "hub_id": e.hub_id,
                    "event_id": e.event_id,
                    "kind": e.kind,
                    "device": e.device,
                    "severity": e.severity,
                    "evidence": e.evidence,
                    "repair_tried": e.repair,
                    "outcome": e.outcome,
                    "recommendation": e.recommendation,
                    "first_seen": e.first_seen,
                    "last_seen": e.last_seen,
                }
                for e in events
            ],
        }


def _aware(t: datetime, like: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were stored in the zone of ``like`` (UTC)."""
    return t if t.tzinfo is not None else t.replace(tzinfo=like.tzinfo)


__all__ = ["ErrorLog", "RecordResult", "RepairCommand", "default_resolver"]
