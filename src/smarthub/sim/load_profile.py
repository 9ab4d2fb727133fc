"""A deterministic household load model: electricity demand, rooftop PV and gas, per minute.

No external data: the shapes are simple functions of local time and day of year, with seeded
randomness for day-to-day variation and appliance events (kettle, washing machine, oven...).
Everything for one UTC day is computed at once into per-minute arrays and cached, so

* a value depends only on ``(seed, minute)``: the same for any order of calls;
* integrating energy over any span is a difference of per-day cumulative sums, O(days).

Calibration: the smooth part of the demand is normalised per day so that a year sums to
``annual_kwh`` (minus the appliance events' expected energy, which is known analytically);
gas is split into hot water (flat through the year) and heating in proportion to heating
degree days; PV is scaled to a typical Dutch yield of 875 kWh per kWp per year.

Power values are in W, energies in Wh, instants are aware datetimes (UTC or any zone).
Behaviour (waking, cooking) follows local time in ``tz``.
"""

from __future__ import annotations

import math
import random
from array import array
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

__all__ = ["PV_YIELD_KWH_PER_KWP", "HouseholdProfile"]

MINUTES_PER_DAY = 1440
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_YEAR_DAYS = 365.25
PV_YIELD_KWH_PER_KWP = 875.0  # typical annual yield in the Netherlands
_HOT_WATER_SHARE = 0.18  # of annual gas: showers and taps, flat through the year
_REFERENCE_ANNUAL_KWH = 2700.0  # the household the appliance event table describes
_CACHE_DAYS = 64


class ExtraLoad(Protocol):
    """A load behind the household's meter that the household model does not draw itself."""

    def power_w(self, t: datetime) -> float: ...

    def energy_wh(self, t0: datetime, t1: datetime) -> float: ...


@dataclass(frozen=True, slots=True)
class _Appliance:
    name: str
    phases: tuple[tuple[int, float], ...]  # (minutes, W) run one after the other
    count: tuple[int, int]  # uniform number of uses per day, inclusive
    probability: float  # chance that the appliance is used on a day at all
    window: tuple[int, int]  # local minutes of day between which a use may start

    @property
    def expected_daily_wh(self) -> float:
        per_use = sum(minutes * watts for minutes, watts in self.phases) / 60
        return self.probability * (self.count[0] + self.count[1]) / 2 * per_use


_APPLIANCES = (
    _Appliance("kettle", ((3, 2000.0),), (1, 6), 1.0, (6 * 60 + 30, 22 * 60 + 30)),
    _Appliance("microwave", ((4, 1000.0),), (0, 3), 1.0, (7 * 60, 21 * 60)),
    _Appliance("washing machine", ((15, 2000.0), (45, 250.0), (10, 500.0)), (1, 1), 0.6, (8 * 60, 20 * 60)),
    _Appliance("dishwasher", ((25, 1800.0), (60, 100.0)), (1, 1), 0.55, (19 * 60, 22 * 60)),
    _Appliance("oven", ((10, 2500.0), (40, 1200.0)), (1, 1), 0.35, (17 * 60, 19 * 60)),
    _Appliance("tumble dryer", ((60, 2200.0),), (1, 1), 0.2, (9 * 60, 21 * 60)),
)
_APPLIANCE_DAILY_WH = sum(a.expected_daily_wh for a in _APPLIANCES)


def _electric_shape(hour: float, weekend: bool) -> float:
    """Relative demand by local hour: night low, morning and evening peaks."""
    if hour < 6:
        return 0.55
    if weekend:
        if hour < 8:
            return 0.8
        if hour < 11:
            return 1.6
        if hour < 17:
            return 1.3
    else:
        if hour < 7:
            return 1.0
        if hour < 9:
            return 1.6
        if hour < 16:
            return 0.85
        if hour < 17:
            return 1.2
    if hour < 22:
        return 2.0
    if hour < 23:
        return 1.3
    return 0.8


def _heating_shape(hour: float) -> float:
    """Thermostat programme: night set-back, morning warm-up, evening comfort."""
    if hour < 6 or hour >= 23:
        return 0.3
    if hour < 9:
        return 2.0
    if hour < 16:
        return 0.8
    if hour < 22:
        return 1.4
    return 0.8


def _hot_water_shape(hour: float) -> float:
    if 6.5 <= hour < 8.5:
        return 3.0
    if 18 <= hour < 21:
        return 1.0
    return 0.1


