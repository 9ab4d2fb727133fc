"""The consumer side of a simulated home: sample tariffs from two suppliers, smart plugs on
ZigBee homes, prepayment on the homes whose electricity meter has a breaker (DLMS).

The tariffs stand in for those the GDSC distributes; everything else is the production code
(`smarthub.hub.ihd.home.attach_consumer_side`).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from smarthub.clock import Clock
from smarthub.hub.consumption import Supply
from smarthub.hub.hub import SmartHub
from smarthub.hub.ihd.home import ConsumerSide, attach_consumer_side
from smarthub.hub.management import ManagementInterface
from smarthub.hub.privacy import ConsentStore
from smarthub.hub.tariffs import CostAccumulator
from smarthub.model.prepayment import Voucher, voucher_envelope
from smarthub.model.tariff import Flat, RatePeriod, Tariff, TariffSchedule, TimeOfUse
from smarthub.model.tariff_carbon import FixedIntensity
from smarthub.sim.appliance_profiles import APPLIANCES
from smarthub.sim.rigs import Rig, smart_plug_rig

_EVERY_DAY = {d: "all" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def sample_electricity(effective: date) -> TariffSchedule:
    """A two-rate time-of-use tariff (cheap 00:30-07:30), 5 % VAT."""
    return TariffSchedule(
        [
            Tariff(
                tariff_id="night-saver",
                version=1,
                effective_from=effective,
                name="Night Saver",
                standing_charge_p_per_day=Decimal("53.35"),
                pricing=TimeOfUse(
                    rates={"day": Decimal("27.03"), "night": Decimal("13.51")},
                    day_types={
                        "all": (
                            RatePeriod(start="00:30", end="07:30", rate="night"),
                            RatePeriod(start="07:30", end="00:30", rate="day"),
                        )
                    },
                    week=_EVERY_DAY,
                ),
            )
        ]
    )


def sample_gas(effective: date) -> TariffSchedule:
    return TariffSchedule(
        [
            Tariff(
                tariff_id="fixed-gas",
                version=1,
                effective_from=effective,
                name="Fixed Gas",
                standing_charge_p_per_day=Decimal("31.43"),
                pricing=Flat(unit_rate_p_per_kwh=Decimal("6.24")),
            )
        ]
    )


def plug_euis(index: int) -> list[str]:
    return [
        f"00:0d:6f:01:{index >> 8 & 0xFF:02x}:{index & 0xFF:02x}:{i:02x}:20" for i in range(len(APPLIANCES))
    ]


def add_smart_plugs(
    hub: SmartHub, clock: Clock, start: datetime, index: int, period: timedelta
) -> tuple[Rig, dict[str, str]]:
    """The home's smart plugs (one per sample appliance) and the appliance each one measures;
    the rig's protocol is "zigbee", so the installer's pairing commissions them like meters."""
    plugs = list(zip(plug_euis(index), APPLIANCES, strict=True))
    return smart_plug_rig(hub, clock, start, plugs, period), {eui: a.name for eui, a in plugs}


def attach_sim_consumer_side(
    hub: SmartHub,
    directory: Path,
    clock: Clock,
    rigs: list[Rig],
    start: datetime,
    appliances: dict[str, str],
    *,
    management: ManagementInterface,
    consent: ConsentStore,
    ca_cert: x509.Certificate,
    operator: tuple[Path, Path] | None = None,
    cert_clock: Clock | None = None,
) -> ConsumerSide:
    """Supplies from the home's meters (first electricity and gas meter), the sample tariffs,
    plugs named as appliances, and prepayment of electricity where a breaker exists, opened
    with a £20 voucher signed by the GDSC ``operator`` (certificate, key) as a supplier would
    at the change to prepayment (credited once: its id is fixed per hub)."""
    meters: dict[str, str] = {}
    for rig in rigs:
        for meter, fuel in rig.meters:
            if fuel in ("electricity", "gas") and fuel not in meters and meter not in appliances:
                meters[fuel] = meter
    effective = start.date().replace(day=1)
    tariffs = {"electricity": sample_electricity(effective), "gas": sample_gas(effective)}
    suppliers = {"electricity": "Northern Power", "gas": "Shire Gas"}
    carbon = {"electricity": Decimal(180), "gas": Decimal(183)}  # g CO2e/kWh: grid average, natural gas
    supplies = [
        Supply(f, m, suppliers[f], CostAccumulator(tariffs[f], FixedIntensity(g_per_kwh=carbon[f])))
        for f, m in sorted(meters.items())
    ]
    dlms = [rig.supply for rig in rigs if rig.supply is not None]
    breakers = {"electricity": dlms[0]} if dlms else {}
    side = attach_consumer_side(
        hub,
        directory,
        clock,
        supplies,
        management=management,
        consent=consent,
        prepayment=bool(breakers),
        prepaid_fuels=["electricity"] if breakers else None,
        ca_cert=ca_cert,
        breakers=breakers,  # type: ignore[arg-type]
        cert_clock=cert_clock,
    )
    if side.ledger is not None and operator is not None:
        opening = Voucher(f"OPEN-{hub.hub_id}", hub.hub_id, "electricity", Decimal("20.00"), clock.now())
        key = serialization.load_pem_private_key(operator[1].read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        signature = key.sign(opening.canonical(), ec.ECDSA(hashes.SHA256()))
        envelope = voucher_envelope(opening, signature, operator[0].read_bytes())
        side.ledger.top_up(envelope, (cert_clock or clock).now())
    for eui, name in appliances.items():
        side.consumption.set_appliance(eui, name)
    return side
