"""``/v1/premises/{premises_id}/appliances``: per-appliance consumption from the premises' smart
plugs (issue 25), under its own data kind and scope (``appliances``, ``appliances:read``).

What is served is what the hubs let out (a plug leaves the home only under a consent covering
appliances, :mod:`smarthub.hub.privacy`) and the GDSC pulled
(:mod:`smarthub.gdsc.readings.appliances`): each plug's energy, summed to the granularity granted
within the ranges the access policy allows, with the starts and seconds run its hub counted from
the plug's demand (:mod:`smarthub.hub.appliance_runs`: what short-cycling is judged by). A consent
to appliances gives no supply meter: the whole-home readings stay behind ``/readings`` and their
own consent.
"""

from datetime import timedelta

from fastapi import APIRouter, HTTPException

from smarthub.gdsc.api import mappers
from smarthub.gdsc.api.deps import Caller, Id, Instant, Services, period
from smarthub.gdsc.api.schemas import ERRORS, ApplianceOut, AppliancesPage, ServedGranularity
from smarthub.gdsc.governance.access import Action
from smarthub.gdsc.readings import queries
from smarthub.gdsc.readings.appliances import ApplianceRegistry
from smarthub.model.obis import IMPORT_ACTIVE_ENERGY
from smarthub.model.reading_type import APPLIANCE_RUN_SECONDS, APPLIANCE_STARTS

router = APIRouter()

# One answer holds every plug's readings: a period is at most this long (ask again for more).
MAX_PERIOD = timedelta(days=31)


@router.get("/v1/premises/{premises_id}/appliances", response_model=AppliancesPage, responses=ERRORS)
def get_appliances(
    party: Caller,
    api: Services,
    premises_id: Id,
    start: Instant,
    end: Instant,
    granularity: ServedGranularity,
) -> AppliancesPage:
    """Every smart plug the GDSC pulled from the premises' hubs, with its appliance's name and its
    energy at ``granularity`` in [start, end) (at most 31 days) as far as the caller may see."""
    asked = period(start, end)
    if asked.end - asked.start > MAX_PERIOD:
        raise HTTPException(400, f"a period of at most {MAX_PERIOD.days} days: ask again for more")
    decision = api.guard.require(
        party,
        Action.READ_APPLIANCES,
        premises_id=premises_id,
        fuel="electricity",
        granularity=granularity.level,
        period=asked,
    )
    out = []
    for point in ApplianceRegistry(api.engine).at_premises(premises_id):
        meter = queries.Meter(point.hub_id, point.meter_id, "electricity")
        served = {
            obis: [
                mappers.reading_out(b, asked.start.tzinfo)
                for b in queries.readings(api.engine, meter, str(obis), decision.ranges, granularity.level)
            ]
            for obis in (IMPORT_ACTIVE_ENERGY, APPLIANCE_STARTS, APPLIANCE_RUN_SECONDS)
        }
        out.append(
            ApplianceOut(
                meter_id=point.meter_id,
                name=point.name,
                first_seen=point.first_seen,
                readings=served[IMPORT_ACTIVE_ENERGY],
                starts=served[APPLIANCE_STARTS],
                run_seconds=served[APPLIANCE_RUN_SECONDS],
            )
        )
    return AppliancesPage(
        premises_id=premises_id,
        granularity=granularity,
        allowed=[(r.start, r.end) for r in decision.ranges],
        appliances=out,
    )
