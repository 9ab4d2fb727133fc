"""``/v1/outages``: the network operator's outages (live list, history, per node), one outage with
its premises and restoration times, and the push stream of outage events (Server-Sent Events).

Every request is decided by the access policy (``network-read``): a network operator sees the
outages on the part of the network it operates now (its areas and everything under them), the
GDSC operator every outage, nobody else any. The outages themselves are what the GDSC's alert
endpoint and correlator stored (:mod:`smarthub.gdsc.outages`); the API only reads them, so it may
run in another process than ``smarthub gdsc --alerts``.

**Why Server-Sent Events and not a webhook:** the operator's control room opens the stream from
inside its own network (no inbound firewall opening, no endpoint of theirs the GDSC must reach
and retry), reconnects with ``Last-Event-ID`` and gets every event it missed from the stored
event log (``outage_events``), in order, exactly once per connection; the same mutual TLS or
OAuth2 credentials as every other call authenticate it. A stream ends after ``max_seconds``
(default 5 min) and the client reconnects; ``follow=false`` returns the backlog and ends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Path, Query
from fastapi.responses import StreamingResponse

from smarthub.gdsc.api.deps import ApiServices, Caller, Instant, Services
from smarthub.gdsc.api.schemas import ERRORS, OutageDetail, OutageOut, OutagePage
from smarthub.gdsc.governance.access import Action
from smarthub.gdsc.governance.parties import Role
from smarthub.gdsc.outages.store import OutageStore
from smarthub.gdsc.outages.topology import Topology, TopologyStore

router = APIRouter()
EVENT_ID = r"^[0-9]{1,18}$"

POLL_S = 1.0  # how often a following stream looks for new events
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing an idle stream


def area_of(api: ApiServices, party: str, topo: Topology) -> set[str] | None:
    """The nodes and premises the party may see now (None: everything, the GDSC operator)."""
    if api.guard.parties.party(party).role is Role.OPERATOR:
        return None
    now = api.guard.clock.now()
    nodes = [o.subject for o in api.guard.parties.areas_of(party) if o.covers(now)]
    return topo.under(nodes)


def _out(row: dict[str, Any]) -> OutageOut:
    return OutageOut.model_validate({k: row[k] for k in OutageOut.model_fields})


@router.get("/v1/outages", response_model=OutagePage, responses=ERRORS)
def list_outages(
    party: Caller,
    api: Services,
    live: Annotated[bool | None, Query(description="true: open outages; false: closed; absent: both")] = None,
    node: Annotated[
        str | None, Query(max_length=64, description="only outages at or under this node")
    ] = None,
    since: Instant | None = None,
    until: Instant | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> OutagePage:
    """Outages on the caller's part of the network (or under ``node``), newest first."""
    api.guard.require(party, Action.NETWORK_READ, group_id=node, detail={"list": "outages"})
    operator = api.guard.parties.party(party).role is Role.OPERATOR
    area: set[str] | None = None
    if node is not None or not operator:  # the GDSC operator's whole list needs no map
        topo = TopologyStore(api.engine).snapshot()
        area = area_of(api, party, topo)
        if node is not None:
            scope = topo.under([node]) | {node}
            area = scope if area is None else area & scope
    rows = OutageStore(api.engine).find(live=live, since=since, until=until, limit=100_000 if area else limit)
    return OutagePage(outages=[_out(r) for r in rows if area is None or r["location"] in area][:limit])


@router.get("/v1/outages/events", response_class=StreamingResponse, responses=ERRORS)
def outage_events(
    party: Caller,
    api: Services,
    after: Annotated[
        int, Query(ge=0, le=2**62, description="the last event id seen (or send Last-Event-ID)")
    ] = 0,
    follow: Annotated[bool, Query(description="keep the stream open for new events")] = True,
    max_seconds: Annotated[float, Query(gt=0, le=3600)] = 300.0,
    last_event_id: Annotated[
        str | None,
        Header(
            pattern=EVENT_ID,
            description="an event id, as `after` (up to 18 digits)",
            # absent or an event id: a header has no null, so the schema has no null branch
            json_schema_extra={"anyOf": [{"type": "string", "pattern": EVENT_ID}]},
        ),
    ] = None,
) -> StreamingResponse:
    """Outage events (opened, grew, merged, restored, closed) on the caller's part of the network,
    as Server-Sent Events: ``id`` the event id, ``event`` its kind, ``data`` JSON."""
    api.guard.require(party, Action.NETWORK_READ, detail={"stream": "outage events"})
    if last_event_id is not None:
        if not last_event_id.isdigit() or len(last_event_id) > 18:
            raise HTTPException(400, "Last-Event-ID must be an event id (up to 18 digits)")
        after = max(after, int(last_event_id))
    area = area_of(api, party, TopologyStore(api.engine).snapshot())
    store = OutageStore(api.engine)

    def stream() -> Iterator[bytes]:
        nonlocal after
        end = time.monotonic() + max_seconds
        quiet_since = time.monotonic()
        yield b"retry: 5000\n\n"
        while True:
            batch = store.events_after(after, 500)
            for e in batch:
                after = e["event_id"]
                if area is not None and e["location"] not in area:
                    continue
                yield f"id: {after}\nevent: {e['kind']}\ndata: {json.dumps(e, sort_keys=True)}\n\n".encode()
                quiet_since = time.monotonic()
            if len(batch) == 500:
                continue
            if not follow or time.monotonic() >= end:
                return
            if time.monotonic() - quiet_since >= KEEPALIVE_S:
                yield b": keep-alive\n\n"
                quiet_since = time.monotonic()
            time.sleep(POLL_S)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


@router.get("/v1/outages/{outage_id}", response_model=OutageDetail, responses=ERRORS)
def get_outage(
    party: Caller, api: Services, outage_id: Annotated[int, Path(ge=1, le=2**31 - 1)]
) -> OutageDetail:
    """One outage: its premises, when each lost and regained supply (by the meter's records)."""
    store = OutageStore(api.engine)
    row = store.get(outage_id)
    if row is None:
        raise HTTPException(404, f"no outage {outage_id}")
    api.guard.require(party, Action.NETWORK_READ, group_id=row["location"], detail={"outage": outage_id})
    premises = store.premises_of(outage_id)
    topo = TopologyStore(api.engine).snapshot()
    loc = row["location"]
    path = [loc, *(topo.path(loc) if loc in topo.places else _above(topo, loc))]
    restored = [p["restored_at"] for p in premises if p["restored_at"] is not None]
    return OutageDetail.model_validate(
        {
            **_out(row).model_dump(),
            "path": path,
            "restored_by": max(restored) if restored and len(restored) == len(premises) else None,
            "premises": premises,
        }
    )


def _above(topo: Topology, node_id: str) -> list[str]:
    out: list[str] = []
    node = topo.nodes.get(node_id)
    while node is not None and node.parent_id:
        out.append(node.parent_id)
        node = topo.nodes.get(node.parent_id)
    return out
