"""The hub's power-quality summary: 10-minute voltage minimum / mean / maximum per phase, sag
and swell counts per period, and power failures (short and long counts, the log's long failures'
durations, kept across a restart), from the readings a DSMR meter sends (its telegrams decoded)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from smarthub.assembly.config import ConfigError, parse_config
from smarthub.hub.history import HistoryStore
from smarthub.hub.power_quality import PowerQuality, from_history
from smarthub.meters.dlms.cosem import notification_data_points
from smarthub.meters.dsmr import decode_telegram, readings
from smarthub.meters.mapping import MappingTable
from smarthub.model import ObisCode, Reading, Unit
from smarthub.sim.dsmr_meter import DsmrMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile

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


# ---- power failures: the meter's counters and its failure log ---------------------------------

SHORT, LONG, LOGGED = (ObisCode.parse(o) for o in ("0-0:96.7.21", "0-0:96.7.9", "0-0:96.7.19"))


def _run(pq: PowerQuality, meter: DsmrMeterSimulator, start: datetime, minutes: int, off: set[int]) -> list:  # type: ignore[type-arg]
    """A telegram every minute (none while the meter has no supply: minutes in ``off``)."""
    out = []
    for m in range(minutes):
        if m not in off:
            out += pq.observe(readings(decode_telegram(meter.telegram_at(start + timedelta(minutes=m)))))
    return out


def test_short_and_long_failures_counted_and_the_long_ones_duration_from_the_log() -> None:
    # The meter's log already holds a failure from last year: the meter's past, not recorded.
    old = (T - timedelta(days=300), 3600)
    meter = DsmrMeterSimulator("E1", None, HouseholdProfile(3), T, failure_log=[old])
    pq = PowerQuality()
    out = _run(pq, meter, T, 12, set())
    # A 40-second blip at 12:12 (short) and a 47-minute cut from 12:31:30 (long).
    meter.power_lost(T + timedelta(minutes=12, seconds=5))
    meter.power_restored(T + timedelta(minutes=12, seconds=45))
    out += _run(pq, meter, T + timedelta(minutes=13), 18, set())
    cut, back = T + timedelta(minutes=31, seconds=30), T + timedelta(minutes=78, seconds=30)
    meter.power_lost(cut)
    meter.power_restored(back)
    out += _run(pq, meter, T + timedelta(minutes=31), 70, set(range(48)))  # silent until 12:79
    got: dict[str, dict[int, int]] = {}
    for r in out:
        if r.obis in (SHORT, LONG, LOGGED):
            got.setdefault(str(r.obis), {})[(r.start - int(T.timestamp())) // 60] = r.value
    assert {o: {m: v for m, v in d.items() if v} for o, d in got.items()} == {
        "0-0:96.7.21": {10: 1},  # the blip, in 12:10-12:20
        # the period before a gap in the samples takes the gap's events: the cut's, 12:30-12:40
        "0-0:96.7.9": {30: 1},
        "0-0:96.7.19": {70: 47 * 60},  # the log's entry, at its end 13:18:30
    }
    # The counters' records are on the grid every period heard; the log's where a failure ended.
    assert sorted(got["0-0:96.7.21"]) == [0, 10, 20, 30, 70, 80, 90]  # none for 12:40-13:10
    (rec,) = [r for r in out if r.obis == LOGGED]
    assert rec.duration == 600 and rec.register_end == int(back.timestamp())


def test_two_long_failures_ending_in_one_period_are_one_record_of_their_sum() -> None:
    pq = PowerQuality()
    at = T + timedelta(minutes=1)
    entries = [(at + timedelta(minutes=2), 200), (at + timedelta(minutes=7), 250)]

    def log(t: datetime, upto: int) -> list:  # type: ignore[type-arg]
        rs = [Reading("E1", LONG, Decimal(upto), Unit.NONE, t)]
        rs += [Reading("E1", LOGGED, Decimal(s), Unit.S, end) for end, s in entries[:upto]]
        return pq.observe(rs)

    assert log(at, 0) == []  # first heard: nothing in the log yet
    assert log(at + timedelta(minutes=3), 1) == []  # the first, held until the period ends
    assert log(at + timedelta(minutes=8), 2) == []
    out = log(at + timedelta(minutes=10), 2)
    (rec,) = [r for r in out if r.obis == LOGGED]
    assert (rec.start, rec.value, rec.register_end) == (
        int(T.timestamp()),
        450,
        int(entries[1][0].timestamp()),
    )
    assert [r for r in log(at + timedelta(minutes=20), 2) if r.obis == LOGGED] == []  # seen: not again


def test_new_log_entries_listed_newest_first_all_count() -> None:
    """The DSMR example telegram lists its log newest first; two failures new at once (the hub
    was off through both) are both recorded, whatever the order."""
    pq = PowerQuality()
    first, second = T + timedelta(minutes=2), T + timedelta(minutes=8)
    pq.observe([Reading("E1", LONG, Decimal(0), Unit.NONE, T)])
    log = [
        Reading("E1", LOGGED, Decimal(400), Unit.S, second),
        Reading("E1", LOGGED, Decimal(200), Unit.S, first),
    ]
    out = pq.observe([Reading("E1", LONG, Decimal(2), Unit.NONE, T + timedelta(minutes=9)), *log])
    out += pq.observe([Reading("E1", LONG, Decimal(2), Unit.NONE, T + timedelta(minutes=10))])
    (rec,) = [r for r in out if r.obis == LOGGED]
    assert (rec.value, rec.register_end) == (600, int(second.timestamp()))


def test_a_power_cut_that_takes_the_hub_down_is_counted_when_it_restarts(tmp_path: Path) -> None:
    """The hub's summary outlives the hub: the counters and the log are taken up from its
    history (a real one on disk) by the hub assembly's own call, so the long failure that rose
    while the hub itself was off is counted, with the log's duration."""
    meter = DsmrMeterSimulator("E1", None, HouseholdProfile(3), T)
    history = HistoryStore(tmp_path / "history.sqlite")
    pq = from_history(history)
    history.append(_run(pq, meter, T, 25, set()))
    history.close()  # the hub goes down with its meter at 12:25
    meter.power_lost(T + timedelta(minutes=25))
    meter.power_restored(T + timedelta(minutes=60))
    history = HistoryStore(tmp_path / "history.sqlite")
    pq = from_history(history)  # back at 13:00
    out = _run(pq, meter, T + timedelta(minutes=60), 11, set())
    history.close()
    got = {str(r.obis): r.value for r in out if r.obis in (SHORT, LONG, LOGGED)}
    assert got == {"0-0:96.7.21": 0, "0-0:96.7.9": 1, "0-0:96.7.19": 35 * 60}
    # Without the history the restart would have taken the risen counter as its baseline.
    fresh = PowerQuality()
    out = _run(fresh, meter, T + timedelta(minutes=71), 11, set())
    assert {str(r.obis): r.value for r in out if r.obis in (LONG, LOGGED)} == {"0-0:96.7.9": 0}