def _season(doy: int) -> float:
    """Electric demand is ~18 % above average in early January (lighting), below in July."""
    return 1.0 + 0.18 * math.cos(2 * math.pi * (doy - 10) / _YEAR_DAYS)


def _heating_degrees(doy: int) -> float:
    """Heating degree-days (base 16 °C) of a typical Dutch year's daily mean temperature."""
    mean_temp = 10.5 - 7.5 * math.cos(2 * math.pi * (doy - 20) / _YEAR_DAYS)
    return max(0.0, 16.0 - mean_temp)


_HDD_YEAR = sum(_heating_degrees(d) for d in range(1, 366))


def _day_length_h(doy: int) -> float:
    """Daylight hours at 52° N: ~7.8 h at the winter solstice, ~16.6 h at the summer one."""
    return 12.0 + 4.4 * math.sin(2 * math.pi * (doy - 80) / _YEAR_DAYS)


def _sun_strength(doy: int) -> float:
    """Clear-sky peak output relative to the panel rating, low sun in winter."""
    return 0.55 + 0.45 * math.sin(2 * math.pi * (doy - 80) / _YEAR_DAYS)


_PV_SHAPE_EXPONENT = 1.3
_SOLAR_NOON_UTC_H = 11.67  # 5.3° E: local solar noon is ~20 minutes before 12:00 UTC
_PV_MEAN_DAY_CLOUD = 0.625  # mean of uniform(0.25, 1.0)
_PV_MEAN_CLOUD_10MIN = 0.8  # mean of uniform(0.6, 1.0)
# ∫0..1 sin(πx)^1.3 dx, by the midpoint rule (the bell's area per hour of daylight).
_PV_BELL_AREA = sum(math.sin(math.pi * (i + 0.5) / 2000) ** _PV_SHAPE_EXPONENT for i in range(2000)) / 2000
_PV_CLEAR_YEAR_H = sum(_sun_strength(d) * _day_length_h(d) * _PV_BELL_AREA for d in range(1, 366))
_PV_SCALE = PV_YIELD_KWH_PER_KWP / (_PV_CLEAR_YEAR_H * _PV_MEAN_DAY_CLOUD * _PV_MEAN_CLOUD_10MIN)


@dataclass(frozen=True, slots=True)
class _Day:
    """Per-minute arrays for one UTC day, plus cumulative energies (1441 entries, Wh)."""

    load_w: array
    pv_w: array
    gas_w: array
    import_cum: array
    export_cum: array
    gas_cum: array


