"""The GDSC access policy: one pure decision function, no I/O, time passed in.

``decide(request, facts)`` answers whether a party may take an action on a premises (or an
aggregate over a group of premises), the finest granularity it may have, and the time ranges of
data it may see. The rules, from the governing data services of the source document (§2.5, §8)
and GB practice:

* a **supplier** acts only on premises it supplies, for that fuel, and sees data only from its
  own supply periods; it gets consumption at up to monthly granularity by default (the GB
  regulated minimum, as the hub's privacy filter), finer only with the current occupant's live
  consent, and then only for data of that occupant's tenancy;
* an approved **third-party data service** sees nothing without a live consent of sufficient
  scope and granularity given during the *current* tenancy; revocation takes effect at its own
  instant, so the very next request is refused;
* **appliance data** (``read-appliances``: per-appliance consumption from the premises' smart
  plugs, issue 25) is a data kind of its own: a data service reads it only with a live consent
  covering ``appliances`` (and an approval for it), which gives no whole-home readings; the
  occupant sees their own within their tenancy; nobody else (not the supplier: it bills the
  supply, not what the household does);
* a **consumer** sees their own premises' data, complete and at full granularity, but only
  within their tenancy: a new occupant never sees the previous occupant's data;
* a **network operator** gets, by its licence, the **DUoS data** of the premises on the part of
  the network it operates (its areas: a node of the topology and everything under it, for a
  period): each premises' electricity consumption at half-hourly granularity, only for the time
  it operated it; the **network data** (outages, topology, power quality; ``network-read``) and
  topology edits (``network-edit``) of the nodes it operates now; and aggregates, over a group
  of premises the GDSC defined (a feeder), never over a list the caller chooses; a group with
  fewer than ``k`` members in the period is refused for everyone (k-anonymity, default 5), and
  each half-hour is released once over at least ``k`` premises with data
  (:mod:`smarthub.gdsc.governance.aggregates`: why differencing two groups cannot isolate a home);
* a **housing provider** (a landlord billing heating and water costs, issue 21) reads and exports
  a flat's **sub-meter** readings (heat-cost allocators, heat, hot and cold water meters:
  ``SUBMETER_MEDIA``) only for the time it managed the flat's building, at **monthly** granularity
  at most (consumption units per flat per billing period, and the monthly information the EED
  Art. 10a asks for: never a profile), and never the flat's electricity or gas half-hours; across
  a change of tenant it sees both tenancies (it bills each at the interim reading), while each
  tenant, as a consumer, sees only their own tenancy's sub-meter data;
* an **installer** may read events and take an on-demand read only during a site visit;
* the GDSC **operator** may read events, take on-demand reads, run aggregates, audit access
  logs and read and edit the network data, but never sees an individual's consumption;
* commands (tariff update, IHD message, top-up, connect/disconnect) come from the premises'
  **current supplier for the fuel** of the meter concerned; an on-demand read may also be asked
  for by the current occupant, an installer on site and the GDSC operator; third-party data
  services issue none of these commands but one:
* a **data service's message on the in-home display** (``command:ihd-message``, issue 25: the
  tariff advisor's advice, appliance health's findings): an approved data service whose approval
  covers the ``ihd-messages`` kind (if it applied), with a live consent to that kind given by the
  *current* occupant (for the meter named, if the consent names meters), may have the GDSC put a
  text on the premises' display; never after the consent is withdrawn or expires, nor while the
  service is suspended or revoked, nor on the strength of a former occupant's consent. The display
  shows it as the service's (its name, marked as a third party), never as the supplier's; that,
  its priority and how many it may send are the command's, not the policy's
  (:mod:`smarthub.gdsc.api.routers.commands`);
* **demand response** (issue 25): an approved data service whose approval covers the
  ``demand-response`` kind, with the current occupant's live consent to that kind, may have the
  GDSC send the premises' hub a DRLC event whose interval falls within the consenting tenancy,
  and follow it; nobody else may (the occupant's own controls are at the hub: opt-out, limits);
* a **job** (a queued command or read) is followed by the party that asked for it, and by the GDSC
  operator; nobody else may follow it (the API then answers as for a job that does not exist, so
  job ids cannot be enumerated);
* a **portfolio** (a non-domestic customer's sites: every premises the consumer holds a tenancy
  at) is open to that consumer only, and its consumption only within each site's own tenancy.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from smarthub.gdsc.governance.parties import (
    SUBMETER_MEDIA,
    Consent,
    DataKind,
    Facts,
    Fuel,
    Granularity,
    Party,
    Role,
    Tenancy,
)


class Action(enum.StrEnum):
    READ_READINGS = "read-readings"
    READ_EVENTS = "read-events"
    EXPORT = "export"  # bulk export of readings: the same entitlement as reading them
    TARIFF_UPDATE = "command:tariff-update"
    IHD_MESSAGE = "command:ihd-message"
    TOP_UP = "command:top-up"
    CONNECT_DISCONNECT = "command:connect-disconnect"
    ON_DEMAND_READ = "command:on-demand-read"
    AGGREGATE_QUERY = "aggregate-query"
    LIST_ACCESS_LOG = "list-access-log"
    MANAGE_CONSENT = "manage-consent"
    READ_JOB = "read-job"  # the state of a queued command or read
    PORTFOLIO = "portfolio"  # a customer's own sites: the list, or consumption across them
    NETWORK_READ = "network-read"  # outages, topology, power quality of a network node (or own area)
    NETWORK_EDIT = "network-edit"  # topology edits under a network node
    DUOS_DATASET = "duos-data-set"  # a network operator's DUoS data set (then ``export`` per premises)
    EDIT_READINGS = "edit-readings"  # VEE: correct a day of readings (with a reason), see versions
    DATA_QUALITY = "data-quality"  # VEE: quarantine / flag / estimate counts per hub, model, supplier
    SERVICE_APPLICATION = "service-application"  # a third party applies as a data service, follows it
    SERVICE_ADMIN = "service-admin"  # the GDSC operator's decisions on data services' applications
    TRANSFER_POLICY = "transfer-policy"  # how often, when and how finely hubs' data is retrieved
    METER_SHIPMENT = "meter-shipment"  # a manufacturer's shipment file (meters and keys) imported
    METER_INSTALL = "meter-install"  # the installer's job: a meter installed (or swapped) at a premises
    TARIFF_CATALOGUE = "tariff-catalogue"  # the tariffs the GDSC distributes (no household's data)
    DEMAND_RESPONSE = "demand-response"  # a DRLC event sent to the premises' hub, and its responses
    READ_APPLIANCES = "read-appliances"  # per-appliance consumption from the premises' smart plugs

    @property
    def is_command(self) -> bool:
        return self.value.startswith("command:")

    @property
    def data_kind(self) -> DataKind | None:
        return {
            Action.READ_READINGS: DataKind.READINGS,
            Action.EXPORT: DataKind.READINGS,
            Action.READ_EVENTS: DataKind.EVENTS,
            Action.DEMAND_RESPONSE: DataKind.DEMAND_RESPONSE,
            Action.READ_APPLIANCES: DataKind.APPLIANCES,
        }.get(self)


SUPPLIER_COMMANDS = frozenset(
    {
        Action.TARIFF_UPDATE,
        Action.IHD_MESSAGE,
        Action.TOP_UP,
        Action.CONNECT_DISCONNECT,
        Action.ON_DEMAND_READ,
    }
)
SUPPLIER_DEFAULT = Granularity.MONTHLY
HOUSING_PROVIDER_FINEST = Granularity.MONTHLY  # billing periods and monthly information, no profile
_NEEDS_PERIOD = frozenset(
    {
        Action.READ_READINGS,
        Action.READ_EVENTS,
        Action.EXPORT,
        Action.AGGREGATE_QUERY,
        Action.LIST_ACCESS_LOG,
        Action.DUOS_DATASET,
        Action.DEMAND_RESPONSE,  # the event's interval: it must fall in the consenting tenancy
        Action.READ_APPLIANCES,
    }
)
_NEEDS_GRANULARITY = frozenset(
    {Action.READ_READINGS, Action.EXPORT, Action.AGGREGATE_QUERY, Action.READ_APPLIANCES}
)
_NETWORK = frozenset({Action.NETWORK_READ, Action.NETWORK_EDIT})


@dataclass(frozen=True, slots=True, order=True)
class TimeRange:
    """A half-open interval of data time ``[start, end)``."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("time range bounds must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(
                f"time range end {self.end.isoformat()} is not after start {self.start.isoformat()}"
            )

    def clip(self, start: datetime, end: datetime | None) -> TimeRange | None:
        lo = max(self.start, start)
        hi = self.end if end is None else min(self.end, end)
        return TimeRange(lo, hi) if lo < hi else None


