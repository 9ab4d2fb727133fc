"""A simulated wired M-Bus slave (water, gas, heat or electricity meter) driven by a household profile.

``respond(request, t)`` is the slave's side of EN 13757-2/-3: it answers SND_NKE with the single
character E5, REQ_UD2 with an RSP_UD long frame (CI 0x72, long header), honours the frame
count bit (same FCB = repeat the last telegram, toggled FCB = next telegram), splits its
records over several telegrams when ``records_per_telegram`` is set (DIF 0x1F on all but the
last: the multi-telegram readout), and takes part in secondary addressing (SND_UD to 0xFD,
CI 0x52, with wildcards; SND_NKE to 0xFD deselects). Garbled or foreign requests get no answer,
as on the bus.

Registers are exact integers advancing with the profile, and ``registers`` gives tests the
values the next RSP_UD must decode to:

* water: litres (= dm3) from a deterministic draw of ~140 l per person per day in morning and
  evening peaks (:class:`WaterDraw`, seeded from the profile's seed);
* gas: dm3 from the profile's gas energy and the calorific value used by the DSMR simulator;
* heat: energy delivered (90 % of the gas burnt) in Wh, the heating circuit's volume in
  litres at a 20 K spread (1.163 Wh per litre and kelvin), flow and return temperatures;
* electricity: imported Wh and the instantaneous import power.

Time must not go backwards.
"""

from __future__ import annotations

import random
from array import array
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from smarthub.meters import mbus
from smarthub.meters.errors import DecodeError
from smarthub.sim.dsmr_meter import GAS_KWH_PER_M3
from smarthub.sim.load_profile import HouseholdProfile

__all__ = ["MEDIA", "MBusMeterSimulator", "MBusRegisters", "WaterDraw"]

MEDIA = {
    "electricity": 0x02,
    "gas": 0x03,
    "heat": 0x04,
    "warm_water": 0x06,
    "water": 0x07,
    "hot_water": 0x15,
    "cold_water": 0x16,
}
WATER_MEDIA = frozenset({"water", "warm_water", "hot_water", "cold_water"})
LITRES_PER_PERSON_DAY = 140
_HEAT_EFFICIENCY_PERMILLE = 900  # heat delivered per gas burnt
_HEAT_WH_PER_L_K = 1.163  # water's heat capacity, Wh per litre and kelvin
_HEAT_SPREAD_K = 20
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _water_shape(hour: int) -> float:
    if 6 <= hour < 9:
        return 4.0
    if 18 <= hour < 22:
        return 3.0
    if 9 <= hour < 18:
        return 0.8
    if hour >= 22:
        return 0.4
    return 0.05


