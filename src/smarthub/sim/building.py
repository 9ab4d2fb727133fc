"""``smarthub demo --building``: an apartment block through an accelerated month, billed at its end.

As the source document's trial (64 flats, about 300 sub-meters on 868 MHz, one shared WAN
connection in the basement): each flat has two to four heat-cost allocators (Qundis Q caloric,
OMS mode 5) and a cold and a hot water meter (Diehl HYDRUS, OMS mode 7), read over wireless
M-Bus either by a Smart Hub in each flat (``layout="flats"``) or by one hub in the basement
(``layout="basement"``). Everything between the meters' frames and the bills is the production
code: the hubs decode the frames and serve the sub-meters' half-hourly advances over 2030.5 with
mutual TLS, behind the building's one uplink (a link of the pull plan with its limit); the GDSC
pulls and stores them; the bills are computed by
:func:`~smarthub.gdsc.readings.building_bills.building_bills` from the registry (flats, heated
areas, sub-meters, tenancies) and the stored readings only — the simulators' registers are used
for nothing but the frames.

The month has a change of tenant in one flat (an interim reading at the move-out) and an
allocator that fails half-way (its battery: it falls silent), so that flat is estimated from
comparable flats. The fuel invoice (kWh, price) and the water utility's price per m³ are the
housing provider's inputs, as they would be.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from smarthub.assembly.config import (
    ConsumerConfig,
    HubConfig,
    MeterConfig,
    ServeConfig,
    TransportConfig,
    hub_config,
)
from smarthub.clock import AcceleratedClock
from smarthub.gdsc.fleet.buildings import Building, BuildingMeter, BuildingRegistry, Flat
from smarthub.gdsc.fleet.registry import hubs, premises
from smarthub.gdsc.governance.parties import Party, PartyRepository, Role, Tenancy
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.readings.building_bills import building_bills, local_midnight
from smarthub.gdsc.readings.building_info import building_month, queue_building_month, unit_prices
from smarthub.gdsc.readings.heat_costs import CENT, BuildingCosts, FlatBill, bills_csv
from smarthub.gdsc.service import GdscService
from smarthub.hub.ihd.submeter_info import monthly_info
from smarthub.sim.demo import DemoConfig, DemoRun, gdsc_config, sweep
from smarthub.sim.fleet import Fleet, HomeSpec, provision

LONDON = ZoneInfo("Europe/London")
BUILDING_ID = "BLOCK64"
PROVIDER = "HP-LINDEN"  # the housing provider
ROOMS = (2, 3, 2, 3, 4, 2, 3)  # radiators per flat, in turn: 2.7 on average, ~300 sub-meters for 64
FLATS_PER_FLOOR = 8


@dataclass(frozen=True)
class BuildingDemoConfig:
    flats: int = 64
    days: int = 31
    seconds_per_day: float = 6.0
    seed: int = 1
    state: Path = Path("state")
    db_url: str | None = None
    layout: str = "flats"  # "flats": a hub in each flat; "basement": one hub for the whole block
    sim_start: datetime = datetime(2026, 1, 1, tzinfo=UTC)  # a winter month; London is on UTC
    # The sub-meters transmit every 30 minutes here (OMS allocators send every few minutes in life;
    # the half-hour boundaries are what the intervals need, and a month at seconds a day needs few).
    radio_every: timedelta = timedelta(minutes=30)
    window: timedelta = timedelta(days=1)  # each hub pulled once a day, as sub-meter data needs
    uplink_max_in_flight: int = 2
    fuel_kwh_per_m2: Decimal = Decimal("18")  # the month's gas invoice: kWh per m² heated
    fuel_price: Decimal = Decimal("0.11")  # € per kWh
    water_price: Decimal = Decimal("4.20")  # € per m³ (water and sewerage, by the main meter)
    fixed_share: Decimal = Decimal("0.30")

    def __post_init__(self) -> None:
        if self.layout not in ("flats", "basement"):
            raise ValueError("layout is 'flats' or 'basement'")
        if self.flats < 3:
            raise ValueError("a building of at least 3 flats (one changes tenant, one loses an allocator)")

    @property
    def end(self) -> datetime:
        return self.sim_start + timedelta(days=self.days)


@dataclass(frozen=True)
class SimFlat:
    index: int
    premises_id: str
    flat: str
    heated_area_m2: Decimal
    seed: int
    allocators: tuple[str, ...]
    cold: str
    hot: str

    @property
    def submeters(self) -> tuple[tuple[str, str], ...]:
        return (
            *((a, "heat_cost_allocator") for a in self.allocators),
            (self.cold, "water"),
            (self.hot, "warm_water"),
        )


def block_flats(n: int, seed: int) -> list[SimFlat]:
    rng = random.Random(f"{seed}/block")
    out = []
    for i in range(n):
        rooms = ROOMS[i % len(ROOMS)]
        area = Decimal(rng.randint(3800, 2400 + rooms * 2200)) / 100
        out.append(
            SimFlat(
                i,
                f"{BUILDING_ID}-{i + 1:02d}",
                f"{i // FLATS_PER_FLOOR}.{i % FLATS_PER_FLOOR + 1:02d}",
                area,
                rng.randrange(2**31),
                tuple(f"QDS{71000000 + i * 10 + r:08d}" for r in range(rooms)),
                f"DME{72000000 + i:08d}",
                f"DME{73000000 + i:08d}",
            )
        )
    return out


def _key(seed: int, meter: str) -> bytes:
    """The meter's AES key, as its maker ships it to the installer (deterministic per seed)."""
    return hashlib.sha256(f"{seed}/{meter}".encode()).digest()[:16]