@dataclass(frozen=True, slots=True)
class AccessRequest:
    party: Party
    action: Action
    at: datetime  # when the request is made ("now"), injected
    premises_id: str | None = None
    fuel: str | None = None  # fuel of the meter concerned (from the registry)
    meter_id: str | None = None  # None: every meter of the premises
    granularity: Granularity | None = None
    period: TimeRange | None = None  # the data time asked for
    group: frozenset[str] = field(default_factory=frozenset)  # premises of an aggregate or portfolio
    job_owner: str | None = None  # READ_JOB: the party that queued the job
    group_id: str | None = None  # AGGREGATE_QUERY: the pre-defined group (``group``: its members)

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", Action(self.action))
        if self.at.tzinfo is None:
            raise ValueError("request time must be timezone-aware")
        a = self.action
        if a is Action.AGGREGATE_QUERY:
            if not self.group_id:
                raise ValueError("an aggregate query must name the pre-defined group it covers")
        elif a in _NETWORK or a is Action.DUOS_DATASET:
            pass  # ``group_id``: the network node asked about; None: the caller's own area
        elif a is Action.PORTFOLIO:
            if self.period is not None and self.granularity is None:
                raise ValueError("portfolio consumption must give the granularity wanted")
            if self.granularity is not None:
                object.__setattr__(self, "granularity", Granularity(self.granularity))
        elif a is Action.READ_JOB:
            pass  # a job that does not exist names no premises and no owner (refused, see _job)
        elif a in (
            Action.DATA_QUALITY,
            Action.SERVICE_APPLICATION,
            Action.SERVICE_ADMIN,
            Action.TRANSFER_POLICY,
            Action.METER_SHIPMENT,
            Action.TARIFF_CATALOGUE,
        ):
            pass  # counts over the fleet; a data service's standing; a policy of a group: no premises
        elif not self.premises_id:
            raise ValueError(f"{a.value} must name a premises")
        if a in _NEEDS_PERIOD and self.period is None:
            raise ValueError(f"{a.value} must give the data period")
        if a in _NEEDS_GRANULARITY:
            if self.granularity is None:
                raise ValueError(f"{a.value} must give the granularity wanted")
            object.__setattr__(self, "granularity", Granularity(self.granularity))
            if self.granularity is Granularity.NONE:
                raise ValueError(f"{a.value} must ask for some granularity, not 'none'")
        if (a.data_kind is not None or a.is_command) and not self.fuel:
            raise ValueError(f"{a.value} must give the fuel of the meter concerned")
        if a is Action.READ_JOB and bool(self.job_owner) != bool(self.premises_id):
            raise ValueError("read-job names both the party that queued the job and its premises, or neither")


