"""Prepayment wired to the hub: interval charges, a day's ledger total equal to its bill, the
breaker switched outside friendly periods only, and gas reconnected only after the consumer
confirms at the IHD."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aiohttp

from hub.ihd_home import ELEC, GAS, electricity_tariff, gas_tariff, make_home, pair_screen
from smarthub.gdsc.readings.billing import bill
from smarthub.hub.consumption import Supply, gas_kwh
from smarthub.hub.ihd.home import attach_consumer_side
from smarthub.hub.prepayment import SupplyAction
from smarthub.hub.prepayment_bridge import day_prefix
from smarthub.hub.tariffs import CostAccumulator
from smarthub.meters.dlms.security import SecurityKeys
from smarthub.model.obis import GAS_VOLUME, IMPORT_ACTIVE_ENERGY
from smarthub.model.tariff_calc import IntervalConsumption
from smarthub.model.tariff_carbon import FixedIntensity
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.rigs import SupplyControl, dlms_rig

TUESDAY = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)  # GMT: local time = UTC
HH = timedelta(minutes=30)


def gdsc_day_bill(home, fuel: str, day):  # type: ignore[no-untyped-def]
    """The GDSC's bill for one day, from the intervals the hub stored (its own conversion)."""
    meter, obis = (ELEC, IMPORT_ACTIVE_ENERGY) if fuel == "electricity" else (GAS, GAS_VOLUME)
    series = []
    for r in home.hub.history.query(meter, obis, limit=10_000):
        q = Decimal(r.value).scaleb(r.power_of_ten)
        k = q / 1000 if fuel == "electricity" else gas_kwh(q)
        series.append(IntervalConsumption(datetime.fromtimestamp(r.start, UTC), HH, k))
    supply = home.side.consumption.supplies[fuel]
    return bill(
        supply.accumulator.schedule,
        FixedIntensity(g_per_kwh=Decimal(0)),
        series,
        day,
        day + timedelta(days=1),
    )


async def test_a_settled_day_takes_exactly_its_bill_and_a_restart_charges_nothing_twice(
    tmp_path: Path,
) -> None:
    home = make_home(tmp_path, TUESDAY, plugs=())
    await home.top_up("100.00")
    await home.top_up("100.00", "gas")
    # Awkward amounts (777 W, 333 l/h), so the unrounded interval charges do not add up to pennies.
    home.run(TUESDAY, TUESDAY + timedelta(days=1, hours=1), elec_w=777, gas_l_per_h=333)
    ledger = home.side.ledger
    assert ledger is not None
    day = TUESDAY.date()
    for fuel in ("electricity", "gas"):
        expected = gdsc_day_bill(home, fuel, day).total
        assert ledger.charged(fuel, day_prefix(fuel, day)) == expected  # exact Decimal equality
        interval_charges = ledger.charged(fuel, day_prefix(fuel, day) + "energy/")
        assert interval_charges != interval_charges.quantize(Decimal("0.01"))  # unrounded per interval
    before = {f: ledger.balance(f) for f in ("electricity", "gas")}

    # A restart: the consumer side is rebuilt and replays the history; nothing is charged again.
    await home.side.stop()
    home.hub.interval_observers.clear()
    supplies = [
        Supply(
            "electricity",
            ELEC,
            "Northern Power",
            CostAccumulator(
                electricity_tariff(day - timedelta(days=40)), FixedIntensity(g_per_kwh=Decimal(0))
            ),
        ),
        Supply(
            "gas",
            GAS,
            "Shire Gas",
            CostAccumulator(gas_tariff(day - timedelta(days=40)), FixedIntensity(g_per_kwh=Decimal(0))),
        ),
    ]
    home.side = attach_consumer_side(
        home.hub, tmp_path / "ihd", home.clock, supplies, prepayment=True, ca_cert=home.ca.certificate
    )
    assert home.side.ledger is not None
    assert {f: home.side.ledger.balance(f) for f in ("electricity", "gas")} == before
    home.run(TUESDAY + timedelta(days=1, hours=1, minutes=30), TUESDAY + timedelta(days=1, hours=2))
    charged_after = home.side.ledger.charged("electricity", day_prefix("electricity", day))
    assert charged_after == gdsc_day_bill(home, "electricity", day).total
    await home.close()


