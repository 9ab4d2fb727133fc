"""The operator console's tables, paged, sorted and filtered here on the server: a fleet of
thousands of hubs (and their incidents) never goes whole to the browser.

Each table is a :class:`TableSpec` (its columns, which of them sort and which the filter
searches) and a function giving its rows as flat dicts; :func:`page` cuts one page. The
incidents and work orders are read in a fixed number of statements whatever their count (the
error log's own ``incidents()`` reads each incident's hubs with a query of its own).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select

from smarthub.gdsc.incidents.hub_view import code_label
from smarthub.gdsc.incidents.tables import incident_hubs, incidents, work_orders
from smarthub.gdsc.pull.scheduler import WindowProgress

MAX_LIMIT = 500
HUBS_SHOWN = 5  # hub ids listed in an incident's row; the rest are counted


class BadQuery(ValueError):
    """A table query the console cannot answer; the message says which parameter and why."""


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[tuple[str, str], ...]  # (key, heading)
    default_sort: str
    default_order: str = "asc"
    search: tuple[str, ...] = ()  # the keys the filter looks in
    states: tuple[str, ...] = ()  # the values of ``state`` the table accepts (first: default)
    page_size: int = 50

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.columns)


HUBS = TableSpec(
    "hubs",
    (
        ("hub_id", "hub"),
        ("premises_id", "premises"),
        ("status", "status"),
        ("last_pull", "last pull (sim time)"),
        ("pulls", "pulls"),
        ("readings", "readings stored"),
        ("errors", "errors"),
    ),
    "hub_id",
    search=("hub_id", "premises_id", "status"),
)
WINDOWS = TableSpec(
    "windows",
    (
        ("window_start", "window"),
        ("schedule", "schedule"),
        ("planned", "planned"),
        ("done", "pulled"),
        ("failed", "failed"),
        ("pending", "outstanding"),
        ("readings", "readings"),
        ("inserted", "new"),
    ),
    "window_start",
    "desc",
    search=("window_start", "schedule"),
    page_size=12,
)
INCIDENTS = TableSpec(
    "incidents",
    (
        ("incident_id", "#"),
        ("kind", "kind"),
        ("scope", "scope"),
        ("hubs", "hubs"),
        ("hub_count", "hubs out"),
        ("opened", "opened"),
        ("last_seen", "last seen"),
        ("closed", "closed"),
        ("action", "action"),
        ("work_order", "work order"),
        ("reason", "reason"),
    ),
    "incident_id",
    "desc",
    search=("kind", "scope", "_hubs", "work_order", "reason", "action"),
    states=("open", "closed", "all"),
    page_size=20,
)
WORK_ORDERS = TableSpec(
    "work_orders",
    (
        ("work_order_id", "#"),
        ("party", "party"),
        ("assignee", "assignee"),
        ("hub_id", "hub"),
        ("reason", "reason"),
        ("created", "created"),
        ("status", "status"),
        ("closed", "closed"),
    ),
    "work_order_id",
    "desc",
    search=("party", "assignee", "hub_id", "reason"),
    states=("open", "resolved", "all"),
    page_size=20,
)


def _aware(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _when(t: datetime | None) -> str | None:
    t = _aware(t)
    return None if t is None else f"{t:%Y-%m-%d %H:%M:%S}"


def window_rows(windows: Sequence[WindowProgress]) -> list[dict[str, Any]]:
    return [
        {
            "window_start": f"{w.window_start:%Y-%m-%d %H:%M}",
            "schedule": w.schedule,
            "planned": w.planned,
            "done": w.done,
            "failed": w.failed,
            "pending": max(w.planned - w.done, 0),
            "readings": w.readings,
            "inserted": w.inserted,
        }
        for w in windows
    ]


def incident_rows(engine: Engine, state: str = "open") -> list[dict[str, Any]]:
    """Every incident (``state``: open, closed or all) with its hubs and its work order."""
    q = select(incidents)
    if state == "open":
        q = q.where(incidents.c.closed.is_(None))
    elif state == "closed":
        q = q.where(incidents.c.closed.is_not(None))
    with engine.connect() as conn:
        rows = conn.execute(q).all()
        ids = {r.incident_id for r in rows}
        hubs: dict[int, list[tuple[str, int]]] = {}
        members = select(incident_hubs.c.incident_id, incident_hubs.c.hub_id, incident_hubs.c.open)
        if state == "open":  # the common case: only the open incidents' members
            members = members.where(
                incident_hubs.c.incident_id.in_(
                    select(incidents.c.incident_id).where(incidents.c.closed.is_(None))
                )
            )
        for m in conn.execute(members.order_by(incident_hubs.c.hub_id)):
            if m.incident_id in ids:
                hubs.setdefault(m.incident_id, []).append((m.hub_id, m.open))
        orders = {
            w.incident_id: w
            for w in conn.execute(
                select(
                    work_orders.c.incident_id,
                    work_orders.c.work_order_id,
                    work_orders.c.party,
                    work_orders.c.assignee,
                    work_orders.c.status,
                )
            )
            if w.incident_id in ids
        }
    out = []
    for r in rows:
        members_ = hubs.get(r.incident_id, [])
        names = [h for h, _ in members_]
        shown = ", ".join(names[:HUBS_SHOWN]) + (
            f" (+{len(names) - HUBS_SHOWN})" if len(names) > HUBS_SHOWN else ""
        )
        wo = orders.get(r.incident_id)
        out.append(
            {
                "incident_id": r.incident_id,
                "kind": code_label(r.code),
                "scope": r.scope
                if r.wan_link is None or r.scope != "wan_link"
                else f"{r.scope} {r.wan_link}",
                "hubs": shown,
                "hub_ids": names[:HUBS_SHOWN],  # the page links these
                "hubs_more": max(len(names) - HUBS_SHOWN, 0),
                "_hubs": " ".join(names),  # the filter looks in all of them
                "hub_count": sum(1 for _, o in members_ if o),
                "opened": _when(r.opened),
                "last_seen": _when(r.last_seen),
                "closed": _when(r.closed),
                "action": r.action,
                "work_order": None
                if wo is None
                else f"#{wo.work_order_id} {wo.party} {wo.assignee} {wo.status}",
                "reason": r.reason,
            }
        )
    return out


def work_order_rows(engine: Engine, state: str = "open") -> list[dict[str, Any]]:
    q = select(work_orders)
    if state != "all":
        q = q.where(work_orders.c.status == state)
    with engine.connect() as conn:
        return [
            {
                "work_order_id": w.work_order_id,
                "party": w.party,
                "assignee": w.assignee,
                "hub_id": w.hub_id or "(area)",
                "reason": w.reason,
                "created": _when(w.created),
                "status": w.status,
                "closed": _when(w.closed),
            }
            for w in conn.execute(q)
        ]


def open_incidents_by_kind(engine: Engine) -> dict[str, int]:
    """How many incidents are open, per kind (one grouped query, for the live chart)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(incidents.c.code, func.count())
            .where(incidents.c.closed.is_(None))
            .group_by(incidents.c.code)
        ).all()
    out: dict[str, int] = {}
    for code, n in rows:
        label = code_label(int(code))
        out[label] = out.get(label, 0) + int(n)
    return out


