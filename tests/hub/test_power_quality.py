"""The hub's power-quality summary: 10-minute voltage minimum / mean / maximum per phase and sag
and swell counts per period, from the readings a DSMR meter sends (real telegrams decoded)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from smarthub.assembly.config import ConfigError, parse_config
from smarthub.hub.power_quality import PowerQuality
from smarthub.model import ObisCode, Reading, Unit

T = datetime(2026, 3, 2, 12, tzinfo=UTC)
L1, L2 = ObisCode.parse("1-0:32.7.0"), ObisCode.parse("1-0:52.7.0")
SAGS = ObisCode.parse("1-0:32.32.0")


def volts(meter: str, obis: ObisCode, t: datetime, v: str) -> Reading:
    return Reading(meter, obis, Decimal(v), Unit.V, t)


def test_ten_minute_min_mean_max_per_phase_written_when_the_next_period_starts() -> None:
    pq = PowerQuality()
    samples = ["229.0", "231.4", "226.2", "233.0"]  # one every 10 s from 12:00:00
    out = pq.observe(volts("E1", L1, T + timedelta(seconds=10 * i), v) for i, v in enumerate(samples))
    out += pq.observe([volts("E1", L2, T, "240.0")])
    assert out == []  # nothing until a sample of the next period
    out = pq.observe([volts("E1", L1, T + timedelta(minutes=10), "230.0")])
    got = {str(r.obis): (r.start, r.duration, r.value, r.power_of_ten) for r in out}
    start = int(T.timestamp())
    assert got == {
        "1-0:32.5.0": (start, 600, 2299, -1),  # (2290 + 2314 + 2262 + 2330) / 4 = 2299
        "1-0:32.3.0": (start, 600, 2262, -1),
        "1-0:32.6.0": (start, 600, 2330, -1),
    }
    # A sample from an earlier period is dropped and counted, not folded into the open one.
    assert pq.observe([volts("E1", L1, T, "100.0")]) == [] and pq.late == 1


def test_sag_counter_advance_is_the_count_of_the_period_and_a_reset_starts_again() -> None:
    pq = PowerQuality()

    def count(t: datetime, n: int) -> list:  # type: ignore[type-arg]
        return pq.observe([Reading("E1", SAGS, Decimal(n), Unit.NONE, t)])

    assert count(T, 7) == []  # the baseline
    assert count(T + timedelta(minutes=5), 9) == []
    (r,) = count(T + timedelta(minutes=10), 10)
    assert (str(r.obis), r.start, r.duration, r.value) == ("1-0:32.32.0", int(T.timestamp()), 600, 3)
    # No samples for 20 minutes: the period before the gap takes its events (on the 10-minute grid).
    (r,) = count(T + timedelta(minutes=40), 12)
    assert (r.start, r.duration, r.value) == (int((T + timedelta(minutes=10)).timestamp()), 600, 2)
    assert count(T + timedelta(minutes=41), 0) == []  # the meter reset its counter: a new baseline
    (r,) = count(T + timedelta(minutes=50), 1)
    assert r.value == 1


def test_hub_toml_turns_it_on(tmp_path: Path) -> None:
    text = '[hub]\nid = "H1"\nstate = "s"\n\n[power_quality]\nenabled = true\n'
    assert parse_config(text, base=tmp_path).power_quality
    assert not parse_config('[hub]\nid = "H1"\nstate = "s"\n', base=tmp_path).power_quality
    with pytest.raises(ConfigError, match="expected true or false"):
        parse_config(text.replace("true", '"yes"'), base=tmp_path)
