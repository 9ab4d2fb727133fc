"""A DLMS/COSEM push port: the HAN port of Nordic, Austrian and Swiss meters (and any meter
with a push setup, IEC 62056-6-2 class 40) sending DataNotifications on its own, framed by
HDLC (UI or I frames on the serial port) or the TCP wrapper, plain or general-glo-ciphered.

Bytes from any transport in, data points and typed errors out; the meter's suite keys (EK, and
AK, many HAN ports using the same key for both) decrypt ciphered pushes, and the invocation
counter guard refuses a replayed one.
"""

from __future__ import annotations

from typing import Literal

from smarthub.han.ports import PortBatch
from smarthub.meters.dlms.client import PushReceiver
from smarthub.meters.dlms.cosem import notification_data_points
from smarthub.meters.dlms.security import SecurityKeys
from smarthub.meters.errors import DecodeError


class DlmsPushPort:
    protocol = "dlms"

    def __init__(
        self,
        name: str,
        keys: SecurityKeys | None = None,
        *,
        framing: Literal["hdlc", "wrapper"] = "hdlc",
        meter: str | None = None,
        list_profile: str | None = None,
    ) -> None:
        self.name = name
        self.meter = meter  # the id to give points when the push does not name its sender
        self.list_profile = list_profile
        self._receiver = PushReceiver(framing, keys)
        self.frames = 0
        self.errors = 0

    @property
    def keys(self) -> SecurityKeys | None:
        return self._receiver.keys

    @keys.setter
    def keys(self, keys: SecurityKeys | None) -> None:
        self._receiver.keys = keys

    def receive(self, data: bytes) -> PortBatch:
        batch = PortBatch()
        for item in self._receiver.feed(data):
            if isinstance(item, DecodeError):
                self.errors += 1
                batch.errors.append(item)
                continue
            sender, notification = item
            who = self.meter or (sender.hex().upper() if sender else "dlms")
            try:
                batch.points += notification_data_points(
                    who, notification.value, date_time=notification.date_time
                )
            except DecodeError as err:
                self.errors += 1
                batch.errors.append(err)
                continue
            self.frames += 1
        return batch
