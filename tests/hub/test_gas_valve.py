"""A prepaid home with a real simulated DLMS gas meter whose valve (class 70) the hub closes when
credit runs out outside a friendly period; the supplier's remote reconnect only arms it, and the
consumer's confirmation at the IHD opens it. Commands arrive signed, through the hub's management
interface; the IHD confirmation is a POST to the hub's own IHD web app."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from hub.ihd_home import pair_screen, pki
from smarthub.clock import ManualClock, SystemClock
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.hub.consumption import Supply
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.hub.ihd.home import attach_consumer_side
from smarthub.hub.management import ManagementInterface
from smarthub.hub.prepayment import SupplyAction
from smarthub.hub.prepayment_bridge import SupplyHolds, supply_commands
from smarthub.hub.tariffs import CostAccumulator
from smarthub.meters.dlms.security import SecurityKeys
from smarthub.model.obis import GAS_VOLUME
from smarthub.model.prepayment import Voucher, voucher_envelope
from smarthub.model.tariff_carbon import FixedIntensity
from smarthub.sim.consumer import sample_gas
from smarthub.sim.dlms_gas_meter import DlmsGasMeterSimulator, dlms_gas_rig
from smarthub.sim.load_profile import HouseholdProfile

T0 = datetime(2026, 11, 24, 11, 0, tzinfo=UTC)  # a Tuesday, GMT: friendly credit ends at 11:00
HALF_HOUR = timedelta(minutes=30)


async def test_valve_closes_at_zero_credit_and_opens_only_after_arm_and_ihd_confirmation(
    tmp_path: Path,
) -> None:
    clock = ManualClock(T0)
    ca, operator = pki(T0)
    hub = SmartHub("HUB1", HistoryStore(tmp_path / "history.sqlite"), clock=clock)
    rig = dlms_gas_rig(
        hub,
        clock,
        T0,
        HouseholdProfile(3, annual_gas_kwh=40_000),
        b"ITF\x00\x00\x00\x00\x07",
        SecurityKeys(bytes(16), bytes(range(16))),
        timedelta(minutes=5),
    )
    assert rig.supply is not None
    valve = rig.supply
    sim = valve.link.meter
    assert isinstance(sim, DlmsGasMeterSimulator)
    loop = rig.loops[0]
    management = ManagementInterface("HUB1", ca.certificate, SystemClock(), tmp_path / "mgmt.sqlite")
    gas = Supply(
        "gas",
        valve.meter,
        "Shire Gas",
        CostAccumulator(sample_gas(T0.date() - timedelta(days=40)), FixedIntensity(g_per_kwh=Decimal(183))),
    )
    side = attach_consumer_side(
        hub,
        tmp_path / "ihd",
        clock,
        [gas],
        management=management,
        prepayment=True,
        ca_cert=ca.certificate,
        breakers={"gas": valve},
    )
    bridge, ledger = side.bridge, side.ledger
    assert bridge is not None and ledger is not None
    for ctype, handler in supply_commands(bridge, {valve.meter: ("gas", valve)}).items():
        management.register(ctype, handler)
    counter = iter(range(1, 1000))
    assert operator.private_key is not None
    signer = CommandSigner(operator.private_key, operator.cert_pem, lambda _hub: next(counter))

    async def command(ctype: str, body: dict[str, Any]) -> dict[str, Any]:
        result = await management.handle(signer.command("HUB1", ctype, body, datetime.now(UTC)).envelope())
        assert result.status == "applied", result
        return dict(result.result or {})

    async def top_up(n: int, amount: str) -> None:
        v = Voucher(f"VG{n:08d}", "HUB1", "gas", Decimal(amount), clock.now())
        sig = operator.private_key.sign(v.canonical(), ec.ECDSA(hashes.SHA256()))  # type: ignore[union-attr]
        await command("prepayment.topup", voucher_envelope(v, sig, operator.cert_pem))

    async def run_until(t: datetime) -> None:
        clock.set(t)
        await loop.run(until=t)
        await bridge.settled()

    def volumes() -> dict[datetime, int]:
        """Litres per half-hour, from the meter's own profile (what really flowed)."""
        rows = sim.gas_rows
        return {b.time - HALF_HOUR: b.volume_l - a.volume_l for a, b in pairwise(rows)}

    await top_up(1, "0.60")
    # Run half-hour by half-hour until the credit is gone and the valve has closed.
    t = T0
    while sim.valve_open:
        t += HALF_HOUR
        assert t < T0 + timedelta(hours=6), "credit never ran out"
        await run_until(t)
    closed_by = t
    assert ledger.balance("gas").supply == "off" and ledger.balance("gas").credit <= 0
    assert (await command("supply.state", {"meter": valve.meter}))["connected"] is False
    await run_until(closed_by + 3 * HALF_HOUR)
    flowed = volumes()
    assert any(v > 0 for at, v in flowed.items() if at < closed_by - HALF_HOUR)  # gas was flowing
    after = [closed_by + i * HALF_HOUR for i in range(2)]
    assert [flowed[at] for at in after] == [0, 0]  # valve shut: nothing flows
    # The hub's own intervals, polled from the meter, agree.
    hub_hh = {r.start: r.value for r in hub.history.query(valve.meter, GAS_VOLUME)}
    assert [hub_hh[int(at.timestamp())] for at in after] == [0, 0]

    url = await side.serve()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        await pair_screen(s, url, side.store.new_pairing_code(clock.now()))
        # A confirmation with no credit yet (a stale click, a forged POST) is refused, and the
        # top-up that follows does not open the valve on its strength (issue 13 item 11).
        r = await s.post(url + "/prepayment/gas/reconnect")
        assert r.status == 409 and "top up first" in await r.text()
        # Credit again: gas waits for the consumer (the valve stays shut).
        await top_up(2, "20.00")
        await bridge.settled()
        assert ledger.supply_action("gas", clock.now()) is SupplyAction.AWAIT_CONFIRMATION
        assert not sim.valve_open
        # The supplier switches it off remotely: held, and a confirmation at the IHD does not open it.

        async def confirm_at_ihd() -> None:
            r = await s.post(url + "/prepayment/gas/reconnect")
            assert r.status == 200

        held = await command("supply.disconnect", {"meter": valve.meter})
        assert held["held"] is True and held["connected"] is False
        # The hold is on disk: a hub restarted now would keep the gas off.
        after_restart = SupplyHolds(tmp_path / "ihd" / "supply_holds.sqlite")
        assert after_restart.held("gas")
        after_restart.close()
        await confirm_at_ihd()
        assert not sim.valve_open
        # The supplier's reconnect arms the valve; alone it opens nothing, and the confirmation
        # given before the arm does not count.
        armed = await command("supply.reconnect", {"meter": valve.meter})
        assert armed == {"connected": False, "armed": True, "supply_action": "await_confirmation"}
        assert not sim.valve_open and sim.control_state == 0  # class 70: disconnected
        page = await (await s.get(url + "/")).text()
        assert 'id="reconnect-gas"' in page
        # The consumer confirms at the IHD: the hub sends remote_reconnect, the valve opens.
        await confirm_at_ihd()
    assert sim.valve_open and ledger.balance("gas").supply == "on"
    state = await command("supply.state", {"meter": valve.meter})
    assert state == {"connected": True, "control_state": "connected", "held": False}
    opened = clock.now()
    await run_until(opened + 4 * HALF_HOUR)
    assert sum(v for at, v in volumes().items() if at >= opened) > 0  # gas flows again
    assert loop.failures == 0
    await side.stop()
    management.close()
    hub.history.close()


def test_the_gas_meter_serves_its_index_and_valve_and_refuses_electricity_objects() -> None:
    sim = DlmsGasMeterSimulator(b"ITF\x00\x00\x00\x00\x08", "8", HouseholdProfile(5), T0)
    sim.advance(T0 + timedelta(hours=2))
    assert len(sim.gas_rows) == 4 and sim.registers.volume_l > 1_000_000
    from smarthub.sim.dlms_meter import IMPORT, LIMITER

    assert sim._attribute(3, IMPORT, 2) == 4  # object-undefined: a gas meter has no kWh register
    assert sim._attribute(71, LIMITER, 3) == 4
    sim.control_state = 0  # valve closed
    before = sim.registers.volume_l
    sim.advance(T0 + timedelta(hours=4))
    assert sim.registers.volume_l == before
