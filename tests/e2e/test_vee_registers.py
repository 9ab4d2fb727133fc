"""Issue 20 item 1: the hubs' daily register reads reach the GDSC's VEE gate through real pulls.

A simulated fleet (real meters on the HAN, real hubs, 2030.5 over mutual TLS, the GDSC's collector
and store with the gate on): every hub serves each channel's register at every UTC midnight, so
each meter-day between two reads is checked against the register advance. One hub's history is
made to hold a half-hour that is not what the meter measured (its register moved less): that
day is quarantined by the interval-sum rule, everything else lands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from sqlalchemy import select

from smarthub.gdsc.readings.vee.tables import register_reads
from smarthub.hub.intervals import IntervalRecord
from smarthub.model.obis import IMPORT_ACTIVE_ENERGY
from smarthub.sim.demo import DemoConfig, run_day, setup, teardown

DAY = 86400
EXTRA_WH = 4000  # plausible for one half-hour (below the 11.5 kWh a 100 A supply allows)


async def test_a_day_altered_on_the_hub_is_held_by_the_interval_sum_and_the_clean_days_land(
    tmp_path: Path,
) -> None:
    cfg = DemoConfig(homes=2, days=2, seconds_per_day=12, seed=7, state=tmp_path)
    run = await setup(cfg)
    day0 = int(cfg.sim_start.timestamp())
    target = day0 + 2 * DAY - 1800  # day 2's last half-hour: pulled with the register closing it
    home = run.fleet.homes[0]
    history = home.hub.history
    stored = history.append
    altered: list[IntervalRecord] = []

    def append(records: Sequence[IntervalRecord]) -> int:
        """The hub's history as a faulty store would hold it: one half-hour of its electricity
        import worth EXTRA_WH more than the meter's register advanced (its register reads, the
        half-hours' register_end, stay the meter's)."""
        out = []
        for r in records:
            if r.obis == IMPORT_ACTIVE_ENERGY and r.start == target and not altered:
                r = replace(r, value=r.value + EXTRA_WH)
                altered.append(r)
            out.append(r)
        return stored(out)

    history.append = append  # type: ignore[method-assign]
    try:
        result = await run_day(run)
    finally:
        await teardown(run)
    assert len(altered) == 1
    bad = altered[0]
    channels = run.fleet.expected_channels()
    # The registers arrived: each channel's at the two midnights that close a day (the hubs began
    # at the first midnight, so day 1 has no opening read and is not checked).
    with run.store.engine.connect() as conn:
        reads = conn.execute(select(register_reads.c.hub_id, register_reads.c.read_at)).all()
    assert sorted(reads) == sorted((h, day0 + DAY * k) for h, _, _ in channels for k in (1, 2))
    # Every meter-day between two reads was checked; the altered one did not add up.
    assert result.vee_days_checked == len(channels) and result.vee_days_mismatched == 1
    everything = run.store.findings()
    # (an export channel of a home that generates nothing draws the stuck-meter suspicion: a flag)
    assert all(f["status"] != "held" for f in everything if f["rule"] != "interval_sum")
    findings = [f for f in everything if f["rule"] == "interval_sum"]
    assert {(f["hub_id"], f["meter_id"], f["obis"]) for f in findings} == {
        (home.spec.hub_id, bad.meter, str(IMPORT_ACTIVE_ENERGY))
    }
    # The end of day 2 came with its register (the hubs are pulled every half-hour): quarantined,
    # the altered half-hour with it; the part of the day stored by earlier pulls is flagged.
    held = {f["interval_start"]: f["value"] for f in findings if f["status"] == "held"}
    assert target in held and held[target] == bad.value
    assert set(held) <= set(range(day0 + DAY, day0 + 2 * DAY, 1800))
    flagged = [f for f in findings if f["action"] == "flag"]
    if len(held) < 48:
        assert [f["interval_start"] for f in flagged] == [day0 + DAY]
        assert "stored day: intervals add up to" in flagged[0]["evidence"]
    assert result.vee_held == len(held)
    # The clean days landed: everything but what was held.
    assert result.missing == len(held) and result.readings_stored == result.readings_expected - len(held)
    starts = run.store.channel_starts(day0, day0 + 2 * DAY)
    expected = set(range(day0, day0 + 2 * DAY, 1800)) - set(held)
    assert starts[(home.spec.hub_id, bad.meter, str(IMPORT_ACTIVE_ENERGY))] == expected
