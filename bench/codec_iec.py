"""IEC 62056-21 mode C data message: ours vs the ``iec62056-21`` package on the same bytes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib.metadata import version

from _codec_bench import BenchCase

from smarthub.meters.iec62056_21 import data_points, decode_readout
from smarthub.sim.iec_meter import IecMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile


def _frame() -> bytes:
    start = datetime(2024, 7, 15, tzinfo=UTC)
    meter = IecMeterSimulator("12345678", "LGZ", HouseholdProfile(seed=1), start)
    return meter.readout_at(start + timedelta(hours=10))


def cases() -> list[BenchCase]:
    frame = _frame()
    text = frame.decode("latin-1")
    try:
        from iec62056_21.messages import ReadoutDataMessage

        def reference() -> object:
            return ReadoutDataMessage.from_representation(text)

        ref_name = f"iec62056-21 {version('iec62056-21')}"
    except ImportError:  # pragma: no cover - the reference is a test extra
        reference, ref_name = None, ""  # type: ignore[assignment]

    return [
        BenchCase(
            protocol="iec62056-21",
            name="mode C data message, 12 data sets, decode + BCC + grammar check",
            ours=lambda: decode_readout(frame),
            reference=reference,
            reference_name=ref_name,
            frame_bytes=len(frame),
        ),
        BenchCase(
            protocol="iec62056-21",
            name="mode C data message, 12 data sets, decode + data points",
            ours=lambda: data_points(decode_readout(frame)),
            reference=reference,
            reference_name=ref_name,
            frame_bytes=len(frame),
        ),
    ]
