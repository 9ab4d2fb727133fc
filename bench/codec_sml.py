"""SML benchmark cases: our codec against ``smllib`` (the reference) on the same bytes: a file
from the SML meter simulator and two published real meter files (smllib's own test frames)."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

from _codec_bench import BenchCase

from smarthub.meters import sml
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.sml_meter import SmlMeterSimulator


def real_captures():  # type: ignore[no-untyped-def]
    """tests/meters/real_captures.py: the published frames, with their sources."""
    path = Path(__file__).resolve().parents[1] / "tests" / "meters" / "real_captures.py"
    spec = importlib.util.spec_from_file_location("real_captures", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cases() -> list[BenchCase]:
    t0 = datetime(2024, 7, 15, tzinfo=UTC)
    sim = SmlMeterSimulator("EMH", 4711, HouseholdProfile(1), t0, timestamps=True)
    c = real_captures()
    files = [
        ("simulated basic meter file, 4 entries", sim.file_at(t0 + timedelta(hours=9))),
        ("real EMH file (smllib issue #15), 5 entries", c.SML_EMH),
        ("real Holley file (smllib Frame2), 20 entries", c.SML_HOLLEY),
        ("real DZG file (smllib Frame1), 4 entries", c.SML_DZG),
        ("real eBZ file (smllib issue #8), 10 entries", c.SML_EBZ),
        ("real EMH signed file (smllib issue #26), 4 entries", c.SML_EMH_SIGNED),
        ("real Iskra file (smllib issue #28), 10 entries", c.SML_ISKRA),
        ("real Holley file, Kermit CRC (smllib issue #8), 30 entries", c.SML_HOLLEY_KERMIT),
    ]
    out = []
    for name, data in files:
        try:
            from smllib.reader import SmlStreamReader

            crc = "kermit" if data is c.SML_HOLLEY_KERMIT else "x25"  # smllib is told; we detect it

            def ref(data: bytes = data, crc: str = crc) -> object:
                r = SmlStreamReader(crc=crc)  # type: ignore[arg-type]
                r.add(data)
                frame = r.get_frame()
                assert frame is not None
                return [
                    (o.obis, o.get_value())
                    for msg in frame.parse_frame()
                    for o in getattr(msg.message_body, "val_list", ())
                ]

            ref_name = f"smllib {version('smllib')}"
        except ImportError:  # pragma: no cover - the reference is a test extra
            ref, ref_name = None, ""  # type: ignore[assignment]
        out.append(
            BenchCase(
                "sml",
                f"{name} -> data points",
                lambda data=data: sml.data_points(data),  # type: ignore[misc]
                ref,
                ref_name,
                len(data),
            )
        )
    return out
