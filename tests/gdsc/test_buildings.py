"""Apartment blocks in the registry (issue 21) on real SQLite and PostgreSQL: flats with heated
area, shared and flats' meters, the housing provider over time (the access facts the GDSC decides
on), and the building's hubs as one WAN link in the pull plan."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smarthub.cli import app
from smarthub.clock import ManualClock
from smarthub.gdsc.fleet.buildings import (
    Building,
    BuildingError,
    BuildingMeter,
    BuildingRegistry,
    Flat,
    UnknownBuilding,
    load_building,
)
from smarthub.gdsc.governance.access import Action, TimeRange
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.gdsc.governance.parties import Granularity, Party, PartyRepository, Role
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.scheduler import plan_window
from smarthub.gdsc.store import Store

JAN = datetime(2026, 1, 1, tzinfo=UTC)
SALE = datetime(2026, 6, 1, tzinfo=UTC)
NOW = datetime(2026, 7, 15, tzinfo=UTC)
WS = datetime(2026, 7, 15, 1, 0, tzinfo=UTC)
W = timedelta(minutes=30)


@pytest.fixture
def store(db_url: str):  # type: ignore[no-untyped-def]
    s = Store(db_url)
    s.create_schema()
    yield s
    s.close()


def block(n: int = 8, building_id: str = "B1", hub_in_basement: bool = False) -> Building:
    flats = tuple(
        Flat(f"{building_id}-{i:02d}", f"{i // 4}.{i % 4:02d}", Decimal("54.25") + i) for i in range(n)
    )
    meters = (
        BuildingMeter(f"{building_id}-HEAT", "heat"),
        BuildingMeter(f"{building_id}-WATER", "water"),
        *(BuildingMeter(f"HCA-{f.premises_id}", "heat_cost_allocator", f.premises_id) for f in flats),
        *(BuildingMeter(f"WW-{f.premises_id}", "warm_water", f.premises_id) for f in flats),
    )
    return Building(
        building_id,
        "Lindenstraße 4",
        f"uplink-{building_id}",
        2,
        flats,
        meters,
        f"{building_id}-BASEMENT" if hub_in_basement else None,
    )


def test_building_round_trips_with_exact_areas_and_its_meters(store: Store) -> None:
    reg = BuildingRegistry(store.engine)
    b = block()
    reg.define(b)
    back = reg.building("B1")
    assert back.flats == tuple(sorted(b.flats, key=lambda f: f.flat))
    assert back.flats[0].heated_area_m2 == Decimal("54.25")  # exact: the bills' area shares use it
    assert {m.meter_id for m in back.shared_meters} == {"B1-HEAT", "B1-WATER"}
    assert len(back.meters) == 2 + 2 * 8
    assert reg.building_of("B1-03") == "B1" and reg.building_of("HOUSE-9") is None
    with pytest.raises(UnknownBuilding):
        reg.building("B9")


def test_a_flat_belongs_to_one_building(store: Store) -> None:
    reg = BuildingRegistry(store.engine)
    reg.define(block())
    other = Building("B2", "next door", "uplink-B2", 2, (Flat("B1-03", "1", Decimal("40")),))
    with pytest.raises(BuildingError, match="another building"):
        reg.define(other)
    assert reg.building_of("B1-03") == "B1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"flats": ()}, "has no flats"),
        ({"uplink_max_in_flight": 0}, "at least one pull"),
        ({"flats": (Flat("X", "1", Decimal("-3")),)}, "must be positive"),
        ({"flats": (Flat("X", "1", Decimal("40.005")),)}, "hundredth"),
        ({"flats": (Flat("X", "1", Decimal("40")), Flat("X", "2", Decimal("40")))}, "listed twice"),
        ({"meters": (BuildingMeter("M", "electricity"),)}, "shared meter M measures 'electricity'"),
        ({"meters": (BuildingMeter("M", "heat_cost_allocator", "B1-99"),)}, "not a flat of the building"),
        ({"meters": (BuildingMeter("M", "gas", "B1-00"),)}, "sub-meter M measures 'gas'"),
    ],
)
def test_bad_buildings_are_refused_clearly(change: dict[str, object], message: str) -> None:
    b = block()
    fields = {
        "building_id": b.building_id,
        "name": b.name,
        "wan_link": b.wan_link,
        "uplink_max_in_flight": b.uplink_max_in_flight,
        "flats": b.flats,
        "meters": (),
        **change,
    }
    with pytest.raises(BuildingError, match=message):
        Building(**fields)  # type: ignore[arg-type]


def test_housing_provider_decisions_rest_on_the_building_registry(store: Store) -> None:
    """The guard reads the building's managements from the database: L1 until the sale, L2 since."""
    parties = PartyRepository(store.engine)
    for pid in ("L1", "L2"):
        parties.add_party(Party(pid, Role.HOUSING_PROVIDER))
    parties.add_party(Party("S1", Role.SUPPLIER))
    reg = BuildingRegistry(store.engine)
    reg.define(block())
    with pytest.raises(BuildingError, match="not a housing provider"):
        reg.manage("B1", "S1", JAN)
    reg.manage("B1", "L1", JAN)
    reg.manage("B1", "L2", SALE)
    with pytest.raises(BuildingError, match="overlaps"):
        reg.manage("B1", "L1", SALE - timedelta(days=1))
    guard = AccessGuard(parties, AuditLog(store.engine), ManualClock(NOW))
    year = TimeRange(JAN, datetime(2026, 7, 1, tzinfo=UTC))

    def read(who: str, fuel: str, granularity: Granularity = Granularity.MONTHLY, flat: str = "B1-02"):  # type: ignore[no-untyped-def]
        return guard.authorize(
            who, Action.READ_READINGS, premises_id=flat, fuel=fuel, granularity=granularity, period=year
        )

    l1 = read("L1", "heat_cost_allocator")
    assert l1.allow and l1.ranges == (TimeRange(JAN, SALE),)
    l2 = read("L2", "warm_water")
    assert l2.allow and l2.ranges == (TimeRange(SALE, year.end),)
    assert not read("L2", "electricity").allow
    assert not read("L2", "heat_cost_allocator", Granularity.HALF_HOURLY).allow
    assert not read("L2", "heat_cost_allocator", flat="HOUSE-9").allow  # not a flat of its building
    assert [e.allow for e in guard.audit.entries()] == [True, True, False, False, False]


