"""Bodies of the privacy commands: ``consent.set`` and ``supplier.keys``."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from smarthub.wan.contract.bodies.base import FUELS, LFDI_HEX, CommandBody, Fields


class Granularity(enum.StrEnum):
    """How fine the data a recipient may receive from a hub is, as the hub's privacy filter
    spells it (the GDSC maps its own consent levels onto these)."""

    HALF_HOURLY = "half-hourly"
    DAILY = "daily"
    MONTHLY = "monthly"
    TARIFF_REGISTERS = "tariff-registers"  # the meter's per-tariff register totals, no intervals
    NONE = "none"

    @property
    def rank(self) -> int:
        return {"none": 0, "tariff-registers": 1, "monthly": 2, "daily": 3, "half-hourly": 4}[self.value]

    @property
    def has_intervals(self) -> bool:
        return self in (Granularity.HALF_HOURLY, Granularity.DAILY, Granularity.MONTHLY)


GRANULARITIES = tuple(g.value for g in Granularity)
SCOPE_KEYS = frozenset({"meters", "data_from", "data_until", "events", "appliances"})


@dataclass(frozen=True, slots=True)
class ConsentScope:
    """What a recipient's consent covers beyond its granularity (``hub.privacy``, "Scope")."""

    meters: Mapping[str, Granularity] | None = None  # None: every meter, at the recipient's granularity
    data_from: int | None = None  # epoch s: no data recorded before this (the tenancy's start)
    data_until: int | None = None  # epoch s: nor at or after this (the tenancy's end)
    events: bool = False  # the hub's diagnosed events
    # The appliance sub-meters (smart plugs) and how finely: per-appliance consumption leaves the
    # home only under a consent that names it (hub.privacy, "Appliances"). None: not at all.
    appliances: Granularity | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "meters": None if self.meters is None else {m: g.value for m, g in sorted(self.meters.items())},
            "data_from": self.data_from,
            "data_until": self.data_until,
            "events": self.events,
        }
        if self.appliances is not None:  # only when given: a hub from before them never sees the key
            out["appliances"] = self.appliances.value
        return out

    @classmethod
    def read(cls, f: Fields, granularity: str = Granularity.HALF_HOURLY.value) -> ConsentScope:
        raw = f.raw("meters", None)
        meters: dict[str, Granularity] | None = None
        if raw is not None:
            if isinstance(raw, list):  # a plain list: every one at the recipient's granularity
                raw = {str(m): granularity for m in raw}
            if not isinstance(raw, Mapping) or not all(isinstance(m, str) and m for m in raw):
                raise f.bad("meters", "must map meter ids to granularities (or list meter ids)")
            meters = {}
            for m, g in raw.items():
                if g not in GRANULARITIES:
                    raise f.bad("meters", f"gives meter {m!r:.40} the unknown granularity {g!r:.40}")
                meters[m] = Granularity(g)
        data_from = f.opt_integer("data_from", minimum=0)
        data_until = f.opt_integer("data_until", minimum=0)
        if data_from is not None and data_until is not None and data_until <= data_from:
            raise f.bad("data_until", "must be after data_from")
        appliances = f.raw("appliances", None)
        if appliances is not None:
            if appliances not in GRANULARITIES:
                raise f.bad("appliances", f"must be a granularity or null, got {appliances!r:.40}")
            appliances = Granularity(appliances)
        return cls(meters, data_from, data_until, f.flag("events", False), appliances)

    @classmethod
    def from_json(cls, body: Mapping[str, object]) -> ConsentScope:
        """From a stored scope or a ``consent.set`` body; MalformedCommand naming the field."""
        granularity = body.get("granularity", Granularity.HALF_HOURLY.value)
        return cls.read(Fields("consent.set", body), str(granularity))


@dataclass(frozen=True, slots=True)
class ConsentSet(CommandBody):
    """A consent decision relayed from the GDSC: ``version`` orders decisions (microseconds since
    the epoch); ``scope`` None (no scope key on the wire, an older GDSC) keeps the hub's."""

    TYPE: ClassVar[str] = "consent.set"
    recipient: str
    granularity: Granularity
    version: int | None = None
    scope: ConsentScope | None = None

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        f = Fields(cls.TYPE, body)
        granularity = Granularity(f.choice("granularity", GRANULARITIES))
        scope = ConsentScope.read(f, granularity.value) if SCOPE_KEYS & body.keys() else None
        return cls(
            f.text("recipient", nonempty=True), granularity, f.opt_integer("version", minimum=0), scope
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"recipient": self.recipient, "granularity": self.granularity.value}
        if self.version is not None:
            out["version"] = self.version
        if self.scope is not None:
            out.update(self.scope.to_json())
        return out


@dataclass(frozen=True, slots=True)
class SupplierKeys(CommandBody):
    """Who supplies ``fuel`` from ``effective`` (UTC, on a half-hour: GB supply changes at the
    start of a settlement period), with the supplier certificate's LFDI."""

    TYPE: ClassVar[str] = "supplier.keys"
    fuel: str
    supplier_id: str
    lfdi: str
    effective: datetime

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        f = Fields(cls.TYPE, body)
        effective = f.instant("effective")
        if int(effective.timestamp()) % 1800 or effective.microsecond:
            raise f.bad(
                "effective", f"{effective.isoformat()} is not on a half-hour (settlement period) boundary"
            )
        return cls(
            f.choice("fuel", FUELS),
            f.text("supplier_id", nonempty=True),
            f.hex("lfdi", length=LFDI_HEX),
            effective.astimezone(UTC),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "fuel": self.fuel,
            "supplier_id": self.supplier_id,
            "lfdi": self.lfdi,
            "effective": self.effective.isoformat(),
        }


__all__ = ["GRANULARITIES", "SCOPE_KEYS", "ConsentScope", "ConsentSet", "Granularity", "SupplierKeys"]
