"""``/v1/aggregates/readings``: sums over pre-defined groups of premises, released once."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from smarthub.gdsc.api import mappers
from smarthub.gdsc.api.deps import Caller, Instant, Services, period
from smarthub.gdsc.api.schemas import ERRORS, AggregatePage, ServedGranularity
from smarthub.gdsc.governance import aggregates
from smarthub.gdsc.governance.access import Action

router = APIRouter()


@router.get("/v1/aggregates/readings", response_model=AggregatePage, responses=ERRORS)
def get_aggregate(
    party: Caller,
    api: Services,
    group: Annotated[str, Query(min_length=1, max_length=64, description="a group the GDSC defined")],
    start: Instant,
    end: Instant,
    granularity: ServedGranularity,
    fuel: Annotated[str, Query(max_length=16)] = "electricity",
    obis: Annotated[str, Query(max_length=32)] = "1-0:1.8.0",
) -> AggregatePage:
    """Sums over a pre-defined group of premises (e.g. a feeder), never over a list the caller
    chooses: each half-hour is released once it is settled, over at least k premises with data,
    and never changes afterwards (``smarthub.gdsc.governance.aggregates``)."""
    asked = period(start, end)
    if not aggregates.AggregationGroups(api.engine).exists(group):
        raise HTTPException(404, f"no aggregation group {group!r}")
    members = aggregates.group_members(api.engine, group, asked)
    decision = api.guard.require(
        party,
        Action.AGGREGATE_QUERY,
        group=members,
        group_id=group,
        granularity=granularity.level,
        period=asked,
        detail={"fuel": fuel, "obis": obis},
    )
    try:
        buckets = aggregates.aggregate(
            api.engine,
            group,
            fuel,
            obis,
            decision.ranges[0],
            granularity.level,
            api.guard.clock.now(),
            api.guard.policy.k_anonymity,
        )
    except aggregates.MixedUnits as err:  # as the portfolio answers the same case
        raise HTTPException(
            400, f"cannot sum readings in different units: {err}; ask for one OBIS code"
        ) from err
    return AggregatePage(
        group=group,
        group_size=len(members),
        granularity=granularity,
        readings=[mappers.aggregate_out(b, asked.start.tzinfo) for b in buckets],
    )
