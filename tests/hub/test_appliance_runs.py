"""The hub's appliance-run counter (``smarthub.hub.appliance_runs``): a smart plug's demand samples
become starts and seconds run per half-hour, written when a later half-hour's sample arrives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from smarthub.hub.appliance_runs import ApplianceRuns, from_history
from smarthub.hub.history import HistoryStore
from smarthub.hub.intervals import IntervalRecord
from smarthub.model.obis import IMPORT_ACTIVE_ENERGY, IMPORT_ACTIVE_POWER
from smarthub.model.reading import Reading, Unit
from smarthub.model.reading_type import (
    APPLIANCE_RUN_SECONDS,
    APPLIANCE_STARTS,
    interval_spec,
    obis_for_interval,
    run_channels,
)

T0 = datetime(2026, 3, 2, 6, tzinfo=UTC)  # a half-hour boundary
PLUG = "00:0d:6f:02:00:01:03:20"


def demand(minute: float, watts: float, meter: str = PLUG, unit: Unit = Unit.W) -> Reading:
    return Reading(meter, IMPORT_ACTIVE_POWER, Decimal(str(watts)), unit, T0 + timedelta(minutes=minute))


def by_channel(records: list[IntervalRecord]) -> dict[tuple[int, str], int]:
    """(minutes after T0 of the half-hour, "starts" | "seconds") → value."""
    names = {APPLIANCE_STARTS: "starts", APPLIANCE_RUN_SECONDS: "seconds"}
    return {
        ((r.start - int(T0.timestamp())) // 60, names[r.obis]): r.value
        for r in records
        if r.duration == 1800 and r.meter == PLUG
    }


def test_short_runs_are_counted_per_half_hour_from_two_minute_samples() -> None:
    runs = ApplianceRuns(lambda m: m == PLUG)
    # A compressor at 2 kW over a 30 W controller: 4 minutes on in every 10, read every 2 minutes.
    samples = [demand(m, 2000.0 if m % 10 < 4 else 30.0) for m in range(0, 62, 2)]
    out = runs.observe(samples)
    got = by_channel(out)
    # Half-hour 06:00: on at 0 (its first sample: state known, start not), 10, 20 → 2 starts;
    # on from 0-4, 10-14, 20-24 → 720 s. Half-hour 06:30: starts at 30, 40, 50 → 3, 720 s.
    assert got == {(0, "starts"): 2, (0, "seconds"): 720, (30, "starts"): 3, (30, "seconds"): 720}
    # The half-hour from 07:00 is being summed: not written until a later one's sample.
    assert runs.observe([demand(92, 30.0)]) and by_channel(runs.observe([demand(95, 30.0)])) == {}


def test_a_run_across_a_boundary_splits_its_seconds_and_counts_one_start() -> None:
    runs = ApplianceRuns(lambda m: True)
    out = runs.observe(
        [demand(20, 5.0), demand(25, 1500.0), demand(35, 1500.0), demand(40, 5.0), demand(61, 5.0)]
    )
    assert by_channel(out) == {
        (0, "starts"): 1, (0, "seconds"): 300, (30, "starts"): 0, (30, "seconds"): 600,
    }  # fmt: skip


def test_hysteresis_a_modulating_compressor_dipping_under_the_threshold_is_one_run() -> None:
    runs = ApplianceRuns(lambda m: True)
    # Peak 2 kW: a run starts at 400 W (a fifth), and ends below 200 W; 300 W keeps it going.
    watts = [5, 2000, 300, 350, 300, 150, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10]
    out = runs.observe([demand(2 * i, w) for i, w in enumerate(watts)])
    assert by_channel(out) == {(0, "starts"): 1, (0, "seconds"): 8 * 60}


def test_a_silence_is_unknown_late_samples_are_dropped_and_only_plugs_are_watched() -> None:
    runs = ApplianceRuns(lambda m: m == PLUG)
    out = runs.observe(
        [
            demand(0, 5.0),
            demand(2, 900.0, unit=Unit.W),
            demand(1, 5.0),  # older than the last: dropped
            demand(4, 0.9, unit=Unit.KW),  # kW as ZigBee reports it: still running
            demand(4, 900.0, meter="E1"),  # a supply meter: not watched
            # Silent from 06:04 to 07:10 (unreachable): nothing counted in between, and the
            # half-hour 06:30 (never sampled) is not written at all.
            demand(70, 900.0),
            demand(72, 5.0),
            demand(92, 5.0),
        ]
    )
    assert runs.late == 1
    # 06:02-06:04 running (120 s); from 07:10 to 07:12 running again, no start counted (unknown when)
    assert by_channel(out) == {(0, "starts"): 1, (0, "seconds"): 120, (60, "starts"): 0, (60, "seconds"): 120}
    assert {r.meter for r in out} == {PLUG}
    # Energy readings and interval readings are not demand.
    energy = Reading(PLUG, IMPORT_ACTIVE_ENERGY, Decimal(5), Unit.WH, T0 + timedelta(hours=2))
    assert runs.observe([energy]) == []


def test_the_run_channels_have_a_reading_type_of_their_own() -> None:
    assert run_channels() == {APPLIANCE_STARTS, APPLIANCE_RUN_SECONDS}
    for obis in run_channels():
        spec = interval_spec(obis)
        back = obis_for_interval(
            spec.commodity, spec.flow_direction, spec.uom, kind=spec.kind, qualifier=spec.data_qualifier
        )
        assert back == obis


def test_the_largest_demand_outlives_a_restart_through_the_history(tmp_path: Path) -> None:
    history = HistoryStore(tmp_path / "history.sqlite")
    runs = ApplianceRuns(lambda m: True)
    history.append(runs.observe([demand(m, 2000.0 if m < 6 else 30.0) for m in range(0, 32, 2)]))
    # Restarted: the 30 W standby is not running (a fifth of 2 kW is the threshold), so the
    # compressor's next start counts; a counter without the history takes the standby for a run.
    again = from_history(history, lambda m: True)
    blank = ApplianceRuns(lambda m: True)
    samples = [demand(m, 2000.0 if 40 <= m < 46 else 30.0) for m in range(34, 62, 2)]
    assert by_channel(again.observe(samples)) == {(30, "starts"): 1, (30, "seconds"): 360}
    # (the standby from 06:34 and the run after it are one run, no start: fewer starts, never more)
    assert by_channel(blank.observe(samples)) == {(30, "starts"): 0, (30, "seconds"): 720}
    history.close()
