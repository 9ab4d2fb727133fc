"""One entry point for decoding a single captured frame of any supported protocol into data
points: what `smarthub decode` and tools that replay captures use.

Every decoder underneath raises only :class:`DecodeError` subclasses on bad input.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from datetime import UTC, tzinfo
from zoneinfo import ZoneInfo

from smarthub.meters import dsmr, iec62056_21, mbus, sml, wmbus, zigbee_se
from smarthub.meters.errors import DecodeError, MalformedFrame
from smarthub.model.datapoint import DataPoint

PROTOCOLS = ("dlms", "iec62056-21", "mbus", "wmbus", "zigbee", "dsmr", "sml")


class _EveryMeter(Mapping[str, bytes]):
    """A key store that offers the one key given on the command line to whichever meter sent the frame."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def __getitem__(self, meter: str) -> bytes:
        return self.key

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __contains__(self, meter: object) -> bool:
        return True


def parse_hex(text: str) -> bytes:
    """Hex digits with any whitespace (and optional 0x prefixes or colons) in between."""
    cleaned = "".join(text.split()).replace("0x", "").replace(":", "")
    try:
        return bytes.fromhex(cleaned)
    except ValueError as err:
        raise MalformedFrame("input", f"not hex: {err}") from None


def decode_points(
    protocol: str,
    data: bytes,
    *,
    key: bytes | None = None,
    meter: str | None = None,
    zigbee_formatting: zigbee_se.MeterFormatting | None = None,
    authentication_key: bytes | None = None,
    assume: tzinfo = UTC,
    verify_tag: bool = True,
    formats: MutableMapping[int, bytes] | None = None,
) -> list[DataPoint]:
    """Data points of one frame. ZigBee reports need the meter's formatting (Multiplier,
    Divisor, UnitOfMeasure, device type) unless the frame itself carries it. ``assume``: the
    zone of a meter clock sent without a UTC offset (DLMS deviation "not specified", IEC
    62056-21 0.9.1/0.9.2). ``verify_tag=False``: DLMS pushes whose tag fails are decoded when
    the encryption key alone decrypts them (flagged ``unauthenticated``). ``formats``: the
    wM-Bus compact-frame formats learnt so far (a capture log's full frames teach its compact ones).

    Raises only :class:`~smarthub.meters.errors.DecodeError` subclasses on bad input; their
    class says what is wrong (see :mod:`smarthub.meters.errors`)."""
    if protocol == "dsmr":
        return dsmr.data_points(dsmr.decode_telegram(data))
    if protocol == "iec62056-21":
        readout = iec62056_21.decode_readout(data)
        if isinstance(assume, ZoneInfo):
            return iec62056_21.data_points(readout, meter_id=meter, tz=assume)
        return iec62056_21.data_points(readout, meter_id=meter, tz=ZoneInfo("UTC"))
    if protocol == "sml":
        return sml.data_points(data, meter=meter)
    if protocol == "mbus":
        return mbus.data_points(data)
    if protocol == "wmbus":
        return wmbus.data_points(
            data, _EveryMeter(key) if key is not None else None, tz=assume, formats=formats
        )
    if protocol == "zigbee":
        frame = zigbee_se.decode_zcl(data)
        return zigbee_se.data_points(
            frame, zigbee_formatting or zigbee_se.MeterFormatting(), meter or "zigbee"
        )
    if protocol == "dlms":
        from smarthub.meters.dlms.decode import frame_data_points

        return frame_data_points(
            data,
            key=key,
            meter=meter,
            authentication_key=authentication_key,
            assume=assume,
            verify_tag=verify_tag,
        )
    raise DecodeError("input", f"unknown protocol {protocol!r}; one of {', '.join(PROTOCOLS)}")
