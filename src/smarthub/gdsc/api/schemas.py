"""The data services API's request and response bodies (pydantic; FastAPI derives the OpenAPI
document from them)."""

import enum
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from smarthub.gdsc.governance.parties import DataKind, Granularity
from smarthub.model.decimals import INSTANT_TEXT, JSON_INTEGER, POUNDS_AND_PENCE_500
from smarthub.model.prepayment import MAX_TOPUP
from smarthub.model.tariff import Tariff

# Not blank: a character that Python's str.strip() keeps (the handlers' own test), spelled as a
# class every regex dialect involved reads alike (ECMA for clients, Rust in pydantic, Python's re).
NOT_BLANK = "[^" + "".join(f"\\u{c:04x}" for c in range(0x10000) if chr(c).isspace()) + "]"


class ErrorBody(BaseModel):
    detail: str
    max_granularity: str | None = None


class ServedGranularity(enum.StrEnum):
    """The granularities readings, exports, aggregates and the portfolio are served at (a consent
    may also grant ``tariff-register`` or ``none``, which no profile endpoint serves)."""

    HALF_HOURLY = "half-hourly"
    DAILY = "daily"
    MONTHLY = "monthly"

    @property
    def level(self) -> Granularity:
        return Granularity(self.value)


class BucketOut(BaseModel):
    """A value over [start, start + duration): value × 10^power_of_ten in the unit uom."""

    start: datetime
    duration: int = Field(description="seconds")
    value: int
    power_of_ten: int
    uom: int = Field(description="IEEE 2030.5 UomType")


class ReadingOut(BucketOut):
    quality: int
    intervals: int = Field(description="stored intervals summed into this value")


class ReadingsPage(BaseModel):
    premises_id: str
    meter_id: str
    obis: str
    granularity: ServedGranularity
    allowed: list[tuple[datetime, datetime]] = Field(description="the data time this caller may see")
    readings: list[ReadingOut]
    next_after: int | None = Field(description="pass as `after` for the next page; null on the last page")


class ApplianceOut(BaseModel):
    """One smart plug of the premises and what its appliance drew (issue 25)."""

    meter_id: str = Field(description="the plug, as the hub names it (its EUI-64)")
    name: str = Field(description="the appliance, as the consumer named it on the display")
    first_seen: datetime = Field(description="when the GDSC first pulled it")
    readings: list[ReadingOut] = Field(description="energy delivered to the appliance (uom 72: Wh)")
    starts: list[ReadingOut] = Field(
        default_factory=list,
        description="times the appliance started (uom 0: a count; 1-0:128.8.0), as its hub counts "
        "them from the plug's demand; empty when the hub keeps none",
    )
    run_seconds: list[ReadingOut] = Field(
        default_factory=list,
        description="seconds the appliance ran (uom 0; 1-0:128.9.0), as its hub measures them from the "
        "plug's demand; empty when the hub keeps none",
    )


class AppliancesPage(BaseModel):
    premises_id: str
    granularity: ServedGranularity
    allowed: list[tuple[datetime, datetime]] = Field(description="the data time this caller may see")
    appliances: list[ApplianceOut]


class AggregateOut(BucketOut):
    premises: int = Field(description="premises whose data the sum contains (never fewer than k)")


class AggregatePage(BaseModel):
    group: str
    group_size: int = Field(description="premises that were members of the group in the period")
    granularity: ServedGranularity
    readings: list[AggregateOut]


class ConsentIn(BaseModel):
    party_id: str = Field(min_length=1, max_length=64)
    data_kinds: list[DataKind] = Field(min_length=1)
    granularity: Granularity
    purpose: str = Field(min_length=1, max_length=500, pattern=NOT_BLANK)
    expires_at: Annotated[AwareDatetime, INSTANT_TEXT]
    meters: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, description="null: every meter of the premises"
    )


class ConsentOut(BaseModel):
    consent_id: str
    party_id: str
    premises_id: str
    data_kinds: list[DataKind]
    granularity: Granularity
    purpose: str
    granted_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    meters: list[str] | None


