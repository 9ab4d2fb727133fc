"""IEEE 2030.5 resource models the GDSC's client parses hub responses into.

The XML binding is envoy-schema's (pydantic-xml models bound to the 2030.5 XSD); we add
only the ReadingSetList it lacks. The hub does not import this module: it builds what it
serves with lxml (:mod:`smarthub.wan.contract.sep2_xml`, which says why and holds the href scheme,
re-exported here for the client).
"""

from __future__ import annotations

from envoy_schema.server.schema.sep2.device_capability import DeviceCapabilityResponse
from envoy_schema.server.schema.sep2.identification import Link, ListLink, SubscribableList
from envoy_schema.server.schema.sep2.metering import (
    MeterReading,
    MeterReadingListResponse,
    Reading,
    ReadingListResponse,
    ReadingSet,
    ReadingType,
    UsagePoint,
    UsagePointListResponse,
)
from envoy_schema.server.schema.sep2.time import TimeResponse
from envoy_schema.server.schema.sep2.types import DateTimeIntervalType
from pydantic_xml import BaseXmlModel, element

from smarthub.wan.contract.sep2_xml import (
    CONTENT_TYPE,
    DAY,
    channel_token,
    meter_of_href,
    mr_href,
    mrid,
    parse_channel_token,
    upt_href,
)


class ReadingSetListResponse(SubscribableList, tag="ReadingSetList"):
    """2030.5 ReadingSetList (absent from envoy-schema)."""

    ReadingSet_: list[ReadingSet] | None = element(default=None, tag="ReadingSet")


def to_xml(model: BaseXmlModel) -> bytes:
    out = model.to_xml(skip_empty=True, exclude_none=True)
    return out if isinstance(out, bytes) else out.encode()  # bytes with the lxml backend


__all__ = [
    "CONTENT_TYPE",
    "DAY",
    "DateTimeIntervalType",
    "DeviceCapabilityResponse",
    "Link",
    "ListLink",
    "MeterReading",
    "MeterReadingListResponse",
    "Reading",
    "ReadingListResponse",
    "ReadingSet",
    "ReadingSetListResponse",
    "ReadingType",
    "TimeResponse",
    "UsagePoint",
    "UsagePointListResponse",
    "channel_token",
    "meter_of_href",
    "mr_href",
    "mrid",
    "parse_channel_token",
    "to_xml",
    "upt_href",
]