def test_housing_provider_reads_the_buildings_shared_meters(store: Store) -> None:
    """The shared heat and water meters sit at the building's common parts (the basement): the
    provider bills from their totals, so it reads them while it manages the building."""
    parties = PartyRepository(store.engine)
    parties.add_party(Party("L1", Role.HOUSING_PROVIDER))
    parties.add_party(Party("L9", Role.HOUSING_PROVIDER))
    reg = BuildingRegistry(store.engine)
    reg.define(block(hub_in_basement=True))
    reg.manage("B1", "L1", JAN)
    guard = AccessGuard(parties, AuditLog(store.engine), ManualClock(NOW))
    year = TimeRange(JAN, datetime(2026, 7, 1, tzinfo=UTC))

    def read(who: str, fuel: str):  # type: ignore[no-untyped-def]
        return guard.authorize(
            who,
            Action.READ_READINGS,
            premises_id="B1-BASEMENT",
            fuel=fuel,
            granularity=Granularity.MONTHLY,
            period=year,
        )

    assert read("L1", "heat").ranges == (year,)
    assert read("L1", "water").allow
    assert not read("L9", "heat").allow  # another building's landlord
    assert [m.premises_id for m in reg.managements(["B1-BASEMENT", "B1-01", "HOUSE-1"])] == [
        "B1-01",
        "B1-BASEMENT",
    ]


