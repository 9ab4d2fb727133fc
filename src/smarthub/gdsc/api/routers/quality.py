"""Validation, estimation and editing over the API (the GDSC's data operations):

* ``POST /v1/premises/{premises_id}/readings/edits`` — correct a day of one meter's readings,
  with a reason; the decision and the edit (slots, values, reason) go into the audit chain,
  the day as it was is kept as a version;
* ``GET /v1/premises/{premises_id}/readings/versions`` — a day's earlier versions;
* ``GET /v1/premises/{premises_id}/readings/quarantine`` — the readings the VEE gate holds for
  one meter, with the rule and the evidence; ``POST`` the same path to release one (it becomes
  truth through an edit of its day, a new version) or reject it, with a reason (audited);
* ``GET /v1/data-quality`` — quarantined / flagged / estimated counts per hub, meter model or
  supplier.
"""

from datetime import UTC, date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from smarthub.gdsc.api.deps import Caller, Id, Services
from smarthub.gdsc.api.schemas import ERRORS
from smarthub.gdsc.governance.access import Action, TimeRange
from smarthub.gdsc.readings import queries
from smarthub.gdsc.readings.vee import edits
from smarthub.model.decimals import DATE_TEXT, JSON_INTEGER

router = APIRouter()
DAY = 86400
SLOT = r"^([0-9]|[1-3][0-9]|4[0-7])$"  # a UTC day's half-hour, 0..47


class EditIn(BaseModel):
    meter_id: str = Field(min_length=1, max_length=64)
    obis: str = Field(default="1-0:1.8.0", max_length=32)
    day: Annotated[date, DATE_TEXT]  # UTC day
    # JSON object keys are strings: the slot's key is published as the pattern it must match
    values: dict[Annotated[str, Field(pattern=SLOT)], Annotated[int, JSON_INTEGER]] = Field(
        min_length=1,
        max_length=48,
        description="half-hour slot (0-47) -> value",
        json_schema_extra={"additionalProperties": False},  # patternProperties alone let any key by
    )

    def slots(self) -> dict[int, int]:
        return {int(k): v for k, v in self.values.items()}

    reason: str = Field(min_length=3, max_length=2000)


class EditOut(BaseModel):
    premises_id: str
    meter_id: str
    obis: str
    day: date
    hub_id: str
    version: int  # the version the edit made current


class VersionOut(BaseModel):
    version: int
    readings: dict[int, tuple[int, int]]  # slot -> (value, quality)
    superseded_at: datetime
    edited_by: str
    reason: str


class HeldOut(BaseModel):
    hub_id: str
    meter_id: str
    obis: str
    duration: int  # 0: a register reading
    start: datetime
    value: int
    power_of_ten: int
    uom: int
    rule: str
    evidence: str
    found_at: datetime


class ResolveIn(BaseModel):
    meter_id: str = Field(min_length=1, max_length=64)
    obis: str = Field(default="1-0:1.8.0", max_length=32)
    duration: int = Field(ge=0, le=DAY)
    start: datetime
    rule: str = Field(min_length=1, max_length=32)
    value: int
    decision: Literal["release", "reject"]
    reason: str = Field(min_length=3, max_length=2000)


class ResolveOut(BaseModel):
    hub_id: str
    decision: str
    version: int | None  # the day's new version when an interval was released


class QualityOut(BaseModel):
    key: str
    quarantined: int
    flagged: int
    estimated: int
    estimates_replaced: int
    rules: dict[str, int]


def _day_range(day: date) -> TimeRange:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return TimeRange(start, datetime.fromtimestamp(start.timestamp() + DAY, UTC))


@router.post("/v1/premises/{premises_id}/readings/edits", response_model=EditOut, responses=ERRORS)
def edit_readings(party: Caller, api: Services, premises_id: Id, body: EditIn) -> EditOut:
    meter = queries.find_meter(api.engine, premises_id, body.meter_id)
    asked = _day_range(body.day)
    api.guard.require(
        party,
        Action.EDIT_READINGS,
        premises_id=premises_id,
        fuel=meter.fuel,
        meter_id=body.meter_id,
        period=asked,
        detail={
            "obis": body.obis,
            "values": dict(body.values),
            "reason": body.reason,
        },
    )
    day = int(asked.start.timestamp()) // DAY
    now = int(api.guard.clock.now().timestamp())
    for hub_id in reversed(meter.series_hubs):  # the newest hub that holds the day
        try:
            version = edits.edit_day(
                api.engine,
                hub_id,
                body.meter_id,
                body.obis,
                day,
                body.slots(),
                actor=party,
                reason=body.reason,
                now=now,
            )
        except LookupError:
            continue
        except ValueError as err:
            raise HTTPException(400, str(err)) from err
        return EditOut(
            premises_id=premises_id,
            meter_id=body.meter_id,
            obis=body.obis,
            day=body.day,
            hub_id=hub_id,
            version=version,
        )
    raise queries.NotFound(f"no {body.obis} readings of meter {body.meter_id} on {body.day.isoformat()}")


