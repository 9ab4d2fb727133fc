"""The pure VEE rules, gate and estimation: no database."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smarthub.gdsc.readings.vee import estimate, gate, rules

DAY = 86400
D0 = 20_000  # a day number
T0 = D0 * DAY
ELEC = rules.electricity_profile("E1", max_current_a=100)  # 23 kW
GAS = rules.gas_profile("G4")


def day(values: list[int], q: int = 1) -> dict[int, tuple[int, int]]:
    return {i: (v, q) for i, v in enumerate(values)}


def test_gas_conversion_follows_the_gb_formula() -> None:
    # 100 m³ at CV 39.5 MJ/m³: 100 × 1.02264 × 39.5 / 3.6 = 1122.0633… kWh
    assert rules.gas_kwh(100, "39.5") == Decimal(100) * Decimal("1.02264") * Decimal("39.5") / Decimal("3.6")
    assert round(rules.gas_kwh(100, "39.5"), 2) == Decimal("1122.06")
    with pytest.raises(ValueError, match="negative"):
        rules.gas_kwh(-1, 39)
    with pytest.raises(ValueError, match="calorific"):
        rules.gas_kwh(1, 3.9)


def test_spike_beyond_the_connection_is_a_fault_and_capacity_itself_is_not() -> None:
    limit = 23000 * 1800 // 3600  # Wh a 100 A single-phase supply passes in half an hour
    faults = rules.spike_faults({0: (limit, 1), 1: (limit + 1, 1)}, 1.0, 1800, ELEC.max_rate)
    assert [s for s, _ in faults] == [1]
    assert "capacity" in faults[0][1]


def test_negative_consumption_only_where_export_is_impossible() -> None:
    assert [s for s, _ in rules.negative_faults({0: (-5, 1), 1: (5, 1)}, 1.0, False)] == [0]
    assert rules.negative_faults({0: (-5, 1)}, 1.0, True) == []


def test_timestamps_in_the_future_or_too_old() -> None:
    now = T0 + 10 * 1800
    faults = rules.timestamp_faults(T0, 1800, day([1] * 48), now, max_age=400 * DAY)
    assert [s for s, _ in faults] == list(range(10, 48))
    assert rules.timestamp_faults(T0, 1800, day([1] * 48), T0 + DAY, max_age=400 * DAY) == []
    old = rules.timestamp_faults(T0, 1800, day([1] * 2), T0 + 401 * DAY, max_age=400 * DAY)
    assert [s for s, _ in old] == [0, 1] and "older" in old[0][1]


def test_register_monotonic_with_rollover_and_capacity() -> None:
    p = rules.electricity_profile("E", digits=6)  # rolls over at 10^9 Wh
    modulus = p.register_modulus
    steps = rules.register_steps(
        [(T0 + DAY, modulus - 1000), (T0 + 2 * DAY, 4000), (T0 + 3 * DAY, 3000), (T0 + 4 * DAY, 9000)],
        (T0, modulus - 9000),
        p,
    )
    assert [s.fault is None for s in steps] == [True, True, False, True]
    assert steps[1].rollover and steps[1].advance == 5000
    assert "fell" in (steps[2].fault or "")
    assert steps[3].advance == 5000  # judged against the last good one, not the refused one
    fast = rules.register_steps([(T0 + 3600, 10**6)], (T0, 0), p)
    assert "capacity" in (fast[0].fault or "")


def test_interval_sum_within_resolution() -> None:
    tol = rules.sum_tolerance(ELEC, 48)
    assert rules.interval_sum_fault(1000, 1000 + tol, tol, True) is None
    assert rules.interval_sum_fault(1000, 1002, tol, True) is not None
    assert rules.interval_sum_fault(900, 1000, tol, False) is None  # gaps: can only fall short
    assert rules.interval_sum_fault(1100, 1000, tol, False) is not None


def test_stuck_is_a_suspicion_after_a_full_day_of_zeros() -> None:
    assert rules.stuck_suspected(day([0] * 48), 48, 48)
    assert not rules.stuck_suspected(day([0] * 47 + [1]), 48, 48)
    assert not rules.stuck_suspected(day([0] * 48), 48, None)


def _pull(values: list[int], meter: str = "E1", obis: str = "1-0:1.8.0", d: int = D0):
    return {(meter, obis, 1800, 72, 0, d): day(values)}


def test_gate_quarantines_the_bad_and_keeps_the_good_neighbours() -> None:
    vals = [100] * 48
    vals[5] = 50_000  # beyond 11.5 kWh per half hour
    vals[6] = -3
    groups = _pull(vals)
    res = gate.run(groups, [], [], gate.GateContext(now=T0 + 2 * DAY))
    assert sorted((f.rule, f.start) for f in res.findings) == [
        ("negative", T0 + 6 * 1800),
        ("spike", T0 + 5 * 1800),
    ]
    assert len(groups[("E1", "1-0:1.8.0", 1800, 72, 0, D0)]) == 46


def test_gate_interval_sum_blames_intervals_or_a_stuck_register() -> None:
    vals = [100] * 48
    # Registers at both midnights agree with the intervals: checked, nothing found.
    ok = _pull(vals)
    regs = [("E1", "1-0:1.8.0", T0 + DAY, 10_000 + 4800, 72, 0, 1)]
    ctx = gate.GateContext(now=T0 + 2 * DAY, last_registers={("E1", "1-0:1.8.0"): (T0, 10_000.0)})
    res = gate.run(ok, list(regs), [], ctx)
    assert res.findings == [] and res.days_checked == 1 and res.registers == regs
    # Swapped values for the day: the register's advance is plausible, the intervals are blamed.
    swapped = _pull([300] * 48)
    res = gate.run(swapped, list(regs), [], ctx)
    assert {f.rule for f in res.findings} == {"interval_sum"} and len(res.findings) == 48 and swapped == {}
    assert res.registers == regs
    # A register that did not move while the intervals did: the register is blamed.
    stuck = _pull(vals)
    frozen = [("E1", "1-0:1.8.0", T0 + DAY, 10_000, 72, 0, 1)]
    res = gate.run(stuck, frozen, [], ctx)
    assert [f.rule for f in res.findings] == ["register_stuck"] and res.registers == []
    assert len(stuck[("E1", "1-0:1.8.0", 1800, 72, 0, D0)]) == 48


def test_gate_swapped_channels_blame_the_intervals_even_where_a_register_stood_still() -> None:
    # A home with its gas off: its gas register does not move. The day's electricity and gas
    # intervals arrive swapped: both channels mismatch, so the intervals are held, not the register.
    groups = {
        ("E1", "1-0:1.8.0", 1800, 72, 0, D0): day([0] * 48),
        ("G1", "7-0:3.0.0", 1800, 42, -3, D0): day([100] * 48),
    }
    regs = [
        ("E1", "1-0:1.8.0", T0 + DAY, 10_000 + 4800, 72, 0, 1),
        ("G1", "7-0:3.0.0", T0 + DAY, 5000, 42, -3, 1),
    ]
    last = {("E1", "1-0:1.8.0"): (T0, 10_000.0), ("G1", "7-0:3.0.0"): (T0, 5.0)}
    res = gate.run(groups, list(regs), [], gate.GateContext(now=T0 + 2 * DAY, last_registers=last))
    assert {f.rule for f in res.findings if f.action == "quarantine"} == {"interval_sum"}
    assert sorted(res.registers) == sorted(regs) and groups == {}


def test_gate_uses_stored_days_across_pulls() -> None:
    regs = [("E1", "1-0:1.8.0", T0 + 2 * DAY, 10_000, 72, 0, 1)]  # frozen for two days
    ctx = gate.GateContext(
        now=T0 + 3 * DAY,
        last_registers={("E1", "1-0:1.8.0"): (T0, 10_000.0)},
        stored_day=lambda m, o, d: (4800.0, True),
    )
    res = gate.run({}, regs, [], ctx)
    assert [f.rule for f in res.findings] == ["register_stuck"] and res.days_checked == 2


def test_gate_duplicates_with_differing_values_are_both_held() -> None:
    groups = _pull([100] * 48)
    dup = ("E1", "1-0:1.8.0", 1800, T0 + 3 * 1800, 100, 900, 72, 0, 1)
    res = gate.run(groups, [], [dup], gate.GateContext(now=T0 + 2 * DAY))
    assert [(f.rule, f.value) for f in res.findings] == [
        ("duplicate_differs", 100),
        ("duplicate_differs", 900),
    ]
    assert 3 not in groups[("E1", "1-0:1.8.0", 1800, 72, 0, D0)]


def test_gate_flags_a_stuck_meter_but_stores_it() -> None:
    groups = _pull([0] * 48)
    res = gate.run(groups, [], [], gate.GateContext(now=T0 + 2 * DAY))
    assert {(f.rule, f.action) for f in res.findings} == {("stuck_suspected", "flag")} and len(
        res.findings
    ) == 48
    assert all(q & rules.QUESTIONABLE for _, q in groups[("E1", "1-0:1.8.0", 1800, 72, 0, D0)].values())


def test_gas_spike_uses_the_meter_flow_limit() -> None:
    groups = {("G1", "7-0:3.0.0", 1800, 42, -3, D0): {0: (3000, 1), 1: (3001, 1)}}  # dm³; G4: 3 m³ per 30 min
    res = gate.run(groups, [], [], gate.GateContext(now=T0 + 2 * DAY, profiles={"G1": GAS}))
    assert [(f.rule, f.value) for f in res.findings] == [("spike", 3001)]


def test_estimation_short_gap_linear_between_registers() -> None:
    slots = {s: (100, 1) for s in range(48) if s not in (10, 11, 12)}
    got = estimate.fill(slots, 48, missing_energy=301, references=[])
    assert {s for s in got} == {10, 11, 12}
    assert sum(v for v, _ in got.values()) == 301 and {m for _, m in got.values()} == {"linear"}
    # Without registers: linear between the neighbours.
    slots2 = {s: (100 if s < 10 else 400, 1) for s in range(48) if s not in (10, 11, 12)}
    got2 = estimate.fill(slots2, 48, None, [])
    assert [got2[s][0] for s in (10, 11, 12)] == [175, 250, 325]


def test_estimation_long_gap_follows_the_weekday_profile_scaled_to_the_registers() -> None:
    ref = {s: (50 if s < 24 else 150, 1) for s in range(48)}
    slots = {s: (100, 1) for s in range(48) if not 12 <= s < 36}
    got = estimate.fill(slots, 48, missing_energy=4800, references=[ref, ref])
    assert sum(v for v, _ in got.values()) == 4800
    assert {m for _, m in got.values()} == {"profile"}
    assert got[30][0] == 3 * got[13][0]  # the shape of the reference days


_values = st.integers(min_value=-(10**6), max_value=10**7)


@settings(max_examples=300, deadline=None)
@given(
    elec=st.dictionaries(st.integers(0, 47), _values, max_size=48),
    gas=st.dictionaries(st.integers(0, 47), _values, max_size=48),
    reg_e=st.one_of(st.none(), st.integers(0, 10**9)),
    reg_g=st.one_of(st.none(), st.integers(0, 10**8)),
    start_e=st.one_of(st.none(), st.integers(0, 10**9)),
    now_offset=st.integers(-2 * DAY, 3 * DAY),
    dup=st.one_of(st.none(), st.tuples(st.integers(0, 47), _values)),
)
def test_gate_conserves_every_reading(elec, gas, reg_e, reg_g, start_e, now_offset, dup) -> None:
    """Whatever a pull holds, the gate never fails and every interval ends up exactly once:
    kept (possibly flagged) or in a quarantine finding; every register kept or held."""
    groups = {}
    if elec:
        groups[("E1", "1-0:1.8.0", 1800, 72, 0, D0)] = {s: (v, 1) for s, v in elec.items()}
    if gas:
        groups[("G1", "7-0:3.0.0", 1800, 42, -3, D0)] = {s: (v, 1) for s, v in gas.items()}
    before = {(k[0], s, v) for k, slots in groups.items() for s, (v, _) in slots.items()}
    regs = []
    if reg_e is not None:
        regs.append(("E1", "1-0:1.8.0", T0 + DAY, reg_e, 72, 0, 1))
    if reg_g is not None:
        regs.append(("G1", "7-0:3.0.0", T0 + DAY, reg_g, 42, -3, 1))
    dups = []
    if dup is not None and elec and dup[0] in elec and dup[1] != elec[dup[0]]:
        dups.append(("E1", "1-0:1.8.0", 1800, T0 + dup[0] * 1800, elec[dup[0]], dup[1], 72, 0, 1))
    last = {("E1", "1-0:1.8.0"): (T0, float(start_e))} if start_e is not None else {}
    ctx = gate.GateContext(now=T0 + DAY + now_offset, last_registers=last)
    res = gate.run(groups, list(regs), dups, ctx)
    kept = {(k[0], s, v) for k, slots in groups.items() for s, (v, _) in slots.items()}
    held = {
        (f.meter_id, (f.start - T0) // 1800, f.value)
        for f in res.findings
        if f.action == "quarantine" and f.duration
    }
    assert kept | held >= before
    assert not kept & held
    reg_held = {(f.meter_id, f.value) for f in res.findings if f.action == "quarantine" and not f.duration}
    assert {(r[0], r[3]) for r in res.registers} | reg_held == {(r[0], r[3]) for r in regs}
