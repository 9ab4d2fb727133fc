"""The operator console's outage map and timeline, drawn as inline SVG from the topology and the
outages (no map tiles, nothing fetched from the internet, no script needed to see them).

The map puts every premises, LV feeder and substation where the topology says (metres on a
local grid, or longitude/latitude: either way the axes are scaled alike, north up). Where the
topology has no positions the network is drawn as a schematic instead: one row per feeder, its
premises along it, feeders grouped under their substations. A feeder is a line from its
secondary substation through its premises in order along the street; a premises in a live
outage is red until its restoration arrives (then amber), and every node a live outage is
located at is drawn red with its customers affected.

The timeline has one bar per outage (merged ones are shown in the outage they joined), from
the moment power was lost (the meters' time) to its close, open ones running to now.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from smarthub.gdsc.outages.store import OutageStore, outage_events
from smarthub.gdsc.outages.topology import Topology, TopologyStore

MAP_WIDTH = 1000.0
MAP_MAX_HEIGHT = 1800.0
MARGIN = 30.0
TIMELINE_ROWS = 40

OUT = "#b00020"
RESTORED = "#c77c02"
NORMAL = "#1b7f3b"
LINE = "#8a94a6"
SILENT = "#9aa0a6"


@dataclass
class OutageState:
    """What the map colours: the live outages, where each is, and the premises each holds."""

    live: list[dict[str, Any]] = field(default_factory=list)
    out: set[str] = field(default_factory=set)  # premises without power, as far as the GDSC knows
    restored: set[str] = field(default_factory=set)  # premises of a live outage back on supply
    located: dict[str, dict[str, Any]] = field(default_factory=dict)  # node or premises id → outage
    # Premises whose hub stopped answering without a last gasp (a dead hub or a WAN fault: the
    # meters may well have power); the caller names them, from the error log.
    silent: set[str] = field(default_factory=set)


def outage_state(engine: Engine) -> OutageState:
    store = OutageStore(engine)
    st = OutageState(live=store.find(live=True))
    for o in st.live:
        st.located[o["location"]] = o
        for p in store.premises_of(int(o["outage_id"])):
            (st.restored if p["restored_at"] is not None else st.out).add(p["premises_id"])
    st.restored -= st.out
    return st


def read_topology(engine: Engine) -> Topology:
    return TopologyStore(engine).snapshot()


def latest_event(engine: Engine) -> int:
    """The newest outage event's id (0: none): what changes whenever an outage does."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(outage_events.c.event_id), 0))).scalar_one())


def _e(v: object) -> str:
    return html.escape(str(v), quote=True)


def _positions(topo: Topology) -> dict[str, tuple[float, float]]:
    """Every premises' and node's position in topology units, y growing northwards."""
    pos: dict[str, tuple[float, float]] = {}
    if topo.places and all(p.x is not None and p.y is not None for p in topo.places.values()):
        for p in topo.places.values():
            assert p.x is not None and p.y is not None
            pos[p.premises_id] = (p.x, p.y)
    else:  # the schematic: a row per feeder, its premises 1 apart; substations to the left
        row = 0.0
        for prim in sorted((n for n in topo.nodes.values() if n.kind == "primary"), key=lambda n: n.node_id):
            for sec_id in sorted(topo.children.get(prim.node_id, [])):
                for feeder_id in sorted(topo.children.get(sec_id, [])):
                    members = sorted(p.premises_id for p in topo.places.values() if p.feeder_id == feeder_id)
                    for k, premises_id in enumerate(members):
                        pos[premises_id] = (4.0 + k, -row)
                    pos[feeder_id] = (3.0, -row)
                    row += 1.0
                row += 0.5
            row += 0.5
        return _nodes_at_centroids(topo, pos, schematic=True)
    for n in topo.nodes.values():
        if n.x is not None and n.y is not None:
            pos[n.node_id] = (n.x, n.y)
    return _nodes_at_centroids(topo, pos, schematic=False)


