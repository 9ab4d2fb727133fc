"""The consumer side of a simulated home: sample tariffs from two suppliers and the smart plugs'
EUI-64s (``smarthub.sim.fleet.home_config`` puts them in each home's configuration; the
assembly wires the consumer side as for any hub).

The tariffs stand in for those the GDSC distributes.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from smarthub.model.tariff import WEEKDAYS, Flat, RatePeriod, Tariff, TariffSchedule, TimeOfUse, Weekday
from smarthub.sim.appliance_profiles import APPLIANCES

_EVERY_DAY: dict[Weekday, str] = {d: "all" for d in WEEKDAYS}


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
