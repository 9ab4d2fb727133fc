"""A ZigBee Smart Energy coordinator port: ZCL Metering payloads per device, to data points.

The radio stack (EZSP/zigpy, deCONZ...) delivers (EUI-64, cluster, ZCL payload); the port
keeps each meter's formatting (Multiplier, Divisor, UnitOfMeasure, device type) learnt from
its reports, so later reports scale exactly.
"""

from __future__ import annotations

from smarthub.han.ports import PortBatch
from smarthub.meters.errors import DecodeError
from smarthub.meters.zigbee_se import METERING_CLUSTER, MeterFormatting, data_points, decode_zcl


class ZigbeePort:
    protocol = "zigbee"

    def __init__(self, name: str) -> None:
        self.name = name
        self.formatting: dict[str, MeterFormatting] = {}
        self.frames = 0
        self.errors = 0

    def receive_frame(
        self,
        eui64: str,
        payload: bytes,
        cluster_id: int = METERING_CLUSTER,
        *,
        rssi_dbm: float | None = None,
        sensitivity_dbm: float | None = None,
    ) -> PortBatch:
        """One ZCL frame from ``eui64``; ``rssi_dbm`` as the coordinator measured it, if known."""
        try:
            frame = decode_zcl(payload, cluster_id)
            state = self.formatting.setdefault(eui64, MeterFormatting())
            points = data_points(frame, state, eui64)
        except DecodeError as err:
            self.errors += 1
            return PortBatch(errors=[err])
        self.frames += 1
        return PortBatch(points=points, rssi_dbm=rssi_dbm, sensitivity_dbm=sensitivity_dbm)
