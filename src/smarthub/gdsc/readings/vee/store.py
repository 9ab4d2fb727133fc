"""The VEE part of the store: the gate around ingest, estimation of gaps, operator edits with
day versions, and the data-quality figures. The rules themselves are pure (:mod:`.rules`,
:mod:`.gate`, :mod:`.estimate`); this module reads what they need and writes what they decide.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, insert, select, text, tuple_, update

from smarthub.gdsc.db.database import DAY, Database
from smarthub.gdsc.readings import interval_block
from smarthub.gdsc.readings.grouping import Tally, group_pull
from smarthub.gdsc.readings.tables import (
    HUB_LOCKS,
    LOCK_HUBS,
    GroupKey,
    Readings,
    interval_blocks,
    interval_channels,
)
from smarthub.gdsc.readings.vee import edits, estimate, gate, rules
from smarthub.gdsc.readings.vee.rules import MeterProfile
from smarthub.gdsc.readings.vee.tables import (
    meter_models,
    register_reads,
    vee_estimates,
    vee_findings,
)


@dataclass(slots=True)
class VeeSettings:
    """How the gate judges: the clock (unix seconds), the physical limits per meter model, and
    how old data may be. Meters without a model get the defaults of their medium."""

    now: Callable[[], int]
    models: dict[str, MeterProfile] = field(default_factory=dict)
    max_age: int = 400 * DAY


@dataclass(slots=True)
class VeePull:
    """One pull on its way through the gate."""

    grouped: tuple[dict[GroupKey, dict[int, tuple[int, int]]], int]
    registers: list[gate.RegisterRow]
    duplicates: list[gate.DuplicateRow]
    result: gate.GateResult | None = None
    held: int = 0  # interval slots the gate removed
    quarantined: int = 0
    flagged: int = 0
    registers_stored: int = 0


def split_pull(hub_id: str, readings: Readings) -> VeePull:
    """The intervals grouped, register readings (duration 0) apart, in-pull duplicates noted."""
    registers: list[gate.RegisterRow] = []
    dups: list[gate.DuplicateRow] = []
    return VeePull(group_pull(hub_id, readings, dups, registers), registers, dups)


class VeeData(Database):
    """The VEE tables and operations (mixed into the store)."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        super().__init__(url, echo=echo)
        self.vee: VeeSettings | None = None
        self._models: dict[str, dict[str, str]] = {}  # hub -> {meter: model}
        # Meter-days whose interval sum was compared with the register advance, and mismatched.
        self.vee_counters = {"days_checked": 0, "days_mismatched": 0}
        # When a set: every (hub, meter, obis, day) compared (benchmarks; grows without bound).
        self.vee_checked_days: set[tuple[str, str, str, int]] | None = None

    def enable_vee(self, settings: VeeSettings) -> None:
        """Send every ingest through the VEE gate from now on."""
        self.vee = settings

    # -- meter models --------------------------------------------------------------------------

    def set_meter_models(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """(hub, meter, model) for each meter whose limits are known by model."""
        rows = list(rows)
        with self._write_lock, self.engine.begin() as conn:
            for hub_id, meter_id, _model in rows:
                conn.execute(
                    meter_models.delete().where(
                        and_(meter_models.c.hub_id == hub_id, meter_models.c.meter_id == meter_id)
                    )
                )
            if rows:
                conn.execute(
                    insert(meter_models), [{"hub_id": h, "meter_id": m, "model": o} for h, m, o in rows]
                )
        for hub_id, _, _ in rows:
            self._models.pop(hub_id, None)

    def _profiles(
        self, conn: Connection, settings: VeeSettings, hub_ids: Sequence[str]
    ) -> dict[str, dict[str, MeterProfile]]:
        missing = [h for h in hub_ids if h not in self._models]
        for chunk in _chunks(sorted(set(missing)), 500):
            for h in chunk:
                self._models[h] = {}
            q = select(meter_models.c.hub_id, meter_models.c.meter_id, meter_models.c.model).where(
                meter_models.c.hub_id.in_(chunk)
            )
            for h, m, model in conn.execute(q):
                self._models[h][m] = model
        out: dict[str, dict[str, MeterProfile]] = {}
        for h in hub_ids:
            out[h] = {
                m: settings.models[model] for m, model in self._models[h].items() if model in settings.models
            }
        return out

    # -- the gate ------------------------------------------------------------------------------

    def _vee_gate(
        self, conn: Connection, settings: VeeSettings, hub_ids: Sequence[str], checks: Sequence[VeePull]
    ) -> None:
        now = settings.now()
        profiles = self._profiles(conn, settings, hub_ids)
        last, following = (
            self._last_registers(conn, hub_ids, checks),
            self._next_registers(conn, now, hub_ids, checks),
        )
        for hub_id, c in zip(hub_ids, checks, strict=True):
            groups = c.grouped[0]
            before = sum(len(s) for s in groups.values())
            ctx = gate.GateContext(
                now,
                profiles=profiles[hub_id],
                last_registers=last.get(hub_id, {}),
                next_registers=following.get(hub_id, {}),
                stored_day=functools.partial(self._stored_day, conn, hub_id),
                stored_slots=functools.partial(self._stored_slots, conn, hub_id),
                max_age=settings.max_age,
            )
            c.result = gate.run(groups, c.registers, c.duplicates, ctx)
            self.vee_counters["days_checked"] += c.result.days_checked
            self.vee_counters["days_mismatched"] += c.result.days_mismatched
            if self.vee_checked_days is not None:
                self.vee_checked_days.update((hub_id, m, o, d) for m, o, d in c.result.checked)
            c.held = before - sum(len(s) for s in groups.values())
            c.quarantined = c.result.quarantined
            c.flagged = sum(1 for f in c.result.findings if f.action == "flag" and f.duration)

    def _last_registers(
        self, conn: Connection, hub_ids: Sequence[str], checks: Sequence[VeePull]
    ) -> dict[str, dict[tuple[str, str], tuple[int, float]]]:
        """The newest stored register before each hub channel's first register in the batch:
        first within the two days before (the nightly case, a short index range), then without a
        bound for the channels that had none there (a hub back after an outage). Each channel is
        cut at its own first register: a batch of hubs pulled live holds one hub's day-old read
        beside another's new one, and a cut common to all would hide the first hub's last read."""
        cuts: dict[tuple[str, str, str], int] = {}
        for h, c in zip(hub_ids, checks, strict=True):
            for r in c.registers:
                key = (h, r[0], r[1])
                cuts[key] = min(cuts.get(key, r[2]), r[2])
        if not cuts:
            return {}
        out: dict[str, dict[tuple[str, str], tuple[int, float]]] = {}
        self._newest_before(conn, cuts, min(cuts.values()) - 2 * DAY, out)
        missing = {k: v for k, v in cuts.items() if k[1:] not in out.get(k[0], {})}
        if missing:
            self._newest_before(conn, missing, None, out)
        return out

    def _newest_before(
        self,
        conn: Connection,
        cuts: dict[tuple[str, str, str], int],
        since: int | None,
        out: dict[str, dict[tuple[str, str], tuple[int, float]]],
    ) -> None:
        r = register_reads
        hubs = sorted({h for h, _, _ in cuts})
        for chunk in _chunks(hubs, 500):
            where = [r.c.hub_id.in_(chunk), r.c.read_at < max(cuts.values())]
            if since is not None:
                where.append(r.c.read_at >= since)
            rows = conn.execute(
                select(r.c.hub_id, r.c.meter_id, r.c.obis, r.c.read_at, r.c.value, r.c.power_of_ten).where(
                    *where
                )
            )
            for h, m, o, at, v, p10 in rows:
                cut = cuts.get((h, m, o))
                if cut is None or at >= cut:
                    continue
                per = out.setdefault(h, {})
                held = per.get((m, o))
                if held is None or at > held[0]:
                    per[(m, o)] = (at, v * 10.0**p10)

    def _next_registers(
        self, conn: Connection, now: int, hub_ids: Sequence[str], checks: Sequence[VeePull]
    ) -> dict[str, dict[tuple[str, str], tuple[int, float]]]:
        """The oldest stored register after each late pull's last one (late: its registers are
        more than a day and two hours old — a re-sent or back-filled day, not the nightly pull)."""
        late: dict[tuple[str, str, str], int] = {}
        for h, c in zip(hub_ids, checks, strict=True):
            for m, o, at, *_ in c.registers:
                if at < now - DAY - 7200:
                    late[(h, m, o)] = max(at, late.get((h, m, o), at))
        out: dict[str, dict[tuple[str, str], tuple[int, float]]] = {}
        r = register_reads
        for (h, m, o), at in late.items():
            row = conn.execute(
                select(r.c.read_at, r.c.value, r.c.power_of_ten)
                .where(r.c.hub_id == h, r.c.meter_id == m, r.c.obis == o, r.c.read_at > at)
                .order_by(r.c.read_at)
                .limit(1)
            ).first()
            if row is not None:
                out.setdefault(h, {})[(m, o)] = (row[0], row[1] * 10.0 ** row[2])
        return out

    def _stored_day(
        self, conn: Connection, hub_id: str, meter: str, obis: str, day: int
    ) -> tuple[float, bool] | None:
        got = edits.channel_blocks(conn, hub_id, meter, obis, 1800, [day]).get(day)
        if got is None:
            return None
        _, _, p10, slots = got
        return sum(v for v, _ in slots.values()) * 10.0**p10, len(slots) == 48

    def _stored_slots(
        self, conn: Connection, hub_id: str, meter: str, obis: str, day: int
    ) -> dict[int, float] | None:
        got = edits.channel_blocks(conn, hub_id, meter, obis, 1800, [day]).get(day)
        if got is None:
            return None
        _, _, p10, slots = got
        return {slot: v * 10.0**p10 for slot, (v, _) in slots.items()}

    def _our_estimates(
        self,
        conn: Connection,
        clashes: Sequence[tuple[int, tuple[tuple[str, int, int], int, tuple[int, int], tuple[int, int]]]],
        specs: Mapping[tuple[str, int], tuple[str, str, int, int, int]],
        tallies: Sequence[Tally],
    ) -> set[tuple[str, int, int, int]]:
        """The clashes where the stored reading is the GDSC's own gap estimate (an unreplaced row
        of ``vee_estimates`` with that value) and the hub's reading is itself flagged estimated
        (its interpolation between the meter's registers, e.g. a boundary between two late
        frames): the hub's reading replaces the GDSC's, as an actual one would. Both carry the
        same 2030.5 estimated flags, so only the estimates table tells whose a stored estimate
        is; without this the hub's better figure was refused as a differing duplicate for good
        (730 "re-sent with different values" in a loaded demo, whose upkeep estimated the gaps
        of hubs pulled late). Writes the hub's values into the blocks (this transaction holds
        the hubs' merge locks) and moves the tallies' counts from conflicts to replaced."""
        maybe = [
            (i, cl)
            for i, cl in clashes
            if cl[2][1] & rules.ESTIMATED
            and cl[3][1] & rules.ESTIMATED
            and not cl[2][1] & rules.MANUALLY_EDITED
        ]
        if not maybe:
            return set()
        e = vee_estimates
        wanted = {}
        for i, ((hub, day, no), slot, old, new) in maybe:
            meter, obis, duration, _, _ = specs[(hub, no)]
            wanted[(hub, meter, obis, duration, day * DAY + slot * duration)] = (
                i,
                (hub, day, no),
                slot,
                old,
                new,
            )
        found = set()
        keys = list(wanted)
        for n in range(0, len(keys), 300):
            chunk = keys[n : n + 300]
            q = select(e.c.hub_id, e.c.meter_id, e.c.obis, e.c.duration, e.c.interval_start, e.c.value).where(
                tuple_(e.c.hub_id, e.c.meter_id, e.c.obis, e.c.duration, e.c.interval_start).in_(chunk),
                e.c.replaced_at.is_(None),
            )
            for h, m, o, d, t, v in conn.execute(q):
                hit = wanted[(h, m, o, d, t)]
                if hit[3][0] == v:
                    found.add((h, m, o, d, t))
        if not found:
            return set()
        by_block: dict[tuple[str, int, int], dict[int, tuple[int, int]]] = {}
        ours: set[tuple[str, int, int, int]] = set()
        for k in found:
            i, block_key, slot, _old, new = wanted[k]
            by_block.setdefault(block_key, {})[slot] = new
            ours.add((*block_key, slot))
            tallies[i].conflicts -= 1
            tallies[i].replaced += 1
        b = interval_blocks
        for (hub, day, no), slots in by_block.items():
            duration = specs[(hub, no)][2]
            n_slots = DAY // duration
            stored = conn.execute(
                select(b.c.block).where(b.c.hub_id == hub, b.c.day == day, b.c.channel_no == no)
            ).scalar_one()
            held = interval_block.decode(bytes(stored), n_slots)
            held.update(slots)
            conn.execute(
                update(b)
                .where(b.c.hub_id == hub, b.c.day == day, b.c.channel_no == no)
                .values(n=len(held), block=interval_block.encode(n_slots, held))
            )
        return ours

    def _vee_record(
        self,
        conn: Connection,
        settings: VeeSettings,
        hub_ids: Sequence[str],
        checks: Sequence[VeePull],
        tallies: Sequence[Tally],
    ) -> None:
        now = settings.now()
        findings: list[dict] = []
        regs: list[dict] = []
        for hub_id, c in zip(hub_ids, checks, strict=True):
            assert c.result is not None
            for f in c.result.findings:
                findings.append(_finding_row(hub_id, f, now))
            regs.extend(
                {
                    "hub_id": hub_id,
                    "meter_id": m,
                    "obis": o,
                    "read_at": at,
                    "value": v,
                    "uom": u,
                    "power_of_ten": p,
                    "quality": q,
                }
                for m, o, at, v, u, p, q in c.result.registers
            )
        clashes = [(i, cl) for i, t in enumerate(tallies) for cl in t.clashes]
        if clashes:
            specs = self._specs(conn, {cl[0][0] for _, cl in clashes})
            ours = self._our_estimates(conn, clashes, specs, tallies)
            replaced = []
            for i, ((hub, day, no), slot, old, new) in clashes:
                meter, obis, duration, uom, p10 = specs[(hub, no)]
                start = day * DAY + slot * duration
                if (old[1] & rules.ESTIMATED and not new[1] & rules.ESTIMATED) or (
                    hub,
                    day,
                    no,
                    slot,
                ) in ours:
                    replaced.append(
                        {
                            "h": hub,
                            "m": meter,
                            "o": obis,
                            "d": duration,
                            "s": start,
                            "a": new[0],
                            "at": now,
                        }
                    )
                    continue
                f = gate.Finding(
                    "duplicate_differs",
                    meter,
                    obis,
                    duration,
                    start,
                    new[0],
                    p10,
                    uom,
                    new[1],
                    f"re-sent as {new[0]}, the store holds {old[0]}",
                )
                findings.append(_finding_row(hub_ids[i], f, now))
            if replaced:
                e = vee_estimates

                conn.execute(
                    update(e)
                    .where(
                        and_(
                            e.c.hub_id == bindparam("h"),
                            e.c.meter_id == bindparam("m"),
                            e.c.obis == bindparam("o"),
                            e.c.duration == bindparam("d"),
                            e.c.interval_start == bindparam("s"),
                            e.c.replaced_at.is_(None),
                        )
                    )
                    .values(replaced_at=bindparam("at"), actual=bindparam("a")),
                    replaced,
                )
        if findings:
            conn.execute(self._insert_new(vee_findings), findings)
        if regs and self.dialect == "postgresql":
            # One statement over arrays: an executemany costs a round trip's worth per row.
            cols = ("hub_id", "meter_id", "obis", "read_at", "value", "power_of_ten", "uom", "quality")
            types = ("varchar", "varchar", "varchar", "int8", "int8", "int2", "int2", "int4")
            conn.execute(
                text(
                    f"INSERT INTO register_reads ({', '.join(cols)}) SELECT * FROM unnest("
                    + ", ".join(f"CAST(:{c} AS {t}[])" for c, t in zip(cols, types, strict=True))
                    + ") ON CONFLICT DO NOTHING"
                ),
                {c: [r[c] for r in regs] for c in cols},
            )
        elif regs:
            conn.execute(self._insert_new(register_reads), regs)
        for c in checks:
            assert c.result is not None
            c.registers_stored = len(c.result.registers)

    def _insert_new(self, table: Any) -> Any:
        """INSERT … ON CONFLICT DO NOTHING on either dialect."""
        return self._insert(table).on_conflict_do_nothing()

    def _specs(
        self, conn: Connection, hub_ids: set[str]
    ) -> dict[tuple[str, int], tuple[str, str, int, int, int]]:
        c = interval_channels
        q = select(
            c.c.hub_id, c.c.channel_no, c.c.meter_id, c.c.obis, c.c.duration, c.c.uom, c.c.power_of_ten
        ).where(c.c.hub_id.in_(sorted(hub_ids)))
        return {(h, no): (m, o, d, u, p) for h, no, m, o, d, u, p in conn.execute(q)}

    # -- findings ------------------------------------------------------------------------------

    def findings(
        self, hub_id: str | None = None, *, status: str | None = None, limit: int = 1000
    ) -> list[dict]:
        f = vee_findings
        q = select(f).order_by(f.c.found_at, f.c.hub_id, f.c.interval_start, f.c.rule).limit(limit)
        if hub_id is not None:
            q = q.where(f.c.hub_id == hub_id)
        if status is not None:
            q = q.where(f.c.status == status)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    # -- estimation ----------------------------------------------------------------------------

    def estimate_gaps(
        self, now: int, *, settle: int = 2 * DAY, hub_ids: Sequence[str] | None = None, duration: int = 1800
    ) -> int:
        """Estimate the missing intervals of every channel-day that ended ``settle`` s before
        ``now`` (a re-pull had its chance): partial days and whole days between stored ones.
        Returns the number of intervals estimated."""
        cut = (now - settle) // DAY
        n_slots = DAY // duration
        c, b = interval_channels, interval_blocks
        total = 0
        with self._write_lock, self.engine.begin() as conn:
            q = (
                select(
                    c.c.hub_id,
                    c.c.channel_no,
                    c.c.meter_id,
                    c.c.obis,
                    c.c.uom,
                    c.c.power_of_ten,
                    func.min(b.c.day),
                    func.max(b.c.day),
                    func.count(),
                    func.sum(b.c.n),
                )
                .select_from(c.join(b, and_(b.c.hub_id == c.c.hub_id, b.c.channel_no == c.c.channel_no)))
                .where(c.c.duration == duration, b.c.day < cut)
                .group_by(
                    c.c.hub_id,
                    c.c.channel_no,
                    c.c.meter_id,
                    c.c.obis,
                    c.c.uom,
                    c.c.power_of_ten,
                )
            )
            if hub_ids is not None:
                q = q.where(c.c.hub_id.in_(list(hub_ids)))
            gappy = [
                row
                for row in conn.execute(q).all()
                if not (row[-1] == row[-2] * n_slots and row[-3] - row[-4] + 1 == row[-2])  # complete
            ]
            if gappy and conn.dialect.name == "postgresql":
                # The merge locks of every hub written back, taken at once in the ingest's order
                # (LOCK_HUBS sorts them): an ingest merging into a block meanwhile would otherwise
                # lose its readings to this write-back, or this estimate to its own; one by one
                # in another order could deadlock with an ingest batch.
                conn.exec_driver_sql(LOCK_HUBS, (HUB_LOCKS, sorted({row[0] for row in gappy})))
            for hub_id, no, meter, obis, uom, p10, first, last, _, _ in gappy:
                total += self._estimate_channel(
                    conn, now, hub_id, no, meter, obis, uom, p10, first, last, duration
                )
        return total

    def _estimate_channel(
        self,
        conn: Connection,
        now: int,
        hub_id: str,
        no: int,
        meter: str,
        obis: str,
        uom: int,
        p10: int,
        first: int,
        last: int,
        duration: int,
    ) -> int:
        b = interval_blocks
        n_slots = DAY // duration
        blocks = {
            day: interval_block.decode(bytes(block), n_slots)
            for day, block in conn.execute(
                select(b.c.day, b.c.block).where(
                    b.c.hub_id == hub_id, b.c.channel_no == no, b.c.day >= first - 28, b.c.day <= last
                )
            )
        }
        regs = {
            at: v * 10.0**rp
            for at, v, rp in conn.execute(
                select(register_reads.c.read_at, register_reads.c.value, register_reads.c.power_of_ten).where(
                    register_reads.c.hub_id == hub_id,
                    register_reads.c.meter_id == meter,
                    register_reads.c.obis == obis,
                    register_reads.c.read_at >= first * DAY,
                    register_reads.c.read_at <= (last + 1) * DAY,
                )
            )
        }
        scale = 10.0**p10
        written = 0
        estimates = []
        for day in range(first, last + 1):
            slots = blocks.get(day, {})
            if len(slots) == n_slots:
                continue
            start, end = regs.get(day * DAY), regs.get((day + 1) * DAY)
            missing = None
            if start is not None and end is not None and end >= start:
                missing = (end - start) / scale - sum(v for v, _ in slots.values())
            refs = [blocks[d] for d in (day - 7, day - 14, day - 21, day - 28) if d in blocks]
            values = estimate.fill(slots, n_slots, missing, refs)
            if not values:
                continue
            merged = dict(slots)
            for s, (v, method) in values.items():
                q = (
                    rules.ESTIMATED_LINEAR_INTERPOLATION
                    if method == "linear"
                    else rules.ESTIMATED_REFERENCE_DAY
                )
                merged[s] = (v, q)
                estimates.append(
                    {
                        "hub_id": hub_id,
                        "meter_id": meter,
                        "obis": obis,
                        "duration": duration,
                        "interval_start": day * DAY + s * duration,
                        "value": v,
                        "method": method,
                        "estimated_at": now,
                    }
                )
            block = interval_block.encode(n_slots, merged)
            if day in blocks:
                conn.execute(
                    update(b)
                    .where(b.c.hub_id == hub_id, b.c.day == day, b.c.channel_no == no)
                    .values(n=len(merged), block=block)
                )
            else:
                if self.dialect == "postgresql":
                    self.ensure_day_partitions_in(conn, [day])
                conn.execute(
                    insert(b).values(hub_id=hub_id, day=day, channel_no=no, n=len(merged), block=block)
                )
            written += len(values)
        if estimates:
            e = vee_estimates
            keys = [
                (r["hub_id"], r["meter_id"], r["obis"], r["duration"], r["interval_start"]) for r in estimates
            ]
            conn.execute(
                e.delete().where(
                    tuple_(e.c.hub_id, e.c.meter_id, e.c.obis, e.c.duration, e.c.interval_start).in_(keys)
                )
            )
            conn.execute(insert(e), estimates)
        return written

    def ensure_day_partitions_in(self, conn: Connection, days: Iterable[int]) -> None:
        from sqlalchemy import text

        from smarthub.gdsc.readings.tables import partition_name

        for day in days:
            conn.execute(
                text(
                    f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF interval_blocks "
                    f"FOR VALUES FROM ({day}) TO ({day + 1})"
                )
            )

    def estimate_counts(self) -> tuple[int, int]:
        """(intervals estimated, estimates since replaced by actual readings)."""
        e = vee_estimates
        with self.engine.connect() as conn:
            row = conn.execute(select(func.count(), func.count(e.c.replaced_at))).one()
        return int(row[0]), int(row[1])

    # -- edits and figures (engine-level, shared with the API) ---------------------------------

    def edit_day(
        self,
        hub_id: str,
        meter: str,
        obis: str,
        day: int,
        values: Mapping[int, int],
        *,
        actor: str,
        reason: str,
        now: int,
        duration: int = 1800,
    ) -> int:
        """An operator's correction of a channel-day (:func:`.edits.edit_day`)."""
        with self._write_lock:
            return edits.edit_day(
                self.engine,
                hub_id,
                meter,
                obis,
                day,
                values,
                actor=actor,
                reason=reason,
                now=now,
                duration=duration,
            )

    def day_versions(self, hub_id: str, meter: str, obis: str, day: int, duration: int = 1800) -> list[dict]:
        return edits.day_versions(self.engine, hub_id, meter, obis, day, duration)

    def quality_figures(self, by: str = "hub") -> list[dict]:
        return edits.quality_figures(self.engine, by)


def _finding_row(hub_id: str, f: gate.Finding, now: int) -> dict:
    return {
        "hub_id": hub_id,
        "meter_id": f.meter_id,
        "obis": f.obis,
        "duration": f.duration,
        "interval_start": f.start,
        "value": f.value,
        "power_of_ten": f.power_of_ten,
        "uom": f.uom,
        "quality": f.quality,
        "rule": f.rule,
        "action": f.action,
        "evidence": f.evidence,
        "found_at": now,
        "status": "held" if f.action == "quarantine" else "noted",
    }


def _chunks(seq: Sequence, size: int):
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


__all__ = ["VeeData", "VeePull", "VeeSettings", "split_pull"]
