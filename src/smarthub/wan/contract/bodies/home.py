"""Bodies of the commands for the home: the in-home display's messages, comparison and
appliance names, appliance runs, and demand response (2030.5 DRLC)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar, Self

from smarthub.wan.contract.bodies.base import CommandBody, Fields

MAX_TEXT = 500  # characters of a message's text
TEXT_PRIORITIES = (0, 1, 2, 3)  # 2030.5 TextMessage.priority: low, normal, high, very high
DISPLAY_PRIORITIES = ("low", "normal", "high")  # 2030.5 PriorityType, by name
MAX_DISPLAY_S = 366 * 86400
DEFAULT_SENDER = "GDSC"
# Who a text is from, for the display to say so: the premises' supplier (the default, as every
# ``ihd.message`` was before data services could send one) or a third-party data service the
# occupant consented to (issue 25), shown by its name and marked as not the supplier.
MESSAGE_ORIGINS = ("supplier", "third-party")
MAX_SENDER_NAME = 120
COMPARISON_FUELS = ("electricity", "gas")


def _opt_instant(f: Fields, key: str) -> datetime | None:
    return None if f.raw(key, None) is None else f.instant(key, aware=False)


@dataclass(frozen=True, slots=True)
class IhdMessage(CommandBody):
    """A supplier's (or a consented data service's) text (2030.5 Messaging, TextMessage), shown
    until acknowledged; kept once per ``sender`` and ``id``. ``origin`` says whose it is:
    ``supplier`` (absent on the wire) or ``third-party``, which carries ``sender_name``, the
    service's name the display shows."""

    TYPE: ClassVar[str] = "ihd.message"
    sender: str
    id: str
    text: str
    priority: int = 1
    expires: datetime | None = None
    start: datetime | None = None
    origin: str = MESSAGE_ORIGINS[0]
    sender_name: str | None = None

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        f = Fields(cls.TYPE, body)
        priority = f.integer("priority", 1)
        if priority not in TEXT_PRIORITIES:
            raise f.bad("priority", f"must be one of {TEXT_PRIORITIES}, got {priority}")
        origin = f.text("origin", MESSAGE_ORIGINS[0])
        if origin not in MESSAGE_ORIGINS:
            raise f.bad("origin", f"must be one of {MESSAGE_ORIGINS}, got {origin!r:.40}")
        name = (
            None
            if f.raw("sender_name", None) is None
            else f.text("sender_name", nonempty=True, max_len=MAX_SENDER_NAME)
        )
        if origin != MESSAGE_ORIGINS[0] and name is None:
            raise f.bad("sender_name", "is missing: a third party's message names the service")
        return cls(
            f.text("sender", nonempty=True, max_len=64),
            f.text("id", nonempty=True, max_len=64),
            f.text("text", nonempty=True, max_len=MAX_TEXT),
            priority,
            _opt_instant(f, "expires"),
            _opt_instant(f, "start"),
            origin,
            name,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sender": self.sender,
            "id": self.id,
            "text": self.text,
            "priority": self.priority,
        }
        if self.expires is not None:
            out["expires"] = self.expires.isoformat()
        if self.start is not None:
            out["start"] = self.start.isoformat()
        if self.origin != MESSAGE_ORIGINS[0]:
            out["origin"] = self.origin
        if self.sender_name is not None:
            out["sender_name"] = self.sender_name
        return out


@dataclass(frozen=True, slots=True)
class MessageDisplay(CommandBody):
    """A supplier's text with a display window: from ``start`` for ``duration_s`` seconds."""

    TYPE: ClassVar[str] = "message.display"
    text: str
    priority: str
    start: datetime
    duration_s: int
    sender: str = DEFAULT_SENDER

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        f = Fields(cls.TYPE, body)
        duration = f.integer("duration_s", minimum=1)
        if duration > MAX_DISPLAY_S:
            raise f.bad("duration_s", f"{duration} is over a year")
        return cls(
            f.text("text", nonempty=True, max_len=MAX_TEXT),
            f.choice("priority", DISPLAY_PRIORITIES),
            f.instant("start"),
            duration,
            f.text("sender", DEFAULT_SENDER, nonempty=True, max_len=20),  # 2030.5 originator: String20
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "text": self.text,
            "priority": self.priority,
            "start": self.start.isoformat(),
            "duration_s": self.duration_s,
        }
        if self.sender != DEFAULT_SENDER:
            out["sender"] = self.sender
        return out


@dataclass(frozen=True, slots=True)
class FuelFigures:
    average_kwh: Decimal
    efficient_kwh: Decimal


@dataclass(frozen=True, slots=True)
class IhdComparison(CommandBody):
    """What similar homes used over ``start``..``end`` (local dates), per fuel."""

    TYPE: ClassVar[str] = "ihd.comparison"
    start: date
    end: date
    homes: int
    description: str
    fuels: Mapping[str, FuelFigures]

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        f = Fields(cls.TYPE, body)
        start, end = f.date("start"), f.date("end")
        if end <= start:
            raise f.bad("end", f"makes the period {start}..{end} empty")
        fuels = {}
        for fuel in COMPARISON_FUELS:
            if f.has(fuel):
                figs = f.mapping(fuel)
                average = f.decimal(f"{fuel}.average_kwh", figs.get("average_kwh"))
                efficient = f.decimal(f"{fuel}.efficient_kwh", figs.get("efficient_kwh"))
                if average < 0 or efficient < 0:
                    raise f.bad(fuel, "kWh cannot be negative")
                fuels[fuel] = FuelFigures(average, efficient)
        if not fuels:
            raise f.bad("electricity", "or 'gas' must be given")
        return cls(
            start, end, f.integer("homes", minimum=1), f.text("description", "similar homes")[:120], fuels
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "homes": self.homes,
            "description": self.description,
        }
        for fuel, x in sorted(self.fuels.items()):
            out[fuel] = {"average_kwh": str(x.average_kwh), "efficient_kwh": str(x.efficient_kwh)}
        return out


