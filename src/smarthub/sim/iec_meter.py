"""A simulated IEC 62056-21 mode C electricity meter (optical port), driven by a household profile.

``respond(request, t)`` is the meter's side of the sign-on (IEC 62056-21:2002, clause 6.3
"Protocol mode C"): to a request message ``/?<address>!`` addressed to it (or to anyone) it
answers with its identification message; to the acknowledgement/option select
``ACK 0 Z 0`` (data readout) it answers with the data message, registers advanced to ``t``.
Anything else it ignores (returns ``b""``), as a meter stays silent on what it does not
understand. The baud-rate switch is the transport's business and is not modelled here.

Registers are exact integers: energy is accumulated in integer mWh, so no float error builds
up however often the meter is read, and ``registers`` gives the tests the exact values.
Two import rates as a GB Economy 7 meter: rate 2 (night) from 00:30 to 07:30 local time,
rate 1 (day) otherwise; 1.8.0 is their sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from smarthub.meters.errors import DecodeError
from smarthub.meters.iec62056_21 import (
    LONDON,
    DataSet,
    IecValue,
    decode_option_select,
    decode_request,
    encode_identification,
    encode_readout,
)
from smarthub.sim.load_profile import HouseholdProfile

__all__ = ["IecMeterSimulator", "IecRegisters", "rate_at"]

_NIGHT_FROM = time(0, 30)
_NIGHT_UNTIL = time(7, 30)


@dataclass(frozen=True, slots=True)
class IecRegisters:
    time: datetime
    import_rate1_wh: int  # 1.8.1 (day)
    import_rate2_wh: int  # 1.8.2 (night)
    export_wh: int  # 2.8.0
    import_w: int  # 1.7.0
    export_w: int  # 2.7.0

    @property
    def import_wh(self) -> int:  # 1.8.0
        return self.import_rate1_wh + self.import_rate2_wh


def rate_at(t: datetime, tz: ZoneInfo) -> int:
    """1 (day) or 2 (night, 00:30-07:30 local)."""
    clock = t.astimezone(tz).time()
    return 2 if _NIGHT_FROM <= clock < _NIGHT_UNTIL else 1


def _next_rate_boundary(t: datetime, tz: ZoneInfo) -> datetime:
    day = t.astimezone(tz).date()
    for days, clock in ((0, _NIGHT_FROM), (0, _NIGHT_UNTIL), (1, _NIGHT_FROM)):
        candidate = datetime.combine(day + timedelta(days=days), clock, tzinfo=tz).astimezone(UTC)
        if candidate > t:
            return candidate
    raise AssertionError("unreachable: 00:30 tomorrow is always later")  # pragma: no cover


def _kwh(wh: int) -> IecValue:
    return IecValue(f"{wh // 1000:06d}.{wh % 1000:03d}", "kWh")


def _kw(w: int) -> IecValue:
    return IecValue(f"{w // 1000:02d}.{w % 1000:03d}", "kW")


class IecMeterSimulator:
    """One home's IEC 62056-21 meter on simulated time (see the module docstring)."""

    def __init__(
        self,
        serial: str,
        manufacturer: str,
        profile: HouseholdProfile,
        start: datetime,
        tz: ZoneInfo = LONDON,
        *,
        model: str = "SIM62056",
        baud: str = "5",
        initial_import_wh: int = 3_000_000,
        initial_export_wh: int = 0,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if min(initial_import_wh, initial_export_wh) < 0:
            raise ValueError("initial register values cannot be negative")
        if not serial or len(serial) > 32 or not serial.isalnum():
            raise ValueError("the serial (also the device address) is 1-32 letters or digits")
        self.serial = serial
        self.manufacturer = manufacturer
        self.profile = profile
        self.tz = tz
        self.identification_message = encode_identification(manufacturer, baud, model)
        self._time = start.astimezone(UTC)
        self._initial = (
            initial_import_wh // 2,
            initial_import_wh - initial_import_wh // 2,
            initial_export_wh,
        )
        self._mwh = [0, 0, 0]  # rate 1, rate 2, export
        self._registers = self._snapshot()

    @property
    def registers(self) -> IecRegisters:
        return self._registers

    def advance(self, t: datetime) -> IecRegisters:
        if t.tzinfo is None:
            raise ValueError("t must be timezone-aware")
        t = t.astimezone(UTC)
        if t < self._time:
            raise ValueError(f"meter time cannot go backwards: {t.isoformat()} < {self._time.isoformat()}")
        a = self._time
        while a < t:
            b = min(t, _next_rate_boundary(a, self.tz))
            imp, exp, _ = self.profile.energy_wh(a, b)
            self._mwh[rate_at(a, self.tz) - 1] += round(imp * 1000)
            self._mwh[2] += round(exp * 1000)
            a = b
        self._time = t
        self._registers = self._snapshot()
        return self._registers

    def respond(self, request: bytes, t: datetime) -> bytes:
        """The meter's answer to one message from the hub (``b""`` for none)."""
        if request[:2] == b"/?":
            try:
                address = decode_request(request)
            except DecodeError:
                return b""
            return self.identification_message if address in ("", self.serial) else b""
        if request[:1] == b"\x06":
            try:
                option = decode_option_select(request)
            except DecodeError:
                return b""
            if option.protocol_control != "0" or option.mode != "0":
                return b""  # only normal-procedure data readout is simulated
            return self.readout_at(t)
        return b""

    def readout_at(self, t: datetime) -> bytes:
        """Advance to ``t`` and return the data message."""
        r = self.advance(t)
        local = r.time.astimezone(self.tz)
        v = 238.0 + ((int(r.time.timestamp()) // 60 * 7919 + self.profile.seed) % 60) / 10
        amps = (r.import_w or r.export_w) / v
        lines = [
            DataSet("0.0.0", (IecValue(self.serial),)),
            DataSet("0.9.1", (IecValue(local.strftime("%H:%M:%S")),)),
            DataSet("0.9.2", (IecValue(local.strftime("%y%m%d")),)),
            DataSet("1.8.0", (_kwh(r.import_wh),)),
            DataSet("1.8.1", (_kwh(r.import_rate1_wh),)),
            DataSet("1.8.2", (_kwh(r.import_rate2_wh),)),
            DataSet("2.8.0", (_kwh(r.export_wh),)),
            DataSet("1.7.0", (_kw(r.import_w),)),
            DataSet("2.7.0", (_kw(r.export_w),)),
            DataSet("32.7.0", (IecValue(f"{v:05.1f}", "V"),)),
            DataSet("31.7.0", (IecValue(f"{amps:06.2f}", "A"),)),
            DataSet("F.F", (IecValue("00000000"),)),
        ]
        return encode_readout(lines)

    def _snapshot(self) -> IecRegisters:
        net = self.profile.net_import_w(self._time)
        r1, r2, ex = (init + mwh // 1000 for init, mwh in zip(self._initial, self._mwh, strict=True))
        return IecRegisters(self._time, r1, r2, ex, max(0, round(net)), max(0, round(-net)))