@router.get("/v1/premises/{premises_id}/readings/versions", response_model=list[VersionOut], responses=ERRORS)
def reading_versions(
    party: Caller,
    api: Services,
    premises_id: Id,
    meter_id: Annotated[str, Query(min_length=1, max_length=64)],
    day: Annotated[date, DATE_TEXT],
    obis: Annotated[str, Query(max_length=32)] = "1-0:1.8.0",
) -> list[VersionOut]:
    meter = queries.find_meter(api.engine, premises_id, meter_id)
    asked = _day_range(day)
    api.guard.require(
        party, Action.EDIT_READINGS, premises_id=premises_id, fuel=meter.fuel, meter_id=meter_id, period=asked
    )
    d = int(asked.start.timestamp()) // DAY
    out = []
    for hub_id in meter.series_hubs:
        for v in edits.day_versions(api.engine, hub_id, meter_id, obis, d):
            out.append(
                VersionOut(
                    version=v["version"],
                    readings=v["slots"],
                    superseded_at=datetime.fromtimestamp(v["superseded_at"], UTC),
                    edited_by=v["edited_by"],
                    reason=v["reason"],
                )
            )
    return out


@router.get("/v1/premises/{premises_id}/readings/quarantine", response_model=list[HeldOut], responses=ERRORS)
def held_readings(
    party: Caller,
    api: Services,
    premises_id: Id,
    meter_id: Annotated[str, Query(min_length=1, max_length=64)],
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[HeldOut]:
    meter = queries.find_meter(api.engine, premises_id, meter_id)
    api.guard.require(
        party, Action.EDIT_READINGS, premises_id=premises_id, fuel=meter.fuel, meter_id=meter_id
    )
    return [
        HeldOut(
            hub_id=r["hub_id"],
            meter_id=r["meter_id"],
            obis=r["obis"],
            duration=r["duration"],
            start=datetime.fromtimestamp(r["interval_start"], UTC),
            value=r["value"],
            power_of_ten=r["power_of_ten"],
            uom=r["uom"],
            rule=r["rule"],
            evidence=r["evidence"],
            found_at=datetime.fromtimestamp(r["found_at"], UTC),
        )
        for r in edits.held(api.engine, meter.series_hubs, meter_id, limit)
    ]


@router.post("/v1/premises/{premises_id}/readings/quarantine", response_model=ResolveOut, responses=ERRORS)
def resolve_held(party: Caller, api: Services, premises_id: Id, body: ResolveIn) -> ResolveOut:
    meter = queries.find_meter(api.engine, premises_id, body.meter_id)
    start = int(body.start.timestamp())
    api.guard.require(
        party,
        Action.EDIT_READINGS,
        premises_id=premises_id,
        fuel=meter.fuel,
        meter_id=body.meter_id,
        detail={
            "quarantine": body.decision, "obis": body.obis, "start": start, "rule": body.rule,
            "value": body.value, "reason": body.reason,
        },
    )  # fmt: skip
    now = int(api.guard.clock.now().timestamp())
    for hub_id in reversed(meter.series_hubs):
        key = (hub_id, body.meter_id, body.obis, body.duration, start, body.rule, body.value)
        try:
            version = edits.resolve(
                api.engine, key, decision=body.decision, actor=party, reason=body.reason, now=now
            )
        except LookupError:
            continue
        except ValueError as err:
            raise HTTPException(400, str(err)) from err
        return ResolveOut(hub_id=hub_id, decision=body.decision, version=version)
    raise queries.NotFound(
        f"no held {body.obis} reading of meter {body.meter_id} at {body.start.isoformat()}"
    )


@router.get("/v1/data-quality", response_model=list[QualityOut], responses=ERRORS)
def data_quality(
    party: Caller, api: Services, by: Literal["hub", "model", "supplier"] = "hub"
) -> list[QualityOut]:
    api.guard.require(party, Action.DATA_QUALITY, detail={"by": by})
    return [
        QualityOut(
            key=row[by],
            quarantined=row["quarantined"],
            flagged=row["flagged"],
            estimated=row["estimated"],
            estimates_replaced=row["estimates_replaced"],
            rules=row["rules"],
        )
        for row in edits.quality_figures(api.engine, by)
    ]
