"""The IEEE 2030.5 resources the hub serves, built as XML with lxml; and the href scheme.

Why not envoy-schema's pydantic-xml models (which the GDSC still uses to *parse*, see
:mod:`smarthub.wan.client.sep2`): memory on a hub. Importing envoy-schema pulls in pydantic,
pydantic-core and pydantic-xml and builds a validator per model, ~20–26 MB of RSS on a device
whose whole budget is 64 MB (issue 4; measured by ``bench/hub.py``), and validating every
Reading through pydantic costs more than building it. lxml is already on the hub for the bulk
resource. Element names and their order follow the 2030.5-2018 XSD (``sep.xsd``); the tests
validate every document the hub serves against it, and parse it back with the GDSC's models.

Each builder returns an element: the root of a document when ``parent`` is None (with the
2030.5 namespace as default), else a child appended to ``parent`` (lists build their items
this way). :func:`to_bytes` serialises a document.

Href scheme (the WADL's recommended structure, 2030.5-2018 Annex D metering):
``/dcap``, ``/tm``, ``/upt``, ``/upt/{meter}``, ``/upt/{meter}/mr``, ``/upt/{meter}/mr/{ch}``,
``…/rt``, ``…/rs``, ``…/rs/{day}``, ``…/rs/{day}/r``, and ``…/r`` for the latest reading,
where ``{meter}`` is the meter id percent-encoded, ``{ch}`` the channel's OBIS code written
``A.B.C.D.E.F`` and ``{day}`` the UTC midnight (epoch seconds) that starts a day's ReadingSet.
The metering mirror (bulk pull) mirrors that: ``/mup``, ``/mup/{meter}`` (MirrorUsagePoint),
``/mup/{meter}/mr/{ch}`` (MirrorMeterReading); the GDSC keys a channel by its MeterReading
href whichever way it pulls (:func:`reading_href_of_mirror`).

Strings: 2030.5's ``StringN`` types hold at most N octets of UTF-8 (the XSD counts
characters; octets are the stricter bound): :func:`string_n` cuts on a character boundary,
never inside a multi-byte character, and replaces what XML 1.0 cannot carry (control
characters, lone surrogates) with U+FFFD, so any meter id, supplier name or message text the
system holds gives a schema-valid document.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, unquote

from lxml import etree

from smarthub.model import ObisCode
from smarthub.model.reading_type import REGISTER_HISTORY_F, interval_spec
from smarthub.security.xml import (
    DTD_REFUSED,
    UNTRUSTED_PARSER_OPTIONS,
    XmlRefused,
    parse_untrusted,
    refuse_dtd_bytes,
    refuse_dtd_tree,
    wide_encoding,
)

CONTENT_TYPE = "application/sep+xml"
DAY = 86400
NS = "urn:ieee:std:2030.5:ns"
_N = "{" + NS + "}"
_NSMAP = {None: NS}
# RoleFlagsType (HexBinary16, 2030.5-2018 §10.10 / the XSD's bit list).
ROLE_MIRROR = 0x01  # isMirror: the server is not the measurement device (a mirror)
ROLE_PREMISES_AGGREGATION_POINT = 0x02  # the point of delivery for a premises
ROLE_PEV = 0x04
ROLE_DER = 0x08
ROLE_REVENUE_QUALITY = 0x10  # measured by a device certified as revenue quality
ROLE_DC = 0x20
ROLE_SUBMETER = 0x40  # not a premises aggregation point
# The meters a hub serves on the WAN are the home's supply meters (sub-meters and smart plugs
# stay off the WAN): each is its fuel's premises aggregation point, and revenue quality.
MAIN_METER_ROLES = ROLE_PREMISES_AGGREGATION_POINT | ROLE_REVENUE_QUALITY
MIRROR_ROLES = MAIN_METER_ROLES | ROLE_MIRROR
# An appliance's smart plug (issue 25): a sub-meter, not revenue quality, not the premises' point.
SUBMETER_ROLES = ROLE_SUBMETER
QUALITY_VALID = 0x01  # Reading.qualityFlags bit 0: valid (passed the checks)
LIST_POLL_RATE = 900  # seconds: the 2030.5 default pollRate of a List that carries one

Element = etree._Element


# Reading untrusted 2030.5 XML: see smarthub.security.xml (shared with the hub's DRLC parser,
# which may not import this package); re-exported here with the rest of the 2030.5 XML.


# -- href scheme -------------------------------------------------------------------------
def channel_token(obis: ObisCode) -> str:
    return ".".join(str(v) for v in (obis.a, obis.b, obis.c, obis.d, obis.e, obis.f))


def parse_channel_token(token: str) -> ObisCode:
    parts = token.split(".")
    if len(parts) != 6 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a channel token: {token!r}")
    return ObisCode(*(int(p) for p in parts))


#: The href at which this scheme's hubs serve the bulk pull's MirrorUsagePointList (advertised by
#: their DeviceCapability's MirrorUsagePointListLink). A collector asks it first, without /dcap;
#: a hub that answers otherwise is discovered from /dcap as 2030.5 has it.
MUP_LIST_HREF = "/mup"


def meter_segment(meter: str) -> str:
    """A meter id as one path segment: percent-encoded, and a dot-only id ("." or "..", which
    RFC 3986 §5.2.4 and the WHATWG URL standard remove as dot-segments, even as ``%2E``) or an
    id starting with ``~`` prefixed with one ``~`` (unreserved, so no client or normaliser
    rewrites it): ``meter_of_segment`` strips it again."""
    if meter.startswith("~") or not meter.strip("."):
        meter = "~" + meter
    return quote(meter, safe="")


def meter_of_segment(segment: str) -> str:
    """The meter id a path segment from ``meter_segment`` names (``segment`` still encoded)."""
    meter = unquote(segment)
    return meter[1:] if meter.startswith("~") else meter


def upt_href(meter: str) -> str:
    return f"/upt/{meter_segment(meter)}"


def mr_href(meter: str, obis: ObisCode) -> str:
    return f"{upt_href(meter)}/mr/{channel_token(obis)}"


def is_register_href(href: str) -> bool:
    """Whether a MeterReading href names a channel's daily register reads (its channel token's
    value group F is :data:`~smarthub.model.reading_type.REGISTER_HISTORY_F`)."""
    token = href.split("?", 1)[0].rsplit("/", 1)[-1]
    try:
        return parse_channel_token(token).f == REGISTER_HISTORY_F
    except ValueError:
        return False


def mup_href(meter: str) -> str:
    """A meter's MirrorUsagePoint."""
    return f"/mup/{meter_segment(meter)}"


