"""Body of ``ihd.services``: the household's view of third-party data services, for its display.

The GDSC keeps who read a household's data (its audit log); the hub does not see reads made of
the GDSC's copy. So the GDSC sends the display, as a signed command through the pull channel,
what the current occupant would get from ``GET /v1/premises/{id}/services``
(:mod:`smarthub.gdsc.governance.service_activity`): per service, the GDSC's decision on it, the
occupant's live consents to it, and its most recent reads (data kind, meter, granularity, the
periods served, when) with totals. Each body is the whole view ``as_of`` an instant: the display
keeps the latest and shows it (an older one arriving late is ignored), and an empty list clears it
(a new occupant).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self

from smarthub.wan.contract.bodies.base import CommandBody, Fields
from smarthub.wan.contract.commands import MalformedCommand

# The GDSC's consent granularities (smarthub.gdsc.governance.parties.Granularity), shown as sent.
SERVICE_GRANULARITIES = ("half-hourly", "daily", "monthly", "tariff-register", "none")
SERVICE_STATUSES = ("applied", "approved", "refused", "suspended", "revoked", "registered")
# What the GDSC sends today.
DATA_KINDS = ("readings", "events", "demand-response", "appliances", "ihd-messages")
# A data kind as the GDSC names it: shown as sent, so a kind added at the GDSC after this hub's
# firmware (demand-response was) is displayed rather than making the whole view refused.
_DATA_KIND = re.compile(r"[a-z][a-z0-9-]{0,31}")
MAX_KINDS = 8
MAX_SERVICES = 32
MAX_CONSENTS = 8
MAX_READS = 10
MAX_PERIODS = 8
TYPE = "ihd.services"


def _fields(f: Fields, key: str, v: object) -> Fields:
    """A nested object's fields; its errors name ``key`` (``services[2].reads[0]``)."""
    if not isinstance(v, Mapping):
        raise f.bad(key, f"must be a JSON object, got {type(v).__name__}")
    return _Nested(f.ctype, v, f"{f.prefix}.{key}" if isinstance(f, _Nested) else key)


class _Nested(Fields):
    def __init__(self, ctype: str, body: Mapping[str, object], prefix: str) -> None:
        super().__init__(ctype, body)
        self.prefix = prefix

    def bad(self, key: str, what: str) -> MalformedCommand:
        return super().bad(f"{self.prefix}.{key}", what)


def _items(f: Fields, key: str, limit: int) -> Sequence[object]:
    items = f.array(key, [])
    if len(items) > limit:
        raise f.bad(key, f"has {len(items)} entries, at most {limit}")
    return items


def _data_kind(f: Fields) -> str:
    kind = f.text("data_kind", nonempty=True, max_len=32)
    if not _DATA_KIND.fullmatch(kind):
        raise f.bad("data_kind", f"must be a data kind (a-z, 0-9, '-'), got {kind!r:.40}")
    return kind


def _opt_instant(f: Fields, key: str) -> datetime | None:
    return None if f.raw(key, None) is None else f.instant(key)


@dataclass(frozen=True, slots=True)
class ServiceConsent:
    consent_id: str
    data_kinds: tuple[str, ...]
    granularity: str
    granted: datetime
    expires: datetime

    @classmethod
    def parse(cls, f: Fields) -> ServiceConsent:
        kinds = tuple(_items(f, "data_kinds", MAX_KINDS))
        for i, k in enumerate(kinds):
            if not isinstance(k, str) or not _DATA_KIND.fullmatch(k):
                raise f.bad(f"data_kinds[{i}]", f"must be a data kind (a-z, 0-9, '-'), got {k!r:.40}")
        return cls(
            f.text("id", nonempty=True, max_len=64),
            tuple(str(k) for k in kinds),
            f.choice("granularity", SERVICE_GRANULARITIES),
            f.instant("granted"),
            f.instant("expires"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.consent_id,
            "data_kinds": list(self.data_kinds),
            "granularity": self.granularity,
            "granted": self.granted.isoformat(),
            "expires": self.expires.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class ServiceReadSummary:
    at: datetime
    data_kind: str
    granularity: str | None
    meter: str | None
    periods: tuple[tuple[datetime, datetime], ...]

    @classmethod
    def parse(cls, f: Fields) -> ServiceReadSummary:
        periods = []
        for i, p in enumerate(_items(f, "periods", MAX_PERIODS)):
            g = _fields(f, f"periods[{i}]", p)
            start, end = g.instant("start"), g.instant("end")
            if end <= start:
                raise g.bad("end", "must be after start")
            periods.append((start, end))
        granularity = (
            None if f.raw("granularity", None) is None else f.choice("granularity", SERVICE_GRANULARITIES)
        )
        return cls(
            f.instant("at"),
            _data_kind(f),
            granularity,
            None if f.raw("meter", None) is None else f.text("meter", max_len=64),
            tuple(periods),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "data_kind": self.data_kind,
            "granularity": self.granularity,
            "meter": self.meter,
            "periods": [{"start": s.isoformat(), "end": e.isoformat()} for s, e in self.periods],
        }


@dataclass(frozen=True, slots=True)
class ServiceSummary:
    service_id: str
    organisation: str
    purpose: str
    status: str
    consents: tuple[ServiceConsent, ...]
    reads: tuple[ServiceReadSummary, ...]  # newest first
    reads_total: int
    refused_total: int
    last_read: datetime | None

    @classmethod
    def parse(cls, f: Fields) -> ServiceSummary:
        consents = tuple(
            ServiceConsent.parse(_fields(f, f"consents[{i}]", c))
            for i, c in enumerate(_items(f, "consents", MAX_CONSENTS))
        )
        reads = tuple(
            ServiceReadSummary.parse(_fields(f, f"reads[{i}]", r))
            for i, r in enumerate(_items(f, "reads", MAX_READS))
        )
        total = f.integer("reads_total", minimum=0)
        if total < len(reads):
            raise f.bad("reads_total", f"is {total}, fewer than the {len(reads)} reads listed")
        return cls(
            f.text("id", nonempty=True, max_len=64),
            f.text("organisation", nonempty=True, max_len=120),
            f.text("purpose", "", max_len=200),
            f.choice("status", SERVICE_STATUSES),
            consents,
            reads,
            total,
            f.integer("refused_total", minimum=0),
            _opt_instant(f, "last_read"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.service_id,
            "organisation": self.organisation,
            "purpose": self.purpose,
            "status": self.status,
            "consents": [c.to_json() for c in self.consents],
            "reads": [r.to_json() for r in self.reads],
            "reads_total": self.reads_total,
            "refused_total": self.refused_total,
            "last_read": None if self.last_read is None else self.last_read.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class IhdServices(CommandBody):
    """The household's data services as of ``as_of`` (the whole view: it replaces the last)."""

    TYPE: ClassVar[str] = TYPE
    as_of: datetime
    services: tuple[ServiceSummary, ...]

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        f = Fields(cls.TYPE, body)
        services = tuple(
            ServiceSummary.parse(_fields(f, f"services[{i}]", s))
            for i, s in enumerate(_items(f, "services", MAX_SERVICES))
        )
        if len({s.service_id for s in services}) != len(services):
            raise f.bad("services", "names a service twice")
        return cls(f.instant("as_of"), services)

    def to_json(self) -> dict[str, Any]:
        return {"as_of": self.as_of.isoformat(), "services": [s.to_json() for s in self.services]}
