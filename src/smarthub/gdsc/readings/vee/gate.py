"""The VEE gate: one pull's readings through the rules, split into what lands, what lands
flagged and what is quarantined. Pure: the caller supplies the clock reading, the meter
profiles, the last good register of each meter and a lookup of stored day totals.

What a pull carries (after :func:`smarthub.gdsc.readings.grouping.group_pull`):

* interval readings grouped per channel-day ``{(meter, obis, duration, uom, p10, day):
  {slot: (value, quality)}}`` — consumption per interval;
* register readings: rows of duration 0 — the meter's cumulative register (same OBIS as its
  interval channel) at an instant, normally each midnight UTC.

Rules per channel-day: timestamps in range, no negative consumption where export is
impossible, no interval beyond the connection's capacity, stuck-meter suspicion (flag). Per
register: monotonic with rollover, advance physically possible. Per register step that spans
whole days (midnight to midnight): the intervals of those days must add up to the advance —
from this pull, or from the store when they landed earlier. When they do not, the register is
blamed if it did not move while the intervals did (a stuck register), else the intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from operator import itemgetter

from smarthub.gdsc.readings.tables import DAY, GroupKey
from smarthub.gdsc.readings.vee import rules
from smarthub.gdsc.readings.vee.rules import MeterProfile

_VALUE = itemgetter(0)

# (meter, obis, at, value, uom, power_of_ten, quality): one register reading of a pull.
RegisterRow = tuple[str, str, int, int, int, int, int]
# (meter, obis, duration, start, value, other value, uom, power_of_ten, quality): a key that one
# pull carried twice with different values.
DuplicateRow = tuple[str, str, int, int, int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class Finding:
    """One reading a rule objected to. ``action``: "quarantine" (kept out of the store, held
    with the evidence) or "flag" (stored, marked questionable / reported)."""

    rule: str
    meter_id: str
    obis: str
    duration: int  # 0: a register reading
    start: int
    value: int
    power_of_ten: int
    uom: int
    quality: int
    evidence: str
    action: str = "quarantine"


@dataclass(slots=True)
class GateContext:
    now: int
    profiles: Mapping[str, MeterProfile] = field(default_factory=dict)  # meter id -> profile
    # (meter, obis) -> (at, value in base units): the newest good register the store holds.
    last_registers: Mapping[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
    # (meter, obis) -> (at, value in base units): the oldest stored register after this pull's
    # registers, when the pull brings late data (a gap filled between two stored registers).
    next_registers: Mapping[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
    # (meter, obis, day) -> (sum in base units, complete?) of stored intervals, or None.
    stored_day: Callable[[str, str, int], tuple[float, bool] | None] = lambda m, o, d: None
    # (meter, obis, day) -> {slot: value in base units} of the stored half-hours, or None: what
    # completes a day of which the pull brings only the end (a hub pulled every half-hour).
    stored_slots: Callable[[str, str, int], dict[int, float] | None] = lambda m, o, d: None
    max_age: int = 400 * DAY  # older data is refused (hubs keep 13 months)


@dataclass(slots=True)
class GateResult:
    findings: list[Finding] = field(default_factory=list)
    registers: list[RegisterRow] = field(default_factory=list)  # the good ones, to store
    days_checked: int = 0  # meter-days whose interval sum was compared with the register
    days_mismatched: int = 0
    checked: list[tuple[str, str, int]] = field(default_factory=list)  # (meter, obis, day) compared

    @property
    def quarantined(self) -> int:
        return sum(1 for f in self.findings if f.action == "quarantine")


def run(
    groups: dict[GroupKey, dict[int, tuple[int, int]]],
    registers: list[RegisterRow],
    duplicates: list[DuplicateRow],
    ctx: GateContext,
) -> GateResult:
    """Judge one pull. ``groups`` is changed in place: quarantined slots are removed (an
    emptied group is deleted) and flagged slots get the QUESTIONABLE quality bit."""
    res = GateResult()
    out = res.findings
    seen: set[tuple[str, str, int, int, int]] = set()
    for meter, obis, duration, start, value, other, uom, p10, quality in duplicates:
        day, rem = divmod(start, DAY)
        key = (meter, obis, duration, uom, p10, day)
        slots = groups.get(key)
        if slots is None:
            continue
        keep = _reconcile(slots, rem // duration, value, other, key, registers, ctx)
        if keep is None:
            slots.pop(rem // duration, None)
        else:
            slots[rem // duration] = (keep, quality)
        ev = f"the pull carried this interval twice, as {value} and {other}" + (
            "" if keep is None else f"; {keep} reconciles the day with its registers"
        )
        for v in (value, other):
            if v != keep and (meter, obis, duration, start, v) not in seen:
                seen.add((meter, obis, duration, start, v))
                out.append(
                    Finding("duplicate_differs", meter, obis, duration, start, v, p10, uom, quality, ev)
                )

    now, max_age = ctx.now, ctx.max_age
    for key in list(groups):
        meter, obis, duration, uom, p10, day = key
        slots = groups[key]
        profile = rules.profile_for(obis, ctx.profiles.get(meter))
        day_start = day * DAY
        bad: list[tuple[str, int, str]] = [
            ("timestamp", s, ev)
            for s, ev in rules.timestamp_faults(day_start, duration, slots, now, max_age=max_age)
        ]
        if profile is not None:
            scale = 10.0**p10
            export = profile.export_possible or rules.is_export(obis)
            bad += [("negative", s, ev) for s, ev in rules.negative_faults(slots, scale, export)]
            bad += [
                ("spike", s, ev) for s, ev in rules.spike_faults(slots, scale, duration, profile.max_rate)
            ]
        for rule, s, ev in bad:
            held = slots.pop(s, None)
            if held is not None:
                out.append(
                    Finding(
                        rule, meter, obis, duration, day_start + s * duration, held[0], p10, uom, held[1], ev
                    )
                )
        if profile is not None and rules.stuck_suspected(slots, DAY // duration, profile.stuck_after_slots):
            ev = f"{len(slots)} intervals of zero consumption in the day"
            for s, (v, q) in list(slots.items()):
                slots[s] = (v, q | rules.QUESTIONABLE)
                out.append(
                    Finding(
                        "stuck_suspected",
                        meter,
                        obis,
                        duration,
                        day_start + s * duration,
                        v,
                        p10,
                        uom,
                        q | rules.QUESTIONABLE,
                        ev,
                        "flag",
                    )
                )
        if not slots:
            del groups[key]
    if registers:
        _registers(groups, registers, ctx, res)
    return res


def _reconcile(
    slots: dict[int, tuple[int, int]],
    slot: int,
    value: int,
    other: int,
    key: GroupKey,
    registers: list[RegisterRow],
    ctx: GateContext,
) -> int | None:
    """Of two values a pull carried for one interval, the one with which the (otherwise
    complete) day adds up to its register advance — None when the registers cannot tell."""
    meter, obis, duration, _, p10, day = key
    if len(slots) != DAY // duration:
        return None
    start = ctx.last_registers.get((meter, obis))
    end = next((r for r in registers if r[0] == meter and r[1] == obis and r[2] == (day + 1) * DAY), None)
    profile = rules.profile_for(obis, ctx.profiles.get(meter))
    if start is None or start[0] != day * DAY or end is None or profile is None:
        return None
    advance = (end[3] * 10.0 ** end[5] - start[1]) % profile.register_modulus
    scale = 10.0**p10
    rest = (sum(v for v, _ in slots.values()) - slots[slot][0]) * scale
    tol = rules.sum_tolerance(profile, len(slots))
    fits = [v for v in (value, other) if abs(rest + v * scale - advance) <= tol]
    return fits[0] if len(fits) == 1 else None


def _registers(
    groups: dict[GroupKey, dict[int, tuple[int, int]]],
    registers: list[RegisterRow],
    ctx: GateContext,
    res: GateResult,
) -> None:
    """Registers: timestamps, monotonicity and rollover, then interval sum vs advance.

    Two passes: the first measures every register step's span (interval total vs advance)
    of every channel of the hub; the second blames. When a register did not move while the
    intervals did, the register is blamed (a stuck register reading) — unless another channel
    of the same hub mismatches over the same days: two channels wrong on one day are swapped
    or mislabelled intervals, and a home with its gas off has a still gas register."""
    by_channel: dict[tuple[str, str], list[RegisterRow]] = {}
    for row in registers:
        by_channel.setdefault((row[0], row[1]), []).append(row)
    # The interval channels of each (meter, obis) in this pull, by day: the finest duration.
    days: dict[tuple[str, str], dict[int, GroupKey]] = {}
    for key in groups:
        per = days.setdefault((key[0], key[1]), {})
        held = per.get(key[5])
        if held is None or key[2] < held[2]:
            per[key[5]] = key
    now = ctx.now
    plans: list[tuple[str, str, MeterProfile, list[tuple[RegisterRow, rules.RegisterStep]], int | None]] = []
    for (meter, obis), rows in by_channel.items():
        profile = rules.profile_for(obis, ctx.profiles.get(meter))
        rows.sort(key=lambda r: r[2])
        ahead = [r for r in rows if r[2] > now + 300 or r[2] < now - ctx.max_age]
        for r in ahead:
            ev = f"register read at {r[2]} is out of range (now {now})"
            res.findings.append(Finding("timestamp", meter, obis, 0, r[2], r[3], r[5], r[4], r[6], ev))
        live = [r for r in rows if r not in ahead]
        if profile is None:  # a medium without limits: stored as given
            res.registers.extend(live)
            continue
        last = ctx.last_registers.get((meter, obis))
        judged = rules.register_steps([(r[2], r[3] * 10.0 ** r[5]) for r in live], last, profile)
        plans.append((meter, obis, profile, list(zip(live, judged, strict=True)), last[0] if last else None))
    # Pass 1: which days mismatch on which channel (every good step taken as the reference).
    mismatched: dict[int, set[tuple[str, str]]] = {}
    measured: dict[tuple[str, str, int | None, int], tuple[float, float, int, str | None] | None] = {}
    for meter, obis, profile, steps, prev_at in plans:
        for r, step in steps:
            if step.fault is not None:
                continue
            span = measured[(meter, obis, prev_at, r[2])] = _measure(
                groups, days.get((meter, obis), {}), meter, obis, prev_at, r[2], step, profile, ctx
            )
            if span is not None and span[3] is not None:
                for day in range(prev_at // DAY, r[2] // DAY):  # type: ignore[operator]
                    mismatched.setdefault(day, set()).add((meter, obis))
            prev_at = r[2]
    # Pass 2: blame.
    for meter, obis, profile, steps, prev_at in plans:
        for r, step in steps:
            if step.fault is not None:
                res.findings.append(
                    Finding("register", meter, obis, 0, r[2], r[3], r[5], r[4], r[6], step.fault)
                )
                continue
            pulled = days.get((meter, obis), {})
            k = (meter, obis, prev_at, r[2])
            span = (
                measured[k]
                if k in measured
                else _measure(groups, pulled, meter, obis, prev_at, r[2], step, profile, ctx)
            )
            if span is not None:
                total, tol, n_days, fault = span
                res.days_checked += n_days
                res.checked.extend((meter, obis, d) for d in range(r[2] // DAY - n_days, r[2] // DAY))
                if fault is not None:
                    res.days_mismatched += n_days
                    assert prev_at is not None
                    alone = all(
                        mismatched.get(d, set()) <= {(meter, obis)}
                        for d in range(prev_at // DAY, r[2] // DAY)
                    )
                    stuck = abs(step.advance or 0.0) <= tol and total > tol
                    if alone and (stuck or step.rollover):
                        ev = (
                            f"register did not advance while the intervals add up to {total:g}"
                            if stuck
                            else f"register rolled over to {r[3]} but the intervals do not fit: {fault}"
                        )
                        res.findings.append(
                            Finding("register_stuck", meter, obis, 0, r[2], r[3], r[5], r[4], r[6], ev)
                        )
                        continue
                    _hold_days(groups, pulled, meter, obis, prev_at, r[2], fault, res)
            res.registers.append(r)
            prev_at = r[2]
        nxt = ctx.next_registers.get((meter, obis))
        if nxt is not None and prev_at is not None and steps and steps[-1][0][2] == prev_at:
            # Late data between stored registers: the span up to the next stored one too.
            final = steps[-1][0]
            (after,) = rules.register_steps([nxt], (prev_at, final[3] * 10.0 ** final[5]), profile)
            span = _measure(
                groups, days.get((meter, obis), {}), meter, obis, prev_at, nxt[0], after, profile, ctx
            )
            if span is not None:
                res.days_checked += span[2]
                res.checked.extend((meter, obis, d) for d in range(prev_at // DAY, nxt[0] // DAY))
                if span[3] is not None:
                    res.days_mismatched += span[2]
                    _hold_days(
                        groups, days.get((meter, obis), {}), meter, obis, prev_at, nxt[0], span[3], res
                    )


def _measure(
    groups: dict[GroupKey, dict[int, tuple[int, int]]],
    pulled: dict[int, GroupKey],
    meter: str,
    obis: str,
    t0: int | None,
    t1: int,
    step: rules.RegisterStep,
    profile: MeterProfile,
    ctx: GateContext,
) -> tuple[float, float, int, str | None] | None:
    """(interval total, tolerance, days, mismatch evidence or None) over the whole days (t0,
    t1], or None when the step does not span whole days or a day's intervals are unknown."""
    if step.advance is None or t0 is None or t0 % DAY or t1 % DAY:
        return None
    total = 0.0
    n = 0
    complete = True
    for day in range(t0 // DAY, t1 // DAY):
        key = pulled.get(day)
        if key is not None:
            slots = groups.get(key)
            if slots is None:
                return None  # held by an earlier step
            total += sum(map(_VALUE, slots.values())) * 10.0 ** key[4]
            n += len(slots)
            if len(slots) < DAY // key[2] and key[2] == 1800:
                # The day's earlier half-hours landed with earlier pulls: they count too, so a
                # day is checked whole however often its hub is pulled.
                earlier = ctx.stored_slots(meter, obis, day) or {}
                extra = [v for slot, v in earlier.items() if slot not in slots]
                total += sum(extra)
                n += len(extra)
                complete = complete and len(slots) + len(extra) == DAY // key[2]
                continue
            complete = complete and len(slots) == DAY // key[2]
            continue
        stored = ctx.stored_day(meter, obis, day)
        if stored is None:
            return None  # a day with nothing known: nothing to compare
        total += stored[0]
        complete = complete and stored[1]
        n += 48
    tol = rules.sum_tolerance(profile, n)
    return total, tol, t1 // DAY - t0 // DAY, rules.interval_sum_fault(total, step.advance, tol, complete)


def _hold_days(
    groups: dict[GroupKey, dict[int, tuple[int, int]]],
    pulled: dict[int, GroupKey],
    meter: str,
    obis: str,
    t0: int,
    t1: int,
    fault: str,
    res: GateResult,
) -> None:
    """The intervals are blamed: quarantine the pulled days; a stored day, or the stored part of
    a day the pull ends, is flagged (it is truth already: an operator edits it)."""
    for day in range(t0 // DAY, t1 // DAY):
        key = pulled.get(day)
        if key is None or len(groups.get(key, {})) < DAY // key[2]:
            res.findings.append(
                Finding(
                    "interval_sum", meter, obis, 1800, day * DAY, 0, 0, 0, 0, f"stored day: {fault}", "flag"
                )
            )
            if key is None:
                continue
        slots = groups.pop(key, {})
        m, o, duration, uom, p10, _ = key
        for s, (v, q) in slots.items():
            res.findings.append(
                Finding("interval_sum", m, o, duration, day * DAY + s * duration, v, p10, uom, q, fault)
            )


__all__ = ["DuplicateRow", "Finding", "GateContext", "GateResult", "RegisterRow", "run"]