def mmr_href(meter: str, obis: ObisCode) -> str:
    """A channel's MirrorMeterReading."""
    return f"{mup_href(meter)}/mr/{channel_token(obis)}"


def meter_of_href(href: str) -> str:
    """The meter id a ``/upt/{meter}…`` or ``/mup/{meter}…`` href names (descriptions are cut
    to 32 octets, so a client takes the id from the href)."""
    parts = href.split("?", 1)[0].split("/")
    if len(parts) < 3 or parts[1] not in ("upt", "mup") or not parts[2]:
        raise ValueError(f"not a usage point href: {href!r}")
    return meter_of_segment(parts[2])


def reading_href_of_mirror(href: str) -> str:
    """The MeterReading href a MirrorMeterReading mirrors (``/mup/…`` → ``/upt/…``): the key
    the GDSC's cursors use, so a channel is the same whether pulled in bulk or walked."""
    path = href.split("?", 1)[0]
    if not path.startswith("/mup/"):
        raise ValueError(f"not a mirror meter reading href: {href!r}")
    return "/upt/" + path[len("/mup/") :]


# XML 1.0 cannot carry these (§2.2 Char): C0 controls but tab/LF/CR, lone surrogates, FFFE/FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """``text`` with every character XML 1.0 cannot carry replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


