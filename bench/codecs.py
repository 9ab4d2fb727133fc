"""Frames per second of every meter codec, against the reference Python library for the
same protocol decoding the same bytes in the same run (issue 3: goal ≥ 2× the reference).

    .venv/bin/python bench/codecs.py [--seconds 1.0]

Each protocol's cases live in ``bench/codec_<protocol>.py``. A case with no reference
prints "—" in the ratio column and says so. The goal column: "met" when ours is at least
``GOAL`` times the reference in this run (issue 17), "NOT met" otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _codec_bench import BenchCase

GOAL = 2.0
MODULES = ("codec_dsmr", "codec_dlms", "codec_iec", "codec_mbus", "codec_zigbee", "codec_sml", "codec_han")


def rate(fn, seconds: float, windows: int = 3) -> float:  # type: ignore[no-untyped-def]
    """Calls per second of CPU time, the best of ``windows`` windows: on a shared machine, wall
    time and a single window swing by ±15 % with the neighbours' load; this does not."""
    fn()  # warm up (tables, caches) outside the timing
    best = 0.0
    for _ in range(windows):
        n, start = 0, time.process_time()
        deadline = start + seconds / windows
        while True:
            for _ in range(50):
                fn()
            n += 50
            now = time.process_time()
            if now >= deadline:
                break
        best = max(best, n / (now - start))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    ap.add_argument("--only", default="", help="only cases whose protocol or name contains this")
    args = ap.parse_args()
    cases: list[BenchCase] = []
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as err:
            print(f"{name}: not available ({err})")
            continue
        cases += mod.cases()
    print(
        f"{'protocol':<12} {'case':<66} {'bytes':>5} {'ours/s':>9} {'ref/s':>9} {'ratio':>6}  "
        f"{'goal ≥' + str(GOAL) + 'x':<9}  reference"
    )
    met = missed = 0
    for c in cases:
        if args.only and args.only not in c.protocol and args.only not in c.name:
            continue
        ours = rate(c.ours, args.seconds)
        ref = rate(c.reference, args.seconds) if c.reference is not None else None
        ratio = f"{ours / ref:6.1f}" if ref else "     —"
        ref_s = f"{ref:9.0f}" if ref else "        —"
        goal = "—"
        if ref:
            ok = ours / ref >= GOAL
            met, missed = met + ok, missed + (not ok)
            goal = "met" if ok else "NOT met"
        print(
            f"{c.protocol:<12} {c.name[:66]:<66} {c.frame_bytes:>5} {ours:9.0f} {ref_s} {ratio}  "
            f"{goal:<9}  {c.reference_name or 'none available'}"
        )
    print(f"goal ≥ {GOAL}x the reference: met on {met} of {met + missed} cases with a reference")


if __name__ == "__main__":
    main()
