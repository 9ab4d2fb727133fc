"""ZigBee SE Metering Report Attributes frame: ours vs zigpy's ZCL foundation deserializer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib.metadata import version

from _codec_bench import BenchCase

from smarthub.meters.zigbee_se import MeterFormatting, data_points, decode_zcl
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.zigbee_meter import ZigbeeMeterSimulator

_EUI = "00:0d:6f:00:0a:bc:de:f0"


def _frames() -> tuple[bytes, bytes]:
    start = datetime(2024, 7, 15, tzinfo=UTC)
    sim = ZigbeeMeterSimulator(_EUI, "electric", HouseholdProfile(seed=1), start)
    return sim.formatting_report(), sim.report_at(start + timedelta(hours=10))


def cases() -> list[BenchCase]:
    formatting, report = _frames()
    state = MeterFormatting()
    data_points(decode_zcl(formatting), state, _EUI)
    try:
        import zigpy.zcl.foundation as zf

        schema = zf.GENERAL_COMMANDS[zf.GeneralCommand.Report_Attributes].schema

        def reference() -> object:
            header, rest = zf.ZCLHeader.deserialize(report)
            return header, schema.deserialize(rest)

        ref_name = f"zigpy {version('zigpy')}"
    except ImportError:  # pragma: no cover - the reference is a test extra
        reference, ref_name = None, ""  # type: ignore[assignment]

    return [
        BenchCase(
            protocol="zigbee",
            name="ZCL Report Attributes, Metering, 3 attributes, decode",
            ours=lambda: decode_zcl(report),
            reference=reference,
            reference_name=ref_name,
            frame_bytes=len(report),
        ),
        BenchCase(
            protocol="zigbee",
            name="ZCL Report Attributes, Metering, 3 attributes, decode + scaled data points",
            ours=lambda: data_points(decode_zcl(report), state, _EUI),
            reference=reference,
            reference_name=ref_name,
            frame_bytes=len(report),
        ),
    ]