def breakers(home, start: datetime) -> dict[str, SupplyControl]:  # type: ignore[no-untyped-def]
    """A DLMS meter's disconnect control (class 70) per fuel: the electricity breaker, and one
    standing in as the gas valve (DLMS gas meters use the same interface class)."""
    out = {}
    for i, fuel in enumerate(("electricity", "gas")):
        rig = dlms_rig(
            home.hub,
            home.clock,
            start,
            HouseholdProfile(7 + i),
            b"LGZ\x00\x00\x00\x01" + bytes([i]),
            SecurityKeys(bytes(16), bytes(range(16))),
            timedelta(minutes=5),
        )
        assert rig.supply is not None
        out[fuel] = rig.supply
    return out


async def test_no_disconnection_inside_a_friendly_period_and_a_cut_off_outside_one(tmp_path: Path) -> None:
    home = make_home(tmp_path / "a", TUESDAY + timedelta(hours=18), plugs=())
    home.side.bridge.breakers = breakers(home, home.clock.now())  # type: ignore[union-attr]
    ledger = home.side.ledger
    assert ledger is not None
    await home.top_up("1.00")
    await home.top_up("1.00", "gas")
    # Tuesday 18:00 to 23:30: friendly hours. Credit runs out; energy goes to debt, supply stays on.
    home.run(TUESDAY + timedelta(hours=18), TUESDAY + timedelta(hours=23, minutes=30), elec_w=3000)
    await home.side.bridge.settled()  # type: ignore[union-attr]
    for fuel, breaker in home.side.bridge.breakers.items():  # type: ignore[union-attr]
        b = ledger.balance(fuel)
        assert b.debt > 0 and b.supply == "on"
        assert (await breaker.state())["connected"] is True
    await home.close()

    home = make_home(tmp_path / "b", TUESDAY + timedelta(hours=12), plugs=())
    home.side.bridge.breakers = breakers(home, home.clock.now())  # type: ignore[union-attr]
    ledger = home.side.ledger
    assert ledger is not None
    await home.top_up("1.00")
    await home.top_up("1.00", "gas")
    # Tuesday 12:00 to 17:00: not friendly. Credit runs out and the meter's breaker opens.
    home.run(TUESDAY + timedelta(hours=12), TUESDAY + timedelta(hours=17), elec_w=3000)
    await home.side.bridge.settled()  # type: ignore[union-attr]
    valves = home.side.bridge.breakers  # type: ignore[union-attr]
    for fuel in ("electricity", "gas"):
        assert ledger.balance(fuel).supply == "off"
        assert (await valves[fuel].state())["connected"] is False

    # A top-up: electricity comes back at once; gas waits for the consumer at the IHD.
    await home.top_up("20.00")
    await home.top_up("20.00", "gas")
    assert (await valves["electricity"].state())["connected"] is True
    assert ledger.supply_action("gas", home.clock.now()) is SupplyAction.AWAIT_CONFIRMATION
    assert (await valves["gas"].state())["connected"] is False
    url = await home.side.serve()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        await pair_screen(s, url, home.side.store.new_pairing_code(home.clock.now()))
        page = await (await s.get(url + "/")).text()
        assert 'id="reconnect-gas"' in page and 'id="reconnect-electricity"' not in page
        assert (await valves["gas"].state())["connected"] is False  # showing the button opens nothing
        r = await s.post(url + "/prepayment/gas/reconnect")
        assert r.status == 200
    assert (await valves["gas"].state())["connected"] is True
    assert ledger.balance("gas").supply == "on"
    await home.close()
