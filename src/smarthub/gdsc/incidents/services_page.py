"""The operator console's data services page (issue 25): every third-party data service's
application and where it stands, with its consents and its traffic.

Per service: the GDSC's decision (status, reason, by whom and when), what it was approved for
(data kinds, finest granularity, retention), its OAuth2 client, the occupants' consents to it
(live now, and at how many premises), and its traffic from the audit log — the data reads the
access policy allowed and refused over the last day and week, and its last read. It reads the
store only, like the rest of the console; nothing of a household is shown (counts, not premises).

The traffic is one grouped query over the audit log's entries of the last week by the services'
party ids (the log has no index by actor: the query reads the week's entries, which the
``at``-bounded scan keeps to the week).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, case, func, select

from smarthub.gdsc.governance.access import Action
from smarthub.gdsc.governance.audit import audit_log
from smarthub.gdsc.governance.parties import utc
from smarthub.gdsc.governance.party_tables import consents
from smarthub.gdsc.governance.services import DataServices

WEEK = timedelta(days=7)
DAY = timedelta(days=1)
_READS = sorted(a.value for a in Action if a.data_kind is not None)


@dataclass(frozen=True, slots=True)
class Traffic:
    reads_day: int = 0
    reads_week: int = 0
    refused_day: int = 0
    refused_week: int = 0
    last_read: datetime | None = None  # within the week


def service_rows(engine: Engine, now: datetime) -> list[dict[str, Any]]:
    """One row per data service (every status), by party id: its application, decision,
    consents and traffic."""
    services = DataServices(engine).all()
    ids = [s.party_id for s in services]
    live, premises = _consents(engine, ids, now)
    traffic = _traffic(engine, ids, now)
    rows = []
    for s in services:
        a, t = s.application, traffic.get(s.party_id, Traffic())
        rows.append(
            {
                "service_id": s.party_id,
                "organisation": a.organisation,
                "purpose": a.purpose,
                "status": s.status.value,
                "reason": s.reason,
                "data_kinds": ", ".join(sorted(k.value for k in a.data_kinds)),
                "granularity": a.granularity.value,
                "retention_days": a.retention_days,
                "applied_at": s.applied_at,
                "decided_at": s.decided_at,
                "decided_by": s.decided_by,
                "client_id": s.client_id,
                "live_consents": live.get(s.party_id, 0),
                "premises": premises.get(s.party_id, 0),
                "reads_day": t.reads_day,
                "reads_week": t.reads_week,
                "refused_day": t.refused_day,
                "refused_week": t.refused_week,
                "last_read": t.last_read,
            }
        )
    return rows


def _consents(engine: Engine, ids: list[str], now: datetime) -> tuple[dict[str, int], dict[str, int]]:
    """Live consents per service, and the premises they are at."""
    if not ids:
        return {}, {}
    now = now.astimezone(UTC)
    c = consents.c
    q = (
        select(c.party_id, func.count(), func.count(func.distinct(c.premises_id)))
        .where(
            c.party_id.in_(ids),
            c.granted_at <= now,
            c.expires_at > now,
            (c.revoked_at.is_(None)) | (c.revoked_at > now),
        )
        .group_by(c.party_id)
    )
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    return {r[0]: r[1] for r in rows}, {r[0]: r[2] for r in rows}


def _traffic(engine: Engine, ids: list[str], now: datetime) -> dict[str, Traffic]:
    if not ids:
        return {}
    t = audit_log.c
    day = (now - DAY).astimezone(UTC)

    def count(allow: int, since: datetime | None) -> Any:
        cond = t.allow == allow if since is None else (t.allow == allow) & (t.at >= since)
        return func.sum(case((cond, 1), else_=0))

    q = (
        select(
            t.actor,
            count(1, day),
            count(1, None),
            count(0, day),
            count(0, None),
            func.max(case((t.allow == 1, t.at), else_=None)),
        )
        .where(t.actor.in_(ids), t.action.in_(_READS), t.at >= (now - WEEK).astimezone(UTC))
        .group_by(t.actor)
    )
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    return {
        r[0]: Traffic(int(r[1] or 0), int(r[2] or 0), int(r[3] or 0), int(r[4] or 0), _instant(r[5]))
        for r in rows
    }


def _instant(v: object) -> datetime | None:
    """A MAX over a CASE loses the column's type on SQLite: its text comes back as a string."""
    if v is None:
        return None
    return utc(v if isinstance(v, datetime) else datetime.fromisoformat(str(v)))


PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Data services — smarthub GDSC operator</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}}table{{border-collapse:collapse}}
td,th{{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}}
td.n{{text-align:right}}.err{{color:#b00020;font-weight:600}}.ok{{color:#1b7f3b}}.muted{{color:#777}}
h1{{font-size:1.3rem}}nav a{{margin-right:1rem}}</style></head><body>
<h1>GDSC operator — data services</h1>
<nav><a href="/">fleet</a><a href="/outages">outage map and timeline</a>
<a href="/services">data services</a></nav>
<p>Third-party data services: the GDSC's decision on each, what it is approved for, the occupants'
consents to it and its reads over the last day and week (from the audit log), as of {now}.</p>
{table}</body></html>"""

COLUMNS = (
    ("service_id", "Service"),
    ("organisation", "Organisation"),
    ("purpose", "Purpose"),
    ("status", "Status"),
    ("decided", "Decision"),
    ("approved_for", "Approved for"),
    ("client_id", "OAuth2 client"),
    ("live_consents", "Live consents"),
    ("premises", "At premises"),
    ("reads_day", "Reads 24 h"),
    ("reads_week", "Reads 7 d"),
    ("refused_week", "Refused 7 d"),
    ("last_read", "Last read"),
)
_STATUS_CLASS = {"approved": "ok", "suspended": "err", "revoked": "err", "refused": "muted"}


def _e(v: object) -> str:
    return html.escape("" if v is None else str(v))


def _when(v: datetime | None) -> str:
    return "—" if v is None else f"{v.astimezone(UTC):%Y-%m-%d %H:%M}"


def _cells(r: dict[str, Any]) -> str:
    decided = "applied " + _when(r["applied_at"])
    if r["decided_at"] is not None:
        decided = f"{_when(r['decided_at'])} by {_e(r['decided_by'])}"
        if r["reason"]:
            decided += f": {_e(r['reason'])}"
    approved_for = f"{_e(r['data_kinds'])}, {_e(r['granularity'])} at most, kept {r['retention_days']} days"
    cells = {
        "service_id": _e(r["service_id"]),
        "organisation": _e(r["organisation"]),
        "purpose": _e(r["purpose"]),
        "status": f'<span class="{_STATUS_CLASS.get(r["status"], "")}">{_e(r["status"])}</span>',
        "decided": decided,
        "approved_for": approved_for,
        "client_id": _e(r["client_id"] or "—"),
        "last_read": _when(r["last_read"]),
        "refused_week": (
            f'<span class="err">{r["refused_week"]}</span>' if r["refused_week"] else str(r["refused_week"])
        ),
    }
    out = []
    for key, _ in COLUMNS:
        numeric = isinstance(r.get(key), int) and key != "service_id"
        value = cells.get(key, _e(r.get(key)))
        out.append(f'<td class="n">{value}</td>' if numeric else f"<td>{value}</td>")
    return f'<tr data-service="{_e(r["service_id"])}">' + "".join(out) + "</tr>"


def page_html(engine: Engine, now: datetime) -> str:
    rows = service_rows(engine, now)
    if not rows:
        table = "<p class='muted'>No third party has applied as a data service.</p>"
    else:
        head = "".join(f"<th>{label}</th>" for _, label in COLUMNS)
        table = f'<table id="services"><tr>{head}</tr>' + "".join(_cells(r) for r in rows) + "</table>"
    return PAGE.format(now=_when(now), table=table)
