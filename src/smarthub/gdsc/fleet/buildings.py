"""Apartment blocks in the registry (issue 21): a building, its flats with their heated area, its
meters, its housing provider over time, and its one WAN uplink.

A building's flats are premises (their tenancies, consents and supply periods as any premises);
the building adds what the heating and water cost billing needs (HeizkostenV §7, §8: the heated
area of each flat; the building's shared heat and water meters) and what the housing provider's
access rests on (``building_managements``: who let and billed the flats when, see
:func:`smarthub.gdsc.governance.access._housing_provider`).

Its sub-meters are mapped to flats here (``building_meters.premises_id``), not by the hub that
reads them, so both installations work: a hub in each flat reading that flat's allocators and
water meters, or one hub in the basement reading every sub-meter of the building over wireless
M-Bus. Either way the building's hubs sit behind the building's one WAN uplink: :meth:`attach_hubs`
puts them on one ``wan_link``, and the pull plan (``PullPlan.set_link_limit``) keeps the pulls in
flight over that uplink within its limit.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    and_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from smarthub.gdsc.db.database import metadata
from smarthub.gdsc.fleet.registry import hubs
from smarthub.gdsc.governance.parties import (
    SUBMETER_MEDIA,
    Management,
    PartyRepository,
    Role,
    utc,
)

buildings = Table(
    "buildings",
    metadata,
    Column("building_id", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    # The building's one uplink (the router in the basement): the pull plan's WAN link of every
    # hub in the building, and how many pulls may be in flight over it at once.
    Column("wan_link", String(64), nullable=False),
    Column("uplink_max_in_flight", Integer, nullable=False),
    # The building's common parts (the basement): its shared meters and a building hub, if any.
    Column("common_premises_id", String(64)),
)

building_flats = Table(
    "building_flats",
    metadata,
    Column("premises_id", String(64), primary_key=True),  # a premises is a flat of one building
    Column("building_id", String(64), ForeignKey("buildings.building_id"), nullable=False, index=True),
    Column("flat", String(32), nullable=False),  # the flat's name in the building ("3.07")
    Column("heated_area_dm2", Integer, nullable=False),  # m² × 100: exact, as the bills use it
)

building_meters = Table(
    "building_meters",
    metadata,
    Column("building_id", String(64), ForeignKey("buildings.building_id"), primary_key=True),
    Column("meter_id", String(64), primary_key=True),
    Column("medium", String(24), nullable=False),  # EN 13757-3 device type, as in model.datapoint
    Column("premises_id", String(64)),  # the flat a sub-meter measures; None: a shared meter
)

building_managements = Table(
    "building_managements",
    metadata,
    Column("building_id", String(64), ForeignKey("buildings.building_id"), primary_key=True),
    Column("start", DateTime(timezone=True), primary_key=True),
    Column("provider_id", String(64), ForeignKey("parties.party_id"), nullable=False),
    Column("end", DateTime(timezone=True)),
)

# A building's shared meters: the boiler's heat (or gas) and the main water meter.
SHARED_MEDIA = frozenset({"heat", "gas", "water", "cold_water", "warm_water", "hot_water"})
_DM2_PER_M2 = 100


class BuildingError(ValueError):
    """A building the registry cannot take; the message names the building, flat or meter."""


@dataclass(frozen=True, slots=True)
class Flat:
    premises_id: str
    flat: str
    heated_area_m2: Decimal


@dataclass(frozen=True, slots=True)
class BuildingMeter:
    meter_id: str
    medium: str
    premises_id: str | None = None  # the flat it measures; None: the building's shared meter


@dataclass(frozen=True, slots=True)
class Building:
    building_id: str
    name: str
    wan_link: str
    uplink_max_in_flight: int
    flats: tuple[Flat, ...]
    meters: tuple[BuildingMeter, ...] = ()
    common_premises_id: str | None = None

    def __post_init__(self) -> None:
        if not self.building_id or not self.wan_link:
            raise BuildingError("a building needs an id and the name of its WAN uplink")
        if self.uplink_max_in_flight < 1:
            raise BuildingError(f"building {self.building_id}: its uplink must allow at least one pull")
        if not self.flats:
            raise BuildingError(f"building {self.building_id} has no flats")
        seen: set[str] = set()
        for f in self.flats:
            if f.premises_id in seen:
                raise BuildingError(f"building {self.building_id}: premises {f.premises_id} listed twice")
            seen.add(f.premises_id)
            area = Decimal(f.heated_area_m2)
            if not area.is_finite() or area <= 0 or area != area.quantize(Decimal("0.01")):
                raise BuildingError(
                    f"building {self.building_id}, flat {f.flat}: heated area {f.heated_area_m2} m² must be "
                    "positive, to the hundredth of a m²"
                )
        for m in self.meters:
            if m.premises_id is None:
                if m.medium not in SHARED_MEDIA:
                    raise BuildingError(
                        f"building {self.building_id}: shared meter {m.meter_id} measures {m.medium!r}, "
                        f"not one of {', '.join(sorted(SHARED_MEDIA))}"
                    )
            else:
                if m.premises_id not in seen:
                    raise BuildingError(
                        f"building {self.building_id}: sub-meter {m.meter_id} is in {m.premises_id}, "
                        "not a flat of the building"
                    )
                if m.medium not in SUBMETER_MEDIA:
                    raise BuildingError(
                        f"building {self.building_id}: sub-meter {m.meter_id} measures {m.medium!r}, "
                        f"not one of {', '.join(sorted(SUBMETER_MEDIA))}"
                    )

    @property
    def shared_meters(self) -> tuple[BuildingMeter, ...]:
        return tuple(m for m in self.meters if m.premises_id is None)

    @property
    def premises(self) -> tuple[str, ...]:
        """Every premises of the building: its flats, then its common parts."""
        common = (self.common_premises_id,) if self.common_premises_id else ()
        return (*(f.premises_id for f in self.flats), *common)


class UnknownBuilding(LookupError):
    pass


class BuildingRegistry:
    """Writes and reads buildings, their flats, meters and housing providers."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def define(self, b: Building) -> None:
        """Record a new building with its flats and meters (a premises is a flat of one building)."""
        try:
            with self.engine.begin() as c:
                c.execute(
                    buildings.insert().values(
                        building_id=b.building_id,
                        name=b.name,
                        wan_link=b.wan_link,
                        uplink_max_in_flight=b.uplink_max_in_flight,
                        common_premises_id=b.common_premises_id,
                    )
                )
                c.execute(
                    building_flats.insert(),
                    [
                        {
                            "premises_id": f.premises_id,
                            "building_id": b.building_id,
                            "flat": f.flat,
                            "heated_area_dm2": int(Decimal(f.heated_area_m2) * _DM2_PER_M2),
                        }
                        for f in b.flats
                    ],
                )
                if b.meters:
                    c.execute(
                        building_meters.insert(),
                        [
                            {
                                "building_id": b.building_id,
                                "meter_id": m.meter_id,
                                "medium": m.medium,
                                "premises_id": m.premises_id,
                            }
                            for m in b.meters
                        ],
                    )
        except IntegrityError as e:
            raise BuildingError(
                f"building {b.building_id} already exists, or one of its flats is a flat of another building"
            ) from e

    def building(self, building_id: str) -> Building:
        with self.engine.connect() as c:
            r = c.execute(select(buildings).where(buildings.c.building_id == building_id)).first()
            if r is None:
                raise UnknownBuilding(f"no building {building_id!r}")
            flats = c.execute(
                select(building_flats)
                .where(building_flats.c.building_id == building_id)
                .order_by(building_flats.c.flat)
            ).all()
            ms = c.execute(
                select(building_meters)
                .where(building_meters.c.building_id == building_id)
                .order_by(building_meters.c.meter_id)
            ).all()
        return Building(
            r.building_id,
            r.name,
            r.wan_link,
            r.uplink_max_in_flight,
            tuple(Flat(f.premises_id, f.flat, Decimal(f.heated_area_dm2) / _DM2_PER_M2) for f in flats),
            tuple(BuildingMeter(m.meter_id, m.medium, m.premises_id) for m in ms),
            r.common_premises_id,
        )

    def building_of(self, premises_id: str) -> str | None:
        """The building a premises is a flat (or the common parts) of; None: a house."""
        with self.engine.connect() as c:
            found = c.execute(
                select(building_flats.c.building_id).where(building_flats.c.premises_id == premises_id)
            ).scalar()
            if found is None:
                found = c.execute(
                    select(buildings.c.building_id).where(buildings.c.common_premises_id == premises_id)
                ).scalar()
        return None if found is None else str(found)

    # -- the housing provider -------------------------------------------------------------------
    def manage(self, building_id: str, provider_id: str, start: datetime) -> None:
        """``provider_id`` lets and bills the building from ``start``; the previous provider's
        management (if any) ends then (a sale, a change of managing agent)."""
        if start.tzinfo is None:
            raise BuildingError("a management starts at a timezone-aware time")
        t = building_managements
        with self.engine.begin() as c:
            party = PartyRepository(self.engine).party(provider_id, c)
            if party.role is not Role.HOUSING_PROVIDER:
                raise BuildingError(f"{provider_id} is a {party.role.value}, not a housing provider")
            if (
                c.execute(
                    select(buildings.c.building_id).where(buildings.c.building_id == building_id)
                ).first()
                is None
            ):
                raise UnknownBuilding(f"no building {building_id!r}")
            latest = c.execute(
                select(t).where(t.c.building_id == building_id).order_by(t.c.start.desc()).limit(1)
            ).first()
            if latest is not None:
                if utc(latest.start) >= utc(start) or (
                    latest.end is not None and utc(latest.end) > utc(start)
                ):
                    raise BuildingError(
                        f"building {building_id}: a management from {start.isoformat()} overlaps the one "
                        f"from {utc(latest.start).isoformat()}"
                    )
                if latest.end is None:
                    c.execute(
                        update(t)
                        .where(and_(t.c.building_id == building_id, t.c.start == latest.start))
                        .values(end=utc(start))
                    )
            c.execute(
                t.insert().values(
                    building_id=building_id, start=utc(start), provider_id=provider_id, end=None
                )
            )

    def managements(
        self, premises_ids: Iterable[str], conn: Connection | None = None
    ) -> tuple[Management, ...]:
        """The housing providers of each flat asked about, and of a building's common parts (its
        shared heat and water meters, which the provider bills from): ``Facts.managements``."""
        wanted = list(dict.fromkeys(premises_ids))
        if not wanted:
            return ()
        f, m, b = building_flats, building_managements, buildings
        cols = (m.c.building_id, m.c.provider_id, m.c.start, m.c.end)
        flats = (
            select(f.c.premises_id, *cols)
            .join(m, m.c.building_id == f.c.building_id)
            .where(f.c.premises_id.in_(wanted))
        )
        common = (
            select(b.c.common_premises_id.label("premises_id"), *cols)
            .join(m, m.c.building_id == b.c.building_id)
            .where(b.c.common_premises_id.in_(wanted))
        )
        q = flats.union_all(common).order_by("premises_id", "start")

        def run(c: Connection) -> tuple[Management, ...]:
            out = []
            for r in c.execute(q):
                start = utc(r.start)
                assert start is not None
                out.append(Management(r.premises_id, r.building_id, r.provider_id, start, utc(r.end)))
            return tuple(out)

        if conn is not None:
            return run(conn)
        with self.engine.connect() as c:
            return run(c)

    # -- the uplink -----------------------------------------------------------------------------
    def attach_hubs(self, building_id: str) -> tuple[str, Sequence[str]]:
        """Put every hub at the building's premises behind its uplink: the ``wan_link`` the pull
        plan limits (pair with ``PullPlan.set_link_limit(link, uplink_max_in_flight)``). Returns
        the link and the hubs on it. A hub registered again later must be given the link again."""
        b = self.building(building_id)
        with self.engine.begin() as c:
            found = (
                c.execute(
                    select(hubs.c.hub_id).where(hubs.c.premises_id.in_(b.premises)).order_by(hubs.c.hub_id)
                )
                .scalars()
                .all()
            )
            if found:
                c.execute(update(hubs).where(hubs.c.hub_id.in_(found)).values(wan_link=b.wan_link))
        return b.wan_link, [str(h) for h in found]


