"""The simulated homes' radio meters are placed through the link model (issue 26 item 3): from
the home's seed, each within its medium's reach with the margin the fleet starts with."""

from __future__ import annotations

from smarthub.han.media import MEDIA, estimate
from smarthub.sim.fleet import KINDS, PLACEMENT_MARGIN_DB, han_placements, home_specs, zigbee_medium


def test_placements_are_fixed_by_the_seed_and_keep_their_margin() -> None:
    specs = home_specs(16, seed=3)
    for spec in specs:
        meters = [(f"M{spec.index}-{k}", medium) for k, medium in enumerate(("zigbee-2.4", "wmbus-868"))]
        placed = han_placements(spec, meters)
        assert placed == han_placements(spec, meters)
        for (meter, medium), p in zip(meters, placed.values(), strict=True):
            margin = estimate(MEDIA[medium], placed[meter]).margin_db
            assert margin is not None and margin >= PLACEMENT_MARGIN_DB and p.distance_m >= 2.0
    zigbee = [zigbee_medium(s) for s in specs if s.kind == "zigbee"]
    assert len(zigbee) == 16 // len(KINDS) and set(zigbee) == {"zigbee-2.4", "zigbee-868"}