@pytest.mark.parametrize("hub_in_basement", [False, True])
def test_the_buildings_hubs_are_one_link_in_the_pull_plan(store: Store, hub_in_basement: bool) -> None:
    """A hub per flat, or one in the basement: either way the building's uplink carries at most its
    limit of pulls at once, while the houses on their own links are pulled alongside."""
    reg = BuildingRegistry(store.engine)
    b = block(8, hub_in_basement=hub_in_basement)
    reg.define(b)
    where = [b.common_premises_id] if hub_in_basement else [f.premises_id for f in b.flats]
    for i, p in enumerate(where):
        assert p is not None
        store.register_hub(
            hub_id=f"BH{i:02d}", premises_id=p, url="https://h", lfdi="A" * 40, meters_by_fuel=[]
        )
    for i in range(5):
        store.register_hub(
            hub_id=f"HOUSE{i}", premises_id=f"HOUSE-{i}", url="https://h", lfdi="A" * 40, meters_by_fuel=[]
        )
    link, attached = reg.attach_hubs("B1")
    assert link == "uplink-B1" and len(attached) == len(where)
    plan = PullPlan(store, link_limit=4)
    plan.set_link_limit(link, b.uplink_max_in_flight)
    plan.ensure_window("every", WS, plan_window(WS, W, store.active_hubs()), WS + 2 * W)
    claimed = plan.claim_bulk("C", WS + W, 100)
    kinds = Counter("building" if c.hub.hub_id.startswith("BH") else "house" for c in claimed)
    assert kinds == {"building": min(2, len(where)), "house": 5}
    assert {c.hub.wan_link for c in claimed if c.hub.hub_id.startswith("BH")} == {"uplink-B1"}
    # A second collector gets nothing more over the building's uplink until a pull finishes.
    assert plan.claim_bulk("D", WS + W, 100) == []
    if len(where) > 1:
        plan.finish_bulk(next(c for c in claimed if c.hub.hub_id.startswith("BH")), True, WS + W)
        more = plan.claim_bulk("D", WS + W, 100)
        assert len(more) == 1 and more[0].hub.wan_link == "uplink-B1"


def test_gdsc_building_records_the_example_block(tmp_path: Path) -> None:
    """`smarthub gdsc building examples/buildings/lindenstrasse.toml`: flats, meters, providers and
    the hubs already registered at its flats put on its uplink."""
    db = f"sqlite:///{tmp_path / 'gdsc.sqlite'}"
    store = Store(db)
    store.create_schema()
    for pid in ("L1", "L2"):
        PartyRepository(store.engine).add_party(Party(pid, Role.HOUSING_PROVIDER))
    for i in (1, 2):
        store.register_hub(
            hub_id=f"LH{i}", premises_id=f"LIND4-0{i}", url="https://h", lfdi="A" * 40, meters_by_fuel=[]
        )
    store.close()
    example = Path(__file__).parents[2] / "examples" / "buildings" / "lindenstrasse.toml"
    runner = CliRunner()
    args = ["gdsc", "building", str(example), "--state", str(tmp_path), "--db", db]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {
        "building": "LIND4",
        "flats": 4,
        "heated_area_m2": "252.10",
        "shared_meters": 2,
        "submeters": 8,
        "providers": ["L1", "L2"],
        "uplink": "uplink-LIND4",
        "uplink_max_in_flight": 2,
        "hubs_on_uplink": ["LH1", "LH2"],
    }
    store = Store(db)
    assert {h.hub_id: h.wan_link for h in store.active_hubs()} == {
        "LH1": "uplink-LIND4",
        "LH2": "uplink-LIND4",
    }
    assert [m.provider_id for m in BuildingRegistry(store.engine).managements(["LIND4-03"])] == ["L1", "L2"]
    store.close()
    again = runner.invoke(app, args)  # the same building twice: refused, saying why
    assert again.exit_code == 2 and "already exists" in again.output


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[building\n", "not valid TOML"),
        ("x = 1\n", r"\[building\]: missing"),
        ('[building]\nid = "B"\nuplink = "u"\nuplink_max_in_flight = "2"\n', "whole number"),
        (
            '[building]\nid = "B"\nuplink = "u"\n[[flats]]\npremises = "P"\nflat = "1"\nheated_area_m2 = "big"\n',
            "is not a number",
        ),
        (
            '[building]\nid = "B"\nuplink = "u"\n[[flats]]\npremises = "P"\nflat = "1"\nheated_area_m2 = "40"\n'
            '[[providers]]\nprovider = "L1"\nfrom = 2026-01-01\n',
            "with its offset",
        ),
    ],
)
def test_bad_building_files_are_refused_clearly(toml: str, message: str) -> None:
    with pytest.raises(BuildingError, match=message):
        load_building(toml)