class WaterDraw:
    """Deterministic per-minute water use in millilitres (integers), per UTC day."""

    def __init__(self, seed: int, persons: int = 2, tz: ZoneInfo | None = None) -> None:
        self.seed = seed
        self.persons = persons
        self.tz = tz or ZoneInfo("Europe/Amsterdam")
        self._days: OrderedDict[int, array] = OrderedDict()

    def _day(self, ordinal: int) -> array:
        cum = self._days.get(ordinal)
        if cum is not None:
            self._days.move_to_end(ordinal)
            return cum
        rng = random.Random(f"{self.seed}:{ordinal}:water")
        start = _EPOCH + timedelta(days=ordinal)
        weights = []
        for h in range(24):
            local_hour = (start + timedelta(hours=h)).astimezone(self.tz).hour
            s = _water_shape(local_hour)
            for _ in range(60):
                # Draw-offs: most minutes nothing, some a tap, a few a shower.
                r = rng.random()
                weights.append(s * (8.0 if r < 0.03 else 1.0 if r < 0.25 else 0.0))
        total_ml = int(self.persons * LITRES_PER_PERSON_DAY * 1000 * rng.uniform(0.8, 1.2))
        wsum = sum(weights) or 1.0
        cum = array("q", [0]) * 1441
        acc = 0
        for m, w in enumerate(weights):
            acc += int(total_ml * w / wsum)
            cum[m + 1] = acc
        self._days[ordinal] = cum
        if len(self._days) > 8:
            self._days.popitem(last=False)
        return cum

    def _at(self, t: datetime) -> tuple[int, int]:
        d = t - _EPOCH
        ordinal = d.days
        micro = d.seconds * 1_000_000 + d.microseconds
        minute, rest = divmod(micro, 60_000_000)
        cum = self._day(ordinal)
        ml = cum[minute] + (cum[minute + 1] - cum[minute]) * rest // 60_000_000
        return ordinal, ml

    def between(self, t0: datetime, t1: datetime) -> int:
        """Millilitres drawn between ``t0`` and ``t1`` (exact integers, additive over splits)."""
        if t1 < t0:
            raise ValueError("between needs t0 <= t1")
        d0, ml0 = self._at(t0)
        d1, ml1 = self._at(t1)
        total = ml1 - ml0
        for d in range(d0, d1):
            total += self._day(d)[1440]
        return total

    def rate_l_h(self, t: datetime) -> int:
        """Flow in litres per hour during the minute containing ``t``."""
        d = t - _EPOCH
        minute = (d.seconds * 1_000_000 + d.microseconds) // 60_000_000
        cum = self._day(d.days)
        return (cum[minute + 1] - cum[minute]) * 60 // 1000


@dataclass(frozen=True, slots=True)
class MBusRegisters:
    time: datetime
    volume_dm3: int  # water / gas volume, heating circuit volume for heat meters
    energy_wh: int  # heat delivered or electricity imported (0 for water / gas)
    power_w: int
    flow_l_h: int
    flow_temp_dc: int  # 0.1 °C
    return_temp_dc: int  # 0.1 °C
    access_no: int