class HouseholdProfile:
    """Minute-resolution demand of one household, deterministic for a seed.

    ``annual_kwh`` is the electricity the home uses in a year (before PV), ``annual_gas_kwh``
    the gas it burns (heating and hot water, in kWh of gas), ``pv_kwp`` its rooftop PV rating.
    """

    def __init__(
        self,
        seed: int,
        annual_kwh: float = 2700,
        annual_gas_kwh: float = 11500,
        pv_kwp: float = 0.0,
        *,
        tz: ZoneInfo = ZoneInfo("Europe/Amsterdam"),  # noqa: B008 - ZoneInfo instances are cached, immutable
    ) -> None:
        if annual_kwh <= 0 or annual_gas_kwh < 0 or pv_kwp < 0:
            raise ValueError("annual_kwh must be positive, annual_gas_kwh and pv_kwp not negative")
        self.seed = seed
        self.annual_kwh = float(annual_kwh)
        self.annual_gas_kwh = float(annual_gas_kwh)
        self.pv_kwp = float(pv_kwp)
        self.tz = tz
        # Bigger households use their appliances more: scale the event power with the annual
        # figure, so the events keep their share (~30 %) of the total at any size.
        self._event_scale = self.annual_kwh / _REFERENCE_ANNUAL_KWH
        self._days: OrderedDict[int, _Day] = OrderedDict()
        # Loads plugged in behind the meter whose demand is not this model's (a smart plug the
        # hub switches): the meter registers them too (imported: not netted against PV).
        self.extra_loads: list[ExtraLoad] = []

    # ---- point values ---------------------------------------------------------------------

    def power_w(self, t: datetime) -> float:
        """Electric demand of the home in W at instant ``t`` (constant within each minute)."""
        day, minute = self._locate(t)
        return day.load_w[minute] + sum(x.power_w(t) for x in self.extra_loads)

    def pv_w(self, t: datetime) -> float:
        """PV generation in W at ``t`` (0 without panels)."""
        day, minute = self._locate(t)
        return day.pv_w[minute]

    def gas_w(self, t: datetime) -> float:
        """Gas burnt, as thermal input power in W, at ``t``."""
        day, minute = self._locate(t)
        return day.gas_w[minute]

    def net_import_w(self, t: datetime) -> float:
        """What the meter sees: demand net of PV, positive = import, negative = export."""
        day, minute = self._locate(t)
        return day.load_w[minute] - day.pv_w[minute] + sum(x.power_w(t) for x in self.extra_loads)

    # ---- integration ----------------------------------------------------------------------

    def energy_wh(self, t0: datetime, t1: datetime) -> tuple[float, float, float]:
        """``(import_wh, export_wh, gas_wh)`` between ``t0`` and ``t1``.

        Import and export are netted per minute against PV (import = max(load - pv, 0),
        export = max(pv - load, 0)), as a meter would register them.
        """
        if t1 < t0:
            raise ValueError("energy_wh needs t0 <= t1")
        x0, x1 = _minutes(t0), _minutes(t1)
        d0, d1 = int(x0 // MINUTES_PER_DAY), int(x1 // MINUTES_PER_DAY)
        imp = exp = gas = 0.0
        for d in range(d0, d1 + 1):
            day = self._day(d)
            lo = x0 - d * MINUTES_PER_DAY if d == d0 else 0.0
            hi = x1 - d * MINUTES_PER_DAY if d == d1 else float(MINUTES_PER_DAY)
            if hi <= lo:
                continue
            imp += _cum_at(day.import_cum, hi) - _cum_at(day.import_cum, lo)
            exp += _cum_at(day.export_cum, hi) - _cum_at(day.export_cum, lo)
            gas += _cum_at(day.gas_cum, hi) - _cum_at(day.gas_cum, lo)
        imp += sum(x.energy_wh(t0, t1) for x in self.extra_loads)
        return imp, exp, gas

    # ---- per-day model --------------------------------------------------------------------

    def _locate(self, t: datetime) -> tuple[_Day, int]:
        x = _minutes(t)
        d = int(x // MINUTES_PER_DAY)
        return self._day(d), int(x - d * MINUTES_PER_DAY)

    def _day(self, ordinal: int) -> _Day:
        day = self._days.get(ordinal)
        if day is None:
            day = self._build_day(ordinal)
            self._days[ordinal] = day
            if len(self._days) > _CACHE_DAYS:
                self._days.popitem(last=False)
        else:
            self._days.move_to_end(ordinal)
        return day

    def _rng(self, ordinal: int, stream: str) -> random.Random:
        # A string seed goes through SHA-512: the same numbers in every process and Python
        # build, unlike hash()-based seeding.
        return random.Random(f"{self.seed}:{ordinal}:{stream}")

    def _build_day(self, ordinal: int) -> _Day:
        start = _EPOCH + timedelta(days=ordinal)
        doy = start.timetuple().tm_yday
        # Local clock minute and weekend flag for every UTC minute. The zone offset changes only
        # on whole UTC hours (EU rules: 01:00 UTC), so one lookup per hour is exact.
        local_minute = array("i", bytes(4 * MINUTES_PER_DAY))
        weekend = bytearray(MINUTES_PER_DAY)
        for h in range(24):
            local = (start + timedelta(hours=h)).astimezone(self.tz)
            base = local.hour * 60 + local.minute
            is_weekend = 1 if local.weekday() >= 5 else 0
            for m in range(h * 60, h * 60 + 60):
                local_minute[m] = (base + m - h * 60) % MINUTES_PER_DAY
                weekend[m] = is_weekend

        load = self._build_load(ordinal, doy, local_minute, weekend)
        pv = self._build_pv(ordinal, doy)
        gas = self._build_gas(ordinal, doy, local_minute)

        import_cum = array("d", [0.0]) * (MINUTES_PER_DAY + 1)
        export_cum = array("d", [0.0]) * (MINUTES_PER_DAY + 1)
        gas_cum = array("d", [0.0]) * (MINUTES_PER_DAY + 1)
        imp = exp = g = 0.0
        for m in range(MINUTES_PER_DAY):
            net = load[m] - pv[m]
            if net >= 0:
                imp += net / 60
            else:
                exp -= net / 60
            g += gas[m] / 60
            import_cum[m + 1] = imp
            export_cum[m + 1] = exp
            gas_cum[m + 1] = g
        return _Day(load, pv, gas, import_cum, export_cum, gas_cum)

    def _build_load(self, ordinal: int, doy: int, local_minute: array, weekend: bytearray) -> array:
        rng = self._rng(ordinal, "load")
        # The smooth part: shape by local hour, a fridge cycling 15 minutes in 45, per-minute
        # jitter; normalised so that the day carries its share of the annual energy.
        shape = [0.0] * MINUTES_PER_DAY
        for m in range(MINUTES_PER_DAY):
            lm = local_minute[m]
            fridge = 0.25 if lm % 45 < 15 else 0.0
            shape[m] = (_electric_shape(lm / 60, bool(weekend[m])) + fridge) * rng.uniform(0.92, 1.08)
        smooth_wh = (
            (self.annual_kwh * 1000 / 365 - _APPLIANCE_DAILY_WH * self._event_scale)
            * _season(doy)
            * rng.uniform(0.85, 1.15)
        )
        k = 60 * smooth_wh / sum(shape)
        load = array("d", [s * k for s in shape])

        # Appliance events start at a local minute; those that would start on the far side of
        # this UTC day (local midnight is 22:00 or 23:00 UTC) are simply not placed today.
        utc_of_local = {lm: m for m, lm in enumerate(local_minute)}
        for appliance in _APPLIANCES:
            if rng.random() >= appliance.probability:
                continue
            for _ in range(rng.randint(*appliance.count)):
                begin = utc_of_local.get(rng.randint(*appliance.window))
                if begin is None:
                    continue
                m = begin
                for minutes, watts in appliance.phases:
                    for _ in range(minutes):
                        if m >= MINUTES_PER_DAY:
                            break
                        load[m] += watts * self._event_scale
                        m += 1
        return load

    def _build_pv(self, ordinal: int, doy: int) -> array:
        pv = array("d", bytes(8 * MINUTES_PER_DAY))
        if self.pv_kwp == 0:
            return pv
        rng = self._rng(ordinal, "pv")
        day_cloud = rng.uniform(0.25, 1.0)
        clouds = [rng.uniform(0.6, 1.0) for _ in range(MINUTES_PER_DAY // 10)]
        length_min = _day_length_h(doy) * 60
        sunrise = _SOLAR_NOON_UTC_H * 60 - length_min / 2
        peak_w = self.pv_kwp * 1000 * _sun_strength(doy) * _PV_SCALE * day_cloud
        cap_w = self.pv_kwp * 1000  # an inverter does not deliver more than the panels' rating
        first, last = max(0, int(sunrise)), min(MINUTES_PER_DAY, int(sunrise + length_min) + 1)
        for m in range(first, last):
            x = (m + 0.5 - sunrise) / length_min
            if 0 < x < 1:
                w = peak_w * math.sin(math.pi * x) ** _PV_SHAPE_EXPONENT * clouds[m // 10]
                pv[m] = min(w, cap_w)
        return pv

    def _build_gas(self, ordinal: int, doy: int, local_minute: array) -> array:
        gas = array("d", bytes(8 * MINUTES_PER_DAY))
        if self.annual_gas_kwh == 0:
            return gas
        rng = self._rng(ordinal, "gas")
        heating_wh = (
            self.annual_gas_kwh * 1000 * (1 - _HOT_WATER_SHARE) * _heating_degrees(doy) / _HDD_YEAR
        ) * rng.uniform(0.8, 1.2)
        hot_water_wh = self.annual_gas_kwh * 1000 * _HOT_WATER_SHARE / 365 * rng.uniform(0.7, 1.3)
        heat_shape = [_heating_shape(local_minute[m] / 60) for m in range(MINUTES_PER_DAY)]
        water_shape = [_hot_water_shape(local_minute[m] / 60) for m in range(MINUTES_PER_DAY)]
        kh = 60 * heating_wh / sum(heat_shape)
        kw = 60 * hot_water_wh / sum(water_shape)
        for m in range(MINUTES_PER_DAY):
            gas[m] = heat_shape[m] * kh + water_shape[m] * kw
        return gas


def _minutes(t: datetime) -> float:
    if t.tzinfo is None:
        raise ValueError("HouseholdProfile needs timezone-aware datetimes")
    delta = t - _EPOCH
    # Integer arithmetic first so that whole minutes land exactly on array boundaries.
    return (delta.days * 86400 + delta.seconds) / 60 + delta.microseconds / 60e6


def _cum_at(cum: array, x: float) -> float:
    """Cumulative energy at fractional minute ``x`` of the day (constant power within a minute)."""
    i = int(x)
    if i >= MINUTES_PER_DAY:
        return cum[MINUTES_PER_DAY]
    return cum[i] + (x - i) * (cum[i + 1] - cum[i])
