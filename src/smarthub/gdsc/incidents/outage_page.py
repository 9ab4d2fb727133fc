"""The operator console's outage page: the live outages, the map of the network with them on it
and the timeline (:mod:`smarthub.gdsc.outages.map` draws both), as HTML.

The page's script swaps ``#outages-body`` for a fresh one when the live stream's version
changes (an outage opened, grew, was restored or closed: the outage event log moved on).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import Engine, select

from smarthub.gdsc.incidents.hub_page import hub_href
from smarthub.gdsc.incidents.policy import HUB_UNREACHABLE
from smarthub.gdsc.incidents.tables import incident_hubs, incidents
from smarthub.gdsc.outages.map import (
    TIMELINE_ROWS,
    legend,
    map_svg,
    outage_state,
    read_topology,
    timeline_svg,
)
from smarthub.gdsc.outages.store import OutageStore

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Outages — smarthub GDSC operator</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}}table{{border-collapse:collapse}}
td,th{{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:left}}td.n{{text-align:right}}
.err{{color:#b00020;font-weight:600}}.ok{{color:#1b7f3b}}.muted{{color:#777}}h1{{font-size:1.3rem}}
nav a{{margin-right:1rem}}#map-box{{overflow:auto;max-height:80vh;border:1px solid #ddd}}
.legend span{{white-space:nowrap}}</style></head><body>
<h1>GDSC operator — outages</h1>
<nav><a href="/">fleet</a><a href="/outages">outage map and timeline</a>
<a href="/services">data services</a></nav>
<p id="live" class="ok"></p>
<div id="outages-body">{body}</div>
<script src="/outages.js"></script></body></html>"""


def _e(v: object) -> str:
    return html.escape("" if v is None else str(v))


def _when(v: object) -> str:
    if v is None:
        return "—"
    return f"{datetime.fromisoformat(str(v)):%Y-%m-%d %H:%M:%S}"


def silent_hubs(engine: Engine) -> set[str]:
    """Hubs in an open "hub unreachable" incident (not a power outage: no last gasp came)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(incident_hubs.c.hub_id)
            .join(incidents, incidents.c.incident_id == incident_hubs.c.incident_id)
            .where(
                incidents.c.closed.is_(None),
                incidents.c.code == HUB_UNREACHABLE,
                incident_hubs.c.open == 1,
            )
        )
        return {r.hub_id for r in rows}


def body_html(
    engine: Engine, now: datetime, since: datetime | None = None, until: datetime | None = None
) -> str:
    """Everything below the heading: live outages, the map, the timeline (of the outages opened
    in [``since``, ``until``) when given, else the latest)."""
    topo = read_topology(engine)
    state = outage_state(engine)
    state.silent = {topo.hub_premises[h] for h in silent_hubs(engine) if h in topo.hub_premises}
    recent = OutageStore(engine).find(since=since, until=until, limit=TIMELINE_ROWS)
    if state.live:
        rows = "".join(
            "<tr>"
            f"<td class='n'>{o['outage_id']}</td><td>{_e(o['level'])}</td><td>{_e(o['location'])}</td>"
            f"<td class='n'>{o['customers']}</td><td class='n'>{o['premises_heard']}</td>"
            f"<td class='n'>{o['restored']}</td><td>{_when(o['started'])}</td><td>{_when(o['opened'])}</td>"
            "</tr>"
            for o in state.live
        )
        live = (
            "<table id='live-outages'><thead><tr><th>#</th><th>level</th><th>location</th>"
            "<th>customers affected</th><th>premises heard</th><th>restored</th>"
            "<th>power lost (meters)</th><th>opened at the GDSC</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
    else:
        live = "<p id='live-outages' class='ok'>No live outage.</p>"
    summary = (
        f"{len(topo.places)} premises on {sum(1 for n in topo.nodes.values() if n.kind == 'feeder')} "
        f"LV feeders; {len(state.live)} live outages, {len(state.out)} premises without supply; "
        f"{len(state.silent - state.out)} hubs not answering without a last gasp"
    )
    return (
        f"<p id='outage-summary'>{_e(summary)}</p>"
        f"<h2>Live outages</h2>{live}"
        f"<h2>Map</h2>{legend()}<div id='map-box'>{map_svg(topo, state, hub_href)}</div>"
        f"<h2>Timeline</h2>{_period_form(since, until)}<p class='muted'>The latest {len(recent)} outages"
        + (f" opened from {since:%Y-%m-%d}" if since else "")
        + (f" before {until:%Y-%m-%d}" if until else "")
        + ", from the loss of power (the meters' time) to the close; open ones run to now "
        f"({now:%Y-%m-%d %H:%M:%S}).</p>"
        + (
            timeline_svg(recent, now)
            if recent or (since is None and until is None)
            else "<p id='timeline' class='muted'>No outage opened in this period.</p>"
        )
    )


def _period_form(since: datetime | None, until: datetime | None) -> str:
    def day(t: datetime | None) -> str:
        return f"{t:%Y-%m-%d}" if t else ""

    return (
        "<form id='period' method='get' action='/outages'>opened from "
        f"<input type='date' name='since' value='{day(since)}' aria-label='from'> before "
        f"<input type='date' name='until' value='{day(until)}' aria-label='before'> "
        "<button>show</button></form>"
    )


def parse_period(query: Mapping[str, str]) -> tuple[datetime | None, datetime | None]:
    """``since`` and ``until`` (ISO dates or times, UTC when no offset); ValueError naming the
    parameter when one is not a date."""
    out: list[datetime | None] = []
    for name in ("since", "until"):
        raw = query.get(name, "").strip()
        if not raw:
            out.append(None)
            continue
        try:
            t = datetime.fromisoformat(raw)
        except ValueError:
            raise ValueError(f"{name} is a date (YYYY-MM-DD) or an ISO 8601 time, not {raw!r}") from None
        out.append(t if t.tzinfo else t.replace(tzinfo=UTC))
    return out[0], out[1]


def page_html(
    engine: Engine, now: datetime, since: datetime | None = None, until: datetime | None = None
) -> str:
    return PAGE.format(body=body_html(engine, now, since, until))


__all__ = ["body_html", "page_html", "parse_period"]