class _Registers:
    """Shared register engine for the wired and the wireless simulators."""

    def __init__(
        self,
        medium: str,
        profile: HouseholdProfile,
        start: datetime,
        *,
        persons: int,
        initial_volume_dm3: int,
        initial_energy_wh: int,
    ) -> None:
        if medium not in MEDIA:
            raise ValueError(f"medium is one of {sorted(MEDIA)}, got {medium!r}")
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self.medium = medium
        self.profile = profile
        self._time = start.astimezone(UTC)
        self._water = WaterDraw(profile.seed, persons, profile.tz)
        self._initial_volume = initial_volume_dm3
        self._initial_energy = initial_energy_wh
        self._ml = 0  # volume since start: ml (water) or cm3 (gas) or ml (heat circuit)
        self._mwh = 0  # energy since start, mWh
        self.access_no = 0

    @property
    def time(self) -> datetime:
        return self._time

    def advance(self, t: datetime) -> None:
        if t.tzinfo is None:
            raise ValueError("t must be timezone-aware")
        t = t.astimezone(UTC)
        if t < self._time:
            raise ValueError(f"meter time cannot go backwards: {t.isoformat()} < {self._time.isoformat()}")
        if self.medium in WATER_MEDIA:
            self._ml += self._water.between(self._time, t)
        elif self.medium == "gas":
            _, _, gas_wh = self.profile.energy_wh(self._time, t)
            self._ml += round(gas_wh * 1000 / GAS_KWH_PER_M3)
        elif self.medium == "heat":
            _, _, gas_wh = self.profile.energy_wh(self._time, t)
            mwh = round(gas_wh * _HEAT_EFFICIENCY_PERMILLE)
            self._mwh += mwh
            self._ml += round(mwh / (_HEAT_WH_PER_L_K * _HEAT_SPREAD_K))
        else:  # electricity
            imp, _, _ = self.profile.energy_wh(self._time, t)
            self._mwh += round(imp * 1000)
        self._time = t

    def snapshot(self) -> MBusRegisters:
        t = self._time
        volume = self._initial_volume + self._ml // 1000
        energy = self._initial_energy + self._mwh // 1000
        power = flow = 0
        flow_temp = return_temp = 0
        if self.medium in WATER_MEDIA:
            flow = self._water.rate_l_h(t)
        elif self.medium == "gas":
            flow = round(self.profile.gas_w(t) * 1000 / (GAS_KWH_PER_M3 * 1000))  # l/h
        elif self.medium == "heat":
            power = round(self.profile.gas_w(t) * _HEAT_EFFICIENCY_PERMILLE / 1000)
            flow = round(power / (_HEAT_WH_PER_L_K * _HEAT_SPREAD_K))
            flow_temp = 550 + min(200, power // 100)
            return_temp = flow_temp - (_HEAT_SPREAD_K * 10 if power else 0)
        else:
            power = max(0, round(self.profile.net_import_w(t)))
        return MBusRegisters(t, volume, energy, power, flow, flow_temp, return_temp, self.access_no)

    def local_time(self) -> tuple[datetime, bool]:
        local = self._time.astimezone(self.profile.tz)
        return local.replace(tzinfo=None, second=0, microsecond=0), bool(local.dst())


def register_records(medium: str, r: MBusRegisters, local: datetime, summer: bool) -> list[mbus.RecordSpec]:
    """The records a meter of ``medium`` reports for registers ``r`` (EN 13757-3 codings)."""
    spec = mbus.RecordSpec
    recs: list[mbus.RecordSpec] = []
    if medium in ("heat", "electricity"):
        recs.append(spec(b"\x03", r.energy_wh, "int32"))  # energy, Wh
    if medium != "electricity":
        recs.append(spec(b"\x13", r.volume_dm3, "int32"))  # volume, 10^-3 m3 = litres
    if medium in ("heat", "electricity"):
        recs.append(spec(b"\x2b", r.power_w, "int24"))  # power, W
    if medium != "electricity":
        recs.append(spec(b"\x3b", r.flow_l_h, "int24"))  # volume flow, 10^-3 m3/h
    if medium == "heat":
        recs.append(spec(b"\x5a", r.flow_temp_dc, "int16"))  # flow temperature, 0.1 °C
        recs.append(spec(b"\x5e", r.return_temp_dc, "int16"))  # return temperature, 0.1 °C
        recs.append(spec(b"\x62", r.flow_temp_dc - r.return_temp_dc, "int16"))  # difference, 0.1 K
    recs.append(spec(b"\x6d", mbus.encode_datetime_f(local, summer), "int32"))  # date-time, type F
    recs.append(spec(b"\xfd\x17", 0, "int16"))  # error flags
    return recs


class MBusMeterSimulator:
    """One wired M-Bus slave at ``primary_address`` with secondary address ``manufacturer``+``ident``."""

    def __init__(
        self,
        primary_address: int,
        ident: int,
        manufacturer: str,
        medium: str,
        profile: HouseholdProfile,
        start: datetime,
        *,
        version: int = 0x01,
        records_per_telegram: int | None = None,
        persons: int = 2,
        initial_volume_dm3: int = 0,
        initial_energy_wh: int = 0,
    ) -> None:
        if not 0 <= primary_address <= 250:
            raise ValueError("primary addresses are 0..250")
        if records_per_telegram is not None and records_per_telegram < 1:
            raise ValueError("records_per_telegram must be at least 1")
        mbus.encode_manufacturer(manufacturer)  # fail now on a bad code
        self.primary_address = primary_address
        self.ident = ident
        self.manufacturer = manufacturer
        self.medium = medium
        self.device_type = MEDIA.get(medium, 0)
        self.version = version
        self.records_per_telegram = records_per_telegram
        self._reg = _Registers(
            medium,
            profile,
            start,
            persons=persons,
            initial_volume_dm3=initial_volume_dm3,
            initial_energy_wh=initial_energy_wh,
        )
        self._registers = self._reg.snapshot()
        self.selected = False
        self._last_fcb: bool | None = None
        self._last_answer: bytes | None = None
        self._chunks: list[list[mbus.RecordSpec]] = []
        self._next_chunk = 0

    @property
    def secondary_address(self) -> str:
        return mbus.meter_id(self.manufacturer, self.ident, b"")

    @property
    def registers(self) -> MBusRegisters:
        """The register values the last cycle of telegrams (or ``start``) carried."""
        return self._registers

    def advance(self, t: datetime) -> MBusRegisters:
        self._reg.advance(t)
        self._registers = self._reg.snapshot()
        return self._registers

    # ---- bus side -------------------------------------------------------------------------

    def _addressed(self, a: int) -> bool:
        return a in (self.primary_address, mbus.ADDR_TEST) or (a == mbus.ADDR_SECONDARY and self.selected)

    def _matches(self, payload: bytes) -> bool:
        if len(payload) != 8:
            return False
        want = mbus._id_bcd_with_wildcards(self.ident)
        for got_b, want_b in zip(payload[:4], want, strict=True):
            for shift in (0, 4):
                nib = got_b >> shift & 0x0F
                if nib != 0x0F and nib != want_b >> shift & 0x0F:
                    return False
        mfr = payload[4] | payload[5] << 8
        if mfr != 0xFFFF and mfr != mbus.encode_manufacturer(self.manufacturer):
            return False
        if payload[6] != 0xFF and payload[6] != self.version:
            return False
        return payload[7] == 0xFF or payload[7] == self.device_type

    def respond(self, request: bytes, t: datetime) -> bytes | None:
        """The slave's answer to one request at time ``t``, or ``None`` (no answer)."""
        try:
            frame = mbus.decode_frame(request)
        except DecodeError:
            return None
        self._reg.advance(t)
        if frame.kind == "short" and frame.c & 0xDF == mbus.C_SND_NKE:
            if frame.a == mbus.ADDR_SECONDARY and self.selected:
                self.selected = False
                self._reset()
                return mbus.encode_ack()
            if frame.a == mbus.ADDR_BROADCAST:
                self._reset()
                return None
            if frame.a in (self.primary_address, mbus.ADDR_TEST):
                self._reset()
                return mbus.encode_ack()
            return None
        if frame.kind == "short" and frame.c & 0xDF == mbus.C_REQ_UD2:
            if not self._addressed(frame.a):
                return None
            fcb = bool(frame.c & 0x20)
            if self._last_answer is not None and fcb == self._last_fcb:
                return self._last_answer  # the master did not get it: repeat
            self._last_fcb = fcb
            self._last_answer = self._next_telegram()
            return self._last_answer
        if (
            frame.kind == "long"
            and frame.c & 0xDF == mbus.C_SND_UD
            and frame.a == mbus.ADDR_SECONDARY
            and frame.ci == mbus.CI_SELECT
        ):
            self.selected = self._matches(frame.data)
            return mbus.encode_ack() if self.selected else None
        return None

    def _reset(self) -> None:
        self._last_fcb = None
        self._last_answer = None
        self._next_chunk = 0
        self._chunks = []

    def _next_telegram(self) -> bytes:
        self._reg.access_no = (self._reg.access_no + 1) & 0xFF
        if self._next_chunk == 0 or not self._chunks:
            self._registers = self._reg.snapshot()
            local, summer = self._reg.local_time()
            records = register_records(self.medium, self._registers, local, summer)
            n = self.records_per_telegram or len(records)
            self._chunks = [records[i : i + n] for i in range(0, len(records), n)]
            self._next_chunk = 0
        i = self._next_chunk
        more = i + 1 < len(self._chunks)
        self._next_chunk = (i + 1) % len(self._chunks)
        return mbus.encode_rsp_ud(
            self.primary_address,
            self.ident,
            self.manufacturer,
            self.version,
            self.device_type,
            self._reg.access_no,
            self._chunks[i],
            more_follows=more,
        )
