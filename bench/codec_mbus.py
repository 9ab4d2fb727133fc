"""Benchmark cases for the M-Bus / wM-Bus codecs (collected by `bench/codecs.py`).

Wired: one RSP_UD long frame (the HYD heat meter telegram from pyMeterBus's tests), decoded to
data points by us and by pyMeterBus (the reference) from the same bytes.
Wireless: a mode 5 (AES-128-CBC) T1 frame from our simulator, decoded and decrypted by us; and
published frames of real meters (``tests/meters/wmbus_captures.py``): a Kamstrup Multical 21 ELL
AES-CTR frame with its published key, its compact frame (rebuilt from the full frame's format), a
Techem heat cost allocator (manufacturer CI, the layout table) and a Qundis one. There is no
reference: no maintained Python wM-Bus decoder is on PyPI (``pywmbus`` 0.0.7 dates from
2017), and pyMeterBus only takes frames whose link-layer CRCs were already removed and needs
keys registered in a module-global table, so it is not comparable on the same bytes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from _codec_bench import BenchCase

from smarthub.meters import mbus, wmbus
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.wmbus_meter import WMBusMeterSimulator

# pyMeterBus tests/test_hyd.py: a Hydrometer heat meter RSP_UD (12 records, CI 0x72).
HYD_RSP_UD = bytes.fromhex(
    "68545468084e727875015124232004467000000c06000000008c1006000000000c13439436018c20"
    "13000000008c4013480000008c8040131200000002fd1710003b3bbdebdd3c2bbdebdddd0a5a7401"
    "0a5e72010a6201006b16"
)


def _wmbus_case() -> tuple[bytes, dict[str, bytes]]:
    key = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
    sim = WMBusMeterSimulator(
        12345678, "KAM", "water", key, HouseholdProfile(1), datetime(2024, 3, 1, tzinfo=UTC), mode=5
    )
    frame = sim.frame_at(datetime(2024, 3, 1, 8, tzinfo=UTC) + timedelta(minutes=1))
    return frame, {sim.meter_id: key}


def cases() -> list[BenchCase]:
    frame = HYD_RSP_UD
    try:
        import meterbus  # pyMeterBus

        version = _version("pyMeterBus")

        def reference() -> object:
            t = meterbus.load(frame)
            return [(r.parsed_value, r.unit) for r in t.body.bodyPayload.records]

        ref: object = reference
        ref_name = f"pyMeterBus {version}"
    except ImportError:  # pragma: no cover - the reference is a test extra
        ref, ref_name = None, ""

    wframe, keys = _wmbus_case()
    real = _real_wmbus_cases()
    return [
        BenchCase(
            protocol="mbus",
            name="RSP_UD long frame, 12 records (HYD heat meter)",
            ours=lambda: mbus.data_points(frame),
            reference=ref,  # type: ignore[arg-type]
            reference_name=ref_name,
            frame_bytes=len(frame),
        ),
        BenchCase(
            protocol="wmbus",
            name="T1 SND_NR format A, mode 5 AES-CBC, 4 records",
            ours=lambda: wmbus.data_points(wframe, keys),
            reference=None,
            reference_name="",
            frame_bytes=len(wframe),
        ),
        *real,
    ]


def _real_wmbus_cases() -> list[BenchCase]:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tests" / "meters" / "wmbus_captures.py"
    spec = importlib.util.spec_from_file_location("wmbus_captures", path)
    assert spec is not None and spec.loader is not None
    c = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(c)
    keys = {"KAM76348799": c.MULTICAL21_KEY}
    formats: dict[int, bytes] = {}
    wmbus.decode_frame(c.MULTICAL21_FULL, formats=formats)
    cases = []
    for name, frame, k in (
        ("C1 Multical 21, ELL AES-CTR, 5 records (published)", c.MULTICAL21_ENCRYPTED, keys),
        ("C1 Multical 21 compact frame, format rebuilt (published)", c.MULTICAL21_COMPACT, None),
        ("T1 Techem FHKV HCA, manufacturer CI layout (published)", c.TECHEM_FHKV_94, None),
        ("C1 Qundis Q caloric HCA, set-day values (published)", c.QCALORIC, None),
    ):
        cases.append(
            BenchCase(
                protocol="wmbus",
                name=name,
                ours=lambda frame=frame, k=k: wmbus.data_points(frame, k, formats=formats),  # type: ignore[misc]
                reference=None,
                reference_name="",
                frame_bytes=len(frame),
            )
        )
    return cases


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:  # pragma: no cover
        return "?"
