"""The distribution network's topology in the registry: premises → phase → LV feeder →
secondary substation → primary substation.

What the GDSC needs it for: to correlate last gasps into one outage per fault location
(:mod:`.correlate`), to know the customers a fault affects, to summarise power quality per feeder,
and to bound a network operator's DUoS data to the premises in its area (``operator_areas``).

Loaded from a file the network operator keeps — CSV (one row per premises) or GeoJSON (a Point
feature per premises, optional Point features for substations) — and editable one node or one
premises at a time through the API. Parsing is pure (:func:`parse_csv`, :func:`parse_geojson`:
text in, :class:`TopologyFile` out, :class:`TopologyError` naming the row on a mistake); the
store writes a parsed file in one transaction.

Feeders are also the aggregation groups of :mod:`smarthub.gdsc.governance.aggregates`: loading a
topology assigns every premises to the group ``feeder:<id>`` (a partition, as that module needs).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Engine, Float, String, Table, delete, select

from smarthub.gdsc.db.database import metadata

KINDS = ("primary", "secondary", "feeder")
PHASES = ("L1", "L2", "L3", "3ph")
CSV_COLUMNS = ("premises_id", "phase", "feeder", "secondary_substation", "primary_substation")

topology_nodes = Table(
    "topology_nodes",
    metadata,
    Column("node_id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # primary / secondary / feeder
    Column("parent_id", String(64)),  # a feeder's secondary, a secondary's primary
    Column("name", String(200), nullable=False, default=""),
    Column("x", Float),  # map position: easting / longitude
    Column("y", Float),  # northing / latitude
)

premises_topology = Table(
    "premises_topology",
    metadata,
    Column("premises_id", String(64), primary_key=True),
    Column("feeder_id", String(64), nullable=False, index=True),
    Column("phase", String(4), nullable=False),
    Column("x", Float),
    Column("y", Float),
)

# The part of the network a network operator operates, and since when: its DUoS data set covers
# the premises under these nodes for these periods (smarthub.gdsc.governance.access).
operator_areas = Table(
    "operator_areas",
    metadata,
    Column("operator_id", String(64), primary_key=True),
    Column("node_id", String(64), primary_key=True),
    Column("start", DateTime(timezone=True), primary_key=True),
    Column("end", DateTime(timezone=True)),
)


class TopologyError(ValueError):
    """A topology file or edit that cannot be taken; the message names the row and field."""


@dataclass(frozen=True, slots=True)
class Node:
    node_id: str
    kind: str
    parent_id: str | None = None
    name: str = ""
    x: float | None = None
    y: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TopologyError(f"node {self.node_id!r}: kind must be one of {', '.join(KINDS)}")
        if not self.node_id or len(self.node_id) > 64:
            raise TopologyError("a node id is 1-64 characters")
        if (self.kind == "primary") != (self.parent_id is None):
            raise TopologyError(f"node {self.node_id!r}: only a primary substation has no parent")


@dataclass(frozen=True, slots=True)
class Place:
    """Where a premises is on the network."""

    premises_id: str
    feeder_id: str
    phase: str
    x: float | None = None
    y: float | None = None

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise TopologyError(f"premises {self.premises_id!r}: phase must be one of {', '.join(PHASES)}")
        if not self.premises_id or not self.feeder_id:
            raise TopologyError("a premises and its feeder must be named")


@dataclass
class TopologyFile:
    nodes: dict[str, Node] = field(default_factory=dict)
    places: dict[str, Place] = field(default_factory=dict)

    def add_chain(self, where: str, feeder: str, secondary: str, primary: str) -> None:
        for node in (
            Node(primary, "primary"),
            Node(secondary, "secondary", primary),
            Node(feeder, "feeder", secondary),
        ):
            old = self.nodes.get(node.node_id)
            if old is None:
                self.nodes[node.node_id] = node
            elif (old.kind, old.parent_id) != (node.kind, node.parent_id):
                raise TopologyError(
                    f"{where}: {node.node_id!r} is a {node.kind} under {node.parent_id!r} here but a "
                    f"{old.kind} under {old.parent_id!r} earlier"
                )

    def check(self) -> None:
        for n in self.nodes.values():
            if n.parent_id is not None:
                parent = self.nodes.get(n.parent_id)
                want = {"feeder": "secondary", "secondary": "primary"}[n.kind]
                if parent is None or parent.kind != want:
                    raise TopologyError(
                        f"node {n.node_id!r}: its parent {n.parent_id!r} is not a known {want}"
                    )
        for p in self.places.values():
            if self.nodes.get(p.feeder_id, Node("x", "primary")).kind != "feeder":
                raise TopologyError(
                    f"premises {p.premises_id!r}: feeder {p.feeder_id!r} is not a known feeder"
                )


def _float(v: Any, where: str) -> float | None:
    if v in (None, ""):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TopologyError(f"{where}: {v!r} is not a number") from None


def parse_csv(text: str) -> TopologyFile:
    """CSV with a header row: ``premises_id, phase, feeder, secondary_substation,
    primary_substation`` and optionally ``x, y`` (the premises' position)."""
    try:
        return _parse_csv(text)
    except csv.Error as err:  # the csv module's own complaints (stray CR, NUL, bad quoting)
        raise TopologyError(f"not CSV: {err}") from None


def _parse_csv(text: str) -> TopologyFile:
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise TopologyError(f"CSV header lacks {', '.join(missing)}")
    out = TopologyFile()
    for i, row in enumerate(reader, start=2):
        where = f"line {i}"
        vals = {c: (row.get(c) or "").strip() for c in CSV_COLUMNS}
        if not all(vals.values()):
            raise TopologyError(f"{where}: every one of {', '.join(CSV_COLUMNS)} is needed")
        out.add_chain(where, vals["feeder"], vals["secondary_substation"], vals["primary_substation"])
        if vals["premises_id"] in out.places:
            raise TopologyError(f"{where}: premises {vals['premises_id']!r} listed twice")
        try:
            out.places[vals["premises_id"]] = Place(
                vals["premises_id"],
                vals["feeder"],
                vals["phase"],
                _float(row.get("x"), where),
                _float(row.get("y"), where),
            )
        except TopologyError as err:
            raise TopologyError(f"{where}: {err}") from None
    out.check()
    return out


def parse_geojson(text: str) -> TopologyFile:
    """A GeoJSON FeatureCollection (RFC 7946): a Point per premises with properties
    ``premises_id, phase, feeder, secondary_substation, primary_substation``; a Point with
    ``node_id`` and ``kind`` places a substation or feeder on the map."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise TopologyError(f"not JSON: {err}") from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise TopologyError("expected a GeoJSON FeatureCollection")
    out = TopologyFile()
    positions: dict[str, tuple[float | None, float | None, str]] = {}
    for i, f in enumerate(doc.get("features") or []):
        where = f"feature {i}"
        if not isinstance(f, dict):
            raise TopologyError(f"{where}: not an object")
        props = f.get("properties") or {}
        geom = f.get("geometry") or {}
        x = y = None
        if geom:
            if geom.get("type") != "Point":
                raise TopologyError(f"{where}: only Point geometries are read")
            coords = geom.get("coordinates")
            if not isinstance(coords, list) or len(coords) < 2:
                raise TopologyError(f"{where}: Point coordinates must be [x, y]")
            x, y = _float(coords[0], where), _float(coords[1], where)
        if "premises_id" in props:
            vals = {c: str(props.get(c) or "").strip() for c in CSV_COLUMNS}
            if not all(vals.values()):
                raise TopologyError(f"{where}: every one of {', '.join(CSV_COLUMNS)} is needed")
            out.add_chain(where, vals["feeder"], vals["secondary_substation"], vals["primary_substation"])
            out.places[vals["premises_id"]] = Place(vals["premises_id"], vals["feeder"], vals["phase"], x, y)
        elif "node_id" in props:
            positions[str(props["node_id"])] = (x, y, str(props.get("name") or ""))
        else:
            raise TopologyError(f"{where}: properties name neither a premises_id nor a node_id")
    for node_id, (x, y, name) in positions.items():
        n = out.nodes.get(node_id)
        if n is None:
            raise TopologyError(f"node {node_id!r} placed on the map but on no premises' path")
        out.nodes[node_id] = Node(n.node_id, n.kind, n.parent_id, name or n.name, x, y)
    out.check()
    return out


def parse(text: str, fmt: str) -> TopologyFile:
    if fmt == "csv":
        return parse_csv(text)
    if fmt in ("geojson", "json"):
        return parse_geojson(text)
    raise TopologyError(f"unknown topology format {fmt!r} (csv or geojson)")


@dataclass
class Topology:
    """A snapshot of the whole topology, for correlation and the map (small: one row per premises)."""

    nodes: dict[str, Node] = field(default_factory=dict)
    places: dict[str, Place] = field(default_factory=dict)
    hub_premises: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.customers: dict[str, int] = {}
        self.children: dict[str, list[str]] = {}
        for n in self.nodes.values():
            if n.parent_id is not None:
                self.children.setdefault(n.parent_id, []).append(n.node_id)
        for p in self.places.values():
            for node in self.path(p.premises_id):
                self.customers[node] = self.customers.get(node, 0) + 1

    def path(self, premises_id: str) -> list[str]:
        """[feeder, secondary, primary] above a premises (empty if it is not on the map)."""
        p = self.places.get(premises_id)
        out: list[str] = []
        node = self.nodes.get(p.feeder_id) if p is not None else None
        while node is not None:
            out.append(node.node_id)
            node = self.nodes.get(node.parent_id) if node.parent_id else None
        return out

    def premises_under(self, node_id: str) -> list[str]:
        return [p for p in self.places if node_id in self.path(p)]

    def under(self, node_ids: Iterable[str]) -> set[str]:
        """The nodes and premises at or below any of ``node_ids`` (a network operator's area)."""
        out: set[str] = set()
        todo = [n for n in node_ids if n in self.nodes]
        while todo:
            n = todo.pop()
            if n not in out:
                out.add(n)
                todo.extend(self.children.get(n, ()))
        out.update(p.premises_id for p in self.places.values() if p.feeder_id in out)
        return out

    def feeders_under(self, node_id: str) -> list[str]:
        return sorted(n for n in self.under([node_id]) if n in self.nodes and self.nodes[n].kind == "feeder")


class TopologyStore:
    """Reads and writes the topology tables."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load(self, file: TopologyFile, *, replace: bool = False) -> tuple[int, int]:
        """Write a parsed file (``replace``: the file is the whole network, others are dropped);
        (nodes, premises) written."""
        from sqlalchemy.dialects import postgresql, sqlite

        ins = sqlite.insert if self.engine.dialect.name == "sqlite" else postgresql.insert
        with self.engine.begin() as conn:
            if replace:
                conn.execute(delete(premises_topology))
                conn.execute(delete(topology_nodes))
            for n in file.nodes.values():
                row = dict(node_id=n.node_id, kind=n.kind, parent_id=n.parent_id, name=n.name, x=n.x, y=n.y)
                conn.execute(
                    ins(topology_nodes)
                    .values(**row)
                    .on_conflict_do_update(index_elements=["node_id"], set_=row)
                )
            for p in file.places.values():
                row = dict(premises_id=p.premises_id, feeder_id=p.feeder_id, phase=p.phase, x=p.x, y=p.y)
                conn.execute(
                    ins(premises_topology)
                    .values(**row)
                    .on_conflict_do_update(index_elements=["premises_id"], set_=row)
                )
        return len(file.nodes), len(file.places)

    def put_node(self, node: Node) -> None:
        current = self.snapshot()
        if node.parent_id is not None:
            parent = current.nodes.get(node.parent_id)
            want = {"feeder": "secondary", "secondary": "primary"}[node.kind]
            if parent is None or parent.kind != want:
                raise TopologyError(
                    f"node {node.node_id!r}: its parent {node.parent_id!r} is not a known {want}"
                )
        self.load(TopologyFile({node.node_id: node}, {}))

    def put_place(self, place: Place) -> None:
        node = self.snapshot().nodes.get(place.feeder_id)
        if node is None or node.kind != "feeder":
            raise TopologyError(
                f"premises {place.premises_id!r}: feeder {place.feeder_id!r} is not a known feeder"
            )
        self.load(TopologyFile({}, {place.premises_id: place}))

    def snapshot(self) -> Topology:
        from smarthub.gdsc.fleet.registry import hubs

        with self.engine.connect() as conn:
            nodes = {
                r.node_id: Node(r.node_id, r.kind, r.parent_id, r.name or "", r.x, r.y)
                for r in conn.execute(select(topology_nodes))
            }
            places = {
                r.premises_id: Place(r.premises_id, r.feeder_id, r.phase, r.x, r.y)
                for r in conn.execute(select(premises_topology))
            }
            hub_premises = {
                r.hub_id: r.premises_id
                for r in conn.execute(
                    select(hubs.c.hub_id, hubs.c.premises_id).where(hubs.c.status == "active")
                )
            }
        return Topology(nodes, places, hub_premises)

    # -- operators' areas ------------------------------------------------------------------
    def assign_area(
        self, operator_id: str, node_id: str, start: datetime, end: datetime | None = None
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                operator_areas.insert().values(operator_id=operator_id, node_id=node_id, start=start, end=end)
            )

    def areas(self, operator_id: str) -> list[tuple[str, datetime, datetime | None]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(operator_areas).where(operator_areas.c.operator_id == operator_id))
            return [(r.node_id, _aware(r.start), _aware(r.end) if r.end else None) for r in rows]

    def feeder_groups(self, groups: Any, now: datetime, since: datetime | None = None) -> int:
        """Every premises on the map joins the aggregation group of its feeder: from ``since``
        where it was in no group (back-dating is allowed only then), else from ``now``.
        ``groups``: an :class:`~smarthub.gdsc.governance.aggregates.AggregationGroups`."""
        topo = self.snapshot()
        n = 0
        for f in (n_ for n_ in topo.nodes.values() if n_.kind == "feeder"):
            gid = f"feeder:{f.node_id}"
            if not groups.exists(gid):
                groups.define(gid, f"LV feeder {f.name or f.node_id}", now)
        for p in topo.places.values():
            gid = f"feeder:{p.feeder_id}"
            current = [m for m in groups.memberships_of(p.premises_id) if m.end is None or m.end > now]
            if current and current[0].group_id == gid:
                continue
            held = groups.memberships_of(p.premises_id)
            groups.assign(p.premises_id, gid, now, start=since if not held else None)
            n += 1
        return n


def _aware(t: datetime) -> datetime:
    from datetime import UTC

    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def feature_collection(topo: Topology) -> dict[str, Any]:
    """The topology as GeoJSON (what :func:`parse_geojson` reads back)."""
    feats: list[dict[str, Any]] = []
    for p in topo.places.values():
        path = topo.path(p.premises_id)
        props: Mapping[str, Any] = {
            "premises_id": p.premises_id,
            "phase": p.phase,
            "feeder": path[0] if path else p.feeder_id,
            "secondary_substation": path[1] if len(path) > 1 else "",
            "primary_substation": path[2] if len(path) > 2 else "",
        }
        feats.append(_feature(p.x, p.y, props))
    for n in topo.nodes.values():
        feats.append(_feature(n.x, n.y, {"node_id": n.node_id, "kind": n.kind, "name": n.name}))
    return {"type": "FeatureCollection", "features": feats}


def _feature(x: float | None, y: float | None, props: Mapping[str, Any]) -> dict[str, Any]:
    geom = {"type": "Point", "coordinates": [x, y]} if x is not None and y is not None else None
    return {"type": "Feature", "geometry": geom, "properties": dict(props)}


def csv_text(rows: Iterable[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[*CSV_COLUMNS, "x", "y"])
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue()
