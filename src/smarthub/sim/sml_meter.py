"""A simulated German basic meter (eHZ / "moderne Messeinrichtung") pushing SML on its optical
interface, driven by a household profile.

Such meters send an SML file unprompted every one to four seconds (9600 baud 8N1): an
OpenResponse, a GetListResponse with the server id, the device id ``1-0:96.1.0``, import
``1-0:1.8.0`` and export ``1-0:2.8.0`` in Wh with scaler -1 (0.1 Wh), and the current power
``1-0:16.7.0`` in W; then a CloseResponse. ``file_at(t)`` is the file the meter sends at ``t``
(the register values advanced to ``t``), byte for byte as :func:`smarthub.meters.sml.encode_file`
builds it: start/end escapes, padding and CRC16/X-25.

Registers are exact integers (mWh), as in the other simulators, so tests can compare exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from smarthub.meters.dlms.cosem import UNIT_CODES
from smarthub.meters.sml import encode_file
from smarthub.model.obis import ObisCode
from smarthub.sim.load_profile import HouseholdProfile

__all__ = ["SmlMeterSimulator", "SmlRegisters"]

IMPORT = ObisCode(1, 0, 1, 8, 0)
EXPORT = ObisCode(1, 0, 2, 8, 0)
POWER = ObisCode(1, 0, 16, 7, 0)
DEVICE_ID = ObisCode(1, 0, 96, 1, 0)


@dataclass(frozen=True, slots=True)
class SmlRegisters:
    time: datetime
    import_dwh: int  # 1.8.0 in 0.1 Wh (scaler -1), as the meter counts it
    export_dwh: int  # 2.8.0 in 0.1 Wh
    power_w: int  # 16.7.0, import minus export


def server_id(manufacturer: str, serial: int) -> bytes:
    """The 10-byte server id of a German meter (FNN "Herstellerübergreifende Identifikations-
    nummer"): 0A, the sparte/version byte 01, the three-letter FLAG manufacturer id, 00, then
    the serial as 4 bytes big-endian."""
    if len(manufacturer) != 3 or not manufacturer.isalpha():
        raise ValueError("the manufacturer id is three letters")
    if not 0 <= serial < 2**32:
        raise ValueError("the serial is 32-bit")
    return b"\x0a\x01" + manufacturer.upper().encode("ascii") + b"\x00" + serial.to_bytes(4, "big")


class SmlMeterSimulator:
    """One home's SML meter on simulated time (see the module docstring)."""

    def __init__(
        self,
        manufacturer: str,
        serial: int,
        profile: HouseholdProfile,
        start: datetime,
        *,
        initial_import_wh: int = 4_000_000,
        timestamps: bool = False,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if initial_import_wh < 0:
            raise ValueError("initial register values cannot be negative")
        self.server_id = server_id(manufacturer, serial)
        self.profile = profile
        self.timestamps = timestamps  # basic meters send a seconds index; some a UNIX time
        self._start = start.astimezone(UTC)
        self._time = self._start
        self._mwh = [initial_import_wh * 1000, 0]
        self._transaction = 0
        self._registers = self._snapshot()

    @property
    def meter_id(self) -> str:
        """The id the decoded data points carry: the device id (= server id) in hex."""
        return self.server_id.hex()

    @property
    def registers(self) -> SmlRegisters:
        return self._registers

    def _snapshot(self) -> SmlRegisters:
        power = round(self.profile.net_import_w(self._time))
        return SmlRegisters(self._time, self._mwh[0] // 100, self._mwh[1] // 100, power)

    def advance(self, t: datetime) -> SmlRegisters:
        if t.tzinfo is None:
            raise ValueError("t must be timezone-aware")
        t = t.astimezone(UTC)
        if t < self._time:
            raise ValueError(f"meter time cannot go backwards: {t.isoformat()} < {self._time.isoformat()}")
        if t > self._time:
            imp, exp, _ = self.profile.energy_wh(self._time, t)
            self._mwh[0] += round(imp * 1000)
            self._mwh[1] += round(exp * 1000)
            self._time = t
        self._registers = self._snapshot()
        return self._registers

    def file_at(self, t: datetime) -> bytes:
        """The SML file the meter pushes at ``t``."""
        r = self.advance(t)
        self._transaction = (self._transaction + 1) & 0xFFFFFFFF
        wh, w = UNIT_CODES["Wh"], UNIT_CODES["W"]
        entries: list[tuple[ObisCode, int | bytes, int | None, int | None]] = [
            (DEVICE_ID, self.server_id, None, None),
            (IMPORT, r.import_dwh, wh, -1),
            (EXPORT, r.export_dwh, wh, -1),
            (POWER, r.power_w, w, 0),
        ]
        seconds = int((r.time - self._start).total_seconds())
        return encode_file(
            self.server_id,
            entries,
            transaction=self._transaction,
            timestamp=r.time if self.timestamps else None,
            sensor_seconds=None if self.timestamps else seconds,
        )
