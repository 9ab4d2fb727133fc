"""The appliance sub-meters the GDSC has pulled (issue 25): which smart plug measures what, where.

A hub lists its smart plugs over the WAN only under a consent covering appliances
(``hub.privacy``, "Appliances"): each a 2030.5 MirrorUsagePoint with roleFlags ``isSubmeter``
and the appliance's name (the consumer's label) as its description. Their half-hours go into the
interval tables like any channel (keyed by hub and the plug's EUI-64); this table records what
each plug is, so the access policy can tell an appliance's readings from the supply meters' and
the API can serve them under their own scope (``appliances:read``), never the whole-home
half-hours. A plug is recorded when a pull first lists it; its name and ``last_seen`` follow later
pulls (the consumer may rename it). Plugs are never registered as meters: no command, bill or
supplier ever concerns them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Engine, String, Table, and_, select, update

from smarthub.gdsc.db.database import metadata
from smarthub.gdsc.fleet.registry import hubs

appliance_points = Table(
    "appliance_points",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("meter_id", String(64), primary_key=True),  # the plug (its EUI-64, as the hub names it)
    Column("name", String(64), nullable=False),  # the appliance, as the consumer named it
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
)

NAME_MAX = 64


@dataclass(frozen=True, slots=True)
class AppliancePoint:
    hub_id: str
    meter_id: str
    name: str
    first_seen: datetime
    last_seen: datetime


class ApplianceRegistry:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, hub_id: str, found: Mapping[str, str], now: datetime) -> int:
        """The plugs one pull of ``hub_id`` listed (meter → name); how many rows changed."""
        if not found:
            return 0
        a = appliance_points.c
        changed = 0
        with self.engine.begin() as conn:
            held = {
                r.meter_id: r.name for r in conn.execute(select(a.meter_id, a.name).where(a.hub_id == hub_id))
            }
            for meter, name in sorted(found.items()):
                name = name[:NAME_MAX]
                if meter not in held:
                    conn.execute(
                        appliance_points.insert().values(
                            hub_id=hub_id, meter_id=meter[:64], name=name, first_seen=now, last_seen=now
                        )
                    )
                else:
                    conn.execute(
                        update(appliance_points)
                        .where(and_(a.hub_id == hub_id, a.meter_id == meter))
                        .values(name=name, last_seen=now)
                    )
                changed += 1
        return changed

    def at_premises(self, premises_id: str) -> list[AppliancePoint]:
        """Every plug pulled from a hub of the premises (a replaced hub's too), by name."""
        a = appliance_points.c
        q = (
            select(appliance_points)
            .join(hubs, hubs.c.hub_id == a.hub_id)
            .where(hubs.c.premises_id == premises_id)
            .order_by(a.name, a.meter_id, a.hub_id)
        )
        with self.engine.connect() as conn:
            return [
                AppliancePoint(r.hub_id, r.meter_id, r.name, _aware(r.first_seen), _aware(r.last_seen))
                for r in conn.execute(q)
            ]


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)