class ServiceApplicationIn(BaseModel):
    """A third party's application as a data service: what it asks the GDSC for."""

    # Readings or appliance data at granularity "none" is no data: stated in the schema (if/then,
    # OpenAPI 3.1's JSON Schema) as the application itself refuses it (governance.services).
    model_config = ConfigDict(
        json_schema_extra={
            "if": {
                "properties": {"data_kinds": {"contains": {"enum": ["readings", "appliances"]}}},
                "required": ["data_kinds"],
            },
            "then": {"properties": {"granularity": {"not": {"const": "none"}}}},
        }
    )

    organisation: str = Field(min_length=1, max_length=200)
    purpose: str = Field(min_length=1, max_length=500)
    data_kinds: list[DataKind] = Field(min_length=1)
    granularity: Granularity = Field(description="the finest granularity it asks for")
    retention_days: int = Field(ge=1, le=3650, description="how long it keeps the data it receives")


class ServiceDecisionIn(BaseModel):
    # All but an approval give a reason that is not blank: stated in the schema (if/else, OpenAPI
    # 3.1's JSON Schema) and checked here by the same pattern, so the two cannot disagree.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"decision": {"const": "approve"}}},
            "else": {"required": ["reason"], "properties": {"reason": {"pattern": NOT_BLANK}}},
        }
    )

    decision: Literal["approve", "refuse", "suspend", "resume", "revoke"]
    reason: str = Field(default="", max_length=500, description="required for all but an approval")

    @model_validator(mode="after")
    def _reason_given(self) -> "ServiceDecisionIn":
        if self.decision != "approve" and not re.search(NOT_BLANK, self.reason):
            raise ValueError(f"a decision to {self.decision} must give its reason")
        return self


class ServiceOut(BaseModel):
    service_id: str = Field(description="the third party's party id")
    organisation: str
    purpose: str
    data_kinds: list[DataKind]
    granularity: Granularity
    retention_days: int
    status: Literal["applied", "approved", "refused", "suspended", "revoked"]
    reason: str = Field(description="the reason of the last decision")
    applied_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    client_id: str | None = Field(description="the OAuth2 client issued on approval")


class ServiceRead(BaseModel):
    """One read of the household's data by a service, as the GDSC's audit log records it."""

    seq: int = Field(description="the audit entry (the same as in the premises' access log)")
    at: datetime
    data_kind: DataKind
    action: str = Field(description="read-readings, export or read-events")
    meter_id: str | None
    granularity: Granularity | None = Field(description="as asked; never finer than the policy allowed")
    periods: list[tuple[datetime, datetime]] = Field(description="the data periods served")


class ServiceOffer(BaseModel):
    """A data service as the occupant sees it: what it asks for (and the GDSC approved), their
    consents to it, and what it has read during their tenancy (from the audit log)."""

    service_id: str
    organisation: str
    purpose: str
    status: str = Field(
        description="the GDSC's decision on its application (approved, suspended, revoked, ...), or"
        " 'registered': a third party from before applications, known only by the occupant's consents"
    )
    data_kinds: list[DataKind]
    granularity: Granularity = Field(description="the finest it is approved for")
    retention_days: int | None = Field(description="how long it keeps the data (null: not stated)")
    consents: list[str] = Field(description="the current occupant's live consents to it (ids)")
    reads: list[ServiceRead] = Field(description="its most recent reads of this tenancy's data, newest first")
    reads_total: int = Field(description="every read during the current tenancy")
    refused_total: int = Field(description="its attempts the access policy refused during the tenancy")
    last_read_at: datetime | None
    messages_total: int = Field(
        default=0, description="messages it put on the household's display during the tenancy (ihd-messages)"
    )
    last_message_at: datetime | None = None


class ServiceCredentials(BaseModel):
    client_id: str
    client_secret: str = Field(description="shown once: only its hash is kept")
    scope: str


class ServiceDecisionOut(BaseModel):
    service: ServiceOut
    credentials: ServiceCredentials | None = Field(description="an approval's OAuth2 client, else null")


class AccessLogEntry(BaseModel):
    seq: int
    at: datetime
    actor: str
    role: str
    action: str
    allow: bool
    reason: str


class ExportFormat(enum.StrEnum):
    CSV = "csv"
    PARQUET = "parquet"


# -- commands and jobs ----------------------------------------------------------------------------

MeterId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]


class TariffUpdateIn(BaseModel):
    meter_id: MeterId = Field(description="a meter of the supply: its fuel is the tariff's fuel")
    tariff: Tariff
    effective: Annotated[AwareDatetime, INSTANT_TEXT] | None = Field(
        default=None,
        description="when the hub starts charging by this version: local (Europe/London) midnight of "
        "the tariff's effective_from, the only instant a hub accepts (null: that midnight)",
    )