def string_n(text: str, octets: int) -> str:
    """A 2030.5 ``StringN``: at most ``octets`` octets of UTF-8, cut on a character boundary."""
    text = xml_safe(text)
    raw = text.encode("utf-8")
    if len(raw) <= octets:
        return text
    return raw[:octets].decode("utf-8", "ignore")  # drops a character cut in half


def string32(text: str) -> str:
    return string_n(text, 32)


def hex16(flags: int) -> str:
    """A HexBinary16 (RoleFlagsType, qualityFlags) as the XSD writes it."""
    return f"{flags:04X}"


def mrid(*parts: str) -> str:
    """A stable 128-bit mRID for a resource, as 32 uppercase hex digits."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:32].upper()


# -- building blocks -----------------------------------------------------------------------
def to_bytes(doc: Element) -> bytes:
    return etree.tostring(doc, xml_declaration=True, encoding="UTF-8")


def _el(parent: Element | None, tag: str, href: str | None = None) -> Element:
    e = etree.Element(_N + tag, nsmap=_NSMAP) if parent is None else etree.SubElement(parent, _N + tag)
    if href is not None:
        e.set("href", href)
    return e


def _text(parent: Element, tag: str, value: object) -> None:
    etree.SubElement(parent, _N + tag).text = str(value)


def _link(parent: Element, tag: str, href: str, all_: int | None = None) -> None:
    """A Link, or a ListLink when ``all_`` (the list's item count) is given."""
    e = etree.SubElement(parent, _N + tag)
    e.set("href", href)
    if all_ is not None:
        e.set("all", str(all_))


def _list(tag: str, href: str, all_: int, results: int, poll_rate: int | None = None) -> Element:
    e = _el(None, tag, href)
    e.set("all", str(all_))
    e.set("results", str(results))
    if poll_rate is not None:
        e.set("pollRate", str(poll_rate))
    return e


_READINGS_OPEN = f'<r xmlns="{NS}">'
_FRAGMENT_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def _period(parent: Element, start: int, duration: int) -> None:
    """A DateTimeIntervalType named timePeriod (duration before start, as the XSD orders them)."""
    tp = etree.SubElement(parent, _N + "timePeriod")
    _text(tp, "duration", duration)
    _text(tp, "start", start)


# -- resources -----------------------------------------------------------------------------
def device_capability(
    href: str,
    poll_rate: int,
    time_href: str,
    usage_points: tuple[str, int],
    end_devices: tuple[str, int],
    mirror_usage_points: tuple[str, int] | None,
) -> Element:
    """DeviceCapability (§10.2): the ListLinks are (href, all)."""
    e = _el(None, "DeviceCapability", href)
    e.set("pollRate", str(poll_rate))
    _link(e, "TimeLink", time_href)
    _link(e, "UsagePointListLink", *usage_points)
    _link(e, "EndDeviceListLink", *end_devices)
    if mirror_usage_points is not None:
        _link(e, "MirrorUsagePointListLink", *mirror_usage_points)
    return e


def time_resource(href: str, current_time: int, quality: int = 7) -> Element:
    """Time (§10.4) in UTC: no DST, tzOffset 0; ``quality`` 7 = "intentionally uncoordinated"."""
    e = _el(None, "Time", href)
    for tag, value in (
        ("currentTime", current_time),
        ("dstEndTime", 0),
        ("dstOffset", 0),
        ("dstStartTime", 0),
        ("quality", quality),
        ("tzOffset", 0),
    ):
        _text(e, tag, value)
    return e


def usage_point_list(href: str, all_: int) -> Element:
    """An empty UsagePointList; add items with :func:`usage_point` (``results`` is set by :func:`done`)."""
    return _list("UsagePointList", href, all_, 0)


def usage_point(
    href: str,
    mrid_: str,
    description: str,
    service_kind: int,
    lfdi: str,
    meter_readings: tuple[str, int],
    parent: Element | None = None,
    role_flags: int = MAIN_METER_ROLES,
) -> Element:
    e = _el(parent, "UsagePoint", href)
    _text(e, "mRID", mrid_)
    _text(e, "description", string32(description))
    _text(e, "roleFlags", hex16(role_flags))
    _text(e, "serviceCategoryKind", service_kind)
    _text(e, "status", 1)
    _text(e, "deviceLFDI", lfdi)
    _link(e, "MeterReadingListLink", *meter_readings)
    return e


def meter_reading_list(href: str, all_: int) -> Element:
    return _list("MeterReadingList", href, all_, 0)


def meter_reading(
    href: str,
    mrid_: str,
    description: str,
    reading_sets: tuple[str, int] | None,
    parent: Element | None = None,
) -> Element:
    """MeterReading with its ReadingLink, ReadingSetListLink (if any) and ReadingTypeLink."""
    e = _el(parent, "MeterReading", href)
    _text(e, "mRID", mrid_)
    _text(e, "description", string32(description))
    _link(e, "ReadingLink", f"{href}/r")
    if reading_sets is not None:
        _link(e, "ReadingSetListLink", *reading_sets)
    _link(e, "ReadingTypeLink", f"{href}/rt")
    return e


def reading_type(
    href: str,
    accumulation: int,
    commodity: int,
    flow_direction: int,
    interval_length: int | None,
    kind: int,
    power_of_ten: int,
    uom: int,
    data_qualifier: int = 0,
    phase: int = 0,
) -> Element:
    """A ReadingType (elements in the XSD's order; dataQualifier and phase only when set, as the
    power-quality channels of :mod:`smarthub.model.reading_type` use them)."""
    e = _el(None, "ReadingType", href)
    _text(e, "accumulationBehaviour", accumulation)
    _text(e, "commodity", commodity)
    if data_qualifier:
        _text(e, "dataQualifier", data_qualifier)
    _text(e, "flowDirection", flow_direction)
    if interval_length is not None:
        _text(e, "intervalLength", interval_length)
    _text(e, "kind", kind)
    if phase:
        _text(e, "phase", phase)
    _text(e, "powerOfTenMultiplier", power_of_ten)
    _text(e, "uom", uom)
    return e


def reading_set_list(href: str, all_: int) -> Element:
    return _list("ReadingSetList", href, all_, 0)


def reading_set(
    href: str,
    mrid_: str,
    description: str,
    start: int,
    duration: int,
    readings: tuple[str, int],
    parent: Element | None = None,
) -> Element:
    e = _el(parent, "ReadingSet", href)
    _text(e, "mRID", mrid_)
    _text(e, "description", string32(description))
    _period(e, start, duration)
    _link(e, "ReadingListLink", *readings)
    return e


def reading_list(href: str, all_: int) -> Element:
    return _list("ReadingList", href, all_, 0)


def reading(
    value: int,
    quality: int,
    start: int,
    duration: int,
    tou_tier: int = 0,
    href: str | None = None,
    parent: Element | None = None,
) -> Element:
    """Reading (§10.6): qualityFlags (HexBinary16, written in one octet while the flags fit),
    touTier 0 = not applicable."""
    e = _el(parent, "Reading", href)
    _text(e, "consumptionBlock", 0)
    _text(e, "qualityFlags", f"{quality:02X}")
    _period(e, start, duration)
    _text(e, "touTier", tou_tier)
    _text(e, "value", value)
    return e


def end_device_list(href: str, all_: int) -> Element:
    return _list("EndDeviceList", href, all_, 0, LIST_POLL_RATE)


def end_device(
    href: str,
    lfdi: str,
    sfdi: int,
    changed_time: int,
    log_events: tuple[str, int] | None,
    parent: Element | None = None,
) -> Element:
    e = _el(parent, "EndDevice", href)
    _text(e, "lFDI", lfdi)
    if log_events is not None:
        _link(e, "LogEventListLink", *log_events)
    _text(e, "sFDI", sfdi)
    _text(e, "changedTime", changed_time)
    _text(e, "enabled", "true")
    return e


def log_event_list(href: str, all_: int, poll_rate: int) -> Element:
    return _list("LogEventList", href, all_, 0, poll_rate)


def log_event(
    href: str | None,
    created: int,
    details: str,
    extended_data: int,
    function_set: int,
    code: int,
    event_id: int,
    pen: int,
    profile: int,
    parent: Element | None = None,
) -> Element:
    """LogEvent (§10.11)."""
    e = _el(parent, "LogEvent", href)
    _text(e, "createdDateTime", created)
    _text(e, "details", string32(details))
    _text(e, "extendedData", extended_data)
    _text(e, "functionSet", function_set)
    _text(e, "logEventCode", code)
    _text(e, "logEventID", event_id)
    _text(e, "logEventPEN", pen)
    _text(e, "profileID", profile)
    return e


# -- Pricing (§10.6) and Messaging (§10.8), for the home's displays ---------------------------
CURRENCY_GBP = 826  # ISO 4217
PRIMACY_CONTRACTED = 1  # PrimacyType: the contracted premises service provider (the supplier)
EVENT_SCHEDULED, EVENT_ACTIVE = 0, 1  # EventStatus.currentStatus


def device_capability_ihd(
    href: str,
    poll_rate: int,
    messaging_programs: tuple[str, int],
    tariff_profiles: tuple[str, int],
    time_href: str,
    usage_points: tuple[str, int] | None = None,
) -> Element:
    """DeviceCapability as a home display sees it: Messaging, Pricing, Time and, when given, the
    display's own UsagePointList (live demand) (§10.2; links in the XSD's order)."""
    e = _el(None, "DeviceCapability", href)
    e.set("pollRate", str(poll_rate))
    _link(e, "MessagingProgramListLink", *messaging_programs)
    _link(e, "TariffProfileListLink", *tariff_profiles)
    _link(e, "TimeLink", time_href)
    if usage_points is not None:
        _link(e, "UsagePointListLink", *usage_points)
    return e


def _subscribable_list(tag: str, href: str, all_: int, poll_rate: int | None = None) -> Element:
    return _list(tag, href, all_, 0, poll_rate)


def _identified(e: Element, mrid_: str, description: str | None, version: int | None) -> None:
    _text(e, "mRID", mrid_)
    if description is not None:
        _text(e, "description", string32(description))
    if version is not None:
        _text(e, "version", version)


def _event(
    e: Element,
    mrid_: str,
    description: str | None,
    creation: int,
    status: int,
    at: int,
    start: int,
    duration: int,
) -> None:
    """The Event elements (§10.2 Event): mRID, description, creationTime, EventStatus, interval."""
    _identified(e, mrid_, description, None)
    _text(e, "creationTime", creation)
    st = etree.SubElement(e, _N + "EventStatus")
    _text(st, "currentStatus", status)
    _text(st, "dateTime", at)
    _text(st, "potentiallySuperseded", "false")
    iv = etree.SubElement(e, _N + "interval")
    _text(iv, "duration", duration)
    _text(iv, "start", start)


def tariff_profile_list(href: str, all_: int) -> Element:
    return _subscribable_list("TariffProfileList", href, all_, LIST_POLL_RATE)


def tariff_profile(
    href: str,
    mrid_: str,
    description: str,
    version: int,
    price_power_of_ten: int,
    rate_code: str,
    rate_components: tuple[str, int],
    service_kind: int,
    parent: Element | None = None,
) -> Element:
    """TariffProfile (§10.6): prices in GBP × 10^``price_power_of_ten``."""
    e = _el(parent, "TariffProfile", href)
    _identified(e, mrid_, description, version)
    _text(e, "currency", CURRENCY_GBP)
    _text(e, "pricePowerOfTenMultiplier", price_power_of_ten)
    _text(e, "primacy", PRIMACY_CONTRACTED)
    _text(e, "rateCode", string_n(rate_code, 20))
    _link(e, "RateComponentListLink", *rate_components)
    _text(e, "serviceCategoryKind", service_kind)
    return e


def rate_component_list(href: str, all_: int) -> Element:
    return _list("RateComponentList", href, all_, 0)


def rate_component(
    href: str,
    mrid_: str,
    description: str,
    reading_type_href: str,
    time_tariff_intervals: tuple[str, int],
    active: tuple[str, int],
    parent: Element | None = None,
) -> Element:
    e = _el(parent, "RateComponent", href)
    _identified(e, mrid_, description, None)
    _link(e, "ActiveTimeTariffIntervalListLink", *active)
    _link(e, "ReadingTypeLink", reading_type_href)
    _text(e, "roleFlags", hex16(MAIN_METER_ROLES))  # the usage points the rate applies to
    _link(e, "TimeTariffIntervalListLink", *time_tariff_intervals)
    return e


def time_tariff_interval_list(href: str, all_: int) -> Element:
    return _subscribable_list("TimeTariffIntervalList", href, all_)


def time_tariff_interval(
    href: str,
    mrid_: str,
    description: str,
    creation: int,
    status: int,
    at: int,
    start: int,
    duration: int,
    consumption_tariff_intervals: tuple[str, int],
    tou_tier: int,
    parent: Element | None = None,
) -> Element:
    """TimeTariffInterval (§10.6): a rate's time window, its prices in the linked CTIs."""
    e = _el(parent, "TimeTariffInterval", href)
    _event(e, mrid_, description, creation, status, at, start, duration)
    _link(e, "ConsumptionTariffIntervalListLink", *consumption_tariff_intervals)
    _text(e, "touTier", tou_tier)
    return e


def consumption_tariff_interval_list(href: str, all_: int) -> Element:
    return _list("ConsumptionTariffIntervalList", href, all_, 0)


def consumption_tariff_interval(
    href: str, block: int, price: int, start_value: int, parent: Element | None = None
) -> Element:
    """ConsumptionTariffInterval (§10.6): ``price`` per unit of the rate component's ReadingType
    from ``start_value`` of consumption in the block (``block`` 0: not a block tariff)."""
    e = _el(parent, "ConsumptionTariffInterval", href)
    _text(e, "consumptionBlock", block)
    _text(e, "price", price)
    _text(e, "startValue", start_value)
    return e


def messaging_program_list(href: str, all_: int) -> Element:
    return _subscribable_list("MessagingProgramList", href, all_, LIST_POLL_RATE)


def messaging_program(
    href: str,
    mrid_: str,
    description: str,
    locale: str,
    active: tuple[str, int],
    messages: tuple[str, int],
    parent: Element | None = None,
) -> Element:
    """MessagingProgram (§10.8)."""
    e = _el(parent, "MessagingProgram", href)
    _identified(e, mrid_, description, None)
    _link(e, "ActiveTextMessageListLink", *active)
    _text(e, "locale", string_n(locale, 42))
    _text(e, "primacy", PRIMACY_CONTRACTED)
    _link(e, "TextMessageListLink", *messages)
    return e


def text_message_list(href: str, all_: int) -> Element:
    return _subscribable_list("TextMessageList", href, all_)


def text_message(
    href: str,
    mrid_: str,
    creation: int,
    status: int,
    at: int,
    start: int,
    duration: int,
    originator: str,
    priority: int,
    text: str,
    parent: Element | None = None,
) -> Element:
    """TextMessage (§10.8): shown over ``start`` .. ``start + duration``."""
    e = _el(parent, "TextMessage", href)
    _event(e, mrid_, None, creation, status, at, start, duration)
    _text(e, "originator", string_n(originator, 20))
    _text(e, "priority", priority)
    _text(e, "textMessage", xml_safe(text))
    return e


def done(list_: Element) -> Element:
    """Set a List's ``results`` to the items built into it."""
    list_.set("results", str(len(list_)))
    return list_


# -- the bulk resource (smarthub.wan.client.bulk parses it) ------------------------------------------
class IntervalRow(Protocol):  # read-only members: frozen dataclasses (hub.intervals) satisfy them
    @property
    def start(self) -> int: ...
    @property
    def duration(self) -> int: ...
    @property
    def value(self) -> int: ...
    @property
    def quality(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ChannelRows:
    """One channel's readings in a mirror response, as the hub's privacy filter let them out.

    ``last_update`` is the end (start + duration) of the channel's latest reading the recipient
    may have, when known: with ``rows`` cut short (see :mod:`smarthub.wan.server.resources`), it is later
    than the last row's end, which tells a client that more follows."""

    obis: ObisCode
    interval_length: int | None  # ReadingType.intervalLength (1800, 86400, 0 for months; None: a register)
    rows: Sequence[IntervalRow]
    last_update: int | None


@dataclass(frozen=True, slots=True)
class MirrorPoint:
    """One meter's MirrorUsagePoint: its channels' readings."""

    meter: str
    fuel_kind: int  # UsagePoint.serviceCategoryKind
    channels: Sequence[ChannelRows]
    # An appliance sub-meter: the appliance's name (the description; roleFlags isSubmeter).
    appliance: str | None = None


def _mirror_meter_reading(
    parent: Element | None, hub_id: str, meter: str, ch: ChannelRows, query: str
) -> Element:
    """A MirrorMeterReading; its mRID is its MeterReading's (a mirror and what it mirrors share
    one mRID, §10.10), its ``lastUpdateTime`` the end of the channel's latest reading."""
    sub = etree.SubElement
    mr = mr_href(meter, ch.obis)
    mmr = _el(parent, "MirrorMeterReading", mmr_href(meter, ch.obis) + query)
    _text(mmr, "mRID", mrid(hub_id, mr))
    if ch.last_update is not None:
        _text(mmr, "lastUpdateTime", ch.last_update)
    if ch.rows:
        first, last = ch.rows[0], ch.rows[-1]
        mrs = sub(mmr, _N + "MirrorReadingSet")
        _text(mrs, "mRID", mrid(hub_id, mr, str(first.start)))
        _period(mrs, first.start, last.start + last.duration - first.start)
        # Minimal Readings (no consumptionBlock/touTier): the bulk body is sized for speed. Written
        # as text (integers only: nothing to escape) and parsed by libxml2 in one call: an element
        # at a time through lxml was a third of the hub's CPU per pull (issue 17).
        mrs.extend(
            etree.fromstring(
                "".join(
                    [
                        _READINGS_OPEN,
                        *(
                            # ":d"/":X" take integers only (anything else raises, nothing is
                            # written unescaped)
                            f"<Reading><qualityFlags>{r.quality:02X}</qualityFlags><timePeriod>"
                            f"<duration>{r.duration:d}</duration><start>{r.start:d}</start>"
                            f"</timePeriod><value>{r.value:d}</value></Reading>"
                            for r in ch.rows
                        ),
                        "</r>",
                    ]
                ),
                _FRAGMENT_PARSER,
            )
        )
    spec = interval_spec(ch.obis)
    rt = sub(mmr, _N + "ReadingType")
    _text(rt, "accumulationBehaviour", spec.accumulation)
    _text(rt, "commodity", spec.commodity)
    if spec.data_qualifier:
        _text(rt, "dataQualifier", spec.data_qualifier)
    _text(rt, "flowDirection", spec.flow_direction)
    if ch.interval_length is not None:
        _text(rt, "intervalLength", ch.interval_length)
    _text(rt, "kind", spec.kind)
    if spec.phase:
        _text(rt, "phase", spec.phase)
    _text(rt, "powerOfTenMultiplier", spec.power_of_ten)
    _text(rt, "uom", spec.uom)
    return mmr


def _mirror_usage_point(
    parent: Element | None, hub_id: str, lfdi: str, point: MirrorPoint, query: str
) -> Element:
    mup = _el(parent, "MirrorUsagePoint", mup_href(point.meter) + query)
    _text(mup, "mRID", mrid(hub_id, upt_href(point.meter)))  # the UsagePoint's mRID
    _text(mup, "description", string32(point.meter if point.appliance is None else point.appliance))
    _text(mup, "roleFlags", hex16(MIRROR_ROLES if point.appliance is None else SUBMETER_ROLES | ROLE_MIRROR))
    _text(mup, "serviceCategoryKind", point.fuel_kind)
    _text(mup, "status", 1)
    _text(mup, "deviceLFDI", lfdi)
    for ch in point.channels:
        _mirror_meter_reading(mup, hub_id, point.meter, ch, query)
    return mup


def write_mirror_usage_points(
    hub_id: str, lfdi: str, href: str, points: Sequence[MirrorPoint], all_: int, query: str = ""
) -> bytes:
    """The bulk body: a MirrorUsagePointList holding ``points``, one MirrorUsagePoint per meter.

    ``all_`` is the number of usage points the list has (the List's ``all``); ``results`` is how
    many this response carries. ``query`` (``?recipient=…`` or empty) is appended to every href,
    so a client follows them for the same recipient. See :mod:`smarthub.wan.client.bulk`."""
    root = _list("MirrorUsagePointList", href + query, all_, 0)
    for point in points:
        _mirror_usage_point(root, hub_id, lfdi, point, query)
    return to_bytes(done(root))


def write_mirror_usage_point(hub_id: str, lfdi: str, point: MirrorPoint, query: str = "") -> bytes:
    return to_bytes(_mirror_usage_point(None, hub_id, lfdi, point, query))


def write_mirror_meter_reading(hub_id: str, meter: str, channel: ChannelRows, query: str = "") -> bytes:
    return to_bytes(_mirror_meter_reading(None, hub_id, meter, channel, query))


__all__ = [
    "CONTENT_TYPE",
    "DAY",
    "DTD_REFUSED",
    "MAIN_METER_ROLES",
    "MIRROR_ROLES",
    "MUP_LIST_HREF",
    "NS",
    "QUALITY_VALID",
    "SUBMETER_ROLES",
    "UNTRUSTED_PARSER_OPTIONS",
    "ChannelRows",
    "Element",
    "MirrorPoint",
    "XmlRefused",
    "channel_token",
    "consumption_tariff_interval",
    "consumption_tariff_interval_list",
    "device_capability",
    "device_capability_ihd",
    "done",
    "end_device",
    "end_device_list",
    "hex16",
    "is_register_href",
    "log_event",
    "log_event_list",
    "messaging_program",
    "messaging_program_list",
    "meter_of_href",
    "meter_reading",
    "meter_reading_list",
    "mmr_href",
    "mr_href",
    "mrid",
    "mup_href",
    "parse_channel_token",
    "parse_untrusted",
    "rate_component",
    "rate_component_list",
    "reading",
    "reading_href_of_mirror",
    "reading_list",
    "reading_set",
    "reading_set_list",
    "reading_type",
    "refuse_dtd_bytes",
    "refuse_dtd_tree",
    "string32",
    "string_n",
    "tariff_profile",
    "tariff_profile_list",
    "text_message",
    "text_message_list",
    "time_resource",
    "time_tariff_interval",
    "time_tariff_interval_list",
    "to_bytes",
    "upt_href",
    "usage_point",
    "usage_point_list",
    "wide_encoding",
    "write_mirror_meter_reading",
    "write_mirror_usage_point",
    "write_mirror_usage_points",
    "xml_safe",
]
