"""The variants `make test` leaves to `make bench` (tests/conftest.py, SIBLING_IN_MAKE_TEST) name
tests that exist: a renamed test would otherwise quietly come back into the 15-minute suite, or
its sibling be the one left out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import SIBLING_IN_MAKE_TEST

ROOT = Path(__file__).resolve().parents[1]


def test_every_variant_left_to_make_bench_exists_and_has_a_sibling_in_make_test() -> None:
    files = sorted({n.split("::")[0] for n in SIBLING_IN_MAKE_TEST})
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", "", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    collected = {line for line in out.splitlines() if "::" in line}
    assert collected >= SIBLING_IN_MAKE_TEST, SIBLING_IN_MAKE_TEST - collected
    for node in SIBLING_IN_MAKE_TEST:
        test = node.split("[")[0]
        siblings = {c for c in collected if c.split("[")[0] == test} - SIBLING_IN_MAKE_TEST
        assert siblings, f"{node}: no variant of it is left in make test"
