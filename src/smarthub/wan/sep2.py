"""IEEE 2030.5 resource models and href scheme shared by the hub's server and the GDSC's client.

The XML binding is envoy-schema's (pydantic-xml models bound to the 2030.5 XSD); we add
only the ReadingSetList it lacks. Everything emitted is validated against the 2030.5-2018
XSD in the tests.

Href scheme (the WADL's recommended structure, 2030.5-2018 Annex D metering):
``/dcap``, ``/tm``, ``/upt``, ``/upt/{meter}``, ``/upt/{meter}/mr``, ``/upt/{meter}/mr/{ch}``,
``…/rt``, ``…/rs``, ``…/rs/{day}``, ``…/rs/{day}/r``, and ``…/r`` for the latest reading,
where ``{ch}`` is the channel's OBIS code written ``A.B.C.D.E.F`` and ``{day}`` the UTC
midnight (epoch seconds) that starts a day's ReadingSet.
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote

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
from pydantic_xml import element

from smarthub.model import ObisCode

CONTENT_TYPE = "application/sep+xml"
DAY = 86400


class ReadingSetListResponse(SubscribableList, tag="ReadingSetList"):
    """2030.5 ReadingSetList (absent from envoy-schema)."""

    ReadingSet_: list[ReadingSet] | None = element(default=None, tag="ReadingSet")


def channel_token(obis: ObisCode) -> str:
    return ".".join(str(v) for v in (obis.a, obis.b, obis.c, obis.d, obis.e, obis.f))


def parse_channel_token(token: str) -> ObisCode:
    parts = token.split(".")
    if len(parts) != 6 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a channel token: {token!r}")
    return ObisCode(*(int(p) for p in parts))


def upt_href(meter: str) -> str:
    return f"/upt/{quote(meter, safe='')}"


def mr_href(meter: str, obis: ObisCode) -> str:
    return f"{upt_href(meter)}/mr/{channel_token(obis)}"


def mrid(*parts: str) -> str:
    """A stable 128-bit mRID for a resource, as 32 uppercase hex digits."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:32].upper()


def to_xml(model: object) -> bytes:
    return model.to_xml(skip_empty=True, exclude_none=True)  # type: ignore[attr-defined,no-any-return]


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
    "mr_href",
    "mrid",
    "parse_channel_token",
    "to_xml",
    "upt_href",
]