@dataclass(frozen=True, slots=True)
class Decision:
    allow: bool
    reason: str
    max_granularity: Granularity = Granularity.NONE
    ranges: tuple[TimeRange, ...] = ()  # the data time the party may see (reads only)
    # PORTFOLIO: per site, the data time the customer may see there (listing: the sites, no ranges).
    sites: tuple[tuple[str, tuple[TimeRange, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class Policy:
    k_anonymity: int = 5

    def __post_init__(self) -> None:
        if self.k_anonymity < 2:
            raise ValueError("k_anonymity below 2 would release individual premises' data")


def deny(reason: str, max_granularity: Granularity = Granularity.NONE) -> Decision:
    return Decision(False, reason, max_granularity)


DEFAULT_POLICY = Policy()


def decide(request: AccessRequest, facts: Facts, policy: Policy = DEFAULT_POLICY) -> Decision:
    """The access decision for one request, from the facts about its premises."""
    role = request.party.role
    if request.action is Action.AGGREGATE_QUERY:
        return _aggregate(request, policy)
    if request.action is Action.PORTFOLIO:
        return _portfolio(request, facts)
    if request.action is Action.READ_JOB:
        return _job(request)
    if request.action in _NETWORK:
        return _network(request, facts)
    if request.action is Action.DUOS_DATASET:
        return _duos(request, facts)
    if request.action is Action.SERVICE_APPLICATION:
        if role is Role.THIRD_PARTY:  # approved or not: applying is how it gets approved
            return Decision(True, "a third party's own application as a data service")
        return deny(f"only third parties apply as data services; {request.party.party_id} is a {role.value}")
    if request.action is Action.SERVICE_ADMIN:
        if role is Role.OPERATOR:
            return Decision(True, "GDSC operations: approval of third-party data services")
        return deny("data services are approved, refused, suspended and revoked by the GDSC operator only")
    if request.action is Action.TARIFF_CATALOGUE:
        return _tariff_catalogue(request, facts)
    if request.action is Action.IHD_MESSAGE and role is Role.THIRD_PARTY:
        return _service_message(request, facts)
    if request.action is Action.DEMAND_RESPONSE:
        if role is Role.THIRD_PARTY:
            return _third_party(request, facts)
        return deny(
            "demand-response events are sent by approved data services with the occupant's consent, "
            f"not by a {role.value}"
        )
    if request.action is Action.METER_INSTALL:
        if role is Role.OPERATOR:
            return Decision(True, "GDSC operations: a meter installation recorded for an installer")
        if role is Role.INSTALLER:
            return _installer(request, facts)
        return deny("meter installations are recorded by the installer on site or the GDSC operator")
    if request.action in _DATA_OPERATIONS:
        if role is Role.OPERATOR:
            return Decision(True, _DATA_OPERATIONS[request.action])
        return deny(f"{request.action.value} is open to the GDSC's data operations only")
    rule = _RULES[role]
    return rule(request, facts)


# The GDSC's own data operations (validation, estimation and editing): its operators only. An
# edit names a reason and is audited with it; the day's earlier versions are kept.
_DATA_OPERATIONS = {
    Action.EDIT_READINGS: "GDSC data operations: correction of validated data, with a reason, audited",
    Action.DATA_QUALITY: "GDSC data operations: data-quality figures (counts, no consumption)",
    Action.TRANSFER_POLICY: "GDSC data operations: transfer policies of hubs and groups (no consumption)",
    Action.METER_SHIPMENT: "GDSC data operations: manufacturers' shipment files (meters and their keys)",
}


# Who reads the tariff catalogue: those who choose or compare tariffs (the occupant, suppliers,
# approved data services such as a tariff advisor) and the GDSC operator. Tariffs are suppliers'
# published terms, not household data; network operators, installers and housing providers have
# no use for them (least privilege).
_CATALOGUE_READERS = frozenset({Role.CONSUMER, Role.SUPPLIER, Role.THIRD_PARTY, Role.OPERATOR})


def _tariff_catalogue(req: AccessRequest, facts: Facts) -> Decision:
    role = req.party.role
    if role not in _CATALOGUE_READERS:
        return deny(f"the tariff catalogue is not open to a {role.value}")
    if role is Role.THIRD_PARTY:  # its standing with the GDSC, as for any of its requests
        service = facts.service
        if service is not None and not service.approved:
            why = f": {service.reason}" if service.reason else ""
            return deny(f"data service {req.party.party_id} is {service.status.value}{why}")
        if not req.party.approved:
            return deny(f"{req.party.party_id} is not an approved data service")
    return Decision(True, "the tariffs the GDSC distributes (suppliers' published terms)")


# -- per role -------------------------------------------------------------------------------------


def _supplier(req: AccessRequest, facts: Facts) -> Decision:
    a = req.action
    me = req.party.party_id
    try:
        fuel = Fuel(req.fuel) if req.fuel else None
    except ValueError:
        fuel = None
    mine = [
        sp
        for sp in facts.supply_periods
        if sp.supplier_id == me and sp.premises_id == req.premises_id and sp.fuel == fuel
    ]
    if a.is_command:
        if a not in SUPPLIER_COMMANDS:
            return deny(f"{a.value} is not a supplier command")
        if not any(sp.start <= req.at and (sp.end is None or req.at < sp.end) for sp in mine):
            return deny(f"{me} does not supply {req.fuel} at {req.premises_id} at {req.at.isoformat()}")
        return Decision(True, "supplier of the premises for this fuel")
    if a.data_kind is None or a.data_kind is DataKind.APPLIANCES:
        # Appliances: what the household does, not what is billed; only a consented data service.
        return deny(f"{a.value} is not open to suppliers")
    assert req.period is not None
    supplied = _merge(r for sp in mine if (r := req.period.clip(sp.start, sp.end)) is not None)
    if not supplied:
        return deny(f"{me} did not supply {req.fuel} at {req.premises_id} in the period asked for")
    if a.data_kind is DataKind.EVENTS:
        return Decision(True, "events of the supplier's own supply period", Granularity.NONE, supplied)
    assert req.granularity is not None
    # Finer than the default needs the current occupant's consent, and covers only their tenancy.
    consent, tenancy = _best_consent(req, facts)
    if req.granularity.rank <= SUPPLIER_DEFAULT.rank:
        best = max(SUPPLIER_DEFAULT, consent.granularity if consent else SUPPLIER_DEFAULT, key=_rank)
        return Decision(True, "supplier's own supply period, default granularity", best, supplied)
    if consent is None or tenancy is None:
        return deny(
            f"{req.granularity.value} data needs the occupant's consent; supplier default is "
            f"{SUPPLIER_DEFAULT.value}",
            SUPPLIER_DEFAULT,
        )
    if consent.granularity.rank < req.granularity.rank:
        return deny(
            f"consent {consent.consent_id} allows only {consent.granularity.value}", consent.granularity
        )
    ranges = _merge(c for r in supplied if (c := r.clip(tenancy.start, tenancy.end)) is not None)
    if not ranges:
        return deny(
            "the consenting occupant's tenancy does not overlap the period asked for", SUPPLIER_DEFAULT
        )
    return Decision(True, f"supply period and consent {consent.consent_id}", consent.granularity, ranges)


def _third_party(req: AccessRequest, facts: Facts) -> Decision:
    a = req.action
    service = facts.service
    if service is not None and not service.approved:  # its application, as the operator decided it
        why = f": {service.reason}" if service.reason else ""
        return deny(f"data service {req.party.party_id} is {service.status.value}{why}")
    if not req.party.approved:
        return deny(f"{req.party.party_id} is not an approved data service")
    if a.data_kind is None:
        return deny(f"{a.value} is not open to third-party data services")
    if service is not None:  # never beyond what the GDSC approved, whatever the consent says
        approved = service.application
        if a.data_kind not in approved.data_kinds:
            kinds = ", ".join(sorted(k.value for k in approved.data_kinds))
            return deny(
                f"data service {req.party.party_id} is approved for {kinds} only, not {a.data_kind.value}"
            )
        if req.granularity is not None and req.granularity.rank > approved.granularity.rank:
            return deny(
                f"data service {req.party.party_id} is approved for {approved.granularity.value} data at "
                f"most, not {req.granularity.value}",
                approved.granularity,
            )
    assert req.period is not None
    consent, tenancy = _best_consent(req, facts)
    if consent is None or tenancy is None:
        return deny(
            f"no live consent for {req.party.party_id} at {req.premises_id} covering {a.data_kind.value}"
        )
    if a.data_kind in (DataKind.READINGS, DataKind.APPLIANCES):
        assert req.granularity is not None
        if consent.granularity.rank < req.granularity.rank:
            return deny(
                f"consent {consent.consent_id} allows only {consent.granularity.value}", consent.granularity
            )
    ranges = _merge([r] if (r := req.period.clip(tenancy.start, tenancy.end)) else [])
    if not ranges:
        return deny(
            "the consenting occupant's tenancy does not overlap the period asked for", consent.granularity
        )
    finest = consent.granularity
    if service is not None and service.application.granularity.rank < finest.rank:
        finest = service.application.granularity
    return Decision(True, f"consent {consent.consent_id}", finest, ranges)


def _service_message(req: AccessRequest, facts: Facts) -> Decision:
    """A data service's text for the premises' display: its standing with the GDSC, an approval
    covering ``ihd-messages`` and the current occupant's live consent to that kind."""
    me = req.party.party_id
    kind = DataKind.IHD_MESSAGES
    service = facts.service
    if service is not None and not service.approved:
        why = f": {service.reason}" if service.reason else ""
        return deny(f"data service {me} is {service.status.value}{why}")
    if not req.party.approved:
        return deny(f"{me} is not an approved data service")
    if service is not None and kind not in service.application.data_kinds:
        kinds = ", ".join(sorted(k.value for k in service.application.data_kinds))
        return deny(f"data service {me} is approved for {kinds} only, not {kind.value}")
    consent, _ = _best_consent(req, facts, kind)
    if consent is None:
        return deny(f"no live consent for {me} at {req.premises_id} covering {kind.value}")
    return Decision(True, f"consent {consent.consent_id}: messages on the occupant's display")


def _consumer(req: AccessRequest, facts: Facts) -> Decision:
    a = req.action
    own = [
        t for t in facts.tenancies if t.consumer_id == req.party.party_id and t.premises_id == req.premises_id
    ]
    current = any(t.covers(req.at) for t in own)
    if a is Action.MANAGE_CONSENT or a is Action.ON_DEMAND_READ:
        if not current:
            return deny(f"{req.party.party_id} is not the current occupant of {req.premises_id}")
        return Decision(True, "current occupant")
    if a.is_command:
        return deny(f"{a.value} is issued by the supplier, not the consumer")
    assert req.period is not None  # reads, exports and the access log all carry a period
    ranges = _merge(r for t in own if (r := req.period.clip(t.start, t.end)) is not None)
    if not ranges:
        return deny(f"{req.party.party_id} did not occupy {req.premises_id} in the period asked for")
    return Decision(True, "own premises within own tenancy", Granularity.HALF_HOURLY, ranges)


def _installer(req: AccessRequest, facts: Facts) -> Decision:
    a = req.action
    if a not in (Action.READ_EVENTS, Action.ON_DEMAND_READ, Action.METER_INSTALL):
        return deny(f"{a.value} is not open to installers")
    visits = [
        ap
        for ap in facts.appointments
        if ap.installer_id == req.party.party_id
        and ap.premises_id == req.premises_id
        and ap.start <= req.at < ap.end
    ]
    if not visits:
        return deny(f"{req.party.party_id} has no site visit at {req.premises_id} at {req.at.isoformat()}")
    if a is Action.ON_DEMAND_READ:
        return Decision(True, "during a site visit")
    if a is Action.METER_INSTALL:
        return Decision(True, "a meter installed during a site visit")
    assert req.period is not None
    return Decision(True, "events during a site visit", Granularity.NONE, (req.period,))


def _network_operator(req: AccessRequest, facts: Facts) -> Decision:
    """DUoS data: the premises' electricity readings, half-hourly, while the operator operated it."""
    a = req.action
    me = req.party.party_id
    if a not in (Action.READ_READINGS, Action.EXPORT):
        return deny(f"{a.value} is not open to network operators (DUoS readings, aggregates, network data)")
    if req.fuel != Fuel.ELECTRICITY.value:
        return deny(f"DUoS data is electricity only, not {req.fuel}")
    assert req.period is not None
    ranges = _merge(
        r
        for o in facts.operations
        if o.operator_id == me and o.subject == req.premises_id and (r := req.period.clip(o.start, o.end))
    )
    if not ranges:
        return deny(f"{me} did not operate the network at {req.premises_id} in the period asked for")
    return Decision(True, "DUoS data of the operator's own area and period", Granularity.HALF_HOURLY, ranges)


def _housing_provider(req: AccessRequest, facts: Facts) -> Decision:
    """Sub-meter readings of a flat the provider managed, monthly at the finest, for that time."""
    a = req.action
    me = req.party.party_id
    if a not in (Action.READ_READINGS, Action.EXPORT):
        return deny(f"{a.value} is not open to housing providers (sub-meter readings of their flats only)")
    if req.fuel not in SUBMETER_MEDIA:
        return deny(
            f"a housing provider sees a flat's heat and water sub-meters only, not its {req.fuel}: "
            "that is the tenant's and their supplier's"
        )
    assert req.period is not None and req.granularity is not None
    if req.granularity.rank > HOUSING_PROVIDER_FINEST.rank:
        return deny(
            f"a housing provider bills by period: {HOUSING_PROVIDER_FINEST.value} data at most, not "
            f"{req.granularity.value}",
            HOUSING_PROVIDER_FINEST,
        )
    ranges = _merge(
        r
        for m in facts.managements
        if m.provider_id == me and m.premises_id == req.premises_id and (r := req.period.clip(m.start, m.end))
    )
    if not ranges:
        return deny(f"{me} did not manage {req.premises_id} in the period asked for")
    return Decision(True, "sub-meters of a flat the provider manages", HOUSING_PROVIDER_FINEST, ranges)


def _duos(req: AccessRequest, facts: Facts) -> Decision:
    """The DUoS data set as a whole: a network operator that operated some of the network in the
    period (each premises is then decided on its own, as ``export``)."""
    me = req.party.party_id
    if req.party.role is not Role.NETWORK_OPERATOR:
        return deny(f"DUoS data sets are a network operator's (by licence), not a {req.party.role.value}'s")
    assert req.period is not None
    ranges = _merge(
        r for o in facts.operations if o.operator_id == me and (r := req.period.clip(o.start, o.end))
    )
    if not ranges:
        return deny(f"{me} operated no part of the network in the period asked for")
    return Decision(True, "DUoS data set of the operator's own area", Granularity.HALF_HOURLY, ranges)


def _network(req: AccessRequest, facts: Facts) -> Decision:
    """Outages, topology, power quality (read) and topology edits of a node, or of one's own area."""
    me = req.party.party_id
    role = req.party.role
    if role is Role.OPERATOR:
        return Decision(True, "GDSC operations: the network's outages, topology and power quality")
    if role is not Role.NETWORK_OPERATOR:
        return deny(f"{req.action.value} is open to network operators only, not to {role.value}s")
    where = req.group_id
    now = [o for o in facts.operations if o.operator_id == me and o.covers(req.at)]
    if where is not None:
        now = [o for o in now if o.subject == where]
    if not now:
        return deny(f"{me} does not operate {where or 'any part of the network'} at {req.at.isoformat()}")
    return Decision(True, f"network operator of {where or 'its area'}")


def _operator(req: AccessRequest, facts: Facts) -> Decision:
    a = req.action
    if a is Action.ON_DEMAND_READ:
        return Decision(True, "GDSC operations: diagnostic read")
    if a in (Action.READ_EVENTS, Action.LIST_ACCESS_LOG):
        assert req.period is not None
        return Decision(True, "GDSC operations: fault handling and audit", Granularity.NONE, (req.period,))
    return deny(f"{a.value} is not open to GDSC operators (no access to an individual's consumption)")


_AGGREGATE_ROLES = frozenset({Role.NETWORK_OPERATOR, Role.OPERATOR})


def _aggregate(req: AccessRequest, policy: Policy) -> Decision:
    if req.party.role not in _AGGREGATE_ROLES:
        return deny(f"aggregate queries are not open to {req.party.role.value}s")
    n = len(req.group)
    if n < policy.k_anonymity:
        return deny(
            f"group {req.group_id} has {n} premises in the period; at least {policy.k_anonymity} are required"
        )
    assert req.period is not None
    return Decision(
        True, f"aggregate over group {req.group_id} ({n} premises)", Granularity.HALF_HOURLY, (req.period,)
    )


def _job(req: AccessRequest) -> Decision:
    me = req.party.party_id
    if req.job_owner is None:
        return deny(f"no such job for {me} to follow")
    if req.party.role is Role.OPERATOR:
        return Decision(True, "GDSC operations: job supervision")
    if req.job_owner == me:
        return Decision(True, "the party that queued the job")
    return deny(f"{me} may follow only the jobs it queued itself")


def _portfolio(req: AccessRequest, facts: Facts) -> Decision:
    me = req.party.party_id
    if req.party.role is not Role.CONSUMER:
        return deny(f"a portfolio is the sites a customer occupies; {me} is a {req.party.role.value}")
    own = [t for t in facts.tenancies if t.consumer_id == me and t.premises_id in req.group]
    if req.period is None:  # the list of sites
        return Decision(True, "own sites", sites=tuple((p, ()) for p in sorted({t.premises_id for t in own})))
    if req.granularity is Granularity.NONE:
        return deny("portfolio consumption must ask for some granularity, not 'none'")
    period = req.period
    sites = []
    for p in sorted({t.premises_id for t in own}):
        ranges = _merge(r for t in own if t.premises_id == p and (r := period.clip(t.start, t.end)))
        if ranges:
            sites.append((p, ranges))
    if not sites:
        return deny(f"{me} occupied none of its sites in the period asked for")
    return Decision(
        True,
        f"own sites within own tenancies ({len(sites)} of {len(req.group)})",
        Granularity.HALF_HOURLY,
        _merge(r for _, rs in sites for r in rs),
        tuple(sites),
    )


_RULES = {
    Role.SUPPLIER: _supplier,
    Role.THIRD_PARTY: _third_party,
    Role.CONSUMER: _consumer,
    Role.INSTALLER: _installer,
    Role.NETWORK_OPERATOR: _network_operator,
    Role.OPERATOR: _operator,
    Role.HOUSING_PROVIDER: _housing_provider,
}


# -- helpers --------------------------------------------------------------------------------------


def _rank(g: Granularity) -> int:
    return g.rank


def current_tenancy(facts: Facts, premises_id: str, at: datetime) -> Tenancy | None:
    for t in facts.tenancies:
        if t.premises_id == premises_id and t.covers(at):
            return t
    return None


def _best_consent(
    req: AccessRequest, facts: Facts, kind: DataKind | None = None
) -> tuple[Consent | None, Tenancy | None]:
    """The finest live consent for this party, kind (the action's, unless given) and meter, given
    during the current tenancy."""
    kind = kind or req.action.data_kind
    assert req.premises_id is not None and kind is not None
    tenancy = current_tenancy(facts, req.premises_id, req.at)
    if tenancy is None:
        return None, None
    usable = [
        c
        for c in facts.consents
        if c.party_id == req.party.party_id
        and c.premises_id == req.premises_id
        and c.tenancy_id == tenancy.tenancy_id  # consents of an earlier tenancy never carry over
        and c.live_at(req.at)
        and c.covers(kind, req.meter_id)
    ]
    if not usable:
        return None, tenancy
    return max(usable, key=lambda c: (c.granularity.rank, c.expires_at)), tenancy


def _merge(ranges: Iterable[TimeRange]) -> tuple[TimeRange, ...]:
    out: list[TimeRange] = []
    for r in sorted(ranges):
        if out and r.start <= out[-1].end:
            out[-1] = TimeRange(out[-1].start, max(out[-1].end, r.end))
        else:
            out.append(r)
    return tuple(out)