def _nodes_at_centroids(
    topo: Topology, pos: dict[str, tuple[float, float]], *, schematic: bool
) -> dict[str, tuple[float, float]]:
    """Nodes without a position go where what they feed is: a feeder by its first premises, a
    substation at the middle of its feeders (in the schematic: to their left)."""
    for kind, step in (("feeder", 1.0), ("secondary", 1.5), ("primary", 1.5)):
        for n in topo.nodes.values():
            if n.kind != kind or n.node_id in pos:
                continue
            below = [pos[c] for c in topo.children.get(n.node_id, []) if c in pos]
            if kind == "feeder":
                below = [pos[p.premises_id] for p in topo.places.values() if p.feeder_id == n.node_id]
            if not below:
                continue
            x = min(b[0] for b in below) - (step if schematic or kind == "feeder" else 0.0)
            y = sum(b[1] for b in below) / len(below)
            pos[n.node_id] = (x, y)
    return pos


def map_svg(topo: Topology, state: OutageState, link: Callable[[str], str] | None = None) -> str:
    """The outage map as one ``<svg>`` element (or a sentence when there is no topology);
    ``link``: a hub id's page, each premises with a hub then links to it."""
    if not topo.places and not topo.nodes:
        return "<p id='map' class='muted'>No network topology is loaded (smarthub gdsc --topology FILE).</p>"
    pos = _positions(topo)
    if not pos:
        return "<p id='map' class='muted'>The topology has no premises on any feeder.</p>"
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    span_x, span_y = max(x1 - x0, 1e-9), max(y1 - y0, 1e-9)
    scale = min((MAP_WIDTH - 2 * MARGIN) / span_x, (MAP_MAX_HEIGHT - 2 * MARGIN) / span_y)
    if x1 == x0 and y1 == y0:
        scale = 1.0
    width = span_x * scale + 2 * MARGIN
    height = span_y * scale + 2 * MARGIN

    def at(key: str) -> tuple[float, float]:
        x, y = pos[key]
        return MARGIN + (x - x0) * scale, MARGIN + (y1 - y) * scale

    parts: list[str] = []
    hot = _hot_nodes(topo, state)
    hub_at = {premises_id: hub for hub, premises_id in topo.hub_premises.items()}
    chains: dict[str, list[tuple[float, float]]] = {}
    gaps: list[float] = []
    for f in sorted((n for n in topo.nodes.values() if n.kind == "feeder"), key=lambda n: n.node_id):
        homes = [
            at(p.premises_id)
            for p in topo.places.values()
            if p.feeder_id == f.node_id and p.premises_id in pos
        ]
        chain = [at(f.parent_id)] if f.parent_id and f.parent_id in pos else []
        if f.node_id in pos:
            chain.append(at(f.node_id))
        anchor = chain[0] if chain else (homes[0] if homes else (0.0, 0.0))
        homes.sort(key=lambda xy: math.dist(anchor, xy))  # along the street, away from the substation
        gaps += [math.dist(a, b) for a, b in itertools.pairwise(homes)]
        chains[f.node_id] = chain + homes
    # The spacing of neighbouring premises sets the size of the dots (they must not overlap).
    gaps.sort()
    r = min(4.0, max(1.5, 0.4 * gaps[len(gaps) // 2])) if gaps else 4.0

    for n in sorted(topo.nodes.values(), key=lambda n: n.node_id):
        if n.parent_id and n.node_id in pos and n.parent_id in pos and n.kind != "feeder":
            (ax, ay), (bx, by) = at(n.node_id), at(n.parent_id)
            colour = OUT if n.node_id in hot or n.parent_id in state.located else LINE
            parts.append(
                f'<line x1="{ax:.1f}" y1="{ay:.1f}" x2="{bx:.1f}" y2="{by:.1f}" stroke="{colour}" '
                'stroke-width="1.5" stroke-dasharray="4 3"/>'
            )
    for f in sorted((n for n in topo.nodes.values() if n.kind == "feeder"), key=lambda n: n.node_id):
        chain = chains[f.node_id]
        if len(chain) < 2:
            continue
        colour = OUT if f.node_id in hot else LINE
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in chain)
        title = f"LV feeder {f.name or f.node_id}: {topo.customers.get(f.node_id, 0)} premises"
        parts.append(
            f'<polyline class="feeder" data-id="{_e(f.node_id)}" points="{points}" fill="none" '
            f'stroke="{colour}" stroke-width="{3 if f.node_id in hot else 1.5}">'
            f"<title>{_e(title)}</title></polyline>"
        )
    for p in sorted(topo.places.values(), key=lambda p: p.premises_id):
        if p.premises_id not in pos:
            continue
        x, y = at(p.premises_id)
        if p.premises_id in state.out:
            colour, what = OUT, "no supply"
        elif p.premises_id in state.restored:
            colour, what = RESTORED, "restored"
        elif p.premises_id in state.silent:
            colour, what = SILENT, "hub silent"
        else:
            colour, what = NORMAL, "supplied"
        circle = (
            f'<circle class="premises {what.replace(" ", "-")}" data-id="{_e(p.premises_id)}" cx="{x:.1f}" '
            f'cy="{y:.1f}" r="{r}" fill="{colour}"><title>{_e(p.premises_id)} ({_e(p.phase)}, '
            f"{_e(p.feeder_id)}): {what}</title></circle>"
        )
        hub = hub_at.get(p.premises_id)
        parts.append(f'<a href="{_e(link(hub))}">{circle}</a>' if link and hub else circle)
    for n in sorted(topo.nodes.values(), key=lambda n: n.node_id):
        if n.kind == "feeder" or n.node_id not in pos:
            continue
        x, y = at(n.node_id)
        side = 12.0 if n.kind == "primary" else 8.0
        colour = OUT if n.node_id in state.located else "#33415c"
        title = f"{'primary' if n.kind == 'primary' else 'secondary'} substation {n.name or n.node_id}"
        if n.node_id in state.located:
            o = state.located[n.node_id]
            title += f": outage #{o['outage_id']}, {o['customers']} customers"
        parts.append(
            f'<rect class="{n.kind}" data-id="{_e(n.node_id)}" x="{x - side / 2:.1f}" y="{y - side / 2:.1f}" '
            f'width="{side}" height="{side}" fill="{colour}"><title>{_e(title)}</title></rect>'
        )
    for o in state.live:
        if o["location"] not in pos:
            continue
        x, y = at(o["location"])
        parts.append(
            f'<text class="outage-label" x="{x + 10:.1f}" y="{y - 8:.1f}" font-size="12" fill="{OUT}">'
            f"#{o['outage_id']} {_e(o['level'])} {_e(o['location'])}: {o['customers']} customers</text>"
        )
    return (
        f'<svg id="map" width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'role="img" aria-label="outage map: {len(topo.places)} premises, '
        f"{sum(1 for n in topo.nodes.values() if n.kind == 'feeder')} feeders, "
        f'{len(state.live)} live outages">'
        f"{''.join(parts)}</svg>"
    )


def _hot_nodes(topo: Topology, state: OutageState) -> set[str]:
    """The nodes a live outage is at, and every node below them."""
    located = [n for n in state.located if n in topo.nodes]
    return {n for n in topo.under(located) if n in topo.nodes}


def legend() -> str:
    items = [
        (NORMAL, "circle", "premises supplied"),
        (OUT, "circle", "premises without supply (last gasp, no restoration yet)"),
        (RESTORED, "circle", "premises restored, outage still open"),
        (SILENT, "circle", "hub not answering, no last gasp (dead hub or WAN fault)"),
        ("#33415c", "rect", "substation"),
        (OUT, "line", "feeder or substation of a live outage"),
    ]
    out = []
    for colour, shape, text in items:
        mark = {
            "circle": f'<circle cx="8" cy="8" r="4" fill="{colour}"/>',
            "rect": f'<rect x="3" y="3" width="10" height="10" fill="{colour}"/>',
            "line": f'<line x1="0" y1="8" x2="16" y2="8" stroke="{colour}" stroke-width="3"/>',
        }[shape]
        out.append(f'<span><svg width="16" height="16" aria-hidden="true">{mark}</svg> {_e(text)}</span>')
    return "<p class='legend'>" + " &nbsp; ".join(out) + "</p>"


def _parse(t: object) -> datetime | None:
    if t is None:
        return None
    return t if isinstance(t, datetime) else datetime.fromisoformat(str(t))


def timeline_svg(rows: Sequence[Mapping[str, Any]], now: datetime, width: float = MAP_WIDTH) -> str:
    """One bar per outage (``OutageStore.find`` rows, newest first), oldest at the top."""
    rows = list(rows)[:TIMELINE_ROWS][::-1]
    if not rows:
        return "<p id='timeline' class='muted'>No outage yet.</p>"
    spans = []
    for o in rows:
        start = _parse(o.get("started")) or _parse(o["opened"])
        assert start is not None
        end = _parse(o.get("closed")) or now
        spans.append((o, start, max(end, start)))
    t0 = min(s for _, s, _ in spans)
    t1 = max(max(e for _, _, e in spans), t0 + timedelta(minutes=1))
    label_w, row_h, top = 260.0, 18.0, 24.0
    plot_w = width - label_w - 80  # room on the right for the last bar's length
    total = (t1 - t0).total_seconds()

    def x(t: datetime) -> float:
        return label_w + plot_w * (t - t0).total_seconds() / total

    parts = []
    for k in range(5):  # the time axis: five ticks
        t = t0 + (t1 - t0) * k / 4
        parts.append(
            f'<line x1="{x(t):.1f}" y1="{top - 4}" x2="{x(t):.1f}" y2="{top + row_h * len(spans)}" '
            f'stroke="#ddd"/><text x="{x(t):.1f}" y="{top - 8}" font-size="11" text-anchor="middle">'
            f"{t:%m-%d %H:%M}</text>"
        )
    for i, (o, start, end) in enumerate(spans):
        y = top + i * row_h
        live = o.get("closed") is None
        colour = OUT if live else "#5b6b8c"
        w = max(x(end) - x(start), 2.0)
        duration = o.get("duration_s")
        length = "open" if live or duration is None else f"{int(duration) // 60} min"
        title = (
            f"outage #{o['outage_id']} {o['level']} {o['location']}: {o['customers']} customers, "
            f"{o['restored']}/{o['premises_heard']} restored, from {start:%Y-%m-%d %H:%M:%S} "
            + ("(still open)" if live else f"to {end:%Y-%m-%d %H:%M:%S}")
        )
        parts.append(
            f'<text x="0" y="{y + 13}" font-size="12">#{o["outage_id"]} {_e(o["level"])} '
            f"{_e(o['location'])} · {o['customers']}</text>"
            f'<rect class="outage {"live" if live else "closed"}" data-id="{o["outage_id"]}" '
            f'x="{x(start):.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{colour}">'
            f"<title>{_e(title)}</title></rect>"
            f'<text x="{x(start) + w + 4:.1f}" y="{y + 13}" font-size="11" fill="#555">{_e(length)}</text>'
        )
    height = top + row_h * len(spans) + 8
    return (
        f'<svg id="timeline" width="{width:.0f}" height="{height:.0f}" role="img" '
        f'aria-label="timeline of {len(spans)} outages">{"".join(parts)}</svg>'
    )


__all__ = [
    "OutageState",
    "latest_event",
    "legend",
    "map_svg",
    "outage_state",
    "read_topology",
    "timeline_svg",
]
