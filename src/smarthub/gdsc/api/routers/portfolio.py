"""``/v1/portfolio``: a non-domestic customer's sites and their consumption, each site's data
only from the customer's own tenancy there."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import Engine

from smarthub.gdsc.api import mappers
from smarthub.gdsc.api.deps import Caller, Instant, Services, period
from smarthub.gdsc.api.schemas import (
    ERRORS,
    PortfolioConsumption,
    PortfolioPage,
    ServedGranularity,
    SiteConsumption,
    SiteMeter,
    SiteOut,
)
from smarthub.gdsc.governance.access import Action
from smarthub.gdsc.readings import queries

router = APIRouter()


def sites_of(engine: Engine, party: str) -> dict[str, list[tuple[datetime, datetime | None]]]:
    out: dict[str, list[tuple[datetime, datetime | None]]] = {}
    for premises_id, start, end in queries.customer_sites(engine, party):
        out.setdefault(premises_id, []).append((start, end))
    return out


@router.get("/v1/portfolio", response_model=PortfolioPage, responses=ERRORS)
def list_portfolio(
    party: Caller,
    api: Services,
    after: Annotated[str | None, Query(max_length=64, description="the last premises id seen")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> PortfolioPage:
    """A customer's sites: every premises it occupies or occupied, with its meters."""
    held = sites_of(api.engine, party)
    decision = api.guard.require(party, Action.PORTFOLIO, group=frozenset(held), detail={"op": "list"})
    ids = [p for p, _ in decision.sites if after is None or p > after]
    page = ids[:limit]
    now = api.guard.clock.now()
    return PortfolioPage(
        customer_id=party,
        sites=[
            SiteOut(
                premises_id=p,
                occupied=held[p],
                current=any(s <= now and (e is None or now < e) for s, e in held[p]),
                meters=[
                    SiteMeter(meter_id=m.meter_id, fuel=m.fuel)
                    for m in queries.premises_meter_list(api.engine, p)
                ],
            )
            for p in page
        ],
        next_after=page[-1] if len(ids) > limit else None,
    )


@router.get("/v1/portfolio/consumption", response_model=PortfolioConsumption, responses=ERRORS)
def portfolio_consumption(
    party: Caller,
    api: Services,
    start: Instant,
    end: Instant,
    granularity: ServedGranularity,
    fuel: Annotated[str, Query(max_length=16)] = "electricity",
    obis: Annotated[str, Query(max_length=32)] = "1-0:1.8.0",
    after: Annotated[str | None, Query(max_length=64, description="the last premises id seen")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> PortfolioConsumption:
    """Consumption per site (this page of sites) and in total (every site), each site's data
    only from the customer's own tenancy there."""
    asked = period(start, end)
    held = sites_of(api.engine, party)
    decision = api.guard.require(
        party,
        Action.PORTFOLIO,
        group=frozenset(held),
        granularity=granularity.level,
        period=asked,
        detail={"op": "consumption", "fuel": fuel, "obis": obis},
    )
    tz = asked.start.tzinfo
    per_site: list[SiteConsumption] = []
    total: dict[int, list[int]] = {}
    listed = [p for p, _ in decision.sites if after is None or p > after][:limit]
    for premises_id, ranges in decision.sites:
        sums: dict[int, list[int]] = {}
        for m in queries.premises_meter_list(api.engine, premises_id):
            if m.fuel == fuel:
                for b in queries.iter_readings(api.engine, m, obis, ranges, granularity.level):
                    mappers.add(sums, b.start, b.duration, b.value, b.power_of_ten, b.uom, 1)
        for s, (d, v, p10, uom, n) in sums.items():
            mappers.add(total, s, d, v, p10, uom, n)
        if premises_id in listed:
            per_site.append(
                SiteConsumption(
                    premises_id=premises_id,
                    allowed=[(r.start, r.end) for r in ranges],
                    readings=mappers.site_readings(sums, tz),
                )
            )
    remaining = [p for p, _ in decision.sites if after is None or p > after]
    return PortfolioConsumption(
        customer_id=party,
        fuel=fuel,
        obis=obis,
        granularity=granularity,
        sites=per_site,
        total=mappers.site_readings(total, tz),
        next_after=listed[-1] if len(remaining) > limit else None,
    )