class CatalogueTariff(BaseModel):
    """A tariff the GDSC distributes: its latest version, as the hubs get it."""

    tariff: Tariff
    fuel: Literal["electricity", "gas"]
    supplier_id: str | None = Field(description="the supplier that first sent this version (null: the GDSC)")
    first_sent: datetime = Field(description="when this version was first sent to a hub")


class IhdMessageIn(BaseModel):
    meter_id: MeterId = Field(description="a meter of the premises (it names the hub whose IHD shows it)")
    text: str = Field(min_length=1, max_length=500, pattern=NOT_BLANK)
    priority: Annotated[int, JSON_INTEGER] = Field(
        default=1, ge=0, le=3, description="IEEE 2030.5 TextMessage priority, 0 low..3"
    )
    expires: Annotated[AwareDatetime, INSTANT_TEXT] | None = None


class TopUpIn(BaseModel):
    meter_id: MeterId
    amount: Annotated[
        Decimal, Field(gt=0, le=MAX_TOPUP, max_digits=5, decimal_places=2), POUNDS_AND_PENCE_500
    ] = Field(description='pounds, with pence (a string: `"10.00"`)')


class SupplyIn(BaseModel):
    meter_id: MeterId
    state: Literal["connect", "disconnect"]


class OnDemandReadIn(BaseModel):
    meter_id: MeterId


class JobAccepted(BaseModel):
    job_id: int
    state: str
    command_type: str | None = Field(description="null for an on-demand read")
    hub_id: str
    voucher_id: str | None = None


class JobOut(BaseModel):
    job_id: int
    state: Literal["queued", "in-flight", "done", "failed"]
    action: str
    command_type: str | None
    premises_id: str
    meter_id: str
    hub_id: str
    queued: datetime
    finished: datetime | None
    tries: int = Field(description="deliveries that have failed so far (retried with backoff)")
    result: dict[str, Any] | None = Field(description="the hub's verdict, or the read's counts")
    error: str | None
    voucher_id: str | None = None
    voucher_status: str | None = None


class JobsPage(BaseModel):
    jobs: list[int]
    next_after: int | None


# -- portfolio ------------------------------------------------------------------------------------


class SiteMeter(BaseModel):
    meter_id: str
    fuel: str


class SiteOut(BaseModel):
    premises_id: str
    occupied: list[tuple[datetime, datetime | None]] = Field(description="the customer's tenancies there")
    current: bool
    meters: list[SiteMeter]


class PortfolioPage(BaseModel):
    customer_id: str
    sites: list[SiteOut]
    next_after: str | None


class SiteReading(BucketOut):
    meters: int = Field(description="meter buckets summed into this value")


class SiteConsumption(BaseModel):
    premises_id: str
    allowed: list[tuple[datetime, datetime]]
    readings: list[SiteReading]


class PortfolioConsumption(BaseModel):
    customer_id: str
    fuel: str
    obis: str
    granularity: ServedGranularity
    sites: list[SiteConsumption] = Field(description="this page of sites")
    total: list[SiteReading] = Field(description="summed across every site in the period, not only this page")
    next_after: str | None


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "the request is well-formed but cannot be carried out as asked"},
    401: {
        "model": ErrorBody,
        "description": "no, unknown or expired token, or a client certificate bound to no party",
    },
    403: {
        "model": ErrorBody,
        "description": "refused by the access policy, or beyond the token's scope (the reason says why)",
    },
    404: {
        "model": ErrorBody,
        "description": "no such meter, consent or aggregation group; no such job, or another party's job",
    },
    422: {
        "model": ErrorBody,
        "description": "the request does not match the schema (detail names the fields)",
    },
}
COMMAND_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    409: {"model": ErrorBody, "description": "the meter's hub is not active: there is nothing to send to"},
}
IHD_MESSAGE_ERRORS: dict[int | str, dict[str, Any]] = {
    **COMMAND_ERRORS,
    429: {
        "model": ErrorBody,
        "description": "a data service's messages to this premises' display are at their daily limit "
        "(Retry-After: when the next may be sent)",
    },
}
TOP_UP_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    409: {
        "model": ErrorBody,
        "description": "the meter's hub is not active; or the Idempotency-Key was used for another "
        "request, or by one still being carried out",
    },
}


# -- network operators: outages, topology, DUoS data, planning ------------------------------------