def test_dlms_push_counters_reach_the_summary_through_the_default_mapping_table() -> None:
    """A DLMS push list that carries the power-failure and sag counters as registers without a
    scaler_unit (a count has none): the decoder names them by OBIS, the default translation
    table maps them (no unit: OBIS-native mapping needs one), the summary counts them. The body
    is the Blue Book's self-describing (logical name, value) layout, built here: no published
    HAN list with these registers was at hand."""
    table = MappingTable.default()
    pq = PowerQuality()
    out = []
    for minute, (short, long_, sags) in ((0, (5, 1, 7)), (4, (6, 1, 7)), (10, (6, 2, 9))):
        clock = bytes([0x07, 0xEA, 3, 2, 0xFF, 12, minute, 0, 0, 0, 0, 0])  # 2026-03-02 12:mm UTC
        body = (
            clock,
            (bytes([0, 0, 96, 7, 21, 255]), short),
            (bytes([0, 0, 96, 7, 9, 255]), long_),
            (bytes([1, 0, 32, 32, 0, 255]), sags),
        )
        points = notification_data_points("LGZ1", body)
        translation = table.translate(points, T + timedelta(minutes=minute))
        assert not translation.unmapped
        out += pq.observe(translation.readings)
    # The 12:00-12:10 period, written by the 12:10 push: each counter's advance up to it.
    assert {str(r.obis): (r.start, r.value) for r in out} == {
        "0-0:96.7.21": (int(T.timestamp()), 1),
        "0-0:96.7.9": (int(T.timestamp()), 1),
        "1-0:32.32.0": (int(T.timestamp()), 2),
    }
