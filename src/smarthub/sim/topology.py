"""A plausible distribution network for the simulated fleet.

GB low-voltage networks: a secondary substation (11 kV/400 V) feeds a handful of LV feeders,
each of a few tens of homes along streets, homes connected single-phase and rotated L1/L2/L3 so the
phases stay balanced; secondaries hang off a primary substation (33/11 kV). The simulated fleet
keeps those shapes at its own size: ``feeder_size`` homes per feeder (by default an eighth of the
fleet, between 2 and 40), ``feeders_per_secondary`` feeders (2) per secondary substation,
``secondaries_per_primary`` (3) per primary. Homes are spread over feeders by a stride, so a
feeder's homes sit behind several WAN cells (the fleet's cells are consecutive homes): a cell
outage and a feeder outage never look alike by construction.

Positions are metres on a local grid (feeders along streets 60 m apart, homes 12 m apart), for
the operator console's map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from smarthub.gdsc.outages.topology import Node, Place, TopologyFile
from smarthub.sim.fleet import HomeSpec


def feeder_size_for(homes: int) -> int:
    return max(2, min(40, homes // 8 or 1))


def fleet_topology(
    specs: Sequence[HomeSpec],
    *,
    feeder_size: int | None = None,
    feeders_per_secondary: int = 2,
    secondaries_per_primary: int = 3,
) -> TopologyFile:
    n = len(specs)
    size = feeder_size or feeder_size_for(n)
    feeders = max(1, math.ceil(n / size))
    stride = _coprime_stride(feeders)
    out = TopologyFile()
    for f in range(feeders):
        s = f // feeders_per_secondary
        p = s // secondaries_per_primary
        primary, secondary, feeder = f"PRI-{p:02d}", f"SS-{s:03d}", f"LV-{f:04d}"
        out.nodes.setdefault(primary, Node(primary, "primary", None, f"Primary {p}", -200.0, 400.0 * p))
        out.nodes.setdefault(
            secondary, Node(secondary, "secondary", primary, f"Substation {s}", 0.0, 140.0 * s)
        )
        out.nodes[feeder] = Node(feeder, "feeder", secondary, f"Feeder {f}", 40.0, 140.0 * s + 60.0 * (f % 2))
    slots: dict[int, int] = {}
    for spec in specs:
        f = (spec.index * stride) % feeders
        k = slots[f] = slots.get(f, 0) + 1
        node = out.nodes[f"LV-{f:04d}"]
        assert node.y is not None
        out.places[spec.premises_id] = Place(
            spec.premises_id, node.node_id, ("L1", "L2", "L3")[k % 3], 40.0 + 12.0 * k, node.y
        )
    out.check()
    return out


def _coprime_stride(n: int) -> int:
    for s in (7, 5, 3, 11, 13):
        if math.gcd(s, n) == 1:
            return s
    return 1
