"""The operator console's hub detail page, as HTML (from :func:`~smarthub.gdsc.incidents.hub_view.hub_view`).

Rendered on the server and escaped here, like the rest of the console; the page's script only
swaps the ``#detail`` part for a fresh one when the live stream says something changed.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} — smarthub GDSC operator</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}}table{{border-collapse:collapse;margin-bottom:1rem}}
td,th{{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}}
.err{{color:#b00020;font-weight:600}}.ok{{color:#1b7f3b}}.muted{{color:#777}}h1{{font-size:1.3rem}}
h2{{font-size:1.1rem;margin-top:1.5rem}}
dl{{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}}
dt{{color:#555}}dd{{margin:0}}</style></head><body>
<p><a href="/">← fleet</a> <span id="live" class="ok"></span></p>
<div id="detail" data-hub="{hub_attr}" data-offset="{offset}">{detail}</div>
<script src="/hub.js"></script></body></html>"""


def _e(v: object) -> str:
    return html.escape("" if v is None else str(v))


def _t(v: object) -> str:
    return f"{v:%Y-%m-%d %H:%M:%S}" if isinstance(v, datetime) else _e(v if v is not None else "—")


def _table(table_id: str, head: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    if not body:
        return f"<p id='{table_id}' class='muted'>{_e(empty)}</p>"
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f"<table id='{table_id}'><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _ok(flag: bool, yes: str, no: str) -> str:
    return f"<span class='ok'>{_e(yes)}</span>" if flag else f"<span class='err'>{_e(no)}</span>"


def hub_href(hub_id: str) -> str:
    return "/hubs/" + quote(hub_id, safe="")


def detail_html(v: dict[str, Any]) -> str:
    """The ``#detail`` part of the page: every section of the hub."""
    h = v["hub"]
    network = " → ".join(f"{_e(n['kind'])} {_e(n['node_id'])}" for n in h["network"]) or "not on the map"
    facts = [
        ("status", _ok(h["status"] == "active", h["status"], h["status"])),
        ("premises", _e(h["premises_id"])),
        ("address", _e(h["address"] or "—")),
        ("MPAN / MPRN", f"{_e(h['mpan'] or '—')} / {_e(h['mprn'] or '—')}"),
        ("network", f"{network}{' · phase ' + _e(h['phase']) if h['phase'] else ''}"),
        ("WAN link", _e(h["wan_link"] or "its own")),
        ("URL", _e(h["url"])),
        ("LFDI", f"<code>{_e(h['lfdi'])}</code>"),
    ]
    out = [
        f"<h1>Hub {_e(h['hub_id'])}</h1><dl id='facts'>"
        + "".join(f"<dt>{k}</dt><dd>{val}</dd>" for k, val in facts)
        + "</dl>"
    ]

    meter_rows = []
    for m in v["meters"]:
        chans = (
            "<br>".join(
                f"{_e(c['obis'])} ({c['duration']} s): {c['readings']} readings, last day {_e(c['last_day'])}"
                for c in m["channels"]
            )
            or "<span class='muted'>nothing stored yet</span>"
        )
        meter_rows.append([_e(m["meter_id"]), _e(m["fuel"] or "?"), chans])
    out.append(
        "<h2>Meters</h2>" + _table("meters", ["meter", "fuel", "channels stored"], meter_rows, "No meter.")
    )

    p = v["pulls"]
    shown = f"{p['offset'] + 1}–{p['offset'] + len(p['rows'])} of {p['total']}" if p["rows"] else "none"
    nav = []
    if p["offset"] > 0:
        nav.append(f"<a id='newer' href='?pulls_offset={max(p['offset'] - p['limit'], 0)}'>newer</a>")
    if p["offset"] + len(p["rows"]) < p["total"]:
        nav.append(f"<a id='older' href='?pulls_offset={p['offset'] + p['limit']}'>older</a>")
    pull_rows = [
        [
            str(r["seq"]),
            _t(r["window_start"]),
            _t(r["started"]),
            _t(r["finished"]),
            _ok(bool(r["ok"]), "ok", "failed"),
            str(r["readings"]),
            str(r["inserted"]),
            _e(r["error"] or ""),
        ]
        for r in p["rows"]
    ]
    out.append(
        f"<h2>Pulls</h2><p id='pulls-summary'>{p['total']} pulls, {p['ok']} ok, "
        f"{p['total'] - p['ok']} failed · showing {shown} {' '.join(nav)}</p>"
        + _table(
            "pulls",
            ["#", "window", "started", "finished", "result", "readings", "new", "error"],
            pull_rows,
            "Never pulled.",
        )
    )
    if v["pull_errors"]:
        out.append(
            "<h2>Pull and delivery errors</h2>"
            + _table(
                "pull-errors",
                ["kind", "opened", "last seen", "occurrences", "context", "last error", "closed"],
                [
                    [
                        _e(r["kind"]),
                        _t(r["opened"]),
                        _t(r["last_seen"]),
                        str(r["occurrences"]),
                        _e(r["context"]),
                        _e(r["last_error"] or ""),
                        _t(r["closed"]),
                    ]
                    for r in v["pull_errors"]
                ],
                "",
            )
        )

    out.append(
        "<h2>Diagnoses</h2>"
        + _table(
            "diagnoses",
            [
                "",
                "diagnosis",
                "device",
                "severity",
                "evidence",
                "recommendation",
                "first / last seen",
                "×",
                "repair",
            ],
            [
                [
                    _ok(not d["open"], "cleared", "open"),
                    _e(d["label"]),
                    f"{_e(d['device'])} ({_e(d['device_kind'])})",
                    _e(d["severity"]),
                    _e(d["evidence"]),
                    _e(d["recommendation"]),
                    f"{_t(d['first_seen'])}<br>{_t(d['last_seen'])}",
                    str(d["count"]),
                    _e(" ".join(x for x in (d["repair"], d["outcome"] or "", d["resolution"] or "") if x)),
                ]
                for d in v["diagnoses"]
            ],
            "The hub has reported no diagnosis.",
        )
    )

    inc_rows = []
    for i in v["incidents"]:
        wo = i["work_order"]
        order = (
            f"#{wo['work_order_id']} {_e(wo['party'])} ({_e(wo['assignee'])}) {_e(wo['status'])}"
            if wo
            else "—"
        )
        inc_rows.append(
            [
                str(i["incident_id"]),
                _ok(i["closed"] is not None, "closed", "open"),
                _e(i["label"]),
                _e(i["scope"]) + (f" {_e(i['wan_link'])}" if i["wan_link"] else ""),
                _t(i["opened"]),
                _t(i["closed"]),
                _e(i["action"]),
                _e(i["reason"]),
                order,
            ]
        )
    out.append(
        "<h2>Incidents</h2>"
        + _table(
            "incidents",
            ["#", "", "kind", "scope", "opened", "closed", "action", "reason", "work order"],
            inc_rows,
            "The hub is in no incident.",
        )
    )
    if v["repairs"]:
        out.append(
            "<h2>Remote repairs</h2>"
            + _table(
                "repairs",
                ["#", "incident", "command", "created", "status", "sent", "verdict"],
                [
                    [
                        str(r["repair_id"]),
                        str(r["incident_id"]),
                        _e(r["command"]),
                        _t(r["created"]),
                        _e(r["status"]),
                        _t(r["sent"]),
                        _e(r["verdict"] if r["verdict"] is not None else ""),
                    ]
                    for r in v["repairs"]
                ],
                "",
            )
        )

    cert_rows = []
    for c in v["certificates"]:
        validity = (
            f"{_t(c.get('not_before'))} – {_t(c.get('not_after'))}<br>"
            + (
                _ok(False, "", "expired")
                if c.get("expired")
                else _ok(
                    c.get("days_left", 0) > 30,
                    f"{c.get('days_left')} days left",
                    f"{c.get('days_left')} days left",
                )
            )
            if "not_after" in c
            else "<span class='muted'>certificate not held</span>"
        )
        ended = (
            f"{_e(c['end_status'])} {_t(c['ended_at'])} {_e(c['end_reason'] or '')}" if c["ended_at"] else ""
        )
        cert_rows.append(
            [
                _e(c["hub_id"]) + (" <span class='ok'>(current)</span>" if c["current"] else ""),
                _e(c.get("subject", "")),
                f"<code>{_e(c['cert_serial'])}</code>",
                f"<code>{_e(c['cert_lfdi'])}</code>",
                validity,
                f"{_e(c['installer'])} {_t(c['commissioned_at'])}",
                ended,
            ]
        )
    alert = v["hub"]["alert_key_lfdi"]
    alert_line = (
        "<p id='alert-key'>Alert key: "
        + (
            _ok(
                alert == v["hub"]["lfdi"],
                "registered, the current certificate's",
                "registered for another certificate",
            )
            if alert
            else "<span class='muted'>none registered (its last gasps would be refused)</span>"
        )
        + "</p>"
    )
    out.append(
        "<h2>Certificates</h2>"
        + _table(
            "certificates",
            ["hub", "subject", "serial", "LFDI", "validity", "commissioned", "ended"],
            cert_rows,
            "No commissioning record: the GDSC holds only the hub's LFDI.",
        )
        + alert_line
    )

    out.append(
        "<h2>Outages at the premises</h2>"
        + _table(
            "outages",
            ["#", "level", "location", "lost", "restored", "duration"],
            [
                [
                    str(o["outage_id"]),
                    _e(o["level"]),
                    _e(o["location"]),
                    _t(o["lost_at"]),
                    _t(o["restored_at"]),
                    f"{o['duration_s']} s" if o["duration_s"] is not None else "—",
                ]
                for o in v["outages"]
            ],
            "No outage recorded at the premises.",
        )
    )
    return "".join(out)


def page_html(v: dict[str, Any]) -> str:
    hub_id = v["hub"]["hub_id"]
    return PAGE.format(
        title=_e(hub_id),
        hub_attr=_e(hub_id),
        offset=v["pulls"]["offset"],
        detail=detail_html(v),
    )


__all__ = ["detail_html", "hub_href", "page_html"]
