"""``/v1/network``: what a network operator reads and keeps about its part of the network — the
topology (read as GeoJSON, edited one node or premises at a time, or loaded from a CSV/GeoJSON
file), its **DUoS data set** (every MPAN in its area, half-hourly, for the time it operated it),
**planning aggregates** per feeder or substation, and **power quality** per feeder or substation
(voltage per phase from the hubs' 10-minute statistics, sags and swells).

Decisions (:mod:`smarthub.gdsc.governance.access`): ``network-read`` and ``network-edit`` on the
node concerned (the operator's areas now), ``duos-data-set`` for the data set as a whole and then
``export`` per premises (so each premises' access log shows the operator's read, clipped to the
operator's own period there), ``aggregate-query`` per feeder for planning (groups below k are left
out and named, never released).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from smarthub.gdsc.api.deps import Caller, Id, Instant, Services, period
from smarthub.gdsc.api.routers.outages import area_of
from smarthub.gdsc.api.schemas import (
    ERRORS,
    NodeIn,
    PlaceIn,
    PlanningBucket,
    PlanningOut,
    PowerQualityOut,
    ServedGranularity,
    TopologyFormat,
    TopologyLoaded,
)
from smarthub.gdsc.governance import aggregates
from smarthub.gdsc.governance.access import Action
from smarthub.gdsc.governance.parties import Granularity
from smarthub.gdsc.outages import power_quality as pq
from smarthub.gdsc.outages.topology import (
    Node,
    Place,
    TopologyError,
    TopologyStore,
    feature_collection,
    parse,
)
from smarthub.gdsc.readings import queries

router = APIRouter()

MAX_UPLOAD = 32 * 1024 * 1024  # a topology file of a few hundred thousand premises
DUOS_COLUMNS = (
    "mpan",
    "premises_id",
    "meter_id",
    "obis",
    "start",
    "duration",
    "value",
    "power_of_ten",
    "uom",
)


def _edited(api: Any, now: datetime) -> None:
    """A topology change: every premises on the map in its feeder's aggregation group."""
    topo = TopologyStore(api.engine)
    topo.feeder_groups(aggregates.AggregationGroups(api.engine), now)


# -- topology -------------------------------------------------------------------------------------


@router.get(
    "/v1/network/topology",
    response_class=JSONResponse,
    responses={
        **ERRORS,
        200: {
            "description": "GeoJSON (RFC 7946) FeatureCollection",
            "content": {"application/geo+json": {"schema": {"type": "object"}}},
        },
    },
)
def get_topology(
    party: Caller,
    api: Services,
    node: Annotated[
        str | None, Query(max_length=64, description="only this node and what is under it")
    ] = None,
) -> JSONResponse:
    """The caller's part of the network (or ``node``'s) as GeoJSON: a Point per premises
    (properties: premises_id, phase, feeder, secondary_substation, primary_substation) and per
    substation or feeder that has a position; what ``POST /v1/network/topology`` reads back."""
    api.guard.require(party, Action.NETWORK_READ, group_id=node, detail={"read": "topology"})
    topo = TopologyStore(api.engine).snapshot()
    area = area_of(api, party, topo)
    if node is not None:
        scope = topo.under([node])
        area = scope if area is None else area & scope
    doc = feature_collection(topo)
    if area is not None:
        doc["features"] = [
            f
            for f in doc["features"]
            if f["properties"].get("premises_id", f["properties"].get("node_id")) in area
        ]
    return JSONResponse(doc, media_type="application/geo+json")


@router.put("/v1/network/nodes/{node_id}", response_model=TopologyLoaded, responses=ERRORS)
def put_node(party: Caller, api: Services, node_id: Id, body: NodeIn) -> TopologyLoaded:
    """Add or change a substation or feeder. Decided on its parent (a new node goes under a node
    the caller operates) and, for a node already on the map, on the node itself."""
    store = TopologyStore(api.engine)
    current = store.snapshot().nodes.get(node_id)
    for where in dict.fromkeys(w for w in (body.parent_id, current and node_id) if w) or [node_id]:
        api.guard.require(
            party, Action.NETWORK_EDIT, group_id=where, detail={"node": node_id, **body.model_dump()}
        )
    try:
        store.put_node(Node(node_id, body.kind, body.parent_id, body.name, body.x, body.y))
    except TopologyError as err:
        raise HTTPException(400, str(err)) from None
    return TopologyLoaded(nodes=1, premises=0)


