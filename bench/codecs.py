"""Frames per second of every meter codec, against the reference Python library for the
same protocol decoding the same bytes in the same run (issue 3: goal ≥ 2× the reference).

    .venv/bin/python bench/codecs.py [--seconds 1.0]

Each protocol's cases live in ``bench/codec_<protocol>.py``. A case with no reference
prints "—" in the ratio column and says so.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _codec_bench import BenchCase

MODULES = ("codec_dsmr", "codec_dlms", "codec_iec", "codec_mbus", "codec_zigbee", "codec_sml", "codec_han")


def rate(fn, seconds: float) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm up (tables, caches) outside the timing
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            fn()
        n += 50
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = ap.parse_args()
    cases: list[BenchCase] = []
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as err:
            print(f"{name}: not available ({err})")
            continue
        cases += mod.cases()
    print(f"{'protocol':<12} {'case':<62} {'bytes':>5} {'ours/s':>9} {'ref/s':>9} {'ratio':>6}  reference")
    for c in cases:
        ours = rate(c.ours, args.seconds)
        ref = rate(c.reference, args.seconds) if c.reference is not None else None
        ratio = f"{ours / ref:6.1f}" if ref else "     —"
        ref_s = f"{ref:9.0f}" if ref else "        —"
        print(
            f"{c.protocol:<12} {c.name[:62]:<62} {c.frame_bytes:>5} {ours:9.0f} {ref_s} {ratio}  "
            f"{c.reference_name or 'none available'}"
        )


if __name__ == "__main__":
    main()
