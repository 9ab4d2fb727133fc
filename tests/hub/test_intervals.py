from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from smarthub.hub.intervals import IntervalBuilder
from smarthub.model import ObisCode, Quality

OBIS = ObisCode.parse("1-0:1.8.0")
T0 = 1_772_409_600  # 2026-03-02T00:00Z, a boundary


def feed(b: IntervalBuilder, samples: list[tuple[int, int]]):  # type: ignore[no-untyped-def]
    out = []
    for t, v in samples:
        out += b.add("E1", OBIS, t, v, 0)
    return out


def test_exact_boundaries_give_valid_deltas() -> None:
    b = IntervalBuilder()
    samples = [(T0 + 60 * i, 1000 + 7 * i) for i in range(0, 121)]  # two hours, a sample a minute
    out = feed(b, samples)
    assert [r.start for r in out] == [T0, T0 + 1800, T0 + 3600, T0 + 5400]
    assert all(r.value == 7 * 30 for r in out)
    assert all(r.quality == Quality.VALID for r in out)
    assert out[-1].register_end == 1000 + 7 * 120


def test_first_partial_interval_is_not_invented() -> None:
    b = IntervalBuilder()
    out = feed(b, [(T0 + 600, 10), (T0 + 1800, 20), (T0 + 3600, 50)])
    # Nothing is known of [T0, T0+1800) before 10 minutes in: the first interval is the next one.
    assert [(r.start, r.value) for r in out] == [(T0 + 1800, 30)]


def test_gap_is_spread_and_flagged_estimated() -> None:
    b = IntervalBuilder()
    out = feed(b, [(T0, 0), (T0 + 1800, 100), (T0 + 1800 * 4, 400)])  # HAN outage of 1.5 hours
    assert [r.value for r in out] == [100, 100, 100, 100]
    assert out[0].quality == Quality.VALID
    assert all(r.quality == Quality.ESTIMATED_LINEAR_INTERPOLATION for r in out[1:])


def test_backwards_and_repeated_samples_are_rejected_not_billed() -> None:
    b = IntervalBuilder()
    out = feed(b, [(T0, 100), (T0 + 60, 90), (T0 + 60, 120), (T0 + 60, 130), (T0 + 1800, 200)])
    assert b.rejected("E1", OBIS) == 2  # the backwards value and the repeated timestamp
    assert [(r.start, r.value) for r in out] == [(T0, 100)]


def test_restore_continues_without_gap() -> None:
    b = IntervalBuilder()
    out = feed(b, [(T0, 0), (T0 + 1800, 10)])
    b2 = IntervalBuilder()
    b2.restore(out[-1])
    out2 = feed(b2, [(T0 + 3000, 15), (T0 + 3600, 30)])
    assert [(r.start, r.value) for r in out2] == [(T0 + 1800, 20)]


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(1, 900), st.integers(0, 5000)), min_size=2, max_size=300))
def test_intervals_sum_to_register_advance(steps: list[tuple[int, int]]) -> None:
    b = IntervalBuilder()
    t, v = T0, 12345
    samples = [(t, v)]
    for dt, dv in steps:
        t += dt
        v += dv
        samples.append((t, v))
    out = feed(b, samples)
    if out:
        # Contiguous, and the deltas add up to the difference of the boundary register values.
        assert all(x.end == y.start for x, y in itertools.pairwise(out))
        assert sum(r.value for r in out) == out[-1].register_end - (out[0].register_end - out[0].value)
        assert all(r.value >= 0 for r in out)
