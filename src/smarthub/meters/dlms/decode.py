"""Decoding one captured DLMS/COSEM frame on its own (the `smarthub decode` tool).

A captured push (DataNotification, plain or general-glo-ciphered, in an HDLC or wrapper
frame) is self-contained and yields data points. A GET.response alone does not name the
object it answers, so it cannot be turned into readings without the request.
"""

from __future__ import annotations

from smarthub.meters.dlms.client import PushReceiver
from smarthub.meters.dlms.cosem import notification_data_points
from smarthub.meters.dlms.security import SecurityKeys
from smarthub.meters.errors import DecodeError, MalformedFrame
from smarthub.model.datapoint import DataPoint


def frame_data_points(
    data: bytes,
    *,
    key: bytes | None = None,
    meter: str | None = None,
    authentication_key: bytes | None = None,
) -> list[DataPoint]:
    transport = "wrapper" if data[:2] == b"\x00\x01" else "hdlc"
    keys = None
    if key is not None:
        # Suite 0 authenticates with AK; pushes of many meters use AK = EK when none is configured.
        keys = SecurityKeys(key, authentication_key or key)
    out: list[DataPoint] = []
    for item in PushReceiver(transport, keys).feed(data):  # type: ignore[arg-type]
        if isinstance(item, DecodeError):
            raise item
        sender, n = item
        who = meter or (sender.hex().upper() if sender else "dlms")
        out += notification_data_points(who, n.value, date_time=n.date_time)
    if not out:
        raise MalformedFrame(
            "dlms", "no complete DataNotification in the input (a GET.response needs its request)"
        )
    return out
