"""Wiring the consumer side onto a hub: priced consumption, the IHD, and (for a prepayment home)
the ledger, its bridge and the ``prepayment.topup`` command.

One function, used by the simulated fleet and by ``smarthub hub``, so both run the same code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptography import x509

from smarthub.clock import Clock
from smarthub.hub.consumption import HomeConsumption, Supply
from smarthub.hub.hub import SmartHub
from smarthub.hub.ihd.app import Ihd
from smarthub.hub.ihd.commands import ihd_commands
from smarthub.hub.ihd.live import LivePower
from smarthub.hub.ihd.revocations import RevocationRequests
from smarthub.hub.ihd.store import IhdStore
from smarthub.hub.management import ManagementInterface
from smarthub.hub.prepayment import AccountConfig, PrepaymentLedger, topup_command
from smarthub.hub.prepayment_bridge import Breaker, PrepaymentBridge, SupplyHolds
from smarthub.hub.privacy import ConsentStore
from smarthub.hub.tariffs import CostAccumulator, TariffStore
from smarthub.model.tariff import schedule_from_json
from smarthub.model.tariff_calc import day_start, local_day
from smarthub.model.tariff_carbon import FixedIntensity
from smarthub.wan import httpd as web
from smarthub.wan.contract.bodies import PrepaymentTopup


@dataclass
class ConsumerSide:
    consumption: HomeConsumption
    store: IhdStore
    ihd: Ihd
    tariffs: TariffStore | None = None
    ledger: PrepaymentLedger | None = None
    bridge: PrepaymentBridge | None = None
    runner: web.AppRunner | None = None
    url: str = ""
    # The consent revocations asked at the display, for the GDSC (hub.ihd.revocations).
    revocations: RevocationRequests | None = None

    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self.runner, bound = await self.ihd.start(host, port)
        self.url = f"http://{host}:{bound}"
        return self.url

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.bridge is not None:
            await self.bridge.settled()
            self.bridge.holds.close()
        if self.ledger is not None:
            self.ledger.close()
        if self.tariffs is not None:
            self.tariffs.close()
        if self.revocations is not None:
            self.revocations.close()
        self.store.close()


def supplies_from_json(text: str) -> list[Supply]:
    """Supplies from a hub's consumer configuration: ``{"electricity": {"meter": ..., "supplier":
    ..., "tariff": [<tariff versions>], "co2_g_per_kwh": "180"}, "gas": {...}}``."""
    try:
        config = json.loads(text)
        out = []
        for fuel, c in sorted(config.items()):
            schedule = schedule_from_json(json.dumps(c["tariff"]))
            carbon = FixedIntensity(g_per_kwh=Decimal(str(c.get("co2_g_per_kwh", "0"))))
            out.append(Supply(fuel, str(c["meter"]), str(c["supplier"]), CostAccumulator(schedule, carbon)))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"consumer configuration: {type(err).__name__}: {err}") from None
    return out


def _prepayment_since(directory: Path, now: datetime) -> datetime:
    """When this home went onto prepayment (first start with a ledger), kept across restarts."""
    path = directory / "prepayment_since"
    if not path.exists():
        path.write_text(now.isoformat())
    return datetime.fromisoformat(path.read_text().strip())


def replay_since(now: datetime) -> datetime:
    """From when the display's priced consumption is replayed from the history: the start of
    this month or of last week, whichever is earlier (local days)."""
    d = local_day(now)
    return day_start(min(d.replace(day=1), d - timedelta(days=d.weekday() + 7)))


def attach_consumer_side(
    hub: SmartHub,
    directory: Path,
    clock: Clock,
    supplies: Iterable[Supply],
    *,
    management: ManagementInterface | None = None,
    consent: ConsentStore | None = None,
    recipients: Iterable[str] = ("gdsc",),
    prepayment: bool = False,
    prepaid_fuels: Iterable[str] | None = None,
    ca_cert: x509.Certificate | None = None,
    breakers: Mapping[str, Breaker] | None = None,
    account_config: dict[str, AccountConfig] | None = None,
    cert_clock: Clock | None = None,
) -> ConsumerSide:
    """``cert_clock``: the clock voucher signers' certificates are checked against (default
    ``clock``; the simulated fleet checks certificates against wall time, as OpenSSL does)."""
    directory.mkdir(parents=True, exist_ok=True)
    store = IhdStore(directory / "ihd.sqlite")
    revocations = RevocationRequests(directory / "revocations.sqlite")
    tariffs = TariffStore(directory / "tariffs.sqlite")
    supplies = list(supplies)
    for s in supplies:  # tariff versions distributed since the configuration was written
        merged = tariffs.merge(s.fuel, s.accumulator.schedule)
        if merged != s.accumulator.schedule:
            s.accumulator.update_tariff(merged)
    consumption = HomeConsumption(supplies, store.appliances())
    ledger = bridge = None
    now = clock.now()
    if prepayment:
        if ca_cert is None:
            raise ValueError("a prepayment hub needs the GDSC CA certificate to check vouchers")
        ledger = PrepaymentLedger(directory / "prepayment.sqlite", hub.hub_id, ca_cert, config=account_config)
        bridge = PrepaymentBridge(
            ledger,
            consumption,
            clock,
            breakers,
            since=_prepayment_since(directory, now),
            fuels=prepaid_fuels,
            # A supplier's remote disconnect must outlive a restart: the hub may not switch a
            # supply back on by itself (nor gas without the consumer's confirmation).
            holds=SupplyHolds(directory / "supply_holds.sqlite"),
        )
    # Replay what the history holds of this month and last week (figures, comparison), then
    # follow the intervals as they close.
    consumption.load(hub.history, replay_since(now))
    hub.interval_observers.append(consumption.observe)
    elec = consumption.supplies.get("electricity")
    ihd = Ihd(
        consumption,
        store,
        clock,
        LivePower(hub.mirror, None if elec is None else elec.meter),
        consent=consent,
        ledger=ledger,
        bridge=bridge,
        recipients=list(recipients),
        history=hub.history,
        revocations=revocations,
    )
    if management is not None:
        for ctype, handler in ihd_commands(store, consumption, clock, tariffs).items():
            management.register(ctype, handler)
        if ledger is not None and bridge is not None:
            credit = topup_command(ledger, (cert_clock or clock).now)
            wired_bridge = bridge

            async def topup(body: PrepaymentTopup) -> dict[str, Any]:
                verdict = credit(body)
                if verdict.get("credited"):
                    await wired_bridge.check_all()  # credit back: reconnect (gas: once confirmed)
                return verdict

            management.register("prepayment.topup", topup)
    return ConsumerSide(consumption, store, ihd, tariffs, ledger, bridge, revocations=revocations)
