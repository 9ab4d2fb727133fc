"""The operator console's outage page: the live outages, the map of the network with them on it
and the timeline (:mod:`smarthub.gdsc.outages.map` draws both), as HTML.

The page's script swaps ``#outages-body`` for a fresh one when the live stream's version
changes (an outage opened, grew, was restored or closed: the outage event log moved on).
"""

from __future__ import annotations

import html
from datetime import datetime

from sqlalchemy import Engine

from smarthub.gdsc.outages.map import legend, map_svg, outage_state, read_topology, timeline_svg
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
<nav><a href="/">fleet</a><a href="/outages">outage map and timeline</a></nav>
<p id="live" class="ok"></p>
<div id="outages-body">{body}</div>
<script src="/outages.js"></script></body></html>"""


def _e(v: object) -> str:
    return html.escape("" if v is None else str(v))


def _when(v: object) -> str:
    if v is None:
        return "—"
    return f"{datetime.fromisoformat(str(v)):%Y-%m-%d %H:%M:%S}"


def body_html(engine: Engine, now: datetime) -> str:
    """Everything below the heading: live outages, the map, the timeline."""
    topo = read_topology(engine)
    state = outage_state(engine)
    recent = OutageStore(engine).find(limit=40)
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
        f"LV feeders; {len(state.live)} live outages, {len(state.out)} premises without supply"
    )
    return (
        f"<p id='outage-summary'>{_e(summary)}</p>"
        f"<h2>Live outages</h2>{live}"
        f"<h2>Map</h2>{legend()}<div id='map-box'>{map_svg(topo, state)}</div>"
        f"<h2>Timeline</h2><p class='muted'>The latest {len(recent)} outages, from the loss of power"
        f" (the meters' time) to the close; open ones run to now ({now:%Y-%m-%d %H:%M:%S}).</p>"
        f"{timeline_svg(recent, now)}"
    )


def page_html(engine: Engine, now: datetime) -> str:
    return PAGE.format(body=body_html(engine, now))


__all__ = ["body_html", "page_html"]
