"""A wireless M-Bus receiver port (EN 13757-4 / OMS): each radio packet is one frame.

Meters are decrypted with their own keys (mode 5 or 7); a frame from a meter whose key the
hub does not hold, or that fails its 2F2F/MAC check, is a typed error and yields nothing.
OMS meters carry a date-time of minute resolution; between frames every ~30 s that is too
coarse to place a register on a settlement boundary, so by default points are stamped with
the hub's receive time instead (``use_meter_clock=False``).

Receivers deliver frames with the link-layer CRCs (``has_crc=True``), without them (sticks and
SDR decoders check and strip them: ``False``), or either (``None``: the codec tells them apart
by L and the length, :func:`smarthub.meters.wmbus.detect_crc`).

The port keeps the latest frame each meter sent that its key did not decrypt
(``undecrypted``), so a re-key can test another key on the meter's real bytes, and the
compact-frame formats (EN 13757-3 CI 0x79) learnt from the full frames it heard (``formats``),
so a meter that sends a full frame only now and then (Kamstrup's Multical 21 every eighth) is
read between them even when its format is not in the layout table.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import UTC, tzinfo

from smarthub.han.ports import PortBatch
from smarthub.meters.errors import DecodeError
from smarthub.meters.wmbus import DecryptionError, data_points

MAX_UNDECRYPTED = 64  # meters whose last undecryptable frame is kept (a radio hears neighbours)


class WMBusPort:
    protocol = "wmbus"

    def __init__(
        self,
        name: str,
        keys: MutableMapping[str, bytes] | None = None,
        *,
        tz: tzinfo = UTC,
        has_crc: bool | None = True,
        use_meter_clock: bool = False,
    ) -> None:
        self.name = name
        self.keys: MutableMapping[str, bytes] = keys if keys is not None else {}
        self.tz = tz
        self.has_crc = has_crc  # None: detected per frame
        self.use_meter_clock = use_meter_clock
        self.frames = 0
        self.errors = 0
        self.undecrypted: dict[str, bytes] = {}
        self.formats: dict[int, bytes] = {}  # signature -> record headers (bounded by the codec)

    def receive(
        self, data: bytes, *, rssi_dbm: float | None = None, sensitivity_dbm: float | None = None
    ) -> PortBatch:
        """One radio packet; ``rssi_dbm`` as the receiver measured it, if it reports one."""
        try:
            points = data_points(data, self.keys, tz=self.tz, has_crc=self.has_crc, formats=self.formats)
        except DecodeError as err:
            self.errors += 1
            if isinstance(err, DecryptionError) and err.meter is not None:
                self.undecrypted.pop(err.meter, None)
                self.undecrypted[err.meter] = data
                while len(self.undecrypted) > MAX_UNDECRYPTED:
                    del self.undecrypted[next(iter(self.undecrypted))]
            return PortBatch(errors=[err])
        self.frames += 1
        if not self.use_meter_clock:
            points = [p._replace(time=None) for p in points]
        return PortBatch(points=points, rssi_dbm=rssi_dbm, sensitivity_dbm=sensitivity_dbm)