@router.put("/v1/network/premises/{premises_id}", response_model=TopologyLoaded, responses=ERRORS)
def put_premises(party: Caller, api: Services, premises_id: Id, body: PlaceIn) -> TopologyLoaded:
    """Put a premises on a feeder (or move it): decided on the new feeder and on the old one."""
    store = TopologyStore(api.engine)
    old = store.snapshot().places.get(premises_id)
    for where in dict.fromkeys([body.feeder_id, *([old.feeder_id] if old else [])]):
        api.guard.require(
            party, Action.NETWORK_EDIT, group_id=where, detail={"premises": premises_id, **body.model_dump()}
        )
    try:
        store.put_place(Place(premises_id, body.feeder_id, body.phase, body.x, body.y))
    except TopologyError as err:
        raise HTTPException(400, str(err)) from None
    _edited(api, api.guard.clock.now())
    return TopologyLoaded(nodes=0, premises=1)


_FILE = {"schema": {"type": "string"}}


@router.post(
    "/v1/network/topology",
    response_model=TopologyLoaded,
    responses=ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "the topology file (CSV with a header row, or a GeoJSON FeatureCollection)",
            "content": {"text/csv": _FILE, "application/geo+json": _FILE},
        }
    },
)
async def load_topology(
    party: Caller,
    api: Services,
    request: Request,
    format: TopologyFormat = TopologyFormat.CSV,
) -> TopologyLoaded:
    """Load a topology file (as ``smarthub gdsc --topology`` does): decided on every secondary
    substation it puts feeders under, so an operator loads only its own network. All or nothing."""
    raw = await request.body()
    if len(raw) > MAX_UPLOAD:
        raise HTTPException(413, f"a topology file is at most {MAX_UPLOAD} bytes")
    try:
        file = parse(raw.decode("utf-8"), format.value)
        file.check()
    except (TopologyError, UnicodeDecodeError) as err:
        raise HTTPException(400, f"topology file refused: {err}") from None
    # Decided per secondary substation the file puts feeders under (else per top node it names).
    secondaries = {n.parent_id for n in file.nodes.values() if n.kind == "feeder" and n.parent_id}
    tops = {n.node_id for n in file.nodes.values() if n.parent_id is None}
    where: list[str | None] = [*sorted(secondaries or tops)] or [None]
    for node in where:
        api.guard.require(party, Action.NETWORK_EDIT, group_id=node, detail={"load": format.value})
    nodes, places = TopologyStore(api.engine).load(file)
    _edited(api, api.guard.clock.now())
    return TopologyLoaded(nodes=nodes, premises=places)


# -- DUoS data set --------------------------------------------------------------------------------


@router.get(
    "/v1/network/duos",
    response_class=StreamingResponse,
    responses={**ERRORS, 200: {"description": "RFC 4180 CSV", "content": {"text/csv": {}}}},
)
def duos_data_set(
    party: Caller,
    api: Services,
    start: Instant,
    end: Instant,
    obis: Annotated[
        str, Query(max_length=32, description="1-0:1.8.0 import, 1-0:2.8.0 export")
    ] = "1-0:1.8.0",
) -> StreamingResponse:
    """Per-MPAN half-hourly consumption of every premises on the caller's part of the network, for
    the time it operated each (DUoS charging): one ``export`` decision per premises, in its access
    log. CSV columns: mpan, premises_id, meter_id, obis, start, duration, value, power_of_ten, uom."""
    asked = period(start, end)
    api.guard.require(party, Action.DUOS_DATASET, period=asked, detail={"obis": obis})
    topo = TopologyStore(api.engine).snapshot()
    nodes = [o.subject for o in api.guard.parties.areas_of(party) if asked.clip(o.start, o.end) is not None]
    area = sorted(p for p in topo.under(nodes) if p in topo.places)
    mpans = queries.premises_mpans(api.engine, area)

    def rows() -> Iterator[bytes]:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow(DUOS_COLUMNS)
        for premises_id in area:
            for meter in queries.premises_meter_list(api.engine, premises_id):
                if meter.fuel != "electricity":
                    continue
                decision = api.guard.authorize(
                    party,
                    Action.EXPORT,
                    premises_id=premises_id,
                    fuel=meter.fuel,
                    meter_id=meter.meter_id,
                    granularity=Granularity.HALF_HOURLY,
                    period=asked,
                    detail={"data set": "duos", "obis": obis},
                )
                if not decision.allow:
                    continue
                mpan = mpans.get(premises_id) or ""
                for b in queries.iter_readings(
                    api.engine, meter, obis, decision.ranges, Granularity.HALF_HOURLY
                ):
                    t = datetime.fromtimestamp(b.start, UTC).isoformat().replace("+00:00", "Z")
                    w.writerow(
                        (
                            mpan,
                            premises_id,
                            meter.meter_id,
                            obis,
                            t,
                            b.duration,
                            b.value,
                            b.power_of_ten,
                            b.uom,
                        )
                    )
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
        yield buf.getvalue().encode()

    stem = f"duos-{party}-{asked.start:%Y%m%d}-{asked.end:%Y%m%d}"
    return StreamingResponse(
        rows(), media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{stem}.csv"'}
    )


