"""``/v1/premises/{premises_id}/readings``: one meter's readings by granularity, as JSON pages or
exported whole (CSV or Parquet), within what the access policy allows the caller."""

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from smarthub.gdsc.api import mappers
from smarthub.gdsc.api.deps import MAX_PAGE, ApiServices, Caller, Id, Instant, Services, period
from smarthub.gdsc.api.schemas import ERRORS, ExportFormat, ReadingsPage, ServedGranularity
from smarthub.gdsc.governance.access import Action, Decision, TimeRange
from smarthub.gdsc.governance.parties import Granularity
from smarthub.gdsc.readings import export, queries

router = APIRouter()


def meter_readings_access(
    api: ApiServices,
    party: str,
    action: Action,
    premises_id: str,
    meter_id: str,
    granularity: Granularity,
    asked: TimeRange,
    detail: dict[str, Any] | None = None,
) -> tuple[queries.Meter, Decision]:
    """One meter's readings, read or exported: the meter at the premises (else 404), and the
    guard's decision (denied: 403, recorded in the audit)."""
    meter = queries.find_meter(api.engine, premises_id, meter_id)
    decision = api.guard.require(
        party,
        action,
        premises_id=premises_id,
        fuel=meter.fuel,
        meter_id=meter_id,
        granularity=granularity,
        period=asked,
        detail=detail,
    )
    return meter, decision


@router.get("/v1/premises/{premises_id}/readings", response_model=ReadingsPage, responses=ERRORS)
def get_readings(
    party: Caller,
    api: Services,
    premises_id: Id,
    meter_id: Annotated[str, Query(min_length=1, max_length=64)],
    start: Instant,
    end: Instant,
    granularity: ServedGranularity,
    obis: Annotated[str, Query(max_length=32)] = "1-0:1.8.0",
    after: Annotated[
        int | None, Query(ge=0, le=2**40, description="epoch seconds of the last start seen")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
) -> ReadingsPage:
    asked = period(start, end)
    meter, decision = meter_readings_access(
        api, party, Action.READ_READINGS, premises_id, meter_id, granularity.level, asked
    )
    buckets = queries.readings(api.engine, meter, obis, decision.ranges, granularity.level)
    if after is not None:
        buckets = [b for b in buckets if b.start > after]
    page = buckets[:limit]
    return ReadingsPage(
        premises_id=premises_id,
        meter_id=meter_id,
        obis=obis,
        granularity=granularity,
        allowed=[(r.start, r.end) for r in decision.ranges],
        readings=[mappers.reading_out(b, asked.start.tzinfo) for b in page],
        next_after=page[-1].start if len(buckets) > limit else None,
    )


@router.get(
    "/v1/premises/{premises_id}/readings/export",
    response_class=StreamingResponse,
    responses={
        **ERRORS,
        200: {
            "description": "the readings as CSV (RFC 4180, header line) or Parquet, streamed",
            "content": {export.CSV_MEDIA_TYPE: {}, export.PARQUET_MEDIA_TYPE: {}},
        },
    },
)
def export_readings(
    party: Caller,
    api: Services,
    premises_id: Id,
    meter_id: Annotated[str, Query(min_length=1, max_length=64)],
    start: Instant,
    end: Instant,
    granularity: ServedGranularity,
    format: ExportFormat = ExportFormat.CSV,
    obis: Annotated[str, Query(max_length=32)] = "1-0:1.8.0",
) -> StreamingResponse:
    """The readings query's data, whole, as a file: same policy, granularity limit and audit
    (action ``export``); streamed a month of stored data at a time."""
    asked = period(start, end)
    meter, decision = meter_readings_access(
        api,
        party,
        Action.EXPORT,
        premises_id,
        meter_id,
        granularity.level,
        asked,
        detail={"format": format.value, "obis": obis},
    )
    buckets = queries.iter_readings(api.engine, meter, obis, decision.ranges, granularity.level)
    stem = f"{premises_id}-{meter_id}-{asked.start:%Y%m%d}-{asked.end:%Y%m%d}-{granularity.value}"
    if format is ExportFormat.CSV:
        body: Iterator[bytes] = export.csv_stream(buckets)
        media = export.CSV_MEDIA_TYPE
    else:
        allowed = ",".join(f"{r.start.isoformat()}/{r.end.isoformat()}" for r in decision.ranges)
        meta = {
            "premises_id": premises_id,
            "meter_id": meter_id,
            "obis": obis,
            "granularity": granularity.value,
            "allowed": allowed,
        }
        body, media = export.parquet_stream(buckets, meta), export.PARQUET_MEDIA_TYPE
    return StreamingResponse(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{stem}.{format.value}"'},
    )
