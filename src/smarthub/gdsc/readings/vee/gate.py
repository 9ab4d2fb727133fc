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

from smarthub.gdsc.readings.tables import DAY, GroupKey
from smarthub.gdsc.readings.vee import rules
from smarthub.gdsc.readings.vee.rules import MeterProfile

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
    # (meter, obis, day) -> (sum in base units, complete?) of stored intervals, or None.
    stored_day: Callable[[str, str, int], tuple[float, bool] | None] = lambda m, o, d: None
    max_age: int = 400 * DAY  # older data is refused (hubs keep 13 months)


@dataclass(slots=True)
class GateResult:
    findings: list[Finding] = field(default_factory=list)
    registers: list[RegisterRow] = field(default_factory=list)  # the good ones, to store
    days_checked: int = 0  # meter-days whose interval sum was compared with the register
    days_mismatched: int = 0

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
    for meter, obis, duration, start, value, other, uom, p10, quality in duplicates:
        day, slot = divmod(start, DAY)
        slots = groups.get((meter, obis, duration, uom, p10, day))
        if slots is not None:
            slots.pop(slot // duration, None)
        ev = f"the pull carried this interval twice, as {value} and {other}"
        out.append(Finding("duplicate_differs", meter, obis, duration, start, value, p10, uom, quality, ev))
        out.append(Finding("duplicate_differs", meter, obis, duration, start, other, p10, uom, quality, ev))

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
            for s, (v, q) in list(slots.items()):
                slots[s] = (v, q | rules.QUESTIONABLE)
            out.append(
                Finding(
                    "stuck_suspected",
                    meter,
                    obis,
                    duration,
                    day_start,
                    0,
                    p10,
                    uom,
                    rules.QUESTIONABLE,
                    f"{len(slots)} intervals of zero consumption in the day",
                    "flag",
                )
            )
        if not slots:
            del groups[key]
    if registers:
        _registers(groups, registers, ctx, res)
    return res


def _registers(
    groups: dict[GroupKey, dict[int, tuple[int, int]]],
    registers: list[RegisterRow],
    ctx: GateContext,
    res: GateResult,
) -> None:
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
    for (meter, obis), rows in by_channel.items():
        profile = rules.profile_for(obis, ctx.profiles.get(meter))
        rows.sort(key=lambda r: r[2])
        scale = [10.0 ** r[5] for r in rows]
        kept_rows: list[RegisterRow] = []
        good: list[tuple[RegisterRow, rules.RegisterStep]] = []
        ahead = [r for r in rows if r[2] > now + 300 or r[2] < now - ctx.max_age]
        for r in ahead:
            res.findings.append(
                Finding(
                    "timestamp",
                    meter,
                    obis,
                    0,
                    r[2],
                    r[3],
                    r[5],
                    r[4],
                    r[6],
                    f"register read at {r[2]} is out of range (now {now})",
                )
            )
        if profile is None:  # a medium without limits: stored as given
            res.registers.extend(r for r in rows if r not in ahead)
            continue
        live = [(r, s) for r, s in zip(rows, scale, strict=True) if r not in ahead]
        last = ctx.last_registers.get((meter, obis))
        steps = rules.register_steps([(r[2], r[3] * s) for r, s in live], last, profile)
        prev_at = last[0] if last is not None else None
        for (r, _), step in zip(live, steps, strict=True):
            if step.fault is not None:
                res.findings.append(
                    Finding("register", meter, obis, 0, r[2], r[3], r[5], r[4], r[6], step.fault)
                )
                continue
            if step.advance is not None and prev_at is not None and prev_at % DAY == 0 and r[2] % DAY == 0:
                fault = _span(
                    groups,
                    days.get((meter, obis), {}),
                    meter,
                    obis,
                    prev_at,
                    r[2],
                    step.advance,
                    profile,
                    ctx,
                    res,
                )
                if fault is not None:  # the register itself is blamed
                    res.findings.append(
                        Finding("register_stuck", meter, obis, 0, r[2], r[3], r[5], r[4], r[6], fault)
                    )
                    continue
            kept_rows.append(r)
            good.append((r, step))
            prev_at = r[2]
        res.registers.extend(kept_rows)


def _span(
    groups: dict[GroupKey, dict[int, tuple[int, int]]],
    pulled: dict[int, GroupKey],
    meter: str,
    obis: str,
    t0: int,
    t1: int,
    advance: float,
    profile: MeterProfile,
    ctx: GateContext,
    res: GateResult,
) -> str | None:
    """Interval sum vs register advance over the whole days (t0, t1]. Returns the evidence when
    the register is to blame; quarantines (or flags, if stored) the intervals when they are."""
    total = 0.0
    n = 0
    complete = True
    for day in range(t0 // DAY, t1 // DAY):
        key = pulled.get(day)
        if key is not None:
            slots = groups[key]
            scale = 10.0 ** key[4]
            total += sum(v for v, _ in slots.values()) * scale
            n += len(slots)
            complete = complete and len(slots) == DAY // key[2]
            continue
        stored = ctx.stored_day(meter, obis, day)
        if stored is None:
            return None  # a day with nothing known: nothing to compare
        total += stored[0]
        complete = complete and stored[1]
        n += 48
    res.days_checked += t1 // DAY - t0 // DAY
    tol = rules.sum_tolerance(profile, n)
    fault = rules.interval_sum_fault(total, advance, tol, complete)
    if fault is None:
        return None
    res.days_mismatched += t1 // DAY - t0 // DAY
    if abs(advance) <= tol and total > tol:
        return f"register did not advance while the intervals add up to {total:g}"
    for day in range(t0 // DAY, t1 // DAY):
        key = pulled.get(day)
        if key is None:
            res.findings.append(
                Finding(
                    "interval_sum", meter, obis, 1800, day * DAY, 0, 0, 0, 0, f"stored day: {fault}", "flag"
                )
            )
            continue
        slots = groups.pop(key)
        m, o, duration, uom, p10, _ = key
        for s, (v, q) in slots.items():
            res.findings.append(
                Finding("interval_sum", m, o, duration, day * DAY + s * duration, v, p10, uom, q, fault)
            )
    return None


__all__ = ["DuplicateRow", "Finding", "GateContext", "GateResult", "RegisterRow", "run"]