# -- planning aggregates --------------------------------------------------------------------------


@router.get("/v1/network/nodes/{node_id}/planning", response_model=PlanningOut, responses=ERRORS)
def planning(
    party: Caller,
    api: Services,
    node_id: Id,
    start: Instant,
    end: Instant,
    granularity: ServedGranularity = ServedGranularity.HALF_HOURLY,
) -> PlanningOut:
    """Consumption profile, peak and solar export of a feeder or substation: the sums of its
    feeders' aggregates, each released over at least k premises with data (feeders with fewer
    are withheld and named)."""
    asked = period(start, end)
    api.guard.require(party, Action.NETWORK_READ, group_id=node_id, detail={"planning": granularity.value})
    topo = TopologyStore(api.engine).snapshot()
    if node_id not in topo.nodes:
        raise HTTPException(404, f"no network node {node_id!r}")
    feeders, withheld, premises = [], [], 0
    sums: dict[int, list[Any]] = {}  # start -> [duration, import Wh, export Wh]
    now = api.guard.clock.now()
    for f in topo.feeders_under(node_id):
        gid = f"feeder:{f}"
        if not aggregates.AggregationGroups(api.engine).exists(gid):
            withheld.append(f)
            continue
        members = aggregates.group_members(api.engine, gid, asked)
        decision = api.guard.authorize(
            party,
            Action.AGGREGATE_QUERY,
            group=members,
            group_id=gid,
            granularity=granularity.level,
            period=asked,
        )
        if not decision.allow:
            withheld.append(f)
            continue
        feeders.append(f)
        premises += len(members)
        for i, obis in ((1, "1-0:1.8.0"), (2, "1-0:2.8.0")):
            for b in aggregates.aggregate(
                api.engine, gid, "electricity", obis, decision.ranges[0], granularity.level, now,
                api.guard.policy.k_anonymity,
            ):  # fmt: skip
                acc = sums.setdefault(b.start, [b.duration, None, None])
                acc[i] = (acc[i] or 0.0) + b.value * 10.0**b.power_of_ten
    profile = [
        PlanningBucket(start=datetime.fromtimestamp(s, UTC), duration=d, import_wh=imp, export_wh=exp)
        for s, (d, imp, exp) in sorted(sums.items())
    ]
    peaks = [(b.import_wh * 3600 / b.duration, b.start) for b in profile if b.import_wh is not None]
    peak = max(peaks, default=None)
    return PlanningOut(
        node_id=node_id,
        feeders=feeders,
        withheld=withheld,
        premises=premises,
        granularity=granularity,
        profile=profile,
        peak_import_w=peak[0] if peak else None,
        peak_at=peak[1] if peak else None,
        import_kwh=sum(b.import_wh or 0.0 for b in profile) / 1000,
        export_kwh=sum(b.export_wh or 0.0 for b in profile) / 1000,
    )


# -- power quality --------------------------------------------------------------------------------


@router.get("/v1/network/nodes/{node_id}/power-quality", response_model=PowerQualityOut, responses=ERRORS)
def power_quality(party: Caller, api: Services, node_id: Id, start: Instant, end: Instant) -> PowerQualityOut:
    """Voltage per phase under a feeder or substation (10-minute means: their average, the share
    inside 230 V ± 10 %, the extremes), the sags and swells the meters counted, and the power
    failures: short and long as the meters counted them, the long ones' minutes from their logs."""
    asked = period(start, end)
    api.guard.require(party, Action.NETWORK_READ, group_id=node_id, detail={"power quality": True})
    topo = TopologyStore(api.engine).snapshot()
    if node_id not in topo.nodes:
        raise HTTPException(404, f"no network node {node_id!r}")
    under = sorted(p for p in topo.under([node_id]) if p in topo.places)
    span = int(asked.start.timestamp()), int(asked.end.timestamp())
    phases = pq.summarise(api.engine, under, *span)
    return PowerQualityOut.model_validate(
        {
            "node_id": node_id,
            "premises": len(under),
            "start": asked.start,
            "end": asked.end,
            "phases": phases,
            "en50160": pq.en50160(phases),
            "failures": pq.failures(api.engine, under, *span),
        }
    )
