"""Decoding one captured DLMS/COSEM frame on its own (the `smarthub decode` tool).

A captured push (DataNotification, plain or general-glo-ciphered, in HDLC frames, wired M-Bus
long frames, the wrapper, or bare) is self-contained and yields data points; see
:mod:`smarthub.meters.dlms.han` for the transports and list layouts taken. A GET.response alone
does not name the object it answers, so it cannot be turned into readings without the request.
"""

from __future__ import annotations

from datetime import UTC, tzinfo

from smarthub.meters.dlms.apdu import DataNotification as _DataNotification
from smarthub.meters.dlms.apdu import decode_apdu
from smarthub.meters.dlms.han import decode_push, extract_apdus
from smarthub.meters.dlms.profiles import ListProfiles
from smarthub.meters.dlms.security import SecurityKeys, is_ciphered
from smarthub.meters.errors import MalformedFrame
from smarthub.model.datapoint import DataPoint


def frame_data_points(
    data: bytes,
    *,
    key: bytes | None = None,
    meter: str | None = None,
    authentication_key: bytes | None = None,
    profiles: ListProfiles | None = None,
    assume: tzinfo = UTC,
    verify_tag: bool = True,
) -> list[DataPoint]:
    """Data points of every push in ``data``. ``meter`` names the meter only when the frame
    carries neither a serial nor a system title."""
    keys = None
    if key is not None:
        # Suite 0 authenticates with AK; pushes of many meters use AK = EK when none is configured.
        keys = SecurityKeys(key, authentication_key or key)
    for apdu in extract_apdus(data):
        if not is_ciphered(apdu) and not isinstance(decode_apdu(apdu), _DataNotification):
            raise MalformedFrame(
                "dlms", "no DataNotification in the input (a GET.response needs its request to be read)"
            )
    out: list[DataPoint] = []
    pushes = decode_push(
        data, keys=keys, meter=meter, profiles=profiles, assume=assume, verify_tag=verify_tag
    )
    for push in pushes:
        out += push.points
    return out