def parse_query(spec: TableSpec, query: Mapping[str, str]) -> dict[str, Any]:
    """The page a request asks for: ``offset``, ``limit`` (≤ 500), ``sort`` (a column), ``order``
    (asc or desc), ``q`` (a filter) and, for tables that have one, ``state``."""
    try:
        offset = max(int(query.get("offset", "0")), 0)
        limit = min(max(int(query.get("limit", str(spec.page_size))), 1), MAX_LIMIT)
    except ValueError:
        raise BadQuery("offset and limit are whole numbers") from None
    sort = query.get("sort", spec.default_sort)
    if sort not in spec.keys:
        raise BadQuery(f"sort by one of {', '.join(spec.keys)}")
    order = query.get("order", spec.default_order)
    if order not in ("asc", "desc"):
        raise BadQuery("order is asc or desc")
    state = query.get("state", spec.states[0] if spec.states else "")
    if spec.states and state not in spec.states:
        raise BadQuery(f"state is one of {', '.join(spec.states)}")
    return {
        "offset": offset,
        "limit": limit,
        "sort": sort,
        "order": order,
        "q": query.get("q", "").strip().lower(),
        "state": state,
    }


def page(spec: TableSpec, rows: list[dict[str, Any]], p: Mapping[str, Any]) -> dict[str, Any]:
    """Filter (every word of ``q`` in one of the searched columns), sort (empty values last
    whichever the order) and cut one page: ``{total, offset, limit, sort, order, rows}``."""
    words = p["q"].split()
    if words:
        rows = [
            r
            for r in rows
            if all(
                any(w in str(r.get(k) if r.get(k) is not None else "").lower() for k in spec.search)
                for w in words
            )
        ]
    key = p["sort"]
    present = [r for r in rows if r.get(key) is not None]
    absent = [r for r in rows if r.get(key) is None]
    present.sort(key=lambda r: r[key], reverse=p["order"] == "desc")
    rows = present + absent
    return {
        "total": len(rows),
        "offset": p["offset"],
        "limit": p["limit"],
        "sort": key,
        "order": p["order"],
        # Keys starting with "_" serve the filter only.
        "rows": [
            {k: v for k, v in r.items() if not k.startswith("_")}
            for r in rows[p["offset"] : p["offset"] + p["limit"]]
        ],
    }


__all__ = [
    "HUBS",
    "INCIDENTS",
    "WINDOWS",
    "WORK_ORDERS",
    "BadQuery",
    "TableSpec",
    "incident_rows",
    "open_incidents_by_kind",
    "page",
    "parse_query",
    "window_rows",
    "work_order_rows",
]