def _meters(cfg: BuildingDemoConfig, flat: SimFlat, silent: dict[str, datetime]) -> list[MeterConfig]:
    """A flat's sub-meters on one simulated radio (the flat's household draws their use)."""
    radio = TransportConfig(
        "simulated",
        f"wmbus-{flat.flat}",
        options={
            "seed": flat.seed,
            "submeters": True,
            # Each radiator's share of the flat's heat (the rooms differ).
            "radiator_shares": {a: 1000 // len(flat.allocators) for a in flat.allocators},
            "silent_from": {m: t.isoformat() for m, t in silent.items() if m in dict(flat.submeters)},
        },
    )
    return [
        MeterConfig(
            "wmbus",
            radio,
            id=m,
            fuel=medium,
            key=_key(cfg.seed, m),
            poll_every=cfg.radio_every,
            # A day of silence is a fault worth a diagnosis (the accelerated clock makes hours short).
            stale_after=timedelta(days=1),
        )
        for m, medium in flat.submeters
    ]


def _hub_config(hub_id: str, state: Path, meters: list[MeterConfig]) -> HubConfig:
    return hub_config(
        hub_id,
        state / "hubs" / hub_id,
        ca=state / "ca" / "ca.pem",
        meters=tuple(meters),
        wan=ServeConfig("127.0.0.1", 0),
        consumer=ConsumerConfig(()),
        # The GDSC's own collection: half-hourly advances (the housing provider sees them monthly).
        gdsc_granularity="half-hourly",
        firmware_probation=timedelta(hours=1),
    )


def _spec(hub_id: str, premises_id: str, index: int, seed: int) -> HomeSpec:
    return HomeSpec(hub_id, premises_id, f"Lindenstrasse 4, {premises_id}", "", "", "flat", index, seed, 0.0)


@dataclass
class BuildingResult:
    building: str
    layout: str
    flats: int
    submeters: int
    hubs: int
    days: int
    readings_expected: int
    readings_stored: int  # every stored half-hour, the GDSC's estimates after the failed allocator too
    missing: int
    estimated: int  # stored half-hours flagged estimated (the GDSC's VEE filling the silent allocator)
    duplicates: int
    pull_errors: int
    failed_allocators: list[str]
    bills: int
    bill_total: str
    building_cost: str
    fuel_kwh: str  # the provider's inputs: the month's gas invoice and the water bill
    fuel_cost: str
    water_cost: str
    estimated_flats: list[str]
    tenancy_change: str
    uplink: str
    uplink_max_in_flight: int
    hubs_on_uplink: int
    seconds: float
    csv: str = ""
    tenant_info_hubs: int = 0  # flats' displays showing the month's building figures (ihd.building)
    tenant_info_sample: dict[str, Any] = field(default_factory=dict)
    per_flat: list[dict[str, Any]] = field(default_factory=list)

    def json_line(self) -> str:
        d = asdict(self)
        d.pop("per_flat")
        sample = d.pop("tenant_info_sample")
        if sample:  # one flat's display: its month's heating and water
            d["tenant_info_sample"] = sample
        return json.dumps(d)


@dataclass
class BuildingRun:
    cfg: BuildingDemoConfig
    run: DemoRun
    flats: list[SimFlat]
    building: Building
    silent: dict[str, datetime]
    mover: SimFlat
    move_out: datetime
    bills: list[FlatBill] = field(default_factory=list)


async def setup_building(cfg: BuildingDemoConfig) -> BuildingRun:
    """Provision the hubs, build the fleet and the GDSC, record the building, its housing
    provider, its tenants and its uplink in the registry."""
    cfg.state.mkdir(parents=True, exist_ok=True)
    flats = block_flats(cfg.flats, cfg.seed)
    # Half-way through the month one allocator's battery dies; a tenant moves out on day 15.
    failing = flats[len(flats) // 2]
    silent = {failing.allocators[0]: cfg.sim_start + timedelta(days=cfg.days // 2, hours=9)}
    mover = flats[0]
    move_out = cfg.sim_start + timedelta(days=min(15, cfg.days - 1))
    if cfg.layout == "flats":
        specs = [_spec(f"FH{f.index + 1:04d}", f.premises_id, f.index, f.seed) for f in flats]
        configs = {
            s.hub_id: _hub_config(s.hub_id, cfg.state, _meters(cfg, f, silent))
            for s, f in zip(specs, flats, strict=True)
        }
        common = None
    else:
        common = f"{BUILDING_ID}-BASEMENT"
        specs = [_spec("BH0001", common, 0, cfg.seed)]
        meters = [m for f in flats for m in _meters(cfg, f, silent)]
        configs = {"BH0001": _hub_config("BH0001", cfg.state, meters)}
    demo = DemoConfig(
        homes=len(specs), days=cfg.days, seconds_per_day=cfg.seconds_per_day, seed=cfg.seed,
        state=cfg.state, db_url=cfg.db_url, sim_start=cfg.sim_start, window=cfg.window,
    )  # fmt: skip
    creds = provision(cfg.state, specs, datetime.now(UTC))
    clock = AcceleratedClock(cfg.sim_start, demo.speed)
    fleet = Fleet(cfg.state, specs, clock, cfg.sim_start, cfg.radio_every, configs=configs)
    await fleet.start_servers(creds.ca_pem)
    fleet.write_manifest({"sim_start": cfg.sim_start.isoformat(), "speed": demo.speed})
    gdsc = GdscService.build(gdsc_config(demo), clock)
    run = DemoRun(demo, fleet, clock, gdsc, creds)
    building = Building(
        BUILDING_ID,
        "Lindenstrasse 4",
        f"uplink-{BUILDING_ID}",
        cfg.uplink_max_in_flight,
        tuple(Flat(f.premises_id, f.flat, f.heated_area_m2) for f in flats),
        tuple(BuildingMeter(m, medium, f.premises_id) for f in flats for m, medium in f.submeters),
        common,
    )
    await asyncio.to_thread(_register, run, building, flats, mover, move_out)
    return BuildingRun(cfg, run, flats, building, silent, mover, move_out)


def _register(
    run: DemoRun, building: Building, flats: list[SimFlat], mover: SimFlat, move_out: datetime
) -> None:
    engine = run.store.engine
    with engine.begin() as c:  # the flats' premises (a basement hub registered only its own)
        known = set(c.execute(select(premises.c.premises_id)).scalars())
        missing = [
            {"premises_id": f.premises_id, "address": f"Lindenstrasse 4, flat {f.flat}"}
            for f in flats
            if f.premises_id not in known
        ]
        if missing:
            c.execute(premises.insert(), missing)
    reg = BuildingRegistry(engine)
    reg.define(building)
    parties = PartyRepository(engine)
    parties.add_party(Party(PROVIDER, Role.HOUSING_PROVIDER))
    reg.manage(building.building_id, PROVIDER, run.cfg.sim_start - timedelta(days=365))
    for f in flats:
        tenant = f"TENANT-{f.flat}"
        parties.add_party(Party(tenant, Role.CONSUMER))
        start = run.cfg.sim_start - timedelta(days=400)
        end = move_out if f is mover else None
        parties.add_tenancy(Tenancy(f"T-{f.premises_id}-1", f.premises_id, tenant, start, end))
        if f is mover:
            parties.add_party(Party(f"TENANT-{f.flat}-NEW", Role.CONSUMER))
            parties.add_tenancy(
                Tenancy(f"T-{f.premises_id}-2", f.premises_id, f"TENANT-{f.flat}-NEW", move_out)
            )
    link, _ = reg.attach_hubs(building.building_id)
    PullPlan(run.store).set_link_limit(link, building.uplink_max_in_flight)


async def run_building(b: BuildingRun, out: Path | None = None) -> BuildingResult:
    """The month, the last pulls, the count and the bills."""
    run, cfg = b.run, b.cfg
    run.clock.rebase()
    run.started = time.monotonic()
    last_window_end = cfg.end + cfg.window
    await run.fleet.start_meters(until=cfg.end)
    await run.gdsc.run_windows(until=last_window_end, first_window=cfg.sim_start)
    await run.fleet.meters_done()
    await sweep(run, last_window_end)
    seconds = time.monotonic() - run.started
    result = await asyncio.to_thread(account_building, b, seconds, out)
    # The month's figures for the tenants' displays (ihd.building), delivered at the next pull.
    first = cfg.sim_start.astimezone(LONDON).date()
    month = first.replace(day=1)
    whole = first == month and cfg.end >= local_midnight((month + timedelta(days=32)).replace(day=1), LONDON)
    if run.signer is not None and whole:  # the run covered a whole local month
        bodies = await asyncio.to_thread(
            building_month, run.store, b.building, month, LONDON, unit_prices(b.bills)
        )
        jobs = await asyncio.to_thread(queue_building_month, run.store, run.signer, bodies, run.clock.now())
        # Commands go out with the GDSC's windows (the scheduler's urgent pool): a few more days.
        for _ in range(3):
            if all(h.consumer.store.building() is not None for h in run.fleet.homes if h.spec.hub_id in jobs):
                break
            await run.gdsc.run_windows(until=run.clock.now() + cfg.window)
        shown = [h for h in run.fleet.homes if h.consumer.store.building() is not None]
        result.tenant_info_hubs = len(shown)
        if shown:
            sample = shown[0]
            flat = next(f.flat for f in b.flats if f.premises_id == sample.spec.premises_id)
            # What the flat's display shows the day after the month (the simulated clock runs
            # on at thousands of times real time, so the moment is fixed rather than "now").
            shown_at = cfg.end + timedelta(days=1)
            uses = monthly_info(sample.hub.history, shown_at, LONDON, sample.consumer.store.building())
            result.tenant_info_sample = {"flat": flat, "heat_and_water": [u.to_json() for u in uses]}
    return result


def account_building(b: BuildingRun, seconds: float, out: Path | None = None) -> BuildingResult:
    cfg, run = b.cfg, b.run
    start, end = int(cfg.sim_start.timestamp()), int(cfg.end.timestamp())
    stored = run.store.channel_starts(start, end)
    expected = present = 0
    for hub_id, meter, obis in run.fleet.expected_channels():
        until = int(b.silent[meter].timestamp()) // 1800 * 1800 - 1800 if meter in b.silent else end
        want = set(range(start, min(end, until), 1800))
        expected += len(want)
        present += len(stored.get((hub_id, meter, str(obis)), set()) & want)
    # The housing provider's inputs: the month's gas invoice, the water utility's bill by the main
    # meter (here the flats' meters' sum as stored: the main meter is not simulated).
    area = sum((f.heated_area_m2 for f in b.building.flats), Decimal(0))
    fuel_kwh = (area * cfg.fuel_kwh_per_m2).quantize(Decimal(1))
    first, last = (
        cfg.sim_start.astimezone(LONDON).date(),
        (cfg.end - timedelta(seconds=1)).astimezone(LONDON).date(),
    )
    costs0 = BuildingCosts(first, last, Decimal(0), fuel_kwh, Decimal(0), cfg.fixed_share)
    _, period = building_bills(run.store.engine, b.building, costs0, LONDON)
    water_m3 = sum((f.hot_water_m3 + f.cold_water_m3 for f in period.flats), Decimal(0))
    costs = BuildingCosts(
        first, last, (fuel_kwh * cfg.fuel_price).quantize(CENT), fuel_kwh,
        (water_m3 * cfg.water_price).quantize(CENT), cfg.fixed_share,
    )  # fmt: skip
    bills, period = building_bills(run.store.engine, b.building, costs, LONDON)
    b.bills = bills
    csv_path = ""
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "bills.csv").write_text(bills_csv(bills))
        csv_path = str(out / "bills.csv")
    total = sum((x.total for x in bills), Decimal(0))
    return BuildingResult(
        building=b.building.building_id,
        layout=cfg.layout,
        flats=len(b.flats),
        submeters=sum(len(f.submeters) for f in b.flats),
        hubs=len(run.fleet.homes),
        days=cfg.days,
        readings_expected=expected,
        readings_stored=run.store.count_readings(start, end),
        missing=expected - present,
        estimated=run.store.count_estimated(start, end),
        duplicates=run.store.duplicate_keys(),
        pull_errors=run.scheduler.pull_errors,
        failed_allocators=sorted(b.silent),
        bills=len(bills),
        bill_total=str(total),
        building_cost=str(costs.fuel_cost + costs.water_cost),
        fuel_kwh=str(costs.fuel_kwh),
        fuel_cost=str(costs.fuel_cost),
        water_cost=str(costs.water_cost),
        estimated_flats=period.estimated_flats,
        tenancy_change=f"{b.mover.flat} at {b.move_out.isoformat()}",
        uplink=b.building.wan_link,
        uplink_max_in_flight=b.building.uplink_max_in_flight,
        hubs_on_uplink=_hubs_on(run, b.building.wan_link),
        seconds=round(seconds, 2),
        csv=csv_path,
        per_flat=[_bill_row(x) for x in bills],
    )


def _hubs_on(run: DemoRun, link: str) -> int:
    with run.store.engine.connect() as c:
        return len(c.execute(select(hubs.c.hub_id).where(hubs.c.wan_link == link)).all())


def _bill_row(x: FlatBill) -> dict[str, Any]:
    return {"flat": x.flat, "tenant": x.tenant, "start": x.start.isoformat(), "end": x.end.isoformat(),
            "units": str(x.units), "total": str(x.total), "estimated": x.estimated}  # fmt: skip


async def teardown_building(b: BuildingRun) -> None:
    await b.run.fleet.halt()
    await b.run.gdsc.close()
    await b.run.fleet.stop()


async def building_demo(cfg: BuildingDemoConfig, out: Path | None = None) -> BuildingResult:
    b = await setup_building(cfg)
    try:
        return await run_building(b, out)
    finally:
        await teardown_building(b)


__all__ = [
    "BuildingDemoConfig",
    "BuildingResult",
    "BuildingRun",
    "SimFlat",
    "block_flats",
    "building_demo",
    "run_building",
    "setup_building",
    "teardown_building",
]
