"""IEEE 2030.5 Demand Response / Load Control documents (DRLC function set, §10.7): the
``EndDeviceControl`` an event travels as and the ``ResponseList`` of ``DrResponse`` the hub answers
with. Both sides of the WAN use them: the GDSC builds the event a data service asks for
(:mod:`smarthub.gdsc.commands.demand_response`) and reads the responses it pulls, the hub's DRLC
client (:mod:`smarthub.hub.drlc`) parses the event and writes the responses.

The XML is read and written with lxml in the XSD's element order: envoy-schema's
``EndDeviceControlResponse`` model leaves out the control elements (``DutyCycle``, ``Offset``,
``ApplianceLoadReduction``) the hub acts on.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from lxml import etree

from smarthub.security.xml import XmlRefused, parse_untrusted

NS = "urn:ieee:std:2030.5:ns"
_Q = f"{{{NS}}}"

# 2030.5 DeviceCategoryType: the bit of each category an event may address (the GDSC's
# events and the appliances of a hub's configuration name them so).
DEVICE_CATEGORIES: dict[str, int] = {
    "thermostat": 1 << 0,
    "strip-heater": 1 << 1,
    "baseboard-heater": 1 << 2,
    "water-heater": 1 << 3,  # an immersion heater
    "pool-pump": 1 << 4,
    "sauna": 1 << 5,
    "hot-tub": 1 << 6,
    "smart-appliance": 1 << 7,
    "irrigation-pump": 1 << 8,
    "managed-load": 1 << 9,
    "simple-load": 1 << 10,
    "exterior-lighting": 1 << 11,
    "interior-lighting": 1 << 12,
    "load-control-switch": 1 << 13,
    "energy-management-system": 1 << 14,
    "smart-energy-module": 1 << 15,
    "electric-vehicle": 1 << 16,
    "ev-supply-equipment": 1 << 17,
}


class ResponseStatus(enum.IntEnum):
    """2030.5 Table 27, Response status codes used by DRLC."""

    RECEIVED = 1
    STARTED = 2
    COMPLETED = 3
    OPTED_OUT = 4
    CANCELLED = 6
    SUPERSEDED = 7
    PARTIAL_OPT_OUT = 8
    NO_PARTICIPATION = 10
    REJECTED_NOT_APPLICABLE = 252
    REJECTED_INVALID = 253
    REJECTED_EXPIRED = 254


class InvalidEvent(ValueError):
    """An EndDeviceControl that is not well-formed 2030.5 (response 253)."""


# EventStatus/currentStatus (2030.5 EventStatus)
SCHEDULED, ACTIVE, CANCELLED, CANCELLED_RANDOM, SUPERSEDED = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class EndDeviceControl:
    mrid: str  # hex, 32 digits
    creation: datetime
    status: int  # EventStatus/currentStatus
    start: datetime
    duration: timedelta
    device_category: int  # DeviceCategoryType bitmap
    randomize_start: int = 0  # seconds, -3600..3600
    randomize_duration: int = 0
    response_required: int = 0  # bits: 0 received, 1 specific, 2 user
    duty_cycle: int | None = None  # DutyCycle/normalValue, % of time on
    load_adjustment_offset: int | None = None  # Offset/loadAdjustmentPercentageOffset, hundredths of %
    appliance_load_reduction: int | None = None  # 0 delay, 1 temporary reduction
    load_shift_forward: bool = False
    other_controls: tuple[str, ...] = ()  # SetPoint / TargetReduction: nothing a plug can do
    description: str = ""

    @property
    def end(self) -> datetime:
        return self.start + self.duration

    def load_factor(self) -> float | None:
        """The share of normal load an on/off appliance may draw while the event is in effect
        (None: the event carries no control a switched load can follow)."""
        factors = []
        if self.duty_cycle is not None:
            factors.append(self.duty_cycle / 100)
        if self.load_adjustment_offset is not None:
            # "subtracted from the normal setting, or if loadShiftForward is true, added": adding
            # to a plug's normal (full) load changes nothing.
            sign = 1 if self.load_shift_forward else -1
            factors.append(min(1.0, max(0.0, 1 + sign * self.load_adjustment_offset / 10000)))
        if self.appliance_load_reduction is not None:
            factors.append(0.0)  # delay / temporarily reduce: a switched load is off for the event
        return min(factors) if factors else None

    def to_xml(self) -> bytes:
        """The EndDeviceControl as 2030.5 XML (XSD element order)."""
        root = etree.Element(_Q + "EndDeviceControl", nsmap={None: NS})
        root.set("responseRequired", f"{self.response_required:02X}")
        _sub(root, "mRID", self.mrid)
        if self.description:
            _sub(root, "description", self.description)
        _sub(root, "creationTime", str(int(self.creation.timestamp())))
        status = etree.SubElement(root, _Q + "EventStatus")
        _sub(status, "currentStatus", str(self.status))
        _sub(status, "dateTime", str(int(self.creation.timestamp())))
        _sub(status, "potentiallySuperseded", "false")
        interval = etree.SubElement(root, _Q + "interval")
        _sub(interval, "duration", str(int(self.duration.total_seconds())))
        _sub(interval, "start", str(int(self.start.timestamp())))
        if self.randomize_duration:
            _sub(root, "randomizeDuration", str(self.randomize_duration))
        if self.randomize_start:
            _sub(root, "randomizeStart", str(self.randomize_start))
        if self.appliance_load_reduction is not None:
            alr = etree.SubElement(root, _Q + "ApplianceLoadReduction")
            _sub(alr, "type", str(self.appliance_load_reduction))
        _sub(root, "deviceCategory", f"{self.device_category:08X}")  # xs:hexBinary: whole octets
        _sub(root, "drProgramMandatory", "false")
        if self.duty_cycle is not None:
            _sub(etree.SubElement(root, _Q + "DutyCycle"), "normalValue", str(self.duty_cycle))
        _sub(root, "loadShiftForward", "true" if self.load_shift_forward else "false")
        if self.load_adjustment_offset is not None:
            offset = etree.SubElement(root, _Q + "Offset")
            _sub(offset, "loadAdjustmentPercentageOffset", str(self.load_adjustment_offset))
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _sub(parent: Any, tag: str, text: str) -> Any:
    el = etree.SubElement(parent, _Q + tag)
    el.text = text
    return el


def _int(el: Any, path: str, lo: int, hi: int, default: int | None = None) -> int:
    text = el.findtext(path, namespaces={"s": NS})
    if text is None:
        if default is None:
            raise InvalidEvent(f"EndDeviceControl has no {path.replace('s:', '')}")
        return default
    try:
        value = int(text.strip())
    except ValueError:
        raise InvalidEvent(f"{path.replace('s:', '')} is not an integer: {text!r}") from None
    if not lo <= value <= hi:
        raise InvalidEvent(f"{path.replace('s:', '')} = {value} is outside {lo}..{hi}")
    return value


def parse_end_device_control(xml: bytes | str) -> EndDeviceControl:
    """An EndDeviceControl from 2030.5 XML; :class:`InvalidEvent` saying what is wrong."""
    try:
        root = parse_untrusted(xml.encode() if isinstance(xml, str) else xml)
    except XmlRefused as err:
        # A DTD is refused before parsing: no entity expansion, no external entity or DTD read.
        raise InvalidEvent(str(err).replace("malformed XML", "not XML")) from None
    if root.tag != _Q + "EndDeviceControl":
        raise InvalidEvent(f"expected a 2030.5 EndDeviceControl, got {root.tag!s}")
    mrid = (root.findtext("s:mRID", namespaces={"s": NS}) or "").strip().upper()
    if len(mrid) != 32 or any(c not in "0123456789ABCDEF" for c in mrid):
        raise InvalidEvent(f"mRID must be 32 hex digits, got {mrid!r}")
    category_text = (root.findtext("s:deviceCategory", namespaces={"s": NS}) or "").strip()
    try:
        category = int(category_text, 16)
    except ValueError:
        raise InvalidEvent(f"deviceCategory is not hex: {category_text!r}") from None
    try:
        required = int(root.get("responseRequired", "00"), 16)
    except ValueError:
        raise InvalidEvent("responseRequired is not hex") from None
    u32 = (0, 2**32 - 1)
    duty = root.find("s:DutyCycle", namespaces={"s": NS})
    offset = root.find("s:Offset", namespaces={"s": NS})
    alr = root.find("s:ApplianceLoadReduction", namespaces={"s": NS})
    shift = (root.findtext("s:loadShiftForward", namespaces={"s": NS}) or "false").strip() in ("true", "1")
    others = tuple(t for t in ("SetPoint", "TargetReduction") if root.find(f"s:{t}", {"s": NS}) is not None)
    lao = None
    if offset is not None and offset.find("s:loadAdjustmentPercentageOffset", {"s": NS}) is not None:
        lao = _int(offset, "s:loadAdjustmentPercentageOffset", 0, 10000)
    return EndDeviceControl(
        mrid=mrid,
        creation=datetime.fromtimestamp(_int(root, "s:creationTime", *u32), UTC),
        status=_int(root, "s:EventStatus/s:currentStatus", 0, 4),
        start=datetime.fromtimestamp(_int(root, "s:interval/s:start", *u32), UTC),
        duration=timedelta(seconds=_int(root, "s:interval/s:duration", 1, 2**32 - 1)),
        device_category=category,
        randomize_start=_int(root, "s:randomizeStart", -3600, 3600, 0),
        randomize_duration=_int(root, "s:randomizeDuration", -3600, 3600, 0),
        response_required=required,
        duty_cycle=None if duty is None else _int(duty, "s:normalValue", 0, 100),
        load_adjustment_offset=lao,
        appliance_load_reduction=None if alr is None else _int(alr, "s:type", 0, 1),
        load_shift_forward=shift,
        other_controls=others,
        description=(root.findtext("s:description", namespaces={"s": NS}) or "").strip(),
    )


# -- responses ---------------------------------------------------------------------------------

_XSI = "http://www.w3.org/2001/XMLSchema-instance"


@dataclass(frozen=True, slots=True)
class DrResponse:
    """One 2030.5 ``DrResponse`` (§10.7.3): the device, the event (``subject``, its mRID) and the
    status (Table 27) at ``created``; ``response_id`` is the last segment of its ``href``."""

    response_id: int
    created: datetime
    lfdi: str
    status: int
    subject: str

    @property
    def status_name(self) -> str:
        try:
            return ResponseStatus(self.status).name.lower()
        except ValueError:
            return f"status-{self.status}"


def response_list_xml(lfdi: str, responses: Iterable[tuple[int, datetime, int, str]]) -> bytes:
    """A 2030.5 ``ResponseList`` of ``DrResponse`` from ``(id, at, status, mRID)`` tuples."""
    rs = list(responses)
    root = etree.Element(_Q + "ResponseList", nsmap={None: NS, "xsi": _XSI})
    root.set("all", str(len(rs)))
    root.set("results", str(len(rs)))
    root.set("href", "/rsps/drlc/rsp")
    for rid, at, status, mrid in rs:
        el = etree.SubElement(root, _Q + "Response")
        el.set(f"{{{_XSI}}}type", "DrResponse")
        el.set("href", f"/rsps/drlc/rsp/{rid}")
        _sub(el, "createdDateTime", str(int(at.timestamp())))
        _sub(el, "endDeviceLFDI", lfdi)
        _sub(el, "status", str(int(status)))
        _sub(el, "subject", mrid)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


class InvalidResponseList(ValueError):
    """A ResponseList that is not well-formed 2030.5."""


def parse_response_list(xml: bytes | str) -> list[DrResponse]:
    """The ``DrResponse`` entries of a 2030.5 ``ResponseList`` (as a hub answers
    ``drlc.responses``); :class:`InvalidResponseList` saying what is wrong."""
    try:
        root = parse_untrusted(xml.encode() if isinstance(xml, str) else xml)
    except XmlRefused as err:
        raise InvalidResponseList(str(err)) from None
    if root.tag != _Q + "ResponseList":
        raise InvalidResponseList(f"expected a 2030.5 ResponseList, got {root.tag!s}")
    out = []
    for el in root.findall("s:Response", namespaces={"s": NS}):
        href = el.get("href", "")
        tail = href.rsplit("/", 1)[-1]
        if not tail.isdigit():
            raise InvalidResponseList(f"Response href {href!r} does not end in a response id")
        try:
            created = int((el.findtext("s:createdDateTime", namespaces={"s": NS}) or "").strip())
            status = int((el.findtext("s:status", namespaces={"s": NS}) or "").strip())
        except ValueError:
            raise InvalidResponseList(
                f"Response {href}: createdDateTime or status is not an integer"
            ) from None
        subject = (el.findtext("s:subject", namespaces={"s": NS}) or "").strip().upper()
        lfdi = (el.findtext("s:endDeviceLFDI", namespaces={"s": NS}) or "").strip().upper()
        if not subject:
            raise InvalidResponseList(f"Response {href} has no subject")
        out.append(DrResponse(int(tail), datetime.fromtimestamp(created, UTC), lfdi, status, subject))
    return out