class OutageOut(BaseModel):
    """One outage at one fault location (``smarthub.gdsc.outages.correlate``)."""

    outage_id: int
    level: Literal["premises", "feeder", "secondary", "primary"]
    location: str = Field(description="the premises or topology node at fault")
    opened: datetime = Field(description="when the GDSC opened it (at this level)")
    started: datetime | None = Field(description="the earliest loss of mains its hubs reported")
    closed: datetime | None = Field(description="when every premises heard from was restored")
    customers: int = Field(description="customers affected, estimated from the topology")
    premises_heard: int = Field(description="premises whose last gasp arrived")
    restored: int = Field(description="premises whose restoration arrived")
    duration_s: int | None = Field(description="the longest duration the meters recorded")


class OutagePremises(BaseModel):
    premises_id: str
    lost_at: datetime
    heard: datetime = Field(description="when the GDSC had its last gasp")
    restored_at: datetime | None = Field(description="loss of mains + the duration the meter recorded")
    duration_s: int | None


class OutageDetail(OutageOut):
    path: list[str] = Field(description="the location and the nodes above it")
    restored_by: datetime | None = Field(description="the last restoration time of its premises")
    premises: list[OutagePremises]


class OutagePage(BaseModel):
    outages: list[OutageOut]


class NodeIn(BaseModel):
    kind: Literal["primary", "secondary", "feeder"]
    parent_id: Annotated[str | None, Field(max_length=64)] = None
    name: Annotated[str, Field(max_length=200)] = ""
    x: float | None = None
    y: float | None = None


class PlaceIn(BaseModel):
    feeder_id: Annotated[str, Field(min_length=1, max_length=64)]
    phase: Literal["L1", "L2", "L3", "3ph"]
    x: float | None = None
    y: float | None = None


class TopologyLoaded(BaseModel):
    nodes: int
    premises: int


class TopologyFormat(enum.StrEnum):
    CSV = "csv"
    GEOJSON = "geojson"


class PlanningBucket(BaseModel):
    start: datetime
    duration: int = Field(description="seconds")
    import_wh: float | None = Field(description="1-0:1.8.0 summed over the feeders released")
    export_wh: float | None = Field(description="1-0:2.8.0 (solar export) summed likewise")


class PlanningOut(BaseModel):
    """Planning aggregates of a node: the sums of its feeders' released aggregates (each over at
    least k premises with data, ``smarthub.gdsc.governance.aggregates``)."""

    node_id: str
    feeders: list[str] = Field(description="feeders whose aggregates are included")
    withheld: list[str] = Field(description="feeders left out: fewer than k premises (k-anonymity)")
    premises: int = Field(description="premises in the included feeders' groups")
    granularity: ServedGranularity
    profile: list[PlanningBucket]
    peak_import_w: float | None = Field(description="the highest mean import power of a bucket")
    peak_at: datetime | None
    import_kwh: float
    export_kwh: float


class PhaseQualityOut(BaseModel):
    phase: Literal["L1", "L2", "L3"]
    periods: int = Field(description="10-minute mean voltages in the period")
    mean_v: float | None
    min_v: float | None = Field(description="the lowest 10-minute minimum")
    max_v: float | None = Field(description="the highest 10-minute maximum")
    share_within_10pct: float | None = Field(description="share of 10-minute means inside 230 V ± 10 %")
    sags: int = Field(description="voltage sags the meters counted (1-0:32.32.0 and L2, L3)")
    swells: int = Field(description="voltage swells the meters counted (1-0:32.36.0 and L2, L3)")
    premises_reporting: int


class PowerFailuresOut(BaseModel):
    """Power failures under a node, from the meters' own counters and logs."""

    short: int = Field(description="short power failures (3 min or less) the meters counted (0-0:96.7.21)")
    long: int = Field(description="long power failures (over 3 min) the meters counted (0-0:96.7.9)")
    outage_minutes: float = Field(
        description="minutes of the long failures in the meters' logs (0-0:96.7.19) that ended in the "
        "period, summed over the meters: customer minutes lost"
    )
    longest_outage_minutes: float = Field(description="the longest of those failures at one meter")
    premises_reporting: int = Field(description="premises whose meters reported failure counts or logs")
    premises_with_long_failures: int


class PowerQualityOut(BaseModel):
    """Power quality under a node (``smarthub.gdsc.outages.power_quality``)."""

    node_id: str
    premises: int = Field(description="premises on the map under the node")
    start: datetime
    end: datetime
    phases: list[PhaseQualityOut]
    en50160: bool | None = Field(
        description="every phase with data had 95 % of its 10-minute means inside ±10 % (EN 50160, "
        "stated over a week); null without data"
    )
    failures: PowerFailuresOut


# -- apartment blocks (issue 21) ----------------------------------------------------------------


