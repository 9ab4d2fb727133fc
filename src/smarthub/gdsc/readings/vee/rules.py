"""The VEE validation rules: pure functions over values already grouped per channel-day.

Every rule takes plain numbers (a day's ``{slot: (value, quality)}``, a register sequence, a
meter profile) and returns what it objects to, with the evidence as text; none reads a clock
or a database, so each is tested on its own. :mod:`.gate` runs them over a pull.

Units: values arrive as integers × 10^power_of_ten in the channel's IEEE 2030.5 unit (Wh for
electricity energy, m³ for gas volume). Rules compare in those *base units* (floats: every
value the GDSC stores is an integer below 2^53 once scaled, so sums stay exact enough for a
tolerance of one register digit).

Meter profiles hold the physical limits per meter model (what a utility's MDM configures per
meter type): the connection's capacity (fuse or meter maximum current × voltage × phases for
electricity, the meter's maximum flow for gas), whether export is possible, the register's
resolution and number of digits (its rollover).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from smarthub.model.reading_type import quality_channels, run_channels

# IEEE 2030.5 QualityFlags bits (smarthub.model.reading.Quality; repeated here so the GDSC does
# not import the hub's model package for four integers).
VALID = 1 << 0
MANUALLY_EDITED = 1 << 1
ESTIMATED_REFERENCE_DAY = 1 << 2
ESTIMATED_LINEAR_INTERPOLATION = 1 << 3
QUESTIONABLE = 1 << 4
ESTIMATED = ESTIMATED_REFERENCE_DAY | ESTIMATED_LINEAR_INTERPOLATION

# GB: Gas (Calculation of Thermal Energy) Regulations 1996 — kWh = m³ × correction factor ×
# calorific value (MJ/m³) / 3.6, with the standard correction factor for temperature and
# pressure 1.02264 for domestic supplies (metered at low pressure, no corrector fitted).
GB_GAS_CORRECTION = Decimal("1.02264")
GB_MJ_PER_KWH = Decimal("3.6")


def gas_kwh(
    volume_m3: Decimal | int | str,
    calorific_value_mj_m3: Decimal | int | str,
    correction: Decimal = GB_GAS_CORRECTION,
) -> Decimal:
    """GB gas volume → energy: m³ × correction factor × CV (MJ/m³) / 3.6 (kWh).

    Decimal arithmetic, not rounded: a supplier rounds the bill's kWh per its own rules
    (typically to whole kWh on the bill), after summing. A negative volume or CV is refused."""
    v, cv = Decimal(volume_m3), Decimal(calorific_value_mj_m3)
    if v < 0:
        raise ValueError(f"gas volume {v} m³ is negative")
    if not Decimal(30) <= cv <= Decimal(50):
        raise ValueError(f"calorific value {cv} MJ/m³ is outside the 30..50 of natural gas")
    return v * correction * cv / GB_MJ_PER_KWH


@dataclass(frozen=True, slots=True)
class MeterProfile:
    """The physical limits of a meter model (base units: Wh / m³; rates per hour).

    ``max_rate`` — the most the connection can pass in an hour: W for electricity (fuse or
    meter maximum current × voltage × phases), m³/h for gas (the meter's Qmax, e.g. 6 for a G4).
    ``register_modulus`` — where the register rolls over (10^digits × its unit), base units.
    ``resolution`` — one register digit in base units: the interval sum must match the register
    advance within it (plus half a digit per interval when the meter rounds each interval)."""

    model: str
    medium: str  # "electricity" | "gas" | "water" | "heat"
    max_rate: float
    export_possible: bool = False
    register_modulus: float = 1e9
    resolution: float = 1.0
    rounds_intervals: bool = False
    stuck_after_slots: int | None = 48  # all-zero run that raises a suspicion (None: never)


def electricity_profile(
    model: str,
    *,
    max_current_a: float = 100.0,
    volts: float = 230.0,
    phases: int = 1,
    export_possible: bool = False,
    digits: int = 6,
    resolution_wh: float = 1.0,
) -> MeterProfile:
    """A domestic electricity meter: capacity = max current × voltage × phases (W); register of
    ``digits`` kWh digits (rollover at 10^digits kWh)."""
    return MeterProfile(
        model,
        "electricity",
        max_current_a * volts * phases,
        export_possible,
        10.0**digits * 1000.0,
        resolution_wh,
    )


def gas_profile(
    model: str, *, qmax_m3h: float = 6.0, digits: int = 5, resolution_m3: float = 0.001
) -> MeterProfile:
    """A domestic gas meter (G4: Qmax 6 m³/h); register of ``digits`` whole-m³ digits."""
    return MeterProfile(
        model, "gas", qmax_m3h, False, 10.0**digits, resolution_m3, stuck_after_slots=None
    )  # gas is legitimately off for days in summer


def water_profile(
    model: str, *, q4_m3h: float = 3.125, digits: int = 5, resolution_m3: float = 0.001
) -> MeterProfile:
    """A domestic cold-water meter (EN ISO 4064 / MID: permanent flow Q3 2.5 m³/h, overload flow
    Q4 = 1.25 × Q3, the most it passes); register of ``digits`` whole-m³ digits, read in litres."""
    return MeterProfile(
        model, "water", q4_m3h, False, 10.0**digits, resolution_m3, stuck_after_slots=None
    )  # a home's water is legitimately still for days (nobody in)


# Power-quality statistics and appliance runs (starts, seconds run) are not consumption.
_QUALITY = frozenset(str(o) for o in quality_channels() | run_channels())

# Defaults when the GDSC knows no model for a meter, by OBIS medium (value group A).
DEFAULT_PROFILES: dict[str, MeterProfile] = {
    "1": electricity_profile("default-electricity"),
    "7": gas_profile("default-gas"),
    "8": water_profile("default-water"),
}


def profile_for(obis: str, model: MeterProfile | None) -> MeterProfile | None:
    """The limits to check a channel against; None for a power-quality channel (10-minute voltage
    statistics, sag/swell counts) or an appliance-run channel (a plug's starts and seconds run):
    not consumption, so no energy limits apply."""
    if obis in _QUALITY:
        return None
    if model is not None:
        return model
    return DEFAULT_PROFILES.get(obis.split("-", 1)[0])


def is_export(obis: str) -> bool:
    """OBIS C = 2 (active power −): the export direction of electricity."""
    try:
        return obis.split(":", 1)[1].split(".", 1)[0] == "2"
    except IndexError:
        return False


Slots = Mapping[int, tuple[int, int]]


def timestamp_faults(
    day_start: int, duration: int, slots: Slots, now: int, *, max_age: int, skew: int = 300
) -> list[tuple[int, str]]:
    """Slots whose interval ends in the future (beyond ``skew`` s) or starts more than
    ``max_age`` s ago: [(slot, evidence)]."""
    out: list[tuple[int, str]] = []
    last_end = day_start + duration * (max(slots) + 1) if slots else day_start
    if last_end <= now + skew and day_start >= now - max_age:
        return out  # the whole day is in range: the usual case, one comparison
    for slot in slots:
        start = day_start + slot * duration
        if start + duration > now + skew:
            out.append(
                (slot, f"interval ends at {start + duration}, {start + duration - now} s in the future")
            )
        elif start < now - max_age:
            out.append((slot, f"interval starts at {start}, older than {max_age} s"))
    return out


def negative_faults(slots: Slots, scale: float, export_possible: bool) -> list[tuple[int, str]]:
    """Negative consumption on a channel of a meter that cannot export."""
    if export_possible or not slots or min(slots.values())[0] >= 0:
        return []
    return [
        (s, f"negative consumption {v * scale:g} where export is impossible")
        for s, (v, _) in slots.items()
        if v < 0
    ]


def spike_faults(slots: Slots, scale: float, duration: int, max_rate: float) -> list[tuple[int, str]]:
    """Intervals that exceed what the connection can physically pass in ``duration`` s."""
    limit = max_rate * duration / 3600.0
    cap = limit / scale if scale else float("inf")
    if not slots or max(slots.values())[0] <= cap:
        return []
    return [
        (s, f"{v * scale:g} in {duration} s exceeds the connection's capacity {limit:g}")
        for s, (v, _) in slots.items()
        if v > cap
    ]


@dataclass(frozen=True, slots=True)
class RegisterStep:
    """One register reading judged against the last good one before it."""

    at: int
    value: float
    advance: float | None  # base units since the previous good reading (None: first known)
    rollover: bool = False
    fault: str | None = None  # why it is refused (None: good)


def register_steps(
    reads: Sequence[tuple[int, float]], previous: tuple[int, float] | None, profile: MeterProfile
) -> list[RegisterStep]:
    """Check a meter register's readings [(at, value)] in time order against the last good
    one: monotonic, rollover recognised (the value fell, and the advance through the modulus
    is physically possible in the elapsed time), never faster than the connection allows.

    A refused reading does not become the reference: the next is judged against the last good
    one, so one bad register reading does not condemn its neighbours."""
    out: list[RegisterStep] = []
    prev = previous
    modulus = profile.register_modulus
    for at, value in reads:
        if not 0 <= value < modulus:
            out.append(RegisterStep(at, value, None, False, f"register {value:g} outside 0..{modulus:g}"))
            continue
        if prev is None:
            out.append(RegisterStep(at, value, None))
            prev = (at, value)
            continue
        elapsed = at - prev[0]
        most = profile.max_rate * max(elapsed, 0) / 3600.0 + profile.resolution
        advance = value - prev[1]
        rolled = False
        if advance < 0:
            through = advance + modulus
            if through <= most:
                advance, rolled = through, True
            else:
                out.append(
                    RegisterStep(
                        at,
                        value,
                        None,
                        False,
                        f"register fell from {prev[1]:g} to {value:g} (not a rollover at {modulus:g})",
                    )
                )
                continue
        if advance > most:
            out.append(
                RegisterStep(
                    at,
                    value,
                    None,
                    False,
                    f"register advanced {advance:g} in {elapsed} s, beyond the "
                    f"connection's capacity {most:g}",
                )
            )
            continue
        out.append(RegisterStep(at, value, advance, rolled))
        prev = (at, value)
    return out


def sum_tolerance(profile: MeterProfile, n_intervals: int) -> float:
    """How far a day's interval sum may be from its register advance: one register digit,
    plus half a digit per interval when the meter rounds each interval on its own."""
    r = profile.resolution
    return r + (r / 2 * n_intervals if profile.rounds_intervals else 0.0) + 1e-9 * r


def interval_sum_fault(total: float, advance: float, tolerance: float, complete: bool) -> str | None:
    """A complete day's intervals must add up to the register advance within ``tolerance``;
    an incomplete day's present intervals can only fall short of it, never exceed it."""
    if complete and abs(total - advance) > tolerance:
        return f"intervals add up to {total:g}, the register advanced {advance:g} (± {tolerance:g})"
    if not complete and total > advance + tolerance:
        return f"intervals present add up to {total:g}, more than the register advance {advance:g}"
    return None


def stuck_suspected(slots: Slots, n_slots: int, after: int | None) -> bool:
    """A full day (or ``after`` slots) of exact zeros: a stuck meter is *suspected*, not
    proven (a home can be empty), so the readings land flagged questionable."""
    if after is None or len(slots) < min(after, n_slots) or min(slots.values())[0] != 0:
        return False
    run = 0
    for s in range(n_slots):
        v = slots.get(s)
        run = run + 1 if v is not None and v[0] == 0 else 0
        if run >= after:
            return True
    return False


__all__ = [
    "DEFAULT_PROFILES",
    "ESTIMATED",
    "ESTIMATED_LINEAR_INTERPOLATION",
    "ESTIMATED_REFERENCE_DAY",
    "GB_GAS_CORRECTION",
    "MANUALLY_EDITED",
    "QUESTIONABLE",
    "MeterProfile",
    "RegisterStep",
    "electricity_profile",
    "gas_kwh",
    "gas_profile",
    "interval_sum_fault",
    "negative_faults",
    "profile_for",
    "register_steps",
    "spike_faults",
    "stuck_suspected",
    "sum_tolerance",
    "timestamp_faults",
]
