"""A HAN plan for a home or a block: which media reach which meters from where the hub is, with
the expected loss — for roll-out planners choosing media before anyone climbs a ladder
(``smarthub plan-han``; the link model is :mod:`smarthub.han.media`).

A layout is TOML::

    [home]
    name = "Flat 12"

    [[meters]]
    id = "E-12"          # where it is, seen from the hub
    distance_m = 6
    walls = 1
    floors = 0
    wiring_m = 14        # optional: the mains run (else 1.5 × distance + 3 m per floor)
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass
from typing import Any

from smarthub.han.media import MEDIA, LinkEstimate, Medium, Placement, estimate

__all__ = ["LayoutError", "MediumPlan", "PlannedMeter", "load_layout", "plan"]


class LayoutError(ValueError):
    """A layout file that cannot be planned; the message names the entry and the field."""


@dataclass(frozen=True)
class PlannedMeter:
    id: str
    placement: Placement


@dataclass(frozen=True)
class MediumPlan:
    medium: str
    name: str
    reaches: list[str]  # meter ids within reliable reach
    misses: list[str]
    worst_loss: float  # after retries, over the meters
    nodes_ok: bool  # the hub and the meters fit the medium's node limit
    rx_on_power_w: float
    links: dict[str, LinkEstimate]

    @property
    def all_reached(self) -> bool:
        return not self.misses and self.nodes_ok

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["all_reached"] = self.all_reached
        return out


def load_layout(text: str) -> tuple[str, list[PlannedMeter]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise LayoutError(f"not valid TOML: {err}") from None
    name = str(data.get("home", {}).get("name", "home"))
    entries = data.get("meters")
    if not isinstance(entries, list) or not entries:
        raise LayoutError("no [[meters]]: a layout lists the meters and where they are")
    meters: list[PlannedMeter] = []
    for i, entry in enumerate(entries):
        where = f"meters[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise LayoutError(f"{where}.id: missing (a text)")
        try:
            distance = float(entry["distance_m"])
            placement = Placement(
                distance,
                int(entry.get("walls", 0)),
                int(entry.get("floors", 0)),
                None if entry.get("wiring_m") is None else float(entry["wiring_m"]),
            )
        except KeyError:
            raise LayoutError(f"{where}.distance_m: missing (metres from the hub)") from None
        except (TypeError, ValueError) as err:
            raise LayoutError(f"{where}: {err}") from None
        meters.append(PlannedMeter(entry["id"], placement))
    return name, meters


def plan(meters: list[PlannedMeter], media: list[Medium] | None = None) -> list[MediumPlan]:
    """One plan per medium, best first (every meter reached, then the lowest loss, then power)."""
    out = []
    for medium in media or list(MEDIA.values()):
        links = {m.id: estimate(medium, m.placement) for m in meters}
        reaches = [k for k, e in links.items() if e.reaches]
        nodes_ok = medium.max_nodes is None or len(meters) + 1 <= medium.max_nodes
        out.append(
            MediumPlan(
                medium.key,
                medium.name,
                reaches,
                [k for k in links if k not in reaches],
                max(1.0 - e.delivery for e in links.values()),
                nodes_ok,
                medium.rx_on_power_w,
                links,
            )
        )
    out.sort(key=lambda p: (not p.all_reached, len(p.misses), p.worst_loss, p.rx_on_power_w))
    return out