# A building's sub-meter media a tenant's monthly information covers (issue 21; EED Art. 10a and
# Annex VIIa: consumption per month, against last month, the same month last year and the
# building's average, in the billing's units and costs), and the fewest flats an average may
# be of (k-anonymity, as the data services' aggregates: an average of fewer says too much).
BUILDING_MEDIA = ("heat_cost_allocator", "warm_water", "water")
BUILDING_MIN_FLATS = 5


@dataclass(frozen=True, slots=True)
class IhdBuilding(CommandBody):
    """A month's information for a flat's tenant from its housing provider's billing: the
    building's average use per m² of heated area per sub-meter medium (over ``flats`` flats, at
    least :data:`BUILDING_MIN_FLATS`), the flat's heated area, and the billing's price of each unit
    (allocator unit, m³ of hot or cold water) to show costs in."""

    TYPE: ClassVar[str] = "ihd.building"
    month: date  # the first day of the (local) month the average is of
    flats: int
    flat_area_m2: Decimal
    per_m2: Mapping[str, Decimal]
    prices: Mapping[str, Decimal]
    currency: str = "EUR"

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        f = Fields(cls.TYPE, body)
        month = f.date("month")
        if month.day != 1:
            raise f.bad("month", "is the first day of a month")
        flats = f.integer("flats")
        if flats < BUILDING_MIN_FLATS:
            raise f.bad("flats", f"an average of fewer than {BUILDING_MIN_FLATS} flats is never shown")
        area = f.decimal("flat_area_m2")
        if not area > 0:
            raise f.bad("flat_area_m2", "must be positive")
        figures: dict[str, dict[str, Decimal]] = {}
        for key in ("per_m2", "prices"):
            raw = f.mapping(key, {})
            out = {}
            for medium, v in raw.items():
                if medium not in BUILDING_MEDIA:
                    raise f.bad(key, f"{medium!r} is not one of {', '.join(BUILDING_MEDIA)}")
                x = f.decimal(f"{key}.{medium}", v)
                if x < 0:
                    raise f.bad(f"{key}.{medium}", "cannot be negative")
                out[medium] = x
            figures[key] = out
        if not figures["per_m2"]:
            raise f.bad("per_m2", "names no medium")
        currency = f.text("currency", "EUR")
        if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
            raise f.bad("currency", "is an ISO 4217 code")
        return cls(month, flats, area, figures["per_m2"], figures["prices"], currency)

    def to_json(self) -> dict[str, Any]:
        return {
            "month": self.month.isoformat(),
            "flats": self.flats,
            "flat_area_m2": str(self.flat_area_m2),
            "per_m2": {m: str(v) for m, v in sorted(self.per_m2.items())},
            "prices": {m: str(v) for m, v in sorted(self.prices.items())},
            "currency": self.currency,
        }


@dataclass(frozen=True, slots=True)
class IhdAppliance(CommandBody):
    """Name the appliance a sub-meter or smart plug measures."""

    TYPE: ClassVar[str] = "ihd.appliance"
    meter: str
    name: str

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        f = Fields(cls.TYPE, body)
        return cls(
            f.text("meter", nonempty=True, max_len=64), f.text("name", nonempty=True, max_len=40).strip()
        )

    def to_json(self) -> dict[str, Any]:
        return {"meter": self.meter, "name": self.name}


@dataclass(frozen=True, slots=True)
class ApplianceRun(CommandBody):
    """Place an appliance's run (energy per step) in the cheapest window between ``earliest``
    and ``deadline``."""

    TYPE: ClassVar[str] = "appliance.run"
    appliance: str
    kwh: tuple[Decimal, ...]
    earliest: datetime
    deadline: datetime
    step_minutes: int = 30

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        f = Fields(cls.TYPE, body)
        steps = f.array("kwh")
        kwh = tuple(f.decimal(f"kwh[{i}]", e) for i, e in enumerate(steps))
        return cls(
            f.text("appliance", nonempty=True),
            kwh,
            f.instant("earliest", aware=False),
            f.instant("deadline", aware=False),
            f.integer("step_minutes", 30, minimum=1),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "appliance": self.appliance,
            "kwh": [str(e) for e in self.kwh],
            "earliest": self.earliest.isoformat(),
            "deadline": self.deadline.isoformat(),
            "step_minutes": self.step_minutes,
        }


@dataclass(frozen=True, slots=True)
class DrlcEvent(CommandBody):
    """A 2030.5 EndDeviceControl (XML), checked by the hub's DRLC client."""

    TYPE: ClassVar[str] = "drlc.event"
    xml: str

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        return cls(Fields(cls.TYPE, body).text("xml", nonempty=True))

    def to_json(self) -> dict[str, Any]:
        return {"xml": self.xml}


@dataclass(frozen=True, slots=True)
class DrlcResponses(CommandBody):
    """The DRLC responses after the id the GDSC last saw."""

    TYPE: ClassVar[str] = "drlc.responses"
    after: int = 0

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        return cls(Fields(cls.TYPE, body).integer("after", 0, minimum=0))

    def to_json(self) -> dict[str, Any]:
        return {"after": self.after}


__all__ = [
    "BUILDING_MEDIA",
    "BUILDING_MIN_FLATS",
    "ApplianceRun",
    "DrlcEvent",
    "DrlcResponses",
    "FuelFigures",
    "IhdAppliance",
    "IhdBuilding",
    "IhdComparison",
    "IhdMessage",
    "MessageDisplay",
]