class SubmeterReadings(BaseModel):
    meter_id: str
    medium: str = Field(description="heat_cost_allocator, water, warm_water, ... (EN 13757-3 device type)")
    obis: str
    allowed: list[tuple[datetime, datetime]] = Field(description="the data time this caller may see")
    readings: list[ReadingOut] = Field(description="whole local months inside what is allowed")


class FlatSubmeters(BaseModel):
    premises_id: str
    flat: str
    heated_area_m2: Decimal
    submeters: list[SubmeterReadings]


class BuildingReadings(BaseModel):
    building_id: str
    name: str
    granularity: Literal["monthly"]
    flats: list[FlatSubmeters] = Field(description="the flats (and media) this caller may see")


class BuildingBillOut(BaseModel):
    """One bill: a flat and a tenancy, with the figures that produce it (HeizkostenV §6(1))."""

    flat: str
    tenant: str = Field(description="the consumer of the tenancy; '(vacant)' for days with none")
    start: date
    end: date
    heated_area_m2: Decimal
    units: Decimal = Field(description="heat-cost allocator units (estimated when `estimated`)")
    hot_water_m3: Decimal
    cold_water_m3: Decimal
    heating_area: Decimal
    heating_consumption: Decimal
    hot_water_area: Decimal
    hot_water_consumption: Decimal
    cold_water: Decimal = Field(
        description="the building's water bill, shared by each flat's metered water, cold and hot together"
    )
    total: Decimal
    estimated: bool
    notes: list[str]


class BuildingHeatBill(BaseModel):
    building_id: str
    start: date
    end: date
    building_cost: Decimal = Field(description="fuel cost + water cost")
    bill_total: Decimal = Field(description="the bills' totals added up: equal to building_cost")
    estimated_flats: list[str]
    failed_allocators: list[str] = Field(description="allocators not read to the period's end")
    bills: list[BuildingBillOut]


DeviceCategory = Literal[
    "thermostat",
    "strip-heater",
    "baseboard-heater",
    "water-heater",
    "pool-pump",
    "sauna",
    "hot-tub",
    "smart-appliance",
    "irrigation-pump",
    "managed-load",
    "simple-load",
    "exterior-lighting",
    "interior-lighting",
    "load-control-switch",
    "energy-management-system",
    "smart-energy-module",
    "electric-vehicle",
    "ev-supply-equipment",
]


class DemandResponseEventIn(BaseModel):
    """A demand-response event for the premises' hub (IEEE 2030.5 EndDeviceControl, §10.7). At
    least one control: ``duty_cycle``, ``load_reduction_percent`` or ``appliance_load_reduction``."""

    meter_id: MeterId = Field(description="the premises' electricity meter (its hub gets the event)")
    start: Annotated[AwareDatetime, INSTANT_TEXT]
    duration_minutes: int = Field(ge=1, le=1440)
    device_categories: list[DeviceCategory] = Field(
        min_length=1, max_length=18, description="2030.5 DeviceCategoryType: the appliances addressed"
    )
    duty_cycle: int | None = Field(default=None, ge=0, le=100, description="% of time on (DutyCycle)")
    load_reduction_percent: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description="% of normal load shed (Offset/loadAdjustmentPercentageOffset)",
    )
    appliance_load_reduction: bool = Field(
        default=False, description="delay or temporarily reduce the appliances' load (ApplianceLoadReduction)"
    )
    randomize_start_seconds: int = Field(default=0, ge=-3600, le=3600)
    randomize_duration_seconds: int = Field(default=0, ge=-3600, le=3600)
    description: str = Field(default="", max_length=32)


class DrResponseOut(BaseModel):
    status: int = Field(
        description="2030.5 response status (Table 27): 1 received, 2 started, 3 completed, ..."
    )
    status_name: str
    at: datetime


class DemandResponseEventOut(BaseModel):
    event_id: str = Field(description="the EndDeviceControl's mRID")
    premises_id: str
    meter_id: str
    hub_id: str
    job_id: int = Field(description="the drlc.event command's job")
    start: datetime
    end: datetime
    device_category: int = Field(description="the DeviceCategoryType bits addressed")
    state: Literal["queued", "in-flight", "done", "failed"] = Field(description="the event's delivery")
    hub_answer: str | None = Field(description="the hub's answer on delivery: received, superseded, ...")
    error: str | None
    responses: list[DrResponseOut] = Field(description="the hub's DrResponses to this event, as last pulled")
    responses_pulled_at: datetime | None
