"""Scheduling an appliance run into the cheapest feasible window of a tariff.

A run is an energy profile (kWh per step, e.g. a washing machine's heat, wash and spin) or a
constant power for a duration. It may start on any step boundary (steps divide the half-hour,
aligned to UTC, so each step lies in one settlement period) from ``earliest`` onwards and must
finish by ``deadline``. Its cost at a start is the sum over steps of kWh x the unit price of
that step's settlement period x (1 + VAT), exactly, from the shared tariff calculation; the
standing charge does not depend on when the run happens and is left out. The cheapest start
wins; of equal costs, the earliest (sooner done is better for the consumer).

Works on time-of-use, flat and dynamic tariffs (including tariff-version changes inside the
window). A tiered tariff is refused: its marginal price depends on other consumption. The
search prices each step once and slides the profile over the price array: O(steps x profile).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext

from smarthub.model.tariff import SETTLEMENT_PERIOD, TariffError, TariffSchedule
from smarthub.model.tariff_calc import EXACT, local_day, unit_price

_KWH_PLACES = Decimal("0.000001")


class NoFeasibleWindow(ValueError):
    """The run does not fit between its earliest start and its deadline."""


@dataclass(frozen=True)
class ApplianceRun:
    name: str
    energy_kwh: tuple[Decimal, ...]  # per step, in order
    step: timedelta = SETTLEMENT_PERIOD

    def __post_init__(self) -> None:
        if not self.energy_kwh:
            raise ValueError(f"{self.name}: empty energy profile")
        if any(not isinstance(e, Decimal) or not e.is_finite() or e < 0 for e in self.energy_kwh):
            raise ValueError(f"{self.name}: profile energies must be finite, non-negative Decimals")
        if self.step <= timedelta(0) or SETTLEMENT_PERIOD % self.step:
            raise ValueError(f"{self.name}: step {self.step} must divide the 30-minute settlement period")

    @property
    def duration(self) -> timedelta:
        return self.step * len(self.energy_kwh)

    @classmethod
    def from_power(
        cls, name: str, power_kw: Sequence[Decimal], step: timedelta = SETTLEMENT_PERIOD
    ) -> ApplianceRun:
        """A per-step power profile (kW), converted to kWh per step (to 6 places, half up)."""
        hours = Decimal(int(step.total_seconds())) / 3600
        with localcontext() as ctx:
            ctx.rounding = ROUND_HALF_UP
            energy = tuple((Decimal(p) * hours).quantize(_KWH_PLACES) for p in power_kw)
        return cls(name, energy, step)

    @classmethod
    def constant(
        cls, name: str, power_kw: Decimal, duration: timedelta, step: timedelta = SETTLEMENT_PERIOD
    ) -> ApplianceRun:
        if duration <= timedelta(0) or duration % step:
            raise ValueError(f"{name}: duration {duration} must be a positive whole number of {step} steps")
        return cls.from_power(name, [power_kw] * (duration // step), step)


@dataclass(frozen=True)
class Plan:
    run: ApplianceRun
    start: datetime
    cost_p: Decimal  # exact, pence inc. VAT

    @property
    def end(self) -> datetime:
        return self.start + self.run.duration


def candidate_starts(run: ApplianceRun, earliest: datetime, deadline: datetime) -> list[datetime]:
    """Every step boundary at or after ``earliest`` from which the run ends by ``deadline``."""
    if earliest.tzinfo is None or deadline.tzinfo is None:
        raise ValueError("earliest and deadline must be timezone-aware")
    s = int(run.step.total_seconds())
    first = datetime.fromtimestamp(-(-int(earliest.timestamp()) // s) * s, UTC)
    out, t = [], first
    while t + run.duration <= deadline:
        out.append(t)
        t += run.step
    return out


def step_price(schedule: TariffSchedule, t: datetime) -> Decimal:
    """p/kWh inc. VAT, exact, for the settlement period containing ``t``."""
    tariff = schedule.in_force(local_day(t))
    _, price = unit_price(tariff, t)
    with localcontext(EXACT):
        return price * (1 + tariff.vat_rate)


def cheapest(run: ApplianceRun, schedule: TariffSchedule, earliest: datetime, deadline: datetime) -> Plan:
    starts = candidate_starts(run, earliest, deadline)
    if not starts:
        raise NoFeasibleWindow(
            f"{run.name} ({run.duration}) does not fit between {earliest.isoformat()} "
            f"and {deadline.isoformat()}"
        )
    n, m = len(starts), len(run.energy_kwh)
    # Step i of the horizon starts at starts[0] + i*step; run from start j uses steps j..j+m-1.
    try:
        prices = [step_price(schedule, starts[0] + i * run.step) for i in range(n + m - 1)]
    except TariffError as e:
        raise TariffError(f"cannot schedule {run.name}: {e}") from e
    best: tuple[Decimal, int] | None = None
    with localcontext(EXACT):
        for j in range(n):
            cost = sum((e * prices[j + k] for k, e in enumerate(run.energy_kwh)), Decimal(0))
            if best is None or cost < best[0]:
                best = (cost, j)
    assert best is not None
    return Plan(run, starts[best[1]], best[0])