__all__ = [
    "Building",
    "BuildingError",
    "BuildingMeter",
    "BuildingRegistry",
    "Flat",
    "UnknownBuilding",
    "building_flats",
    "building_managements",
    "building_meters",
    "buildings",
    "load_building",
]


def load_building(text: str) -> tuple[Building, list[tuple[str, datetime]]]:
    """A building from TOML (``[building]``, ``[[flats]]``, ``[[meters]]``, ``[[providers]]``; see
    ``examples/buildings/lindenstrasse.toml``): the building and its housing providers from when."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise BuildingError(f"not valid TOML: {err}") from None
    b = data.get("building")
    if not isinstance(b, dict):
        raise BuildingError("[building]: missing")

    def text_of(d: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
        v = d.get(key, default)
        if not isinstance(v, str) or not v:
            raise BuildingError(f"{where}.{key}: a non-empty string is needed")
        return v

    limit = b.get("uplink_max_in_flight", 2)
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise BuildingError("building.uplink_max_in_flight: a whole number is needed")
    flats = []
    for i, f in enumerate(data.get("flats") or []):
        where = f"flats[{i}]"
        try:
            area = Decimal(text_of(f, "heated_area_m2", where))
        except InvalidOperation:
            raise BuildingError(f"{where}.heated_area_m2: {f['heated_area_m2']!r} is not a number") from None
        flats.append(Flat(text_of(f, "premises", where), text_of(f, "flat", where), area))
    meters = [
        BuildingMeter(
            text_of(m, "meter", f"meters[{i}]"),
            text_of(m, "medium", f"meters[{i}]"),
            None if m.get("premises") is None else text_of(m, "premises", f"meters[{i}]"),
        )
        for i, m in enumerate(data.get("meters") or [])
    ]
    providers = []
    for i, p in enumerate(data.get("providers") or []):
        start = p.get("from")
        if not isinstance(start, datetime) or start.tzinfo is None:
            raise BuildingError(f"providers[{i}].from: a date-time with its offset is needed")
        providers.append((text_of(p, "provider", f"providers[{i}]"), start))
    common = b.get("common_premises")
    building = Building(
        text_of(b, "id", "building"),
        str(b.get("name", "")),
        text_of(b, "uplink", "building"),
        limit,
        tuple(flats),
        tuple(meters),
        None if common is None else text_of(b, "common_premises", "building"),
    )
    return building, providers
