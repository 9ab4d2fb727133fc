"""A simulated wireless M-Bus water or gas meter (EN 13757-4 T1 mode, OMS) driven by a household profile.

``frame_at(t)`` advances the registers to ``t`` and returns the SND_NR frame the meter would
radiate at that instant: format A or B with its link-layer CRCs, a short transport header
(CI 0x7A) whose access number increases with every frame, and the records volume (litres,
VIF 0x13), current volume flow, date-time (type F, the meter's local wall clock) and error
flags, encrypted with the meter's key in security mode 5 (AES-CBC, IV from M, A and the access
number) or mode 7 (AFL with message counter and CMAC, key derived per frame), or in clear
(mode 0). Registers are exact integers (litres = dm3), the same engine as the wired simulator
(:mod:`smarthub.sim.mbus_meter`), and ``registers`` gives tests the values the last frame must
decode to. Time must not go backwards.
"""

from __future__ import annotations

from datetime import datetime

from smarthub.meters import mbus, wmbus
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.mbus_meter import MEDIA, MBusRegisters, _Registers

__all__ = ["WMBusMeterSimulator"]


class WMBusMeterSimulator:
    """One radio meter. ``medium``: ``water``, ``warm_water``, ``gas`` (or ``heat``)."""

    def __init__(
        self,
        ident: int,
        manufacturer: str,
        medium: str,
        key: bytes | None,
        profile: HouseholdProfile,
        start: datetime,
        mode: int = 5,
        frame_format: str = "A",
        *,
        version: int = 0x01,
        persons: int = 2,
        initial_volume_dm3: int = 0,
        initial_access_no: int = 0,
        initial_message_counter: int = 0,
    ) -> None:
        if mode not in (0, 5, 7):
            raise ValueError("mode is 0, 5 or 7")
        if mode and (key is None or len(key) != 16):
            raise ValueError("modes 5 and 7 need a 16-byte AES key")
        if frame_format not in ("A", "B"):
            raise ValueError("frame_format is 'A' or 'B'")
        mbus.encode_manufacturer(manufacturer)
        self.ident = ident
        self.manufacturer = manufacturer
        self.medium = medium
        self.device_type = MEDIA.get(medium, 0)
        self.key = key
        self.mode = mode
        self.frame_format = frame_format
        self.version = version
        self._reg = _Registers(
            medium,
            profile,
            start,
            persons=persons,
            initial_volume_dm3=initial_volume_dm3,
            initial_energy_wh=0,
        )
        self._reg.access_no = initial_access_no & 0xFF
        self.message_counter = initial_message_counter
        self._registers = self._reg.snapshot()

    @property
    def meter_id(self) -> str:
        """The id the hub's data points carry (and the key mapping uses)."""
        return mbus.meter_id(self.manufacturer, self.ident, b"")

    @property
    def registers(self) -> MBusRegisters:
        """The register values carried by the last frame (or as of ``start``)."""
        return self._registers

    def frame_at(self, t: datetime) -> bytes:
        self._reg.advance(t)
        self._reg.access_no = (self._reg.access_no + 1) & 0xFF
        self.message_counter += 1
        r = self._registers = self._reg.snapshot()
        local, summer = self._reg.local_time()
        spec = mbus.RecordSpec
        records = [
            spec(b"\x13", r.volume_dm3, "int32"),  # volume, litres
            spec(b"\x3b", r.flow_l_h, "int16"),  # volume flow, l/h
            spec(b"\x6d", mbus.encode_datetime_f(local, summer), "int32"),  # date-time, type F
            spec(b"\xfd\x17", 0, "int8"),  # error flags
        ]
        return wmbus.encode_frame(
            manufacturer=self.manufacturer,
            ident=self.ident,
            version=self.version,
            device_type=self.device_type,
            records=mbus.encode_records(records),
            access_no=r.access_no,
            mode=self.mode,
            key=self.key,
            message_counter=self.message_counter,
            ell_cc=0x20 if self.mode == 7 else None,
            frame_format=self.frame_format,
        )
