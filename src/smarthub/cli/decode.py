"""``smarthub decode``: captured frames decoded to readings, one JSON object per reading."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from smarthub.cli.app import app


@app.command()
def decode(
    protocol: Annotated[
        str | None, typer.Option(help="dlms, iec62056-21, mbus, wmbus, zigbee, dsmr or sml (not with --log)")
    ] = None,
    source: Annotated[str, typer.Argument(help="file with the frame as hex, or - for standard input")] = "-",
    key: Annotated[str | None, typer.Option(help="AES-128 key as hex (wmbus, encrypted dlms)")] = None,
    auth_key: Annotated[
        str | None, typer.Option(help="dlms: authentication key AK as hex (default: the key)")
    ] = None,
    meter: Annotated[str | None, typer.Option(help="meter id when the frame does not carry one")] = None,
    device_type: Annotated[
        int | None, typer.Option(help="zigbee: MeteringDeviceType (0 electric, 1 gas, 2 water)")
    ] = None,
    multiplier: Annotated[int, typer.Option(help="zigbee: Multiplier attribute")] = 1,
    divisor: Annotated[int, typer.Option(help="zigbee: Divisor attribute")] = 1,
    unit_of_measure: Annotated[int, typer.Option(help="zigbee: UnitOfMeasure (0 kWh, 1 m3)")] = 0,
    tz: Annotated[
        str, typer.Option(help="zone of meter clocks sent without UTC offset (e.g. Europe/Oslo)")
    ] = "UTC",
    skip_tag_check: Annotated[
        bool,
        typer.Option(help="dlms: decode a push whose tag fails when the key alone decrypts it (no AK)"),
    ] = False,
    log: Annotated[
        Path | None, typer.Option(help="capture log: one 'ISO-8601-time protocol hex' line per frame")
    ] = None,
) -> None:
    """Decode captured frames and print one JSON object per reading.

    A bad frame gets one line on standard error saying what is wrong, and an exit status
    that says which kind of problem it is: 2 malformed (or bad input), 3 corrupt (CRC/FCS/BCC),
    4 truncated, 5 encrypted and no key, 6 wrong key, 7 unknown list layout or no mapping (the
    raw values are shown). With --log, every frame is decoded with its logged time and the
    status is the first problem's. Points the mapping table does not translate are reported
    on standard error, not dropped.
    """
    import json
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from smarthub.meters.capture_log import CapturedFrame, read_capture_log
    from smarthub.meters.decode import decode_points, parse_hex
    from smarthub.meters.errors import DecodeError, UnknownLayout, classify
    from smarthub.meters.mapping import MappingTable
    from smarthub.meters.zigbee_se import MeterFormatting

    def fail(err: Exception, where: str = "") -> int:
        if isinstance(err, DecodeError):
            status, kind = classify(err)
        else:
            status, kind = 2, "bad input"
        line = str(err).splitlines()[0] if str(err) else type(err).__name__
        if isinstance(err, UnknownLayout) and err.values:
            line += "; raw values: " + ", ".join(err.values)
        print(f"smarthub decode: {where}{kind}: {line}", file=sys.stderr)
        return status

    try:
        zone = ZoneInfo(tz)
        key_bytes = parse_hex(key) if key is not None else None
        if key_bytes is not None and len(key_bytes) != 16:
            raise DecodeError("input", f"an AES-128 key is 16 bytes, got {len(key_bytes)}")
        ak = parse_hex(auth_key) if auth_key is not None else None
        if log is not None:
            if protocol is not None:
                raise DecodeError("input", "--log names each frame's protocol; drop --protocol")
            frames = list(read_capture_log(log.read_text(encoding="utf-8").splitlines()))
        else:
            if protocol is None:
                raise DecodeError("input", "--protocol is required (or --log)")
            text = sys.stdin.read() if source == "-" else Path(source).read_text()
            frames = [CapturedFrame(datetime.now(UTC), protocol, parse_hex(text), 0)]
    except (DecodeError, OSError, UnicodeDecodeError, ZoneInfoNotFoundError, ValueError) as err:
        raise typer.Exit(fail(err)) from None
    formatting = MeterFormatting(
        multiplier=multiplier, divisor=divisor, unit_of_measure=unit_of_measure, device_type=device_type
    )
    table = MappingTable.default()
    status = 0
    formats: dict[int, bytes] = {}  # wM-Bus compact-frame formats the log's full frames teach
    for frame in frames:
        where = f"line {frame.line}: " if log is not None else ""
        try:
            points = decode_points(
                frame.protocol,
                frame.data,
                key=key_bytes,
                meter=meter,
                zigbee_formatting=formatting,
                authentication_key=ak,
                assume=zone,
                verify_tag=not skip_tag_check,
                formats=formats,
            )
        except DecodeError as err:
            status = status or fail(err, where)
            continue
        translation = table.translate(points, frame.time)
        for r in translation.readings:
            print(
                "{"
                f'"meter": {json.dumps(r.meter)}, "obis": {json.dumps(str(r.obis))}, "value": {r.value}, '
                f'"unit": {json.dumps(r.unit.value)}, "time": {json.dumps(r.time.isoformat())}'
                "}"
            )
        for u in translation.unmapped:
            print(
                f"{where}unmapped: {u.point.protocol} {u.point.key}={u.point.value} "
                f"{u.point.unit or ''} ({u.reason})",
                file=sys.stderr,
            )
        if not translation.readings and translation.unmapped:
            print(
                f"smarthub decode: {where}no mapping: the frame decoded, but the mapping table "
                "translates none of its values (raw values above)",
                file=sys.stderr,
            )
            status = status or 7
    if status:
        raise typer.Exit(status)
